//! One contract, two stores: the same sequence of records against the DynamoDB adapter (on
//! moto) and the embedded store must give the same outcomes and leave the same items.

use imagehook_core::adapters::{DynamoStore, EmbeddedStore};
use imagehook_core::model::event::{Action, ImageEvent, Provider, Timestamp};
use imagehook_core::model::reference::ImageRef;
use imagehook_core::model::rules::Target;
use std::time::Duration;

use imagehook_core::pipeline::converge::{Door, Proposal, knock, order_of, release, take_over};
use imagehook_core::pipeline::delete::{DeleteOutcome, record_delete};
use imagehook_core::pipeline::deployments::{record_deployments, service_record, services_running};
use imagehook_core::pipeline::held::{blocked_deployments, tag_digest};
use imagehook_core::pipeline::push::{PushOutcome, record_push};
use imagehook_core::pipeline::quarantine::{QuarantineOutcome, record_quarantine, record_release};
use imagehook_core::pipeline::receipt::Receipt;
use imagehook_core::ports::deployer::{DeployOutcome, Deployment};
use imagehook_core::ports::store::{Key, Store, StoreDump};
use imagehook_tests::*;
use serde_json::{Map, Value, json};

const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const REPO: &str = "r.example.com/shop/api";

fn event(id: &str, action: Action, image: &str, at: &str) -> ImageEvent {
    ImageEvent {
        region: None,
        replica_registry: None,
        release_source: None,
        identified_by_content: false,
        id: id.to_owned(),
        provider: Provider::Acr,
        action,
        image: ImageRef::parse(image).unwrap(),
        occurred_at: Timestamp::parse(at).unwrap(),
        media_type: Some("application/vnd.oci.image.manifest.v1+json".to_owned()),
        size: Some(1000),
        scan: None,
        reason: None,
    }
}

fn push(id: &str, image: &str, at: &str) -> ImageEvent {
    event(id, Action::Push, &format!("{REPO}{image}"), at)
}

fn receipt(e: &ImageEvent) -> Receipt<'_> {
    static RECEIVED: std::sync::OnceLock<Timestamp> = std::sync::OnceLock::new();
    Receipt {
        event: e,
        received_at: RECEIVED.get_or_init(|| Timestamp::parse("2026-11-20T12:00:00Z").unwrap()),
        expires_at: 1_800_000_000,
        payload: None,
    }
}

fn target() -> Target {
    Target {
        cluster: "prod".into(),
        service: "api".into(),
        container: None,
        stage: Some("prod".into()),
        policy: Default::default(),
        last_deployed: None,
        require_region: None,
        replicas: Vec::new(),
        gate: Default::default(),
        express: None,
    }
}

