//! Bodies without an id or a time, identified by their content: a retry is recognised, a
//! re-push of an earlier image after the tag moved is not mistaken for one, and the same body
//! after the redelivery window is a new push. Through the real handler on the embedded store.

use imagehook_core::app::App;
use imagehook_core::auth::AuthMode;
use imagehook_core::model::event::Timestamp;
use imagehook_core::model::function::Function;
use imagehook_core::model::payload::UrlHints;
use imagehook_core::pipeline::identity::REDELIVERY_WINDOW_SECONDS;
use imagehook_tests::*;
use serde_json::{Value, json};

use crate::edge::app_with;

const TOKEN: &str = "sample-webhook-token";
const REPO: &str = "registry.example.com/shop/api";

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

/// A CI job's push of `latest`, as the docs' example once sent it: no id, no time.
fn latest(d: &str) -> Value {
    json!({"image": format!("{REPO}:latest"), "digest": d})
}

async fn post(app: &App, body: &Value) -> Value {
    let event = with_body(&event_file("generic-push.json"), body);
    let req = lambda_http::request::from_str(&event).unwrap();
    let resp = imagehook_core::edge::http::handle(app, Function::Push, req).await;
    let reply: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{reply}");
    reply["events"][0].clone()
}

/// Where `latest` points now.
async fn latest_digest(app: &App) -> Value {
    app.dump()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i["SK"] == "T#latest")
        .map(|i| i["digest"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_re_push_after_the_tag_moved_is_a_push_and_its_retry_is_not() {
    let app = app_with(AuthMode::Token, &[TOKEN]);
    let (a, b) = (digest(0xa1), digest(0xb2));
    assert_eq!(post(&app, &latest(&a)).await["outcome"], "applied");
    // The sender retries: recognised.
    assert_eq!(post(&app, &latest(&a)).await["outcome"], "duplicate");
    assert_eq!(post(&app, &latest(&b)).await["outcome"], "applied");
    assert_eq!(latest_digest(&app).await, json!(b));
    // Back to A: the same body as the first push, but the tag moved since. A push.
    let again = post(&app, &latest(&a)).await;
    assert_eq!(again["outcome"], "applied", "{again}");
    assert_eq!(latest_digest(&app).await, json!(a));
    // Its retries, even two at once, are recognised: one receipt, one move.
    let retry = latest(&a);
    let (r1, r2) = tokio::join!(post(&app, &retry), post(&app, &retry));
    assert_eq!(
        (&r1["outcome"], &r2["outcome"]),
        (&json!("duplicate"), &json!("duplicate"))
    );
    let receipts = app
        .dump()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i["type"] == "receipt")
        .count();
    assert_eq!(receipts, 3, "A, B and A again: each recorded once");
}

/// The same body after the window is a new push: through the pipeline with the arrival time
/// given, since the window is minutes long.
#[tokio::test]
async fn the_same_body_after_the_window_is_a_new_push() {
    let app = app_with(AuthMode::Token, &[TOKEN]);
    let body = latest(&digest(0xc3));
    let send = |at: i64| {
        let app = &app;
        let body = body.to_string();
        async move {
            let received_at = Timestamp::from_unix(at).unwrap();
            let events = imagehook_core::providers::parse_request(
                body.as_bytes(),
                &http::HeaderMap::new(),
                &UrlHints::default(),
                &received_at,
            )
            .unwrap();
            let results = imagehook_core::pipeline::handle(
                &app.deps(None),
                Function::Push,
                events,
                &received_at,
            )
            .await
            .unwrap();
            results[0].outcome.as_str().to_owned()
        }
    };
    let t0 = time_now() - 3600;
    assert_eq!(send(t0).await, "applied");
    // Within the window, and into the next one: still the retry of the first.
    assert_eq!(send(t0 + 10).await, "duplicate");
    assert_eq!(send(t0 + REDELIVERY_WINDOW_SECONDS).await, "duplicate");
    // Two windows on: a new push of the same image (the tag's time moves with it).
    assert_eq!(send(t0 + 3 * REDELIVERY_WINDOW_SECONDS).await, "applied");
}
