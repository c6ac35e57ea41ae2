//! The fault matrix (docs/reliability.md, "Faults and retries"): DynamoDB and ECS failing
//! before, during and after the writes of a push, and throttling, injected on the real SDK
//! clients against moto. For each: the status tells the sender whether to retry, nothing is
//! half-written, and the retried delivery converges to exactly one rollout of the service.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use imagehook_core::adapters::DynamoStore;
use imagehook_core::adapters::EcsDeployer;
use imagehook_core::app::App;
use imagehook_core::app::config::DeployMode;
use imagehook_core::model::function::Function;
use imagehook_tests::faults::{Answer, Faults, Phase};
use imagehook_tests::*;
use serde_json::{Map, Value, json};

const REPO: &str = "contoso.azurecr.io/shop/api";
const DIGEST: &str = "sha256:4b825dc642cb6eb9a060e54bf8d69288fbee4904b3f2e7c1d0a7f1e6c5b4a392";
const EVENT_ID: &str = "7f3c2a10-5b6e-4c1d-9e8f-0a1b2c3d4e5f";

struct Faulty {
    w: World,
    dynamo: Faults,
    ecs: Faults,
    app: App,
}

/// The production retry policy (three attempts), with short backoffs so the suite stays quick.
fn retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(20))
}

async fn faulty() -> Faulty {
    let w = world(&format!("{REPO}:v1.4.1")).await;
    let (dynamo, ecs) = (Faults::default(), Faults::default());
    let d = aws_sdk_dynamodb::config::Builder::from(&w.sdk)
        .interceptor(dynamo.clone())
        .retry_config(retries())
        .build();
    let e = aws_sdk_ecs::config::Builder::from(&w.sdk)
        .interceptor(ecs.clone())
        .retry_config(retries())
        .build();
    let rules = json!([{"repository": REPO, "tags": "v*", "cluster": w.fx.cluster,
                        "service": w.fx.service}]);
    let app = App::new(
        open_config(&w.table, &rules.to_string(), DeployMode::Apply),
        Arc::new(DynamoStore::new(dynamo_client_from(d), &w.table)),
        Arc::new(EcsDeployer::new(ecs_client_from(e))),
    );
    Faulty {
        w,
        dynamo,
        ecs,
        app,
    }
}

impl Faulty {
    /// Arms a fault on the transaction that records events (and, later, their deployments).
    fn arm_write(&self, phase: Phase, answer: Answer, skip: u32, times: u32) {
        self.dynamo
            .arm("TransactWriteItems", phase, answer, skip, times);
    }

    /// A push that the armed fault turns into a 503, after striking `struck` (every attempt).
    async fn push_refused(&self, faults: &Faults, struck: &str) {
        let reply = self.push().await;
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.body["error"], "unavailable");
        assert_eq!(faults.struck(), [struck; 3]);
    }

    async fn push(&self) -> Reply {
        invoke(&self.app, Function::Push, &event_file("acr-push.json")).await
    }

    async fn items(&self) -> Vec<Map<String, Value>> {
        all_items(&self.w.sdk, &self.w.table).await
    }

    async fn receipt_status(&self) -> Option<Value> {
        self.w
            .item(&format!("EVT#acr#{EVENT_ID}"), "EVT")
            .await
            .map(|r| r["status"].clone())
    }

    /// Revisions of the service's family, the original included.
    async fn revisions(&self) -> usize {
        aws_sdk_ecs::Client::new(&self.w.sdk)
            .list_task_definitions()
            .family_prefix(&self.w.fx.family)
            .send()
            .await
            .unwrap()
            .task_definition_arns()
            .len()
    }

    async fn runs(&self) -> String {
        container_image(
            &running(&self.w.sdk, &self.w.fx).await.task_definition,
            "api",
        )
    }

    async fn untouched(&self) {
        assert_eq!(self.runs().await, format!("{REPO}:v1.4.1"));
    }

    /// Where every retry must end: the service runs the pushed digest, one deployment record
    /// says so, and the receipt is done.
    async fn converged(&self) {
        assert_eq!(self.runs().await, format!("{REPO}@{DIGEST}"));
        let deployments: Vec<_> = self
            .items()
            .await
            .into_iter()
            .filter(|i| i["type"] == "deployment")
            .collect();
        assert_eq!(deployments.len(), 1, "{deployments:?}");
        assert_eq!(self.receipt_status().await, Some(json!("done")));
        // A further redelivery changes nothing.
        let again = self.push().await;
        assert_eq!(again.status, 200, "{}", again.body);
        assert_eq!(again.body["events"][0]["outcome"], "duplicate");
        assert_eq!(again.body["events"][0]["deployments"], json!([]));
    }
}

