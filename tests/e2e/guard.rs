//! The deployment guard end to end: ECS's lifecycle hook events (the payloads of AWS's "Lambda
//! hooks for Amazon ECS service deployments") through the guard's edge, the revision's images
//! read from the ECS stand-in (DescribeServiceRevisions, which moto does not implement), the
//! records written by the real push, quarantine and delete functions in moto's DynamoDB, and the
//! refusal published to moto's SNS.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use imagehook_core::adapters::DynamoStore;
use imagehook_core::adapters::registry::{Credentials, RegistryResolver};
use imagehook_core::adapters::revisions::EcsRevisions;
use imagehook_core::adapters::sns::SnsTopic;
use imagehook_core::app::App;
use imagehook_core::app::config::{DeployMode, GuardMode, GuardSettings, OnStoreError};
use imagehook_core::app::guard::GuardApp;
use imagehook_core::auth::AuthMode;
use imagehook_core::model::function::Function;
use imagehook_core::ports::notifier::{NoticeKind, Notifier, Sink};
use imagehook_tests::capture::Capture;
use imagehook_tests::ecs_revisions::{self, EcsRevisions as Stand, Image};
use imagehook_tests::registry::{Auth, DOCKER_MANIFEST, Registry};
use imagehook_tests::*;
use serde_json::{Value, json};

const REPO: &str = "registry.example.com/shop/api";

/// The PRE_SCALE_UP event as AWS documents it; `hook_event` points it at a stand-in revision.
const PRE_SCALE_UP: &str = include_str!("../../events/guard-pre-scale-up.json");

/// The documented rollback: PRODUCTION_TRAFFIC_SHIFT with the target revision back at 0 %.
const ROLLBACK: &str = include_str!("../../events/guard-rollback.json");

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

/// The documented PRE_SCALE_UP event, deploying `revision`.
fn hook_event(revision: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(PRE_SCALE_UP).unwrap();
    v["executionDetails"]["targetServiceRevisionArn"] = json!(revision);
    v.to_string().into_bytes()
}

struct Setup {
    sdk: SdkConfig,
    table: String,
    /// The webhook functions that write the records the guard reads.
    app: App,
    ecs: Stand,
    ecs_sdk: SdkConfig,
}

async fn setup() -> Setup {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let app = app(AppSpec {
        table: &table,
        rules: "[]",
        auth: AuthMode::None,
        secrets: &[],
        deploy_mode: DeployMode::DryRun,
        dynamo_sdk: &sdk,
        ecs_sdk: &sdk,
    });
    let ecs = Stand::start();
    let ecs_sdk = imagehook_tests::sdk_at(ecs.url()).await;
    Setup {
        sdk,
        table,
        app,
        ecs,
        ecs_sdk,
    }
}

fn settings(mode: GuardMode, on_store_error: Option<OnStoreError>) -> GuardSettings {
    GuardSettings {
        mode,
        on_store_error: on_store_error.unwrap_or_else(|| OnStoreError::default_for(mode)),
    }
}

impl Setup {
    /// The guard as its function wires it: the table's read port, ECS (the stand-in), no registry.
    fn guard(&self, settings: GuardSettings) -> GuardApp {
        self.guard_reading(&self.sdk, settings)
    }

    /// The guard reading its records through `store_sdk` (a closed port for the store-down cases).
    fn guard_reading(&self, store_sdk: &SdkConfig, settings: GuardSettings) -> GuardApp {
        GuardApp::new(
            Arc::new(DynamoStore::new(dynamo_client(store_sdk), &self.table)),
            Arc::new(EcsRevisions::new(ecs_client(&self.ecs_sdk))),
            settings,
        )
    }

    async fn send(&self, function: Function, file: &str, body: Value) {
        let reply = invoke(&self.app, function, &with_body(&event_file(file), &body)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    async fn push(&self, tag: &str, digest: &str) {
        let body = json!({"image": format!("{REPO}:{tag}"), "digest": digest,
                          "id": unique("push"), "timestamp": "2026-12-01T09:00:00Z"});
        self.send(Function::Push, "generic-push.json", body).await;
    }

    async fn quarantine(&self, digest: &str, reason: &str) {
        let body = json!({"image": format!("{REPO}@{digest}"), "quarantine": true,
                          "reason": reason, "timestamp": "2026-12-01T10:00:00Z"});
        self.send(Function::Quarantine, "generic-quarantine.json", body)
            .await;
    }

    async fn delete(&self, digest: &str) {
        let body = json!({"image": format!("{REPO}@{digest}"), "action": "delete",
                          "timestamp": "2026-12-01T11:00:00Z"});
        self.send(Function::Delete, "generic-delete.json", body)
            .await;
    }

    /// A revision of the documented service running `images`.
    fn revision(&self, images: &[Image]) -> String {
        self.ecs.add_revision("my-cluster", "my-service", images)
    }
}

/// One invocation, as the Lambda runtime hands the guard its event.
async fn hook(guard: &GuardApp, event: &[u8]) -> Value {
    as_function(GUARD, imagehook_core::edge::guard::handle(guard, event)).await
}

fn reason(answer: &Value) -> String {
    answer["hookDetails"]["imagehookReason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason in {answer}"))
        .to_owned()
}

#[tokio::test]
async fn a_clean_image_lets_the_deployment_continue() {
    let s = setup().await;
    s.push("v1", &digest(1)).await;
    let revision = s.revision(&[
        Image::new("api", &format!("{REPO}:v1"), Some(&digest(1))),
        Image::new("proxy", &format!("{REPO}@{}", digest(1)), None),
    ]);
    let answer = hook(&s.guard(GuardSettings::default()), &hook_event(&revision)).await;
    assert_eq!(answer, json!({"hookStatus": "SUCCEEDED"}));
    // The revision was read as the API reference defines the call.
    let asked = s.ecs.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        asked[0].target,
        "AmazonEC2ContainerServiceV20141113.DescribeServiceRevisions"
    );
    assert_eq!(
        asked[0].content_type.as_deref(),
        Some(ecs_revisions::CONTENT_TYPE)
    );
    assert_eq!(asked[0].body, json!({"serviceRevisionArns": [revision]}));
}

