//! The three functions' paths. Each handles the events of its own action and acknowledges the
//! rest as ignored, so a registry that sends every action to one URL does no harm.

pub mod delete;
pub mod history;
pub mod ledger;
pub mod notices;
pub mod outcomes;
pub mod push;
pub mod quarantine;
pub mod replay;
pub mod replicate;
pub mod replication;
pub mod rollouts;

use crate::model::event::{Action, ImageEvent, Parsed, Timestamp};
use crate::model::function::Function;
use crate::model::quarantine::QuarantinePolicy;
use crate::model::result::{EventOutcome, EventResult};
use crate::model::rules::Rules;
use crate::model::rules::Target;
use crate::ports::deployer::{DeployOutcome, Deployer, Deployment};
use crate::ports::store::Store;
use ledger::{Blocked, Receipt};

/// A failure of the store or of ECS while handling an event. Both are worth the sender's retry
/// or not as the underlying error says ([`PipelineError::is_retryable`]); the edge maps it to a
/// status once.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("store: {0}")]
    Store(#[from] crate::ports::store::StoreError),
    #[error("deploy: {0}")]
    Deploy(#[from] crate::ports::deployer::DeployError),
}

const SECONDS_PER_DAY: i64 = 86_400;

/// What the paths need, borrowed from the function's long-lived state.
pub struct Deps<'a> {
    pub store: &'a dyn Store,
    pub deployer: &'a dyn Deployer,
    pub rules: &'a Rules,
    pub quarantine: &'a QuarantinePolicy,
    pub receipt_ttl_days: u32,
    /// What `require_region: service-region` stands for.
    pub service_region: Option<&'a str>,
    /// The verified request the events came from, kept on their receipts for replay.
    pub payload: Option<&'a crate::model::payload::Payload>,
}

impl Deps<'_> {
    pub fn receipt<'e>(&'e self, event: &'e ImageEvent, received_at: &'e Timestamp) -> Receipt<'e> {
        Receipt {
            event,
            received_at,
            payload: self.payload,
            expires_at: received_at.unix_seconds()
                + i64::from(self.receipt_ttl_days) * SECONDS_PER_DAY,
        }
    }
}

/// Which function handles an action.
pub fn function_for(action: Action) -> Function {
    match action {
        // A replica's arrival is the push's completion: it may release held deployments.
        Action::Push | Action::Replicate | Action::ReplicationFailed => Function::Push,
        Action::Delete => Function::Delete,
        Action::Quarantine | Action::Release => Function::Quarantine,
    }
}

/// Handles every event of one request, in order. The first store or ECS fault stops the
/// request with a retryable error; events already handled are safe to see again because their
/// receipts make them duplicates.
pub async fn handle(
    deps: &Deps<'_>,
    function: Function,
    events: Vec<Parsed>,
    received_at: &Timestamp,
) -> Result<Vec<EventResult>, PipelineError> {
    let mut out = Vec::with_capacity(events.len());
    for parsed in events {
        let result = match parsed {
            Parsed::Ignored(i) => EventResult::ignored(i),
            // Answered at the edge before any event is handled; never mixed with events.
            Parsed::Handshake(_) => continue,
            Parsed::Image(e) if function_for(e.action) != function => {
                let reason = format!(
                    "{} events are handled by the {} function",
                    e.action.as_str(),
                    function_for(e.action).name()
                );
                EventResult::of(&e, EventOutcome::Ignored).with_reason(reason)
            }
            Parsed::Image(e) => match function {
                Function::Push if e.action == Action::Push => {
                    push::push_one(deps, &e, received_at).await?
                }
                Function::Push => replicate::replicate_one(deps, &e, received_at).await?,
                Function::Delete => delete::delete_one(deps, &e, received_at).await?,
                Function::Quarantine => quarantine::quarantine_one(deps, &e, received_at).await?,
            },
        };
        result.log();
        out.push(result);
    }
    Ok(out)
}

/// Deployments that failed become warnings too, so a sender's log shows them.
fn warn_failed(result: &mut EventResult, deployments: &[Deployment]) {
    for d in deployments {
        if d.outcome == DeployOutcome::Failed {
            result.warnings.push(format!(
                "deployment to {}/{} failed: {}",
                d.cluster,
                d.service,
                d.reason.as_deref().unwrap_or("unknown reason")
            ));
        }
    }
}

/// Applies held deployments of the event's digest, once per service and only where the held
/// tag still points at the digest (a tag that moved on was deployed, or held, by the newer
/// push), with the policy each rule has now. Then records them, settles every entry in `held`,
/// and marks the event's receipt done, even when nothing was deployed.
pub(crate) async fn apply_held(
    deps: &Deps<'_>,
    event: &ImageEvent,
    held: &[Blocked],
    result: &mut EventResult,
) -> Result<(), PipelineError> {
    let digest = event.image.digest.as_ref().map(ToString::to_string);
    let mut targets: Vec<Target> = Vec::new();
    for b in held {
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
    let settled: Vec<_> = held.iter().map(|b| b.key.clone()).collect();
    ledger::record_deployments(deps.store, event, &deployments, &settled, &Timestamp::now())
        .await?;
    warn_failed(result, &deployments);
    result.deployments = deployments;
    Ok(())
}

/// A held deployment with the rollout policy its rule has now (rules may have changed while
/// the digest was held); the default policy if no rule names the service any more.
fn with_current_policy(deps: &Deps<'_>, event: &ImageEvent, b: &Blocked) -> Target {
    let mut image = event.image.clone();
    if let Some(tag) = b
        .tag
        .as_deref()
        .and_then(|t| crate::model::reference::Tag::parse(t).ok())
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
