//! The edge's limits, through the real handler with the embedded store: bodies over 1 MiB, more
//! events than one request may carry, JSON nested past the parser's depth limit, and oversized
//! headers. Each is a clean 4xx with a JSON error and nothing stored, never a panic or a 500.

use base64::Engine as _;
use imagehook_core::app::App;
use imagehook_core::app::config::{MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST};
use imagehook_core::auth::{AuthMode, sign_standard_webhooks};
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::{Value, json};

use crate::edge::app_with;

const TOKEN: &str = "sample-webhook-token";

/// Status, error code (null on success) and the whole reply.
async fn send(app: &App, function: Function, event: &str) -> (u16, Value) {
    let req = lambda_http::request::from_str(event).unwrap();
    let resp = imagehook_core::edge::http::handle(app, function, req).await;
    let body: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    (resp.status().as_u16(), body)
}

/// An event file with its raw body text and headers replaced.
fn raw_event(file: &str, body: &str, headers: Value) -> String {
    let mut v: Value = serde_json::from_str(&event_file(file)).unwrap();
    v["body"] = json!(body);
    v["headers"] = headers;
    v.to_string()
}

async fn nothing_stored(app: &App) {
    let items = app.dump().await.unwrap();
    assert!(items.is_empty(), "refused, yet stored: {items:?}");
}

/// The status and error code of a refusal, with the body in the failure message.
fn refused(status: u16, reply: &Value, want_status: u16, want_error: &str) {
    assert_eq!(
        (status, &reply["error"]),
        (want_status, &json!(want_error)),
        "{reply}"
    );
}

/// The refusal's message says the JSON nests past serde_json's limit.
fn names_the_recursion_limit(reply: &Value) {
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("recursion limit"),
        "{reply}"
    );
}

#[tokio::test]
async fn a_body_over_one_mib_is_refused_before_authentication_and_parsing() {
    let app = app_with(AuthMode::Token, &[TOKEN]);
    // Not JSON, not a supported content type, no credentials: the size alone decides.
    let over = "x".repeat(MAX_BODY_BYTES + 1);
    let event = raw_event(
        "generic-push.json",
        &over,
        json!({"content-type": "text/plain"}),
    );
    let (status, reply) = send(&app, Function::Push, &event).await;
    assert_eq!(
        (status, &reply["error"]),
        (413, &json!("payload_too_large"))
    );
    assert!(
        reply["message"].as_str().unwrap().contains("1048576"),
        "{reply}"
    );

    // One byte less is read on: the content type, then the missing credentials refuse it.
    let at_limit = "x".repeat(MAX_BODY_BYTES);
    let event = raw_event(
        "generic-push.json",
        &at_limit,
        json!({"content-type": "text/plain"}),
    );
    assert_eq!(send(&app, Function::Push, &event).await.0, 415);
    let event = raw_event(
        "generic-push.json",
        &at_limit,
        json!({"content-type": "application/json"}),
    );
    assert_eq!(send(&app, Function::Push, &event).await.0, 401);

    // API Gateway's base64 bodies are measured decoded, as the function receives them.
    let mut v: Value = serde_json::from_str(&event_file("generic-push.json")).unwrap();
    v["body"] = json!(base64::engine::general_purpose::STANDARD.encode(over.as_bytes()));
    v["isBase64Encoded"] = json!(true);
    v["headers"] = json!({});
    let (status, reply) = send(&app, Function::Push, &v.to_string()).await;
    assert_eq!(
        (status, &reply["error"]),
        (413, &json!("payload_too_large"))
    );
    nothing_stored(&app).await;
}

/// A Distribution envelope of `n` manifest pushes, each its own event id, digest and tag.
fn distribution_envelope(n: usize) -> String {
    let sample = event_file("distribution-push.json");
    let one = body_of(&sample)["events"][0].clone();
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let mut e = one.clone();
            let digest = format!("sha256:{i:064x}");
            e["id"] = json!(format!("envelope-{i}"));
            e["target"]["digest"] = json!(digest);
            e["target"]["tag"] = json!(format!("1.{i}.0"));
            e["target"]["url"] = json!(format!(
                "https://registry.example.com/v2/shop/api/manifests/{digest}"
            ));
            e
        })
        .collect();
    with_body(&sample, &json!({ "events": events }))
}

