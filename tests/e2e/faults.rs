use imagehook_core::app::config::DeployMode;
use imagehook_core::auth::AuthMode;
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::{Value, json};

const REPO: &str = "contoso.azurecr.io/shop/api";

fn rules(fx: &EcsFixture) -> String {
    json!([{"repository": REPO, "tags": "v*", "cluster": fx.cluster, "service": fx.service}])
        .to_string()
}

#[tokio::test]
async fn dynamodb_unreachable_answers_503_and_writes_nothing() {
    let sdk = sdk().await;
    let dead = unreachable_sdk().await;
    let table = create_table(&sdk).await;
    let fx = create_service(&sdk, &format!("{REPO}:v1.4.1")).await;
    let app = app(AppSpec {
        table: &table,
        rules: &rules(&fx),
        auth: AuthMode::None,
        secrets: &[],
        deploy_mode: DeployMode::Apply,
        dynamo_sdk: &dead,
        ecs_sdk: &sdk,
    });
    let reply = invoke(&app, Function::Push, &event_file("acr-push.json")).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body["error"], "unavailable");
    assert!(all_items(&sdk, &table).await.is_empty());
    assert_eq!(
        running(&sdk, &fx).await.task_definition_arn,
        fx.task_definition_arn
    );
}

/// A table, a service, rules for it, and an SDK configuration whose every call fails.
struct Outage {
    sdk: aws_config::SdkConfig,
    dead: aws_config::SdkConfig,
    table: String,
    fx: EcsFixture,
    rules: String,
}

impl Outage {
    /// Pushes `event` while ECS is unreachable: 503, nothing deployed. Returns the event id and
    /// the receipt that delivery left.
    async fn failed_push(&self, event: &str) -> (String, Value) {
        let id = body_of(event)["id"].as_str().unwrap().to_owned();
        let failed = invoke(&self.app(&self.dead), Function::Push, event).await;
        assert_eq!(failed.status, 503, "{}", failed.body);
        assert_eq!(
            running(&self.sdk, &self.fx).await.task_definition_arn,
            self.fx.task_definition_arn
        );
        let receipt = get_item(&self.sdk, &self.table, &format!("EVT#acr#{id}"), "EVT")
            .await
            .unwrap();
        (id, receipt)
    }

    fn app(&self, ecs_sdk: &aws_config::SdkConfig) -> imagehook_core::app::App {
        sample_app_on(
            &self.sdk,
            ecs_sdk,
            &self.table,
            &self.rules,
            DeployMode::Apply,
        )
    }
}

async fn outage() -> Outage {
    let sdk = sdk().await;
    let dead = unreachable_sdk().await;
    let table = create_table(&sdk).await;
    let fx = create_service(&sdk, &format!("{REPO}:v1.4.1")).await;
    let rules = rules(&fx);
    Outage {
        sdk,
        dead,
        table,
        fx,
        rules,
    }
}

#[tokio::test]
async fn ecs_failure_keeps_the_receipt_pending_so_the_retry_deploys() {
    let o = outage().await;
    let (sdk, table, fx) = (&o.sdk, &o.table, &o.fx);
    let build = |ecs_sdk: &aws_config::SdkConfig| o.app(ecs_sdk);
    let event = event_file("acr-push.json");
    let (id, receipt) = Box::pin(o.failed_push(&event)).await;
    assert_eq!(receipt["status"], "pending");

    let retried = invoke(&build(sdk), Function::Push, &event).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    let e = &retried.body["events"][0];
    assert_eq!(e["outcome"], "duplicate");
    assert_eq!(e["deployments"][0]["outcome"], "updated");
    let receipt = get_item(sdk, table, &format!("EVT#acr#{id}"), "EVT")
        .await
        .unwrap();
    assert_eq!(receipt["status"], "done");
    assert_ne!(
        running(sdk, fx).await.task_definition_arn,
        fx.task_definition_arn
    );

    let third = invoke(&build(sdk), Function::Push, &event).await;
    assert_eq!(third.body["events"][0]["deployments"], json!([]));
}

/// The sender gave up after the 503: `imagehook replay` re-drives the kept request from its
/// receipt, completes the deployment once, and a second replay changes nothing.
#[tokio::test]
async fn replay_completes_what_a_sender_gave_up_on() {
    let o = outage().await;
    let (sdk, fx) = (&o.sdk, &o.fx);
    let event = event_file("acr-push.json");
    let (id, receipt) = Box::pin(o.failed_push(&event)).await;
    assert_eq!(receipt["payload"]["provider"], Value::Null);
    assert_eq!(
        serde_json::from_str::<Value>(receipt["payload"]["body"].as_str().unwrap()).unwrap(),
        body_of(&event)
    );

    let app = o.app(sdk);
    let replayed = app.replay(&format!("acr#{id}")).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].deployments[0].outcome.as_str(), "updated");
    assert_ne!(
        running(sdk, fx).await.task_definition_arn,
        fx.task_definition_arn
    );
    let again = app.replay(&format!("acr#{id}")).await.unwrap();
    assert_eq!(again[0].outcome.as_str(), "duplicate");
    assert!(again[0].deployments.is_empty());
    let missing = app.replay("acr#no-such-event").await;
    assert!(
        missing.unwrap_err().to_string().contains("no receipt"),
        "an unknown receipt is named"
    );
}

/// Requests the sender got wrong: each has its status, a JSON body naming the problem, and
/// leaves the table empty.
#[tokio::test]
async fn bad_requests_get_precise_errors_and_write_nothing() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let app = sample_app(&sdk, &table, "[]", DeployMode::DryRun);
    let event = event_file("acr-push.json");
    let mut v: serde_json::Value = serde_json::from_str(&event).unwrap();

    let mut wrong_token = v.clone();
    wrong_token["headers"]["authorization"] = json!("Bearer not-the-token");
    let r = invoke(&app, Function::Push, &wrong_token.to_string()).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        json!({"error": "unauthorized", "message": "the request is not authenticated"})
    );

    let mut no_token = v.clone();
    no_token["headers"]
        .as_object_mut()
        .unwrap()
        .remove("authorization");
    let r2 = invoke(&app, Function::Push, &no_token.to_string()).await;
    assert_eq!(
        (r2.status, &r2.body),
        (401, &r.body),
        "401 bodies must not say which check failed"
    );

    let mut body = body_of(&event);
    body["target"]["repository"] = json!("Shop/API");
    let r = invoke(&app, Function::Push, &with_body(&event, &body)).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["error"], "invalid_reference");
    assert!(r.body["message"].as_str().unwrap().contains("Shop/API"));

    let r = invoke(
        &app,
        Function::Push,
        &with_body(&event, &json!({"hello": "world"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "unknown_format");

    let mut not_json = v.clone();
    not_json["body"] = json!("{not json");
    let r = invoke(&app, Function::Push, &not_json.to_string()).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (400, Some("invalid_json"))
    );

    let mut xml = v.clone();
    xml["headers"]["content-type"] = json!("application/xml");
    let r = invoke(&app, Function::Push, &xml.to_string()).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    let mut get = v.clone();
    get["requestContext"]["http"]["method"] = json!("GET");
    let r = invoke(&app, Function::Push, &get.to_string()).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );

    v["body"] = json!("x".repeat(1024 * 1024 + 1));
    let r = invoke(&app, Function::Push, &v.to_string()).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (413, Some("payload_too_large"))
    );

    assert!(all_items(&sdk, &table).await.is_empty());
}
