//! The outcomes path: ECS deployment state changes -> the state of the deployments imagehook
//! started, and failed digests marked per service.

use serde_json::{Map, Value, json};

use super::deps::SECONDS_PER_DAY;
use crate::model::ecs_outcome::{EcsOutcome, EcsOutcomeState};
use crate::model::event::Timestamp;
use crate::model::records::ReceiptStatus;
use crate::model::reference::ImageRef;
use crate::ports::store::keys;
use crate::ports::store::ops::{Cond, Op, Update};
use crate::ports::store::{Key, Store, StoreError};

/// Handles one EventBridge event. An event that is not a deployment state change is answered
/// `rejected` rather than failed: EventBridge would retry a failure, and no retry can fix it. A
/// store fault is an error, so the retry comes.
pub async fn handle(
    store: &dyn Store,
    body: &[u8],
    receipt_ttl_days: u32,
) -> Result<Value, StoreError> {
    let change = match EcsOutcome::parse(body) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "event rejected");
            return Ok(json!({"outcome": "rejected", "error": e.to_string()}));
        }
    };
    let now = Timestamp::now();
    let expires_at = now.unix_seconds() + i64::from(receipt_ttl_days) * SECONDS_PER_DAY;
    let outcome = record_outcome(store, &change, now.as_str(), expires_at).await?;
    let mut out = json!({
        "outcome": outcome.as_str(),
        "cluster": change.cluster,
        "service": change.service,
        "deployment_id": change.deployment_id,
        "state": change.state.as_str(),
        "circuit_breaker": change.circuit_breaker,
        "reason": change.reason,
    });
    if let Recording::Recorded { digest, image } = &outcome {
        if let Some(d) = digest {
            out["digest"] = json!(d);
        }
        if let Some(i) = image {
            out["image"] = json!(i);
        }
    }
    let service = format!("{}/{}", change.cluster, change.service);
    match (&outcome, change.state) {
        (Recording::Recorded { digest, .. }, EcsOutcomeState::Failed) => {
            tracing::error!(
                service = %service,
                deployment_id = %change.deployment_id,
                digest = digest.as_deref().unwrap_or(""),
                reason = %change.reason,
                "rollout failed: the digest is marked failed for this service"
            );
        }
        _ => tracing::info!(
            service = %service,
            deployment_id = %change.deployment_id,
            state = change.state.as_str(),
            outcome = outcome.as_str(),
            "deployment state change"
        ),
    }
    Ok(out)
}

/// The state an answer of [`handle`] recorded: none for a duplicate, a settled deployment, one
/// that is not imagehook's, or a rejected event.
pub fn recorded_state(answer: &Value) -> Option<&str> {
    let recorded = Recording::Recorded {
        digest: None,
        image: None,
    }
    .as_str();
    (answer.get("outcome")?.as_str()? == recorded)
        .then(|| answer.get("state")?.as_str())
        .flatten()
}

/// What recording a state change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recording {
    /// The deployment item now has this state. `digest` is what the rollout deployed, `image`
    /// the reference it deployed (repository included).
    Recorded {
        digest: Option<String>,
        image: Option<String>,
    },
    /// The deployment was not started by imagehook (or its record expired): only the receipt
    /// was written.
    NotOurs,
    /// An earlier change already settled the deployment (completed or failed): kept.
    Settled,
    Duplicate,
}

impl Recording {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Recorded { .. } => "recorded",
            Self::NotOurs => "not-ours",
            Self::Settled => "settled",
            Self::Duplicate => "duplicate",
        }
    }
}

