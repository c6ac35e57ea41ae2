//! OIDC tokens (`AUTH_MODE=oidc`): a sender that can mint a signed token per request (Google
//! Pub/Sub push, a GitHub Actions or GitLab CI job) proves itself with it instead of holding a
//! shared secret.
//!
//! Pure, like the rest of `auth`: the issuers come from the configuration, the keys are given
//! (the app fetches and caches them), and the caller passes the time. Signatures are checked by
//! `jsonwebtoken`; the algorithm is pinned by the key, never taken from the token, so `alg:
//! none` and an HMAC signature made with a public key are refused before any claim is read.
//!
//! Unlike the secret modes, a refusal names its reason (expired, wrong audience, unknown key):
//! a token is signed public data and telling its holder why it was refused gives a prober
//! nothing to forge with. The token itself is never in an error.

use std::collections::BTreeMap;
use std::fmt;

use http::HeaderMap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// A token longer than this is refused before it is decoded. Google's and GitHub's are about
/// 1 KiB; GitLab's, with every claim, under 2 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// How far `iat` and `nbf` may be ahead of our clock, and `exp` behind it.
pub const CLOCK_LEEWAY_SECS: i64 = 60;
/// The most issuers one deployment trusts, and claims one issuer requires.
pub const MAX_ISSUERS: usize = 10;
pub const MAX_REQUIRED_CLAIMS: usize = 20;
/// The most keys a key set may hold; issuers publish two or three.
pub const MAX_KEYS: usize = 32;

/// A sender whose issuer, key set location and required claims are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Google,
    GithubActions,
    Gitlab,
}

impl Preset {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "google" => Some(Self::Google),
            "github-actions" => Some(Self::GithubActions),
            "gitlab" => Some(Self::Gitlab),
            _ => None,
        }
    }

    fn issuer(self) -> &'static str {
        match self {
            Self::Google => "https://accounts.google.com",
            Self::GithubActions => "https://token.actions.githubusercontent.com",
            Self::Gitlab => "https://gitlab.com",
        }
    }

    /// Where the issuer publishes its keys, as its discovery document says.
    fn jwks_url(self, issuer: &str) -> String {
        match self {
            Self::Google => "https://www.googleapis.com/oauth2/v3/certs".to_owned(),
            Self::GithubActions => format!("{issuer}/.well-known/jwks"),
            // Self-managed GitLab publishes at the same path under its own host.
            Self::Gitlab => format!("{issuer}/oauth/discovery/keys"),
        }
    }
}

/// One trusted issuer: where its keys are, and what its tokens must say.
#[derive(Debug, Clone, PartialEq)]
pub struct Issuer {
    /// The exact `iss` its tokens carry.
    pub issuer: String,
    /// Where its key set is. `None`: read from `<issuer>/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// Any one of these must be in the token's `aud`.
    pub audiences: Vec<String>,
    /// Claims the token must carry with exactly these values.
    pub claims: BTreeMap<String, Value>,
}

impl Issuer {
    /// The discovery document's URL, when no key set URL is configured.
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcConfigError {
    #[error(
        "OIDC_ISSUERS is not a JSON list of issuers ({0}): e.g. [{{\"preset\": \"github-actions\", \"audience\": \"imagehook\", \"claims\": {{\"repository\": \"org/app\"}}}}]"
    )]
    Json(String),
    #[error(
        "OIDC_ISSUERS must name at least one issuer, and at most {MAX_ISSUERS}, for AUTH_MODE=oidc"
    )]
    Count,
    #[error("OIDC_ISSUERS entry {0}: {1}")]
    Entry(usize, &'static str),
}

/// One entry of OIDC_ISSUERS, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerSpec {
    preset: Option<String>,
    issuer: Option<String>,
    jwks_url: Option<String>,
    audience: OneOrMany,
    /// Google: the push subscription's service account.
    email: Option<String>,
    #[serde(default)]
    claims: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// OIDC_ISSUERS: a JSON list of issuers. Presets (`google`, `github-actions`, `gitlab`) fill
