//! What each event writes, and how a refused condition is read: the record logic of DESIGN §4,
//! written once over the store port so that DynamoDB and the embedded store behave alike.
//!
//! Every write is one conditional transaction whose first item is the event's receipt (put only
//! if absent): a redelivered event cancels the whole transaction and changes nothing. When
//! another condition is refused, the old item that comes back with the cancellation says why
//! (the tag is newer, the digest is quarantined...), and a narrower transaction records what
//! still applies. No read happens on the push path.

use serde_json::{Map, Value, json};

use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::event::{ImageEvent, Timestamp};
use crate::model::rules::Target;
use crate::ports::store::keys;
use crate::ports::store::ops::{Cancelled, Cond, Op, Update};
use crate::ports::store::{Item, Key, RECEIPT_DONE, RECEIPT_PENDING, Store, StoreError};

/// Transactions are retried at most this often when what they depend on moved underneath.
const MAX_ATTEMPTS: usize = 4;
const CHUNK: usize = crate::ports::store::MAX_TRANSACTION_ITEMS - 1;

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

    pub(super) fn put(&self, status: &str, outcome: &str, reason: Option<&str>) -> Op {
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
        item.insert("status".into(), json!(status));
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

    fn history(&self, change: &str, reason: Option<&str>) -> Value {
        let mut h =
            json!({"at": self.event.occurred_at.as_str(), "change": change, "event": self.by()});
        if let Some(r) = reason {
            h["reason"] = json!(r);
        }
        h
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
pub(super) fn pending(old: Option<&Item>) -> bool {
    old.and_then(|i| i.get("status")).and_then(Value::as_str) == Some(RECEIPT_PENDING)
}

pub(super) fn str_of<'a>(item: Option<&'a Item>, attr: &str) -> Option<&'a str> {
    item.and_then(|i| i.get(attr)).and_then(Value::as_str)
}

// ---------------------------------------------------------------------------------------------
// Push
// ---------------------------------------------------------------------------------------------

/// What recording a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Recorded, and the tag (if any) now points at this digest.
    Applied,
    /// Recorded on the image, but the tag already points at a push at least this recent.
    Stale,
    /// Seen before: nothing changed. `pending` when the earlier delivery recorded the event but
    /// not its deployments, which must then be completed.
    Duplicate { pending: bool },
    /// Recorded, tag moved, but the digest may not be deployed (quarantined, or deleted after
    /// this push): the deployments are recorded as blocked and applied on release.
    Blocked { reason: String },
    /// Applied, and the digest's ACR quarantine lifted: with quarantine enabled, ACR sends the
    /// push of a quarantined image only once the image has been marked Passed.
    AppliedAcrPassed,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PushVariant {
    Normal,
    Stale,
    Blocked,
    AcrPassed,
}

/// The quarantine source ACR's own quarantine events record.
const ACR_SOURCE: &str = "acr";
const ACR_PASSED: &str = "ACR sent the push of a quarantined image: it was marked Passed";

