//! Deploys and rollbacks by hand against moto's ECS and DynamoDB: through the same desired
//! state as pushes, applied once however often (or however concurrently) they are asked, pinned
//! by digest, refused for quarantined and deleted digests unless forced with a reason, and
//! recorded in the history with who asked.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use imagehook_core::adapters::{DynamoStore, EcsDeployer};
use imagehook_core::app::App;
use imagehook_core::app::config::DeployMode;
use imagehook_core::edge::error::ApiError;
use imagehook_core::model::function::Function;
use imagehook_core::pipeline::manual::{
    self, DeployRequest, ManualError, ManualOutcome, ManualResult, Resolved, RollbackRequest,
};
use imagehook_tests::proxy::{Fail, Proxy, ProxyOptions};
use imagehook_tests::*;
use serde_json::{Value, json};
use tokio::sync::Barrier;

const REPO: &str = "registry.example.com/shop/api";
const ANA: &str = "arn:aws:iam::123456789012:user/ana";

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

/// A service under a rule, and an app whose DynamoDB writes go through a proxy that applies
/// them one at a time, as DynamoDB does (moto does not isolate concurrent transactions).
struct Rig {
    sdk: SdkConfig,
    proxy: Arc<Proxy>,
    table: String,
    fx: EcsFixture,
    app: Arc<App>,
}

async fn rig(rule: Value, ecs_delay: Duration) -> Rig {
    rig_leased(
        rule,
        ecs_delay,
        imagehook_core::pipeline::converge::DEFAULT_LEASE,
    )
    .await
}

async fn rig_leased(rule: Value, ecs_delay: Duration, lease: Duration) -> Rig {
    let sdk = sdk().await;
    let proxy = Arc::new(Proxy::start(
        &endpoint(),
        ProxyOptions {
            ecs_delay,
            serialize_dynamodb_writes: true,
        },
    ));
    let through = proxy.sdk().await;
    let table = create_table(&sdk).await;
    let fx = create_service(&sdk, &format!("{REPO}:v1.0.0")).await;
    let mut rule = rule;
    rule["cluster"] = json!(fx.cluster);
    rule["service"] = json!(fx.service);
    let mut config = open_config(&table, &json!([rule]).to_string(), DeployMode::Apply);
    config.lease = lease;
    let store = Arc::new(DynamoStore::new(dynamo_client(&through), &table));
    let deployer = Arc::new(EcsDeployer::new(ecs_client(&through)));
    let app = Arc::new(App::new(config, store, deployer));
    Rig {
        sdk,
        proxy,
        table,
        fx,
        app,
    }
}

async fn plain_rig() -> Rig {
    rig(
        json!({"repository": "shop/api", "tags": "v*", "container": "api", "stage": "prod"}),
        Duration::ZERO,
    )
    .await
}

impl Rig {
    fn request(&self, image: &str) -> DeployRequest {
        DeployRequest {
            cluster: self.fx.cluster.clone(),
            service: self.fx.service.clone(),
            image: image.to_owned(),
            ..DeployRequest::default()
        }
    }

    fn back(&self) -> RollbackRequest {
        RollbackRequest {
            cluster: self.fx.cluster.clone(),
            service: self.fx.service.clone(),
            ..RollbackRequest::default()
        }
    }

    async fn deploy(&self, request: DeployRequest) -> Result<ManualResult, ManualError> {
        as_function(
            CONTROL,
            Box::pin(manual::deploy(&self.app.deps(None), request, ANA)),
        )
        .await
    }

    async fn rollback(&self, request: RollbackRequest) -> Result<ManualResult, ManualError> {
        as_function(
            CONTROL,
            Box::pin(manual::rollback(&self.app.deps(None), request, ANA)),
        )
        .await
    }

    /// A push of `REPO:tag` at `digest`, made at `at`, through the generic form.
    async fn push(&self, tag: &str, digest: &str, at: &str) -> Value {
        self.send(
            Function::Push,
            json!({"image": format!("{REPO}:{tag}"), "digest": digest,
                   "id": unique("push"), "timestamp": at}),
        )
        .await
    }

