//! One contract, two stores: the same sequence of writes against the DynamoDB adapter (on moto)
//! and the embedded store must give the same outcomes and leave the same records.

use imagehook_core::deploy::{DeployOutcome, Deployment};
use imagehook_core::event::{Action, ImageEvent, Provider, Timestamp};
use imagehook_core::reference::ImageRef;
use imagehook_core::store::{
    DeploymentsWrite, DynamoStore, EmbeddedStore, PushOutcome, PushWrite, Store,
};
use imagehook_tests::*;
use serde_json::{Map, Value};

const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn event(id: &str, image: &str, at: &str) -> ImageEvent {
    ImageEvent {
        id: id.to_owned(),
        provider: Provider::Acr,
        action: Action::Push,
        image: ImageRef::parse(image).unwrap(),
        occurred_at: Timestamp::parse(at).unwrap(),
        media_type: Some("application/vnd.oci.image.manifest.v1+json".to_owned()),
        size: Some(1000),
    }
}

fn write(e: &ImageEvent, needs_deploy: bool) -> PushWrite {
    let received = Timestamp::parse("2026-11-20T12:00:00Z").unwrap();
    PushWrite::for_push(e, &received, 1_800_000_000, needs_deploy)
}

/// The scenario, with the outcome each step must have. Returns the final records.
async fn scenario(store: &dyn Store) -> Vec<Map<String, Value>> {
    let repo = "r.example.com/shop/api";
    let e1 = event("e1", &format!("{repo}:v1@{A}"), "2026-11-20T10:00:00Z");
    assert_eq!(
        store.record_push(&write(&e1, true)).await.unwrap(),
        PushOutcome::Applied
    );
    // Redelivery before the deployments were recorded: duplicate, still pending.
    assert_eq!(
        store.record_push(&write(&e1, true)).await.unwrap(),
        PushOutcome::Duplicate { pending: true }
    );
    let target = imagehook_core::rules::Target {
        cluster: "prod".into(),
        service: "api".into(),
        container: None,
        stage: Some("prod".into()),
    };
    let mut dep = Deployment::new(&target, &e1.image, DeployOutcome::Updated);
    dep.task_definition =
        Some("arn:aws:ecs:eu-central-1:210987654321:task-definition/api:2".into());
    let at = Timestamp::parse("2026-11-20T12:00:01Z").unwrap();
    store
        .record_deployments(&DeploymentsWrite::new(&e1, &[dep], &at))
        .await
        .unwrap();
    assert_eq!(
        store.record_push(&write(&e1, true)).await.unwrap(),
        PushOutcome::Duplicate { pending: false }
    );

    // The tag moves to a newer digest and remembers the previous one.
    let e2 = event("e2", &format!("{repo}:v1@{B}"), "2026-11-20T11:00:00Z");
    assert_eq!(
        store.record_push(&write(&e2, false)).await.unwrap(),
        PushOutcome::Applied
    );
    // An older push of the first digest under the same tag is stale: recorded, tag untouched.
    let e3 = event("e3", &format!("{repo}:v1@{A}"), "2026-11-20T09:00:00Z");
    assert_eq!(
        store.record_push(&write(&e3, true)).await.unwrap(),
        PushOutcome::Stale
    );
    // The same instant as the current tag counts as newer (later arrival wins).
    let e4 = event("e4", &format!("{repo}:v2@{A}"), "2026-11-20T11:00:00Z");
    assert_eq!(
        store.record_push(&write(&e4, false)).await.unwrap(),
        PushOutcome::Applied
    );
    let e5 = event("e5", &format!("{repo}:v2@{B}"), "2026-11-20T11:00:00Z");
    assert_eq!(
        store.record_push(&write(&e5, false)).await.unwrap(),
        PushOutcome::Applied
    );
    // A push without a digest makes the tag unpinned; a digest-only push touches no tag.
    let e6 = event("e6", &format!("{repo}:latest"), "2026-11-20T11:30:00Z");
    assert_eq!(
        store.record_push(&write(&e6, false)).await.unwrap(),
        PushOutcome::Applied
    );
    let e7 = event("e7", &format!("{repo}@{B}"), "2026-11-20T11:40:00Z");
    assert_eq!(
        store.record_push(&write(&e7, false)).await.unwrap(),
        PushOutcome::Applied
    );

    let records = store.dump().await.unwrap();
    let find = |sk: &str| {
        records
            .iter()
            .find(|r| r["SK"] == sk && r["PK"] == format!("IMG#{repo}").as_str())
            .unwrap_or_else(|| panic!("no {sk}"))
            .clone()
    };
    let v1 = find("T#v1");
    assert_eq!(
        (v1["digest"].as_str(), v1["previous_digest"].as_str()),
        (Some(B), Some(A))
    );
    let v2 = find("T#v2");
    assert_eq!(v2["digest"].as_str(), Some(B));
    let latest = find("T#latest");
    assert_eq!(latest["unpinned"], Value::Bool(true));
    let a = find(&format!("D#{A}"));
    assert_eq!(a["push_count"], 3);
    assert_eq!(a["tags"], serde_json::json!(["v1", "v2"]));
    // first_seen is the first push recorded, even when an older one arrives later.
    assert_eq!(a["first_seen"], "2026-11-20T10:00:00.000000000Z");
    assert_eq!(a["last_pushed_at"], "2026-11-20T11:00:00.000000000Z");
    let b = find(&format!("D#{B}"));
    assert_eq!(b["push_count"], 3);
    records
}

#[tokio::test]
async fn embedded_and_dynamodb_stores_keep_the_same_records() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let dynamo = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedStore::open(dir.path()).unwrap();

    let from_dynamo = scenario(&dynamo).await;
    let from_embedded = scenario(&embedded).await;

    assert_eq!(from_dynamo, from_embedded);
    assert_eq!(from_dynamo.len(), 14, "{from_dynamo:#?}");

    // The embedded store keeps its records across runs of the local binary.
    drop(embedded);
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(reopened.dump().await.unwrap(), from_embedded);
}

#[tokio::test]
async fn in_memory_embedded_store_follows_the_contract() {
    scenario(&EmbeddedStore::in_memory()).await;
}