fn push_ops(r: &Receipt<'_>, targets: &[Target], variant: PushVariant, reason: &str) -> Vec<Op> {
    let e = r.event;
    let t = e.occurred_at.as_str();
    let (status, outcome) = match variant {
        PushVariant::Normal | PushVariant::AcrPassed if !targets.is_empty() => {
            (RECEIPT_PENDING, "applied")
        }
        PushVariant::Normal | PushVariant::AcrPassed => (RECEIPT_DONE, "applied"),
        PushVariant::Stale => (RECEIPT_DONE, "stale"),
        PushVariant::Blocked => (RECEIPT_DONE, "blocked"),
    };
    let mut ops = vec![r.put(
        status,
        outcome,
        (variant == PushVariant::Blocked).then_some(reason),
    )];
    if let Some(key) = r.image_key() {
        let mut u = r
            .image_update(key)
            .set_if_absent("status", "active")
            .set_opt("media_type", e.media_type.as_deref())
            .set_opt("size", e.size)
            .add("push_count", 1);
        if let Some(tag) = &e.image.tag {
            u = u.add_to_set("tags", tag.as_str());
        }
        if let Some(region) = &e.region {
            u = super::replication::arrived(u, r, region);
        }
        if variant == PushVariant::Normal {
            // Active again unless quarantined, or deleted after this push was made.
            u = u
                .set("status", "active")
                .set("last_pushed_at", t)
                .when(Cond::And(vec![
                    Cond::Missing("quarantine_reason"),
                    Cond::Or(vec![
                        Cond::Missing("deleted_at"),
                        Cond::Ne("status", json!("deleted")),
                        Cond::Lt("deleted_at", json!(t)),
                    ]),
                ]));
            u.set_if_absent.retain(|(a, _)| *a != "status");
        }
        if variant == PushVariant::AcrPassed {
            u = u
                .set("status", "active")
                .set("last_pushed_at", t)
                .set("released_at", t)
                .remove("quarantine_reason")
                .remove("quarantine_source")
                .remove("quarantined_at")
                .append("history", r.history("released", Some(ACR_PASSED)));
            u.set_if_absent.retain(|(a, _)| *a != "status");
        }
        ops.push(Op::Update(u));
    }
    if let (Some(tag), true) = (&e.image.tag, variant != PushVariant::Stale) {
        let mut u = Update::new(Key::new(r.image_pk(), keys::tag_sk(tag.as_str())))
            .set("type", "tag")
            .set("registry", e.image.registry.as_str())
            .set("repository", e.image.repository.as_str())
            .set("tag", tag.as_str())
            .set("updated_at", t)
            .set("event_id", e.id.as_str())
            .copy("previous_digest", "digest", "")
            .add("version", 1)
            .when(Cond::Or(vec![
                Cond::Missing("updated_at"),
                Cond::Le("updated_at", json!(t)),
            ]));
        u = match &e.image.digest {
            Some(d) => u.set("digest", d.as_str()).remove("unpinned"),
            None => u.set("unpinned", true).remove("digest"),
        };
        ops.push(Op::Update(u));
    }
    if variant == PushVariant::Blocked {
        for target in targets {
            ops.push(blocked_op(r, target, reason, None));
            let dep = Deployment::new(target, &e.image, DeployOutcome::Blocked).with_reason(reason);
            let (key, item) = deployment_item(e, &dep, r.received_at);
            ops.push(Op::Put {
                key,
                item,
                cond: None,
            });
        }
    }
    ops
}

/// A held deployment of the event's digest to `target`: released by the quarantine function, or,
/// with `waiting_region`, applied when the digest arrives in that region.
pub(super) fn blocked_op(
    r: &Receipt<'_>,
    target: &Target,
    reason: &str,
    waiting_region: Option<&str>,
) -> Op {
    let e = r.event;
    let digest = e.image.digest.as_ref().map_or("", |d| d.as_str());
    let mut b = Map::new();
    b.insert("type".into(), json!("blocked"));
    b.insert("cluster".into(), json!(target.cluster));
    b.insert("service".into(), json!(target.service));
    b.insert("digest".into(), json!(digest));
    b.insert("image".into(), json!(e.image.deployable()));
    b.insert("event".into(), json!(r.by()));
    b.insert("blocked_at".into(), json!(r.received_at.as_str()));
    b.insert("reason".into(), json!(reason));
    for (k, v) in [
        ("tag", e.image.tag.as_ref().map(|t| t.to_string())),
        ("container", target.container.clone()),
        ("stage", target.stage.clone()),
        ("waiting_region", waiting_region.map(str::to_owned)),
    ] {
        if let Some(v) = v {
            b.insert(k.into(), json!(v));
        }
    }
    Op::Put {
        key: Key::new(
            r.image_pk(),
            keys::blocked_sk(digest, &target.cluster, &target.service),
        ),
        item: b,
        cond: None,
    }
}

