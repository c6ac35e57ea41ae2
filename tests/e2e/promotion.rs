//! Held deployments against moto: approvals (one, two, concurrent, denied, expired,
//! superseded, cancelled by a quarantine) and stages in order (dev -> staging -> prod with a
//! soak), with ECS deployment outcomes fed through the outcomes function as EventBridge
//! delivers them. The app reaches DynamoDB through the write-serialising proxy: DynamoDB
//! applies each conditional write atomically, moto does not.

use std::time::Duration;

use aws_config::SdkConfig;
use imagehook_core::app::App;
use imagehook_core::model::function::Function;
use imagehook_core::model::records::GateStatus;
use imagehook_core::pipeline::PipelineError;
use imagehook_core::pipeline::approve::{Decision, DecisionError};
use imagehook_tests::proxy::Proxy;
use imagehook_tests::*;
use serde_json::{Value, json};

const REPO: &str = "registry.example.com/shop/api";

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

struct Stage {
    name: &'static str,
    fx: EcsFixture,
}

struct Setup {
    sdk: SdkConfig,
    _proxy: Proxy,
    table: String,
    stages: Vec<Stage>,
    app: App,
}

/// One service per stage, each with its own rule fields (`approval`, `after`, `soak`).
async fn setup(stages: &[(&'static str, Value)]) -> Setup {
    let sdk = sdk().await;
    let proxy = Proxy::atomic_writes();
    let through = proxy.sdk().await;
    let table = create_table(&sdk).await;
    let mut made = Vec::new();
    let mut rules = Vec::new();
    for (name, extra) in stages {
        let fx = create_service(&sdk, &format!("{REPO}:v1.0.0")).await;
        let mut rule = json!({"repository": REPO, "tags": "v*", "cluster": fx.cluster,
                              "service": fx.service, "container": "api", "stage": name});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                rule[k] = v.clone();
            }
        }
        rules.push(rule);
        made.push(Stage { name, fx });
    }
    let app = open_app(&through, &table, &Value::Array(rules).to_string());
    Setup {
        sdk,
        _proxy: proxy,
        table,
        stages: made,
        app,
    }
}

impl Setup {
    fn stage(&self, name: &str) -> &EcsFixture {
        &self.stages.iter().find(|s| s.name == name).unwrap().fx
    }