/// in the issuer and its key set; `audience` is always required, since a token minted for
/// another service must not be accepted here.
pub fn parse_issuers(json: &str) -> Result<Vec<Issuer>, OidcConfigError> {
    let specs: Vec<IssuerSpec> =
        serde_json::from_str(json).map_err(|e| OidcConfigError::Json(e.to_string()))?;
    if specs.is_empty() || specs.len() > MAX_ISSUERS {
        return Err(OidcConfigError::Count);
    }
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| issuer_from(spec).map_err(|hint| OidcConfigError::Entry(i, hint)))
        .collect()
}

fn issuer_from(spec: IssuerSpec) -> Result<Issuer, &'static str> {
    let preset = match spec.preset.as_deref() {
        None => None,
        Some(p) => Some(Preset::parse(p).ok_or("preset must be google, github-actions or gitlab")?),
    };
    let issuer = match (spec.issuer, preset) {
        (Some(i), _) => i.trim_end_matches('/').to_owned(),
        (None, Some(p)) => p.issuer().to_owned(),
        (None, None) => return Err("names neither a preset nor an issuer"),
    };
    // Its discovery document is fetched from it: the same rule as for key sets.
    if !is_fetchable(&issuer) {
        return Err(
            "issuer must be an https:// URL (http:// only to 127.0.0.1, [::1] or localhost)",
        );
    }
    let jwks_url = match (spec.jwks_url, preset) {
        (Some(u), _) => Some(u),
        (None, Some(p)) => Some(p.jwks_url(&issuer)),
        (None, None) => None,
    };
    if let Some(u) = &jwks_url
        && !is_fetchable(u)
    {
        return Err("jwks_url must be https:// (http:// only to 127.0.0.1, [::1] or localhost)");
    }
    let audiences = match spec.audience {
        OneOrMany::One(a) => vec![a],
        OneOrMany::Many(a) => a,
    };
    if audiences.is_empty() || audiences.iter().any(|a| a.trim().is_empty()) {
        return Err("audience must be a non-empty string or list of strings");
    }
    let mut claims = spec.claims;
    match (preset, spec.email) {
        (Some(Preset::Google), Some(email)) => {
            claims.insert("email".to_owned(), Value::String(email));
            claims.insert("email_verified".to_owned(), Value::Bool(true));
        }
        // Any Google service account can mint a token for any audience: without the push
        // subscription's account, anyone with a Google account could deliver.
        (Some(Preset::Google), None) if !claims.contains_key("email") => {
            return Err("the google preset needs email: the push subscription's service account");
        }
        (_, Some(_)) if preset != Some(Preset::Google) => {
            return Err("email is for the google preset; write other claims under claims");
        }
        _ => {}
    }
    if claims.len() > MAX_REQUIRED_CLAIMS {
        return Err("too many required claims (at most 20)");
    }
    if claims
        .values()
        .any(|v| !matches!(v, Value::String(_) | Value::Bool(_)))
    {
        return Err("required claims must be strings or booleans");
    }
    for reserved in ["iss", "aud", "exp", "nbf", "iat"] {
        if claims.contains_key(reserved) {
            return Err("claims cannot set iss, aud, exp, nbf or iat: use issuer and audience");
        }
    }
    Ok(Issuer {
        issuer,
        jwks_url,
        audiences,
        claims,
    })
}

/// Where keys may be fetched from: HTTPS, or plain HTTP to this machine alone (the tests' key
/// server); a key set fetched in the clear from elsewhere could be anyone's.
pub fn is_fetchable(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let local = matches!(
        uri.host(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    match uri.scheme_str() {
        Some("https") => uri.host().is_some(),
        Some("http") => local,
        _ => false,
    }
}

/// Why a token was refused. The messages name the problem, never the token or a claim's value
/// from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("no bearer token: send Authorization: Bearer <OIDC token>")]
    Missing,
    #[error("the token is over {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token is not a signed JWT")]
    Malformed,
    #[error("the token's issuer is not trusted here")]
    UnknownIssuer,
    #[error("the token's signing key is not in its issuer's key set")]
    UnknownKey,
    #[error("the token's algorithm is not the one its key is for")]
    Algorithm,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lacks {0}")]
    MissingClaim(&'static str),
    #[error("the token's audience is not this endpoint's")]
    WrongAudience,
    #[error("the token's issuer is not the one its key belongs to")]
    WrongIssuer,
    /// A required claim is absent or differs; only its name is told, from our configuration.
    #[error("the token's {0} claim is not the one required")]
    Claim(String),
    /// The issuer's keys could not be fetched: the sender's retry may succeed.
    #[error("the issuer's keys cannot be fetched now")]
    KeysUnavailable,
}

impl OidcError {
    /// Whether the sender should retry: only when the keys could not be had.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::KeysUnavailable)
    }
}

/// The bearer token of `Authorization`, bounded.
pub fn bearer(headers: &HeaderMap) -> Result<&str, OidcError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(OidcError::Missing)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(OidcError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(OidcError::Missing);
    }
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OidcError::TooLarge);
    }
    Ok(token)
}

