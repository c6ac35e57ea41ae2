//! The scheduled reconcile (the outcomes function on its schedule) against moto's ECS and
//! DynamoDB: a desired state a dead holder left is applied, drift is reported and, where the
//! rule asks, restored once; and a rolled-back deployment leaves the running index naming what
//! ECS went back to.

use std::sync::Arc;
use std::time::Duration;

use imagehook_core::adapters::{DynamoStore, EcsDeployer};
use imagehook_core::app::App;
use imagehook_core::app::config::DeployMode;
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::{Value, json};

const REPO: &str = "registry.example.com/shop/api";
const TRIGGER: &str = r#"{"imagehook": "reconcile"}"#;

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

/// An app for this world: ECS calls counted, the fixture's cluster searched for followers (the
/// reconcile looks at them too), one rule with `on_drift`. Tests build one for the pushes and
/// another for the outcomes function, as they are two Lambda functions with their own caches.
fn outcomes_app(w: &World, on_drift: &str, ecs_log: &CallLog) -> App {
    let rules = json!([{"repository": "shop/api", "tags": "v*", "cluster": w.fx.cluster,
        "service": w.fx.service, "container": "api", "stage": "prod", "on_drift": on_drift}]);
    let mut config = open_config(&w.table, &rules.to_string(), DeployMode::Apply);
    config.follow_clusters = vec![w.fx.cluster.clone()];
    let ecs = ecs_client_from(
        aws_sdk_ecs::config::Builder::from(&w.sdk)
            .interceptor(ecs_log.clone())
            .build(),
    );
    App::new(
        config.clone(),
        Arc::new(DynamoStore::new(dynamo_client(&w.sdk), &w.table)),
        Arc::new(
            EcsDeployer::new(ecs)
                .with_discovery(config.follow_clusters.clone(), Duration::from_secs(60)),
        ),
    )
}

async fn push(app: &App, tag: &str, digest: &str) -> Value {
    let event = with_body(
        &event_file("generic-push.json"),
        &json!({"image": format!("{REPO}:{tag}"), "digest": digest, "id": unique("push")}),
    );
    let reply = invoke(app, Function::Push, &event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["events"][0]["deployments"][0].clone()
}

/// The reconcile's line for this world's service.
async fn reconcile(app: &App, w: &World) -> Value {
    let out = outcomes(app, TRIGGER).await.expect("reconcile");
    out["reconciled"]
        .as_array()
        .expect("a report")
        .iter()
        .find(|r| r["service"] == w.fx.service.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no line for the service: {out}"))
}

async fn runs(w: &World) -> String {
    container_image(&running(&w.sdk, &w.fx).await.task_definition, "api")
}

#[tokio::test]
async fn drift_is_reported_and_left_alone_by_default() {
    let w = world(&format!("{REPO}:v1.0.0")).await;
    let log = CallLog::default();
    let app = outcomes_app(&w, "report", &log);
    let pusher = outcomes_app(&w, "report", &CallLog::default());
    assert_eq!(
        push(&pusher, "v1.1.0", &digest(1)).await["outcome"],
        "updated"
    );
    assert_eq!(reconcile(&app, &w).await["action"], "in-sync");

    w.back_to_the_first_revision().await;
    log.take();
    let line = reconcile(&app, &w).await;
    assert_eq!(line["action"], "drift-reported", "{line}");
    assert!(
        line["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{REPO}:v1.0.0")),
        "{line}"
    );
    let current = w
        .item(&format!("SVC#{}/{}", w.fx.cluster, w.fx.service), "CURRENT")
        .await
        .unwrap();
    assert_eq!(current["drift_image"], format!("{REPO}:v1.0.0").as_str());
    // Reported, not undone: ECS was only asked.
    let changed: Vec<String> = log
        .take()
        .into_iter()
        .filter(|c| c == "RegisterTaskDefinition" || c == "UpdateService")
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
    assert_eq!(runs(&w).await, format!("{REPO}:v1.0.0"));
}

#[tokio::test]
async fn drift_is_restored_once_where_the_rule_asks() {
    let w = world(&format!("{REPO}:v1.0.0")).await;
    let log = CallLog::default();
    let app = outcomes_app(&w, "restore", &log);
    let pusher = outcomes_app(&w, "restore", &CallLog::default());
    assert_eq!(
        push(&pusher, "v1.1.0", &digest(2)).await["outcome"],
        "updated"
    );
    let ours = runs(&w).await;
    assert_eq!(ours, format!("{REPO}@{}", digest(2)));

    w.back_to_the_first_revision().await;
    log.take();
    let line = reconcile(&app, &w).await;
    assert_eq!(line["action"], "drift-restored", "{line}");
    assert_eq!(runs(&w).await, ours);
    let calls = log.take();
    let count = |op: &str| calls.iter().filter(|c| *c == op).count();
    assert_eq!(count("UpdateService"), 1, "{calls:?}");
    // The revision imagehook registered for the digest is still the family's latest: reused.
    assert_eq!(count("RegisterTaskDefinition"), 0, "{calls:?}");

    // Converged: the next run finds nothing to do.
    assert_eq!(reconcile(&app, &w).await["action"], "in-sync");
    assert!(!log.take().iter().any(|c| c == "UpdateService"));
    let current = w
        .item(&format!("SVC#{}/{}", w.fx.cluster, w.fx.service), "CURRENT")
        .await
        .unwrap();
    assert!(current.get("drift_image").is_none(), "{current}");
}

/// A proposal won and its holder died before applying it (its lease expired): the reconcile
/// applies it, once.
#[tokio::test]
async fn a_desired_state_left_by_a_dead_holder_is_applied() {
    let w = world(&format!("{REPO}:v1.0.0")).await;
    let log = CallLog::default();
    let app = outcomes_app(&w, "report", &log);
    let pusher = outcomes_app(&w, "report", &CallLog::default());
    assert_eq!(
        push(&pusher, "v1.1.0", &digest(3)).await["outcome"],
        "updated"
    );

    let pk = format!("SVC#{}/{}", w.fx.cluster, w.fx.service);
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.to_owned());
    aws_sdk_dynamodb::Client::new(&w.sdk)
        .update_item()
        .table_name(&w.table)
        .key("PK", s(&pk))
        .key("SK", s("CURRENT"))
        .update_expression(
            "SET desired_event = :e, desired_image = :i, desired_order = :o, \
             lease_holder = :h, lease_until = :u",
        )
        .expression_attribute_values(":e", s("generic#dead-holder"))
        .expression_attribute_values(":i", s(&format!("{REPO}:v1.2.0@{}", digest(4))))
        .expression_attribute_values(
            ":o",
            s("2099-01-01T00:00:00.000000000Z#2099-01-01T00:00:00.000000000Z"),
        )
        .expression_attribute_values(":h", s("generic#dead-holder@1"))
        .expression_attribute_values(":u", s("2000-01-01T00:00:00.000000000Z"))
        .send()
        .await
        .expect("a holder's leftovers");
    log.take();

    let line = reconcile(&app, &w).await;
    assert_eq!(line["action"], "converged", "{line}");
    assert_eq!(line["deployment"]["outcome"], "updated", "{line}");
    assert_eq!(runs(&w).await, format!("{REPO}@{}", digest(4)));
    let calls = log.take();
    assert_eq!(
        calls
            .iter()
            .filter(|c| *c == "RegisterTaskDefinition")
            .count(),
        1,
        "{calls:?}"
    );
    let current = w.item(&pk, "CURRENT").await.unwrap();
    assert_eq!(current["applied_event"], "generic#dead-holder");
    assert!(current.get("lease_holder").is_none(), "{current}");
    assert_eq!(reconcile(&app, &w).await["action"], "in-sync");
}

