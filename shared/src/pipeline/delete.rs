//! The delete path: a tombstone for a deleted digest (history kept), or a removed tag, and a
//! warning naming every service that still runs a deleted digest. Nothing is rolled back.

use serde_json::json;

use super::deployments::services_running;
use super::deps::{Deps, PipelineError};
use super::receipt::{MAX_ATTEMPTS, Receipt};
use crate::model::event::{ImageEvent, Timestamp};
use crate::model::records::{ImageStatus, ReceiptStatus};
use crate::model::result::{EventOutcome, EventResult};
use crate::ports::store::keys;
use crate::ports::store::ops::{Cond, Op, Update};
use crate::ports::store::{Key, MAX_TRANSACTION_ITEMS, Store, StoreError};

pub(super) async fn delete_one(
    deps: &Deps<'_>,
    event: &ImageEvent,
    received_at: &Timestamp,
) -> Result<EventResult, PipelineError> {
    let receipt = deps.receipt(event, received_at);
    Ok(match record_delete(deps.store, &receipt).await? {
        DeleteOutcome::Duplicate => EventResult::of(event, EventOutcome::Duplicate)
            .with_reason("event already applied: nothing changed"),
        DeleteOutcome::Stale => EventResult::of(event, EventOutcome::Stale)
            .with_reason("the digest was pushed again after this delete: left active"),
        DeleteOutcome::Applied {
            removed_tags,
            services,
            note,
        } => {
            let what = match &event.image.tag {
                Some(t) => format!("tag {t} removed"),
                None => "digest marked deleted (tombstone kept)".to_owned(),
            };
            let reason = match (note, removed_tags.is_empty() || event.image.tag.is_some()) {
                (Some(n), _) => n,
                (None, true) => what,
                (None, false) => format!("{what}; tags removed: {}", removed_tags.join(", ")),
            };
            let mut result = EventResult::of(event, EventOutcome::Applied).with_reason(reason);
            for service in services {
                tracing::warn!(
                    service = %service,
                    image = %event.image,
                    "a running service uses a deleted digest"
                );
                result.warnings.push(format!(
                    "service {service} runs {}, which was deleted: its next scale-out or task replacement will fail to pull it",
                    event.image.deployable()
                ));
                result.running_services.push(service);
            }
            result
        }
    })
}

/// What recording a delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Recorded. `removed_tags` are the tag items removed; `services` run the deleted digest.
    Applied {
        removed_tags: Vec<String>,
        services: Vec<String>,
        note: Option<String>,
    },
    /// The digest was pushed again after this delete was made: nothing removed.
    Stale,
    Duplicate,
}

/// How many tag removals ride in the delete's own transaction, beside its receipt, the image
/// and the change (DynamoDB takes 100 items in one).
const TAGS_IN_TRANSACTION: usize = MAX_TRANSACTION_ITEMS - 3;

/// Removes the tags beyond what one transaction holds, before it: each only if it still points
/// at the digest and was set no later than the delete (a tag pushed again since stays, as it
/// would for a delete that arrived on time). A crash after this leaves the receipt unwritten,
/// so the redelivery finds fewer tags and finishes. Returns the tags removed.
async fn remove_older_tags(
    store: &dyn Store,
    r: &Receipt<'_>,
    digest: &str,
    tags: Vec<String>,
) -> Result<Vec<String>, StoreError> {
    let t = r.event.occurred_at.as_str();
    let delete = |tag: &str| Op::Delete {
        key: Key::new(r.image_pk(), keys::tag_sk(tag)),
        cond: Some(Cond::And(vec![
            Cond::Eq("digest", json!(digest)),
            Cond::Or(vec![
                Cond::Missing("updated_at"),
                Cond::Le("updated_at", json!(t)),
            ]),
        ])),
    };
    let mut removed = Vec::with_capacity(tags.len());
    for chunk in tags.chunks(MAX_TRANSACTION_ITEMS) {
        if store
            .transact(chunk.iter().map(|tag| delete(tag)).collect())
            .await?
            .is_ok()
        {
            removed.extend_from_slice(chunk);
            continue;
        }
        // One of them moved or was pushed again: the others one at a time.
        for tag in chunk {
            if store.transact(vec![delete(tag)]).await?.is_ok() {
                removed.push(tag.clone());
            }
        }
    }
    Ok(removed)
}