/// What is read from a token before its signature is checked: which issuer's keys, and which
/// key, to check it with. Nothing else of it is trusted until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    pub issuer: String,
    pub kid: Option<String>,
}

#[derive(Deserialize)]
struct IssOnly {
    iss: Option<String>,
}

pub fn peek(token: &str) -> Result<Unverified, OidcError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OidcError::TooLarge);
    }
    if token.split('.').count() != 3 {
        return Err(OidcError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| header_fault(token))?;
    let claims: IssOnly =
        jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| OidcError::Malformed)?;
    Ok(Unverified {
        issuer: claims.iss.ok_or(OidcError::MissingClaim("iss"))?,
        kid: header.kid,
    })
}

/// Why a header did not parse: an algorithm jsonwebtoken does not know (`none` among them), or
/// no JSON header at all.
fn header_fault(token: &str) -> OidcError {
    use base64::Engine as _;
    let segment = token.split('.').next().unwrap_or_default();
    let named_alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()
        .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
        .is_some_and(|h| h.get("alg").is_some_and(Value::is_string));
    if named_alg {
        OidcError::Algorithm
    } else {
        OidcError::Malformed
    }
}

/// One usable key of a key set, with the one algorithm it verifies.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// An issuer's public keys, parsed from its JWKS. Keys this verifier cannot use (encryption
/// keys, symmetric keys, other curves) are left out rather than failing the set.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, k.algorithm)))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the key set is not a JWKS document, or holds no usable key")]
pub struct KeySetError;

impl KeySet {
    pub fn parse(json: &[u8]) -> Result<Self, KeySetError> {
        // Each key is read alone, so that one of a type jsonwebtoken does not know does not
        // make the issuer's other keys unusable.
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<Value>,
        }
        let raw: Raw = serde_json::from_slice(json).map_err(|_| KeySetError)?;
        let set = JwkSet {
            keys: raw
                .keys
                .into_iter()
                .take(MAX_KEYS)
                .filter_map(|k| serde_json::from_value(k).ok())
                .collect(),
        };
        let keys: Vec<Key> = set
            .keys
            .iter()
            .filter(|jwk| {
                // A key published for encryption only is not a signing key.
                !matches!(
                    jwk.common.public_key_use,
                    Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                )
            })
            .filter_map(|jwk| {
                let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                    (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => {
                        Algorithm::RS256
                    }
                    (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS384)) => Algorithm::RS384,
                    (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS512)) => Algorithm::RS512,
                    (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
                        if p.curve == EllipticCurve::P256 =>
                    {
                        Algorithm::ES256
                    }
                    (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES384))
                        if p.curve == EllipticCurve::P384 =>
                    {
                        Algorithm::ES384
                    }
                    // Symmetric keys never verify a third party's token.
                    _ => return None,
                };
                Some(Key {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key: DecodingKey::from_jwk(jwk).ok()?,
                })
            })
            .collect();
        if keys.is_empty() {
            return Err(KeySetError);
        }
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the set can verify a token naming `kid`. A token without a `kid` is tried
    /// against every key (some issuers publish one key and omit it).
    pub fn has(&self, kid: Option<&str>) -> bool {
        kid.is_none_or(|kid| self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }
}

/// The verified claims of a token.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(pub serde_json::Map<String, Value>);

impl Claims {
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }
}

