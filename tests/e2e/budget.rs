//! The AWS round trips each kind of event costs (DESIGN §7), counted on the real clients. A
//! push that deploys: one write to record the event; per service, one write to propose and
//! take the lease, one read right before ECS is changed (is this still what the service should
//! run?) and one write that records the deployment, releases the lease and closes the event.
//! ECS: DescribeServices and DescribeTaskDefinition, plus RegisterTaskDefinition and
//! UpdateService when the service does not run the image yet.

use std::sync::Arc;

use imagehook_core::adapters::DynamoStore;
use imagehook_core::adapters::EcsDeployer;
use imagehook_core::app::App;
use imagehook_core::app::config::DeployMode;
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::json;

const REPO: &str = "contoso.azurecr.io/shop/api";

#[tokio::test]
async fn each_event_stays_within_its_round_trip_budget() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let fx = create_service(&sdk, &format!("{REPO}:v1.4.1")).await;
    let (dynamo_log, ecs_log) = (CallLog::default(), CallLog::default());
    let (dynamo, ecs) = counted_clients(&sdk, &dynamo_log, &ecs_log);
    let rules =
        json!([{"repository": REPO, "tags": "v*", "cluster": fx.cluster, "service": fx.service}]);
    let config = open_config(&table, &rules.to_string(), DeployMode::Apply);
    let app = App::new(
        config,
        Arc::new(DynamoStore::new(dynamo, &table)),
        Arc::new(EcsDeployer::new(ecs)),
    );
    let event = event_file("acr-push.json");
    let run = async |function: Function, event: &str| {
        let reply = invoke(&app, function, event).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        (dynamo_log.take(), ecs_log.take())
    };
    let calls = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    // A push that updates one service: record; propose and lease; the check before ECS is
    // changed; the deployment with the lease released and the receipt done.
    let (d, e) = run(Function::Push, &event).await;
    assert_eq!(
        d,
        calls(&[
            "TransactWriteItems",
            "TransactWriteItems",
            "GetItem",
            "TransactWriteItems"
        ])
    );
    assert_eq!(
        e,
        calls(&[
            "DescribeServices",
            "DescribeTaskDefinition",
            "RegisterTaskDefinition",
            "UpdateService"
        ])
    );

    // The same delivery again: one conditional write, no ECS call.
    let (d, e) = run(Function::Push, &event).await;
    assert_eq!((d, e), (calls(&["TransactWriteItems"]), calls(&[])));

    // Another tag of the same digest: the service already runs it, so nothing is registered.
    let mut body = body_of(&event);
    body["id"] = json!("budget-2");
    body["target"]["tag"] = json!("v1.4");
    // No check before ECS either: nothing is changed there.
    let (d, e) = run(Function::Push, &with_body(&event, &body)).await;
    assert_eq!(
        d,
        calls(&[
            "TransactWriteItems",
            "TransactWriteItems",
            "TransactWriteItems"
        ])
    );
    assert_eq!(e, calls(&["DescribeServices", "DescribeTaskDefinition"]));

    // A push no rule matches: one write.
    body["id"] = json!("budget-3");
    body["target"]["tag"] = json!("rc-1");
    let (d, e) = run(Function::Push, &with_body(&event, &body)).await;
    assert_eq!((d, e), (calls(&["TransactWriteItems"]), calls(&[])));

    // A body without an id or a time (a CI job's curl): the receipts of its redelivery window
    // are read, then one write. Its retry also reads the tag (did another push move it?) and
    // is refused by the receipt's condition.
    let idless = with_body(
        &event_file("generic-push.json"),
        &json!({"image": "registry.example.com/shop/api:edge",
                "digest": format!("sha256:{}", "e".repeat(64))}),
    );
    let (d, e) = run(Function::Push, &idless).await;
    assert_eq!(
        (d, e),
        (
            calls(&["GetItem", "GetItem", "TransactWriteItems"]),
            calls(&[])
        )
    );
    let (d, e) = run(Function::Push, &idless).await;
    assert_eq!(
        (d, e),
        (
            calls(&["GetItem", "GetItem", "GetItem", "TransactWriteItems"]),
            calls(&[])
        )
    );

    // A delete by digest reads who runs it and which tags point at it, then writes once.
    let (d, e) = run(Function::Delete, &event_file("acr-delete.json")).await;
    assert_eq!(d, calls(&["Query", "Query", "TransactWriteItems"]));
    assert!(e.is_empty());
}
