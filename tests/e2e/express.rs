//! Amazon ECS Express Mode services as deploy targets, against the loopback stand-in of ECS's
//! Express operations (moto has none; see `imagehook_tests::ecs_express`) and moto's DynamoDB
//! behind the proxy that applies each write atomically, as DynamoDB does. Every function that
//! deploys reaches the service: push, quarantine (deploy on release), the outcomes function's
//! reconcile (drift restored) and the control API (a deploy by hand).

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use imagehook_core::app::App;
use imagehook_core::app::config::DeployMode;
use imagehook_core::auth::AuthMode;
use imagehook_core::model::function::Function;
use imagehook_tests::ecs_express::ExpressEcs;
use imagehook_tests::proxy::Proxy;
use imagehook_tests::*;
use serde_json::{Value, json};
use tokio::sync::Barrier;

const REPO: &str = "registry.example.com/shop/web";
const TRIGGER: &str = r#"{"imagehook": "reconcile"}"#;
const UPDATE: &str = "UpdateExpressGatewayService";
const DESCRIBE: &str = "DescribeExpressGatewayService";

fn digest(n: u32) -> String {
    format!("sha256:{:064x}", 0xe000 + n)
}

fn pinned(d: &str) -> String {
    format!("{REPO}@{d}")
}

/// One Express service on the stand-in, a table on moto, and an app whose DynamoDB writes go
/// through the atomic proxy and whose ECS calls go to the stand-in.
struct World {
    /// moto directly: fixtures and checks.
    sdk: SdkConfig,
    _proxy: Proxy,
    ecs: ExpressEcs,
    table: String,
    cluster: String,
    service: String,
    arn: String,
    app: Arc<App>,
}

async fn world(extra: Value) -> World {
    let sdk = sdk().await;
    let proxy = Proxy::atomic_writes();
    let through = proxy.sdk().await;
    let ecs = ExpressEcs::start();
    let ecs_sdk = ecs.sdk().await;
    let table = create_table(&sdk).await;
    let cluster = unique("apps");
    let service = unique("web");
    let arn = ecs.create(&cluster, &service, &pinned(&digest(0)));
    let mut rule = json!({"repository": REPO, "tags": "v*", "cluster": cluster,
                          "service": service, "express": arn, "stage": "prod"});
    if let (Some(rule), Value::Object(extra)) = (rule.as_object_mut(), extra) {
        rule.extend(extra);
    }
    let app = app(AppSpec {
        table: &table,
        rules: &json!([rule]).to_string(),
        auth: AuthMode::None,
        secrets: &[],
        deploy_mode: DeployMode::Apply,
        dynamo_sdk: &through,
        ecs_sdk: &ecs_sdk,
    });
    World {
        sdk,
        _proxy: proxy,
        ecs,
        table,
        cluster,
        service,
        arn,
        app: Arc::new(app),
    }
}

fn push_event(id: &str, tag: &str, d: &str, at: &str) -> String {
    with_body(
        &event_file("generic-push.json"),
        &json!({"image": format!("{REPO}:{tag}"), "digest": d, "id": id, "timestamp": at}),
    )
}

impl World {
    async fn send(&self, function: Function, event: &str) -> Value {
        let reply = invoke(&self.app, function, event).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["events"][0].clone()
    }

    async fn push(&self, id: &str, tag: &str, d: &str, at: &str) -> Value {
        self.send(Function::Push, &push_event(id, tag, d, at)).await
    }

    async fn quarantine(&self, d: &str, quarantine: bool, at: &str) -> Value {
        let body = json!({"image": pinned(d), "quarantine": quarantine,
                          "reason": "CVE-2026-0003", "timestamp": at});
        self.send(
            Function::Quarantine,
            &with_body(&event_file("generic-quarantine.json"), &body),
        )
        .await
    }

    async fn current(&self) -> Value {
        get_item(
            &self.sdk,
            &self.table,
            &format!("SVC#{}/{}", self.cluster, self.service),
            "CURRENT",
        )
        .await
        .expect("the service's record")
    }

