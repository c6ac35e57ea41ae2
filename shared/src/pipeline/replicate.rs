//! The replication path: a digest arrived in a registry replica (or failed to). The arrival is
//! recorded on the image, and deployments that waited for that region are applied, once per
//! service; a failure is recorded and reported as a warning, and what waits keeps waiting.

use super::deployments::record_deployments;
use super::deps::{Deps, PipelineError};
use super::held::{apply_held, blocked_deployments};
use super::history::{Source, history_ops};
use super::receipt::{Receipt, pending};
use crate::model::event::{Action, ImageEvent, Timestamp};
use crate::model::records::{ImageStatus, ReceiptStatus, Record};
use crate::model::result::{EventOutcome, EventResult};
use crate::ports::store::keys;
use crate::ports::store::ops::{Op, Update};
use crate::ports::store::{Key, Store, StoreError};

pub(super) async fn replicate_one(
    deps: &Deps<'_>,
    event: &ImageEvent,
    received_at: &Timestamp,
) -> Result<EventResult, PipelineError> {
    let region = event.region.as_deref().unwrap_or_default();
    let failed = event.action == Action::ReplicationFailed;
    let waiting: Vec<_> = blocked_deployments(deps.store, event)
        .await?
        .into_iter()
        .filter(|b| b.waiting_region.as_deref() == Some(region))
        .collect();
    let receipt = deps.receipt(event, received_at);
    let outcome =
        record_replication(deps.store, &receipt, region, failed, !waiting.is_empty()).await?;
    let mut result = match outcome {
        ReplicationOutcome::Applied => EventResult::of(event, EventOutcome::Applied),
        ReplicationOutcome::Duplicate { pending: false } => {
            return Ok(EventResult::of(event, EventOutcome::Duplicate)
                .with_reason("event already applied: nothing changed"));
        }
        ReplicationOutcome::Duplicate { pending: true } => {
            EventResult::of(event, EventOutcome::Duplicate).with_reason(
                "event already recorded; the deployments waiting for it were not: applied now",
            )
        }
    };
    let digest = event.image.digest.as_ref().map_or("", |d| d.as_str());
    if failed {
        let why = event.reason.as_deref().unwrap_or("replication failed");
        tracing::warn!(image = %event.image, region, reason = why, "replication failed");
        result.warnings.push(format!(
            "replication of {digest} to {region} failed: {why}; deployments that require {region} keep waiting"
        ));
        return Ok(result);
    }
    if waiting.is_empty() {
        result.reason = Some(format!("{digest} arrived in {region}: recorded"));
        return Ok(result);
    }
    // A digest quarantined or deleted since keeps its deployments held: a release applies them.
    let presence = presence(
        deps.store,
        event.image.registry.as_str(),
        event.image.repository.as_str(),
        digest,
    )
    .await?;
    if let Some(status) = presence.status.filter(|s| *s != ImageStatus::Active) {
        result.warnings.push(format!(
            "{digest} arrived in {region} but is {}: its deployments stay held",
            status.as_str()
        ));
        record_deployments(deps.store, event, &[], &[], &Timestamp::now()).await?;
        return Ok(result);
    }
    result.reason = Some(format!(
        "{digest} arrived in {region}: applying the deployments that waited for it"
    ));
    apply_held(deps, event, &waiting, &presence.replicas, &mut result).await?;
    Ok(result)
}

/// Records that the event's digest arrived in `region`, and the registry the replica serves it
/// from (the event's replica, else the image's own): the first arrival is kept.
pub(super) fn arrived(r: &Receipt<'_>, digest: &str, region: &str) -> Op {
    let u = region_update(r, digest, region);
    // A replica the event names is recorded; otherwise the registry already recorded stays,
    // and a first arrival is the image's own registry.
    let u = match &r.event.replica_registry {
        Some(replica) => u.set("registry", replica.as_str()),
        None => u.set_if_absent("registry", r.event.image.registry.as_str()),
    };
    Op::Update(
        u.set_if_absent("arrived_at", r.event.occurred_at.as_str())
            .set_if_absent("arrival_event", r.by()),
    )
}

