//! The push path: record each push, then roll it out to the services that follow it, unless the
//! digest is quarantined or deleted, in which case the deployments wait as `blocked`.

use super::{Deps, warn_failed};
use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::event::{ImageEvent, Timestamp};
use crate::model::result::{EventOutcome, EventResult};
use crate::model::rules::Target;
use crate::pipeline::PipelineError;
use crate::pipeline::ledger::{self, PushOutcome};
use crate::pipeline::replication;
use crate::pipeline::rollouts;

pub(super) async fn push_one(
    deps: &Deps<'_>,
    event: &ImageEvent,
    received_at: &Timestamp,
) -> Result<EventResult, PipelineError> {
    let targets = targets(deps, event).await?;
    let receipt = deps.receipt(event, received_at);
    let recorded = ledger::record_push(deps.store, &receipt, &targets).await?;

    let mut result = match recorded {
        PushOutcome::Applied => EventResult::of(event, EventOutcome::Applied),
        PushOutcome::AppliedAcrPassed => EventResult::of(event, EventOutcome::Applied)
            .with_reason("ACR sent the push of a quarantined image, so it was marked Passed: quarantine released"),
        PushOutcome::Stale => {
            return Ok(EventResult::of(event, EventOutcome::Stale).with_reason(format!(
                "tag {} already points at a push at least as recent as {}: recorded on the image, not deployed",
                event.image.tag.as_ref().map_or("", |t| t.as_str()),
                event.occurred_at
            )));
        }
        PushOutcome::Blocked { reason } => {
            let mut result = EventResult::of(event, EventOutcome::Blocked).with_reason(&reason);
            result.deployments = targets
                .iter()
                .map(|t| {
                    Deployment::new(t, &event.image, DeployOutcome::Blocked).with_reason(&reason)
                })
                .collect();
            return Ok(result);
        }
        PushOutcome::Duplicate { pending: false } => {
            return Ok(EventResult::of(event, EventOutcome::Duplicate)
                .with_reason("event already applied: nothing changed"));
        }
        PushOutcome::Duplicate { pending: true } => EventResult::of(event, EventOutcome::Duplicate)
            .with_reason("event already recorded; its deployments were not: completed them now"),
    };

    if targets.is_empty() {
        let why = if event.image.tag.is_none() {
            "push without a tag: recorded, no rule applies to untagged images"
        } else {
            "no deploy rule or followed service matches this image"
        };
        if result.outcome == EventOutcome::Applied {
            result.reason = Some(why.to_owned());
        }
        return Ok(result);
    }

    let (targets, mut deployments) = without_failed_rollouts(deps, event, targets).await?;
    let (targets, held) = held_for_regions(deps, event, targets).await?;
    if !held.is_empty() {
        replication::hold(deps.store, &receipt, &held).await?;
        deployments.extend(held.iter().map(|(t, region)| {
            Deployment::new(t, &event.image, DeployOutcome::Blocked)
                .with_reason(replication::not_yet_replicated(region))
        }));
    }
    if !targets.is_empty() {
        deployments.extend(deps.deployer.deploy(&event.image, &targets).await?);
    }
    ledger::record_deployments(deps.store, event, &deployments, &[], &Timestamp::now()).await?;
    if event.image.digest.is_none() {
        result.warnings.push(format!(
            "the event carried no digest: deployed by tag {}, not pinned",
            event.image.deployable()
        ));
    }
    warn_failed(&mut result, &deployments);
    result.deployments = deployments;
    Ok(result)
}

/// Force and newer-only rules compare with what the service runs, and would roll a digest
/// whose rollout failed (and was rolled back) out again on the next delivery that names it. For
/// them the service's record is read: what imagehook last deployed there (ECS shows a pinned
/// service as `repo@digest`, without the tag), and which digests failed. Plain rules deploy what
/// was pushed and pay for no read.
async fn without_failed_rollouts(
    deps: &Deps<'_>,
    event: &ImageEvent,
    targets: Vec<Target>,
) -> Result<(Vec<Target>, Vec<Deployment>), PipelineError> {
    let mut keep = Vec::with_capacity(targets.len());
    let mut skipped = Vec::new();
    for mut t in targets {
        if t.policy.newer_only || t.policy.follow_tag {
            let record = rollouts::service_record(deps.store, &t.cluster, &t.service).await?;
            if let Some(digest) = event
                .image
                .digest
                .as_ref()
                .filter(|d| record.failed_digests.iter().any(|f| f == d.as_str()))
            {
                skipped.push(
                    Deployment::new(&t, &event.image, DeployOutcome::Skipped).with_reason(format!(
                        "the rollout of {digest} to {}/{} failed before (see the service's last_failure): push a fix",
                        t.cluster, t.service
                    )),
                );
                continue;
            }
            t.last_deployed = record.digest.map(|d| (d, record.tag));
        }
        keep.push(t);
    }
    Ok((keep, skipped))
}

/// The services this push goes to: those rules name, then those that follow the image by their
/// own tag. A service named by a rule and tagged too follows the rule: it is the explicit,
/// reviewed configuration.
async fn targets(deps: &Deps<'_>, event: &ImageEvent) -> Result<Vec<Target>, PipelineError> {
    let mut targets = deps.rules.targets(&event.image);
    for f in deps.deployer.followers(&event.image).await? {
        if !targets
            .iter()
            .any(|t| t.cluster == f.cluster && t.service == f.service)
        {
            targets.push(f);
        }
    }
    Ok(targets)
}

/// Targets whose rule requires a region the digest has not reached yet are held (with that
/// region) until a replication event says it arrived. The push's own region counts; otherwise
/// the image's record says where it is, read once and only when a rule asks.
async fn held_for_regions(
    deps: &Deps<'_>,
    event: &ImageEvent,
    targets: Vec<Target>,
) -> Result<(Vec<Target>, Vec<(Target, String)>), PipelineError> {
    let (Some(digest), true) = (
        &event.image.digest,
        targets.iter().any(|t| t.require_region.is_some()),
    ) else {
        return Ok((targets, Vec::new()));
    };
    let presence = replication::presence(
        deps.store,
        event.image.registry.as_str(),
        event.image.repository.as_str(),
        digest.as_str(),
    )
    .await?;
    let mut deploy = Vec::with_capacity(targets.len());
    let mut held = Vec::new();
    for t in targets {
        let Some(wanted) = t.require_region.as_deref() else {
            deploy.push(t);
            continue;
        };
        let region = match wanted {
            "service-region" => deps.service_region.unwrap_or("service-region").to_owned(),
            r => r.to_owned(),
        };
        if event.region.as_deref() == Some(region.as_str()) || presence.regions.contains(&region) {
            deploy.push(t);
        } else {
            held.push((t, region));
        }
    }
    Ok((deploy, held))
}