async fn scenario(store: &(impl Store + StoreDump)) -> Vec<Map<String, Value>> {
    let targets = [target()];
    let at = Timestamp::parse("2026-11-20T12:00:01Z").unwrap();
    let e1 = push("e1", &format!(":v1@{A}"), "2026-11-20T10:00:00Z");
    assert_eq!(
        record_push(store, &receipt(&e1), &targets).await.unwrap(),
        PushOutcome::Applied
    );
    // Redelivery before the deployments were recorded: duplicate, still pending.
    assert_eq!(
        record_push(store, &receipt(&e1), &targets).await.unwrap(),
        PushOutcome::Duplicate { pending: true }
    );
    let mut dep = Deployment::new(&target(), &e1.image, DeployOutcome::Updated);
    dep.task_definition =
        Some("arn:aws:ecs:eu-central-1:210987654321:task-definition/api:2".into());
    record_deployments(store, &e1, &[dep], &[], &at)
        .await
        .unwrap();
    assert_eq!(
        record_push(store, &receipt(&e1), &targets).await.unwrap(),
        PushOutcome::Duplicate { pending: false }
    );
    assert_eq!(
        services_running(store, &e1).await.unwrap(),
        vec!["prod/api"]
    );

    // The tag moves to a newer digest and remembers the previous one; an older push is stale;
    // the same instant counts as newer (later arrival wins).
    let e2 = push("e2", &format!(":v1@{B}"), "2026-11-20T11:00:00Z");
    assert_eq!(
        record_push(store, &receipt(&e2), &[]).await.unwrap(),
        PushOutcome::Applied
    );
    let e3 = push("e3", &format!(":v1@{A}"), "2026-11-20T09:00:00Z");
    assert_eq!(
        record_push(store, &receipt(&e3), &targets).await.unwrap(),
        PushOutcome::Stale
    );
    let e4 = push("e4", &format!(":v2@{A}"), "2026-11-20T11:00:00Z");
    assert_eq!(
        record_push(store, &receipt(&e4), &[]).await.unwrap(),
        PushOutcome::Applied
    );
    let e5 = push("e5", &format!(":v2@{B}"), "2026-11-20T11:00:00Z");
    assert_eq!(
        record_push(store, &receipt(&e5), &[]).await.unwrap(),
        PushOutcome::Applied
    );
    // Without a digest the tag is unpinned; a digest-only push touches no tag.
    let e6 = push("e6", ":latest", "2026-11-20T11:30:00Z");
    assert_eq!(
        record_push(store, &receipt(&e6), &[]).await.unwrap(),
        PushOutcome::Applied
    );
    let e7 = push("e7", &format!("@{B}"), "2026-11-20T11:40:00Z");
    assert_eq!(
        record_push(store, &receipt(&e7), &[]).await.unwrap(),
        PushOutcome::Applied
    );

    // Quarantine B; a push of B is then recorded, moves its tag, and its deployment waits.
    let q = event(
        "q1",
        Action::Quarantine,
        &format!("{REPO}@{B}"),
        "2026-11-20T11:50:00Z",
    );
    assert_eq!(
        record_quarantine(store, &receipt(&q), "1 critical", "ecr-basic-scan")
            .await
            .unwrap(),
        QuarantineOutcome::Applied { services: vec![] }
    );
    let e8 = push("e8", &format!(":v3@{B}"), "2026-11-20T11:55:00Z");
    assert_eq!(
        record_push(store, &receipt(&e8), &targets).await.unwrap(),
        PushOutcome::Blocked {
            reason: "digest is quarantined: 1 critical".into()
        }
    );
    let blocked = blocked_deployments(store, &e8).await.unwrap();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].tag.as_deref(), Some("v3"));
    assert_eq!(
        tag_digest(store, &e8, "v3").await.unwrap().as_deref(),
        Some(B)
    );
    // Release: pending until the held deployment is recorded.
    let rel = event(
        "r1",
        Action::Release,
        &format!("{REPO}@{B}"),
        "2026-11-20T11:58:00Z",
    );
    assert_eq!(
        record_release(store, &receipt(&rel), "clean scan", "all", true)
            .await
            .unwrap(),
        QuarantineOutcome::Applied { services: vec![] }
    );
    assert_eq!(
        record_release(store, &receipt(&rel), "clean scan", "all", true)
            .await
            .unwrap(),
        QuarantineOutcome::Duplicate { pending: true }
    );
    let settled: Vec<_> = blocked.iter().map(|b| b.key.clone()).collect();
    let dep = Deployment::new(&target(), &rel.image, DeployOutcome::Updated);
    record_deployments(store, &rel, &[dep], &settled, &at)
        .await
        .unwrap();
    assert!(blocked_deployments(store, &e8).await.unwrap().is_empty());
    let again = event(
        "r2",
        Action::Release,
        &format!("{REPO}@{B}"),
        "2026-11-20T11:59:00Z",
    );
    assert_eq!(
        record_release(store, &receipt(&again), "clean scan", "all", false)
            .await
            .unwrap(),
        QuarantineOutcome::NotQuarantined { by: None }
    );

    // Delete A by digest: tombstone, tag v2 (now on B) stays, v1 stays on B; A had no tag left.
    let d1 = event(
        "d1",
        Action::Delete,
        &format!("{REPO}@{A}"),
        "2026-11-20T12:10:00Z",
    );
    let DeleteOutcome::Applied { removed_tags, .. } =
        record_delete(store, &receipt(&d1)).await.unwrap()
    else {
        panic!("delete not applied")
    };
    assert!(removed_tags.is_empty(), "{removed_tags:?}");
    assert_eq!(
        record_delete(store, &receipt(&d1)).await.unwrap(),
        DeleteOutcome::Duplicate
    );
    // A push of A older than the delete is blocked; a newer one revives it.
    let e9 = push("e9", &format!(":v4@{A}"), "2026-11-20T12:05:00Z");
    let PushOutcome::Blocked { reason } = record_push(store, &receipt(&e9), &[]).await.unwrap()
    else {
        panic!("old push of a deleted digest was not blocked")
    };
    assert!(reason.contains("deleted"), "{reason}");
    let e10 = push("e10", &format!(":v5@{A}"), "2026-11-20T12:20:00Z");
    assert_eq!(
        record_push(store, &receipt(&e10), &[]).await.unwrap(),
        PushOutcome::Applied
    );
    // Delete by tag removes the tag item and takes the tag off its image.
    let d2 = event(
        "d2",
        Action::Delete,
        &format!("{REPO}:v5@{A}"),
        "2026-11-20T12:30:00Z",
    );
    let DeleteOutcome::Applied { removed_tags, .. } =
        record_delete(store, &receipt(&d2)).await.unwrap()
    else {
        panic!("tag delete not applied")
    };
    assert_eq!(removed_tags, vec!["v5"]);
    // Delete B by digest: its tags go with it.
    let d3 = event(
        "d3",
        Action::Delete,
        &format!("{REPO}@{B}"),
        "2026-11-20T12:40:00Z",
    );
    let DeleteOutcome::Applied {
        mut removed_tags, ..
    } = record_delete(store, &receipt(&d3)).await.unwrap()
    else {
        panic!("delete not applied")
    };
    removed_tags.sort();
    assert_eq!(removed_tags, vec!["v1", "v2", "v3"]);

    // The history lists the pushes that concerned the service, stale and blocked ones too, and
    // the release, newest first by the event's time.
    let history = imagehook_core::pipeline::history::history(
        store,
        "r.example.com",
        "shop/api",
        Some("prod"),
    )
    .await
    .unwrap();
    let listed: Vec<(&str, Option<&str>)> = history
        .iter()
        .map(|h| (h.event.as_str(), h.outcome.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            ("acr#r1", Some("applied")),
            ("acr#e8", Some("blocked")),
            ("acr#e1", Some("applied")),
            ("acr#e3", Some("stale")),
        ]
    );

    let records = store.dump().await.unwrap();
    let find = |sk: &str| {
        records
            .iter()
            .find(|r| r["SK"] == sk && r["PK"] == format!("IMG#{REPO}").as_str())
            .cloned()
    };
    let a = gather_image(
        Value::Object(find(&format!("D#{A}")).unwrap()),
        &records,
        &format!("IMG#{REPO}"),
        A,
    );
    assert_eq!(a["status"], "active");
    assert_eq!(a["deleted_by"], "acr#d1");
    assert_eq!(a["tags"], json!(["v1", "v2", "v4"]));
    assert_eq!(a["first_seen"], "2026-11-20T10:00:00.000000000Z");
    let b = gather_image(
        Value::Object(find(&format!("D#{B}")).unwrap()),
        &records,
        &format!("IMG#{REPO}"),
        B,
    );
    assert_eq!(b["status"], "deleted");
    assert_eq!(b["released_at"], "2026-11-20T11:58:00.000000000Z");
    let changes: Vec<&str> = b["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, vec!["quarantined", "released", "deleted"]);
    assert!(find("T#v1").is_none() && find("T#v2").is_none() && find("T#v5").is_none());
    assert_eq!(find("T#latest").unwrap()["unpinned"], true);
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

    // The embedded store keeps its records across runs of the local binary.
    drop(embedded);
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(reopened.dump().await.unwrap(), from_embedded);
}