/// Verifies `token` against `issuer`'s policy and `keys`, at `now` (Unix seconds).
pub fn verify(token: &str, issuer: &Issuer, keys: &KeySet, now: i64) -> Result<Claims, OidcError> {
    let unverified = peek(token)?;
    if unverified.issuer != issuer.issuer {
        return Err(OidcError::WrongIssuer);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| OidcError::Algorithm)?;
    let candidates: Vec<&Key> = keys
        .keys
        .iter()
        .filter(|k| match &unverified.kid {
            Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
            None => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(OidcError::UnknownKey);
    }
    let mut last = OidcError::Algorithm;
    for key in candidates {
        // The key decides the algorithm: a token naming another (HS256 over the public key's
        // bytes, `none`) is refused before its signature is looked at.
        if header.alg != key.algorithm {
            last = OidcError::Algorithm;
            continue;
        }
        let mut v = Validation::new(key.algorithm);
        // Times are checked below against the caller's clock; iss and aud by the crate.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.set_issuer(&[&issuer.issuer]);
        v.set_audience(&issuer.audiences);
        match jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &v) {
            Ok(data) => {
                let claims = Claims(data.claims);
                check_times(&claims, now)?;
                check_required(&claims, issuer)?;
                return Ok(claims);
            }
            Err(e) => last = map_error(e.kind()),
        }
    }
    Err(last)
}

fn map_error(kind: &jsonwebtoken::errors::ErrorKind) -> OidcError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => OidcError::Signature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
            OidcError::Algorithm
        }
        K::InvalidAudience => OidcError::WrongAudience,
        K::InvalidIssuer => OidcError::WrongIssuer,
        K::ExpiredSignature => OidcError::Expired,
        K::ImmatureSignature => OidcError::NotYetValid,
        K::MissingRequiredClaim(c) => OidcError::MissingClaim(match c.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            _ => "a required claim",
        }),
        K::InvalidClaimFormat(c) if c == "aud" => OidcError::WrongAudience,
        K::InvalidClaimFormat(c) if c == "iss" => OidcError::WrongIssuer,
        _ => OidcError::Malformed,
    }
}

fn number(claims: &Claims, name: &str) -> Option<Result<i64, OidcError>> {
    claims.0.get(name).map(|v| {
        v.as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .ok_or(OidcError::Malformed)
    })
}

/// `exp` required and in the future; `iat` required and not ahead of our clock; `nbf`, when
/// present, passed. Saturating arithmetic: a crafted `exp` near `i64::MAX` cannot overflow.
fn check_times(claims: &Claims, now: i64) -> Result<(), OidcError> {
    let exp = number(claims, "exp").ok_or(OidcError::MissingClaim("exp"))??;
    if exp.saturating_add(CLOCK_LEEWAY_SECS) <= now {
        return Err(OidcError::Expired);
    }
    let iat = number(claims, "iat").ok_or(OidcError::MissingClaim("iat"))??;
    if iat > now.saturating_add(CLOCK_LEEWAY_SECS) {
        return Err(OidcError::NotYetValid);
    }
    if let Some(nbf) = number(claims, "nbf").transpose()?
        && nbf > now.saturating_add(CLOCK_LEEWAY_SECS)
    {
        return Err(OidcError::NotYetValid);
    }
    Ok(())
}

fn check_required(claims: &Claims, issuer: &Issuer) -> Result<(), OidcError> {
    match issuer
        .claims
        .iter()
        .find(|(name, want)| !claims.is(name, want))
    {
        Some((name, _)) => Err(OidcError::Claim(name.clone())),
        None => Ok(()),
    }
}

impl Claims {
    /// Whether claim `name` is `want`. A boolean matches its string form either way: Google
    /// sends `email_verified` as a boolean, GitLab `ref_protected` as the string `"true"`.
    fn is(&self, name: &str, want: &Value) -> bool {
        let as_text = |b: bool| if b { "true" } else { "false" };
        match (want, self.0.get(name)) {
            (Value::Bool(w), Some(Value::Bool(g))) => w == g,
            (Value::Bool(w), Some(Value::String(g))) => g == as_text(*w),
            (Value::String(w), Some(Value::String(g))) => w == g,
            (Value::String(w), Some(Value::Bool(g))) => w == as_text(*g),
            _ => false,
        }
    }

    /// The first of `required` (a deploy rule's `require_claims`) these claims do not carry
    /// with its value.
    pub fn unmet<'a>(&self, required: &'a BTreeMap<String, String>) -> Option<&'a str> {
        required
            .iter()
            .find(|(name, want)| !self.is(name, &Value::String((*want).clone())))
            .map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests;
