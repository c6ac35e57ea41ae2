//! The push path: record each push event, then roll it out to the services that follow it.

use crate::PipelineError;
use crate::deploy::{DeployOutcome, Deployer};
use crate::event::{Action, ImageEvent, Parsed, Timestamp};
use crate::outcome::{EventOutcome, EventResult};
use crate::rules::Rules;
use crate::store::{DeploymentsWrite, PushOutcome, PushWrite, Store};

const SECONDS_PER_DAY: i64 = 86_400;

/// What the push path needs, borrowed from the function's long-lived state.
pub struct PushDeps<'a> {
    pub store: &'a dyn Store,
    pub deployer: &'a dyn Deployer,
    pub rules: &'a Rules,
    pub receipt_ttl_days: u32,
}

/// Handles every event of one request, in order. Events that are not pushes are acknowledged
/// as ignored. The first store or ECS fault stops the request with a retryable error; events
/// already handled are safe to see again because their receipts make them duplicates.
pub async fn handle(
    deps: &PushDeps<'_>,
    events: Vec<Parsed>,
    received_at: &Timestamp,
) -> Result<Vec<EventResult>, PipelineError> {
    let mut out = Vec::with_capacity(events.len());
    for parsed in events {
        let result = match parsed {
            Parsed::Ignored(i) => EventResult::ignored(i),
            Parsed::Image(e) if e.action != Action::Push => {
                let reason = format!(
                    "{} events are handled by the {} function",
                    e.action.as_str(),
                    handler_of(e.action)
                );
                EventResult::of(&e, EventOutcome::Ignored).with_reason(reason)
            }
            Parsed::Image(e) => push_one(deps, &e, received_at).await?,
        };
        result.log();
        out.push(result);
    }
    Ok(out)
}

fn handler_of(action: Action) -> &'static str {
    match action {
        Action::Push => "push",
        Action::Delete => "delete",
        Action::Quarantine | Action::Release => "quarantine",
    }
}

async fn push_one(
    deps: &PushDeps<'_>,
    event: &ImageEvent,
    received_at: &Timestamp,
) -> Result<EventResult, PipelineError> {
    let targets = deps.rules.targets(&event.image);
    let expires_at =
        received_at.unix_seconds() + i64::from(deps.receipt_ttl_days) * SECONDS_PER_DAY;
    let write = PushWrite::for_push(event, received_at, expires_at, !targets.is_empty());
    let recorded = deps.store.record_push(&write).await?;

    let mut result = match recorded {
        PushOutcome::Applied => EventResult::of(event, EventOutcome::Applied),
        PushOutcome::Stale => {
            return Ok(EventResult::of(event, EventOutcome::Stale).with_reason(format!(
                "tag {} already points at a push at least as recent as {}: recorded on the image, not deployed",
                event.image.tag.as_ref().map_or("", |t| t.as_str()),
                event.occurred_at
            )));
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
            "no deploy rule matches this image"
        };
        if result.outcome == EventOutcome::Applied {
            result.reason = Some(why.to_owned());
        }
        return Ok(result);
    }

    let deployments = deps.deployer.deploy(&event.image, &targets).await?;
    deps.store
        .record_deployments(&DeploymentsWrite::new(
            event,
            &deployments,
            &Timestamp::now(),
        ))
        .await?;
    if event.image.digest.is_none() {
        result.warnings.push(format!(
            "the event carried no digest: deployed by tag {}, not pinned",
            event.image.deployable()
        ));
    }
    for d in &deployments {
        if d.outcome == DeployOutcome::Failed {
            result.warnings.push(format!(
                "deployment to {}/{} failed: {}",
                d.cluster,
                d.service,
                d.reason.as_deref().unwrap_or("unknown reason")
            ));
        }
    }
    result.deployments = deployments;
    Ok(result)
}