    async fn push(&self, n: u32, tag: &str, at: &str) -> Value {
        let body = json!({"image": format!("{REPO}:{tag}"), "digest": digest(n),
                          "id": format!("push-{n}-{at}"), "timestamp": at});
        let reply = invoke(
            &self.app,
            Function::Push,
            &with_body(&event_file("generic-quarantine.json"), &body),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["events"][0].clone()
    }

    async fn quarantine(&self, n: u32, at: &str) -> Value {
        let body = json!({"image": format!("{REPO}@{}", digest(n)), "quarantine": true,
                          "reason": "CVE under review", "timestamp": at});
        let reply = invoke(
            &self.app,
            Function::Quarantine,
            &with_body(&event_file("generic-quarantine.json"), &body),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["events"][0].clone()
    }

    /// The push's deployment to `stage`'s service.
    fn deployment<'a>(&self, pushed: &'a Value, stage: &str) -> &'a Value {
        let svc = &self.stage(stage).service;
        pushed["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["service"] == svc.as_str())
            .unwrap_or_else(|| panic!("no deployment to {stage} in {pushed}"))
    }

    async fn runs(&self, stage: &str) -> String {
        container_image(
            &running(&self.sdk, self.stage(stage)).await.task_definition,
            "api",
        )
    }

    /// An ECS deployment state change of `stage`'s service, through the outcomes function.
    async fn outcome(&self, stage: &str, deployment_id: &str, name: &str) -> Value {
        let fx = self.stage(stage);
        let event = json!({
            "version": "0", "id": unique("evb"), "detail-type": "ECS Deployment State Change",
            "source": "aws.ecs", "account": "123456789012", "time": "2026-11-20T10:15:30Z",
            "region": "us-east-1",
            "resources": [format!("arn:aws:ecs:us-east-1:123456789012:service/{}/{}",
                                  fx.cluster, fx.service)],
            "detail": {"eventType": "INFO", "eventName": name, "deploymentId": deployment_id,
                       "updatedAt": "2026-11-20T10:15:28Z", "reason": "tasks failed to start"}
        });
        outcomes(&self.app, &event.to_string()).await.unwrap()
    }

    async fn approve(&self, id: &str, by: &str) -> Result<Value, DecisionError> {
        self.decide(id, Decision::Approve, by).await
    }

    async fn decide(&self, id: &str, d: Decision, by: &str) -> Result<Value, DecisionError> {
        match as_function(CONTROL, self.app.decide(id, d, by)).await {
            Ok(r) => Ok(serde_json::to_value(&r).unwrap()),
            Err(PipelineError::Decision(e)) => Err(e),
            Err(e) => panic!("{e}"),
        }
    }

    async fn waiting(&self) -> Vec<Value> {
        serde_json::to_value(as_function(CONTROL, self.app.waiting()).await.unwrap())
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    async fn history(&self) -> Vec<Value> {
        let (status, body) = images_api(&self.app, REPO, None).await;
        assert_eq!(status, 200, "{body}");
        body["history"].as_array().cloned().unwrap_or_default()
    }
}

fn hold_id(d: &Value) -> String {
    d["hold_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no hold id in {d}"))
        .to_owned()
}

fn closed(e: &DecisionError) -> GateStatus {
    match e {
        DecisionError::Closed { status, .. } => *status,
        other => panic!("not closed: {other}"),
    }
}

#[tokio::test]
async fn an_approved_deployment_goes_out_once_and_the_history_names_the_approver() {
    let s = setup(&[(
        "prod",
        json!({"approval": {"required": 1, "expires": "1h"}}),
    )])
    .await;
    let pushed = s.push(1, "v1.1.0", "2026-11-20T10:00:00Z").await;
    let d = s.deployment(&pushed, "prod");
    assert_eq!(d["outcome"], "awaiting_approval", "{pushed}");
    let id = hold_id(d);
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("imagehook approve {id}"))
            && reason.contains(&format!("POST /approvals/{id}/approve")),
        "{reason}"
    );
    assert_eq!(s.runs("prod").await, format!("{REPO}:v1.0.0"));
    let listed = s.waiting().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (&listed[0]["id"], &listed[0]["status"]),
        (&json!(id), &json!("awaiting_approval"))
    );

    // Not a hold id at all, and a decision without a name: refused, nothing changed.
    assert_eq!(
        s.approve("0123456789ab", "alice").await.unwrap_err(),
        DecisionError::UnknownId("0123456789ab".into())
    );
    assert_eq!(
        s.approve(&id, "  ").await.unwrap_err(),
        DecisionError::NoPrincipal
    );

    let approved = s.approve(&id, "alice").await.unwrap();
    assert_eq!(approved["status"], "applied", "{approved}");
    assert_eq!(approved["deployment"]["outcome"], "updated", "{approved}");
    assert_eq!(approved["approvals"]["approvers"], json!(["alice"]));
    assert_eq!(s.runs("prod").await, format!("{REPO}@{}", digest(1)));
    let revisions_after = revisions(&s.sdk, s.stage("prod")).await;

    // Asked again by the same person: counted once, nothing deployed again. By another: the
    // decision is over.
    let again = s.approve(&id, "alice").await.unwrap();
    assert_eq!(
        (&again["counted"], &again["status"]),
        (&json!(false), &json!("applied"))
    );
    let late = s.approve(&id, "bob").await.unwrap_err();
    assert_eq!(closed(&late), GateStatus::Applied);
    assert_eq!(revisions(&s.sdk, s.stage("prod")).await, revisions_after);
    assert!(s.waiting().await.is_empty());

    let history = s.history().await;
    let approval = history
        .iter()
        .find(|h| h["kind"] == "approval" && h["outcome"] == "updated")
        .unwrap_or_else(|| panic!("{history:?}"));
    assert_eq!(approval["by"], "alice");
    assert_eq!(approval["stage"], "prod");
    let push = history
        .iter()
        .find(|h| h["kind"] == "push")
        .unwrap_or_else(|| panic!("{history:?}"));
    assert_eq!(push["services"][0]["outcome"], "updated", "{push}");
}

