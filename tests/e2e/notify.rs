//! Notifications end to end: deployments started, blocked and failed, and deleted or
//! quarantined digests still running, posted to a local Slack-compatible webhook and published
//! to moto's SNS (whose HTTP subscription delivers to the same local server). A sink that
//! fails, refuses or hangs never changes the delivery's answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use imagehook_core::adapters::slack::{SlackWebhook, WebhookUrl};
use imagehook_core::adapters::sns::SnsTopic;
use imagehook_core::app::App;
use imagehook_core::app::config::DeployMode;
use imagehook_core::auth::AuthMode;
use imagehook_core::model::function::Function;
use imagehook_core::ports::notifier::{NoticeKind, Notifier, Sink};
use imagehook_tests::capture::{Capture, Captured};
use imagehook_tests::*;
use serde_json::{Value, json};

const REPO: &str = "registry.example.com/shop/api";

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

fn slack(url: &str) -> Arc<dyn Sink> {
    Arc::new(SlackWebhook::new(WebhookUrl::parse(url).expect("url")))
}

fn app_with(w: &World, rules: &str, sinks: Vec<Arc<dyn Sink>>, timeout: Duration) -> App {
    app(AppSpec {
        table: &w.table,
        rules,
        auth: AuthMode::None,
        secrets: &[],
        deploy_mode: DeployMode::Apply,
        dynamo_sdk: &w.sdk,
        ecs_sdk: &w.sdk,
    })
    .with_notifier(Notifier::new(sinks, NoticeKind::ALL.to_vec(), timeout))
}

fn rules(w: &World, tags: &str) -> String {
    json!([{"repository": "shop/api", "tags": tags, "cluster": w.fx.cluster,
            "service": w.fx.service, "container": "api"}])
    .to_string()
}

