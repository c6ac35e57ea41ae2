//! A repository's history through the images API, on DynamoDB in moto: every push that concerns
//! a service (applied, blocked, stale, superseded) and every release or arrival that applies a
//! held push is an entry with the push's tag, digest and time and the event's own time and
//! receipt time, listed newest first by the sender's time, then the receipt time.

use imagehook_core::app::App;
use imagehook_core::app::config::DeployMode;
use imagehook_core::auth::AuthMode;
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::{Value, json};

const REPO: &str = "registry.example.com/shop/api";

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

/// Sends one generic-form event and returns its result.
async fn send(app: &App, function: Function, body: Value) -> Value {
    let event = with_body(&event_file("generic-push.json"), &body);
    let reply = invoke(app, function, &event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A redelivery writes the same entries again, never new ones.
    assert_eq!(invoke(app, function, &event).await.status, 200);
    reply.body["events"][0].clone()
}

fn push(tag: &str, digest: &str, id: &str, at: &str) -> Value {
    json!({"image": format!("{REPO}:{tag}"), "digest": digest, "id": id, "timestamp": at})
}

/// The history of the prod stage, as two reads list it.
async fn prod_history(app: &App) -> Vec<Value> {
    let (status, all) = images_api(app, REPO, None).await;
    assert_eq!(status, 200, "{all}");
    let prod = all["stages"]["prod"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (_, again) = images_api(app, REPO, Some("prod")).await;
    assert_eq!(again["stages"]["prod"], json!(prod), "two reads list alike");
    prod
}

/// With one stage, the flat list of every entry holds the stage's entries, in the same order.
async fn listed_alike(app: &App, prod: &[Value]) {
    let (_, all) = images_api(app, REPO, None).await;
    assert_eq!(all["history"], json!(prod), "{all}");
}

fn staged_app(sdk: &aws_config::SdkConfig, table: &str, extra: Value) -> App {
    let mut rule = json!({"repository": "shop/api", "tags": "semver:*", "cluster": "prod",
                          "service": "api", "stage": "prod"});
    if let (Some(r), Some(e)) = (rule.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    sample_app(sdk, table, &json!([rule]).to_string(), DeployMode::DryRun)
}

#[tokio::test]
async fn a_release_lists_the_held_push_with_its_tag_and_push_time() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let app = staged_app(&sdk, &table, json!({}));
    let d = digest(1);
    let (push_id, release_id) = (unique("push"), unique("release"));
    send(
        &app,
        Function::Quarantine,
        json!({"image": format!("{REPO}@{d}"), "quarantine": true, "reason": "CVE-2026-0001",
               "id": unique("q"), "timestamp": "2026-11-20T09:00:00Z"}),
    )
    .await;
    let pushed = send(
        &app,
        Function::Push,
        push("1.2.0", &d, &push_id, "2026-11-20T10:00:00Z"),
    )
    .await;
    assert_eq!(pushed["outcome"], "blocked", "{pushed}");
    send(
        &app,
        Function::Quarantine,
        json!({"image": format!("{REPO}@{d}"), "quarantine": false, "reason": "false positive",
               "id": release_id, "timestamp": "2026-11-20T11:00:00Z"}),
    )
    .await;

    let prod = prod_history(&app).await;
    assert_eq!(prod.len(), 2, "the blocked push and the release: {prod:#?}");
    let (release, blocked) = (&prod[0], &prod[1]);
    assert_eq!(release["kind"], "release", "{release}");
    assert_eq!(release["outcome"], "applied");
    assert_eq!(release["tag"], "1.2.0", "the held push's tag: {release}");
    assert_eq!(release["digest"], d.as_str());
    assert_eq!(release["pushed_at"], "2026-11-20T10:00:00.000000000Z");
    assert_eq!(release["push_event"], format!("generic#{push_id}"));
    assert_eq!(release["event"], format!("generic#{release_id}"));
    assert_eq!(release["at"], "2026-11-20T11:00:00.000000000Z");
    assert!(release["received_at"].is_string(), "{release}");
    assert_eq!(release["services"][0]["outcome"], "planned");

    assert_eq!(blocked["kind"], "push", "{blocked}");
    assert_eq!(blocked["outcome"], "blocked");
    assert!(
        blocked["reason"]
            .as_str()
            .unwrap()
            .contains("CVE-2026-0001"),
        "{blocked}"
    );
    assert_eq!(blocked["tag"], "1.2.0");
    assert_eq!(blocked["pushed_at"], "2026-11-20T10:00:00.000000000Z");
    assert_eq!(blocked["at"], blocked["pushed_at"]);
    assert_eq!(blocked["event"], format!("generic#{push_id}"));
    assert!(blocked["received_at"].is_string(), "{blocked}");
    assert_eq!(blocked["services"][0]["outcome"], "blocked");
    listed_alike(&app, &prod).await;
}

#[tokio::test]
async fn an_arrival_lists_the_held_push_with_its_tag_and_push_time() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let app = staged_app(&sdk, &table, json!({"require_region": "eu-west-1"}));
    let d = digest(2);
    let (push_id, arrival_id) = (unique("push"), unique("arrival"));
    send(
        &app,
        Function::Push,
        push("1.3.0", &d, &push_id, "2026-11-20T10:00:00Z"),
    )
    .await;
    send(
        &app,
        Function::Push,
        json!({"image": format!("{REPO}@{d}"), "action": "replicate", "region": "eu-west-1",
               "id": arrival_id, "timestamp": "2026-11-20T10:30:00Z"}),
    )
    .await;

    let prod = prod_history(&app).await;
    assert_eq!(prod.len(), 2, "the held push and the arrival: {prod:#?}");
    let (arrival, held) = (&prod[0], &prod[1]);
    assert_eq!(arrival["tag"], "1.3.0", "the held push's tag: {arrival}");
    assert_eq!(arrival["pushed_at"], "2026-11-20T10:00:00.000000000Z");
    assert_eq!(arrival["kind"], "arrival", "{arrival}");
    assert_eq!(arrival["push_event"], format!("generic#{push_id}"));
    assert_eq!(arrival["event"], format!("generic#{arrival_id}"));
    assert_eq!(arrival["at"], "2026-11-20T10:30:00.000000000Z");
    assert!(arrival["received_at"].is_string(), "{arrival}");
    assert_eq!(arrival["services"][0]["outcome"], "planned");
    assert_eq!(held["outcome"], "blocked", "{held}");
    assert!(
        held["reason"].as_str().unwrap().contains("eu-west-1"),
        "{held}"
    );
    assert_eq!(held["tag"], "1.3.0");
    listed_alike(&app, &prod).await;
}

#[tokio::test]
async fn blocked_and_stale_pushes_are_listed_with_why() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let app = staged_app(&sdk, &table, json!({}));
    let (newer, older, deleted) = (unique("newer"), unique("older"), unique("deleted"));
    send(
        &app,
        Function::Push,
        push("1.0.0", &digest(3), &newer, "2026-11-20T11:00:00Z"),
    )
    .await;
    let stale = send(
        &app,
        Function::Push,
        push("1.0.0", &digest(4), &older, "2026-11-20T10:00:00Z"),
    )
    .await;
    assert_eq!(stale["outcome"], "stale", "{stale}");
    // A digest deleted after the push was made: the push is recorded and blocked.
    send(
        &app,
        Function::Delete,
        json!({"image": format!("{REPO}@{}", digest(5)), "action": "delete",
               "id": unique("delete"), "timestamp": "2026-11-20T09:30:00Z"}),
    )
    .await;
    let blocked = send(
        &app,
        Function::Push,
        push("1.1.0", &digest(5), &deleted, "2026-11-20T09:00:00Z"),
    )
    .await;
    assert_eq!(blocked["outcome"], "blocked", "{blocked}");

    let prod = prod_history(&app).await;
    let events: Vec<&str> = prod.iter().map(|e| e["event"].as_str().unwrap()).collect();
    let named = |id: &str| format!("generic#{id}");
    assert_eq!(
        events,
        [named(&newer), named(&older), named(&deleted)],
        "newest first by the sender's time: {prod:#?}"
    );
    assert_eq!(prod[0]["outcome"], "applied");
    let stale = &prod[1];
    assert_eq!(
        (&stale["outcome"], &stale["tag"], &stale["digest"]),
        (&json!("stale"), &json!("1.0.0"), &json!(digest(4)))
    );
    assert!(
        stale["reason"]
            .as_str()
            .unwrap()
            .contains("already points at a push"),
        "{stale}"
    );
    assert_eq!(stale["pushed_at"], "2026-11-20T10:00:00.000000000Z");
    assert!(stale["received_at"].is_string(), "{stale}");
    assert_eq!(stale["services"][0]["service"], "api");
    let blocked = &prod[2];
    assert_eq!(blocked["outcome"], "blocked", "{blocked}");
    assert!(
        blocked["reason"].as_str().unwrap().contains("deleted"),
        "{blocked}"
    );
    assert_eq!(blocked["tag"], "1.1.0");
    listed_alike(&app, &prod).await;
}

