//! `AUTH_MODE=oidc`: the trusted issuers' keys, fetched when first needed and kept for the life
//! of the execution environment, and the verification of a request's token against them.
//!
//! Keys are kept for [`KEYS_TTL`]. A token naming a key the set lacks (an issuer that rotated)
//! fetches the set again, at most once per [`REFETCH_INTERVAL`] per issuer, so a flood of
//! tokens with made-up key ids costs the issuer one request, not one each. When a refetch
//! fails, the keys already held keep serving; with none held the request is refused as
//! retryable (503), since the sender's retry may find the issuer reachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::adapters::jwks::JwksClient;
use crate::auth::oidc::{self, Claims, Issuer, KeySet, OidcError};

/// How long a key set is used before it is fetched again. Issuers publish a new key well
/// before they sign with it (Google: days), so an hour never misses one for long, and an
/// unknown `kid` fetches early anyway.
pub const KEYS_TTL: Duration = Duration::from_secs(60 * 60);
/// The least time between two fetches of one issuer's keys.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

struct Held {
    keys: Option<Arc<KeySet>>,
    /// The key set's URL, once known (configured, or read from the discovery document).
    jwks_url: Option<String>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

struct Trusted {
    issuer: Issuer,
    held: Mutex<Held>,
}

/// Verifies OIDC tokens for one app.
pub struct OidcVerifier {
    trusted: Vec<Trusted>,
    client: JwksClient,
    refetch: Duration,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.trusted.iter().map(|t| &t.issuer.issuer))
            .finish()
    }
}

impl OidcVerifier {
    pub fn new(issuers: &[Issuer]) -> Self {
        Self {
            trusted: issuers
                .iter()
                .map(|i| Trusted {
                    issuer: i.clone(),
                    held: Mutex::new(Held {
                        keys: None,
                        jwks_url: i.jwks_url.clone(),
                        fetched: None,
                        attempted: None,
                    }),
                })
                .collect(),
            client: JwksClient::new(),
            refetch: REFETCH_INTERVAL,
        }
    }

    /// Another least time between fetches of one issuer's keys (tests that rotate keys).
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch = interval;
        self
    }

    /// The request's bearer token, verified at `now` (Unix seconds). Nothing of the token is
    /// logged; a refusal names its reason.
    pub async fn verify(&self, headers: &HeaderMap, now: i64) -> Result<Claims, OidcError> {
        let token = oidc::bearer(headers)?;
        let unverified = oidc::peek(token)?;
        let trusted = self
            .trusted
            .iter()
            .find(|t| t.issuer.issuer == unverified.issuer)
            .ok_or(OidcError::UnknownIssuer)?;
        let keys = self.keys(trusted, unverified.kid.as_deref()).await?;
        let claims = oidc::verify(token, &trusted.issuer, &keys, now)?;
        tracing::info!(
            issuer = %trusted.issuer.issuer,
            subject = claims.get_str("sub").map(|s| s.chars().take(200).collect::<String>()).unwrap_or_default(),
            "token verified"
        );
        Ok(claims)
    }

    async fn keys(&self, trusted: &Trusted, kid: Option<&str>) -> Result<Arc<KeySet>, OidcError> {
        let mut held = trusted.held.lock().await;
        let now = Instant::now();
        let fresh = held
            .fetched
            .is_some_and(|t| now.duration_since(t) < KEYS_TTL);
        let knows = held.keys.as_ref().is_some_and(|k| k.has(kid));
        if fresh && knows {
            return held.keys.clone().ok_or(OidcError::KeysUnavailable);
        }
        let may_fetch = held
            .attempted
            .is_none_or(|t| now.duration_since(t) >= self.refetch);
        if may_fetch {
            held.attempted = Some(now);
            match self.fetch(&trusted.issuer, &mut held).await {
                Ok(keys) => {
                    tracing::info!(issuer = %trusted.issuer.issuer, keys = keys.len(), "issuer keys fetched");
                    held.keys = Some(Arc::new(keys));
                    held.fetched = Some(now);
                }
                Err(e) => {
                    tracing::warn!(issuer = %trusted.issuer.issuer, error = %e, "issuer keys not fetched");
                }
            }
        }
        // Keys held, even stale, serve while the issuer cannot be reached; verification then
        // says whether the token's key is among them.
        held.keys.clone().ok_or(OidcError::KeysUnavailable)
    }

    async fn fetch(&self, issuer: &Issuer, held: &mut Held) -> Result<KeySet, FetchFailed> {
        let url = match &held.jwks_url {
            Some(u) => u.clone(),
            None => {
                let url = self.discover(issuer).await?;
                held.jwks_url = Some(url.clone());
                url
            }
        };
        let body = self.client.get(&url, oidc::is_fetchable).await?;
        Ok(KeySet::parse(&body)?)
    }

    /// The key set's URL from the issuer's discovery document, which must name the issuer
    /// itself: a document for another issuer is not this one's.
    async fn discover(&self, issuer: &Issuer) -> Result<String, FetchFailed> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let body = self
            .client
            .get(&issuer.discovery_url(), oidc::is_fetchable)
            .await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|_| FetchFailed::Discovery("not JSON with issuer and jwks_uri"))?;
        if doc.issuer.trim_end_matches('/') != issuer.issuer {
            return Err(FetchFailed::Discovery("names another issuer"));
        }
        if !oidc::is_fetchable(&doc.jwks_uri) {
            return Err(FetchFailed::Discovery(
                "names a jwks_uri that is not https://",
            ));
        }
        Ok(doc.jwks_uri)
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchFailed {
    #[error(transparent)]
    Fetch(#[from] crate::adapters::jwks::FetchError),
    #[error(transparent)]
    Keys(#[from] oidc::KeySetError),
    #[error("the discovery document {0}")]
    Discovery(&'static str),
}
