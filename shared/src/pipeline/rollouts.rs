//! What ECS deployment state changes write: the state on the deployment item imagehook recorded
//! when it started the rollout, and, for a failed one, the digest in the service's
//! `failed_digests`, which keeps force and newer-only rules from rolling it out there again.

use serde_json::{Map, json};

use super::ledger::str_of;
use crate::model::ecs_outcome::{EcsOutcome, EcsOutcomeState};
use crate::ports::store::keys;
use crate::ports::store::ops::{Cond, Op, Update};
use crate::ports::store::{Key, RECEIPT_DONE, Store, StoreError};

/// What recording a state change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutOutcome {
    /// The deployment item now has this state. `digest` is what the rollout deployed.
    Recorded {
        digest: Option<String>,
    },
    /// The deployment was not started by imagehook (or its record expired): only the receipt
    /// was written.
    NotOurs,
    /// An earlier change already settled the deployment (completed or failed): kept.
    Settled,
    Duplicate,
}

impl RolloutOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Recorded { .. } => "recorded",
            Self::NotOurs => "not-ours",
            Self::Settled => "settled",
            Self::Duplicate => "duplicate",
        }
    }
}

fn receipt(c: &EcsOutcome, outcome: &str, received_at: &str, expires_at: i64) -> Op {
    let mut item = Map::new();
    item.insert("type".into(), json!("receipt"));
    item.insert("provider".into(), json!("ecs"));
    item.insert("event_id".into(), json!(c.event_id));
    item.insert(
        "action".into(),
        json!(format!("rollout-{}", c.state.as_str())),
    );
    item.insert(
        "service".into(),
        json!(format!("{}/{}", c.cluster, c.service)),
    );
    item.insert("deployment_id".into(), json!(c.deployment_id));
    item.insert("occurred_at".into(), json!(c.at.as_str()));
    item.insert("received_at".into(), json!(received_at));
    item.insert("expires_at".into(), json!(expires_at));
    item.insert("status".into(), json!(RECEIPT_DONE));
    item.insert("outcome".into(), json!(outcome));
    Op::Put {
        key: keys::receipt("ecs", &c.event_id),
        item,
        cond: Some(Cond::ItemAbsent),
    }
}

/// Records one state change, once: a redelivered change is a duplicate, and a late
/// `in-progress` never overwrites `completed` or `failed`.
pub async fn record_rollout(
    store: &dyn Store,
    c: &EcsOutcome,
    received_at: &str,
    expires_at: i64,
) -> Result<RolloutOutcome, StoreError> {
    let svc = keys::service_pk(&c.cluster, &c.service);
    let pointer = store
        .get(&Key::new(svc.clone(), keys::rollout_sk(&c.deployment_id)))
        .await?;
    let Some(pointer) = pointer else {
        return receipt_only(store, c, RolloutOutcome::NotOurs, received_at, expires_at).await;
    };
    let (Some(dep_sk), digest) = (
        str_of(Some(&pointer), "deployment_sk"),
        str_of(Some(&pointer), "digest").map(str::to_owned),
    ) else {
        return receipt_only(store, c, RolloutOutcome::NotOurs, received_at, expires_at).await;
    };

    let state_cond = if c.state.is_final() {
        Cond::Or(vec![
            Cond::Missing("state"),
            Cond::Eq("state", json!(EcsOutcomeState::InProgress.as_str())),
        ])
    } else {
        Cond::Missing("state")
    };
    let mut ops = vec![
        receipt(c, "recorded", received_at, expires_at),
        Op::Update(
            Update::new(Key::new(svc.clone(), dep_sk))
                .set("state", c.state.as_str())
                .set("state_at", c.at.as_str())
                .set("state_reason", c.reason.as_str())
                .set("circuit_breaker", c.circuit_breaker)
                .when(Cond::And(vec![Cond::ItemPresent, state_cond])),
        ),
    ];
    if let (EcsOutcomeState::Failed, Some(digest)) = (c.state, &digest) {
        ops.push(Op::Update(
            Update::new(Key::new(svc.clone(), keys::SERVICE_CURRENT))
                .set("type", "service")
                .set("cluster", c.cluster.as_str())
                .set("service", c.service.as_str())
                .add_to_set("failed_digests", digest.as_str())
                .set(
                    "last_failure",
                    json!({"digest": digest, "at": c.at.as_str(),
                    "deployment_id": c.deployment_id, "reason": c.reason}),
                ),
        ));
    }
    match store.transact(ops).await? {
        Ok(()) => {}
        Err(cancelled) if cancelled.failed.iter().any(|(i, _)| *i == 0) => {
            return Ok(RolloutOutcome::Duplicate);
        }
        Err(_) => {
            return receipt_only(store, c, RolloutOutcome::Settled, received_at, expires_at).await;
        }
    }
    if c.state == EcsOutcomeState::Failed
        && let Some(digest) = &digest
    {
        // The circuit breaker returns the service to what it ran before: the record says so
        // (a newer-only rule then compares with that version), and the failed digest leaves
        // the running index, so deleting it does not warn about this service. Only if
        // nothing newer moved the service since.
        let u = Update::new(Key::new(svc, keys::SERVICE_CURRENT))
            .set("rolled_back_from", digest.as_str())
            .set("rolled_back_at", c.at.as_str())
            .copy("digest", "previous_digest", "")
            .copy("tag", "previous_tag", "")
            .remove("running")
            .when(Cond::Eq("digest", json!(digest)));
        // A refused condition means a newer deployment already moved the service on.
        let _ = store.transact(vec![Op::Update(u)]).await?;
    }
    Ok(RolloutOutcome::Recorded { digest })
}

async fn receipt_only(
    store: &dyn Store,
    c: &EcsOutcome,
    outcome: RolloutOutcome,
    received_at: &str,
    expires_at: i64,
) -> Result<RolloutOutcome, StoreError> {
    match store
        .transact(vec![receipt(c, outcome.as_str(), received_at, expires_at)])
        .await?
    {
        Ok(()) => Ok(outcome),
        Err(_) => Ok(RolloutOutcome::Duplicate),
    }
}

/// What imagehook knows of a service: the digest and tag it last deployed there, and the
/// digests whose rollout there failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRecord {
    pub digest: Option<String>,
    pub tag: Option<String>,
    pub failed_digests: Vec<String>,
}

pub async fn service_record(
    store: &dyn Store,
    cluster: &str,
    service: &str,
) -> Result<ServiceRecord, StoreError> {
    let item = store
        .get(&Key::new(
            keys::service_pk(cluster, service),
            keys::SERVICE_CURRENT,
        ))
        .await?;
    let item = item.as_ref();
    // An empty value is "none": DynamoDB updates copy "" where there was nothing.
    let non_empty = |a: &str| str_of(item, a).filter(|v| !v.is_empty()).map(str::to_owned);
    Ok(ServiceRecord {
        digest: non_empty("digest"),
        tag: non_empty("tag"),
        failed_digests: crate::ports::store::strings(item.and_then(|i| i.get("failed_digests"))),
    })
}
