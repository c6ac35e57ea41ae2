//! Where each digest has arrived: the regions (registry replicas) that hold it, when it arrived
//! there, and the replications that failed. Deployments whose rule requires a region wait, held
//! like a quarantine, until the digest arrives there.

use serde_json::json;

use super::ledger::{Receipt, blocked_op, pending, str_of};
use crate::model::rules::Target;
use crate::ports::store::keys;
use crate::ports::store::ops::{Op, Update};
use crate::ports::store::{Item, RECEIPT_DONE, RECEIPT_PENDING, Store, StoreError};

/// Adds an arrival in `region` to an image update.
pub(super) fn arrived(u: Update, r: &Receipt<'_>, region: &str) -> Update {
    u.add_to_set("regions", region).append(
        "region_arrivals",
        json!({"region": region, "at": r.event.occurred_at.as_str(), "event": r.by()}),
    )
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
        RECEIPT_PENDING
    } else {
        RECEIPT_DONE
    };
    let mut ops = vec![r.put(status, "applied", r.event.reason.as_deref())];
    if let Some(key) = r.image_key() {
        let u = r.image_update(key).set_if_absent("status", "active");
        let u = if failed {
            u.append(
                "replication_failures",
                json!({"region": region, "at": r.event.occurred_at.as_str(), "event": r.by(),
                       "reason": r.event.reason.as_deref().unwrap_or("replication failed")}),
            )
        } else {
            arrived(u, r, region)
        };
        ops.push(Op::Update(u));
    }
    match store.transact(ops).await? {
        Ok(()) => Ok(ReplicationOutcome::Applied),
        Err(c) => Ok(ReplicationOutcome::Duplicate {
            pending: pending(c.failed_at(0).flatten()),
        }),
    }
}

/// Holds deployments until the digest arrives in their region.
pub async fn hold(
    store: &dyn Store,
    r: &Receipt<'_>,
    held: &[(Target, String)],
) -> Result<(), StoreError> {
    if held.is_empty() {
        return Ok(());
    }
    let ops = held
        .iter()
        .map(|(t, region)| blocked_op(r, t, &not_yet_replicated(region), Some(region.as_str())))
        .collect();
    store
        .transact(ops)
        .await?
        .map_err(|_| StoreError::Corrupt("unconditional puts were refused".into()))
}

pub fn not_yet_replicated(region: &str) -> String {
    format!("not yet replicated to {region}: deployed when the digest arrives there")
}

/// What the image item says about a digest: the regions it is in and its status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    pub regions: Vec<String>,
    pub status: Option<String>,
}

pub async fn presence(
    store: &dyn Store,
    registry: &str,
    repository: &str,
    digest: &str,
) -> Result<Presence, StoreError> {
    let item: Option<Item> = store
        .get(&crate::ports::store::Key::new(
            keys::image_pk(registry, repository),
            keys::image_sk(digest),
        ))
        .await?;
    Ok(Presence {
        regions: crate::ports::store::strings(item.as_ref().and_then(|i| i.get("regions"))),
        status: str_of(item.as_ref(), "status").map(str::to_owned),
    })
}