    /// The deployment records on the service, by the image they moved it to.
    async fn deployments(&self) -> Vec<serde_json::Map<String, Value>> {
        let pk = format!("SVC#{}/{}", self.cluster, self.service);
        all_items(&self.sdk, &self.table)
            .await
            .into_iter()
            .filter(|i| {
                i["PK"] == pk.as_str() && i["SK"].as_str().is_some_and(|s| s.starts_with("DEP#"))
            })
            .collect()
    }
}

fn deployment(event: &Value) -> &Value {
    &event["deployments"][0]
}

#[tokio::test]
async fn a_push_pins_the_express_service_to_the_digest_and_changes_nothing_else() {
    let w = world(json!({})).await;
    let before = w.ecs.primary_container(&w.arn);
    let d = digest(1);

    let event = w
        .push("express-1", "v1.1.0", &d, "2026-12-01T10:00:00Z")
        .await;
    let dep = deployment(&event);
    assert_eq!(dep["outcome"], "updated", "{event}");
    assert_eq!(dep["image"], pinned(&d).as_str(), "{event}");
    assert!(
        dep["task_definition"]
            .as_str()
            .is_some_and(|r| r.contains("service-revision/")),
        "the new service revision is reported: {event}"
    );

    // One update, naming the service and the primary container as it was, but for its image.
    let updates = w.ecs.updates();
    assert_eq!(updates.len(), 1, "{updates:?}");
    let mut sent: Vec<&String> = updates[0].as_object().unwrap().keys().collect();
    sent.sort();
    assert_eq!(sent, ["primaryContainer", "serviceArn"], "{}", updates[0]);
    assert_eq!(updates[0]["serviceArn"], w.arn.as_str());
    let mut expected = before.clone();
    expected["image"] = json!(pinned(&d));
    assert_eq!(updates[0]["primaryContainer"], expected);
    assert_eq!(w.ecs.primary_container(&w.arn), expected);

    // Recorded as for any service: what it runs, and the deployment with where it came from.
    let current = w.current().await;
    assert_eq!(current["digest"], d.as_str(), "{current}");
    let records = w.deployments().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "updated", "{records:?}");
    // And in the repository's history for the rule's stage.
    let (status, seen) = images_api(&w.app, REPO, Some("prod")).await;
    assert_eq!(status, 200, "{seen}");
    let entry = &seen["stages"]["prod"][0];
    assert_eq!(
        (&entry["digest"], &entry["tag"], &entry["outcome"]),
        (&json!(d), &json!("v1.1.0"), &json!("applied")),
        "{seen}"
    );
    assert_eq!(
        entry["services"],
        json!([{"at": entry["services"][0]["at"], "cluster": w.cluster, "service": w.service,
                "outcome": "updated", "task_definition": dep["task_definition"]}]),
        "{seen}"
    );

    // The sender's retry of the same delivery is a duplicate: nothing asked of ECS.
    let retry = w
        .push("express-1", "v1.1.0", &d, "2026-12-01T10:00:00Z")
        .await;
    assert_eq!(retry["outcome"], "duplicate", "{retry}");
    // Another tag of the same digest: the service already runs it, no update.
    let again = w
        .push("express-2", "v1.1", &d, "2026-12-01T10:05:00Z")
        .await;
    assert_eq!(deployment(&again)["outcome"], "unchanged", "{again}");
    assert_eq!(w.ecs.count(UPDATE), 1);
    assert_eq!(w.ecs.image(&w.arn), pinned(&d));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_deliveries_update_the_express_service_exactly_once() {
    let w = world(json!({})).await;
    // Slow enough that every delivery arrives while the first update is still being made.
    w.ecs.set_update_delay(Duration::from_millis(400));
    let d = digest(2);
    let mut events: Vec<String> = (0..4)
        .map(|_| push_event("express-once", "v2.0.0", &d, "2026-12-01T11:00:00Z"))
        .collect();
    // The same digest under more tags: one event each, as registries send them.
    for (i, tag) in ["v2.0", "v2"].iter().enumerate() {
        events.push(push_event(
            &format!("express-once-{i}"),
            tag,
            &d,
            "2026-12-01T11:00:00Z",
        ));
    }
    let start = Arc::new(Barrier::new(events.len()));
    let handles: Vec<_> = events
        .into_iter()
        .map(|event| {
            let (app, start) = (Arc::clone(&w.app), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                invoke(&app, Function::Push, &event).await
            })
        })
        .collect();
    let mut updated = 0;
    for h in handles {
        let reply = h.await.expect("a delivery's task");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let dep = &reply.body["events"][0]["deployments"][0];
        if dep["outcome"] == "updated" {
            updated += 1;
        }
    }
    assert_eq!(
        updated, 1,
        "one delivery applies, the others are carried by it"
    );
    assert_eq!(w.ecs.count(UPDATE), 1);
    assert_eq!(w.ecs.most_concurrent_updates(), 1);
    assert_eq!(w.ecs.image(&w.arn), pinned(&d));
    assert_eq!(w.current().await["digest"], d.as_str());
}