#[tokio::test]
async fn two_approvers_are_needed_and_a_denial_stops_the_next_push() {
    let s = setup(&[("prod", json!({"approval": {"required": 2}}))]).await;
    let pushed = s.push(2, "v1.2.0", "2026-11-20T10:00:00Z").await;
    let id = hold_id(s.deployment(&pushed, "prod"));
    let first = s.approve(&id, "alice").await.unwrap();
    assert_eq!(first["status"], "awaiting_approval", "{first}");
    assert!(
        first["reason"].as_str().unwrap().contains("(1 of 2)"),
        "{first}"
    );
    let twice = s.approve(&id, "alice").await.unwrap();
    assert_eq!(
        (&twice["counted"], &twice["status"]),
        (&json!(false), &json!("awaiting_approval"))
    );
    assert_eq!(s.runs("prod").await, format!("{REPO}:v1.0.0"));
    let second = s
        .approve(&id, "arn:aws:iam::123456789012:user/bob")
        .await
        .unwrap();
    assert_eq!(second["status"], "applied", "{second}");
    assert_eq!(s.runs("prod").await, format!("{REPO}@{}", digest(2)));

    let next = s.push(3, "v1.3.0", "2026-11-20T11:00:00Z").await;
    let id = hold_id(s.deployment(&next, "prod"));
    let denied = s.decide(&id, Decision::Deny, "carol").await.unwrap();
    assert_eq!(denied["status"], "denied", "{denied}");
    let after = s.approve(&id, "alice").await.unwrap_err();
    assert_eq!(closed(&after), GateStatus::Denied);
    assert!(after.to_string().contains("denied by carol"), "{after}");
    assert_eq!(s.runs("prod").await, format!("{REPO}@{}", digest(2)));
    let history = s.history().await;
    assert!(
        history
            .iter()
            .any(|h| h["kind"] == "denial" && h["by"] == "carol"),
        "{history:?}"
    );
}