#[tokio::test]
async fn a_quarantined_image_fails_the_deployment_naming_the_hold_and_is_notified() {
    let s = setup().await;
    s.push("v2", &digest(2)).await;
    s.quarantine(&digest(2), "held for the security review")
        .await;
    let capture = Capture::start().await;
    let topic = capture.sns_topic(&s.sdk).await;
    let sinks = vec![Arc::new(SnsTopic::new(sns_client(&s.sdk), &topic)) as Arc<dyn Sink>];
    let guard = s
        .guard(GuardSettings::default())
        .with_notifier(Notifier::new(
            sinks,
            NoticeKind::ALL.to_vec(),
            Duration::from_secs(5),
        ));
    let revision = s.revision(&[Image::new(
        "api",
        &format!("{REPO}@{}", digest(2)),
        Some(&digest(2)),
    )]);

    let answer = hook(&guard, &hook_event(&revision)).await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    let why = reason(&answer);
    assert!(
        why.starts_with(&format!(
            "{REPO}@{} (container api) is quarantined: manual hold since 2026-12-01T10:00:00.000000000Z: held for the security review",
            digest(2)
        )),
        "{why}"
    );

    let published: Vec<Value> = capture
        .take("/sns")
        .into_iter()
        .map(|c| serde_json::from_str(c.body["Message"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0]["kind"], "deployment-refused");
    assert_eq!(published[0]["service"], "my-cluster/my-service");
    assert_eq!(
        published[0]["image"],
        format!("{REPO}@{}", digest(2)).as_str()
    );
    assert_eq!(
        published[0]["event_id"],
        "arn:aws:ecs:us-west-2:123456789012:service-deployment/my-cluster/my-service/EZe5RNVLH6PPzHXINuP28"
    );
}

#[tokio::test]
async fn a_deleted_image_fails_the_deployment_naming_its_tombstone() {
    let s = setup().await;
    s.push("v3", &digest(3)).await;
    s.delete(&digest(3)).await;
    // The tag is gone with the digest; ECS still resolved it before the delete.
    let revision = s.revision(&[Image::new("api", &format!("{REPO}:v3"), Some(&digest(3)))]);
    let answer = hook(&s.guard(GuardSettings::default()), &hook_event(&revision)).await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    let why = reason(&answer);
    assert!(
        why.contains(&format!("{REPO}:v3@{}", digest(3)))
            && why.contains("was deleted (tombstone at 2026-12-01T11:00:00.000000000Z)"),
        "{why}"
    );
}

#[tokio::test]
async fn an_unknown_image_passes_unless_the_guard_is_strict() {
    let s = setup().await;
    let revision = s.revision(&[Image::new(
        "api",
        &format!("{REPO}@{}", digest(4)),
        Some(&digest(4)),
    )]);
    let standard = hook(&s.guard(GuardSettings::default()), &hook_event(&revision)).await;
    assert_eq!(standard, json!({"hookStatus": "SUCCEEDED"}));
    let strict = hook(
        &s.guard(settings(GuardMode::Strict, None)),
        &hook_event(&revision),
    )
    .await;
    assert_eq!(strict["hookStatus"], "FAILED", "{strict}");
    let why = reason(&strict);
    assert!(
        why.contains("is unknown to imagehook (GUARD_MODE=strict): imagehook has no record of"),
        "{why}"
    );
}

#[tokio::test]
async fn an_unreachable_store_fails_open_or_closed_as_set() {
    let s = setup().await;
    let down = unreachable_sdk().await;
    let revision = s.revision(&[Image::new("api", &format!("{REPO}@{}", digest(5)), None)]);
    let event = hook_event(&revision);
    let cases = [
        (GuardMode::Standard, None, "SUCCEEDED"),
        (GuardMode::Strict, None, "FAILED"),
        (GuardMode::Standard, Some(OnStoreError::Closed), "FAILED"),
        (GuardMode::Strict, Some(OnStoreError::Open), "SUCCEEDED"),
    ];
    for (mode, on_store_error, expected) in cases {
        let guard = s.guard_reading(&down, settings(mode, on_store_error));
        let answer = hook(&guard, &event).await;
        assert_eq!(
            answer["hookStatus"], expected,
            "{mode:?} {on_store_error:?}: {answer}"
        );
        if expected == "FAILED" {
            let why = reason(&answer);
            assert!(
                why.contains("could not be checked (GUARD_ON_STORE_ERROR=closed): GetItem failed"),
                "{why}"
            );
        }
    }
}

#[tokio::test]
async fn a_tag_without_a_digest_is_resolved_through_imagehooks_records() {
    let s = setup().await;
    s.push("v6", &digest(6)).await;
    s.push("v7", &digest(7)).await;
    s.quarantine(&digest(7), "CVE-2026-0007").await;
    // Strict: had the tag not been resolved, the image would be unknown and refused.
    let strict = s.guard(settings(GuardMode::Strict, None));
    let clean = s.revision(&[Image::new("api", &format!("{REPO}:v6"), None)]);
    assert_eq!(
        hook(&strict, &hook_event(&clean)).await,
        json!({"hookStatus": "SUCCEEDED"})
    );
    let held = s.revision(&[Image::new("api", &format!("{REPO}:v7"), None)]);
    let answer = hook(&s.guard(GuardSettings::default()), &hook_event(&held)).await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    let why = reason(&answer);
    assert!(
        why.starts_with(&format!(
            "{REPO}:v7@{} (container api) is quarantined",
            digest(7)
        )) && why.contains("CVE-2026-0007"),
        "{why}"
    );
}

#[tokio::test]
async fn a_tag_imagehook_has_no_record_of_is_resolved_at_its_registry() {
    let s = setup().await;
    let registry = Registry::start(Auth::Open);
    let pushed = registry.push("shop/web", "v8", DOCKER_MANIFEST, "guard-v8");
    let image = format!("{}/shop/web", registry.host());
    // Quarantined by digest before any push of it reached imagehook.
    let body = json!({"image": format!("{image}@{pushed}"), "quarantine": true,
                      "reason": "known bad build", "timestamp": "2026-12-01T10:00:00Z"});
    s.send(Function::Quarantine, "generic-quarantine.json", body)
        .await;
    let guard = s
        .guard(GuardSettings::default())
        .with_resolver(Arc::new(RegistryResolver::new(
            Duration::from_secs(2),
            vec![registry.host()],
            Credentials::default(),
        )));
    let revision = s.revision(&[Image::new("web", &format!("{image}:v8"), None)]);
    let answer = hook(&guard, &hook_event(&revision)).await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    let why = reason(&answer);
    assert!(
        why.starts_with(&format!(
            "{image}:v8@{pushed} (container web) is quarantined"
        )) && why.contains("known bad build"),
        "{why}"
    );
    assert!(
        registry
            .requests()
            .iter()
            .any(|r| r.path == "/v2/shop/web/manifests/v8"),
        "the registry was asked for the tag"
    );
}

#[tokio::test]
async fn a_revision_ecs_cannot_describe_fails_and_an_ecs_fault_asks_again() {
    let s = setup().await;
    let guard = s.guard(GuardSettings::default());
    let missing = "arn:aws:ecs:us-east-1:123456789012:service-revision/my-cluster/my-service/1";
    let answer = hook(&guard, &hook_event(missing)).await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    assert!(
        reason(&answer).contains(&format!(
            "ECS does not describe the service revision {missing}: MISSING"
        )),
        "{answer}"
    );

    let revision = s.revision(&[Image::new("api", &format!("{REPO}:v1"), None)]);
    s.ecs.fail_with(Some((500, "ServerException")));
    let answer = hook(&guard, &hook_event(&revision)).await;
    assert_eq!(
        answer,
        json!({"hookStatus": "IN_PROGRESS", "callBackDelay": 30})
    );
    s.ecs.fail_with(Some((400, "AccessDeniedException")));
    let answer = hook(&guard, &hook_event(&revision)).await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    assert!(
        reason(&answer).contains("ECS refused DescribeServiceRevisions: AccessDeniedException"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_malformed_event_is_answered_precisely_and_a_rollback_is_let_through() {
    let s = setup().await;
    let guard = s.guard(settings(GuardMode::Strict, None));
    let mut event: Value = serde_json::from_str(PRE_SCALE_UP).unwrap();
    event["executionDetails"]
        .as_object_mut()
        .unwrap()
        .remove("targetServiceRevisionArn");
    let answer = hook(&guard, event.to_string().as_bytes()).await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    let why = reason(&answer);
    assert!(
        why.starts_with("the hook event could not be read, so nothing was checked: the event is not a lifecycle hook event: executionDetails: missing field")
            && why.contains("targetServiceRevisionArn"),
        "{why}"
    );
    // Traffic going back to the earlier revision is never refused, nor is ECS asked.
    let answer = hook(&guard, ROLLBACK.as_bytes()).await;
    assert_eq!(answer, json!({"hookStatus": "SUCCEEDED"}));
    assert!(s.ecs.requests().is_empty());
}
