//! The HTTP edge shared by every sender: the auth schemes end to end, the handshakes, path
//! tokens, provider overrides and body encodings, through the real handler with the embedded
//! store.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use imagehook_core::adapters::DryRunDeployer;
use imagehook_core::adapters::EmbeddedStore;
use imagehook_core::app::App;
use imagehook_core::app::config::{Config, DeployMode};
use imagehook_core::auth::{AuthMode, Secret, Verifier, sign_standard_webhooks};
use imagehook_core::model::function::Function;
use imagehook_core::model::rules::Rules;
use imagehook_tests::*;
use lambda_http::RequestExt;
use serde_json::{Value, json};

pub(crate) fn app_with(mode: AuthMode, secrets: &[&str]) -> App {
    app_on(EmbeddedStore::in_memory(), None, mode, secrets)
}

/// The handlers on `store` (kept in `state_dir`, if any), dry-run, with no rules.
pub(crate) fn app_on(
    store: EmbeddedStore,
    state_dir: Option<&std::path::Path>,
    mode: AuthMode,
    secrets: &[&str],
) -> App {
    let config = Config {
        table_name: None,
        state_dir: state_dir.map(ToOwned::to_owned),
        webhooks: true,
        follow_clusters: Vec::new(),
        service_region: Some("us-east-1".to_owned()),
        registry_aliases: Default::default(),
        verifier: Verifier::new(
            mode,
            None,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        )
        .unwrap(),
        oidc_issuers: Vec::new(),
        rules: Rules::default(),
        deploy_mode: DeployMode::DryRun,
        receipt_ttl_days: 7,
        lease: imagehook_core::pipeline::converge::DEFAULT_LEASE,
        quarantine: Default::default(),
        registry: Default::default(),
        notify: Default::default(),
    };
    App::new(config, Arc::new(store), Arc::new(DryRunDeployer))
}

async fn send(app: &App, req: lambda_http::Request) -> (u16, http::HeaderMap, Vec<u8>) {
    let resp = imagehook_core::edge::http::handle(app, Function::Push, req).await;
    (
        resp.status().as_u16(),
        resp.headers().clone(),
        resp.body().as_ref().to_vec(),
    )
}

fn request(event: &str) -> lambda_http::Request {
    lambda_http::request::from_str(event).unwrap()
}

fn generic_event(body: &Value) -> String {
    with_body(&event_file("generic-push.json"), body)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_wrong_path_token_gets_the_same_404_as_an_unknown_path() {
    let app = app_with(AuthMode::PathToken, &["9f3b6c1e-path-secret"]);
    let event = event_file("generic-push.json");
    let with_token = |t: &str| {
        request(&event).with_path_parameters(HashMap::from([("token".to_owned(), t.to_owned())]))
    };
    let (ok, _, body) = send(&app, with_token("9f3b6c1e-path-secret")).await;
    assert_eq!(ok, 200, "{}", String::from_utf8_lossy(&body));

    let (status, headers, wrong) = send(&app, with_token("9f3b6c1e-path-secreT")).await;
    let (_, _, missing) = send(&app, request(&event)).await;
    let unknown = imagehook_core::edge::http::ApiError::NotFound.into_response();
    assert_eq!(status, 404);
    assert_eq!(wrong, unknown.body().as_ref());
    assert_eq!(missing, wrong);
    assert_eq!(headers, *unknown.headers());
    // Nothing else about the request shows through a wrong token: not the method, the size or
    // the content type.
    let mut odd: Value = serde_json::from_str(&event).unwrap();
    odd["requestContext"]["http"]["method"] = json!("GET");
    odd["headers"]["content-type"] = json!("application/xml");
    odd["body"] = json!("x".repeat(2 * 1024 * 1024));
    let odd = request(&odd.to_string())
        .with_path_parameters(HashMap::from([("token".to_owned(), "nope".to_owned())]));
    let (status, _, body) = send(&app, odd).await;
    assert_eq!((status, body), (404, wrong));
}

#[tokio::test]
async fn standard_webhooks_signatures_are_checked_with_their_tolerance() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let app = app_with(AuthMode::StandardWebhooks, &[secret]);
    let body = json!({"image": "registry.example.com/shop/api:2.0.0"}).to_string();
    let signed = |id: &str, ts: i64| {
        let mut v: Value =
            serde_json::from_str(&generic_event(&serde_json::from_str(&body).unwrap())).unwrap();
        let h = v["headers"].as_object_mut().unwrap();
        h.remove("authorization");
        h.insert("webhook-id".into(), json!(id));
        h.insert("webhook-timestamp".into(), json!(ts.to_string()));
        h.insert(
            "webhook-signature".into(),
            json!(sign_standard_webhooks(secret, id, ts, body.as_bytes()).unwrap()),
        );
        v.to_string()
    };
    let (status, _, out) = send(&app, request(&signed("msg_1", now()))).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let (status, _, out) = send(&app, request(&signed("msg_2", now() - 600))).await;
    assert_eq!(
        status,
        401,
        "a replayed delivery outside the tolerance: {}",
        String::from_utf8_lossy(&out)
    );
    let (status, _, _) = send(&app, request(&signed("msg_3", now() + 600))).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn event_grid_abuse_protection_handshake_is_answered() {
    let app = app_with(AuthMode::Token, &["sample-webhook-token"]);
    let mut v: Value = serde_json::from_str(&event_file("acr-push.json")).unwrap();
    v["requestContext"]["http"]["method"] = json!("OPTIONS");
    v["body"] = json!("");
    v["headers"] = json!({"webhook-request-origin": "eventgrid.azure.net"});
    let (status, headers, _) = send(&app, request(&v.to_string())).await;
    assert_eq!(status, 200);
    assert_eq!(headers["webhook-allowed-origin"], "eventgrid.azure.net");
    assert_eq!(headers["webhook-allowed-rate"], "*");
}

#[tokio::test]
async fn form_encoded_and_base64_bodies_are_decoded() {
    let app = app_with(AuthMode::None, &[]);
    let json_body =
        json!({"image": "registry.example.com/shop/api:3.1.0", "id": "form-1"}).to_string();
    let mut v: Value = serde_json::from_str(&event_file("generic-push.json")).unwrap();
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &json_body)
        .finish();
    v["headers"]["content-type"] = json!("application/x-www-form-urlencoded");
    v["headers"]["content-length"] = json!(form.len().to_string());
    v["body"] = json!(form);
    let (status, _, out) = send(&app, request(&v.to_string())).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let reply: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(reply["events"][0]["id"], "form-1");

    v["body"] = json!("nothing=here");
    let (status, _, out) = send(&app, request(&v.to_string())).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&out));

    let mut b: Value = serde_json::from_str(&event_file("generic-push.json")).unwrap();
    let plain = json!({"image": "registry.example.com/shop/api:3.2.0", "id": "b64-1"}).to_string();
    b["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&plain));
    b["isBase64Encoded"] = json!(true);
    let (status, _, out) = send(&app, request(&b.to_string())).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let reply: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(reply["events"][0]["id"], "b64-1");
}

