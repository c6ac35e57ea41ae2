//! Secrets stay secret: deliveries in every auth mode, accepted and refused, through the real
//! handler with every log line captured at TRACE, and not one line or response body holds a
//! webhook secret, a Basic password (plain or base64), an HMAC or Standard Webhooks key, a path
//! token or the notification webhook's URL, even when a sender puts the secret in the wrong place.
//! And in path-token mode a wrong token answers exactly what an unknown path answers.
//!
//! Logs are captured per test with a thread-local subscriber: each `#[tokio::test]` runs on its
//! own current-thread runtime, so everything the request does (spawned notifier tasks included)
//! logs on the test's thread.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use imagehook_core::adapters::DryRunDeployer;
use imagehook_core::adapters::EmbeddedStore;
use imagehook_core::adapters::slack::SlackWebhook;
use imagehook_core::app::App;
use imagehook_core::app::config::{Config, Defaults};
use imagehook_core::auth::{sign_hmac_sha256, sign_standard_webhooks};
use imagehook_core::edge::http::ApiError;
use imagehook_core::model::function::Function;
use imagehook_core::ports::notifier::{Notice, NoticeKind, Notifier};
use imagehook_tests::capture::Capture;
use imagehook_tests::*;
use lambda_http::RequestExt;
use serde_json::{Value, json};

// Every secret holds the marker, so a leak of any of them, or of a wrong credential a sender
// presented, is found by one search; their encodings are listed in `forbidden`.
const MARKER: &str = "s3cr3t";
const TOKEN: &str = "S3CR3T-token-7f1c9a";
const TOKEN_NEXT: &str = "S3CR3T-token-next-2b9e40";
const BASIC: &str = "ci-bot:S3CR3T-basic-password-91aa";
const HMAC_KEY: &str = "S3CR3T-hmac-key-44d0e1";
const WHSEC_KEY: &str = "S3CR3T-whsec-key-5c6d";
const WHSEC_KEY_NEXT: &str = "S3CR3T-whsec-key-next-8e1f";
const PATH_TOKEN: &str = "S3CR3T-path-5e2a77";
const NOTIFY_PATH: &str = "/services/T0000/B0000/S3CR3T-notify-c0de";
const WRONG: &str = "S3CR3T-wrong-0000";

fn whsec(raw: &str) -> String {
    format!("whsec_{}", STANDARD.encode(raw))
}

/// Strings that must appear in no log line and no response: the marker (every secret and
/// every wrong credential carries it, in any case) and the encodings that hide it.
fn forbidden() -> Vec<String> {
    let mut out = vec![MARKER.to_owned()];
    for raw in [
        BASIC,
        WRONG,
        "ci-bot:S3CR3T-wrong-0000",
        &format!("ci-bot:{TOKEN}"),
    ] {
        out.push(STANDARD.encode(raw));
        out.push(STANDARD_NO_PAD.encode(raw));
    }
    for raw in [WHSEC_KEY, WHSEC_KEY_NEXT, WRONG] {
        out.push(STANDARD_NO_PAD.encode(raw));
        out.push(hex::encode(raw));
    }
    out.push(hex::encode(HMAC_KEY));
    out.push("services/T0000/B0000".to_owned());
    out
}

fn assert_clean(what: &str, text: &str) {
    let lower = text.to_ascii_lowercase();
    for f in forbidden() {
        assert!(
            !lower.contains(&f.to_ascii_lowercase()),
            "{what} holds {f:?}:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Log capture.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub(crate) struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.0.clone())
    }
}

/// Every event and span of every crate, at TRACE, into a buffer, for this thread until the
/// guard drops.
pub(crate) fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (logs, guard)
}

// ---------------------------------------------------------------------------------------------
// Apps and requests.
// ---------------------------------------------------------------------------------------------

const RULES: &str = r#"[{"repository": "shop/api", "cluster": "prod", "service": "api"}]"#;