async fn send(app: &App, function: Function, file: &str, body: Value) -> Value {
    let reply = invoke(app, function, &with_body(&event_file(file), &body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["events"][0].clone()
}

async fn push(app: &App, tag: &str, digest: &str) -> Value {
    let body = json!({"image": format!("{REPO}:{tag}"), "digest": digest, "id": unique("push")});
    send(app, Function::Push, "generic-push.json", body).await
}

/// The one Slack message posted since the last look, as its text.
fn one_message(capture: &Capture) -> String {
    let posted = capture.take("/hook");
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(posted[0].content_type, "application/json");
    posted[0].body["text"].as_str().expect("text").to_owned()
}

/// The SNS messages delivered since the last look: (subject, message document).
fn published(capture: &Capture) -> Vec<(String, Value)> {
    capture
        .take("/sns")
        .into_iter()
        .map(|Captured { body, .. }| {
            assert_eq!(body["Type"], "Notification", "{body}");
            let message = serde_json::from_str(body["Message"].as_str().unwrap()).unwrap();
            (
                body["Subject"].as_str().unwrap_or_default().to_owned(),
                message,
            )
        })
        .collect()
}

#[tokio::test]
async fn every_kind_reaches_the_webhook_and_the_topic_once() {
    let w = world(&format!("{REPO}:1.0.0")).await;
    let capture = Capture::start().await;
    let arn = capture.sns_topic(&w.sdk).await;
    let sinks = vec![
        slack(&capture.url("/hook")),
        Arc::new(SnsTopic::new(sns_client(&w.sdk), &arn)) as Arc<dyn Sink>,
    ];
    let app = app_with(&w, &rules(&w, "*"), sinks, Duration::from_secs(5));
    let service = format!("{}/{}", w.fx.cluster, w.fx.service);
    let pinned = format!("{REPO}@{}", digest(1));

    // Started: the push moves the service.
    let body = json!({"image": format!("{REPO}:1.1.0"), "digest": digest(1), "id": "n-1"});
    let pushed = send(&app, Function::Push, "generic-push.json", body.clone()).await;
    assert_eq!(pushed["deployments"][0]["outcome"], "updated", "{pushed}");
    let text = one_message(&capture);
    assert!(
        text.starts_with(&format!(
            "imagehook: Deployment started: {service} -&gt; {pinned}"
        )),
        "{text}"
    );
    let sent = published(&capture);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (subject, message) = &sent[0];
    assert!(subject.starts_with("Deployment started: "), "{subject}");
    assert!(subject.len() < 100);
    assert_eq!(message["kind"], "deployment-started");
    assert_eq!(message["service"], service.as_str());
    assert_eq!(message["image"], pinned.as_str());
    assert_eq!(message["event_id"], "n-1");
    assert_eq!(message["source"], "imagehook");

    // A redelivery changes nothing, so it tells no one.
    let again = send(&app, Function::Push, "generic-push.json", body).await;
    assert_eq!(again["outcome"], "duplicate");
    assert!(capture.take("/hook").is_empty());
    assert!(published(&capture).is_empty());

    // Quarantined while the service runs it.
    let q = json!({"image": pinned, "quarantine": true, "reason": "CVE-2026-0001"});
    let quarantined = send(&app, Function::Quarantine, "generic-quarantine.json", q).await;
    assert_eq!(quarantined["running_services"], json!([service]));
    let text = one_message(&capture);
    assert!(
        text.contains(&format!(
            "Quarantined digest still running: {service} runs {pinned}"
        )),
        "{text}"
    );
    assert_eq!(
        published(&capture)[0].1["kind"],
        "quarantined-digest-running"
    );

    // Blocked: another tag of the quarantined digest.
    let blocked = push(&app, "1.1.1", &digest(1)).await;
    assert_eq!(blocked["deployments"][0]["outcome"], "blocked");
    let text = one_message(&capture);
    assert!(text.contains("Deployment blocked: "), "{text}");
    assert!(text.contains("quarantined"), "{text}");
    let sent = published(&capture);
    assert_eq!(sent[0].1["kind"], "deployment-blocked");
    assert!(
        sent[0].1["detail"]
            .as_str()
            .unwrap()
            .contains("quarantined")
    );

    // Deleted while the service still runs it.
    let d = json!({"image": pinned, "action": "delete"});
    let deleted = send(&app, Function::Delete, "generic-delete.json", d).await;
    assert_eq!(deleted["running_services"], json!([service]));
    let text = one_message(&capture);
    assert!(
        text.contains(&format!(
            "Deleted digest still running: {service} runs {pinned}"
        )),
        "{text}"
    );
    assert_eq!(published(&capture)[0].1["kind"], "deleted-digest-running");
}

/// ECS's circuit breaker rolls a deployment back: the outcomes path says so.
#[tokio::test]
async fn a_failed_rollout_is_announced_by_the_outcomes_path() {
    let w = world(&format!("{REPO}:latest")).await;
    let capture = Capture::start().await;
    let app = app_with(
        &w,
        &rules(&w, "force"),
        vec![slack(&capture.url("/hook"))],
        Duration::from_secs(5),
    );
    let pushed = push(&app, "latest", &digest(7)).await;
    let id = pushed["deployments"][0]["ecs_deployment_id"]
        .as_str()
        .expect("deployment id")
        .to_owned();
    assert!(one_message(&capture).contains("Deployment started"));

    let progress = w.state_change("SERVICE_DEPLOYMENT_IN_PROGRESS", &id, "started");
    outcomes(&app, &progress).await.unwrap();
    assert!(capture.take("/hook").is_empty(), "progress is not news");

    let failed = breaker_failed(&app, &w, &id).await;
    let text = one_message(&capture);
    assert!(
        text.starts_with(&format!(
            "imagehook: Deployment failed: {}/{} -&gt; {REPO}@{}",
            w.fx.cluster,
            w.fx.service,
            digest(7)
        )),
        "{text}"
    );
    assert!(text.contains("circuit breaker: rolled back"), "{text}");
    // The redelivered failure is a duplicate: no second message.
    assert_eq!(
        outcomes(&app, &failed).await.unwrap()["outcome"],
        "duplicate"
    );
    assert!(capture.take("/hook").is_empty());
}

/// The outcomes function publishes a rolled-back deployment to the topic as well (with the
/// outcomes function's own role: sns:Publish).
#[tokio::test]
async fn a_failed_rollout_is_published_to_the_topic_by_the_outcomes_path() {
    let w = world(&format!("{REPO}:latest")).await;
    let capture = Capture::start().await;
    let arn = capture.sns_topic(&w.sdk).await;
    let sinks = vec![Arc::new(SnsTopic::new(sns_client(&w.sdk), &arn)) as Arc<dyn Sink>];
    let app = app_with(&w, &rules(&w, "force"), sinks, Duration::from_secs(5));
    let pushed = push(&app, "latest", &digest(8)).await;
    let id = pushed["deployments"][0]["ecs_deployment_id"]
        .as_str()
        .expect("deployment id")
        .to_owned();
    assert_eq!(published(&capture)[0].1["kind"], "deployment-started");

    breaker_failed(&app, &w, &id).await;
    let sent = published(&capture);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (subject, message) = &sent[0];
    assert!(subject.starts_with("Deployment failed: "), "{subject}");
    assert_eq!(message["kind"], "deployment-failed");
    let service = format!("{}/{}", w.fx.cluster, w.fx.service);
    assert_eq!(message["service"], service.as_str());
    assert_eq!(
        message["image"],
        format!("{REPO}@{}", digest(8)).as_str(),
        "the repository is named: {message}"
    );
    assert!(
        message["detail"]
            .as_str()
            .unwrap()
            .contains("circuit breaker: rolled back"),
        "{message}"
    );
}

/// A refusing webhook, a closed port, a hanging one and a topic that does not exist: the push
/// still answers 200 with its deployment, in about the timeout, and each failure is counted.
#[tokio::test]
async fn failing_sinks_never_fail_the_delivery() {
    let w = world(&format!("{REPO}:1.0.0")).await;
    let capture = Capture::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic";
    let sinks = vec![
        slack(&capture.url("/fail/T000/B000/XXXX")),
        slack(&format!(
            "http://127.0.0.1:{closed}/services/T000/B000/XXXX"
        )),
        slack(&capture.url("/slow/T000/B000/XXXX")),
        Arc::new(SnsTopic::new(sns_client(&w.sdk), missing)) as Arc<dyn Sink>,
    ];
    let app = app_with(&w, &rules(&w, "*"), sinks, Duration::from_millis(500));

    let body = json!({"image": format!("{REPO}:1.1.0"), "digest": digest(2), "id": unique("p")});
    let req = lambda_http::request::from_str(&with_body(&event_file("generic-push.json"), &body))
        .unwrap();
    let started = Instant::now();
    let (resp, report) = handle_reported(&app, Function::Push, req).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 200);
    let reply: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    assert_eq!(reply["events"][0]["deployments"][0]["outcome"], "updated");
    assert_eq!(report.notify_failures, 4, "{report:?}");
    assert!(
        took < Duration::from_secs(3),
        "sinks run at once, each bounded: {took:?}"
    );
    // The refusing and hanging endpoints were reached; the record is what the response said.
    assert_eq!(capture.take("/fail/T000/B000/XXXX").len(), 1);
    assert_eq!(capture.take("/slow/T000/B000/XXXX").len(), 1);
}

/// Errors name what went wrong, never the webhook's secret path.
#[tokio::test]
async fn sink_errors_do_not_repeat_the_secret() {
    let capture = Capture::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let notice = imagehook_core::ports::notifier::Notice {
        kind: NoticeKind::DeploymentFailed,
        service: "prod/api".into(),
        image: format!("{REPO}@{}", digest(3)),
        stage: None,
        detail: None,
        event_id: None,
    };
    for url in [
        capture.url("/fail/services/T0/B0/s3cr3t-path"),
        format!("http://127.0.0.1:{closed}/services/T0/B0/s3cr3t-path"),
    ] {
        let err = slack(&url)
            .send(std::slice::from_ref(&notice))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!format!("{err:?}").contains("s3cr3t"), "{err:?}");
    }
}

