//! Which delivery of a body without an id or a time is a retry. Such an event is identified by
//! its content, and the same body comes again both when a sender retries and when a CI job
//! pushes an image a second time (`latest` at A, then B, then A again). A content id is a
//! redelivery only within `REDELIVERY_WINDOW` of the first, and never once the tag it names
//! has been moved by another event since.

use crate::model::event::{Action, ImageEvent, Timestamp, content_id};
use crate::ports::store::{Key, Store, StoreError, keys};

/// How long the same body counts as a retry of the first (senders retry within seconds to
/// minutes: EventBridge's backoff, a registry's, `curl --retry`).
pub const REDELIVERY_WINDOW_SECONDS: i64 = 300;

/// Gives a content-identified event the id it is recorded under: the id of a receipt of the
/// same body from this window or the previous one when it is a retry, else a new one. The ids
/// are deterministic, so concurrent retries still meet at one receipt.
pub async fn settle(
    store: &dyn Store,
    event: &mut ImageEvent,
    received_at: &Timestamp,
) -> Result<(), StoreError> {
    if !event.identified_by_content {
        return Ok(());
    }
    let base = event.id.clone();
    let window = received_at
        .unix_seconds()
        .div_euclid(REDELIVERY_WINDOW_SECONDS);
    let current = format!("{base}@{window}");
    let previous = format!("{base}@{}", window - 1);
    let provider = event.provider.as_str();
    let (now_key, before_key) = (
        keys::receipt(provider, &current),
        keys::receipt(provider, &previous),
    );
    let (now, before) = tokio::join!(store.get(&now_key), store.get(&before_key));
    let earlier = match (now?, before?) {
        (Some(_), _) => current.clone(),
        (None, Some(_)) => previous,
        (None, None) => {
            event.id = current;
            return Ok(());
        }
    };
    event.id = match moved_since(store, event, &base).await? {
        // Deterministic in what moved the tag: retries of this push meet at one id.
        Some(mover) => format!("{current}@after:{}", &content_id(&[&mover])[7..23]),
        None => earlier,
    };
    Ok(())
}

/// The event that moved the push's tag since a delivery of this body did, if another did.
async fn moved_since(
    store: &dyn Store,
    event: &ImageEvent,
    base: &str,
) -> Result<Option<String>, StoreError> {
    let (Action::Push, Some(tag)) = (event.action, &event.image.tag) else {
        return Ok(None);
    };
    let key = Key::new(
        keys::image_pk(
            event.image.registry.as_str(),
            event.image.repository.as_str(),
        ),
        keys::tag_sk(tag.as_str()),
    );
    Ok(store
        .get(&key)
        .await?
        .and_then(|r| r.tag())
        .and_then(|t| t.event_id)
        .filter(|id| !id.starts_with(base)))
}
