//! Authenticity checks, run on the raw request before any byte of the body is parsed.
//!
//! Every comparison is constant time: tokens and credentials are compared as SHA-256 hashes (so
//! neither their content nor their length shows in the timing) and HMACs with `verify_slice`.
//! The error never says which check failed, and secrets have a redacted `Debug`.
//!
//! Over 500 lines because nearly half of it is its tests: every mode accepted and refused,
//! with the published test vectors.

pub mod oidc;

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// The header `token` mode reads unless `SIGNATURE_HEADER` names another.
pub const DEFAULT_TOKEN_HEADER: &str = "authorization";
/// The header `hmac-sha256` mode reads unless `SIGNATURE_HEADER` names another (GitHub's name,
/// which most HMAC senders copy).
pub const DEFAULT_HMAC_HEADER: &str = "x-hub-signature-256";
/// The header `hmac-sha1` mode reads unless `SIGNATURE_HEADER` names another: Sonatype Nexus
/// Repository's, the one sender that still signs with SHA-1.
pub const DEFAULT_HMAC_SHA1_HEADER: &str = "x-nexus-webhook-signature";
/// Standard Webhooks: how far a signature's timestamp may be from now, either way.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 5 * 60;
const STANDARD_ID: &str = "webhook-id";
const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
const STANDARD_SIGNATURE: &str = "webhook-signature";
/// Svix sends the same three under its own names unless the account pays for the
/// standard ones: the same scheme, read under either name (the standard one first).
const SVIX_ID: &str = "svix-id";
const SVIX_TIMESTAMP: &str = "svix-timestamp";
const SVIX_SIGNATURE: &str = "svix-signature";
const STANDARD_KEY_PREFIX: &str = "whsec_";

/// A webhook secret. Its `Debug` never shows the value, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// How senders prove themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A shared token in a header: `Authorization: Bearer <t>` by default, or the raw value of
    /// any other header (ACR custom headers, EventBridge API-key connections).
    Token,
    /// `Authorization: Basic base64(user:password)`; each secret is `user:password`.
    Basic,
    /// `sha256=<hex>` HMAC-SHA256 of the raw body (bare `<hex>` too, as Gitea sends it).
    HmacSha256,
    /// Bare `<hex>` (or `sha1=<hex>`) HMAC-SHA1 of the raw body: Sonatype Nexus Repository
    /// signs with nothing else. SHA-1's collision attacks do not reach HMAC's keyed use.
    HmacSha1,
    /// Standard Webhooks: `webhook-signature: v1,<base64>` over `id.timestamp.body`, with a
    /// `whsec_` key and a five-minute tolerance.
    StandardWebhooks,
    /// A secret segment in the URL (`/hooks/<token>/push`), for senders that set no headers.
    /// A wrong token is answered exactly like an unknown path.
    PathToken,
    /// An OIDC token in `Authorization: Bearer <jwt>`, signed by an issuer of OIDC_ISSUERS
    /// (Google Pub/Sub push, GitHub Actions, GitLab CI). Checked by the app with the issuer's
    /// keys ([`oidc`]), not by [`Verifier::verify`], which holds no keys and refuses.
    Oidc,
    /// No check. Only when set explicitly (e.g. IAM authorization in front).
    None,
}

impl AuthMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "token" => Some(Self::Token),
            "basic" => Some(Self::Basic),
            "hmac-sha256" => Some(Self::HmacSha256),
            "hmac-sha1" => Some(Self::HmacSha1),
            "standard-webhooks" => Some(Self::StandardWebhooks),
            "path-token" => Some(Self::PathToken),
            "oidc" => Some(Self::Oidc),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Basic => "basic",
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha1 => "hmac-sha1",
            Self::StandardWebhooks => "standard-webhooks",
            Self::PathToken => "path-token",
            Self::Oidc => "oidc",
            Self::None => "none",
        }
    }
}

/// The request did not prove itself. Deliberately one variant with no detail: a 401 must not tell
/// a prober whether the header was missing, malformed or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request is not authenticated")]
pub struct AuthError;