/// Records a failed replication to `region`: the last one, and how many there were.
fn failed_to_arrive(r: &Receipt<'_>, digest: &str, region: &str) -> Op {
    Op::Update(
        region_update(r, digest, region)
            .set("failed_at", r.event.occurred_at.as_str())
            .set("failure_event", r.by())
            .set(
                "failure_reason",
                r.event.reason.as_deref().unwrap_or("replication failed"),
            )
            .add("failures", 1),
    )
}

fn region_update(r: &Receipt<'_>, digest: &str, region: &str) -> Update {
    Update::new(Key::new(r.image_pk(), keys::region_sk(digest, region)))
        .set("type", "region")
        .set("digest", digest)
        .set("region", region)
}

/// What recording a replication did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationOutcome {
    Applied,
    /// Seen before; `pending` when its held deployments were not all applied then.
    Duplicate {
        pending: bool,
    },
}

/// Records a replication: the arrival (or the failure) on the image item, with the receipt, in
/// one transaction. `holds_waiting`: deployments wait for this arrival, so the receipt stays
/// `pending` until they are recorded.
pub async fn record_replication(
    store: &dyn Store,
    r: &Receipt<'_>,
    region: &str,
    failed: bool,
    holds_waiting: bool,
) -> Result<ReplicationOutcome, StoreError> {
    let status = if holds_waiting && !failed {
        ReceiptStatus::Pending
    } else {
        ReceiptStatus::Done
    };
    let mut ops = vec![r.put(status, "applied", r.event.reason.as_deref())];
    if status == ReceiptStatus::Done && !failed {
        // Nothing waits for it: its history entry is written now, without services.
        let source = Source::of(r.event, Some(r.received_at.as_str()));
        ops.extend(history_ops(r.event, &source, &[], r.received_at));
    }
    if let Some(key) = r.image_key() {
        ops.push(Op::Update(
            r.image_update(key)
                .set_if_absent("status", ImageStatus::Active.as_str()),
        ));
        let digest = r.digest();
        ops.push(if failed {
            failed_to_arrive(r, digest, region)
        } else {
            arrived(r, digest, region)
        });
    }
    match store.transact(ops).await? {
        Ok(()) => Ok(ReplicationOutcome::Applied),
        Err(c) => Ok(ReplicationOutcome::Duplicate {
            pending: pending(c.failed_at(0).flatten()),
        }),
    }
}

/// Where a digest is: the regions it has arrived in and its status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    pub regions: Vec<String>,
    /// The registries replicas serve the digest from, other than the image's own.
    pub replicas: Vec<String>,
    pub status: Option<ImageStatus>,
}

/// The image item and the digest's region items, read at once.
pub async fn presence(
    store: &dyn Store,
    registry: &str,
    repository: &str,
    digest: &str,
) -> Result<Presence, StoreError> {
    let pk = keys::image_pk(registry, repository);
    let image_key = Key::new(pk.clone(), keys::image_sk(digest));
    let regions_prefix = keys::regions_prefix(digest);
    let (image, regions) = tokio::join!(store.get(&image_key), store.query(&pk, &regions_prefix));
    let image = image?.and_then(|r| r.image()).unwrap_or_default();
    let arrivals: Vec<_> = regions?
        .into_iter()
        .filter_map(Record::region)
        .filter(|r| r.arrived_at.is_some())
        .collect();
    let mut replicas: Vec<String> = arrivals
        .iter()
        .filter_map(|r| r.registry.clone())
        .filter(|r| r != registry)
        .collect();
    replicas.sort();
    replicas.dedup();
    let mut arrived: Vec<String> = arrivals.into_iter().map(|r| r.region).collect();
    for legacy in image.legacy_regions {
        if !arrived.contains(&legacy) {
            arrived.push(legacy);
        }
    }
    Ok(Presence {
        regions: arrived,
        replicas,
        status: image.status,
    })
}