/// Records a push: receipt, image and tag in one transaction (DESIGN §4).
pub async fn record_push(
    store: &dyn Store,
    r: &Receipt<'_>,
    targets: &[Target],
) -> Result<PushOutcome, StoreError> {
    let mut variant = PushVariant::Normal;
    let mut reason = String::new();
    for _ in 0..MAX_ATTEMPTS {
        let ops = push_ops(r, targets, variant, &reason);
        let tag_at = ops
            .iter()
            .position(|o| o.key().sk.starts_with(keys::TAG_PREFIX));
        let image_at = r.image_key().map(|_| 1);
        let cancelled = match store.transact(ops).await? {
            Ok(()) => {
                return Ok(match variant {
                    PushVariant::Normal => PushOutcome::Applied,
                    PushVariant::AcrPassed => PushOutcome::AppliedAcrPassed,
                    PushVariant::Stale => PushOutcome::Stale,
                    PushVariant::Blocked => PushOutcome::Blocked { reason },
                });
            }
            Err(c) => c,
        };
        if let Some(old) = cancelled.failed_at(0) {
            return Ok(PushOutcome::Duplicate {
                pending: pending(old),
            });
        }
        if tag_at.is_some_and(|i| cancelled.failed_at(i).is_some()) {
            variant = PushVariant::Stale;
            continue;
        }
        match image_at.and_then(|i| cancelled.failed_at(i)) {
            Some(old) => {
                let acr_quarantine = str_of(old, "quarantine_source") == Some(ACR_SOURCE)
                    && r.event.provider == crate::model::event::Provider::Acr;
                if acr_quarantine && variant == PushVariant::Normal {
                    variant = PushVariant::AcrPassed;
                } else {
                    reason = blocked_reason(old);
                    variant = PushVariant::Blocked;
                }
            }
            None => return Err(unexpected(&cancelled)),
        }
    }
    Err(StoreError::Corrupt(
        "push could not be recorded: conditions kept changing".into(),
    ))
}

fn blocked_reason(image: Option<&Item>) -> String {
    match str_of(image, "quarantine_reason") {
        Some(q) => format!("digest is quarantined: {q}"),
        None => format!(
            "digest was deleted at {}, after this push",
            str_of(image, "deleted_at").unwrap_or("an unknown time")
        ),
    }
}

fn unexpected(c: &Cancelled) -> StoreError {
    StoreError::Corrupt(format!(
        "a condition failed that no record explains: {:?}",
        c.failed
    ))
}

// ---------------------------------------------------------------------------------------------
// Deployments
// ---------------------------------------------------------------------------------------------

fn deployment_item(event: &ImageEvent, d: &Deployment, at: &Timestamp) -> (Key, Item) {
    let what = event
        .image
        .digest
        .as_ref()
        .map_or_else(|| event.image.to_string(), ToString::to_string);
    let mut item = Map::new();
    item.insert("type".into(), json!("deployment"));
    item.insert("cluster".into(), json!(d.cluster));
    item.insert("service".into(), json!(d.service));
    item.insert("outcome".into(), json!(d.outcome.as_str()));
    item.insert("to".into(), json!(d.image));
    item.insert(
        "event".into(),
        json!(format!("{}#{}", event.provider, event.id)),
    );
    item.insert("recorded_at".into(), json!(at.as_str()));
    for (k, v) in [
        ("task_definition", &d.task_definition),
        ("from_task_definition", &d.previous_task_definition),
        ("stage", &d.stage),
        ("reason", &d.reason),
        ("ecs_deployment_id", &d.ecs_deployment_id),
    ] {
        if let Some(v) = v {
            item.insert(k.into(), json!(v));
        }
    }
    let key = Key::new(
        keys::service_pk(&d.cluster, &d.service),
        keys::deployment_sk(event.occurred_at.as_str(), &what),
    );
    (key, item)
}

