//! The actions, one file each, each owning its decision and the writes it makes: push, delete,
//! quarantine (and release), replicate, the ECS deployment outcomes, replay and history, with
//! what they share (receipts, held deployments, what services run, notices). The webhook
//! functions' entry is [`handle`]: each handles the events of its own action and acknowledges
//! the rest as ignored, so a registry that sends every action to one URL does no harm.

pub mod delete;
pub mod deployments;
pub mod held;
pub mod history;
pub mod notices;
pub mod outcomes;
pub mod push;
pub mod quarantine;
pub mod receipt;
pub mod replay;
pub mod replicate;

use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::event::{Action, ImageEvent, Parsed, Timestamp};
use crate::model::function::Function;
use crate::model::quarantine::QuarantinePolicy;
use crate::model::result::{EventOutcome, EventResult};
use crate::model::rules::Rules;
use crate::ports::deployer::{DeployError, Deployer};
use crate::ports::store::{Store, StoreError};
use receipt::Receipt;

/// A failure of the store or of ECS while handling an event. Both are worth the sender's retry
/// or not as the underlying error says ([`PipelineError::is_retryable`]); the edge maps it to a
/// status once.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("deploy: {0}")]
    Deploy(#[from] DeployError),
}

impl PipelineError {
    /// Whether the sender's retry may succeed where this attempt failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Deploy(e) => e.is_retryable(),
        }
    }
}

const SECONDS_PER_DAY: i64 = 86_400;

/// What the paths need, borrowed from the function's long-lived state.
#[derive(Clone, Copy)]
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
                // No image event belongs to these two (`function_for`); answered like any
                // event another function owns.
                Function::Outcomes | Function::Images => EventResult::of(&e, EventOutcome::Ignored)
                    .with_reason(format!("{} takes no image events", function.name())),
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