/// Verifies requests for one deployment: a mode, the header it reads and one or more secrets
/// (several during a rotation: any of them is accepted).
#[derive(Clone)]
pub struct Verifier {
    mode: AuthMode,
    header: http::HeaderName,
    /// What is compared: for token and basic modes the SHA-256 of the expected credential, so
    /// that the comparison length never depends on the secret.
    expected: Vec<[u8; 32]>,
    /// HMAC keys: the secrets' bytes, or for Standard Webhooks their base64-decoded `whsec_` keys.
    keys: Vec<Vec<u8>>,
    secrets: Vec<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error("WEBHOOK_SECRETS must hold at least one secret for AUTH_MODE={0}")]
    NoSecrets(&'static str),
    #[error("SIGNATURE_HEADER {0:?} is not a valid header name")]
    Header(String),
    #[error("WEBHOOK_SECRETS entries must be user:password for AUTH_MODE=basic")]
    BasicFormat,
    #[error("WEBHOOK_SECRETS entries must be whsec_<base64> keys for AUTH_MODE=standard-webhooks")]
    StandardKey,
}

/// What a request offers besides its body and headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The `{token}` segment of `/hooks/{token}/...`, for `path-token`.
    pub path_token: Option<&'a str>,
    /// The current Unix time, for `standard-webhooks`' tolerance.
    pub now: i64,
}

impl fmt::Debug for Verifier {
    // Hand-written so that neither the secrets nor their hashes can reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("mode", &self.mode)
            .field("header", &self.header)
            .field(
                "secrets",
                &format_args!("[REDACTED; {}]", self.secrets.len()),
            )
            .finish()
    }
}

