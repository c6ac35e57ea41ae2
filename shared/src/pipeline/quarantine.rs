//! The quarantine path: scan results and explicit quarantines block a digest; clean scans and
//! explicit releases lift the block and apply the deployments that waited for it
//! (deploy-on-release), once per service and only where the tag still points at the digest.

use serde_json::{Map, Value, json};

use super::deployments::services_running;
use super::deps::{Deps, PipelineError};
use super::held::{apply_held, blocked_deployments};
use super::history::{Source, history_ops};
use super::receipt::{MAX_ATTEMPTS, Receipt, pending, unexpected};
use super::replicate;
use crate::model::event::{Action, ImageEvent, Provider, Timestamp};
use crate::model::quarantine::{ALL, Hold, Holds, Lift, MANUAL, scanner_source};
use crate::model::records::{ImageStatus, ReceiptStatus, Record};
use crate::model::result::{EventAction, EventOutcome, EventResult};
use crate::ports::store::ops::{Cond, Op, Update};
use crate::ports::store::{Key, Store, StoreError};

enum Decision {
    Quarantine { reason: String, source: String },
    Release { reason: String, source: String },
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
            source: event
                .release_source
                .clone()
                .unwrap_or_else(|| ALL.to_owned()),
        },
        (_, Some(scan)) => match deps.quarantine.breach(scan) {
            Some(breach) => Decision::Quarantine {
                reason: match &event.reason {
                    Some(r) => format!("{breach}: {r}"),
                    None => breach,
                },
                source: scanner_source(&scan.scanner).to_owned(),
            },
            None if scan.complete => Decision::Release {
                reason: format!("clean {} scan (under QUARANTINE_SEVERITY)", scan.scanner),
                source: scanner_source(&scan.scanner).to_owned(),
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
            // An explicit quarantine is a person's (or a pipeline's) word: only an explicit
            // release lifts it. ACR's own quarantine is ACR's.
            source: match event.provider {
                Provider::Generic => MANUAL.to_owned(),
                _ => provider.to_owned(),
            },
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
        Decision::Release { reason, source } => {
            release(deps, event, &receipt, &reason, &source).await
        }
    }
}

