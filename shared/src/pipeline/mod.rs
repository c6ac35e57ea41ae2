//! The actions, one file each, each owning its decision and the writes it makes: push, delete,
//! quarantine (and release), replicate, the ECS deployment outcomes, replay and history, deploys
//! and rollbacks by hand (`manual`), the deployment guard's answer to ECS (`guard`), with
//! what they share (receipts, held deployments, what services run, notices). The webhook
//! functions' entry is [`handle`]: each handles the events of its own action and acknowledges
//! the rest as ignored, so a registry that sends every action to one URL does no harm.

pub mod approve;
pub mod converge;
pub mod delete;
pub mod deploy;
pub mod deployments;
pub mod deps;
pub mod guard;
pub mod held;
pub mod history;
pub mod identity;
pub mod manual;
pub mod notices;
pub mod outcomes;
pub mod pin;
pub mod push;
pub mod quarantine;
pub mod receipt;
pub mod reconcile;
pub mod replay;
pub mod replicate;

use crate::model::event::{Action, ImageEvent, Parsed, Timestamp};
use crate::model::function::Function;
use crate::model::result::{EventOutcome, EventResult};
pub use deps::{Deps, PipelineError};

/// Which function handles an action.
pub fn function_for(action: Action) -> Function {
    match action {
        // A replica's arrival is the push's completion: it may release held deployments.
        Action::Push | Action::Replicate | Action::ReplicationFailed => Function::Push,
        Action::Delete => Function::Delete,
        Action::Quarantine | Action::Release => Function::Quarantine,
    }
}

/// One registry under several names is one registry: the event is handled under the canonical
/// name, so its records, rule matches and deployed references are one.
fn canonical_names(deps: &Deps<'_>, e: &mut ImageEvent) {
    if deps.registry_aliases.is_empty() {
        return;
    }
    e.image.registry = deps.registry_aliases.canonical(&e.image.registry);
    if let Some(r) = &e.replica_registry {
        e.replica_registry = Some(deps.registry_aliases.canonical(r));
    }
}

/// Handles every event of one request, in order, once the push function has pinned the pushes
/// that came without a digest ([`pin`]). The first store or ECS fault stops the request with a
/// retryable error; events already handled are safe to see again because their receipts make
/// them duplicates.
pub async fn handle(
    deps: &Deps<'_>,
    function: Function,
    events: Vec<Parsed>,
    received_at: &Timestamp,
) -> Result<Vec<EventResult>, PipelineError> {
    let mut events = events;
    // Canonical names first: a tag is resolved at, and recorded under, the registry's one name.
    for parsed in &mut events {
        if let Parsed::Image(e) = parsed {
            canonical_names(deps, e);
        }
    }
    let unpinned = match function {
        Function::Push => pin::pin_all(deps.resolver, &mut events).await,
        _ => vec![None; events.len()],
    };
    let mut out = Vec::with_capacity(events.len());
    for (parsed, unpinned) in events.into_iter().zip(unpinned) {
        let result = match parsed {
            Parsed::Ignored(i) => EventResult::ignored(i),
            Parsed::Rejected(i) => EventResult::rejected(i),
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
            Parsed::Image(mut e) => {
                identity::settle(deps.store, &mut e, received_at).await?;
                match function {
                    Function::Push if e.action == Action::Push => {
                        // Boxed: each action's future is large, and one request awaits one at a
                        // time, so the request's own future stays small.
                        let mut result = Box::pin(push::push_one(deps, &e, received_at)).await?;
                        if let Some(why) = unpinned {
                            // Names the cause, where the push alone could only say it is unpinned.
                            result.warnings.retain(|w| !w.starts_with(push::NO_DIGEST));
                            let how = if result.deployments.is_empty() {
                                "recorded by tag"
                            } else {
                                "deployed by tag"
                            };
                            result
                                .warnings
                                .insert(0, format!("{why}; {how}, not pinned"));
                        }
                        result
                    }
                    Function::Push => {
                        Box::pin(replicate::replicate_one(deps, &e, received_at)).await?
                    }
                    Function::Delete => Box::pin(delete::delete_one(deps, &e, received_at)).await?,
                    Function::Quarantine => {
                        Box::pin(quarantine::quarantine_one(deps, &e, received_at)).await?
                    }
                    // No image event belongs to these two (`function_for`); answered like any
                    // event another function owns.
                    Function::Outcomes | Function::Images => {
                        EventResult::of(&e, EventOutcome::Ignored)
                            .with_reason(format!("{} takes no image events", function.name()))
                    }
                }
            }
        };
        result.log();
        out.push(result);
    }
    Ok(out)
}