/// The circuit breaker stopped the deployment `id`: the outcomes function records it. Returns
/// the state change, to be sent again.
async fn breaker_failed(app: &imagehook_core::app::App, w: &World, id: &str) -> String {
    let failed = w.state_change(
        "SERVICE_DEPLOYMENT_FAILED",
        id,
        "ECS deployment circuit breaker: tasks failed to start.",
    );
    assert_eq!(outcomes(app, &failed).await.unwrap()["outcome"], "recorded");
    failed
}

/// A deployment held for approval is announced with what to run, and the approval through the
/// control API's signed route deploys it and says so on the topic: the control function
/// notifies as the webhook functions do.
#[tokio::test]
async fn an_approval_through_the_control_api_is_announced_on_the_topic() {
    let w = world(&format!("{REPO}:1.0.0")).await;
    let capture = Capture::start().await;
    let arn = capture.sns_topic(&w.sdk).await;
    let sinks = vec![Arc::new(SnsTopic::new(sns_client(&w.sdk), &arn)) as Arc<dyn Sink>];
    let gated = json!([{"repository": "shop/api", "tags": "*", "cluster": w.fx.cluster,
                        "service": w.fx.service, "container": "api",
                        "approval": {"required": 1}}])
    .to_string();
    let app = app_with(&w, &gated, sinks, Duration::from_secs(5));
    let pushed = push(&app, "1.1.0", &digest(1)).await;
    let held = &pushed["deployments"][0];
    assert_eq!(held["outcome"], "awaiting_approval", "{pushed}");
    let id = held["hold_id"].as_str().unwrap();
    let asked = published(&capture);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].1["kind"], "approval-required");

    let path = format!("/approvals/{id}/approve");
    let approver = "arn:aws:iam::123456789012:user/release-manager";
    let (status, approved) = control_api(&app, "POST", &path, None, Some(approver)).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["deployment"]["outcome"], "updated", "{approved}");
    let told = published(&capture);
    assert!(
        told.iter().any(|(_, m)| m["kind"] == "deployment-started"),
        "{told:?}"
    );
}