/// Marks `digest` failed on the service: an item of its own per digest, so a service that saw a
/// thousand failed rollouts still has a small record.
fn failed_rollout(c: &EcsOutcome, svc: &str, digest: &str) -> Op {
    let mut item = Map::new();
    item.insert("type".into(), json!("failed_rollout"));
    item.insert("digest".into(), json!(digest));
    item.insert("at".into(), json!(c.at.as_str()));
    item.insert("deployment_id".into(), json!(c.deployment_id));
    Op::Put {
        key: Key::new(svc, keys::failed_rollout_sk(digest)),
        item,
        cond: None,
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
    item.insert("status".into(), json!(ReceiptStatus::Done.as_str()));
    item.insert("outcome".into(), json!(outcome));
    Op::Put {
        key: keys::receipt("ecs", &c.event_id),
        item,
        cond: Some(Cond::ItemAbsent),
    }
}

/// Records one state change, once: a redelivered change is a duplicate, and a late
/// `in-progress` never overwrites `completed` or `failed`.
pub async fn record_outcome(
    store: &dyn Store,
    c: &EcsOutcome,
    received_at: &str,
    expires_at: i64,
) -> Result<Recording, StoreError> {
    let svc = keys::service_pk(&c.cluster, &c.service);
    let pointer = store
        .get(&Key::new(svc.clone(), keys::rollout_sk(&c.deployment_id)))
        .await?
        .and_then(|r| r.rollout());
    let Some(pointer) = pointer else {
        return receipt_only(store, c, Recording::NotOurs, received_at, expires_at).await;
    };
    let (dep_sk, digest, image) = (pointer.deployment_sk, pointer.digest, pointer.image);

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
                .set(
                    "last_failure",
                    json!({"digest": digest, "at": c.at.as_str(),
                    "deployment_id": c.deployment_id, "reason": c.reason}),
                ),
        ));
        ops.push(failed_rollout(c, &svc, digest));
    }
    match store.transact(ops).await? {
        Ok(()) => {}
        Err(cancelled) if cancelled.failed.iter().any(|(i, _)| *i == 0) => {
            return Ok(Recording::Duplicate);
        }
        Err(_) => {
            return receipt_only(store, c, Recording::Settled, received_at, expires_at).await;
        }
    }
    if c.state == EcsOutcomeState::Failed
        && let Some(digest) = &digest
    {
        // The circuit breaker returns the service to what it ran before: the record says so
        // (a newer-only rule then compares with that version), and the running index names
        // the image ECS went back to, so deleting that digest warns and deleting the failed
        // one does not. Only if nothing newer moved the service since.
        let key = Key::new(svc, keys::SERVICE_CURRENT);
        let before = store
            .get(&key)
            .await?
            .and_then(crate::model::records::Record::service)
            .unwrap_or_default();
        let mut u = Update::new(key)
            .set("rolled_back_from", digest.as_str())
            .set("rolled_back_at", c.at.as_str())
            .copy("digest", "previous_digest", "")
            .copy("tag", "previous_tag", "")
            .when(Cond::Eq("digest", json!(digest)));
        let returned_to = before
            .previous_image
            .as_deref()
            .and_then(|i| ImageRef::parse(i).ok())
            .and_then(|i| i.digest.clone().map(|d| (i, d)));
        u = match returned_to {
            Some((image, d)) => u
                .set("image", image.deployable())
                .set("running", format!("{}@{d}", image.name())),
            // What it ran before was not pinned (or is not known): no digest to index.
            None => u.remove("running"),
        };
        u = match before.previous_task_definition {
            Some(td) => u.set("task_definition_arn", td),
            None => u,
        };
        // A refused condition means a newer deployment already moved the service on.
        let _ = store.transact(vec![Op::Update(u)]).await?;
    }
    Ok(Recording::Recorded { digest, image })
}

async fn receipt_only(
    store: &dyn Store,
    c: &EcsOutcome,
    outcome: Recording,
    received_at: &str,
    expires_at: i64,
) -> Result<Recording, StoreError> {
    match store
        .transact(vec![receipt(c, outcome.as_str(), received_at, expires_at)])
        .await?
    {
        Ok(()) => Ok(outcome),
        Err(_) => Ok(Recording::Duplicate),
    }
}