#[tokio::test]
async fn an_envelope_of_up_to_100_events_is_handled_and_a_larger_one_refused_whole() {
    assert_eq!(MAX_EVENTS_PER_REQUEST, 100);
    let app = app_with(AuthMode::Token, &[TOKEN]);
    let (status, reply) = send(&app, Function::Push, &distribution_envelope(100)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["received"], 100);
    let events = reply["events"].as_array().unwrap();
    assert!(events.iter().all(|e| e["outcome"] == "applied"), "{reply}");
    let receipts = |items: &[serde_json::Map<String, Value>]| {
        items
            .iter()
            .filter(|i| i["PK"].as_str().unwrap().starts_with("EVT#"))
            .count()
    };
    let before = app.dump().await.unwrap();
    assert_eq!(receipts(&before), 100);

    // Distribution retries a refusal for ever, so the whole envelope is rejected in a 200.
    for n in [101, 1000] {
        let event = distribution_envelope(n);
        let (status, reply) = send(&app, Function::Push, &event).await;
        assert_eq!(
            (
                status,
                &reply["events"][0]["outcome"],
                reply["received"].as_u64()
            ),
            (200, &json!("rejected"), Some(1)),
            "{n} events"
        );
        let message = reply["events"][0]["reason"].as_str().unwrap();
        assert!(
            message.contains(&format!("carries {n} events")) && message.contains("limit is 100"),
            "{message}"
        );
        // Not one of them recorded, not even the first hundred.
        assert_eq!(app.dump().await.unwrap(), before, "{n} events");
    }

    // The same limit for every sender that batches: an Event Grid array of 101.
    let sample = event_file("eventgrid-push.json");
    let one = body_of(&sample)[0].clone();
    let batch: Vec<Value> = (0..101)
        .map(|i| {
            let mut e = one.clone();
            e["id"] = json!(format!("grid-{i}"));
            e["data"]["id"] = json!(format!("grid-{i}"));
            e
        })
        .collect();
    let (status, reply) = send(&app, Function::Push, &with_body(&sample, &json!(batch))).await;
    refused(status, &reply, 413, "too_many_events");
    assert_eq!(app.dump().await.unwrap(), before);
}

/// `depth` levels of `open`, then `leaf`, then the matching closes.
fn nested(open: &str, close: &str, leaf: &str, depth: usize) -> String {
    format!("{}{leaf}{}", open.repeat(depth), close.repeat(depth))
}

#[tokio::test]
async fn deeply_nested_json_is_a_400_on_every_parse_path() {
    let app = app_with(AuthMode::None, &[]);
    let generic = "generic-push.json";
    let json_ct = json!({"content-type": "application/json"});
    let deep_value = nested("[", "]", "1", 10_000);
    let bodies = [
        "[".repeat(100_000),
        "{\"a\":".repeat(50_000),
        nested("[", "]", "", 100_000),
        nested("{\"a\":", "}", "1", 50_000),
        // A valid push whose one extra field is nested too deep.
        format!(r#"{{"image": "registry.example.com/shop/api:1.0.0", "id": {deep_value}}}"#),
    ];
    for body in &bodies {
        let (status, reply) = send(
            &app,
            Function::Push,
            &raw_event(generic, body, json_ct.clone()),
        )
        .await;
        refused(status, &reply, 400, "invalid_json");
        names_the_recursion_limit(&reply);

        // Form-encoded (GitHub, Gitea): the `payload` field is parsed the same way.
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", body)
            .finish();
        let event = raw_event(
            generic,
            &form,
            json!({"content-type": "application/x-www-form-urlencoded"}),
        );
        let (status, reply) = send(&app, Function::Push, &event).await;
        refused(status, &reply, 400, "invalid_json");

        // Base64 bodies, as API Gateway passes binary content.
        let mut v: Value = serde_json::from_str(&raw_event(generic, "", json_ct.clone())).unwrap();
        v["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
        v["isBase64Encoded"] = json!(true);
        let (status, reply) = send(&app, Function::Push, &v.to_string()).await;
        refused(status, &reply, 400, "invalid_json");
    }

    // A Standard Webhooks envelope, correctly signed, whose `data` nests too deep.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let signed_app = app_with(AuthMode::StandardWebhooks, &[secret]);
    let body = format!(
        r#"{{"type": "image.pushed", "timestamp": "2026-01-01T00:00:00Z", "data": {{"image": "registry.example.com/shop/api:1.0.0", "digest": {deep_value}}}}}"#
    );
    let now = time_now();
    let event = raw_event(
        generic,
        &body,
        json!({
            "content-type": "application/json",
            "webhook-id": "msg_deep",
            "webhook-timestamp": now.to_string(),
            "webhook-signature": sign_standard_webhooks(secret, "msg_deep", now, body.as_bytes()).unwrap(),
        }),
    );
    let (status, reply) = send(&signed_app, Function::Push, &event).await;
    refused(status, &reply, 400, "invalid_json");

    // Google Artifact Registry: the Pub/Sub `message.data` is a second JSON document, decoded
    // from base64; nested too deep, it is a malformed event. Pub/Sub redelivers a refusal for
    // the subscription's retention, so it is rejected in a 200 instead.
    let inner = nested("[", "]", "1", 100_000);
    let pubsub = json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(inner),
            "messageId": "1", "publishTime": "2026-01-01T00:00:00Z"
        },
        "subscription": "projects/p/subscriptions/s"
    });
    let (status, reply) = send(
        &app,
        Function::Push,
        &raw_event("gar-push.json", &pubsub.to_string(), json_ct.clone()),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let rejected = &reply["events"][0];
    assert_eq!(rejected["outcome"], "rejected", "{reply}");
    assert!(
        rejected["reason"]
            .as_str()
            .unwrap()
            .contains("recursion limit"),
        "{reply}"
    );
    nothing_stored(&app).await;
    nothing_stored(&signed_app).await;
}

