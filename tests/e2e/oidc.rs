//! `AUTH_MODE=oidc` end to end: tokens minted as Google Pub/Sub push and GitHub Actions mint
//! them, signed with keys the test serves from its own key server on 127.0.0.1, through the real
//! handler. The right tokens are accepted; expired, wrong-audience, wrong-issuer, unsigned,
//! key-confused, unknown-key, wrong-account and wrong-repository tokens are refused with a 401
//! that names the problem, and no response or log line holds a token. The key set is fetched
//! once, again for an unknown key at most once per interval, and an unreachable key server is
//! a 503 the sender retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagehook_core::adapters::{DryRunDeployer, EmbeddedStore};
use imagehook_core::app::App;
use imagehook_core::app::config::{Config, Defaults};
use imagehook_core::app::oidc::OidcVerifier;
use imagehook_core::auth::oidc::{OidcError, parse_issuers};
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RSA_A: &str = include_str!("../fixtures/oidc/rsa-a.pem");
const RSA_A_PUB: &str = include_str!("../fixtures/oidc/rsa-a.pub.pem");
const RSA_B: &str = include_str!("../fixtures/oidc/rsa-b.pem");
const GOOGLE: &str = "https://accounts.google.com";
const GITHUB: &str = "https://token.actions.githubusercontent.com";
const PUSH_AUD: &str = "https://k7m2p9x4qa.execute-api.eu-central-1.amazonaws.com/push";
const SA: &str = "gar-push@contoso-shop-prod.iam.gserviceaccount.com";

