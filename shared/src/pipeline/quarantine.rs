//! The quarantine path: scan results and explicit quarantines block a digest; clean scans and
//! explicit releases lift the block and apply the deployments that waited for it
//! (deploy-on-release), once per service and only where the tag still points at the digest.

use super::{Deps, warn_failed};
use crate::PipelineError;
use crate::event::{Action, ImageEvent, Timestamp};
use crate::outcome::{EventOutcome, EventResult};
use crate::rules::Target;
use crate::store::ledger::{self, QuarantineOutcome};

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
    // Apply a held deployment only where its tag still points at this digest: a tag that moved
    // on since has been deployed (or blocked) by the newer push.
    let digest = event.image.digest.as_ref().map(ToString::to_string);
    let mut targets: Vec<Target> = Vec::new();
    for b in &blocked {
        let current = match &b.tag {
            Some(tag) => ledger::tag_digest(deps.store, event, tag).await?,
            None => digest.clone(),
        };
        if current == digest
            && !targets
                .iter()
                .any(|t| t.cluster == b.target.cluster && t.service == b.target.service)
        {
            targets.push(with_current_policy(deps, event, b));
        }
    }
    let deployments = if targets.is_empty() {
        Vec::new()
    } else {
        deps.deployer.deploy(&event.image, &targets).await?
    };
    let settled: Vec<_> = blocked.iter().map(|b| b.key.clone()).collect();
    ledger::record_deployments(deps.store, event, &deployments, &settled, &Timestamp::now())
        .await?;
    warn_failed(&mut result, &deployments);
    result.deployments = deployments;
    Ok(result)
}

/// A held deployment with the rollout policy its rule has now (rules may have changed while
/// the digest was held); the default policy if no rule names the service any more.
fn with_current_policy(deps: &Deps<'_>, event: &ImageEvent, b: &ledger::Blocked) -> Target {
    let mut image = event.image.clone();
    if let Some(tag) = b
        .tag
        .as_deref()
        .and_then(|t| crate::reference::Tag::parse(t).ok())
    {
        image.tag = Some(tag);
    }
    let mut target = b.target.clone();
    if let Some(t) = deps
        .rules
        .targets(&image)
        .into_iter()
        .find(|t| t.cluster == target.cluster && t.service == target.service)
    {
        target.policy = t.policy;
    }
    target
}
