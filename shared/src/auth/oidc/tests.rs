use super::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const RSA_A: &str = include_str!("../../../../tests/fixtures/oidc/rsa-a.pem");
const RSA_A_PUB: &str = include_str!("../../../../tests/fixtures/oidc/rsa-a.pub.pem");
const RSA_B: &str = include_str!("../../../../tests/fixtures/oidc/rsa-b.pem");
const EC_A: &str = include_str!("../../../../tests/fixtures/oidc/ec-a.pem");
const NOW: i64 = 1_800_000_000;
const GOOGLE: &str = "https://accounts.google.com";
const AUD: &str = "https://hooks.example.com/push";
const SA: &str = "pubsub-push@project.iam.gserviceaccount.com";

fn rsa(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

fn key_set(keys: &[Value]) -> KeySet {
    KeySet::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

fn google_keys() -> KeySet {
    key_set(&[
        jwk(&rsa(RSA_A), Algorithm::RS256, "a"),
        jwk(
            &EncodingKey::from_ec_pem(EC_A.as_bytes()).unwrap(),
            Algorithm::ES256,
            "ec",
        ),
    ])
}

fn google() -> Issuer {
    parse_issuers(&json!([{"preset": "google", "audience": AUD, "email": SA}]).to_string())
        .unwrap()
        .remove(0)
}

fn push_claims() -> Value {
    json!({
        "iss": GOOGLE, "aud": AUD, "azp": "1234", "sub": "1234",
        "email": SA, "email_verified": true,
        "iat": NOW - 10, "exp": NOW + 3600,
    })
}

fn sign(claims: &Value, key: &EncodingKey, alg: Algorithm, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn with(mut claims: Value, k: &str, v: Value) -> Value {
    claims[k] = v;
    claims
}

fn check(claims: &Value) -> Result<Claims, OidcError> {
    let token = sign(claims, &rsa(RSA_A), Algorithm::RS256, Some("a"));
    verify(&token, &google(), &google_keys(), NOW)
}

#[test]
fn a_pubsub_push_token_from_the_configured_account_verifies() {
    let claims = check(&push_claims()).unwrap();
    assert_eq!(claims.get_str("email"), Some(SA));
    let ec = EncodingKey::from_ec_pem(EC_A.as_bytes()).unwrap();
    let token = sign(&push_claims(), &ec, Algorithm::ES256, Some("ec"));
    assert!(verify(&token, &google(), &google_keys(), NOW).is_ok());
}

#[test]
fn expired_and_future_tokens_are_refused_with_a_minute_of_leeway() {
    let expired = with(push_claims(), "exp", json!(NOW - 61));
    assert_eq!(check(&expired), Err(OidcError::Expired));
    assert!(check(&with(push_claims(), "exp", json!(NOW - 30))).is_ok());
    let issued_later = with(push_claims(), "iat", json!(NOW + 120));
    assert_eq!(check(&issued_later), Err(OidcError::NotYetValid));
    let nbf = with(push_claims(), "nbf", json!(NOW + 120));
    assert_eq!(check(&nbf), Err(OidcError::NotYetValid));
    let mut no_exp = push_claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(check(&no_exp), Err(OidcError::MissingClaim("exp")));
    let mut no_iat = push_claims();
    no_iat.as_object_mut().unwrap().remove("iat");
    assert_eq!(check(&no_iat), Err(OidcError::MissingClaim("iat")));
    // Crafted times cannot overflow the arithmetic.
    assert!(check(&with(push_claims(), "exp", json!(i64::MAX))).is_ok());
    assert!(check(&with(push_claims(), "exp", json!(i64::MIN))).is_err());
    assert!(check(&with(push_claims(), "exp", json!("tomorrow"))).is_err());
}

#[test]
fn wrong_audience_issuer_email_or_unverified_email_is_refused() {
    let aud = with(push_claims(), "aud", json!("https://other.example.com"));
    assert_eq!(check(&aud), Err(OidcError::WrongAudience));
    let iss = with(push_claims(), "iss", json!("https://evil.example.com"));
    assert_eq!(check(&iss), Err(OidcError::WrongIssuer));
    let email = with(push_claims(), "email", json!("someone@evil.example.com"));
    assert_eq!(check(&email), Err(OidcError::Claim("email".into())));
    let unverified = with(push_claims(), "email_verified", json!(false));
    assert_eq!(
        check(&unverified),
        Err(OidcError::Claim("email_verified".into()))
    );
    // An audience list is accepted when it holds ours.
    assert!(check(&with(push_claims(), "aud", json!(["x", AUD]))).is_ok());
}

#[test]
fn alg_none_and_hmac_over_the_public_key_are_refused() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(json!({"alg": "none", "typ": "JWT", "kid": "a"}).to_string());
    let payload = b64.encode(push_claims().to_string());
    assert_eq!(
        verify(
            &format!("{header}.{payload}."),
            &google(),
            &google_keys(),
            NOW
        ),
        Err(OidcError::Algorithm)
    );
    assert_eq!(
        verify(
            &format!("{header}.{payload}"),
            &google(),
            &google_keys(),
            NOW
        ),
        Err(OidcError::Malformed)
    );
    assert_eq!(
        verify(&format!("!!.{payload}.sig"), &google(), &google_keys(), NOW),
        Err(OidcError::Malformed)
    );
    // Key confusion: HS256 with the RSA public key's bytes as the secret.
    for secret in [RSA_A_PUB.as_bytes().to_vec(), b"a".to_vec()] {
        let token = sign(
            &push_claims(),
            &EncodingKey::from_secret(&secret).unwrap(),
            Algorithm::HS256,
            Some("a"),
        );
        assert_eq!(
            verify(&token, &google(), &google_keys(), NOW),
            Err(OidcError::Algorithm)
        );
    }
    // RS256 over the EC key's kid: the key pins ES256.
    let token = sign(&push_claims(), &rsa(RSA_A), Algorithm::RS256, Some("ec"));
    assert_eq!(
        verify(&token, &google(), &google_keys(), NOW),
        Err(OidcError::Algorithm)
    );
}

#[test]
fn another_key_or_an_unknown_kid_is_refused() {
    let other = sign(&push_claims(), &rsa(RSA_B), Algorithm::RS256, Some("a"));
    assert_eq!(
        verify(&other, &google(), &google_keys(), NOW),
        Err(OidcError::Signature)
    );
    let unknown = sign(&push_claims(), &rsa(RSA_B), Algorithm::RS256, Some("zz"));
    assert_eq!(
        verify(&unknown, &google(), &google_keys(), NOW),
        Err(OidcError::UnknownKey)
    );
    assert!(!google_keys().has(Some("zz")));
    assert!(google_keys().has(Some("a")));
    // Without a kid every key is tried, and the right one still has to verify.
    let no_kid = sign(&push_claims(), &rsa(RSA_A), Algorithm::RS256, None);
    assert!(verify(&no_kid, &google(), &google_keys(), NOW).is_ok());
}

#[test]
fn a_symmetric_or_encryption_key_in_the_set_is_never_used() {
    let set = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "a", "alg": "HS256"},
        with(jwk(&rsa(RSA_A), Algorithm::RS256, "enc"), "use", json!("enc")),
        {"kty": "weird", "kid": "x"},
    ]});
    assert!(matches!(
        KeySet::parse(set.to_string().as_bytes()),
        Err(KeySetError)
    ));
    assert!(KeySet::parse(b"not json").is_err());
    assert!(KeySet::parse(br#"{"keys": []}"#).is_err());
}

#[test]
fn malformed_and_oversized_tokens_are_refused_before_decoding() {
    for token in ["", "a.b", "a.b.c.d", "....", "x.y.z"] {
        assert!(
            verify(token, &google(), &google_keys(), NOW).is_err(),
            "{token}"
        );
    }
    let big = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(peek(&big), Err(OidcError::TooLarge));
    let mut h = HeaderMap::new();
    h.insert("authorization", format!("Bearer {big}").parse().unwrap());
    assert_eq!(bearer(&h), Err(OidcError::TooLarge));
    h.insert("authorization", "Basic abc".parse().unwrap());
    assert_eq!(bearer(&h), Err(OidcError::Missing));
    assert_eq!(bearer(&HeaderMap::new()), Err(OidcError::Missing));
    h.insert("authorization", "bearer a.b.c".parse().unwrap());
    assert_eq!(bearer(&h), Ok("a.b.c"));
}

#[test]
fn github_actions_tokens_must_come_from_the_required_repository() {
    let issuers = parse_issuers(
        &json!([{"preset": "github-actions", "audience": "imagehook",
                  "jwks_url": "http://127.0.0.1:1/jwks",
                  "claims": {"repository": "acme/app", "ref": "refs/heads/main"}}])
        .to_string(),
    )
    .unwrap();
    let gh = &issuers[0];
    assert_eq!(gh.issuer, "https://token.actions.githubusercontent.com");
    let keys = key_set(&[jwk(&rsa(RSA_A), Algorithm::RS256, "gh")]);
    let claims = json!({
        "iss": gh.issuer, "aud": "imagehook", "repository": "acme/app",
        "repository_owner": "acme", "ref": "refs/heads/main",
        "iat": NOW, "nbf": NOW - 5, "exp": NOW + 300,
    });
    let token = |c: &Value| sign(c, &rsa(RSA_A), Algorithm::RS256, Some("gh"));
    assert!(verify(&token(&claims), gh, &keys, NOW).is_ok());
    let other = with(claims.clone(), "repository", json!("evil/app"));
    assert_eq!(
        verify(&token(&other), gh, &keys, NOW),
        Err(OidcError::Claim("repository".into()))
    );
    let mut missing = claims.clone();
    missing.as_object_mut().unwrap().remove("ref");
    assert_eq!(
        verify(&token(&missing), gh, &keys, NOW),
        Err(OidcError::Claim("ref".into()))
    );
}

#[test]
fn issuer_configuration_is_checked_at_init() {
    let err = |j: Value| parse_issuers(&j.to_string()).unwrap_err().to_string();
    assert!(err(json!([])).contains("at least one"));
    assert!(err(json!([{"preset": "google", "audience": AUD}])).contains("email"));
    assert!(err(json!([{"preset": "github-actions"}])).contains("audience"));
    assert!(err(json!([{"preset": "nope", "audience": "a"}])).contains("preset"));
    assert!(err(json!([{"issuer": "http://idp.example.com", "audience": "a"}])).contains("https"));
    assert!(
        err(json!([{"preset": "gitlab", "audience": "a", "jwks_url": "http://gitlab.com/k"}]))
            .contains("jwks_url")
    );
    assert!(
        err(json!([{"preset": "gitlab", "audience": "a", "claims": {"aud": "x"}}]))
            .contains("claims cannot")
    );
    assert!(
        err(json!([{"preset": "gitlab", "audience": "a", "claims": {"n": 1}}]))
            .contains("strings or booleans")
    );
    assert!(
        err(json!([{"preset": "gitlab", "audience": "a", "extra": 1}])).contains("unknown field")
    );
    let gl = parse_issuers(
        &json!([{"preset": "gitlab", "issuer": "https://gitlab.example.com/", "audience": "a",
                  "claims": {"project_path": "group/app"}},
                 {"issuer": "https://idp.example.com", "audience": ["a", "b"]}])
        .to_string(),
    )
    .unwrap();
    assert_eq!(
        gl[0].jwks_url.as_deref(),
        Some("https://gitlab.example.com/oauth/discovery/keys")
    );
    assert_eq!(gl[1].jwks_url, None);
    assert_eq!(
        gl[1].discovery_url(),
        "https://idp.example.com/.well-known/openid-configuration"
    );
}

#[test]
fn errors_never_hold_the_token() {
    let token = sign(
        &with(push_claims(), "exp", json!(NOW - 3600)),
        &rsa(RSA_A),
        Algorithm::RS256,
        Some("a"),
    );
    let e = verify(&token, &google(), &google_keys(), NOW).unwrap_err();
    assert!(!format!("{e} {e:?}").contains(&token[..20]));
}