impl Verifier {
    pub fn new(
        mode: AuthMode,
        header: Option<&str>,
        secrets: Vec<Secret>,
    ) -> Result<Self, AuthConfigError> {
        let default = match mode {
            AuthMode::HmacSha256 => DEFAULT_HMAC_HEADER,
            AuthMode::HmacSha1 => DEFAULT_HMAC_SHA1_HEADER,
            _ => DEFAULT_TOKEN_HEADER,
        };
        let name = header.unwrap_or(default);
        let header = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| AuthConfigError::Header(name.to_owned()))?;
        if !matches!(mode, AuthMode::None | AuthMode::Oidc) && secrets.is_empty() {
            return Err(AuthConfigError::NoSecrets(mode.as_str()));
        }
        if mode == AuthMode::Basic && secrets.iter().any(|s| !s.expose().contains(':')) {
            return Err(AuthConfigError::BasicFormat);
        }
        let expected = secrets
            .iter()
            .map(|s| sha256(s.expose().as_bytes()))
            .collect();
        let keys = match mode {
            AuthMode::StandardWebhooks => secrets
                .iter()
                .map(|s| standard_key(s.expose()))
                .collect::<Option<Vec<_>>>()
                .ok_or(AuthConfigError::StandardKey)?,
            _ => secrets
                .iter()
                .map(|s| s.expose().as_bytes().to_vec())
                .collect(),
        };
        Ok(Self {
            mode,
            header,
            expected,
            keys,
            secrets,
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Checks the raw body, headers and path. Pure: no I/O, no clock (the caller passes the
    /// time), no logging of inputs.
    pub fn verify(
        &self,
        body: &[u8],
        headers: &HeaderMap,
        presented: Presented<'_>,
    ) -> Result<(), AuthError> {
        match self.mode {
            AuthMode::None => Ok(()),
            // The keys are the app's to fetch; a caller that gets here skipped them.
            AuthMode::Oidc => Err(AuthError),
            AuthMode::PathToken => {
                self.matches_any(presented.path_token.ok_or(AuthError)?.as_bytes())
            }
            AuthMode::StandardWebhooks => self.verify_standard(body, headers, presented.now),
            AuthMode::Token => {
                let value = header_str(headers, &self.header)?;
                let token = if self.header == http::header::AUTHORIZATION {
                    strip_scheme(value, "bearer")?
                } else {
                    value
                };
                self.matches_any(token.as_bytes())
            }
            AuthMode::Basic => {
                let value = header_str(headers, &http::header::AUTHORIZATION)?;
                let encoded = strip_scheme(value, "basic")?;
                let decoded = BASE64.decode(encoded.trim()).map_err(|_| AuthError)?;
                self.matches_any(&decoded)
            }
            AuthMode::HmacSha256 => {
                let value = header_str(headers, &self.header)?.trim();
                let hex_sig = value.strip_prefix("sha256=").unwrap_or(value);
                let sig = hex::decode(hex_sig).map_err(|_| AuthError)?;
                let mut ok = false;
                for key in &self.keys {
                    // Every secret is tried, so the time taken does not tell which one matched.
                    ok |= hmac_sha256(key, body).verify_slice(&sig).is_ok();
                }
                if ok { Ok(()) } else { Err(AuthError) }
            }
            AuthMode::HmacSha1 => {
                let value = header_str(headers, &self.header)?.trim();
                let hex_sig = value.strip_prefix("sha1=").unwrap_or(value);
                let sig = hex::decode(hex_sig).map_err(|_| AuthError)?;
                let mut ok = false;
                for key in &self.keys {
                    ok |= hmac_sha1(key, body).verify_slice(&sig).is_ok();
                }
                if ok { Ok(()) } else { Err(AuthError) }
            }
        }
    }

    fn verify_standard(&self, body: &[u8], headers: &HeaderMap, now: i64) -> Result<(), AuthError> {
        let get = |name: &str, svix: &str| {
            headers
                .get(name)
                .or_else(|| headers.get(svix))
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .ok_or(AuthError)
        };
        let (id, ts, signatures) = (
            get(STANDARD_ID, SVIX_ID)?,
            get(STANDARD_TIMESTAMP, SVIX_TIMESTAMP)?,
            get(STANDARD_SIGNATURE, SVIX_SIGNATURE)?,
        );
        let sent: i64 = ts.parse().map_err(|_| AuthError)?;
        // checked_sub: a crafted timestamp near i64::MIN or MAX must not overflow.
        let skew = now.checked_sub(sent).ok_or(AuthError)?;
        if skew.unsigned_abs() > SIGNATURE_TOLERANCE_SECS.unsigned_abs() {
            return Err(AuthError);
        }
        let candidates: Vec<Vec<u8>> = signatures
            .split_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|b64| BASE64.decode(b64).ok())
            .collect();
        let mut ok = false;
        for key in &self.keys {
            let mut mac = hmac_sha256(key, id.as_bytes());
            mac.update(b".");
            mac.update(ts.as_bytes());
            mac.update(b".");
            mac.update(body);
            for sig in &candidates {
                ok |= mac.clone().verify_slice(sig).is_ok();
            }
        }
        if ok { Ok(()) } else { Err(AuthError) }
    }

    fn matches_any(&self, presented: &[u8]) -> Result<(), AuthError> {
        let presented = sha256(presented);
        let mut ok = subtle::Choice::from(0u8);
        for expected in &self.expected {
            ok |= expected.ct_eq(&presented);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError)
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Result<&'a str, AuthError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError)
}

/// `Bearer abc` -> `abc`; the scheme is case-insensitive (RFC 9110 §11.1).
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Result<&'a str, AuthError> {
    let (s, rest) = value.trim().split_once(' ').ok_or(AuthError)?;
    if s.eq_ignore_ascii_case(scheme) {
        Ok(rest.trim())
    } else {
        Err(AuthError)
    }
}

/// `whsec_<base64>` -> key bytes (padding optional, as the reference libraries accept).
fn standard_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret
        .strip_prefix(STANDARD_KEY_PREFIX)?
        .trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(b64)
        .ok()
        .filter(|k| !k.is_empty())
}

/// `v1,<base64>` for a Standard Webhooks message, as a sender computes it.
pub fn sign_standard_webhooks(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<String> {
    let key = standard_key(secret)?;
    let mut mac = hmac_sha256(&key, id.as_bytes());
    mac.update(format!(".{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn hmac_sha256(key: &[u8], body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac
}

fn hmac_sha1(key: &[u8], body: &[u8]) -> Hmac<sha1::Sha1> {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac
}

/// Bare `<hex>` HMAC-SHA1 of a body, as Nexus sends it in `X-Nexus-Webhook-Signature`.
pub fn sign_hmac_sha1(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac_sha1(secret.as_bytes(), body).finalize().into_bytes())
}

/// `sha256=<hex>` for a body, as a sender computes it. Used by tests, docs and the local tools.
pub fn sign_hmac_sha256(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body).finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const P0: Presented<'static> = Presented {
        path_token: None,
        now: 0,
    };

    fn verifier(mode: AuthMode, header: Option<&str>, secrets: &[&str]) -> Verifier {
        Verifier::new(
            mode,
            header,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        )
        .unwrap()
    }

    #[test]
    fn hmac_matches_the_published_github_vector() {
        // GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!".
        let sig = sign_hmac_sha256("It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let v = verifier(AuthMode::HmacSha256, None, &["It's a Secret to Everybody"]);
        let h = headers(&[("X-Hub-Signature-256", &sig)]);
        assert_eq!(v.verify(b"Hello, World!", &h, P0), Ok(()));
        assert_eq!(v.verify(b"Hello, World?", &h, P0), Err(AuthError));
    }

    #[test]
    fn hmac_with_the_wrong_secret_or_no_header_is_refused() {
        let v = verifier(AuthMode::HmacSha256, Some("X-Signature"), &["right"]);
        let body = b"{}";
        let wrong = headers(&[("x-signature", &sign_hmac_sha256("wrong", body))]);
        assert_eq!(v.verify(body, &wrong, P0), Err(AuthError));
        assert_eq!(v.verify(body, &HeaderMap::new(), P0), Err(AuthError));
        let bare_hex = sign_hmac_sha256("right", body).replace("sha256=", "");
        // Gitea sends the bare hex digest: accepted, still checked.
        assert_eq!(
            v.verify(body, &headers(&[("x-signature", &bare_hex)]), P0),
            Ok(())
        );
        assert_eq!(
            v.verify(
                body,
                &headers(&[("x-signature", &bare_hex.replace('a', "b"))]),
                P0
            ),
            Err(AuthError)
        );
        let ok = headers(&[("x-signature", &sign_hmac_sha256("right", body))]);
        assert_eq!(v.verify(body, &ok, P0), Ok(()));
    }

    #[test]
    fn a_second_secret_is_accepted_during_rotation() {
        let v = verifier(AuthMode::Token, None, &["old-token", "new-token"]);
        assert_eq!(
            v.verify(b"", &headers(&[("authorization", "Bearer new-token")]), P0),
            Ok(())
        );
        assert_eq!(
            v.verify(b"", &headers(&[("authorization", "bearer old-token")]), P0),
            Ok(())
        );
        assert_eq!(
            v.verify(b"", &headers(&[("authorization", "Bearer other")]), P0),
            Err(AuthError)
        );
        let h = verifier(AuthMode::HmacSha256, None, &["s1", "s2"]);
        let sig = sign_hmac_sha256("s2", b"x");
        assert_eq!(
            h.verify(b"x", &headers(&[("x-hub-signature-256", &sig)]), P0),
            Ok(())
        );
    }

    #[test]
    fn token_in_authorization_needs_the_bearer_scheme() {
        let v = verifier(AuthMode::Token, None, &["t0k"]);
        assert_eq!(
            v.verify(b"", &headers(&[("authorization", "t0k")]), P0),
            Err(AuthError)
        );
        assert_eq!(
            v.verify(b"", &headers(&[("authorization", "Basic t0k")]), P0),
            Err(AuthError)
        );
        assert_eq!(v.verify(b"", &HeaderMap::new(), P0), Err(AuthError));
        assert_eq!(
            v.verify(b"", &headers(&[("authorization", "Bearer t0k")]), P0),
            Ok(())
        );
    }

    #[test]
    fn token_in_a_custom_header_is_the_raw_value() {
        let v = verifier(AuthMode::Token, Some("x-api-key"), &["k3y"]);
        assert_eq!(v.verify(b"", &headers(&[("x-api-key", "k3y")]), P0), Ok(()));
        assert_eq!(
            v.verify(b"", &headers(&[("x-api-key", "k3y ")]), P0),
            Err(AuthError)
        );
        assert_eq!(
            v.verify(b"", &headers(&[("authorization", "Bearer k3y")]), P0),
            Err(AuthError)
        );
    }

    #[test]
    fn basic_checks_user_and_password() {
        let v = verifier(AuthMode::Basic, None, &["eventbridge:s3cret"]);
        let good = format!("Basic {}", BASE64.encode("eventbridge:s3cret"));
        let bad = format!("Basic {}", BASE64.encode("eventbridge:wrong"));
        assert_eq!(
            v.verify(b"", &headers(&[("authorization", &good)]), P0),
            Ok(())
        );
        assert_eq!(
            v.verify(b"", &headers(&[("authorization", &bad)]), P0),
            Err(AuthError)
        );
        assert_eq!(
            v.verify(b"", &headers(&[("authorization", "Basic !!notbase64")]), P0),
            Err(AuthError)
        );
        assert_eq!(v.verify(b"", &HeaderMap::new(), P0), Err(AuthError));
    }

    #[test]
    fn configuration_errors_name_the_problem() {
        assert_eq!(
            Verifier::new(AuthMode::Token, None, vec![]).unwrap_err(),
            AuthConfigError::NoSecrets("token")
        );
        assert_eq!(
            Verifier::new(AuthMode::Basic, None, vec![Secret::new("nocolon")]).unwrap_err(),
            AuthConfigError::BasicFormat
        );
        assert!(matches!(
            Verifier::new(AuthMode::Token, Some("bad header"), vec![Secret::new("x")]),
            Err(AuthConfigError::Header(_))
        ));
        assert!(Verifier::new(AuthMode::None, None, vec![]).is_ok());
    }

    // The Standard Webhooks reference libraries' vector (libraries/go webhook_test.go).
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TS: i64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sw_headers(ts: &str, sig: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", ts),
            ("webhook-signature", sig),
        ])
    }