/// An app configured as a function reads its environment, on the embedded store, dry-run, with
/// the notification webhook the variables name.
fn app(vars: &[(&str, &str)]) -> App {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let config = Config::from_lookup(Defaults::LOCAL, |k| vars.get(k).cloned()).unwrap();
    assert_clean("the configuration's Debug", &format!("{config:?}"));
    let notifier = match &config.notify.webhook_url {
        Some(url) => Notifier::new(
            vec![Arc::new(SlackWebhook::new(url.clone()))],
            config.notify.kinds.clone(),
            config.notify.timeout,
        ),
        None => Notifier::disabled(),
    };
    App::new(
        config,
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(DryRunDeployer),
    )
    .with_notifier(notifier)
}

/// A POST of `body` with exactly `headers` (and a JSON content type unless one is given).
fn post(function: Function, headers: &[(&str, &str)], body: &str) -> lambda_http::Request {
    let mut v: Value = serde_json::from_str(&event_file("generic-push.json")).unwrap();
    let mut h = serde_json::Map::new();
    h.insert("content-type".into(), json!("application/json"));
    for (k, val) in headers {
        h.insert(k.to_ascii_lowercase(), json!(val));
    }
    h.insert("content-length".into(), json!(body.len().to_string()));
    v["headers"] = Value::Object(h);
    v["body"] = json!(body);
    v["rawPath"] = json!(function.route().unwrap());
    v["requestContext"]["http"]["path"] = json!(function.route().unwrap());
    lambda_http::request::from_str(&v.to_string()).unwrap()
}

fn push_body(tag: &str) -> String {
    json!({
        "image": format!("registry.example.com/shop/api:{tag}"),
        "digest": "sha256:0d7f2c4e6a8b1c3d5e7f9a0b2c4d6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d",
        "id": format!("push-{tag}"),
    })
    .to_string()
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

async fn send(app: &App, function: Function, req: lambda_http::Request) -> Answer {
    let resp = imagehook_core::edge::http::handle(app, function, req).await;
    let answer = Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.body().as_ref().to_vec(),
    };
    let headers: Vec<String> = answer
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    assert_clean(
        &format!("a {} response", answer.status),
        &format!(
            "{}\n{}",
            headers.join("\n"),
            String::from_utf8_lossy(&answer.body)
        ),
    );
    answer
}

/// Sends each request; asserts the statuses in order.
async fn expect(app: &App, cases: Vec<(&str, lambda_http::Request, u16)>) {
    for (what, req, status) in cases {
        let got = send(app, Function::Push, req).await;
        assert_eq!(
            got.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&got.body)
        );
    }
}

fn assert_logged(logs: &Logs, lines: &[&str]) {
    let text = logs.text();
    for line in lines {
        assert!(text.contains(line), "no {line:?} in the logs:\n{text}");
    }
    assert_clean("the logs", &text);
}

