//! Each image reaches each service once and in order (DESIGN §5a): the deploy is not a side
//! effect of each delivery but the convergence of one record per ECS service.
//!
//! A delivery that matches a service *proposes* its image: one conditional write that only
//! moves the service's desired state forward (the newest push by the sender's time wins; the
//! receipt time breaks ties). A proposal that loses is `superseded` and never reaches ECS.
//! The proposal also tries the service's *lease*, so the uncontended case costs one write: the
//! holder applies the desired state, checks right before changing ECS that it is still the
//! desired one, records what it applied and releases the lease on condition that the desired
//! state did not move meanwhile (if it did, it applies again). Every other delivery for that
//! service while the lease is held makes no ECS call: it is `queued`, carried by the holder.
//! A holder that dies leaves its lease to expire; whoever takes it over (the next delivery, or
//! the scheduled reconcile) resumes, reusing a task-definition revision the dead holder
//! registered rather than registering another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::deployments::deployment_ops;
use super::deps::{Deps, PipelineError};
use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::event::{Action, ImageEvent, Provider, Timestamp};
use crate::model::records::{Desired, Record, ServiceRecord};
use crate::model::reference::ImageRef;
use crate::model::rules::Target;
use crate::ports::deployer::{DeployError, Guard};
use crate::ports::store::keys;
use crate::ports::store::ops::{Cond, Op, Update};
use crate::ports::store::{Key, Store, StoreError};

/// How long a lease lasts by default: four times the functions' 15 s timeout, so a live holder
/// never loses it and a dead one blocks its service for at most a minute.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The ordering key of a proposal: the sender's time, then the receipt time. Both are RFC 3339
/// with nine fractional digits, so the text order is the time order.
pub fn order_of(occurred_at: &str, received_at: &str) -> String {
    [occurred_at, "#", received_at].concat()
}

/// The receipt time an ordering key holds (times hold no `#`).
pub fn received_of(order: &str) -> Option<&str> {
    order.split_once('#').map(|(_, received)| received)
}

/// A name for one holder of one lease: unique across deliveries, processes and retries.
pub fn holder_id(event: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{event}@{}.{}.{}",
        std::process::id(),
        Timestamp::now().unix_nanos(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a delivery proposes to one service.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// `provider#id` of the event.
    pub event: String,
    pub image: ImageRef,
    pub order: String,
}

/// Where a proposal stands after knocking at the service's door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Door {
    /// This delivery holds the lease and applies. `resume`: it took the lease over from a
    /// holder that never released it.
    Holder { resume: bool },
    /// Another holder applies the newest desired state; `carrier` is its event.
    Queued { carrier: String },
    /// A newer proposal won; `winner` is its event. `same_digest`: it proposed the digest this
    /// one names (tags of one push resolved to one image), so nothing is lost.
    Superseded { winner: String, same_digest: bool },
}

fn service_key(t: &Target) -> Key {
    Key::new(
        keys::service_pk(&t.cluster, &t.service),
        keys::SERVICE_CURRENT,
    )
}

fn proposal_update(t: &Target, p: &Proposal) -> Update {
    Update::new(service_key(t))
        .set("type", "service")
        .set("cluster", t.cluster.as_str())
        .set("service", t.service.as_str())
        .set("desired_event", p.event.as_str())
        .set("desired_image", p.image.to_string())
        .set("desired_order", p.order.as_str())
        .set("desired_container", t.container.as_deref().unwrap_or(""))
        .set("desired_stage", t.stage.as_deref().unwrap_or(""))
        .set("desired_replicas", replicas_text(&t.replicas))
}

