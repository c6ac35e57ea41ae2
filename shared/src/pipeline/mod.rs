//! The three functions' paths. Each handles the events of its own action and acknowledges the
//! rest as ignored, so a registry that sends every action to one URL does no harm.

pub mod delete;
pub mod push;
pub mod quarantine;
pub mod rollout;

use crate::PipelineError;
use crate::app::Function;
use crate::config::QuarantinePolicy;
use crate::deploy::{DeployOutcome, Deployer, Deployment};
use crate::event::{Action, ImageEvent, Parsed, Timestamp};
use crate::outcome::{EventOutcome, EventResult};
use crate::rules::Rules;
use crate::store::Store;
use crate::store::ledger::Receipt;

const SECONDS_PER_DAY: i64 = 86_400;

/// What the paths need, borrowed from the function's long-lived state.
pub struct Deps<'a> {
    pub store: &'a dyn Store,
    pub deployer: &'a dyn Deployer,
    pub rules: &'a Rules,
    pub quarantine: &'a QuarantinePolicy,
    pub receipt_ttl_days: u32,
}

impl Deps<'_> {
    pub fn receipt<'e>(&self, event: &'e ImageEvent, received_at: &'e Timestamp) -> Receipt<'e> {
        Receipt {
            event,
            received_at,
            expires_at: received_at.unix_seconds()
                + i64::from(self.receipt_ttl_days) * SECONDS_PER_DAY,
        }
    }
}

/// Which function handles an action.
pub fn function_for(action: Action) -> Function {
    match action {
        Action::Push => Function::Push,
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
                Function::Push => push::push_one(deps, &e, received_at).await?,
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