// ---------------------------------------------------------------------------------------------
// Every mode, accepted and refused.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_mode_logs_and_answers_no_secret() {
    let (logs, _guard) = capture_logs();
    let secrets = format!("{TOKEN},{TOKEN_NEXT}");
    let app = app(&[("AUTH_MODE", "token"), ("WEBHOOK_SECRETS", &secrets)]);
    let bearer = |t: &str| format!("Bearer {t}");
    expect(
        &app,
        vec![
            (
                "the token",
                post(
                    Function::Push,
                    &[("authorization", &bearer(TOKEN))],
                    &push_body("1.0.0"),
                ),
                200,
            ),
            (
                "the next token (rotation)",
                post(
                    Function::Push,
                    &[("authorization", &bearer(TOKEN_NEXT))],
                    &push_body("1.0.1"),
                ),
                200,
            ),
            (
                "a wrong token",
                post(
                    Function::Push,
                    &[("authorization", &bearer(WRONG))],
                    &push_body("1.0.2"),
                ),
                401,
            ),
            (
                "no header",
                post(Function::Push, &[], &push_body("1.0.3")),
                401,
            ),
            (
                "no scheme",
                post(
                    Function::Push,
                    &[("authorization", TOKEN)],
                    &push_body("1.0.4"),
                ),
                401,
            ),
            (
                "another scheme",
                post(
                    Function::Push,
                    &[("authorization", &format!("Token {TOKEN}"))],
                    &push_body("1.0.5"),
                ),
                401,
            ),
            (
                "a bare scheme",
                post(
                    Function::Push,
                    &[("authorization", "Bearer")],
                    &push_body("1.0.6"),
                ),
                401,
            ),
            (
                "the token in another header",
                post(Function::Push, &[("x-api-key", TOKEN)], &push_body("1.0.7")),
                401,
            ),
            (
                "the token in the body",
                post(
                    Function::Push,
                    &[],
                    &json!({"token": TOKEN, "image": "registry.example.com/shop/api:1.0.8"})
                        .to_string(),
                ),
                401,
            ),
            (
                "Basic credentials",
                post(
                    Function::Push,
                    &[(
                        "authorization",
                        &format!("Basic {}", STANDARD.encode(format!("ci-bot:{TOKEN}"))),
                    )],
                    &push_body("1.0.9"),
                ),
                401,
            ),
            (
                "a token with control bytes",
                post(
                    Function::Push,
                    &[("authorization", &format!("Bearer {TOKEN}\t{WRONG}"))],
                    &push_body("1.0.10"),
                ),
                401,
            ),
            // Authenticated, then refused for the body: the answer names the problem, not the
            // request's headers.
            (
                "invalid JSON",
                post(
                    Function::Push,
                    &[("authorization", &bearer(TOKEN))],
                    &format!("{{\"image\": \"{TOKEN}"),
                ),
                400,
            ),
            (
                "an unknown format",
                post(
                    Function::Push,
                    &[("authorization", &bearer(TOKEN))],
                    &json!({"secret": TOKEN}).to_string(),
                ),
                400,
            ),
        ],
    )
    .await;
    // The token as another header's raw value (SIGNATURE_HEADER=x-api-key).
    let keyed = self::app(&[
        ("AUTH_MODE", "token"),
        ("WEBHOOK_SECRETS", TOKEN),
        ("SIGNATURE_HEADER", "x-api-key"),
    ]);
    expect(
        &keyed,
        vec![
            (
                "the key",
                post(Function::Push, &[("x-api-key", TOKEN)], &push_body("2.0.0")),
                200,
            ),
            (
                "a wrong key",
                post(Function::Push, &[("x-api-key", WRONG)], &push_body("2.0.1")),
                401,
            ),
            (
                "the key as a bearer token",
                post(
                    Function::Push,
                    &[("authorization", &bearer(TOKEN))],
                    &push_body("2.0.2"),
                ),
                401,
            ),
        ],
    )
    .await;
    assert_logged(&logs, &["request failed authentication", "event handled"]);
}

#[tokio::test]
async fn basic_mode_logs_and_answers_no_secret() {
    let (logs, _guard) = capture_logs();
    let app = app(&[("AUTH_MODE", "basic"), ("WEBHOOK_SECRETS", BASIC)]);
    let basic = |creds: &str| format!("Basic {}", STANDARD.encode(creds));
    expect(
        &app,
        vec![
            (
                "the credentials",
                post(
                    Function::Push,
                    &[("authorization", &basic(BASIC))],
                    &push_body("1.0.0"),
                ),
                200,
            ),
            (
                "a wrong password",
                post(
                    Function::Push,
                    &[("authorization", &basic("ci-bot:S3CR3T-wrong-0000"))],
                    &push_body("1.0.1"),
                ),
                401,
            ),
            (
                "no header",
                post(Function::Push, &[], &push_body("1.0.2")),
                401,
            ),
            (
                "credentials not encoded",
                post(
                    Function::Push,
                    &[("authorization", &format!("Basic {BASIC}"))],
                    &push_body("1.0.3"),
                ),
                401,
            ),
            (
                "not base64",
                post(
                    Function::Push,
                    &[("authorization", "Basic %%%")],
                    &push_body("1.0.4"),
                ),
                401,
            ),
            (
                "as a bearer token",
                post(
                    Function::Push,
                    &[("authorization", &format!("Bearer {BASIC}"))],
                    &push_body("1.0.5"),
                ),
                401,
            ),
        ],
    )
    .await;
    assert_logged(&logs, &["request failed authentication", "event handled"]);
}

