//! Fetching an OIDC issuer's published documents (its discovery document and key set) over
//! HTTPS, with the client stack the Slack notifier uses: hyper, rustls on ring, the system's
//! trust store. Bounded in time and size, since the issuer answers on a request's path.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::OnceCell;

/// Key sets are a few KiB (Google's: 2 keys, under 2 KiB); anything larger is not one.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// The whole fetch, connection included: the request waits on it, within the functions' 15 s.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Why a document could not be had. Names the host's answer, never a token (none is sent).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no trust store: {0}")]
    TrustStore(String),
    #[error("{url} is not a URL keys may be fetched from")]
    Url { url: String },
    #[error("cannot fetch {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} took over {FETCH_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("{url} sent over {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { url: String },
}

/// The fetcher an app keeps for its life: the TLS client is built on the first fetch, so a
/// cold start in another mode never loads the trust store for it.
#[derive(Default)]
pub struct JwksClient {
    client: OnceCell<HttpsClient>,
}

impl JwksClient {
    pub fn new() -> Self {
        Self::default()
    }

    async fn client(&self) -> Result<&HttpsClient, FetchError> {
        self.client
            .get_or_try_init(|| async {
                // Plain HTTP is reached only for loopback URLs: the configuration refuses any
                // other (`auth::oidc::is_fetchable`), and `get` checks again.
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                let https = super::tls::connector(http).map_err(FetchError::TrustStore)?;
                Ok(Client::builder(TokioExecutor::new()).build(https))
            })
            .await
    }

    /// The body of a `200` answer to `GET url`. `fetchable` is the caller's rule of which URLs
    /// may be fetched (HTTPS, or HTTP to loopback).
    pub async fn get(&self, url: &str, fetchable: fn(&str) -> bool) -> Result<Bytes, FetchError> {
        let named = || url.to_owned();
        if !fetchable(url) {
            return Err(FetchError::Url { url: named() });
        }
        let uri: http::Uri = url.parse().map_err(|_| FetchError::Url { url: named() })?;
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|_| FetchError::Url { url: named() })?;
        let client = self.client().await?;
        let fetch = async {
            let resp = client
                .request(req)
                .await
                .map_err(|e| FetchError::Transport {
                    url: named(),
                    detail: chain(&e),
                })?;
            if resp.status() != http::StatusCode::OK {
                return Err(FetchError::Status {
                    url: named(),
                    status: resp.status().as_u16(),
                });
            }
            Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|_| FetchError::TooLarge { url: named() })
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| FetchError::Timeout { url: named() })?
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
