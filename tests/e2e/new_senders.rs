//! JFrog Artifactory, Alibaba Cloud Container Registry and Sonatype Nexus Repository through the
//! real handler against moto: each sample push plans its rule's service in dry-run, and each
//! sender's own way of proving itself is checked, a wrong secret refused.

use imagehook_core::app::config::DeployMode;
use imagehook_core::auth::AuthMode;
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::{Value, json};

fn rule(w: &World, repository: &str) -> String {
    json!([{"repository": repository, "tags": "*", "cluster": w.fx.cluster,
            "service": w.fx.service, "container": "api", "stage": "prod"}])
    .to_string()
}

fn with_header(event: &str, name: &str, value: &str) -> String {
    let mut v: Value = serde_json::from_str(event).unwrap();
    v["headers"][name] = json!(value);
    v.to_string()
}

/// The one event's one deployment: its outcome and the image it would run.
fn planned(reply: &Reply) -> (String, String) {
    let d = &reply.body["events"][0]["deployments"][0];
    (
        d["outcome"].as_str().unwrap_or_default().to_owned(),
        d["image"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn an_artifactory_push_plans_its_rules_service_pinned_and_a_wrong_secret_is_refused() {
    let w = world("registry.example.com/shop/api:1.5.0").await;
    let app = sample_app(
        &w.sdk,
        &w.table,
        &rule(&w, "registry.example.com/shop/api"),
        DeployMode::DryRun,
    );
    let event = event_file("artifactory-push.json");
    let reply = invoke(&app, Function::Push, &event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["events"][0]["provider"], "artifactory");
    assert_eq!(
        planned(&reply),
        (
            "planned".to_owned(),
            "registry.example.com/shop/api@sha256:7d1f3b5a9c2e4f6081a3c5e7f9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7".to_owned()
        )
    );
    let again = invoke(&app, Function::Push, &event).await;
    assert_eq!(
        again.body["events"][0]["outcome"], "duplicate",
        "{}",
        again.body
    );
    let wrong = with_header(&event, "authorization", "Bearer not-the-token");
    assert_eq!(invoke(&app, Function::Push, &wrong).await.status, 401);

    // "Use secret for payload signing": the HMAC-SHA256 of the body in X-JFrog-Event-Auth.
    let signed = app_with_auth(&w, AuthMode::HmacSha256, Some("x-jfrog-event-auth"), "[]");
    let reply = invoke(&signed, Function::Push, &event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let forged = with_header(&event, "x-jfrog-event-auth", &"0".repeat(64));
    assert_eq!(invoke(&signed, Function::Push, &forged).await.status, 401);
}

#[tokio::test]
async fn an_alibaba_acr_push_names_its_regional_registry_and_needs_the_token() {
    let w = world("registry.cn-hangzhou.aliyuncs.com/contoso/shop-api:v1.4.3").await;
    let app = sample_app(
        &w.sdk,
        &w.table,
        &rule(&w, "registry.cn-hangzhou.aliyuncs.com/contoso/shop-api"),
        DeployMode::DryRun,
    );
    let event = event_file("alibaba-acr-push.json");
    let reply = invoke(&app, Function::Push, &event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["events"][0]["provider"], "alibaba-acr");
    let (outcome, image) = planned(&reply);
    assert_eq!(outcome, "planned");
    assert!(
        image.starts_with("registry.cn-hangzhou.aliyuncs.com/contoso/shop-api@sha256:3e9a1c5b"),
        "{image}"
    );
    let wrong = with_header(&event, "authorization", "Bearer not-the-token");
    assert_eq!(invoke(&app, Function::Push, &wrong).await.status, 401);
}

#[tokio::test]
async fn a_nexus_component_push_is_verified_by_its_hmac_sha1_and_plans_the_tag() {
    let w = world("registry.example.com/shop/api:1.5.0").await;
    let app = app_with_auth(
        &w,
        AuthMode::HmacSha1,
        None,
        &rule(&w, "registry.example.com/shop/api"),
    );
    let event = event_file("nexus-push.json");
    let reply = invoke(&app, Function::Push, &event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["events"][0]["provider"], "nexus");
    let (outcome, image) = planned(&reply);
    assert_eq!(outcome, "planned", "{}", reply.body);
    assert!(
        image.starts_with("registry.example.com/shop/api"),
        "{image}"
    );
    // A signature made with another secret, or none at all, is refused.
    let body = body_of(&event).to_string();
    let other = imagehook_core::auth::sign_hmac_sha1("another-secret", body.as_bytes());
    let forged = with_header(&event, "x-nexus-webhook-signature", &other);
    assert_eq!(invoke(&app, Function::Push, &forged).await.status, 401);
    let mut unsigned: Value = serde_json::from_str(&event).unwrap();
    unsigned["headers"]
        .as_object_mut()
        .unwrap()
        .remove("x-nexus-webhook-signature");
    assert_eq!(
        invoke(&app, Function::Push, &unsigned.to_string())
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn senders_without_a_registry_host_are_told_to_add_it_to_the_url() {
    let w = world("registry.example.com/shop/api:1.5.0").await;
    let app = sample_app(&w.sdk, &w.table, "[]", DeployMode::DryRun);
    for file in ["artifactory-push.json", "nexus-push.json"] {
        let mut v: Value = serde_json::from_str(&event_file(file)).unwrap();
        v["rawQueryString"] = json!("");
        v.as_object_mut().unwrap().remove("queryStringParameters");
        let reply = invoke(&app, Function::Push, &v.to_string()).await;
        assert_eq!(reply.status, 400, "{file}: {}", reply.body);
        assert!(
            reply.body.to_string().contains("?registry="),
            "{file}: {}",
            reply.body
        );
    }
}

/// An app on the world's table and ECS with the sample secret under another auth mode.
fn app_with_auth(
    w: &World,
    mode: AuthMode,
    header: Option<&str>,
    rules: &str,
) -> imagehook_core::app::App {
    let mut config = open_config(&w.table, rules, DeployMode::DryRun);
    config.verifier = imagehook_core::auth::Verifier::new(
        mode,
        header,
        vec![imagehook_core::auth::Secret::new("sample-webhook-token")],
    )
    .unwrap();
    imagehook_core::app::App::new(
        config,
        std::sync::Arc::new(imagehook_core::adapters::DynamoStore::new(
            dynamo_client(&w.sdk),
            &w.table,
        )),
        std::sync::Arc::new(imagehook_core::adapters::DryRunDeployer),
    )
}