#[tokio::test]
async fn hmac_mode_logs_and_answers_no_secret() {
    let (logs, _guard) = capture_logs();
    let app = app(&[("AUTH_MODE", "hmac-sha256"), ("WEBHOOK_SECRETS", HMAC_KEY)]);
    let body = push_body("1.0.0");
    let signed = |key: &str, body: &str| sign_hmac_sha256(key, body.as_bytes());
    let header = "x-hub-signature-256";
    expect(
        &app,
        vec![
            (
                "signed",
                post(Function::Push, &[(header, &signed(HMAC_KEY, &body))], &body),
                200,
            ),
            (
                "signed with another key",
                post(
                    Function::Push,
                    &[(header, &signed(WRONG, &push_body("1.0.1")))],
                    &push_body("1.0.1"),
                ),
                401,
            ),
            (
                "no signature",
                post(Function::Push, &[], &push_body("1.0.2")),
                401,
            ),
            (
                "not hex",
                post(
                    Function::Push,
                    &[(header, "sha256=zz")],
                    &push_body("1.0.3"),
                ),
                401,
            ),
            (
                "the key as the signature",
                post(Function::Push, &[(header, HMAC_KEY)], &push_body("1.0.4")),
                401,
            ),
            (
                "the key as a bearer token",
                post(
                    Function::Push,
                    &[("authorization", &format!("Bearer {HMAC_KEY}"))],
                    &push_body("1.0.5"),
                ),
                401,
            ),
        ],
    )
    .await;
    assert_logged(&logs, &["request failed authentication", "event handled"]);
}

