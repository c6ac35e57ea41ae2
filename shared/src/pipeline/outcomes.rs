//! The outcomes path: ECS deployment state changes -> the state of the deployments imagehook
//! started, and failed digests marked per service.

use serde_json::{Value, json};

use super::SECONDS_PER_DAY;
use crate::model::ecs_outcome::EcsOutcome;
use crate::model::event::Timestamp;
use crate::pipeline::rollouts::{self, RolloutOutcome};
use crate::ports::store::{Store, StoreError};

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
    let outcome = rollouts::record_rollout(store, &change, now.as_str(), expires_at).await?;
    let mut out = json!({
        "outcome": outcome.as_str(),
        "cluster": change.cluster,
        "service": change.service,
        "deployment_id": change.deployment_id,
        "state": change.state.as_str(),
        "circuit_breaker": change.circuit_breaker,
        "reason": change.reason,
    });
    if let RolloutOutcome::Recorded { digest: Some(d) } = &outcome {
        out["digest"] = json!(d);
    }
    let service = format!("{}/{}", change.cluster, change.service);
    match (&outcome, change.state) {
        (
            RolloutOutcome::Recorded { digest },
            crate::model::ecs_outcome::EcsOutcomeState::Failed,
        ) => {
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