    async fn send(&self, function: Function, body: Value) -> Value {
        let file = match function {
            Function::Quarantine => "generic-quarantine.json",
            Function::Delete => "generic-delete.json",
            _ => "generic-push.json",
        };
        let reply = invoke(&self.app, function, &with_body(&event_file(file), &body)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["events"][0].clone()
    }

    /// ECS's word that the rollout `deployment_id` reached `state` at `at`.
    async fn outcome(&self, deployment_id: &str, state: &str, at: &str) {
        let change = json!({
            "version": "0", "id": unique("evb"), "detail-type": "ECS Deployment State Change",
            "source": "aws.ecs", "account": "123456789012", "time": at, "region": "us-east-1",
            "resources": [format!("arn:aws:ecs:us-east-1:123456789012:service/{}/{}",
                                  self.fx.cluster, self.fx.service)],
            "detail": {"eventType": "INFO", "eventName": state, "deploymentId": deployment_id,
                       "updatedAt": at, "reason": "ECS deployment changed."}
        });
        let out = outcomes(&self.app, &change.to_string()).await.unwrap();
        assert_eq!(out["outcome"], "recorded", "{out}");
    }

    /// The image the service's app container runs now, as ECS describes it.
    async fn runs(&self) -> String {
        container_image(&running(&self.sdk, &self.fx).await.task_definition, "api")
    }

    /// How many revisions of the family run `image` in the app container.
    async fn revisions_running(&self, image: &str) -> usize {
        let ecs = aws_sdk_ecs::Client::new(&self.sdk);
        let arns = ecs
            .list_task_definitions()
            .family_prefix(&self.fx.family)
            .send()
            .await
            .unwrap()
            .task_definition_arns()
            .to_vec();
        let mut n = 0;
        for arn in arns {
            let td = ecs
                .describe_task_definition()
                .task_definition(&arn)
                .send()
                .await
                .unwrap();
            if container_image(td.task_definition().unwrap(), "api") == image {
                n += 1;
            }
        }
        n
    }

    /// The repository's history, newest first, of every stage.
    async fn history(&self) -> Vec<Value> {
        let (status, body) = images_api(&self.app, REPO, None).await;
        assert_eq!(status, 200, "{body}");
        body["history"].as_array().unwrap().clone()
    }
}

fn pinned(d: &str) -> String {
    format!("{REPO}@{d}")
}

fn status_of(e: ManualError) -> u16 {
    ApiError::from(e).status().as_u16()
}

#[tokio::test]
async fn a_deploy_by_digest_applies_once_and_its_retry_is_a_duplicate() {
    let r = plain_rig().await;
    let before = revisions(&r.sdk, &r.fx).await;
    let first = r.deploy(r.request(&pinned(&digest(1)))).await.unwrap();
    assert_eq!(first.outcome, ManualOutcome::Applied, "{first:?}");
    assert_eq!(first.resolved_from, Resolved::Request);
    assert_eq!(first.by, ANA);
    let d = first.deployment.clone().unwrap();
    assert_eq!(d.outcome.as_str(), "updated", "{d:?}");
    assert_eq!(r.runs().await, pinned(&digest(1)));
    assert_eq!(revisions(&r.sdk, &r.fx).await, before + 1);

    // The same request again (no id: derived from its content) is that request, not another.
    let again = r.deploy(r.request(&pinned(&digest(1)))).await.unwrap();
    assert_eq!(again.outcome, ManualOutcome::Duplicate, "{again:?}");
    assert_eq!(again.request_id, first.request_id);
    assert_eq!(
        again.deployment.map(|d| d.task_definition),
        first.deployment.map(|d| d.task_definition),
        "the first answer, kept"
    );
    // An explicit id, sent twice, and then reused for something else.
    let mut named = r.request(&pinned(&digest(2)));
    named.request_id = Some("ci-4711".into());
    assert_eq!(
        r.deploy(named.clone()).await.unwrap().outcome,
        ManualOutcome::Applied
    );
    assert_eq!(
        r.deploy(named.clone()).await.unwrap().outcome,
        ManualOutcome::Duplicate
    );
    named.image = pinned(&digest(3));
    let reused = r.deploy(named).await.unwrap_err();
    assert!(
        matches!(&reused, ManualError::RequestReused { .. }),
        "{reused}"
    );
    assert_eq!(status_of(reused), 409);
    assert_eq!(r.runs().await, pinned(&digest(2)));
    assert_eq!(
        revisions(&r.sdk, &r.fx).await,
        before + 2,
        "one revision per request, none for a retry"
    );

    let history = r.history().await;
    let entry = &history[0];
    assert_eq!(
        (&entry["kind"], &entry["outcome"], &entry["by"]),
        (&json!("deploy"), &json!("applied"), &json!(ANA)),
        "{entry}"
    );
    assert_eq!(entry["event"], "manual#ci-4711");
    assert_eq!(entry["services"][0]["outcome"], "updated");
}

#[tokio::test]
async fn a_deploy_by_tag_pins_the_digest_the_tag_names_even_against_a_newer_only_rule() {
    let r = rig(
        json!({"repository": "shop/api", "tags": "semver:^1", "newer_only": true,
               "container": "api", "stage": "prod"}),
        Duration::ZERO,
    )
    .await;
    r.push("1.5.0", &digest(3), "2026-11-20T10:00:00Z").await;
    r.push("1.6.0", &digest(4), "2026-11-20T11:00:00Z").await;
    assert_eq!(r.runs().await, pinned(&digest(4)));

    let back = r.deploy(r.request(&format!("{REPO}:1.5.0"))).await.unwrap();
    assert_eq!(back.outcome, ManualOutcome::Applied, "{back:?}");
    assert_eq!(back.resolved_from, Resolved::TagRecord);
    assert_eq!(
        (back.digest.as_str(), back.tag.as_deref()),
        (digest(3).as_str(), Some("1.5.0"))
    );
    assert_eq!(
        r.runs().await,
        pinned(&digest(3)),
        "pinned by digest; newer-only judges pushes, not requests"
    );
    let unknown = r
        .deploy(r.request(&format!("{REPO}:9.9.9")))
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, ManualError::Unresolved { .. }),
        "{unknown}"
    );
    assert_eq!(status_of(unknown), 422);
    let elsewhere = r
        .deploy(DeployRequest {
            service: "not-a-target".into(),
            ..r.request(&pinned(&digest(3)))
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(elsewhere), 404);
    let bad = r.deploy(r.request("Not A Reference")).await.unwrap_err();
    assert_eq!(status_of(bad), 422);
}