#[tokio::test]
async fn oversized_credentials_are_a_clean_401() {
    let big = 64 * 1024;
    let body = json!({"image": "registry.example.com/shop/api:1.0.0"}).to_string();
    let hex_sig = format!("sha256={}", "ab".repeat(big / 2));
    let not_hex = format!("sha256={}", "z".repeat(big));
    let bearer = format!("Bearer {}", "t".repeat(big));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u".repeat(big))
    );
    let many_signatures = vec!["v1,AAAA"; big / 8].join(" ");
    let now = time_now().to_string();
    let cases: Vec<(AuthMode, &str, Value)> = vec![
        (AuthMode::Token, TOKEN, json!({"authorization": bearer})),
        (
            AuthMode::Basic,
            "user:pass",
            json!({"authorization": basic}),
        ),
        (
            AuthMode::HmacSha256,
            "s3cret",
            json!({"x-hub-signature-256": hex_sig}),
        ),
        (
            AuthMode::HmacSha256,
            "s3cret",
            json!({"x-hub-signature-256": not_hex}),
        ),
        (
            AuthMode::StandardWebhooks,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            json!({"webhook-id": "msg_1", "webhook-timestamp": now, "webhook-signature": many_signatures}),
        ),
    ];
    for (mode, secret, mut headers) in cases {
        let app = app_with(mode, &[secret]);
        headers["content-type"] = json!("application/json");
        let (status, reply) = send(
            &app,
            Function::Push,
            &raw_event("generic-push.json", &body, headers),
        )
        .await;
        assert_eq!(
            (status, &reply["error"]),
            (401, &json!("unauthorized")),
            "{mode:?}: {reply}"
        );
        nothing_stored(&app).await;
    }

    // Many unrelated headers (API Gateway passes at most 10 KiB of them) change nothing.
    let app = app_with(AuthMode::Token, &[TOKEN]);
    let mut headers =
        json!({"content-type": "application/json", "authorization": format!("Bearer {TOKEN}")});
    for i in 0..1000 {
        headers[format!("x-padding-{i}")] = json!("p".repeat(64));
    }
    let (status, reply) = send(
        &app,
        Function::Push,
        &raw_event("generic-push.json", &body, headers),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
}

/// A generic push with these fields, authenticated with the sample token.
fn generic(body: &Value) -> String {
    with_body(&event_file("generic-push.json"), body)
}

#[tokio::test]
async fn sender_chosen_values_over_their_limits_are_refused_whole() {
    let app = app_with(AuthMode::Token, &[TOKEN]);
    let image = "registry.example.com/shop/api:1.4.2";
    let too_long = [
        (json!({"image": image, "id": "i".repeat(257)}), "id"),
        (
            json!({"image": format!("{image}@sha256:{}", "a".repeat(64)), "id": "q-1",
                "action": "quarantine", "reason": "r".repeat(1025)}),
            "reason",
        ),
        (
            json!({"image": format!("{image}@sha256:{}", "a".repeat(64)), "id": "a-1",
                "action": "replicate", "region": "r".repeat(65)}),
            "region",
        ),
    ];
    for (body, field) in too_long {
        let function = if body["action"] == "quarantine" {
            Function::Quarantine
        } else {
            Function::Push
        };
        let (status, reply) = send(&app, function, &generic(&body)).await;
        refused(status, &reply, 422, "field_too_long");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains(field), "{reply}");
        // The refusal does not echo what was too long.
        assert!(message.len() < 300, "{reply}");
    }
    nothing_stored(&app).await;
    // At the limit: accepted.
    let (status, reply) = send(
        &app,
        Function::Push,
        &generic(&json!({"image": image, "id": "i".repeat(256)})),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test]
async fn an_event_time_in_the_future_is_refused_and_a_drifting_clock_is_not() {
    let app = app_with(AuthMode::Token, &[TOKEN]);
    let image = "registry.example.com/shop/api:1.4.2";
    let at = |secs: i64| {
        imagehook_core::model::event::Timestamp::from_unix(time_now() + secs)
            .unwrap()
            .to_string()
    };
    // Dated 9999, or an hour ahead: every later push of the tag would be stale.
    for (id, time) in [
        ("far", "9999-12-31T00:00:00Z".to_owned()),
        ("hour", at(3600)),
    ] {
        let (status, reply) = send(
            &app,
            Function::Push,
            &generic(&json!({"image": image, "id": id, "timestamp": time})),
        )
        .await;
        refused(status, &reply, 422, "time_in_future");
    }
    // A release dated ahead would keep every later quarantine stale: refused too.
    let (status, reply) = send(
        &app,
        Function::Quarantine,
        &generic(
            &json!({"image": format!("{image}@sha256:{}", "a".repeat(64)),
            "id": "rel", "action": "release", "timestamp": at(3600)}),
        ),
    )
    .await;
    refused(status, &reply, 422, "time_in_future");
    nothing_stored(&app).await;
    // A sender clock a few minutes ahead is within the skew.
    let (status, reply) = send(
        &app,
        Function::Push,
        &generic(&json!({"image": image, "id": "drift", "timestamp": at(240)})),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["events"][0]["outcome"], "applied", "{reply}");
}