fn common(event: &ImageEvent, outcome: QuarantineOutcome, reason: &str) -> EventResult {
    match outcome {
        QuarantineOutcome::Applied { .. } => {
            EventResult::of(event, EventOutcome::Applied).with_reason(reason)
        }
        QuarantineOutcome::NotQuarantined { by: None } => {
            EventResult::of(event, EventOutcome::Applied).with_reason(format!(
                "{reason}: the digest was not quarantined, nothing to release"
            ))
        }
        QuarantineOutcome::NotQuarantined { by: Some(by) } => {
            EventResult::of(event, EventOutcome::Applied).with_reason(format!(
                "{reason}: its source holds nothing on the digest, which stays quarantined by {by} (each hold is lifted only by its own source or an explicit release)"
            ))
        }
        QuarantineOutcome::StillHeld { by } => EventResult::of(event, EventOutcome::Applied)
            .with_reason(format!(
                "{reason}: its hold is lifted, but the digest stays quarantined by {by}"
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
    source: &str,
) -> Result<EventResult, PipelineError> {
    let blocked = blocked_deployments(deps.store, event).await?;
    let outcome = record_release(deps.store, receipt, reason, source, !blocked.is_empty()).await?;
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
    apply_held(deps, event, &ready, &presence.replicas, &mut result).await?;
    Ok(result)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineOutcome {
    /// Quarantined, or released with no hold left. `services` run the digest now.
    Applied {
        services: Vec<String>,
    },
    /// The release lifted its source's hold; other sources still hold the digest.
    StillHeld {
        by: String,
    },
    /// A release from a source that holds nothing: recorded, nothing changed. `by` names the
    /// sources that do hold the digest, if any.
    NotQuarantined {
        by: Option<String>,
    },
    /// Older than the last change of the same source's hold.
    Stale,
    Duplicate {
        pending: bool,
    },
}

/// The digest's holds as they stand, and whether its image item exists.
async fn read_holds(
    store: &dyn Store,
    key: &Key,
) -> Result<(Holds, Option<ImageStatus>), StoreError> {
    Ok(match store.get(key).await? {
        Some(Record::Image(i)) => (i.holds, Some(i.status.unwrap_or(ImageStatus::Active))),
        _ => (Holds::default(), None),
    })
}

/// Writes `holds` onto the image item, only if no other change to them was written since they
/// were read at version `read`; a change between the read and the write is read again and
/// redone. With `status`, the item's status and its one-line quarantine follow the holds.
pub(super) fn holds_update(u: Update, holds: &Holds, read: u64, status: bool) -> Update {
    let held: Map<String, Value> = holds
        .held
        .iter()
        .map(|h| {
            let mut v = json!({"reason": h.reason, "at": h.at});
            if let Some(e) = &h.event {
                v["event"] = json!(e);
            }
            (h.source.clone(), v)
        })
        .collect();
    let released: Map<String, Value> = holds
        .released
        .iter()
        .map(|(s, t)| (s.clone(), json!(t)))
        .collect();
    let u = u
        .set("holds", Value::Object(held))
        .set("hold_releases", Value::Object(released))
        .add("holds_version", 1)
        .when(if read == 0 {
            Cond::Missing("holds_version")
        } else {
            Cond::Eq("holds_version", json!(read))
        });
    if !status {
        return u;
    }
    match (holds.summary(), holds.latest()) {
        (Some(reason), Some(at)) => u
            .set("status", ImageStatus::Quarantined.as_str())
            .set("quarantine_reason", reason)
            .set("quarantine_source", holds.sources())
            .set("quarantined_at", at),
        _ => u
            .set("status", ImageStatus::Active.as_str())
            .remove("quarantine_reason")
            .remove("quarantine_source")
            .remove("quarantined_at"),
    }
}

/// Places `source`'s hold on a digest: nothing deploys it until every hold is lifted.
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
    for _ in 0..MAX_ATTEMPTS {
        let (mut holds, _) = read_holds(store, &key).await?;
        let read = holds.version;
        let hold = Hold {
            source: source.to_owned(),
            reason: reason.to_owned(),
            at: t.to_owned(),
            event: Some(r.by()),
        };
        if let Err(why) = holds.place(hold) {
            return stale_receipt(store, r, why).await;
        }
        let ops = vec![
            r.put(ReceiptStatus::Done, "applied", Some(reason)),
            Op::Update(holds_update(
                r.image_update(key.clone()),
                &holds,
                read,
                true,
            )),
            r.change(
                r.digest(),
                "quarantined",
                Some(&format!("{source}: {reason}")),
            ),
        ];
        match store.transact(ops).await? {
            Ok(()) => return Ok(QuarantineOutcome::Applied { services }),
            Err(c) if c.failed_at(0).is_some() => {
                return Ok(QuarantineOutcome::Duplicate { pending: false });
            }
            Err(c) if c.failed_at(1).is_some() => continue,
            Err(c) => return Err(unexpected(&c)),
        }
    }
    Err(StoreError::Unavailable {
        operation: "TransactWriteItems",
        message: "quarantine not recorded: the digest's holds kept changing; retry".into(),
        source: None,
    })
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

/// Lifts `source`'s hold ([`ALL`]: every hold) on a digest. `pending` writes the receipt
/// pending when the last hold goes and blocked deployments wait for it: they are recorded (and
/// the receipt marked done) afterwards.
pub async fn record_release(
    store: &dyn Store,
    r: &Receipt<'_>,
    reason: &str,
    source: &str,
    pending_deploys: bool,
) -> Result<QuarantineOutcome, StoreError> {
    let Some(key) = r.image_key() else {
        return Err(StoreError::Corrupt("a release without a digest".into()));
    };
    let t = r.event.occurred_at.as_str();
    for _ in 0..MAX_ATTEMPTS {
        let (mut holds, status) = read_holds(store, &key).await?;
        let exists = status.is_some();
        // Deployments that wait while nothing holds the digest any more (the last hold went
        // with a push ACR passed, say) are applied by this release, unless it is deleted.
        let orphaned = pending_deploys && holds.is_empty() && status == Some(ImageStatus::Active);
        let read = holds.version;
        let lift = holds.lift(source, t);
        let (status, outcome, note, change) = match &lift {
            Lift::Stale => {
                return stale_receipt(store, r, "held again after this release was made").await;
            }
            Lift::NotHeld if orphaned => (
                ReceiptStatus::Pending,
                QuarantineOutcome::Applied {
                    services: Vec::new(),
                },
                format!("{source} holds nothing, yet deployments waited: applied"),
                None,
            ),
            Lift::NotHeld => (
                ReceiptStatus::Done,
                QuarantineOutcome::NotQuarantined {
                    by: (!holds.is_empty()).then(|| holds.sources()),
                },
                format!("{source} holds nothing: nothing to release"),
                None,
            ),
            Lift::Lifted(lifted) if holds.is_empty() => (
                if pending_deploys {
                    ReceiptStatus::Pending
                } else {
                    ReceiptStatus::Done
                },
                QuarantineOutcome::Applied {
                    services: Vec::new(),
                },
                reason.to_owned(),
                Some(format!("{}: {reason}", lifted.join(","))),
            ),
            Lift::Lifted(lifted) => (
                ReceiptStatus::Done,
                QuarantineOutcome::StillHeld {
                    by: holds.sources(),
                },
                format!("{reason}; still held by {}", holds.sources()),
                Some(format!("{}: {reason}", lifted.join(","))),
            ),
        };
        let mut ops = vec![r.put(status, "applied", Some(&note))];
        // A source that held nothing still has its release remembered on an existing image,
        // so its older hold arriving late is stale; an unknown digest gains no item.
        if exists || change.is_some() {
            let mut u = holds_update(r.image_update(key.clone()), &holds, read, change.is_some());
            if change.is_some() {
                u = u.set("released_at", t);
            }
            ops.push(Op::Update(u));
        }
        if let Some(change) = &change {
            ops.push(r.change(r.digest(), "released", Some(change)));
        }
        if status == ReceiptStatus::Done {
            // Nothing waits for it: its history entry is written now, without services.
            let source = Source::of(r.event, Some(r.received_at.as_str()));
            ops.extend(history_ops(r.event, &source, &[], r.received_at));
        }
        match store.transact(ops).await? {
            Ok(()) => return Ok(outcome),
            Err(c) => match c.failed_at(0) {
                Some(old) => {
                    return Ok(QuarantineOutcome::Duplicate {
                        pending: pending(old),
                    });
                }
                None if c.failed_at(1).is_some() => continue,
                None => return Err(unexpected(&c)),
            },
        }
    }
    Err(StoreError::Unavailable {
        operation: "TransactWriteItems",
        message: "release not recorded: the digest's holds kept changing; retry".into(),
        source: None,
    })
}