#[tokio::test]
async fn in_memory_embedded_store_follows_the_contract() {
    scenario(&EmbeddedStore::in_memory()).await;
}

/// The door of a service (proposal, lease, release, take-over) on one store: the answers in
/// order, and the service record without the lease's expiry time (a clock reading).
async fn door(store: &(impl Store + StoreDump)) -> (Vec<Door>, Map<String, Value>) {
    let t = target();
    let proposal = |id: &str, tag: &str, digest: &str, at: &str| Proposal {
        event: format!("acr#{id}"),
        image: ImageRef::parse(&format!("{REPO}:{tag}@{digest}")).unwrap(),
        order: order_of(at, "2026-11-20T12:00:00.000000000Z"),
    };
    let first = proposal("p1", "v1", A, "2026-11-20T10:00:00.000000000Z");
    let older = proposal("p0", "v0", B, "2026-11-20T09:00:00.000000000Z");
    let newer = proposal("p2", "v2", B, "2026-11-20T11:00:00.000000000Z");
    let minute = Duration::from_secs(60);
    let mut doors = Vec::new();
    // Free: the first proposal takes the lease in the same write.
    doors.push(knock(store, &t, &first, "h1", minute).await.unwrap());
    // Its own redelivery waits behind it; an older push loses; a newer one moves the desired
    // state forward and waits.
    doors.push(knock(store, &t, &first, "h2", minute).await.unwrap());
    doors.push(knock(store, &t, &older, "h3", minute).await.unwrap());
    doors.push(knock(store, &t, &newer, "h4", minute).await.unwrap());
    // Only the holder gives the lease back.
    let key = Key::new(format!("SVC#{}/{}", t.cluster, t.service), "CURRENT");
    release(store, &key, "h4").await.unwrap();
    doors.push(knock(store, &t, &newer, "h5", minute).await.unwrap());
    release(store, &key, "h1").await.unwrap();
    doors.push(knock(store, &t, &newer, "h6", minute).await.unwrap());
    // A live lease is not taken over; an expired one is, and says so.
    let record = service_record(store, &t.cluster, &t.service).await.unwrap();
    doors.push(take_over(store, &t, &record, "h7", minute).await.unwrap());
    release(store, &key, "h6").await.unwrap();
    // Free again: taken with a lease that ends at once, which the next comer takes over.
    doors.push(
        knock(store, &t, &newer, "h8", Duration::ZERO)
            .await
            .unwrap(),
    );
    let record = service_record(store, &t.cluster, &t.service).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    doors.push(take_over(store, &t, &record, "h9", minute).await.unwrap());

    let mut svc = store
        .dump()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i["SK"] == "CURRENT")
        .expect("the service record");
    svc.remove("lease_until");
    (doors, svc)
}

#[tokio::test]
async fn the_service_door_answers_alike_on_both_stores() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let dynamo = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
    let embedded = EmbeddedStore::in_memory();
    let (doors, svc) = door(&dynamo).await;
    assert_eq!(
        doors,
        vec![
            Door::Holder { resume: false },
            Door::Queued {
                carrier: "h1".into()
            },
            Door::Superseded {
                winner: "acr#p1".into(),
                same_digest: false,
            },
            Door::Queued {
                carrier: "h1".into()
            },
            Door::Queued {
                carrier: "h1".into()
            },
            Door::Holder { resume: false },
            Door::Queued {
                carrier: "h6".into()
            },
            // Free again (and held for no time at all).
            Door::Holder { resume: false },
            Door::Holder { resume: true },
        ]
    );
    assert_eq!(svc["desired_event"], "acr#p2");
    assert_eq!(svc["lease_holder"], "h9");
    assert_eq!(door(&embedded).await, (doors, svc));
}