#[tokio::test]
async fn an_approval_after_the_deadline_is_refused_as_expired() {
    let s = setup(&[(
        "prod",
        json!({"approval": {"required": 1, "expires": "1s"}}),
    )])
    .await;
    let pushed = s.push(4, "v1.4.0", "2026-11-20T10:00:00Z").await;
    let id = hold_id(s.deployment(&pushed, "prod"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let e = s.approve(&id, "alice").await.unwrap_err();
    assert_eq!(closed(&e), GateStatus::Expired, "{e}");
    assert!(e.to_string().contains("expired at"), "{e}");
    assert_eq!(s.runs("prod").await, format!("{REPO}:v1.0.0"));
    assert!(s.waiting().await.is_empty());
    let history = s.history().await;
    assert!(history.iter().any(|h| h["kind"] == "expiry"), "{history:?}");
}

#[tokio::test]
async fn the_reconcile_expires_what_nobody_decided() {
    let s = setup(&[("prod", json!({"approval": {"expires": "1s"}}))]).await;
    let pushed = s.push(5, "v1.5.0", "2026-11-20T10:00:00Z").await;
    let id = hold_id(s.deployment(&pushed, "prod"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let report = s.app.reconcile().await.unwrap();
    let held = report["held"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        (&held[0]["id"], &held[0]["status"]),
        (&json!(id), &json!("expired"))
    );
    assert_eq!(
        closed(&s.approve(&id, "alice").await.unwrap_err()),
        GateStatus::Expired
    );
}

#[tokio::test]
async fn a_newer_push_supersedes_the_one_waiting_for_approval() {
    let s = setup(&[("prod", json!({"approval": {}}))]).await;
    let old = s.push(6, "v1.6.0", "2026-11-20T10:00:00Z").await;
    let old_id = hold_id(s.deployment(&old, "prod"));
    let new = s.push(7, "v1.7.0", "2026-11-20T10:30:00Z").await;
    let new_id = hold_id(s.deployment(&new, "prod"));
    assert_ne!(old_id, new_id);
    let said = s.deployment(&new, "prod")["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(said.contains(&format!("supersedes {old_id}")), "{said}");
    let e = s.approve(&old_id, "alice").await.unwrap_err();
    assert_eq!(closed(&e), GateStatus::Superseded);
    assert!(e.to_string().contains(&new_id), "{e}");
    let listed = s.waiting().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], new_id.as_str());
    assert_eq!(
        s.approve(&new_id, "alice").await.unwrap()["status"],
        "applied"
    );
    assert_eq!(s.runs("prod").await, format!("{REPO}@{}", digest(7)));
}

#[tokio::test]
async fn a_quarantine_of_the_digest_cancels_what_waits_for_it() {
    let s = setup(&[("prod", json!({"approval": {}}))]).await;
    let pushed = s.push(8, "v1.8.0", "2026-11-20T10:00:00Z").await;
    let id = hold_id(s.deployment(&pushed, "prod"));
    assert_eq!(
        s.quarantine(8, "2026-11-20T10:05:00Z").await["outcome"],
        "applied"
    );
    let listed = s.waiting().await;
    assert_eq!(listed[0]["status"], "cancelled", "{listed:?}");
    let e = s.approve(&id, "alice").await.unwrap_err();
    assert_eq!(closed(&e), GateStatus::Cancelled);
    assert!(e.to_string().contains("quarantined"), "{e}");
    assert_eq!(s.runs("prod").await, format!("{REPO}:v1.0.0"));
    assert!(s.waiting().await.is_empty());

    // Quarantined and released again while it waited: still cancelled.
    let pushed = s.push(81, "v1.8.1", "2026-11-20T11:00:00Z").await;
    let id = hold_id(s.deployment(&pushed, "prod"));
    let now = imagehook_core::model::event::Timestamp::now();
    assert_eq!(s.quarantine(81, now.as_str()).await["outcome"], "applied");
    let body = json!({"image": format!("{REPO}@{}", digest(81)), "quarantine": false,
                      "reason": "false positive", "timestamp": now.as_str()});
    let reply = invoke(
        &s.app,
        Function::Quarantine,
        &with_body(&event_file("generic-quarantine.json"), &body),
    )
    .await;
    assert_eq!(
        reply.body["events"][0]["outcome"], "applied",
        "{}",
        reply.body
    );
    let e = s.approve(&id, "alice").await.unwrap_err();
    assert_eq!(closed(&e), GateStatus::Cancelled, "{e}");
    assert_eq!(s.runs("prod").await, format!("{REPO}:v1.0.0"));
}

#[tokio::test]
async fn concurrent_approvals_apply_exactly_once() {
    let s = setup(&[("prod", json!({"approval": {"required": 2}}))]).await;
    let pushed = s.push(9, "v1.9.0", "2026-11-20T10:00:00Z").await;
    let id = hold_id(s.deployment(&pushed, "prod"));
    let before = revisions(&s.sdk, s.stage("prod")).await;
    // Four requests at once, from three people (one asks twice): two distinct approvals
    // complete the count; exactly one of the requests applies it.
    let (a, b, c, d) = tokio::join!(
        as_function(CONTROL, s.app.decide(&id, Decision::Approve, "alice")),
        as_function(CONTROL, s.app.decide(&id, Decision::Approve, "bob")),
        as_function(CONTROL, s.app.decide(&id, Decision::Approve, "alice")),
        as_function(CONTROL, s.app.decide(&id, Decision::Approve, "carol")),
    );
    let answers: Vec<_> = [a, b, c, d].into_iter().collect();
    let applied = answers
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.deployment.is_some()))
        .count();
    assert_eq!(applied, 1, "{answers:?}");
    assert_eq!(revisions(&s.sdk, s.stage("prod")).await, before + 1);
    assert_eq!(s.runs("prod").await, format!("{REPO}@{}", digest(9)));
    let item = get_item(&s.sdk, &s.table, "GATES", &format!("G#{id}"))
        .await
        .unwrap();
    assert_eq!(item["status"], "applied", "{item}");
    let approvers = item["approvers"].as_array().unwrap();
    assert_eq!(approvers.len(), 2, "{item}");
    assert_ne!(approvers[0], approvers[1]);
}

#[tokio::test]
async fn stages_promote_in_order_after_the_soak_and_a_failure_in_the_middle_stops_it() {
    let s = setup(&[
        ("dev", json!({})),
        ("staging", json!({"after": "dev"})),
        ("prod", json!({"after": "staging", "soak": "2s"})),
    ])
    .await;

    // v2.0.0 goes dev -> staging -> prod.
    let pushed = s.push(20, "v2.0.0", "2026-11-20T10:00:00Z").await;
    assert_eq!(
        s.deployment(&pushed, "dev")["outcome"],
        "updated",
        "{pushed}"
    );
    assert_eq!(
        s.deployment(&pushed, "staging")["outcome"],
        "waiting_for_stage"
    );
    assert_eq!(
        s.deployment(&pushed, "prod")["outcome"],
        "waiting_for_stage"
    );
    let dev_rollout = s.deployment(&pushed, "dev")["ecs_deployment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = s
        .outcome("dev", &dev_rollout, "SERVICE_DEPLOYMENT_COMPLETED")
        .await;
    let promoted = done["promotions"]
        .as_array()
        .unwrap_or_else(|| panic!("{done}"));
    assert_eq!(promoted.len(), 1, "{done}");
    assert_eq!(promoted[0]["service"], s.stage("staging").service.as_str());
    assert_eq!(promoted[0]["deployment"]["outcome"], "updated", "{done}");
    assert_eq!(s.runs("staging").await, format!("{REPO}@{}", digest(20)));
    assert_eq!(s.runs("prod").await, format!("{REPO}:v1.0.0"));

    let staging_rollout = promoted[0]["deployment"]["ecs_deployment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = s
        .outcome("staging", &staging_rollout, "SERVICE_DEPLOYMENT_COMPLETED")
        .await;
    assert!(
        done.get("promotions").is_none(),
        "the soak is not over: {done}"
    );
    let report = s.app.reconcile().await.unwrap();
    assert!(report.get("held").is_none(), "{report}");
    let listed = s.waiting().await;
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("soaking until"),
        "{listed:?}"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = s.app.reconcile().await.unwrap();
    let held = report["held"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(held[0]["status"], "applied", "{report}");
    assert_eq!(s.runs("prod").await, format!("{REPO}@{}", digest(20)));
    assert!(s.waiting().await.is_empty());

    // v2.1.0 fails in staging: prod keeps v2.0.0, even after the soak.
    let pushed = s.push(21, "v2.1.0", "2026-11-20T11:00:00Z").await;
    let prod_id = hold_id(s.deployment(&pushed, "prod"));
    let dev_rollout = s.deployment(&pushed, "dev")["ecs_deployment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = s
        .outcome("dev", &dev_rollout, "SERVICE_DEPLOYMENT_COMPLETED")
        .await;
    let staging_rollout = done["promotions"][0]["deployment"]["ecs_deployment_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{done}"))
        .to_owned();
    let failed = s
        .outcome("staging", &staging_rollout, "SERVICE_DEPLOYMENT_FAILED")
        .await;
    let stopped = failed["promotions"]
        .as_array()
        .unwrap_or_else(|| panic!("{failed}"));
    assert_eq!(
        (&stopped[0]["id"], &stopped[0]["status"]),
        (&json!(prod_id), &json!("stage_failed"))
    );
    assert!(
        stopped[0]["reason"].as_str().unwrap().contains("failed"),
        "{failed}"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    s.app.reconcile().await.unwrap();
    assert_eq!(s.runs("prod").await, format!("{REPO}@{}", digest(20)));
    assert!(s.waiting().await.is_empty());
    let history = s.history().await;
    assert!(
        history
            .iter()
            .any(|h| h["kind"] == "promotion" && h["stage"] == "prod"),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|h| h["kind"] == "stop" && h["outcome"] == "stage_failed"),
        "{history:?}"
    );
}

#[tokio::test]
async fn a_stage_then_approval_rule_waits_for_both() {
    let s = setup(&[
        ("staging", json!({})),
        (
            "prod",
            json!({"after": "staging", "approval": {"required": 1}}),
        ),
    ])
    .await;
    let pushed = s.push(30, "v3.0.0", "2026-11-20T10:00:00Z").await;
    let id = hold_id(s.deployment(&pushed, "prod"));
    let early = s.approve(&id, "alice").await.unwrap_err();
    assert!(
        matches!(early, DecisionError::NotAwaitingApproval { .. }),
        "{early}"
    );
    let rollout = s.deployment(&pushed, "staging")["ecs_deployment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = s
        .outcome("staging", &rollout, "SERVICE_DEPLOYMENT_COMPLETED")
        .await;
    assert_eq!(
        done["promotions"][0]["status"], "awaiting_approval",
        "{done}"
    );
    assert_eq!(s.runs("prod").await, format!("{REPO}:v1.0.0"));
    assert_eq!(s.approve(&id, "alice").await.unwrap()["status"], "applied");
    assert_eq!(s.runs("prod").await, format!("{REPO}@{}", digest(30)));
}

#[tokio::test]
async fn a_release_of_a_quarantined_digest_still_waits_for_approval() {
    let s = setup(&[("prod", json!({"approval": {}}))]).await;
    assert_eq!(
        s.quarantine(40, "2026-11-20T09:00:00Z").await["outcome"],
        "applied"
    );
    let pushed = s.push(40, "v4.0.0", "2026-11-20T10:00:00Z").await;
    assert_eq!(pushed["outcome"], "blocked", "{pushed}");
    let body = json!({"image": format!("{REPO}@{}", digest(40)), "quarantine": false,
                      "reason": "reviewed", "timestamp": "2026-11-20T10:30:00Z"});
    let reply = invoke(
        &s.app,
        Function::Quarantine,
        &with_body(&event_file("generic-quarantine.json"), &body),
    )
    .await;
    let released = &reply.body["events"][0];
    let d = &released["deployments"][0];
    assert_eq!(d["outcome"], "awaiting_approval", "{released}");
    assert_eq!(s.runs("prod").await, format!("{REPO}:v1.0.0"));
    let id = hold_id(d);
    assert_eq!(s.approve(&id, "alice").await.unwrap()["status"], "applied");
    assert_eq!(s.runs("prod").await, format!("{REPO}@{}", digest(40)));
}

#[tokio::test]
async fn the_push_history_shows_each_held_service_as_it_stands() {
    let s = setup(&[
        ("prod-a", json!({"stage": "prod", "approval": {}})),
        ("prod-b", json!({"stage": "prod", "approval": {}})),
    ])
    .await;
    let pushed = s.push(50, "v5.0.0", "2026-11-20T10:00:00Z").await;
    let a = hold_id(s.deployment(&pushed, "prod-a"));
    assert_eq!(s.approve(&a, "alice").await.unwrap()["status"], "applied");
    let history = s.history().await;
    let push = history
        .iter()
        .find(|h| h["kind"] == "push")
        .unwrap_or_else(|| panic!("{history:?}"));
    let outcome = |stage: &str| {
        let svc = s.stage(stage).service.as_str();
        push["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["service"] == svc)
            .unwrap_or_else(|| panic!("{push}"))["outcome"]
            .clone()
    };
    assert_eq!(outcome("prod-a"), "updated", "{push}");
    assert_eq!(outcome("prod-b"), "awaiting_approval", "{push}");
    assert_eq!(s.runs("prod-b").await, format!("{REPO}:v1.0.0"));
}

#[tokio::test]
async fn approvals_are_asked_for_and_their_end_told_through_the_notifier() {
    use imagehook_core::adapters::slack::{SlackWebhook, WebhookUrl};
    use imagehook_core::app::config::DeployMode;
    use imagehook_core::auth::AuthMode;
    use imagehook_core::ports::notifier::{NoticeKind, Notifier, Sink};
    use imagehook_tests::capture::Capture;
    use std::sync::Arc;

    let w = world(&format!("{REPO}:v1.0.0")).await;
    let capture = Capture::start().await;
    let sink: Arc<dyn Sink> = Arc::new(SlackWebhook::new(
        WebhookUrl::parse(&capture.url("/hook")).unwrap(),
    ));
    let rules = json!([{"repository": REPO, "tags": "v*", "cluster": w.fx.cluster,
                        "service": w.fx.service, "stage": "prod", "approval": {}}])
    .to_string();
    let app = app(AppSpec {
        table: &w.table,
        rules: &rules,
        auth: AuthMode::None,
        secrets: &[],
        deploy_mode: DeployMode::Apply,
        dynamo_sdk: &w.sdk,
        ecs_sdk: &w.sdk,
    })
    .with_notifier(Notifier::new(
        vec![sink],
        NoticeKind::ALL.to_vec(),
        Duration::from_secs(5),
    ));
    let texts = |capture: &Capture| -> Vec<String> {
        capture
            .take("/hook")
            .into_iter()
            .map(|c| c.body["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    };

    let body = json!({"image": format!("{REPO}:v1.1.0"), "digest": digest(60), "id": "n-60"});
    let reply = invoke(
        &app,
        Function::Push,
        &with_body(&event_file("generic-push.json"), &body),
    )
    .await;
    let id = hold_id(&reply.body["events"][0]["deployments"][0]);
    let asked = texts(&capture);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].contains("Approval required: ")
            && asked[0].contains(&format!("imagehook approve {id}"))
            && asked[0].contains(&format!("imagehook deny {id}")),
        "{asked:?}"
    );

    as_function(CONTROL, app.decide(&id, Decision::Deny, "carol"))
        .await
        .unwrap();
    let told = texts(&capture);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("Promotion stopped: ") && told[0].contains("denied by carol"),
        "{told:?}"
    );
}

/// The control API in AWS: the approval goes through the IAM-authorized route, and the signed
/// caller's principal ARN is the approver on record. Unsigned, unknown or malformed requests
/// are refused by name and change nothing.
#[tokio::test]
async fn approvals_through_the_signed_route_record_the_callers_arn() {
    const ARN: &str = "arn:aws:sts::123456789012:assumed-role/release-managers/alice";
    let s = setup(&[("prod", json!({"approval": {"required": 1}}))]).await;
    let pushed = s.push(1, "v1.1.0", "2026-11-20T10:00:00Z").await;
    let id = hold_id(s.deployment(&pushed, "prod"));

    let (status, listed) = control_api(&s.app, "GET", "/approvals", None, Some(ARN)).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["waiting"][0]["id"], json!(id), "{listed}");

    let path = format!("/approvals/{id}/approve");
    let (status, refused) = control_api(&s.app, "POST", &path, None, None).await;
    assert_eq!((status, &refused["error"]), (401, &json!("unsigned")));
    let (status, refused) = control_api(&s.app, "GET", &path, None, Some(ARN)).await;
    assert_eq!(
        (status, &refused["error"]),
        (405, &json!("method_not_allowed"))
    );
    let (status, _) = control_api(
        &s.app,
        "POST",
        "/approvals/0123456789ab/approve",
        None,
        Some(ARN),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = control_api(&s.app, "POST", "/approvals/x/promote", None, Some(ARN)).await;
    assert_eq!(status, 404);
    assert_eq!(s.runs("prod").await, format!("{REPO}:v1.0.0"));

    let (status, approved) = control_api(&s.app, "POST", &path, None, Some(ARN)).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "applied", "{approved}");
    assert_eq!(approved["by"], ARN);
    assert_eq!(s.runs("prod").await, format!("{REPO}@{}", digest(1)));
    let (status, late) = control_api(
        &s.app,
        "POST",
        &format!("/approvals/{id}/deny"),
        None,
        Some(ARN),
    )
    .await;
    assert_eq!(
        (status, &late["error"]),
        (409, &json!("already_decided")),
        "{late}"
    );

    let history = s.history().await;
    let approval = history
        .iter()
        .find(|h| h["kind"] == "approval")
        .unwrap_or_else(|| panic!("{history:?}"));
    assert_eq!(approval["by"], ARN);
}