/// A delete by digest leaves a tombstone (history kept) and removes the tags that point at it;
/// a delete by tag removes that tag and takes it off its image.
pub async fn record_delete(
    store: &dyn Store,
    r: &Receipt<'_>,
) -> Result<DeleteOutcome, StoreError> {
    if r.event.image.tag.is_some() {
        return delete_tag(store, r).await;
    }
    let services = services_running(store, r.event).await?;
    let t = r.event.occurred_at.as_str();
    let Some(image_key) = r.image_key() else {
        return Err(StoreError::Corrupt(
            "a delete with neither tag nor digest".into(),
        ));
    };
    let digest = r.digest();
    let mut removed_first = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let mut tags: Vec<String> = store
            .query(&r.image_pk(), keys::TAG_PREFIX)
            .await?
            .into_iter()
            .filter_map(|r| r.tag())
            .filter(|t| t.digest.as_deref() == Some(digest))
            .map(|t| t.tag)
            .collect();
        if tags.len() > TAGS_IN_TRANSACTION {
            let more = tags.split_off(TAGS_IN_TRANSACTION);
            removed_first.extend(remove_older_tags(store, r, digest, more).await?);
        }
        let mut ops = vec![r.put(ReceiptStatus::Done, "applied", None)];
        ops.push(Op::Update(
            r.image_update(image_key.clone())
                .set("status", ImageStatus::Deleted.as_str())
                .set("deleted_at", t)
                .set("deleted_by", r.by())
                .set("services_at_delete", json!(services))
                .remove("quarantine_reason")
                .remove("quarantine_source")
                .remove("quarantined_at")
                // A deleted digest is held by nothing; a release read before this delete
                // must not write its view of the holds back.
                .set("holds", json!({}))
                .add("holds_version", 1)
                .when(Cond::Or(vec![
                    Cond::Missing("last_pushed_at"),
                    Cond::Le("last_pushed_at", json!(t)),
                ])),
        ));
        ops.push(r.change(digest, "deleted", None));
        for tag in &tags {
            ops.push(Op::Delete {
                key: Key::new(r.image_pk(), keys::tag_sk(tag)),
                cond: Some(Cond::Eq("digest", json!(digest))),
            });
        }
        match store.transact(ops).await? {
            Ok(()) => {
                removed_first.extend(tags);
                removed_first.sort();
                removed_first.dedup();
                return Ok(DeleteOutcome::Applied {
                    removed_tags: removed_first,
                    services,
                    note: None,
                });
            }
            Err(c) if c.failed_at(0).is_some() => return Ok(DeleteOutcome::Duplicate),
            Err(c) if c.failed_at(1).is_some() => {
                let ops = vec![r.put(
                    ReceiptStatus::Done,
                    "stale",
                    Some("pushed again after this delete"),
                )];
                return Ok(match store.transact(ops).await? {
                    Ok(()) => DeleteOutcome::Stale,
                    Err(_) => DeleteOutcome::Duplicate,
                });
            }
            // A tag moved between the query and the write: look again.
            Err(_) => continue,
        }
    }
    Err(StoreError::Corrupt(
        "delete could not be recorded: tags kept moving".into(),
    ))
}

async fn delete_tag(store: &dyn Store, r: &Receipt<'_>) -> Result<DeleteOutcome, StoreError> {
    let tag = r.event.image.tag.as_ref().map_or("", |t| t.as_str());
    let tag_key = Key::new(r.image_pk(), keys::tag_sk(tag));
    // Which digest the tag named: the event's, or the one the store has for it.
    let digest = match &r.event.image.digest {
        Some(d) => Some(d.to_string()),
        None => store
            .get(&tag_key)
            .await?
            .and_then(|r| r.tag())
            .and_then(|t| t.digest),
    };
    let mut with_tag = true;
    let mut with_image = digest.is_some();
    for _ in 0..MAX_ATTEMPTS {
        let mut ops = vec![r.put(ReceiptStatus::Done, "applied", None)];
        if with_tag {
            ops.push(Op::Delete {
                key: tag_key.clone(),
                cond: Some(match &digest {
                    Some(d) => Cond::Eq("digest", json!(d)),
                    None => Cond::ItemPresent,
                }),
            });
        }
        let image_at = ops.len();
        if let (Some(d), true) = (&digest, with_image) {
            let key = Key::new(r.image_pk(), keys::image_sk(d));
            ops.push(Op::Update(
                // Items of earlier versions list their tags on the image item.
                Update::new(key)
                    .delete_from_set("tags", tag)
                    .add("version", 1)
                    .when(Cond::ItemPresent),
            ));
            ops.push(Op::Delete {
                key: Key::new(r.image_pk(), keys::image_tag_sk(d, tag)),
                cond: None,
            });
            ops.push(r.change(d, &format!("untagged {tag}"), None));
        }
        match store.transact(ops).await? {
            Ok(()) => {
                let note = (!with_tag)
                    .then(|| format!("tag {tag} no longer points at this digest: left in place"));
                let removed_tags = if with_tag {
                    vec![tag.to_owned()]
                } else {
                    Vec::new()
                };
                return Ok(DeleteOutcome::Applied {
                    removed_tags,
                    services: Vec::new(),
                    note,
                });
            }
            Err(c) if c.failed_at(0).is_some() => return Ok(DeleteOutcome::Duplicate),
            Err(c) => {
                if with_tag && c.failed_at(1).is_some() {
                    with_tag = false;
                }
                if c.failed_at(image_at).is_some() {
                    with_image = false;
                }
            }
        }
    }
    Err(StoreError::Corrupt(
        "tag delete could not be recorded".into(),
    ))
}