/// Two builds stamped in the same second and an older one arriving last, against a real service:
/// the one that arrived later within the second runs, and is listed first; the older build is
/// superseded, and listed where its time puts it.
#[tokio::test]
async fn builds_are_listed_by_sender_time_then_receipt_time() {
    let w = world(&format!("{REPO}:1.0.0")).await;
    let rules = json!([{"repository": "shop/api", "tags": "semver:*", "cluster": w.fx.cluster,
                        "service": w.fx.service, "container": "api", "stage": "prod"}]);
    let app = app(AppSpec {
        table: &w.table,
        rules: &rules.to_string(),
        auth: AuthMode::Token,
        secrets: &["sample-webhook-token"],
        deploy_mode: DeployMode::Apply,
        dynamo_sdk: &w.sdk,
        ecs_sdk: &w.sdk,
    });
    let ids = [unique("first"), unique("second"), unique("late")];
    let builds = [
        ("1.0.1", digest(6), "2026-11-20T10:00:00Z"),
        ("1.0.2", digest(7), "2026-11-20T10:00:00Z"),
        ("1.0.3", digest(8), "2026-11-20T09:00:00Z"),
    ];
    let mut outcomes = Vec::new();
    for (id, (tag, d, at)) in ids.iter().zip(&builds) {
        let r = send(&app, Function::Push, push(tag, d, id, at)).await;
        outcomes.push(r["deployments"][0]["outcome"].clone());
    }
    assert_eq!(
        outcomes,
        [json!("updated"), json!("updated"), json!("superseded")]
    );
    let runs = container_image(&running(&w.sdk, &w.fx).await.task_definition, "api");
    assert_eq!(runs, format!("{REPO}@{}", digest(7)));

    let prod = prod_history(&app).await;
    let tags: Vec<&str> = prod.iter().map(|e| e["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, ["1.0.2", "1.0.1", "1.0.3"], "{prod:#?}");
    assert_eq!(prod[0]["services"][0]["outcome"], "updated");
    assert_eq!(prod[2]["outcome"], "superseded", "{}", prod[2]);
    assert_eq!(prod[2]["services"][0]["outcome"], "superseded");
    listed_alike(&app, &prod).await;
}

/// A release and an arrival that apply nothing still appear, without services, with the
/// digest, the sender's time and the receipt time.
#[tokio::test]
async fn releases_and_arrivals_that_apply_nothing_are_listed_too() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let app = staged_app(&sdk, &table, json!({}));
    let d = digest(7);
    let image = format!("{REPO}@{d}");
    send(
        &app,
        Function::Quarantine,
        json!({"image": image, "quarantine": true, "id": unique("q"),
               "timestamp": "2026-11-20T09:00:00Z"}),
    )
    .await;
    let release = unique("release");
    send(
        &app,
        Function::Quarantine,
        json!({"image": image, "quarantine": false, "id": release,
               "timestamp": "2026-11-20T09:30:00Z"}),
    )
    .await;
    let arrival = unique("arrival");
    send(
        &app,
        Function::Push,
        json!({"image": image, "action": "replicate", "region": "eu-west-1", "id": arrival,
               "timestamp": "2026-11-20T09:40:00Z"}),
    )
    .await;
    let (status, all) = images_api(&app, REPO, None).await;
    assert_eq!(status, 200, "{all}");
    let entries = all["history"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["event"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("arrival", format!("generic#{arrival}").as_str()),
            ("release", format!("generic#{release}").as_str())
        ],
        "{all}"
    );
    for e in entries {
        assert_eq!(e["digest"], d.as_str(), "{e}");
        assert!(e["received_at"].is_string(), "{e}");
        assert_eq!(e["services"], json!([]), "{e}");
        assert_eq!(e["outcome"], "applied", "{e}");
    }
    assert_eq!(entries[1]["at"], "2026-11-20T09:30:00.000000000Z");
}