#[tokio::test]
async fn standard_webhooks_mode_logs_and_answers_no_secret() {
    let (logs, _guard) = capture_logs();
    let keys = format!("{},{}", whsec(WHSEC_KEY), whsec(WHSEC_KEY_NEXT));
    let app = app(&[
        ("AUTH_MODE", "standard-webhooks"),
        ("WEBHOOK_SECRETS", &keys),
    ]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts = now.to_string();
    let signed = |key: &str, id: &str, body: &str| {
        sign_standard_webhooks(&whsec(key), id, now, body.as_bytes()).unwrap()
    };
    let req = |id: &str, sig: &str, body: &str| {
        post(
            Function::Push,
            &[
                ("webhook-id", id),
                ("webhook-timestamp", &ts),
                ("webhook-signature", sig),
            ],
            body,
        )
    };
    let (b0, b1, b2, b3, b4) = (
        push_body("1.0.0"),
        push_body("1.0.1"),
        push_body("1.0.2"),
        push_body("1.0.3"),
        push_body("1.0.4"),
    );
    expect(
        &app,
        vec![
            (
                "signed",
                req("msg_0", &signed(WHSEC_KEY, "msg_0", &b0), &b0),
                200,
            ),
            (
                "signed with the next key",
                req("msg_1", &signed(WHSEC_KEY_NEXT, "msg_1", &b1), &b1),
                200,
            ),
            (
                "signed with another key",
                req("msg_2", &signed(WRONG, "msg_2", &b2), &b2),
                401,
            ),
            (
                "no signature",
                post(Function::Push, &[("webhook-id", "msg_3")], &b3),
                401,
            ),
            ("not base64", req("msg_3", "v1,!!!", &b3), 401),
            (
                "the key as the signature",
                req("msg_4", &whsec(WHSEC_KEY), &b4),
                401,
            ),
        ],
    )
    .await;
    assert_logged(&logs, &["request failed authentication", "event handled"]);
}

fn with_token(req: lambda_http::Request, token: &str) -> lambda_http::Request {
    req.with_path_parameters(HashMap::from([("token".to_owned(), token.to_owned())]))
}

#[tokio::test]
async fn path_token_mode_logs_and_answers_no_secret() {
    let (logs, _guard) = capture_logs();
    let app = app(&[("AUTH_MODE", "path-token"), ("WEBHOOK_SECRETS", PATH_TOKEN)]);
    let long = format!("{PATH_TOKEN}{}", "x".repeat(4096));
    let body = || push_body("1.0.0");
    expect(
        &app,
        vec![
            (
                "the token",
                with_token(post(Function::Push, &[], &body()), PATH_TOKEN),
                200,
            ),
            (
                "a wrong token",
                with_token(post(Function::Push, &[], &body()), WRONG),
                404,
            ),
            (
                "the token and more",
                with_token(post(Function::Push, &[], &body()), &long),
                404,
            ),
            (
                "a prefix of the token",
                with_token(post(Function::Push, &[], &body()), &PATH_TOKEN[..8]),
                404,
            ),
            ("no token", post(Function::Push, &[], &body()), 404),
            (
                "the token in a header",
                post(
                    Function::Push,
                    &[("authorization", &format!("Bearer {PATH_TOKEN}"))],
                    &body(),
                ),
                404,
            ),
            (
                "the token in the query",
                post(Function::Push, &[], &body()).with_query_string_parameters(HashMap::from([(
                    "token".to_owned(),
                    PATH_TOKEN.to_owned(),
                )])),
                404,
            ),
        ],
    )
    .await;
    assert_logged(&logs, &["request failed authentication", "event handled"]);
}

#[tokio::test]
async fn a_failing_notification_webhook_is_logged_without_its_url() {
    let (logs, _guard) = capture_logs();
    // A closed port: the connection is refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{closed}{NOTIFY_PATH}");
    let app = app(&[
        ("AUTH_MODE", "token"),
        ("WEBHOOK_SECRETS", TOKEN),
        ("DEPLOY_RULES", RULES),
        ("NOTIFY_WEBHOOK_URL", &url),
        ("NOTIFY_TIMEOUT_MS", "2000"),
    ]);
    let auth = format!("Bearer {TOKEN}");
    // A quarantined digest, then a push of it: the deployment is held, which is a notice.
    let quarantine = json!({
        "image": "registry.example.com/shop/api@sha256:0d7f2c4e6a8b1c3d5e7f9a0b2c4d6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d",
        "quarantine": true, "reason": "scanner says no", "id": "q-1"
    })
    .to_string();
    let got = send(
        &app,
        Function::Quarantine,
        post(
            Function::Quarantine,
            &[("authorization", &auth)],
            &quarantine,
        ),
    )
    .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let got = send(
        &app,
        Function::Push,
        post(
            Function::Push,
            &[("authorization", &auth)],
            &push_body("1.0.0"),
        ),
    )
    .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert!(
        String::from_utf8_lossy(&got.body).contains("blocked"),
        "{}",
        String::from_utf8_lossy(&got.body)
    );

    // A server that refuses (HTTP 500), its path holding the secret too.
    let server = Capture::start().await;
    let refusing = server.url(&format!("/fail{NOTIFY_PATH}"));
    let vars: HashMap<&str, &str> = HashMap::from([("NOTIFY_WEBHOOK_URL", refusing.as_str())]);
    let config =
        Config::from_lookup(Defaults::LOCAL, |k| vars.get(k).map(|v| (*v).to_owned())).unwrap();
    let notifier = Notifier::new(
        vec![Arc::new(SlackWebhook::new(
            config.notify.webhook_url.clone().unwrap(),
        ))],
        NoticeKind::ALL.to_vec(),
        std::time::Duration::from_secs(2),
    );
    let notice = Notice {
        kind: NoticeKind::DeploymentFailed,
        service: "prod/api".into(),
        image: "registry.example.com/shop/api@sha256:ab".into(),
        stage: None,
        detail: Some("ECS refused".into()),
        event_id: None,
    };
    assert_eq!(notifier.notify(vec![notice]).await, 1);
    assert_eq!(server.take(&format!("/fail{NOTIFY_PATH}")).len(), 1);

    let text = logs.text();
    assert_eq!(
        text.matches("notification failed").count(),
        2,
        "one failure per destination:\n{text}"
    );
    assert_logged(&logs, &["event handled", "cannot connect", "HTTP 500"]);
}

#[test]
fn configuration_errors_do_not_repeat_secrets() {
    let refused = |vars: &[(&str, &str)]| {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(Defaults::LAMBDA, |k| {
            vars.get(k)
                .map(|v| (*v).to_owned())
                .or_else(|| (k == "STATE_DIR").then(|| "/tmp/unused".to_owned()))
        })
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let cases = [
        (
            refused(&[
                ("AUTH_MODE", "token"),
                ("WEBHOOK_SECRETS", TOKEN),
                (
                    "NOTIFY_WEBHOOK_URL",
                    &format!("http://hooks.example.com{NOTIFY_PATH}"),
                ),
            ]),
            "NOTIFY_WEBHOOK_URL",
        ),
        (
            refused(&[("AUTH_MODE", "basic"), ("WEBHOOK_SECRETS", TOKEN)]),
            "user:password",
        ),
        (
            refused(&[
                ("AUTH_MODE", "standard-webhooks"),
                ("WEBHOOK_SECRETS", TOKEN),
            ]),
            "whsec_",
        ),
    ];
    for (error, names) in &cases {
        assert!(error.contains(names), "{error}");
        assert_clean("a configuration error", error);
    }
}

// ---------------------------------------------------------------------------------------------
// Path tokens: a wrong one is an unknown path.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_wrong_path_token_answers_byte_for_byte_what_an_unknown_path_answers() {
    let app = app(&[("AUTH_MODE", "path-token"), ("WEBHOOK_SECRETS", PATH_TOKEN)]);
    let unknown = ApiError::NotFound.into_response();
    // API Gateway's own answer to a path no route matches, so that in AWS, too, a wrong token
    // looks like a path that does not exist.
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.body().as_ref(), br#"{"message":"Not Found"}"#);
    assert_eq!(
        unknown.headers().get(http::header::CONTENT_TYPE).unwrap(),
        "application/json"
    );

    let event = || -> Value { serde_json::from_str(&event_file("generic-push.json")).unwrap() };
    let mut get = event();
    get["requestContext"]["http"]["method"] = json!("GET");
    get["body"] = json!("");
    let mut options = event();
    options["requestContext"]["http"]["method"] = json!("OPTIONS");
    options["headers"]["webhook-request-origin"] = json!("eventgrid.azure.net");
    let mut xml = event();
    xml["headers"]["content-type"] = json!("application/xml");
    let mut huge = event();
    huge["body"] = json!("x".repeat(2 * 1024 * 1024));
    let mut empty = event();
    empty["body"] = json!("");
    let mut garbage = event();
    garbage["body"] = json!("{not json");
    let mut form = event();
    form["headers"]["content-type"] = json!("application/x-www-form-urlencoded");
    form["body"] = json!("nothing=here");
    let mut unauthenticated = event();
    unauthenticated["headers"]
        .as_object_mut()
        .unwrap()
        .remove("authorization");
    let cases = [
        ("a POST", event()),
        ("a GET", get),
        ("an OPTIONS handshake", options),
        ("XML", xml),
        ("a body over the limit", huge),
        ("an empty body", empty),
        ("invalid JSON", garbage),
        ("a form without payload", form),
        ("no authorization header", unauthenticated),
    ];
    for function in Function::WEBHOOKS {
        for (what, case) in &cases {
            for token in [WRONG, "", &PATH_TOKEN[1..]] {
                let req = lambda_http::request::from_str(&case.to_string()).unwrap();
                let req = with_token(req, token).with_query_string_parameters(HashMap::from([(
                    "provider".to_owned(),
                    "nexus".to_owned(),
                )]));
                let got = send(&app, *function, req).await;
                assert_eq!(
                    (got.status, &got.headers, got.body.as_slice()),
                    (404, unknown.headers(), unknown.body().as_ref()),
                    "{} with {what} and token {token:?}",
                    function.name()
                );
            }
            // A wrong token is a failed authentication for the logs and the metrics.
            let req = lambda_http::request::from_str(&case.to_string()).unwrap();
            let (_, report) = imagehook_core::edge::http::handle_reported(
                &app,
                *function,
                with_token(req, WRONG),
            )
            .await;
            assert!(report.auth_failed, "{} with {what}", function.name());
            // And without a token segment at all.
            let req = lambda_http::request::from_str(&case.to_string()).unwrap();
            let got = send(&app, *function, req).await;
            assert_eq!(
                (got.status, got.body.as_slice()),
                (404, unknown.body().as_ref()),
                "{} with {what} and no token",
                function.name()
            );
        }
    }
}
