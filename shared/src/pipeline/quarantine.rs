//! The quarantine path: scan results and explicit quarantines block a digest; clean scans and
//! explicit releases lift the block and apply the deployments that waited for it
//! (deploy-on-release), once per service and only where the tag still points at the digest.

use super::{Deps, apply_held};
use crate::model::event::{Action, ImageEvent, Timestamp};
use crate::model::result::{EventOutcome, EventResult};
use crate::pipeline::PipelineError;
use crate::pipeline::ledger::{self, QuarantineOutcome};
use crate::pipeline::replication;

enum Decision {
    Quarantine { reason: String, source: String },
    Release { reason: String },
    Nothing(String),
}

fn decide(deps: &Deps<'_>, event: &ImageEvent) -> Decision {
    let provider = event.provider.as_str();
    match (event.action, &event.scan) {
        (Action::Release, _) => Decision::Release {
            reason: event
                .reason
                .clone()
                .unwrap_or_else(|| format!("released by {provider}")),
        },
        (_, Some(scan)) => match deps.quarantine.breach(scan) {
            Some(breach) => Decision::Quarantine {
                reason: match &event.reason {
                    Some(r) => format!("{breach}: {r}"),
                    None => breach,
                },
                source: scan.scanner.clone(),
            },
            None if scan.complete => Decision::Release {
                reason: format!("clean {} scan (under QUARANTINE_SEVERITY)", scan.scanner),
            },
            None => Decision::Nothing(format!(
                "{} finding under the QUARANTINE_SEVERITY thresholds",
                scan.scanner
            )),
        },
        (_, None) => Decision::Quarantine {
            reason: event
                .reason
                .clone()
                .unwrap_or_else(|| format!("quarantined by {provider}")),
            source: provider.to_owned(),
        },
    }
}

pub(super) async fn quarantine_one(
    deps: &Deps<'_>,
    event: &ImageEvent,
    received_at: &Timestamp,
) -> Result<EventResult, PipelineError> {
    let receipt = deps.receipt(event, received_at);
    match decide(deps, event) {
        Decision::Nothing(reason) => {
            Ok(EventResult::of(event, EventOutcome::Ignored).with_reason(reason))
        }
        Decision::Quarantine { reason, source } => {
            let outcome = ledger::record_quarantine(deps.store, &receipt, &reason, &source).await?;
            let mut result = common(event, outcome.clone(), &reason);
            if let QuarantineOutcome::Applied { services } = outcome {
                for service in services {
                    tracing::warn!(service = %service, image = %event.image, "a running service uses a quarantined digest");
                    result.warnings.push(format!(
                        "service {service} runs {}, which is now quarantined",
                        event.image.deployable()
                    ));
                    result.running_services.push(service);
                }
            }
            Ok(result)
        }
        Decision::Release { reason } => release(deps, event, &receipt, &reason).await,
    }
}

fn common(event: &ImageEvent, outcome: QuarantineOutcome, reason: &str) -> EventResult {
    match outcome {
        QuarantineOutcome::Applied { .. } => {
            EventResult::of(event, EventOutcome::Applied).with_reason(reason)
        }
        QuarantineOutcome::NotQuarantined => EventResult::of(event, EventOutcome::Applied)
            .with_reason(format!(
                "{reason}: the digest was not quarantined, nothing to release"
            )),
        QuarantineOutcome::Stale => EventResult::of(event, EventOutcome::Stale).with_reason(
            "older than the digest's latest quarantine change: recorded, nothing changed",
        ),
        QuarantineOutcome::Duplicate { .. } => EventResult::of(event, EventOutcome::Duplicate)
            .with_reason("event already applied: nothing changed"),
    }
}

async fn release(
    deps: &Deps<'_>,
    event: &ImageEvent,
    receipt: &ledger::Receipt<'_>,
    reason: &str,
) -> Result<EventResult, PipelineError> {
    let blocked = ledger::blocked_deployments(deps.store, event).await?;
    let outcome = ledger::record_release(deps.store, receipt, reason, !blocked.is_empty()).await?;
    let mut result = common(event, outcome.clone(), reason);
    result.action = "release".to_owned();
    let deploy_now = matches!(
        outcome,
        QuarantineOutcome::Applied { .. } | QuarantineOutcome::Duplicate { pending: true }
    );
    if !deploy_now || blocked.is_empty() {
        return Ok(result);
    }
    // Deployments that wait for a region stay held until the digest has arrived there.
    let presence = match &event.image.digest {
        Some(d) if blocked.iter().any(|b| b.waiting_region.is_some()) => {
            replication::presence(
                deps.store,
                event.image.registry.as_str(),
                event.image.repository.as_str(),
                d.as_str(),
            )
            .await?
        }
        _ => Default::default(),
    };
    let (ready, waiting): (Vec<_>, Vec<_>) = blocked.into_iter().partition(|b| {
        b.waiting_region
            .as_ref()
            .is_none_or(|r| presence.regions.contains(r))
    });
    for b in &waiting {
        result.warnings.push(format!(
            "{}/{} still waits for the digest to arrive in {}",
            b.target.cluster,
            b.target.service,
            b.waiting_region.as_deref().unwrap_or_default()
        ));
    }
    apply_held(deps, event, &ready, &mut result).await?;
    Ok(result)
}