/// A key server on 127.0.0.1: the key set it holds at `/certs` (or the status it is told to
/// fail with), and a discovery document naming it as issuer; it counts the requests.
struct KeyServer {
    base: String,
    url: String,
    served: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(jwks: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(Mutex::new((200, jwks.to_string())));
        let hits = Arc::new(AtomicUsize::new(0));
        let discovery = json!({"issuer": base, "jwks_uri": format!("{base}/certs")}).to_string();
        let (shared, counted) = (served.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (shared, counted, discovery) =
                    (shared.clone(), counted.clone(), discovery.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let (status, body) =
                        if buf.starts_with(b"GET /.well-known/openid-configuration ") {
                            (200, discovery)
                        } else {
                            shared.lock().unwrap().clone()
                        };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        let url = format!("{base}/certs");
        Self {
            base,
            url,
            served,
            hits,
        }
    }

    fn serve(&self, jwks: Value) {
        *self.served.lock().unwrap() = (200, jwks.to_string());
    }

    fn fail(&self) {
        *self.served.lock().unwrap() = (500, "{}".to_owned());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Logs into this test's own buffer. Every test here takes one: a thread without a subscriber
/// that reaches a log call first can leave it disabled for the others, since tracing caches a
/// call site's interest for the whole process.
fn logged() -> (crate::security::Logs, tracing::subscriber::DefaultGuard) {
    crate::security::capture_logs()
}

fn rsa(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn jwks(keys: &[(&str, &str)]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(pem, kid)| {
            let mut jwk = Jwk::from_encoding_key(&rsa(pem), Algorithm::RS256).unwrap();
            jwk.common.key_id = Some((*kid).to_owned());
            serde_json::to_value(jwk).unwrap()
        })
        .collect();
    json!({ "keys": keys })
}

fn sign(claims: &Value, key: &EncodingKey, alg: Algorithm, kid: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(claims: &Value, kid: &str) -> String {
    sign(claims, &rsa(RSA_A), Algorithm::RS256, kid)
}

fn now() -> i64 {
    time_now()
}

/// What Pub/Sub push puts in its token for a subscription with `--push-auth-service-account`.
fn push_claims() -> Value {
    json!({
        "iss": GOOGLE, "aud": PUSH_AUD, "azp": "104123456789", "sub": "104123456789",
        "email": SA, "email_verified": true,
        "iat": now() - 5, "exp": now() + 3600,
    })
}

/// What a GitHub Actions job's token carries (a subset).
fn github_claims(repository: &str) -> Value {
    json!({
        "iss": GITHUB, "aud": "imagehook", "sub": format!("repo:{repository}:ref:refs/heads/main"),
        "repository": repository, "repository_owner": "contoso", "ref": "refs/heads/main",
        "workflow": "release", "event_name": "push",
        "iat": now() - 5, "nbf": now() - 5, "exp": now() + 300,
    })
}

fn with(mut claims: Value, k: &str, v: Value) -> Value {
    claims[k] = v;
    claims
}

fn issuers(keys: &KeyServer) -> Value {
    json!([
        {"preset": "google", "audience": PUSH_AUD, "email": SA, "jwks_url": keys.url},
        {"preset": "github-actions", "audience": "imagehook", "jwks_url": keys.url,
         "claims": {"repository": "contoso/shop-api"}},
    ])
}

/// The push function in `AUTH_MODE=oidc` with `issuers`, read from its variables as at init,
/// dry-run on the embedded store, with no deploy rules.
fn oidc_app(issuers: &Value) -> App {
    oidc_app_with_rules(issuers, &json!([]))
}

/// `oidc_app` with deploy rules.
fn oidc_app_with_rules(issuers: &Value, rules: &Value) -> App {
    let (issuers, rules) = (issuers.to_string(), rules.to_string());
    let config = Config::from_lookup(Defaults::LOCAL, |k| match k {
        "AUTH_MODE" => Some("oidc".to_owned()),
        "OIDC_ISSUERS" => Some(issuers.clone()),
        "DEPLOY_RULES" => Some(rules.clone()),
        _ => None,
    })
    .unwrap();
    App::new(
        config,
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(DryRunDeployer),
    )
}

fn with_bearer(event_name: &str, token: &str) -> String {
    let mut v: Value = serde_json::from_str(&event_file(event_name)).unwrap();
    v["headers"]["authorization"] = json!(format!("Bearer {token}"));
    v.to_string()
}

async fn deliver(app: &App, event_name: &str, token: &str) -> Reply {
    invoke(app, Function::Push, &with_bearer(event_name, token)).await
}

#[tokio::test]
async fn a_pubsub_push_with_the_subscriptions_google_token_is_recorded() {
    let keys = KeyServer::start(jwks(&[(RSA_A, "g1")])).await;
    let app = oidc_app(&issuers(&keys));
    let (logs, _guard) = logged();
    let token = rs256(&push_claims(), "g1");
    let reply = deliver(&app, "gar-push.json", &token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["received"], 1, "{}", reply.body);
    // A second delivery uses the keys already held.
    let again = rs256(&with(push_claims(), "iat", json!(now() - 1)), "g1");
    assert_eq!(deliver(&app, "gar-push.json", &again).await.status, 200);
    assert_eq!(keys.hits(), 1);
    let text = logs.text();
    assert!(text.contains("token verified"), "{text}");
    assert!(!text.contains(&token[token.len() - 40..]), "{text}");
}

#[tokio::test]
async fn a_github_actions_job_of_the_required_repository_is_accepted() {
    let (_logs, _guard) = logged();
    let keys = KeyServer::start(jwks(&[(RSA_A, "gh")])).await;
    let app = oidc_app(&issuers(&keys));
    let token = rs256(&github_claims("contoso/shop-api"), "gh");
    let reply = deliver(&app, "generic-push.json", &token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn refused_tokens_are_401s_that_name_the_problem_and_never_echo_the_token() {
    use base64::Engine as _;
    let keys = KeyServer::start(jwks(&[(RSA_A, "k")])).await;
    let app = oidc_app(&issuers(&keys));
    let (logs, _guard) = logged();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let unsigned = format!(
        "{}.{}.",
        b64.encode(json!({"alg": "none", "typ": "JWT", "kid": "k"}).to_string()),
        b64.encode(push_claims().to_string())
    );
    let confused = sign(
        &push_claims(),
        &EncodingKey::from_secret(RSA_A_PUB.as_bytes()).unwrap(),
        Algorithm::HS256,
        "k",
    );
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "expired",
            "gar-push.json",
            rs256(&with(push_claims(), "exp", json!(now() - 3600)), "k"),
            "expired",
        ),
        (
            "wrong audience",
            "gar-push.json",
            rs256(
                &with(
                    push_claims(),
                    "aud",
                    json!("https://other.example.com/push"),
                ),
                "k",
            ),
            "audience",
        ),
        (
            "untrusted issuer",
            "gar-push.json",
            rs256(
                &with(push_claims(), "iss", json!("https://idp.evil.example.com")),
                "k",
            ),
            "issuer is not trusted",
        ),
        ("alg none", "gar-push.json", unsigned, "algorithm"),
        (
            "HS256 over the public key",
            "gar-push.json",
            confused,
            "algorithm",
        ),
        (
            "another key, unknown kid",
            "gar-push.json",
            sign(&push_claims(), &rsa(RSA_B), Algorithm::RS256, "other"),
            "signing key",
        ),
        (
            "another key, known kid",
            "gar-push.json",
            sign(&push_claims(), &rsa(RSA_B), Algorithm::RS256, "k"),
            "signature",
        ),
        (
            "another service account",
            "gar-push.json",
            rs256(
                &with(
                    push_claims(),
                    "email",
                    json!("x@evil-project.iam.gserviceaccount.com"),
                ),
                "k",
            ),
            "email claim",
        ),
        (
            "unverified email",
            "gar-push.json",
            rs256(&with(push_claims(), "email_verified", json!(false)), "k"),
            "email_verified claim",
        ),
        (
            "another repository",
            "generic-push.json",
            rs256(&github_claims("contoso/other"), "k"),
            "repository claim",
        ),
        (
            "not a JWT",
            "gar-push.json",
            "sample-webhook-token".to_owned(),
            "not a signed JWT",
        ),
    ];
    for (what, event, token, reason) in &cases {
        let reply = deliver(&app, event, token).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        assert_eq!(reply.body["error"], "unauthorized", "{what}");
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.contains(reason), "{what}: {message}");
        assert!(
            !reply
                .body
                .to_string()
                .contains(&token[..token.len().min(30)]),
            "{what}"
        );
    }
    let mut no_header: Value = serde_json::from_str(&event_file("gar-push.json")).unwrap();
    no_header["headers"]
        .as_object_mut()
        .unwrap()
        .remove("authorization");
    let reply = invoke(&app, Function::Push, &no_header.to_string()).await;
    assert_eq!(reply.status, 401);
    assert!(reply.body["message"].as_str().unwrap().contains("bearer"));
    let text = logs.text();
    assert!(text.contains("request failed authentication"), "{text}");
    for (what, _, token, _) in &cases {
        let tail = &token[token.len().saturating_sub(30)..];
        assert!(tail.is_empty() || !text.contains(tail), "{what} logged");
    }
    // One fetch per issuer (both are served here): an unknown kid did not fetch again within
    // the interval.
    assert_eq!(keys.hits(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_made_up_kids_do_not_hammer_the_issuer() {
    let (_logs, _guard) = logged();
    let keys = KeyServer::start(jwks(&[(RSA_A, "old")])).await;
    let issuers = parse_issuers(&issuers(&keys).to_string()).unwrap();
    let headers = |token: String| {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    };
    let eager = OidcVerifier::new(&issuers).with_refetch_interval(Duration::ZERO);
    assert!(
        eager
            .verify(&headers(rs256(&push_claims(), "old")), now())
            .await
            .is_ok()
    );
    assert_eq!(keys.hits(), 1);
    // The issuer rotates: a token under the new key fetches the set again.
    keys.serve(jwks(&[(RSA_A, "old"), (RSA_B, "new")]));
    let rotated = sign(&push_claims(), &rsa(RSA_B), Algorithm::RS256, "new");
    assert!(eager.verify(&headers(rotated), now()).await.is_ok());
    assert_eq!(keys.hits(), 2);

    // With the interval, a flood of made-up kids costs one fetch at most.
    let guarded = OidcVerifier::new(&issuers);
    assert!(
        guarded
            .verify(&headers(rs256(&push_claims(), "old")), now())
            .await
            .is_ok()
    );
    let before = keys.hits();
    for i in 0..20 {
        let bogus = rs256(&push_claims(), &format!("bogus-{i}"));
        assert_eq!(
            guarded.verify(&headers(bogus), now()).await,
            Err(OidcError::UnknownKey)
        );
    }
    assert_eq!(keys.hits(), before);
}

#[tokio::test]
async fn an_unreachable_key_server_is_a_503_the_sender_retries() {
    let (_logs, _guard) = logged();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let app = oidc_app(&json!([
        {"preset": "google", "audience": PUSH_AUD, "email": SA,
         "jwks_url": format!("http://{closed}/certs")},
    ]));
    let req =
        lambda_http::request::from_str(&with_bearer("gar-push.json", &rs256(&push_claims(), "k")))
            .unwrap();
    let resp = imagehook_core::edge::http::handle(&app, Function::Push, req).await;
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
}

#[tokio::test]
async fn a_deploy_rule_requiring_a_repository_refuses_another_repositorys_job() {
    let (_logs, _guard) = logged();
    let keys = KeyServer::start(jwks(&[(RSA_A, "gh")])).await;
    // The issuer admits every repository of the organisation; the rule only its own.
    let issuers = json!([{"preset": "github-actions", "audience": "imagehook",
        "jwks_url": keys.url, "claims": {"repository_owner": "contoso"}}]);
    let rules = json!([{"repository": "shop/api", "cluster": "prod", "service": "shop-api",
        "require_claims": {"repository": "contoso/shop-api"}}]);
    let app = oidc_app_with_rules(&issuers, &rules);

    let other = rs256(&github_claims("contoso/other"), "gh");
    let reply = deliver(&app, "generic-push.json", &other).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.body["error"], "forbidden");
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .contains("repository claim"),
        "{}",
        reply.body
    );
    assert!(app.dump().await.unwrap().is_empty(), "nothing is recorded");

    let own = rs256(&github_claims("contoso/shop-api"), "gh");
    let reply = deliver(&app, "generic-push.json", &own).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body["events"][0]["deployments"][0]["service"], "shop-api",
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn an_issuer_without_a_key_url_is_discovered_and_held_keys_outlive_a_failed_refetch() {
    let (_logs, _guard) = logged();
    let keys = KeyServer::start(jwks(&[(RSA_A, "d1")])).await;
    let issuers = parse_issuers(
        &json!([{"issuer": keys.base, "audience": "imagehook", "claims": {"project_path": "g/app"}}])
            .to_string(),
    )
    .unwrap();
    let verifier = OidcVerifier::new(&issuers).with_refetch_interval(Duration::ZERO);
    let claims = json!({"iss": keys.base, "aud": "imagehook", "project_path": "g/app",
        "iat": now(), "exp": now() + 300});
    let bearer = |token: String| {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    };
    assert!(
        verifier
            .verify(&bearer(rs256(&claims, "d1")), now())
            .await
            .is_ok()
    );
    // The discovery document, then the key set.
    assert_eq!(keys.hits(), 2);

    // The issuer fails: a token under an unknown key tries once more and is refused as
    // unknown, and the keys held still verify.
    keys.fail();
    let unknown = sign(&claims, &rsa(RSA_B), Algorithm::RS256, "d2");
    assert_eq!(
        verifier.verify(&bearer(unknown), now()).await,
        Err(OidcError::UnknownKey)
    );
    assert_eq!(keys.hits(), 3);
    assert!(
        verifier
            .verify(&bearer(rs256(&claims, "d1")), now())
            .await
            .is_ok()
    );
}
