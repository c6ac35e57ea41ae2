//! The replication path: a digest arrived in a registry replica (or failed to). The arrival is
//! recorded on the image, and deployments that waited for that region are applied, once per
//! service; a failure is recorded and reported as a warning, and what waits keeps waiting.

use super::{Deps, apply_held};
use crate::model::event::{Action, ImageEvent, Timestamp};
use crate::model::result::{EventOutcome, EventResult};
use crate::pipeline::PipelineError;
use crate::pipeline::ledger;
use crate::pipeline::replication::{self, ReplicationOutcome};

pub(super) async fn replicate_one(
    deps: &Deps<'_>,
    event: &ImageEvent,
    received_at: &Timestamp,
) -> Result<EventResult, PipelineError> {
    let region = event.region.as_deref().unwrap_or_default();
    let failed = event.action == Action::ReplicationFailed;
    let waiting: Vec<_> = ledger::blocked_deployments(deps.store, event)
        .await?
        .into_iter()
        .filter(|b| b.waiting_region.as_deref() == Some(region))
        .collect();
    let receipt = deps.receipt(event, received_at);
    let outcome =
        replication::record_replication(deps.store, &receipt, region, failed, !waiting.is_empty())
            .await?;
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
    let presence = replication::presence(
        deps.store,
        event.image.registry.as_str(),
        event.image.repository.as_str(),
        digest,
    )
    .await?;
    if presence.status.as_deref().is_some_and(|s| s != "active") {
        result.warnings.push(format!(
            "{digest} arrived in {region} but is {}: its deployments stay held",
            presence.status.as_deref().unwrap_or_default()
        ));
        ledger::record_deployments(deps.store, event, &[], &[], &Timestamp::now()).await?;
        return Ok(result);
    }
    result.reason = Some(format!(
        "{digest} arrived in {region}: applying the deployments that waited for it"
    ));
    apply_held(deps, event, &waiting, &mut result).await?;
    Ok(result)
}
