//! An event's receipt and what every record of one event shares (DESIGN §4).
//!
//! Every write of an action is one conditional transaction whose first item is the event's
//! receipt (put only if absent): a redelivered event cancels the whole transaction and changes
//! nothing. When another condition is refused, the old record that comes back with the
//! cancellation says why (the tag is newer, the digest is quarantined...), and the action writes
//! a narrower transaction with what still applies. No read happens on the push path.

use serde_json::{Map, json};

use crate::model::event::{ImageEvent, Timestamp};
use crate::model::records::{ReceiptStatus, Record};
use crate::ports::store::keys;
use crate::ports::store::ops::{Cancelled, Cond, Op, Update};
use crate::ports::store::{Key, StoreError};

/// Transactions are retried at most this often when what they depend on moved underneath.
pub(super) const MAX_ATTEMPTS: usize = 4;

/// Receipt, time and expiry shared by every record of one event.
pub struct Receipt<'a> {
    pub event: &'a ImageEvent,
    pub received_at: &'a Timestamp,
    pub expires_at: i64,
    /// The request the event came from, kept for `imagehook replay`.
    pub payload: Option<&'a crate::model::payload::Payload>,
}

impl Receipt<'_> {
    pub(super) fn key(&self) -> Key {
        keys::receipt(self.event.provider.as_str(), &self.event.id)
    }

    pub(super) fn by(&self) -> String {
        format!("{}#{}", self.event.provider, self.event.id)
    }

    pub(super) fn put(&self, status: ReceiptStatus, outcome: &str, reason: Option<&str>) -> Op {
        let e = self.event;
        let mut item = Map::new();
        item.insert("type".into(), json!("receipt"));
        item.insert("provider".into(), json!(e.provider.as_str()));
        item.insert("event_id".into(), json!(e.id));
        item.insert("action".into(), json!(e.action.as_str()));
        item.insert("image".into(), json!(e.image.to_string()));
        item.insert("occurred_at".into(), json!(e.occurred_at.as_str()));
        item.insert("received_at".into(), json!(self.received_at.as_str()));
        item.insert("expires_at".into(), json!(self.expires_at));
        item.insert("status".into(), json!(status.as_str()));
        item.insert("outcome".into(), json!(outcome));
        if let Some(p) = self.payload {
            item.insert("payload".into(), p.to_json());
        }
        if let Some(r) = reason {
            item.insert("reason".into(), json!(r));
        }
        Op::Put {
            key: self.key(),
            item,
            cond: Some(Cond::ItemAbsent),
        }
    }

    /// One lifecycle change of the event's digest, as an item of its own: a digest quarantined
    /// and released a thousand times has a thousand small items, not one that outgrows the
    /// store. Keyed by the event, so a redelivery writes the same key.
    pub(super) fn change(&self, digest: &str, change: &str, reason: Option<&str>) -> Op {
        let e = self.event;
        let by = self.by();
        let mut item = Map::new();
        item.insert("type".into(), json!("change"));
        item.insert("digest".into(), json!(digest));
        item.insert("change".into(), json!(change));
        item.insert("at".into(), json!(e.occurred_at.as_str()));
        item.insert("event".into(), json!(by));
        if let Some(r) = reason {
            item.insert("reason".into(), json!(r));
        }
        Op::Put {
            key: Key::new(
                self.image_pk(),
                keys::change_sk(digest, e.occurred_at.as_str(), &by),
            ),
            item,
            cond: None,
        }
    }

    /// The event's digest (empty when it names none: then there is no image item either).
    pub(super) fn digest(&self) -> &str {
        self.event.image.digest.as_ref().map_or("", |d| d.as_str())
    }

    pub(super) fn image_key(&self) -> Option<Key> {
        let img = &self.event.image;
        img.digest.as_ref().map(|d| {
            Key::new(
                keys::image_pk(img.registry.as_str(), img.repository.as_str()),
                keys::image_sk(d.as_str()),
            )
        })
    }

    pub(super) fn image_pk(&self) -> String {
        let img = &self.event.image;
        keys::image_pk(img.registry.as_str(), img.repository.as_str())
    }

    /// The identity attributes every image item carries, created on first sight.
    pub(super) fn image_update(&self, key: Key) -> Update {
        let img = &self.event.image;
        Update::new(key)
            .set("type", "image")
            .set("registry", img.registry.as_str())
            .set("repository", img.repository.as_str())
            .set_opt("digest", img.digest.as_ref().map(|d| d.as_str()))
            .set_if_absent("first_seen", self.event.occurred_at.as_str())
            .add("version", 1)
    }
}

/// Whether a receipt left by an earlier delivery still waits for its deployments.
pub(super) fn pending(old: Option<&Record>) -> bool {
    matches!(old, Some(Record::Receipt(r)) if r.status == ReceiptStatus::Pending)
}

/// A refused condition that none of the action's records explains: the store holds something
/// the pipeline never wrote.
pub(super) fn unexpected(c: &Cancelled) -> StoreError {
    StoreError::Corrupt(format!(
        "a condition failed that no record explains: {:?}",
        c.failed
    ))
}