#[tokio::test]
async fn a_quarantined_digest_reaches_the_express_service_only_when_released() {
    let w = world(json!({})).await;
    let d = digest(3);
    w.quarantine(&d, true, "2026-12-01T12:00:00Z").await;

    let event = w
        .push("express-3", "v3.0.0", &d, "2026-12-01T12:01:00Z")
        .await;
    assert_eq!(deployment(&event)["outcome"], "blocked", "{event}");
    assert_eq!(
        w.ecs.count(UPDATE),
        0,
        "a quarantined digest never reaches ECS"
    );
    assert_eq!(w.ecs.image(&w.arn), pinned(&digest(0)));

    let released = w.quarantine(&d, false, "2026-12-01T12:30:00Z").await;
    assert_eq!(deployment(&released)["outcome"], "updated", "{released}");
    assert_eq!(w.ecs.count(UPDATE), 1);
    assert_eq!(w.ecs.image(&w.arn), pinned(&d));
}

#[tokio::test]
async fn the_reconcile_restores_an_express_service_changed_elsewhere_once() {
    let w = world(json!({"on_drift": "restore"})).await;
    let d = digest(4);
    let event = w
        .push("express-4", "v4.0.0", &d, "2026-12-01T13:00:00Z")
        .await;
    assert_eq!(deployment(&event)["outcome"], "updated", "{event}");

    w.ecs.set_image_elsewhere(&w.arn, &pinned(&digest(0)));
    let out = outcomes(&w.app, TRIGGER).await.expect("reconcile");
    let line = out["reconciled"]
        .as_array()
        .expect("a report")
        .iter()
        .find(|r| r["service"] == w.service.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no line for the service: {out}"));
    assert_eq!(line["action"], "drift-restored", "{line}");
    assert_eq!(w.ecs.image(&w.arn), pinned(&d));
    assert_eq!(w.ecs.count(UPDATE), 2);

    let out = outcomes(&w.app, TRIGGER).await.expect("reconcile");
    assert!(
        out["reconciled"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["service"] == w.service.as_str() && r["action"] == "in-sync"),
        "{out}"
    );
    assert_eq!(w.ecs.count(UPDATE), 2, "restored once");
}

#[tokio::test]
async fn a_deploy_by_hand_moves_the_express_service_through_the_same_door() {
    const ARN: &str = "arn:aws:iam::123456789012:user/ops-bot";
    let w = world(json!({})).await;
    let d = digest(5);
    w.push("express-5", "v5.0.0", &d, "2026-12-01T14:00:00Z")
        .await;
    let back = digest(6);
    w.push("express-6", "v5.0.1", &back, "2026-12-01T14:10:00Z")
        .await;
    assert_eq!(w.ecs.image(&w.arn), pinned(&back));

    let path = format!("/services/{}/{}/deploy", w.cluster, w.service);
    let asked = json!({"image": pinned(&d)}).to_string();
    let (status, done) = control_api(&w.app, "POST", &path, Some(&asked), Some(ARN)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["outcome"], "applied", "{done}");
    assert_eq!(w.ecs.image(&w.arn), pinned(&d));
    assert_eq!(w.ecs.count(UPDATE), 3);
}

#[tokio::test]
async fn express_services_that_cannot_be_deployed_to_fail_with_the_reason() {
    let w = world(json!({})).await;
    let ecs_sdk = w.ecs.sdk().await;
    let proxy = Proxy::atomic_writes();
    let through = proxy.sdk().await;
    let missing = w.arn.replace(&w.service, "gone");
    let renamed = w.ecs.create(&w.cluster, "elsewhere", &pinned(&digest(0)));
    let draining = w.ecs.create(&w.cluster, "draining", &pinned(&digest(0)));
    w.ecs.set_status(&draining, "DRAINING");
    let rules = json!([
        {"repository": REPO, "cluster": w.cluster, "service": "gone", "express": missing},
        {"repository": REPO, "cluster": w.cluster, "service": "renamed", "express": renamed},
        {"repository": REPO, "cluster": w.cluster, "service": "draining", "express": draining},
    ]);
    let app = app(AppSpec {
        table: &w.table,
        rules: &rules.to_string(),
        auth: AuthMode::None,
        secrets: &[],
        deploy_mode: DeployMode::Apply,
        dynamo_sdk: &through,
        ecs_sdk: &ecs_sdk,
    });
    let reply = invoke(
        &app,
        Function::Push,
        &push_event("express-7", "v7.0.0", &digest(7), "2026-12-01T15:00:00Z"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reasons: Vec<(String, String, String)> = reply.body["events"][0]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["service"].as_str().unwrap_or_default().to_owned(),
                d["outcome"].as_str().unwrap_or_default().to_owned(),
                d["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let of = |name: &str| {
        reasons
            .iter()
            .find(|(s, _, _)| s == name)
            .unwrap_or_else(|| panic!("no deployment for {name}: {reasons:?}"))
            .clone()
    };
    let (_, outcome, why) = of("gone");
    assert_eq!(outcome, "failed");
    assert!(
        why.contains("DescribeExpressGatewayService: ResourceNotFoundException"),
        "{why}"
    );
    let (_, outcome, why) = of("renamed");
    assert_eq!(outcome, "failed");
    assert!(
        why.contains(&format!(
            "is {c}/elsewhere, not {c}/renamed as the rule names it",
            c = w.cluster
        )),
        "{why}"
    );
    let (_, outcome, why) = of("draining");
    assert_eq!(outcome, "failed");
    assert!(why.ends_with("is DRAINING"), "{why}");
    assert_eq!(w.ecs.count(UPDATE), 0, "nothing refused was changed");
    assert!(w.ecs.count(DESCRIBE) >= 3);
}

#[tokio::test]
async fn a_server_fault_on_the_express_update_asks_the_sender_to_retry_and_the_retry_applies_it_once()
 {
    let w = world(json!({})).await;
    let d = digest(8);
    // Every attempt the SDK makes (three, with the standard retry mode) meets a server fault.
    for _ in 0..3 {
        w.ecs.fail_next(UPDATE, 500, "ServerException");
    }
    let event = push_event("express-8", "v8.0.0", &d, "2026-12-01T16:00:00Z");
    let failed = invoke(&w.app, Function::Push, &event).await;
    assert_eq!(failed.status, 503, "{}", failed.body);
    assert_eq!(w.ecs.image(&w.arn), pinned(&digest(0)));
    assert!(w.ecs.updates().is_empty());

    let retried = invoke(&w.app, Function::Push, &event).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(
        deployment(&retried.body["events"][0])["outcome"],
        "updated",
        "{}",
        retried.body
    );
    assert_eq!(w.ecs.updates().len(), 1);
    assert_eq!(w.ecs.image(&w.arn), pinned(&d));
}