/// Records an event's deployments (and what a service now runs), removes the blocked entries
/// they settle, and marks the receipt done last, so `done` means everything is on record.
pub async fn record_deployments(
    store: &dyn Store,
    event: &ImageEvent,
    deployments: &[Deployment],
    settled: &[Key],
    at: &Timestamp,
) -> Result<(), StoreError> {
    let mut ops = Vec::new();
    for d in deployments {
        let (key, item) = deployment_item(event, d, at);
        if let Some(id) = &d.ecs_deployment_id {
            // State changes name ECS's deployment id: this points them at the record.
            let mut pointer = Map::new();
            pointer.insert("type".into(), json!("rollout"));
            pointer.insert("deployment_sk".into(), json!(key.sk));
            pointer.insert("image".into(), json!(d.image));
            if let Some(digest) = &event.image.digest {
                pointer.insert("digest".into(), json!(digest.as_str()));
            }
            ops.push(Op::Put {
                key: Key::new(key.pk.clone(), keys::rollout_sk(id)),
                item: pointer,
                cond: None,
            });
        }
        ops.push(Op::Put {
            key,
            item,
            cond: None,
        });
        if matches!(d.outcome, DeployOutcome::Updated | DeployOutcome::Unchanged) {
            let key = Key::new(
                keys::service_pk(&d.cluster, &d.service),
                keys::SERVICE_CURRENT,
            );
            let mut u = Update::new(key)
                .set("type", "service")
                .set("cluster", d.cluster.as_str())
                .set("service", d.service.as_str())
                .set("image", d.image.as_str())
                .set("updated_at", at.as_str())
                // What it ran before, so a rollback can be recorded as a return to it.
                .copy("previous_digest", "digest", "")
                .copy("previous_tag", "tag", "")
                .set("tag", event.image.tag.as_ref().map_or("", |t| t.as_str()))
                .set_opt("task_definition_arn", d.task_definition.as_deref())
                .add("version", 1);
            u = match &event.image.digest {
                // `running` feeds the index that answers "which services run this digest?".
                Some(digest) => u
                    .set("digest", digest.as_str())
                    .set("running", format!("{}@{digest}", event.image.name())),
                None => u.remove("digest").remove("running"),
            };
            ops.push(Op::Update(u));
        }
    }
    ops.extend(super::history::history_ops(event, deployments, at));
    for key in settled {
        ops.push(Op::Delete {
            key: key.clone(),
            cond: None,
        });
    }
    let receipt = Op::Update(
        Update::new(keys::receipt(event.provider.as_str(), &event.id))
            .set("status", RECEIPT_DONE)
            .set("deployed_at", at.as_str()),
    );
    let mut chunks: Vec<Vec<Op>> = ops.chunks(CHUNK).map(<[Op]>::to_vec).collect();
    match chunks.last_mut() {
        Some(last) => last.push(receipt),
        None => chunks.push(vec![receipt]),
    }
    for chunk in chunks {
        store.transact(chunk).await?.map_err(|c| unexpected(&c))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Delete
// ---------------------------------------------------------------------------------------------

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

/// The services whose CURRENT item says they run this digest, as `cluster/service`.
pub async fn services_running(
    store: &dyn Store,
    event: &ImageEvent,
) -> Result<Vec<String>, StoreError> {
    let Some(digest) = &event.image.digest else {
        return Ok(Vec::new());
    };
    let mut out: Vec<String> = store
        .running(&format!("{}@{digest}", event.image.name()))
        .await?
        .iter()
        .filter_map(|i| {
            Some(format!(
                "{}/{}",
                str_of(Some(i), "cluster")?,
                str_of(Some(i), "service")?
            ))
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
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
    let digest = r.event.image.digest.as_ref().map_or("", |d| d.as_str());
    for _ in 0..MAX_ATTEMPTS {
        let tags: Vec<String> = store
            .query(&r.image_pk(), keys::TAG_PREFIX)
            .await?
            .iter()
            .filter(|i| str_of(Some(i), "digest") == Some(digest))
            .filter_map(|i| str_of(Some(i), "tag").map(str::to_owned))
            .collect();
        let mut ops = vec![r.put(RECEIPT_DONE, "applied", None)];
        ops.push(Op::Update(
            r.image_update(image_key.clone())
                .set("status", "deleted")
                .set("deleted_at", t)
                .set("deleted_by", r.by())
                .set("services_at_delete", json!(services))
                .remove("quarantine_reason")
                .remove("quarantine_source")
                .remove("quarantined_at")
                .append("history", r.history("deleted", None))
                .when(Cond::Or(vec![
                    Cond::Missing("last_pushed_at"),
                    Cond::Le("last_pushed_at", json!(t)),
                ])),
        ));
        for tag in &tags {
            ops.push(Op::Delete {
                key: Key::new(r.image_pk(), keys::tag_sk(tag)),
                cond: Some(Cond::Eq("digest", json!(digest))),
            });
        }
        match store.transact(ops).await? {
            Ok(()) => {
                return Ok(DeleteOutcome::Applied {
                    removed_tags: tags,
                    services,
                    note: None,
                });
            }
            Err(c) if c.failed_at(0).is_some() => return Ok(DeleteOutcome::Duplicate),
            Err(c) if c.failed_at(1).is_some() => {
                let ops = vec![r.put(
                    RECEIPT_DONE,
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
            .and_then(|i| str_of(Some(&i), "digest").map(str::to_owned)),
    };
    let mut with_tag = true;
    let mut with_image = digest.is_some();
    for _ in 0..MAX_ATTEMPTS {
        let mut ops = vec![r.put(RECEIPT_DONE, "applied", None)];
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
                Update::new(key)
                    .delete_from_set("tags", tag)
                    .add("version", 1)
                    .append("history", r.history(&format!("untagged {tag}"), None))
                    .when(Cond::ItemPresent),
            ));
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

// ---------------------------------------------------------------------------------------------
// Quarantine and release
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineOutcome {
    /// Quarantined (or released). `services` run the digest now.
    Applied {
        services: Vec<String>,
    },
    /// A release for a digest that is not quarantined: recorded, nothing changed.
    NotQuarantined,
    /// Older than the last quarantine change of this digest.
    Stale,
    Duplicate {
        pending: bool,
    },
}

/// Quarantines a digest: nothing deploys it until it is released.
pub async fn record_quarantine(
    store: &dyn Store,
    r: &Receipt<'_>,
    reason: &str,
    source: &str,
) -> Result<QuarantineOutcome, StoreError> {
    let services = services_running(store, r.event).await?;
    let Some(key) = r.image_key() else {
        return Err(StoreError::Corrupt("a quarantine without a digest".into()));
    };
    let t = r.event.occurred_at.as_str();
    let ops = vec![
        r.put(RECEIPT_DONE, "applied", Some(reason)),
        Op::Update(
            r.image_update(key)
                .set("status", "quarantined")
                .set("quarantine_reason", reason)
                .set("quarantine_source", source)
                .set("quarantined_at", t)
                .append("history", r.history("quarantined", Some(reason)))
                .when(Cond::Or(vec![
                    Cond::Missing("released_at"),
                    Cond::Le("released_at", json!(t)),
                ])),
        ),
    ];
    match store.transact(ops).await? {
        Ok(()) => Ok(QuarantineOutcome::Applied { services }),
        Err(c) if c.failed_at(0).is_some() => Ok(QuarantineOutcome::Duplicate { pending: false }),
        Err(_) => stale_receipt(store, r, "released after this scan or quarantine was made").await,
    }
}

async fn stale_receipt(
    store: &dyn Store,
    r: &Receipt<'_>,
    reason: &str,
) -> Result<QuarantineOutcome, StoreError> {
    Ok(
        match store
            .transact(vec![r.put(RECEIPT_DONE, "stale", Some(reason))])
            .await?
        {
            Ok(()) => QuarantineOutcome::Stale,
            Err(c) => QuarantineOutcome::Duplicate {
                pending: pending(c.failed_at(0).flatten()),
            },
        },
    )
}

/// Releases a quarantined digest. `pending` writes the receipt pending because blocked
/// deployments wait for it: they are recorded (and the receipt marked done) afterwards.
pub async fn record_release(
    store: &dyn Store,
    r: &Receipt<'_>,
    reason: &str,
    pending_deploys: bool,
) -> Result<QuarantineOutcome, StoreError> {
    let Some(key) = r.image_key() else {
        return Err(StoreError::Corrupt("a release without a digest".into()));
    };
    let t = r.event.occurred_at.as_str();
    let status = if pending_deploys {
        RECEIPT_PENDING
    } else {
        RECEIPT_DONE
    };
    let ops = vec![
        r.put(status, "applied", Some(reason)),
        Op::Update(
            r.image_update(key)
                .set("status", "active")
                .set("released_at", t)
                .remove("quarantine_reason")
                .remove("quarantine_source")
                .remove("quarantined_at")
                .append("history", r.history("released", Some(reason)))
                .when(Cond::And(vec![
                    Cond::Present("quarantine_reason"),
                    Cond::Or(vec![
                        Cond::Missing("quarantined_at"),
                        Cond::Le("quarantined_at", json!(t)),
                    ]),
                ])),
        ),
    ];
    match store.transact(ops).await? {
        Ok(()) => Ok(QuarantineOutcome::Applied {
            services: Vec::new(),
        }),
        Err(c) => match c.failed_at(0) {
            Some(old) => Ok(QuarantineOutcome::Duplicate {
                pending: pending(old),
            }),
            None if str_of(c.failed_at(1).flatten(), "quarantine_reason").is_none() => {
                let ops = vec![r.put(
                    RECEIPT_DONE,
                    "applied",
                    Some("not quarantined: nothing to release"),
                )];
                Ok(match store.transact(ops).await? {
                    Ok(()) => QuarantineOutcome::NotQuarantined,
                    Err(c) => QuarantineOutcome::Duplicate {
                        pending: pending(c.failed_at(0).flatten()),
                    },
                })
            }
            None => stale_receipt(store, r, "quarantined again after this release was made").await,
        },
    }
}

/// A deployment held back while the digest was quarantined.
#[derive(Debug, Clone)]
pub struct Blocked {
    pub key: Key,
    pub target: Target,
    pub tag: Option<String>,
    /// Held until the digest arrives in this region (a rule's `require_region`), not for a
    /// quarantine.
    pub waiting_region: Option<String>,
}

/// The blocked deployments of a digest, one per service.
pub async fn blocked_deployments(
    store: &dyn Store,
    event: &ImageEvent,
) -> Result<Vec<Blocked>, StoreError> {
    let Some(digest) = &event.image.digest else {
        return Ok(Vec::new());
    };
    let pk = keys::image_pk(
        event.image.registry.as_str(),
        event.image.repository.as_str(),
    );
    Ok(store
        .query(&pk, &keys::blocked_prefix(digest.as_str()))
        .await?
        .into_iter()
        .filter_map(|i| {
            let key = Key::new(str_of(Some(&i), keys::PK)?, str_of(Some(&i), keys::SK)?);
            Some(Blocked {
                target: Target {
                    cluster: str_of(Some(&i), "cluster")?.to_owned(),
                    service: str_of(Some(&i), "service")?.to_owned(),
                    container: str_of(Some(&i), "container").map(str::to_owned),
                    stage: str_of(Some(&i), "stage").map(str::to_owned),
                    // The policy is the rule's, looked up again when the deployment is applied.
                    policy: Default::default(),
                    last_deployed: None,
                    require_region: None,
                },
                tag: str_of(Some(&i), "tag").map(str::to_owned),
                waiting_region: str_of(Some(&i), "waiting_region").map(str::to_owned),
                key,
            })
        })
        .collect())
}

/// Where a tag points now (`None`: no such tag, or unpinned).
pub async fn tag_digest(
    store: &dyn Store,
    event: &ImageEvent,
    tag: &str,
) -> Result<Option<String>, StoreError> {
    let pk = keys::image_pk(
        event.image.registry.as_str(),
        event.image.repository.as_str(),
    );
    Ok(store
        .get(&Key::new(pk, keys::tag_sk(tag)))
        .await?
        .and_then(|i| str_of(Some(&i), "digest").map(str::to_owned)))
}