/// The replicas a proposal names, as stored: comma-separated, at most `MAX_REPLICAS` (a
/// sender-made list must not grow the service's item).
fn replicas_text(replicas: &[String]) -> String {
    replicas
        .iter()
        .take(MAX_REPLICAS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// The most replica registries a service's desired state keeps.
const MAX_REPLICAS: usize = 16;

fn forward(p: &Proposal) -> Cond {
    Cond::Or(vec![
        Cond::Missing("desired_order"),
        Cond::Lt("desired_order", json!(p.order)),
    ])
}

fn leased(u: Update, holder: &str, until: &Timestamp) -> Update {
    u.set("lease_holder", holder)
        .set("lease_until", until.as_str())
}

/// The service record a refused single-operation transaction returned.
fn refused(c: &crate::ports::store::Cancelled) -> Option<ServiceRecord> {
    match c.failed_at(0).flatten() {
        Some(Record::Service(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Proposes `p` for `t` and tries the lease in the same write; then, as the refused record
/// says, proposes alone, takes an expired lease over, or queues.
pub async fn knock(
    store: &dyn Store,
    t: &Target,
    p: &Proposal,
    holder: &str,
    lease: Duration,
) -> Result<Door, StoreError> {
    let now = Timestamp::now();
    let until = now.plus(lease);
    let first = leased(proposal_update(t, p), holder, &until)
        .when(Cond::And(vec![forward(p), Cond::Missing("lease_until")]));
    let old = match store.transact(vec![Op::Update(first)]).await? {
        Ok(()) => return Ok(Door::Holder { resume: false }),
        Err(c) => refused(&c).ok_or_else(|| corrupt("a proposal"))?,
    };
    let mine = old.desired.as_ref().is_some_and(|d| d.event == p.event);
    if !mine {
        if let Some(d) = old.desired.as_ref().filter(|d| d.order >= p.order) {
            return Ok(Door::Superseded {
                winner: d.event.clone(),
                same_digest: same_digest(d, p),
            });
        }
        let alone = proposal_update(t, p).when(forward(p));
        if let Err(c) = store.transact(vec![Op::Update(alone)]).await? {
            let now_there = refused(&c);
            if let Some(s) = now_there
                .as_ref()
                .filter(|s| s.desired.as_ref().is_some_and(|d| d.event == p.event))
            {
                // Another delivery of this same event proposed it meanwhile (a retry racing
                // its first attempt): the proposal is this one's too, not a newer one.
                return take_lease(store, t, s, holder, &now, &until, &p.event).await;
            }
            let desired = now_there.and_then(|s| s.desired);
            return Ok(Door::Superseded {
                same_digest: desired.as_ref().is_some_and(|d| same_digest(d, p)),
                winner: desired.map_or_else(|| "a newer push".to_owned(), |d| d.event),
            });
        }
    }
    take_lease(store, t, &old, holder, &now, &until, &p.event).await
}

/// Whether the desired state names the digest `p` proposes.
fn same_digest(d: &Desired, p: &Proposal) -> bool {
    p.image
        .digest
        .as_ref()
        .is_some_and(|digest| d.image.ends_with(&format!("@{digest}")))
}

/// Takes the lease of a service without proposing anything (the reconcile): free or expired,
/// as `old` shows it; `Queued` behind a live holder.
pub async fn take_over(
    store: &dyn Store,
    t: &Target,
    old: &ServiceRecord,
    holder: &str,
    lease: Duration,
) -> Result<Door, StoreError> {
    let now = Timestamp::now();
    let until = now.plus(lease);
    take_lease(store, t, old, holder, &now, &until, holder).await
}

/// Takes the lease `old` shows free or expired; queues behind a live one.
async fn take_lease(
    store: &dyn Store,
    t: &Target,
    old: &ServiceRecord,
    holder: &str,
    now: &Timestamp,
    until: &Timestamp,
    event: &str,
) -> Result<Door, StoreError> {
    let (cond, resume) = match &old.lease {
        Some(l) if l.until.as_str() >= now.as_str() => {
            return Ok(Door::Queued {
                carrier: carrier(old, event),
            });
        }
        // Only the lease as it was may be taken over: two deliveries that both saw it expired
        // cannot both hold it.
        Some(l) => (Cond::Eq("lease_until", json!(l.until)), true),
        None => (Cond::Missing("lease_until"), false),
    };
    let u = leased(Update::new(service_key(t)), holder, until).when(cond);
    Ok(match store.transact(vec![Op::Update(u)]).await? {
        Ok(()) => Door::Holder { resume },
        Err(c) => Door::Queued {
            carrier: refused(&c).map_or_else(|| event.to_owned(), |s| carrier(&s, event)),
        },
    })
}

/// Whose delivery carries a queued one: the lease holder's event (holder ids are
/// `<event>@<instance>`), which applies the newest desired state.
fn carrier(record: &ServiceRecord, fallback: &str) -> String {
    match (&record.lease, &record.desired) {
        (Some(l), _) => l.holder.split('@').next().unwrap_or(&l.holder).to_owned(),
        (None, Some(d)) => d.event.clone(),
        (None, None) => fallback.to_owned(),
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "{what} was refused, but no service record came back"
    ))
}

/// What a holder did: the deployment of its own proposal (when it applied or superseded it),
/// and the deployments of later proposals it carried.
#[derive(Debug, Default)]
pub struct Held {
    pub own: Option<Deployment>,
    pub carried: Vec<Deployment>,
    /// The event's closing records went with the holder's own commit.
    pub finished: bool,
}

/// The records that close an event, given the holder's own deployment: written in the same
/// transaction as that deployment when they fit, which saves a round trip per push.
pub type Finish<'a> = &'a (dyn Fn(&Deployment) -> Vec<Op> + Sync);

/// Asks the service record, right before ECS is changed, whether the holder still holds the
/// lease and the round's proposal is still the desired one.
struct Still<'a> {
    store: &'a dyn Store,
    key: Key,
    holder: &'a str,
    event: String,
    /// The record as the check read it: when it stops the holder, it names what to do next.
    /// Boxed: the guard lives across the deploy's awaits, and the record is large.
    seen: std::sync::Mutex<Option<Box<ServiceRecord>>>,
}

#[async_trait]
impl Guard for Still<'_> {
    async fn check(&self) -> Result<Option<String>, DeployError> {
        let record = self
            .store
            .get(&self.key)
            .await
            .map_err(|e| DeployError {
                operation: "the lease check",
                message: e.to_string(),
                source: Some(Box::new(e)),
            })?
            .and_then(Record::service)
            .unwrap_or_default();
        let answer = if record.lease.as_ref().map(|l| l.holder.as_str()) != Some(self.holder) {
            Some("the lease on the service expired while it was being described".into())
        } else {
            match &record.desired {
                Some(d) if d.event != self.event => Some(format!("superseded by {}", d.event)),
                _ => None,
            }
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(Box::new(record));
        }
        Ok(answer)
    }
}

/// Whether a desired state was asked for by hand (`manual#<request id>`).
pub fn is_manual(event: &str) -> bool {
    event
        .split_once('#')
        .is_some_and(|(p, _)| p == Provider::Manual.as_str())
}

/// The event a desired state came from, as far as its records need one.
fn event_of(d: &Desired) -> Result<(ImageEvent, ImageRef), StoreError> {
    let bad = || StoreError::Corrupt(format!("desired state {d:?} is unreadable"));
    let image = ImageRef::parse(&d.image).map_err(|_| bad())?;
    let (provider, id) = d.event.split_once('#').ok_or_else(bad)?;
    let provider = Provider::from_recorded(provider).ok_or_else(bad)?;
    let occurred = d.order.split('#').next().unwrap_or_default();
    let occurred_at = Timestamp::parse(occurred).map_err(|_| bad())?;
    let event = ImageEvent::new(
        id.to_owned(),
        provider,
        Action::Push,
        image.clone(),
        occurred_at,
    );
    Ok((event, image))
}

/// The holder's loop: apply the desired state, record it, release if it did not move; else
/// apply the new one. `base` is the rule's target (policy, and what the service last ran for
/// policies that compare); `first` is the desired state the holder knows of.
pub async fn hold(
    deps: &Deps<'_>,
    base: &Target,
    holder: &str,
    resume: bool,
    own_event: &str,
    first: Desired,
    finish: Option<Finish<'_>>,
) -> Result<Held, PipelineError> {
    let key = service_key(base);
    match rounds(deps, base, holder, resume, own_event, first, finish).await {
        Ok(held) => Ok(held),
        Err(e) => {
            // A fault for now (ECS, or the store): the sender's retry, or the reconcile, may
            // take over at once instead of waiting for the lease to expire.
            if let Err(r) = release(deps.store, &key, holder).await {
                tracing::warn!(error = %r, "lease not released after a failed deployment");
            }
            Err(e)
        }
    }
}

async fn rounds(
    deps: &Deps<'_>,
    base: &Target,
    holder: &str,
    mut resume: bool,
    own_event: &str,
    first: Desired,
    finish: Option<Finish<'_>>,
) -> Result<Held, PipelineError> {
    let key = service_key(base);
    let mut desired = first;
    let mut held = Held::default();
    let mut last_deployed = base.last_deployed.clone();
    for _ in 0..MAX_ROUNDS {
        let (event, image) = event_of(&desired)?;
        let mut target = base.clone();
        target.container = desired.container.clone().filter(|c| !c.is_empty());
        target.stage = desired.stage.clone().filter(|s| !s.is_empty());
        target.replicas = desired
            .replicas
            .iter()
            .filter(|r| !r.is_empty())
            .cloned()
            .collect();
        target.last_deployed = last_deployed.clone();
        if is_manual(&desired.event) {
            // Someone asked for exactly this image (a rollback included): a rule's newer-only
            // or follow-the-tag policy, which judges pushes, must not refuse it. Whoever holds
            // the lease applies it so, the reconcile too.
            target.policy.newer_only = false;
            target.policy.follow_tag = false;
        }
        let guard = Still {
            store: deps.store,
            key: key.clone(),
            holder,
            event: desired.event.clone(),
            seen: std::sync::Mutex::new(None),
        };
        let d = deps.deployer.apply(&image, &target, resume, &guard).await?;
        resume = false;
        if d.outcome == DeployOutcome::Superseded {
            // Nothing changed in ECS. Whoever moved the desired state, or took the lease, is
            // named by the record the check read: follow it, or stop.
            let record = guard.seen.into_inner().ok().flatten().unwrap_or_default();
            note(&mut held, own_event, &desired, d);
            match (record.lease, record.desired) {
                (Some(l), Some(next)) if l.holder == holder => {
                    desired = next;
                    continue;
                }
                _ => break,
            }
        }
        let at = Timestamp::now();
        let (mut ops, runs) = deployment_ops(&event, &d, &at);
        if desired.event != own_event {
            // The delivery that proposed this was queued behind the holder, and its history
            // entry says so: this says what was applied.
            let by = holder.split('@').next().unwrap_or(holder);
            ops.push(super::history::applied_op(&event, &d, by, &at));
        }
        let applied = |u: Update| {
            u.set("type", "service")
                .set("cluster", base.cluster.as_str())
                .set("service", base.service.as_str())
                .set("applied_event", desired.event.as_str())
                .set("applied_outcome", d.outcome.as_str())
                .set("applied_at", at.as_str())
        };
        let release = applied(runs.clone().unwrap_or_else(|| Update::new(key.clone())))
            .remove("lease_holder")
            .remove("lease_until")
            .when(Cond::And(vec![
                Cond::Eq("lease_holder", json!(holder)),
                Cond::Eq("desired_event", json!(desired.event)),
            ]));
        let mut commit = ops.clone();
        commit.push(Op::Update(release));
        let service_at = ops.len();
        let closing = match finish {
            Some(f) if desired.event == own_event && !held.finished => f(&d),
            _ => Vec::new(),
        };
        let closes = !closing.is_empty()
            && commit.len() + closing.len() <= crate::ports::store::MAX_TRANSACTION_ITEMS;
        if closes {
            commit.extend(closing);
        }
        match deps.store.transact(commit).await? {
            Ok(()) => {
                held.finished |= closes;
                note(&mut held, own_event, &desired, d);
                return Ok(held);
            }
            Err(c) => {
                let old = match c.failed_at(service_at).flatten() {
                    Some(Record::Service(s)) => s.clone(),
                    _ => return Err(super::receipt::unexpected(&c).into()),
                };
                let still_mine = old.lease.as_ref().is_some_and(|l| l.holder == holder);
                // What was applied is true either way: record it; keep the lease only if it
                // is still ours, and go on with the desired state that moved.
                let keep = applied(runs.unwrap_or_else(|| Update::new(key.clone())))
                    .set("lease_until", Timestamp::now().plus(deps.lease).as_str())
                    .when(Cond::Eq("lease_holder", json!(holder)));
                if still_mine {
                    ops.push(Op::Update(keep));
                }
                deps.store
                    .transact(ops)
                    .await?
                    .map_err(|c| super::receipt::unexpected(&c))?;
                if matches!(d.outcome, DeployOutcome::Updated | DeployOutcome::Unchanged) {
                    last_deployed = image
                        .digest
                        .as_ref()
                        .map(|g| (g.to_string(), image.tag.as_ref().map(ToString::to_string)));
                }
                note(&mut held, own_event, &desired, d);
                match (still_mine, old.desired) {
                    (true, Some(next)) => desired = next,
                    _ => break,
                }
            }
        }
    }
    // Out of rounds, or the lease was lost: what is still desired waits for the next delivery
    // or the reconcile, which finds desired and applied apart.
    release(deps.store, &key, holder).await?;
    Ok(held)
}

/// Gives the lease back if this holder still has it.
pub async fn release(store: &dyn Store, key: &Key, holder: &str) -> Result<(), StoreError> {
    let u = Update::new(key.clone())
        .remove("lease_holder")
        .remove("lease_until")
        .when(Cond::Eq("lease_holder", json!(holder)));
    // Refused: someone else holds it now, which is theirs to give back.
    let _ = store.transact(vec![Op::Update(u)]).await?;
    Ok(())
}

/// A holder gives up after this many rounds (each a newer push that arrived while it applied
/// the previous one) and leaves the rest to the next delivery or the reconcile, so that one
/// delivery stays within its function's timeout.
const MAX_ROUNDS: usize = 4;

fn note(held: &mut Held, own_event: &str, desired: &Desired, d: Deployment) {
    if desired.event == own_event && held.own.is_none() {
        held.own = Some(d);
    } else {
        held.carried.push(d);
    }
}

impl Proposal {
    /// The desired state this proposal writes for `t`.
    pub fn desired(&self, t: &Target) -> Desired {
        Desired {
            event: self.event.clone(),
            image: self.image.to_string(),
            order: self.order.clone(),
            container: t.container.clone(),
            stage: t.stage.clone(),
            replicas: t.replicas.iter().take(MAX_REPLICAS).cloned().collect(),
        }
    }
}
