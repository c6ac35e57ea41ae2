//! The quarantine path: scan results and explicit quarantines block a digest; clean scans and
//! explicit releases lift the block and apply the deployments that waited for it
//! (deploy-on-release), once per service and only where the tag still points at the digest.

use serde_json::json;

use super::deployments::services_running;
use super::deps::{Deps, PipelineError};
use super::held::{apply_held, blocked_deployments};
use super::receipt::{Receipt, pending};
use super::replicate;
use crate::model::event::{Action, ImageEvent, Timestamp};
use crate::model::records::{ImageStatus, ReceiptStatus, Record};
use crate::model::result::{EventAction, EventOutcome, EventResult};
use crate::ports::store::ops::{Cond, Op};
use crate::ports::store::{Store, StoreError};

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
            let outcome = record_quarantine(deps.store, &receipt, &reason, &source).await?;
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
    receipt: &Receipt<'_>,
    reason: &str,
) -> Result<EventResult, PipelineError> {
    let blocked = blocked_deployments(deps.store, event).await?;
    let outcome = record_release(deps.store, receipt, reason, !blocked.is_empty()).await?;
    let mut result = common(event, outcome.clone(), reason);
    result.action = EventAction::Known(Action::Release);
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
            replicate::presence(
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineOutcome {
    /// Quarantined (or released). `services` run the digest now.
    Applied {
        services: Vec<String>,
    },
    /// A release for a digest that is not quarantined: recorded, nothing changed.
    NotQuarantined,
    /// Older than the last quarantine change of this digest.
    Stale,
    Duplicate {
        pending: bool,
    },
}

/// Quarantines a digest: nothing deploys it until it is released.
pub async fn record_quarantine(
    store: &dyn Store,
    r: &Receipt<'_>,
    reason: &str,
    source: &str,
) -> Result<QuarantineOutcome, StoreError> {
    let services = services_running(store, r.event).await?;
    let Some(key) = r.image_key() else {
        return Err(StoreError::Corrupt("a quarantine without a digest".into()));
    };
    let t = r.event.occurred_at.as_str();
    let ops = vec![
        r.put(ReceiptStatus::Done, "applied", Some(reason)),
        Op::Update(
            r.image_update(key)
                .set("status", ImageStatus::Quarantined.as_str())
                .set("quarantine_reason", reason)
                .set("quarantine_source", source)
                .set("quarantined_at", t)
                .when(Cond::Or(vec![
                    Cond::Missing("released_at"),
                    Cond::Le("released_at", json!(t)),
                ])),
        ),
        r.change(r.digest(), "quarantined", Some(reason)),
    ];
    match store.transact(ops).await? {
        Ok(()) => Ok(QuarantineOutcome::Applied { services }),
        Err(c) if c.failed_at(0).is_some() => Ok(QuarantineOutcome::Duplicate { pending: false }),
        Err(_) => stale_receipt(store, r, "released after this scan or quarantine was made").await,
    }
}

async fn stale_receipt(
    store: &dyn Store,
    r: &Receipt<'_>,
    reason: &str,
) -> Result<QuarantineOutcome, StoreError> {
    Ok(
        match store
            .transact(vec![r.put(ReceiptStatus::Done, "stale", Some(reason))])
            .await?
        {
            Ok(()) => QuarantineOutcome::Stale,
            Err(c) => QuarantineOutcome::Duplicate {
                pending: pending(c.failed_at(0).flatten()),
            },
        },
    )
}

/// Releases a quarantined digest. `pending` writes the receipt pending because blocked
/// deployments wait for it: they are recorded (and the receipt marked done) afterwards.
pub async fn record_release(
    store: &dyn Store,
    r: &Receipt<'_>,
    reason: &str,
    pending_deploys: bool,
) -> Result<QuarantineOutcome, StoreError> {
    let Some(key) = r.image_key() else {
        return Err(StoreError::Corrupt("a release without a digest".into()));
    };
    let t = r.event.occurred_at.as_str();
    let status = if pending_deploys {
        ReceiptStatus::Pending
    } else {
        ReceiptStatus::Done
    };
    let ops = vec![
        r.put(status, "applied", Some(reason)),
        Op::Update(
            r.image_update(key)
                .set("status", ImageStatus::Active.as_str())
                .set("released_at", t)
                .remove("quarantine_reason")
                .remove("quarantine_source")
                .remove("quarantined_at")
                .when(Cond::And(vec![
                    Cond::Present("quarantine_reason"),
                    Cond::Or(vec![
                        Cond::Missing("quarantined_at"),
                        Cond::Le("quarantined_at", json!(t)),
                    ]),
                ])),
        ),
        r.change(r.digest(), "released", Some(reason)),
    ];
    match store.transact(ops).await? {
        Ok(()) => Ok(QuarantineOutcome::Applied {
            services: Vec::new(),
        }),
        Err(c) => match c.failed_at(0) {
            Some(old) => Ok(QuarantineOutcome::Duplicate {
                pending: pending(old),
            }),
            None if !matches!(
                c.failed_at(1).flatten(),
                Some(Record::Image(i)) if i.quarantine.is_some()
            ) =>
            {
                let ops = vec![r.put(
                    ReceiptStatus::Done,
                    "applied",
                    Some("not quarantined: nothing to release"),
                )];
                Ok(match store.transact(ops).await? {
                    Ok(()) => QuarantineOutcome::NotQuarantined,
                    Err(c) => QuarantineOutcome::Duplicate {
                        pending: pending(c.failed_at(0).flatten()),
                    },
                })
            }
            None => stale_receipt(store, r, "quarantined again after this release was made").await,
        },
    }
}