#[tokio::test]
async fn the_provider_can_be_named_by_query_or_route() {
    let app = app_with(AuthMode::None, &[]);
    let event = event_file("acr-push.json");
    let query = |p: &str| {
        request(&event)
            .with_query_string_parameters(HashMap::from([("provider".to_owned(), p.to_owned())]))
    };
    let (status, _, out) = send(&app, query("acr")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    // Forced to parse as another sender's format, the body is refused by that parser.
    let (status, _, _) = send(&app, query("generic")).await;
    assert_eq!(status, 400);
    let (status, _, out) = send(&app, query("bitbucket")).await;
    assert_eq!(status, 400);
    let err: Value = serde_json::from_slice(&out).unwrap();
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("unknown provider"),
        "{err}"
    );
    let route = request(&event)
        .with_path_parameters(HashMap::from([("provider".to_owned(), "acr".to_owned())]));
    assert_eq!(send(&app, route).await.0, 200);
}

/// Every shipped sample event is a valid API Gateway event that its function answers 200 with
/// the token the samples carry, so the files in `events/` keep working for users.
#[tokio::test]
async fn every_sample_event_is_answered_by_its_function() {
    let dir = workspace_root().join("events");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The rules and the functions' environment for `sam local invoke` are not events.
        if !name.ends_with(".json") || name == "deploy-rules.json" || name == "env.json" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["source"] == "aws.ecs" {
            // EventBridge events for the outcomes function, not API Gateway events.
            let app = app_with(AuthMode::Token, &["sample-webhook-token"]);
            let out = imagehook_core::pipeline::outcomes::handle(app.store(), text.as_bytes(), 7)
                .await
                .unwrap();
            assert_eq!(out["outcome"], "not-ours", "{name}: {out}");
            checked += 1;
            continue;
        }
        if v.get("lifecycleStage").is_some() {
            // ECS's deployment lifecycle hook events, for the guard (tests/e2e/guard.rs runs them).
            let event = imagehook_core::pipeline::guard::parse(text.as_bytes());
            assert!(event.is_ok(), "{name}: {event:?}");
            checked += 1;
            continue;
        }
        let route = v["rawPath"].as_str().or(v["path"].as_str()).unwrap();
        let function = Function::WEBHOOKS
            .iter()
            .copied()
            .find(|f| f.route().is_some_and(|r| route.ends_with(r)))
            .unwrap_or_else(|| panic!("{name}: no function for {route}"));
        let app = app_with(AuthMode::Token, &["sample-webhook-token"]);
        let resp = imagehook_core::edge::http::handle(&app, function, request(&text)).await;
        let body = String::from_utf8_lossy(resp.body().as_ref()).into_owned();
        assert_eq!(resp.status(), 200, "{name}: {body}");
        checked += 1;
    }
    assert!(checked >= 35, "{checked}");
}

/// What a request did reaches the metrics: events by provider, action and outcome, deployments
/// by outcome, and authentication failures, and every EMF line it becomes is valid JSON with
/// the declared metrics present.
#[tokio::test]
async fn requests_report_what_the_metrics_count() {
    let app = app_with(AuthMode::Token, &["sample-webhook-token"]);
    let (resp, report) = imagehook_core::edge::http::handle_reported(
        &app,
        Function::Push,
        request(&event_file("acr-push.json")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(report.events, vec![("acr", "push".to_owned(), "applied")]);
    assert!(!report.auth_failed);
    for line in imagehook_core::edge::metrics::emf_lines("push", &report, 3.0, 0) {
        let v: Value = serde_json::from_str(&line).unwrap();
        for m in v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            assert!(v[m["Name"].as_str().unwrap()].is_number(), "{line}");
        }
    }

    let wrong = event_file("acr-push.json").replace("sample-webhook-token", "nope");
    let (resp, report) =
        imagehook_core::edge::http::handle_reported(&app, Function::Push, request(&wrong)).await;
    assert_eq!((resp.status().as_u16(), report.auth_failed), (401, true));
    assert!(report.events.is_empty());
}