#[tokio::test]
async fn quarantined_and_deleted_digests_are_refused_unless_forced_and_the_force_is_recorded() {
    let r = plain_rig().await;
    r.push("v1.1.0", &digest(5), "2026-11-20T10:00:00Z").await;
    r.push("v1.2.0", &digest(6), "2026-11-20T10:05:00Z").await;
    r.send(
        Function::Quarantine,
        json!({"image": pinned(&digest(5)), "quarantine": true,
               "reason": "CVE-2026-0001", "timestamp": "2026-11-20T10:10:00Z"}),
    )
    .await;
    r.send(
        Function::Delete,
        json!({"image": pinned(&digest(6)), "action": "delete", "id": unique("delete"),
               "timestamp": "2026-11-20T10:15:00Z"}),
    )
    .await;
    let runs = r.runs().await;
    let before = revisions(&r.sdk, &r.fx).await;

    let held = r.deploy(r.request(&pinned(&digest(5)))).await.unwrap_err();
    assert!(
        matches!(&held, ManualError::Quarantined { reason, .. } if reason.contains("CVE-2026-0001")),
        "{held}"
    );
    assert_eq!(status_of(held), 409);
    let gone = r.deploy(r.request(&pinned(&digest(6)))).await.unwrap_err();
    assert!(matches!(&gone, ManualError::Deleted { .. }), "{gone}");
    assert_eq!(status_of(gone), 409);
    let unexplained = r
        .deploy(DeployRequest {
            force: true,
            ..r.request(&pinned(&digest(5)))
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(unexplained), 400, "force needs a reason");
    assert_eq!(r.runs().await, runs, "nothing refused reached ECS");
    assert_eq!(revisions(&r.sdk, &r.fx).await, before);

    let forced = r
        .deploy(DeployRequest {
            force: true,
            reason: Some("the CVE needs a kernel we do not run".into()),
            ..r.request(&pinned(&digest(5)))
        })
        .await
        .unwrap();
    assert_eq!(forced.outcome, ManualOutcome::Applied, "{forced:?}");
    assert_eq!(r.runs().await, pinned(&digest(5)));
    let entry = r
        .history()
        .await
        .into_iter()
        .find(|e| e["kind"] == "deploy")
        .unwrap();
    assert_eq!(entry["by"], ANA, "{entry}");
    assert_eq!(entry["forced_over"], "digest is quarantined: CVE-2026-0001");
    assert_eq!(
        entry["force_reason"],
        "the CVE needs a kernel we do not run"
    );
    assert_eq!(entry["digest"], digest(5));
}

#[tokio::test]
async fn a_rollback_returns_to_the_last_digest_that_completed_before_the_current_one() {
    let r = plain_rig().await;
    let a = r.push("v1.1.0", &digest(7), "2026-11-20T10:00:00Z").await;
    let id = |e: &Value| {
        e["deployments"][0]["ecs_deployment_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    r.outcome(
        &id(&a),
        "SERVICE_DEPLOYMENT_COMPLETED",
        "2026-11-20T10:05:00Z",
    )
    .await;
    let b = r.push("v1.2.0", &digest(8), "2026-11-20T11:00:00Z").await;
    r.outcome(
        &id(&b),
        "SERVICE_DEPLOYMENT_COMPLETED",
        "2026-11-20T11:05:00Z",
    )
    .await;
    // The newest push never completes (still rolling out).
    let c = r.push("v1.3.0", &digest(9), "2026-11-20T12:00:00Z").await;
    r.outcome(
        &id(&c),
        "SERVICE_DEPLOYMENT_IN_PROGRESS",
        "2026-11-20T12:01:00Z",
    )
    .await;
    assert_eq!(r.runs().await, pinned(&digest(9)));

    let back = r.rollback(r.back()).await.unwrap();
    assert_eq!(back.outcome, ManualOutcome::Applied, "{back:?}");
    assert_eq!(back.resolved_from, Resolved::Deployments);
    assert_eq!(back.digest, digest(8));
    assert_eq!(back.rolled_back_from.as_deref(), Some(digest(9).as_str()));
    assert_eq!(r.runs().await, pinned(&digest(8)));
    let again = r.rollback(r.back()).await.unwrap();
    assert_eq!(
        again.outcome,
        ManualOutcome::Duplicate,
        "the same rollback again is not a second step back"
    );
    assert_eq!(r.runs().await, pinned(&digest(8)));

    // The rollback's own rollout completes; a second rollback, asked for as such, goes to the
    // digest that completed before: never to 9, which did not.
    let own = back.deployment.unwrap().ecs_deployment_id.unwrap();
    r.outcome(&own, "SERVICE_DEPLOYMENT_COMPLETED", "2026-11-20T12:10:00Z")
        .await;
    let second = r
        .rollback(RollbackRequest {
            request_id: Some("second-step".into()),
            ..r.back()
        })
        .await
        .unwrap();
    assert_eq!(second.digest, digest(7), "{second:?}");
    assert_eq!(r.runs().await, pinned(&digest(7)));

    let status = as_function(
        CONTROL,
        manual::status(&r.app.deps(None), &r.fx.cluster, &r.fx.service),
    )
    .await
    .unwrap();
    let status = serde_json::to_value(status).unwrap();
    assert_eq!(status["running"]["digest"], digest(7), "{status}");
    assert_eq!(status["desired"]["by_hand"], true);
    assert_eq!(status["in_sync"], true);
    assert_eq!(status["rollback_to"]["image"], pinned(&digest(8)));
    assert_eq!(status["deployments"][0]["image"], pinned(&digest(7)));
    let entry = &r.history().await[0];
    assert_eq!(
        (&entry["kind"], &entry["rolled_back_from"]),
        (&json!("rollback"), &json!(digest(8))),
        "{entry}"
    );

    // A push made after the rollback supersedes it, as any newer push does.
    let later = r.push("v1.4.0", &digest(10), &now_rfc3339()).await;
    assert_eq!(later["deployments"][0]["outcome"], "updated", "{later}");
    assert_eq!(r.runs().await, pinned(&digest(10)));
}

#[tokio::test]
async fn a_rollback_with_nothing_completed_before_is_refused() {
    let r = plain_rig().await;
    let none = r.rollback(r.back()).await.unwrap_err();
    assert!(
        matches!(&none, ManualError::NothingToRollBack { why, .. } if why.contains("no record")),
        "{none}"
    );
    let a = r.push("v1.1.0", &digest(11), "2026-11-20T10:00:00Z").await;
    let id = |e: &Value| {
        e["deployments"][0]["ecs_deployment_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    r.outcome(
        &id(&a),
        "SERVICE_DEPLOYMENT_IN_PROGRESS",
        "2026-11-20T10:01:00Z",
    )
    .await;
    let only = r.rollback(r.back()).await.unwrap_err();
    assert!(
        matches!(&only, ManualError::NothingToRollBack { why, .. } if why.contains(&digest(11))),
        "{only}"
    );
    // A newer push that fails: ECS returns the service to 11, and a failed rollout never counts
    // as one to return to, so there is still nothing completed before what runs.
    let b = r.push("v1.2.0", &digest(12), "2026-11-20T11:00:00Z").await;
    r.outcome(&id(&b), "SERVICE_DEPLOYMENT_FAILED", "2026-11-20T11:05:00Z")
        .await;
    let after_failure = r
        .rollback(RollbackRequest {
            request_id: Some("after-failure".into()),
            ..r.back()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&after_failure, ManualError::NothingToRollBack { why, .. } if why.contains(&digest(11))),
        "{after_failure}"
    );
    assert_eq!(status_of(after_failure), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deploys_by_hand_and_pushes_stay_exactly_once() {
    let r = rig(
        json!({"repository": "shop/api", "tags": "v*", "container": "api", "stage": "prod"}),
        Duration::from_millis(300),
    )
    .await;
    let r = Arc::new(r);
    let wanted = pinned(&digest(20));
    let copies = 4;
    let pushes = 3;
    let gate = Arc::new(Barrier::new(copies + pushes));
    let mut tasks = Vec::new();
    for _ in 0..copies {
        let (r, gate) = (Arc::clone(&r), Arc::clone(&gate));
        tasks.push(tokio::spawn(async move {
            let mut request = r.request(&pinned(&digest(20)));
            request.request_id = Some("together".into());
            gate.wait().await;
            let answer = r.deploy(request).await.unwrap();
            json!(answer.outcome)
        }));
    }
    for n in 0..pushes {
        let (r, gate) = (Arc::clone(&r), Arc::clone(&gate));
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let at = format!("2026-11-20T10:0{n}:00Z");
            r.push(&format!("v1.{n}.0"), &digest(21 + n as u32), &at)
                .await["deployments"][0]["outcome"]
                .clone()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(
        r.runs().await,
        wanted,
        "the request is newer than every push: {outcomes:?}"
    );
    assert_eq!(
        r.revisions_running(&wanted).await,
        1,
        "applied once: {outcomes:?}"
    );
    for n in 0..pushes {
        assert!(r.revisions_running(&pinned(&digest(21 + n as u32))).await <= 1);
    }
    // Copies of one request are that request: one applies it or each is queued behind the
    // holder that does; none is superseded by itself.
    assert!(
        outcomes[..copies]
            .iter()
            .all(|o| *o == json!("queued") || *o == json!("applied")),
        "{outcomes:?}"
    );
    assert!(
        outcomes[..copies]
            .iter()
            .filter(|o| **o == json!("applied"))
            .count()
            <= 1,
        "{outcomes:?}"
    );

    // Whatever each copy was told, a retry now changes nothing in ECS.
    let updates = r.proxy.count("UpdateService");
    let mut retry = r.request(&wanted);
    retry.request_id = Some("together".into());
    let answer = r.deploy(retry).await.unwrap();
    assert!(
        matches!(
            answer.outcome,
            ManualOutcome::Duplicate | ManualOutcome::Applied
        ),
        "{answer:?}"
    );
    assert_eq!(r.proxy.count("UpdateService"), updates, "{answer:?}");
    assert_eq!(r.revisions_running(&wanted).await, 1);
    let current = get_item(
        &r.sdk,
        &r.table,
        &format!("SVC#{}/{}", r.fx.cluster, r.fx.service),
        "CURRENT",
    )
    .await
    .unwrap();
    assert_eq!(current["desired_event"], "manual#together", "{current}");
    assert_eq!(current["applied_event"], "manual#together", "{current}");
    let entry = r
        .history()
        .await
        .into_iter()
        .find(|e| e["event"] == "manual#together")
        .unwrap();
    assert_ne!(
        entry["services"][0]["outcome"], "queued",
        "the history says what was applied: {entry}"
    );
}

fn now_rfc3339() -> String {
    imagehook_core::model::event::Timestamp::now()
        .as_str()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_for_different_digests_leave_the_last_asked_running_once() {
    let r = Arc::new(
        rig(
            json!({"repository": "shop/api", "tags": "v*", "container": "api", "stage": "prod"}),
            Duration::from_millis(300),
        )
        .await,
    );
    let asked: Vec<(String, u32)> = (0..3).map(|n| (format!("distinct-{n}"), 30 + n)).collect();
    let gate = Arc::new(Barrier::new(asked.len() + 2));
    let mut tasks = Vec::new();
    for (id, n) in asked.clone() {
        let (r, gate) = (Arc::clone(&r), Arc::clone(&gate));
        tasks.push(tokio::spawn(async move {
            let mut request = r.request(&pinned(&digest(n)));
            request.request_id = Some(id);
            gate.wait().await;
            json!(r.deploy(request).await.unwrap().outcome)
        }));
    }
    for n in 0..2u32 {
        let (r, gate) = (Arc::clone(&r), Arc::clone(&gate));
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            r.push(
                &format!("v2.{n}.0"),
                &digest(40 + n),
                &format!("2026-11-20T10:0{n}:00Z"),
            )
            .await["deployments"][0]["outcome"]
                .clone()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    // The request asked last (by its recorded order) is what the service should run and runs.
    let mut orders = Vec::new();
    for (id, n) in &asked {
        let item = get_item(&r.sdk, &r.table, &format!("EVT#manual#{id}"), "EVT")
            .await
            .unwrap();
        orders.push((item["order"].as_str().unwrap().to_owned(), id.clone(), *n));
    }
    orders.sort();
    let (_, last, n) = orders.last().unwrap().clone();
    let current = get_item(
        &r.sdk,
        &r.table,
        &format!("SVC#{}/{}", r.fx.cluster, r.fx.service),
        "CURRENT",
    )
    .await
    .unwrap();
    assert_eq!(
        current["desired_event"],
        format!("manual#{last}"),
        "{outcomes:?}"
    );
    assert_eq!(current["applied_event"], format!("manual#{last}"));
    assert_eq!(r.runs().await, pinned(&digest(n)), "{outcomes:?}");
    assert_eq!(r.revisions_running(&pinned(&digest(n))).await, 1);
    for d in (30..33).chain(40..42) {
        assert!(
            r.revisions_running(&pinned(&digest(d))).await <= 1,
            "{d}: {outcomes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_whose_holder_died_is_finished_once_by_its_retry() {
    let lease = Duration::from_secs(2);
    let r = Arc::new(
        rig_leased(
            json!({"repository": "shop/api", "tags": "v*", "container": "api", "stage": "prod"}),
            Duration::ZERO,
            lease,
        )
        .await,
    );
    let wanted = pinned(&digest(50));
    let mut request = r.request(&wanted);
    request.request_id = Some("dies-at-ecs".into());
    // The first attempt registers the revision, then dies waiting for UpdateService (a Lambda
    // timeout, say): its request record stays pending, its lease held.
    r.proxy.fail_next("UpdateService", Fail::Hang);
    let first = {
        let (r, request) = (Arc::clone(&r), request.clone());
        tokio::spawn(async move { r.deploy(request).await })
    };
    let patience = std::time::Instant::now();
    while !r.proxy.calls().iter().any(|c| c == "UpdateService") {
        assert!(
            patience.elapsed() < Duration::from_secs(30),
            "UpdateService never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.abort();
    assert!(matches!(first.await, Err(e) if e.is_cancelled()));
    assert_ne!(r.runs().await, wanted);
    let pending = get_item(&r.sdk, &r.table, "EVT#manual#dies-at-ecs", "EVT")
        .await
        .unwrap();
    assert_eq!(pending["status"], "pending", "{pending}");

    // A retry while the dead holder's lease lasts is queued behind it; once it expired, the
    // retry takes over and finishes the request with the revision already registered.
    let early = r.deploy(request.clone()).await.unwrap();
    assert_eq!(early.outcome, ManualOutcome::Queued, "{early:?}");
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let retry = r.deploy(request.clone()).await.unwrap();
    assert_eq!(retry.outcome, ManualOutcome::Applied, "{retry:?}");
    assert_eq!(r.runs().await, wanted);
    assert_eq!(
        r.proxy.count("RegisterTaskDefinition"),
        1,
        "{:?}",
        r.proxy.calls()
    );
    assert_eq!(r.revisions_running(&wanted).await, 1);
    let done = r.deploy(request).await.unwrap();
    assert_eq!(done.outcome, ManualOutcome::Duplicate, "{done:?}");
}

/// The control API in AWS: deploys and rollbacks through the IAM-authorized routes, with the
/// signed caller's principal ARN as who asked; bad bodies and unsigned requests refused by name
/// before anything is read or written.
#[tokio::test]
async fn the_signed_routes_deploy_roll_back_and_refuse_by_name() {
    const ARN: &str = "arn:aws:iam::123456789012:user/ops-bot";
    let r = plain_rig().await;
    r.push("v1.1.0", &digest(7), "2026-11-20T10:00:00Z").await;
    r.send(
        Function::Quarantine,
        json!({"image": pinned(&digest(7)), "quarantine": true,
               "reason": "CVE-2026-0002", "timestamp": "2026-11-20T10:10:00Z"}),
    )
    .await;
    let base = format!("/services/{}/{}", r.fx.cluster, r.fx.service);
    let deploy = format!("{base}/deploy");
    let before = revisions(&r.sdk, &r.fx).await;
    let call =
        |method: &'static str, path: String, body: Option<String>, who: Option<&'static str>| {
            let app = r.app.clone();
            async move { control_api(&app, method, &path, body.as_deref(), who).await }
        };

    let asked = json!({"image": pinned(&digest(8))}).to_string();
    let (status, body) = call("POST", deploy.clone(), Some(asked.clone()), None).await;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("unsigned")),
        "{body}"
    );
    for (bad, field) in [
        (json!({"image": pinned(&digest(8)), "forse": true}), "forse"),
        (json!({"image": 7}), "image"),
    ] {
        let (status, body) = call("POST", deploy.clone(), Some(bad.to_string()), Some(ARN)).await;
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("invalid_request")),
            "{body}"
        );
        assert!(body["message"].as_str().unwrap().contains(field), "{body}");
    }
    let (status, _) = call("POST", deploy.clone(), Some(String::new()), Some(ARN)).await;
    assert_eq!(status, 400, "a deploy names its image");
    let huge = json!({"image": "x".repeat(20_000)}).to_string();
    let (status, body) = call("POST", deploy.clone(), Some(huge), Some(ARN)).await;
    assert_eq!(
        (status, &body["error"]),
        (413, &json!("payload_too_large")),
        "{body}"
    );
    let quarantined = json!({"image": pinned(&digest(7))}).to_string();
    let (status, body) = call("POST", deploy.clone(), Some(quarantined), Some(ARN)).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("quarantined")),
        "{body}"
    );
    let (status, body) = call("POST", format!("{base}/rollback"), None, Some(ARN)).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("nothing_to_roll_back")),
        "{body}"
    );
    let (status, _) = call(
        "POST",
        "/services/prod/nowhere/deploy".into(),
        Some(asked.clone()),
        Some(ARN),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        revisions(&r.sdk, &r.fx).await,
        before,
        "nothing refused reached ECS"
    );

    let (status, done) = call("POST", deploy.clone(), Some(asked.clone()), Some(ARN)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (&done["outcome"], &done["by"]),
        (&json!("applied"), &json!(ARN)),
        "{done}"
    );
    assert_eq!(r.runs().await, pinned(&digest(8)));
    // API Gateway's retry of the same request: the first answer, nothing applied again.
    let (status, again) = call("POST", deploy.clone(), Some(asked), Some(ARN)).await;
    assert_eq!(
        (status, &again["outcome"]),
        (200, &json!("duplicate")),
        "{again}"
    );
    assert_eq!(revisions(&r.sdk, &r.fx).await, before + 1);

    let (status, seen) = call("GET", base.clone(), None, Some(ARN)).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["cluster"], json!(r.fx.cluster), "{seen}");
    let (status, _) = call("DELETE", base, None, Some(ARN)).await;
    assert_eq!(status, 405);
}
