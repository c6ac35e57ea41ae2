//! Replay: every receipt keeps the verified request it came from (inline up to `INLINE_LIMIT`,
//! otherwise its SHA-256 and size), so `imagehook replay` can re-drive an event through the
//! pipeline. Receipts make that idempotent: an applied event is a duplicate, one whose
//! deployments were never recorded (the sender gave up after a 503) gets them now.

use crate::model::event::{Parsed, Timestamp};
use crate::model::payload::{INLINE_LIMIT, Payload};
use crate::model::result::EventResult;
use crate::pipeline;
use crate::pipeline::deps::Deps;
use crate::ports::notifier::Notifier;
use crate::ports::store::keys;
use crate::providers;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no receipt {0}: give <provider>#<event id> as `imagehook state` lists receipts")]
    NoReceipt(String),
    #[error(
        "receipt {0} keeps no body to replay ({1}): it was over {INLINE_LIMIT} bytes, or recorded before receipts kept bodies"
    )]
    NoBody(String, String),
    #[error(transparent)]
    Store(#[from] crate::ports::store::StoreError),
    #[error("the kept body no longer parses: {0}")]
    Parse(#[from] providers::ParseError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::deps::PipelineError),
}

/// Re-drives the request behind receipt `<provider>#<event id>` through the functions that own
/// its events, without authentication (the body was verified when it arrived).
pub async fn replay(
    deps: &Deps<'_>,
    notifier: &Notifier,
    receipt_id: &str,
) -> Result<Vec<EventResult>, ReplayError> {
    let (provider, id) = receipt_id
        .split_once('#')
        .ok_or_else(|| ReplayError::NoReceipt(receipt_id.to_owned()))?;
    let receipt = deps
        .store
        .get(&keys::receipt(provider, id))
        .await?
        .and_then(|r| r.receipt())
        .ok_or_else(|| ReplayError::NoReceipt(receipt_id.to_owned()))?;
    let kept = receipt.payload.unwrap_or_default();
    let Some(body) = kept.body else {
        let what = match (kept.sha256, kept.size) {
            (Some(sha), Some(size)) => format!("{size} bytes, sha256 {sha}"),
            _ => "no payload attribute".to_owned(),
        };
        return Err(ReplayError::NoBody(receipt_id.to_owned(), what));
    };
    let hints = kept.hints;
    let received_at = Timestamp::now();
    let events = providers::parse_request(
        body.as_bytes(),
        &http::HeaderMap::new(),
        &hints,
        &received_at,
    )?;
    let payload = Payload::new(body.as_bytes(), hints);
    let deps = Deps {
        payload: Some(&payload),
        ..*deps
    };
    let mut out = Vec::new();
    for e in events {
        let function = match &e {
            Parsed::Image(e) => pipeline::function_for(e.action),
            Parsed::Ignored(_) | Parsed::Rejected(_) | Parsed::Handshake(_) => continue,
        };
        out.extend(pipeline::handle(&deps, function, vec![e], &received_at).await?);
    }
    pipeline::notices::send(notifier, &out).await;
    Ok(out)
}