/// After the circuit breaker rolls a deployment back, the running index names the digest ECS
/// went back to: deleting it warns about the service, deleting the failed one does not.
#[tokio::test]
async fn a_rollback_leaves_the_running_index_on_what_ecs_went_back_to() {
    let w = world(&format!("{REPO}:v1.0.0")).await;
    let log = CallLog::default();
    let app = outcomes_app(&w, "report", &log);
    let pusher = outcomes_app(&w, "report", &CallLog::default());
    assert_eq!(
        push(&pusher, "v1.1.0", &digest(5)).await["outcome"],
        "updated"
    );
    // Another tag of the running digest: no change, and not its own predecessor.
    assert_eq!(
        push(&pusher, "v1.1", &digest(5)).await["outcome"],
        "unchanged"
    );
    let d = push(&pusher, "v1.2.0", &digest(6)).await;
    assert_eq!(d["outcome"], "updated", "{d}");
    let id = d["ecs_deployment_id"].as_str().expect("deployment id");
    let failed = w.state_change(
        "SERVICE_DEPLOYMENT_FAILED",
        id,
        "ECS deployment circuit breaker: tasks failed to start.",
    );
    assert_eq!(
        outcomes(&app, &failed).await.unwrap()["outcome"],
        "recorded"
    );
    let current = w
        .item(&format!("SVC#{}/{}", w.fx.cluster, w.fx.service), "CURRENT")
        .await
        .unwrap();
    assert_eq!(current["running"], format!("{REPO}@{}", digest(5)).as_str());
    assert_eq!(current["digest"], digest(5).as_str());

    let delete = |d: &str| {
        with_body(
            &event_file("generic-delete.json"),
            &json!({"image": format!("{REPO}@{d}"), "action": "delete", "id": unique("del")}),
        )
    };
    let failed_one = invoke(&app, Function::Delete, &delete(&digest(6))).await;
    assert_eq!(failed_one.status, 200, "{}", failed_one.body);
    assert_eq!(failed_one.body["events"][0]["warnings"], json!([]));
    let went_back_to = invoke(&app, Function::Delete, &delete(&digest(5))).await;
    let svc = format!("{}/{}", w.fx.cluster, w.fx.service);
    assert_eq!(
        went_back_to.body["events"][0]["running_services"],
        json!([svc]),
        "{}",
        went_back_to.body
    );
}