fn deployed(reply: &Reply, outcome: &str) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let e = &reply.body["events"][0];
    assert_eq!(e["outcome"], outcome, "{e}");
    assert_eq!(e["deployments"][0]["outcome"], "updated", "{e}");
}

/// DynamoDB unreachable, or throttling past the SDK's three attempts, for the record's write:
/// 503, nothing written, nothing deployed.
#[tokio::test]
async fn dynamodb_unreachable_or_throttled_before_the_write() {
    for answer in [Answer::Unreachable, Answer::Throttled] {
        let f = faulty().await;
        f.arm_write(Phase::Before, answer, 0, 3);
        f.push_refused(&f.dynamo, "TransactWriteItems:Before").await;
        assert!(f.items().await.is_empty(), "{answer:?}");
        f.untouched().await;
        deployed(&f.push().await, "applied");
        f.converged().await;
    }
}

/// Throttled once: the SDK's retry absorbs it and the sender never knows.
#[tokio::test]
async fn dynamodb_throttled_once_is_absorbed() {
    let f = faulty().await;
    f.arm_write(Phase::Before, Answer::Throttled, 0, 1);
    f.ecs
        .arm("DescribeServices", Phase::Before, Answer::Throttled, 0, 1);
    deployed(&f.push().await, "applied");
    assert_eq!(
        (f.dynamo.struck().len(), f.ecs.struck().len()),
        (1, 1),
        "both throttles happened"
    );
    f.converged().await;
}

/// The record was written but every answer was lost: the sender gets 503 and retries; the
/// receipt, pending, makes the retry a duplicate that completes the deployment.
#[tokio::test]
async fn dynamodb_fails_after_the_write_on_every_attempt() {
    let f = faulty().await;
    f.arm_write(Phase::After, Answer::ServerError, 0, 3);
    f.push_refused(&f.dynamo, "TransactWriteItems:After").await;
    assert_eq!(f.receipt_status().await, Some(json!("pending")));
    f.untouched().await;
    deployed(&f.push().await, "duplicate");
    f.converged().await;
}

/// The record was written and its answer lost once: the SDK's retry finds its own receipt, and
/// the delivery still deploys exactly once.
#[tokio::test]
async fn dynamodb_fails_after_the_write_once() {
    let f = faulty().await;
    f.arm_write(Phase::After, Answer::ServerError, 0, 1);
    let first = f.push().await;
    assert_eq!(f.dynamo.struck(), ["TransactWriteItems:After"]);
    assert_eq!(first.status, 200, "{}", first.body);
    // DynamoDB honours the ClientRequestToken the SDK puts on the retried transaction and
    // answers it as a success ("applied"); moto does not, so the retry is refused on the
    // receipt's condition and the delivery finds its own pending receipt ("duplicate"). Either
    // way the deployment is completed once, in this delivery.
    let outcome = first.body["events"][0]["outcome"].as_str().unwrap();
    assert!(matches!(outcome, "applied" | "duplicate"), "{outcome}");
    assert_eq!(
        first.body["events"][0]["deployments"][0]["outcome"],
        "updated"
    );
    f.converged().await;
}

/// DynamoDB fails between the rollout and its record: ECS already moved the service. The retry
/// finds the service on the digest and records it, without a second rollout.
#[tokio::test]
async fn dynamodb_fails_between_the_rollout_and_its_record() {
    let f = faulty().await;
    // The third write: after the event's record and the service's proposal and lease.
    f.arm_write(Phase::Before, Answer::Unreachable, 2, 3);
    f.push_refused(&f.dynamo, "TransactWriteItems:Before").await;
    assert_eq!(f.receipt_status().await, Some(json!("pending")));
    assert_eq!(f.runs().await, format!("{REPO}@{DIGEST}"));
    let revisions = f.revisions().await;
    let retried = f.push().await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body["events"][0]["outcome"], "duplicate");
    assert_eq!(
        f.revisions().await,
        revisions,
        "no second revision is registered"
    );
    f.converged().await;
}

/// ECS refuses UpdateService after RegisterTaskDefinition succeeded: 503, the service still
/// runs the old revision, the new one is left unused; the retry moves the service once.
#[tokio::test]
async fn ecs_update_fails_after_the_revision_is_registered() {
    let f = faulty().await;
    f.ecs
        .arm("UpdateService", Phase::Before, Answer::ServerError, 0, 3);
    f.push_refused(&f.ecs, "UpdateService:Before").await;
    assert_eq!(f.receipt_status().await, Some(json!("pending")));
    f.untouched().await;
    assert_eq!(f.revisions().await, 2, "the copy was registered");
    deployed(&f.push().await, "duplicate");
    assert_eq!(
        f.revisions().await,
        3,
        "the retry registers its own copy; the orphan stays"
    );
    f.converged().await;
}