    fn at(now: i64) -> Presented<'static> {
        Presented {
            path_token: None,
            now,
        }
    }

    #[test]
    fn standard_webhooks_spec_vector_verifies() {
        assert_eq!(
            sign_standard_webhooks(SW_SECRET, SW_ID, SW_TS, SW_BODY).as_deref(),
            Some(SW_SIG)
        );
        let v = verifier(AuthMode::StandardWebhooks, None, &[SW_SECRET]);
        let h = sw_headers(&SW_TS.to_string(), SW_SIG);
        assert_eq!(v.verify(SW_BODY, &h, at(SW_TS)), Ok(()));
        assert_eq!(v.verify(SW_BODY, &h, at(SW_TS + 299)), Ok(()));
        assert_eq!(
            v.verify(br#"{"test": 2432232315}"#, &h, at(SW_TS)),
            Err(AuthError)
        );
    }

    #[test]
    fn standard_webhooks_refuses_replays_outside_five_minutes_either_way() {
        let v = verifier(AuthMode::StandardWebhooks, None, &[SW_SECRET]);
        let h = sw_headers(&SW_TS.to_string(), SW_SIG);
        assert_eq!(v.verify(SW_BODY, &h, at(SW_TS + 301)), Err(AuthError));
        assert_eq!(v.verify(SW_BODY, &h, at(SW_TS - 301)), Err(AuthError));
        // Crafted timestamps must not overflow the arithmetic.
        for ts in [
            i64::MIN.to_string(),
            i64::MAX.to_string(),
            "99999999999999999999".into(),
            "x".into(),
        ] {
            assert_eq!(
                v.verify(SW_BODY, &sw_headers(&ts, SW_SIG), at(SW_TS)),
                Err(AuthError)
            );
        }
        assert_eq!(
            v.verify(
                SW_BODY,
                &sw_headers(&SW_TS.to_string(), SW_SIG),
                at(i64::MIN)
            ),
            Err(AuthError)
        );
    }

    #[test]
    fn standard_webhooks_accepts_any_listed_signature_and_rotated_keys() {
        let other = "whsec_c2Vjb25kLWtleS1mb3ItdGhlLXJvdGF0aW9u";
        let v = verifier(AuthMode::StandardWebhooks, None, &[other, SW_SECRET]);
        let list = format!("v1a,bm90LWNoZWNrZWQ= v1,AAAA {SW_SIG}");
        assert_eq!(
            v.verify(SW_BODY, &sw_headers(&SW_TS.to_string(), &list), at(SW_TS)),
            Ok(())
        );
        let wrong = verifier(AuthMode::StandardWebhooks, None, &[other]);
        assert_eq!(
            wrong.verify(SW_BODY, &sw_headers(&SW_TS.to_string(), SW_SIG), at(SW_TS)),
            Err(AuthError)
        );
        assert_eq!(
            wrong.verify(SW_BODY, &HeaderMap::new(), at(SW_TS)),
            Err(AuthError)
        );
        assert_eq!(
            Verifier::new(
                AuthMode::StandardWebhooks,
                None,
                vec![Secret::new("not-whsec")]
            )
            .unwrap_err(),
            AuthConfigError::StandardKey
        );
    }

    #[test]
    fn path_token_compares_the_url_segment() {
        let v = verifier(AuthMode::PathToken, None, &["s3cr3t-segment"]);
        let with = |t| Presented {
            path_token: t,
            now: 0,
        };
        assert_eq!(
            v.verify(b"", &HeaderMap::new(), with(Some("s3cr3t-segment"))),
            Ok(())
        );
        assert_eq!(
            v.verify(b"", &HeaderMap::new(), with(Some("s3cr3t-segmenT"))),
            Err(AuthError)
        );
        assert_eq!(v.verify(b"", &HeaderMap::new(), with(None)), Err(AuthError));
    }

    #[test]
    fn hmac_sha1_matches_the_rfc_2202_vector_in_the_nexus_header() {
        // RFC 2202, test case 2.
        let body = b"what do ya want for nothing?";
        assert_eq!(
            sign_hmac_sha1("Jefe", body),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        let v = verifier(AuthMode::HmacSha1, None, &["Jefe"]);
        let sig = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79";
        let ok = headers(&[("x-nexus-webhook-signature", sig)]);
        assert_eq!(v.verify(body, &ok, Presented::default()), Ok(()));
        let prefixed = headers(&[("x-nexus-webhook-signature", &format!("sha1={sig}"))]);
        assert_eq!(v.verify(body, &prefixed, Presented::default()), Ok(()));
        assert_eq!(
            v.verify(b"what do ya want for something?", &ok, Presented::default()),
            Err(AuthError)
        );
        let sha256 = headers(&[("x-nexus-webhook-signature", &sign_hmac_sha256("Jefe", body))]);
        assert_eq!(
            v.verify(body, &sha256, Presented::default()),
            Err(AuthError)
        );
        assert_eq!(
            v.verify(body, &HeaderMap::new(), Presented::default()),
            Err(AuthError)
        );
        let rotated = verifier(AuthMode::HmacSha1, None, &["old", "Jefe"]);
        assert_eq!(rotated.verify(body, &ok, Presented::default()), Ok(()));
        assert_eq!(AuthMode::parse("hmac-sha1"), Some(AuthMode::HmacSha1));
        assert_eq!(AuthMode::HmacSha1.as_str(), "hmac-sha1");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let v = verifier(AuthMode::Token, None, &["super-secret-value"]);
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("super-secret-value"), "{dbg}");
        assert!(dbg.contains("REDACTED"));
    }
}
