//! Replay: every receipt keeps the verified request it came from (inline up to `INLINE_LIMIT`,
//! otherwise its SHA-256 and size), so `imagehook replay` can re-drive an event through the
//! pipeline. Receipts make that idempotent: an applied event is a duplicate, one whose
//! deployments were never recorded (the sender gave up after a 503) gets them now.

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::app::App;
use crate::event::{Parsed, Provider, Timestamp};
use crate::outcome::EventResult;
use crate::pipeline;
use crate::providers::{self, UrlHints};
use crate::store::keys;

/// Bodies up to this size are kept in the receipt itself; DynamoDB items stop at 400 KB and a
/// receipt is written once per event of an envelope.
pub const INLINE_LIMIT: usize = 32 * 1024;

/// The verified request behind an event, as its receipt keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The body after authentication and decoding; `None` when over `INLINE_LIMIT`.
    pub body: Option<String>,
    pub sha256: String,
    pub size: usize,
    /// What the request's URL said beyond its body.
    pub hints: UrlHints,
}

impl Payload {
    pub fn new(body: &[u8], hints: UrlHints) -> Self {
        let text = (body.len() <= INLINE_LIMIT)
            .then(|| String::from_utf8(body.to_vec()).ok())
            .flatten();
        let digest = Sha256::digest(body);
        // `hex::encode` builds its String a char at a time; every delivery pays for this one.
        let mut hex = [0u8; 64];
        let sha256 = match hex::encode_to_slice(digest, &mut hex) {
            Ok(()) => String::from_utf8_lossy(&hex).into_owned(),
            Err(_) => hex::encode(digest),
        };
        Self {
            body: text,
            sha256,
            size: body.len(),
            hints,
        }
    }

    /// The receipt attribute.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(b) = &self.body {
            m.insert("body".into(), json!(b));
        }
        m.insert("sha256".into(), json!(self.sha256));
        m.insert("size".into(), json!(self.size));
        for (k, v) in [
            (
                "provider",
                self.hints.provider.map(|p| p.as_str().to_owned()),
            ),
            ("registry_hint", self.hints.registry.clone()),
            ("region", self.hints.region.clone()),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
        Value::Object(m)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no receipt {0}: give <provider>#<event id> as `imagehook state` lists receipts")]
    NoReceipt(String),
    #[error(
        "receipt {0} keeps no body to replay ({1}): it was over {INLINE_LIMIT} bytes, or recorded before receipts kept bodies"
    )]
    NoBody(String, String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the kept body no longer parses: {0}")]
    Parse(#[from] providers::ParseError),
    #[error(transparent)]
    Pipeline(#[from] crate::PipelineError),
}

/// Re-drives the request behind receipt `<provider>#<event id>` through the functions that own
/// its events, without authentication (the body was verified when it arrived).
pub async fn replay(app: &App, receipt_id: &str) -> Result<Vec<EventResult>, ReplayError> {
    let (provider, id) = receipt_id
        .split_once('#')
        .ok_or_else(|| ReplayError::NoReceipt(receipt_id.to_owned()))?;
    let receipt = app
        .store()
        .get(&keys::receipt(provider, id))
        .await?
        .ok_or_else(|| ReplayError::NoReceipt(receipt_id.to_owned()))?;
    let kept = receipt.get("payload").cloned().unwrap_or(Value::Null);
    let str_of = |k: &str| kept.get(k).and_then(Value::as_str).map(str::to_owned);
    let Some(body) = str_of("body") else {
        let what = match (str_of("sha256"), kept.get("size")) {
            (Some(sha), Some(size)) => format!("{size} bytes, sha256 {sha}"),
            _ => "no payload attribute".to_owned(),
        };
        return Err(ReplayError::NoBody(receipt_id.to_owned(), what));
    };
    let hints = UrlHints {
        provider: str_of("provider").as_deref().and_then(Provider::parse),
        registry: str_of("registry_hint"),
        region: str_of("region"),
    };
    let received_at = Timestamp::now();
    let events = providers::parse_request(
        body.as_bytes(),
        &http::HeaderMap::new(),
        &hints,
        &received_at,
    )?;
    let payload = Payload::new(body.as_bytes(), hints);
    let deps = app.deps(Some(&payload));
    let mut out = Vec::new();
    for e in events {
        let function = match &e {
            Parsed::Image(e) => pipeline::function_for(e.action),
            Parsed::Ignored(_) | Parsed::Handshake(_) => continue,
        };
        out.extend(pipeline::handle(&deps, function, vec![e], &received_at).await?);
    }
    app.notifier().notify_results(&out).await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_keep_the_body_and_its_sha256_in_hex() {
        let p = Payload::new(b"abc", UrlHints::default());
        assert_eq!(p.body.as_deref(), Some("abc"));
        assert_eq!(
            p.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(p.size, 3);
        let big = vec![b'x'; INLINE_LIMIT + 1];
        let p = Payload::new(&big, UrlHints::default());
        assert_eq!(p.body, None);
        assert_eq!(p.sha256, hex::encode(Sha256::digest(&big)));
    }
}
