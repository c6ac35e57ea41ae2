//! Held deployments that people or an earlier stage let go (issue 23): a rule's `approval`
//! holds its deployments until enough distinct people approve them, and its `after` until the
//! digest's deployment to a service of that stage completed and soaked without failing.
//!
//! Each held deployment of one push to one service is one record (`keys::gate_sk`) with an id a
//! person can type. Every change to it is conditional on the version it read, so concurrent
//! approvals each count once and exactly one of them applies it; retried ones find their vote
//! counted. What lets it go goes through the service's door (`deploy::deploy_all`) like any
//! push, so a newer push that went first wins there too. What stops it (a denial, its deadline,
//! a newer push for the service, a quarantine or delete of the digest, a failure of the earlier
//! stage) is recorded on it, in the repository's history, and notified.

use serde::Serialize;
use serde_json::{Map, json};
use sha2::{Digest as _, Sha256};

use super::converge::{Door, Proposal, hold, holder_id, knock};
use super::deployments::deployment_ops;
use super::deps::{Deps, PipelineError};
use super::history::{Decided, EntryKind, decision_op};
use super::receipt::MAX_ATTEMPTS;
pub use crate::model::approval::{Decision, DecisionError};
use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::ecs_outcome::EcsOutcomeState;
use crate::model::event::{Action, ImageEvent, Provider, Timestamp};
use crate::model::notice::{Notice, NoticeKind};
use crate::model::records::{GateRecord, GateStatus, ImageStatus, Record, StageMark};
use crate::model::reference::ImageRef;
use crate::model::rules::{Target, format_duration};
use crate::ports::deployer::Unguarded;
use crate::ports::store::keys;
use crate::ports::store::ops::{Cond, Op, Update};
use crate::ports::store::{Key, Store, StoreError};

/// The most characters of a principal kept (an IAM role session ARN is well under it).
const MAX_PRINCIPAL: usize = 512;

/// The approvals a held deployment needs and has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approvals {
    pub required: u32,
    pub approvers: Vec<String>,
}

/// The answer to a decision: where the held deployment stands now.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionResult {
    pub id: String,
    pub decision: Decision,
    pub by: String,
    /// `awaiting_approval` (more approvals needed), `applied`, `denied`, or `superseded` when
    /// the service's door found a newer push had gone first.
    pub status: GateStatus,
    /// False when `by` had approved already: nothing changed.
    pub counted: bool,
    pub cluster: String,
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub image: String,
    pub approvals: Approvals,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// The deployment, once applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
    pub reason: String,
    /// What to notify; sent by the caller.
    #[serde(skip)]
    pub notices: Vec<Notice>,
}

/// One held deployment, as `imagehook waiting` and the API list it.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub id: String,
    pub status: GateStatus,
    pub cluster: String,
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub image: String,
    pub pushed_at: String,
    pub since: String,
    /// Why it waits and what lets it go.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<Approvals>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
}

/// What happened to one held deployment when a stage outcome or the reconcile looked at it.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub id: String,
    pub cluster: String,
    pub service: String,
    pub status: GateStatus,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
}

/// The id of the held deployment of one push to one service: the same for every delivery of
/// the push, short enough to type.
pub fn hold_id(event: &str, cluster: &str, service: &str) -> String {
    let mut h = Sha256::new();
    // Each part after its length: no two (event, cluster, service) hash the same text.
    for part in [event, cluster, service] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())[..12].to_owned()
}

fn gate_key(id: &str) -> Key {
    Key::new(keys::GATES_PK, keys::gate_sk(id))
}

/// Every held deployment, decided or not (decided ones expire with the table's TTL).
async fn all_gates(store: &dyn Store) -> Result<Vec<GateRecord>, StoreError> {
    Ok(store
        .query(keys::GATES_PK, keys::GATES_PREFIX)
        .await?
        .into_iter()
        .filter_map(Record::gate)
        .collect())
}

async fn gate(store: &dyn Store, id: &str) -> Result<Option<GateRecord>, StoreError> {
    Ok(store.get(&gate_key(id)).await?.and_then(Record::gate))
}

/// What to run to approve or deny.
fn how_to_decide(id: &str) -> String {
    format!(
        "approve with `imagehook approve {id}` (or POST /approvals/{id}/approve), deny with `imagehook deny {id}`"
    )
}

fn awaiting_reason(required: u32, have: usize, deadline: &str, id: &str) -> String {
    format!(
        "awaiting approval ({have} of {required}) until {deadline}: {}",
        how_to_decide(id)
    )
}

fn stage_reason(after: &str, soak_secs: u64) -> String {
    if soak_secs == 0 {
        format!("waiting for stage {after}: deployed once its deployment of the digest completes")
    } else {
        format!(
            "waiting for stage {after}: deployed once its deployment of the digest completes and runs {} without failing",
            format_duration(soak_secs)
        )
    }
}

/// A push to hold for one service.
pub(super) struct Pending<'a> {
    pub target: Target,
    /// The push's reference, with its tag and digest.
    pub image: &'a ImageRef,
    /// `provider#id` of the push, its sender time, ordering key and first receipt time.
    pub event: String,
    pub pushed_at: String,
    pub order: String,
    pub received_at: Option<String>,
}

/// How an earlier stage ran a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StageState {
    /// No service of the stage finished deploying it yet.
    NotYet,
    /// Completed; soaking until then.
    Soaking(String),
    Passed,
    Failed(String),
}

async fn stage_state(
    store: &dyn Store,
    after: &str,
    digest: &str,
    soak_secs: u64,
    now: &Timestamp,
) -> Result<StageState, StoreError> {
    let marks: Vec<StageMark> = store
        .query(&keys::stage_pk(after), &keys::stage_marks_prefix(digest))
        .await?
        .into_iter()
        .filter_map(Record::stage_mark)
        .collect();
    if let Some(f) = marks
        .iter()
        .find(|m| m.state == EcsOutcomeState::Failed.as_str())
    {
        return Ok(StageState::Failed(format!(
            "the deployment of {digest} to {after} ({}/{}) failed at {}{}: not promoted",
            f.cluster,
            f.service,
            f.at,
            f.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )));
    }
    // The soak counts from the first completion in the stage.
    let Some(first) = marks
        .iter()
        .filter(|m| m.state == EcsOutcomeState::Completed.as_str())
        .map(|m| m.at.as_str())
        .min()
    else {
        return Ok(StageState::NotYet);
    };
    let Ok(done) = Timestamp::parse(first) else {
        return Err(StoreError::Corrupt(format!(
            "a stage mark of {after} has an unreadable time {first:?}"
        )));
    };
    let until = done.plus(std::time::Duration::from_secs(soak_secs));
    Ok(if until.as_str() <= now.as_str() {
        StageState::Passed
    } else {
        StageState::Soaking(until.as_str().to_owned())
    })
}

/// Holds the gated ones of `pending`: each becomes a held deployment waiting for its stage or
/// its approvals, and an older one still waiting for the same service is superseded. Answers
/// the targets to deploy now (their gate is open, or their stage already passed and they need
/// no approval) and the deployments of those held.
pub(super) async fn hold_gated(
    deps: &Deps<'_>,
    pending: Vec<Pending<'_>>,
) -> Result<(Vec<Target>, Vec<Deployment>), PipelineError> {
    let mut go = Vec::new();
    let mut held = Vec::new();
    let now = Timestamp::now();
    let mut existing: Option<Vec<GateRecord>> = None;
    for p in pending {
        let t = &p.target;
        if t.gate.is_open() {
            go.push(p.target);
            continue;
        }
        let digest = p
            .image
            .digest
            .as_ref()
            .map_or_else(|| p.image.deployable(), ToString::to_string);
        let stage = match &t.gate.after {
            Some(a) => stage_state(deps.store, &a.stage, &digest, a.soak_secs, &now).await?,
            None => StageState::Passed,
        };
        let id = hold_id(&p.event, &t.cluster, &t.service);
        let (status, reason) = match (&stage, t.gate.approval) {
            (StageState::Failed(why), _) => {
                held.push(
                    Deployment::new(t, p.image, DeployOutcome::Skipped).with_reason(why.clone()),
                );
                continue;
            }
            (StageState::Passed, None) => {
                go.push(p.target);
                continue;
            }
            (StageState::Passed, Some(a)) => {
                let deadline = now.plus(std::time::Duration::from_secs(a.expires_secs));
                (
                    GateStatus::AwaitingApproval,
                    awaiting_reason(a.required, 0, deadline.as_str(), &id),
                )
            }
            (StageState::NotYet | StageState::Soaking(_), _) => {
                let a = t
                    .gate
                    .after
                    .as_ref()
                    .map_or(("", 0), |a| (a.stage.as_str(), a.soak_secs));
                (GateStatus::WaitingForStage, stage_reason(a.0, a.1))
            }
        };
        let mut item = Map::new();
        let approval = t.gate.approval;
        let deadline = (status == GateStatus::AwaitingApproval).then(|| {
            now.plus(std::time::Duration::from_secs(
                approval.map_or(0, |a| a.expires_secs),
            ))
        });
        for (k, v) in [
            ("type", json!("gate")),
            ("id", json!(id)),
            ("status", json!(status.as_str())),
            ("cluster", json!(t.cluster)),
            ("service", json!(t.service)),
            ("image", json!(p.image.to_string())),
            ("digest", json!(digest)),
            ("event", json!(p.event)),
            ("pushed_at", json!(p.pushed_at)),
            ("order", json!(p.order)),
            ("required", json!(approval.map_or(0, |a| a.required))),
            ("approvers", json!(Vec::<String>::new())),
            (
                "expires_secs",
                json!(approval.map_or(0, |a| a.expires_secs)),
            ),
            (
                "soak_secs",
                json!(t.gate.after.as_ref().map_or(0, |a| a.soak_secs)),
            ),
            ("reason", json!(reason)),
            ("created_at", json!(now.as_str())),
            ("version", json!(1)),
            ("expires_at", json!(ttl(deps, &now))),
        ] {
            item.insert(k.into(), v);
        }
        for (k, v) in [
            ("container", t.container.clone()),
            ("stage", t.stage.clone()),
            ("after", t.gate.after.as_ref().map(|a| a.stage.clone())),
            ("received_at", p.received_at.clone()),
            ("deadline", deadline.map(|d| d.as_str().to_owned())),
        ] {
            if let Some(v) = v {
                item.insert(k.into(), json!(v));
            }
        }
        let mut written = None;
        let mut settled = false;
        for _ in 0..MAX_ATTEMPTS {
            let gates = match &existing {
                Some(g) => g,
                None => existing.insert(all_gates(deps.store).await?),
            };
            // An older push still waiting for this service never goes: this one is newer.
            let mut ops = vec![Op::Put {
                key: gate_key(&id),
                item: item.clone(),
                cond: Some(Cond::ItemAbsent),
            }];
            let why = format!("superseded by a newer push ({}), held as {id}", p.event);
            let mut overtaken = Vec::new();
            for old in gates.iter().filter(|g| {
                g.cluster == t.cluster
                    && g.service == t.service
                    && g.status.is_waiting()
                    && g.order < p.order
                    && g.id != id
            }) {
                ops.push(Op::Update(
                    versioned(old)
                        .set("status", GateStatus::Superseded.as_str())
                        .set("reason", why.as_str())
                        .set("decided_at", now.as_str()),
                ));
                overtaken.push(old.id.as_str());
                if let Ok(image) = image_of(old) {
                    let by = p.event.as_str();
                    let e = entry(old, &image, EntryKind::Stop, "superseded", &why, by);
                    ops.push(decision_op(&e, &now));
                }
            }
            if ops.len() > crate::ports::store::MAX_TRANSACTION_ITEMS {
                ops.truncate(crate::ports::store::MAX_TRANSACTION_ITEMS);
            }
            match deps.store.transact(ops).await? {
                Ok(()) => {
                    let outcome = match status {
                        GateStatus::AwaitingApproval => DeployOutcome::AwaitingApproval,
                        _ => DeployOutcome::WaitingForStage,
                    };
                    let reason = if overtaken.is_empty() {
                        reason.clone()
                    } else {
                        format!(
                            "{reason}; supersedes {}, an older push held for this service",
                            overtaken.join(", ")
                        )
                    };
                    written = Some(Deployment::new(t, p.image, outcome).with_reason(reason));
                    break;
                }
                Err(_) => {
                    // A redelivery of the push: its hold is on record, as it stands now.
                    if let Some(g) = gate(deps.store, &id).await? {
                        written = outcome_of(g.status).map(|o| {
                            Deployment::new(t, p.image, o).with_reason(g.reason.unwrap_or_default())
                        });
                        settled = written.is_none();
                        break;
                    }
                    // An older hold changed meanwhile: read them again.
                    existing = None;
                }
            }
        }
        if settled {
            // Applied (or being applied) since: its apply recorded the deployment.
            continue;
        }
        let Some(d) = written else {
            return Err(StoreError::Unavailable {
                operation: "TransactWriteItems",
                message: "the held deployment could not be written: the holds of the service kept changing; retry".into(),
                source: None,
            }
            .into());
        };
        let mut d = d;
        d.hold_id = Some(id);
        held.push(d);
    }
    Ok((go, held))
}

/// The outcome a redelivered push's answer shows for its hold in `status`; none once it is
/// applied, whose deployment is on record as what was applied.
fn outcome_of(status: GateStatus) -> Option<DeployOutcome> {
    match status {
        GateStatus::AwaitingApproval => Some(DeployOutcome::AwaitingApproval),
        GateStatus::WaitingForStage => Some(DeployOutcome::WaitingForStage),
        GateStatus::Applying | GateStatus::Applied => None,
        GateStatus::Superseded => Some(DeployOutcome::Superseded),
        GateStatus::Denied
        | GateStatus::Expired
        | GateStatus::Cancelled
        | GateStatus::StageFailed => Some(DeployOutcome::Skipped),
    }
}

/// When a held record leaves the table: after the longest wait a rule allows and the receipts'
/// time to live, so a late decision still finds it decided.
fn ttl(deps: &Deps<'_>, now: &Timestamp) -> i64 {
    let wait = i64::try_from(crate::model::rules::MAX_WAIT_SECS).unwrap_or(i64::MAX);
    now.unix_seconds()
        .saturating_add(wait.saturating_mul(2))
        .saturating_add(i64::from(deps.receipt_ttl_days) * super::deps::SECONDS_PER_DAY)
}

/// A change to a held deployment, only if nobody changed it since it was read.
fn versioned(g: &GateRecord) -> Update {
    Update::new(gate_key(&g.id))
        .add("version", 1)
        .when(Cond::Eq("version", json!(g.version)))
}

/// Writes `u` with the history entry; false when the hold changed since it was read.
async fn commit(deps: &Deps<'_>, u: Update, history: Option<Op>) -> Result<bool, StoreError> {
    let mut ops = vec![Op::Update(u)];
    ops.extend(history);
    Ok(deps.store.transact(ops).await?.is_ok())
}

fn image_of(g: &GateRecord) -> Result<ImageRef, StoreError> {
    ImageRef::parse(&g.image)
        .map_err(|_| StoreError::Corrupt(format!("held deployment {} names {:?}", g.id, g.image)))
}

fn entry<'a>(
    g: &'a GateRecord,
    image: &'a ImageRef,
    kind: EntryKind,
    outcome: &'a str,
    reason: &'a str,
    by: &'a str,
) -> Decided<'a> {
    Decided {
        kind,
        id: &g.id,
        image,
        push_event: &g.event,
        pushed_at: &g.pushed_at,
        stage: g.stage.as_deref(),
        cluster: &g.cluster,
        service: &g.service,
        outcome,
        reason,
        by,
        task_definition: None,
    }
}

fn notice(g: &GateRecord, kind: NoticeKind, detail: String) -> Notice {
    Notice {
        kind,
        service: format!("{}/{}", g.cluster, g.service),
        image: image_of(g).map_or_else(|_| g.image.clone(), |i| i.deployable()),
        stage: g.stage.clone(),
        detail: Some(detail),
        event_id: Some(g.event.clone()),
    }
}

/// Why a waiting hold can no longer go, if it cannot: its digest quarantined or deleted, its
/// deadline passed, or a newer push for the service proposed or held.
async fn stopped(
    deps: &Deps<'_>,
    g: &GateRecord,
    now: &Timestamp,
) -> Result<Option<(GateStatus, String)>, StoreError> {
    let image = image_of(g)?;
    if let Some(digest) = &image.digest {
        let key = Key::new(
            keys::image_pk(image.registry.as_str(), image.repository.as_str()),
            keys::image_sk(digest.as_str()),
        );
        if let Some(Record::Image(i)) = deps.store.get(&key).await? {
            match (i.status, &i.quarantine) {
                (_, Some(q)) => {
                    return Ok(Some((
                        GateStatus::Cancelled,
                        format!("cancelled: the digest was quarantined ({})", q.reason),
                    )));
                }
                (Some(ImageStatus::Deleted), _) => {
                    return Ok(Some((
                        GateStatus::Cancelled,
                        "cancelled: the digest was deleted".into(),
                    )));
                }
                _ => {}
            }
            // Quarantined, or deleted, and back since: it was cancelled then, and a release
            // or a new push does not revive it (a new push is held anew).
            let since = g.created_at.as_str();
            if i.released_at.as_deref().is_some_and(|t| t > since) {
                return Ok(Some((
                    GateStatus::Cancelled,
                    "cancelled: the digest was quarantined while this waited (released since: push it again to deploy it)".into(),
                )));
            }
            if i.deleted_at.as_deref().is_some_and(|t| t > since) {
                return Ok(Some((
                    GateStatus::Cancelled,
                    "cancelled: the digest was deleted while this waited".into(),
                )));
            }
        }
    }
    if g.status == GateStatus::AwaitingApproval
        && let Some(deadline) = g.deadline.as_deref()
        && deadline <= now.as_str()
    {
        return Ok(Some((
            GateStatus::Expired,
            format!(
                "expired at {deadline} with {} of {} approvals",
                g.approvers.len(),
                g.required
            ),
        )));
    }
    let record = super::deployments::service_record(deps.store, &g.cluster, &g.service).await?;
    if let Some(d) = record.desired.filter(|d| d.order > g.order) {
        return Ok(Some((
            GateStatus::Superseded,
            format!(
                "superseded: a newer push ({}) is what {}/{} should run",
                d.event, g.cluster, g.service
            ),
        )));
    }
    let newer = all_gates(deps.store)
        .await?
        .into_iter()
        .filter(|o| o.cluster == g.cluster && o.service == g.service && o.order > g.order)
        .max_by(|a, b| a.order.cmp(&b.order));
    Ok(newer.map(|n| {
        (
            GateStatus::Superseded,
            format!("superseded by a newer push ({}), held as {}", n.event, n.id),
        )
    }))
}

/// Records that a hold stops (`status`, why), with its history entry; the notice to send, or
/// none when the hold changed meanwhile.
async fn stop(
    deps: &Deps<'_>,
    g: &GateRecord,
    status: GateStatus,
    reason: &str,
    by: &str,
) -> Result<Option<Notice>, StoreError> {
    let now = Timestamp::now();
    let image = image_of(g)?;
    let kind = match status {
        GateStatus::Expired => EntryKind::Expiry,
        GateStatus::Denied => EntryKind::Denial,
        _ => EntryKind::Stop,
    };
    let u = versioned(g)
        .set("status", status.as_str())
        .set("reason", reason)
        .set("decided_at", now.as_str())
        .set("decided_by", by);
    let h = decision_op(&entry(g, &image, kind, status.as_str(), reason, by), &now);
    Ok(commit(deps, u, Some(h)).await?.then(|| {
        notice(
            g,
            NoticeKind::PromotionStopped,
            format!("{}: {reason}", g.id),
        )
    }))
}

/// Approves or denies held deployment `id` as `by` (a person's name, or the IAM principal
/// the API route passes). An approval counts once per approver; the one that completes the
/// count applies the deployment through the service's door, once, whichever of several
/// concurrent approvals it is. A denial stops it. Unknown ids, holds already decided, expired,
/// superseded or cancelled, and holds still waiting for their stage are refused
/// ([`DecisionError`]).
pub async fn decide(
    deps: &Deps<'_>,
    id: &str,
    decision: Decision,
    by: &str,
) -> Result<DecisionResult, PipelineError> {
    let by = by.trim();
    if by.is_empty() || by.len() > MAX_PRINCIPAL {
        return Err(DecisionError::NoPrincipal.into());
    }
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(DecisionError::UnknownId(id).into());
    }
    for _ in 0..MAX_ATTEMPTS {
        let g = gate(deps.store, &id)
            .await?
            .ok_or_else(|| DecisionError::UnknownId(id.clone()))?;
        let answer =
            |g: &GateRecord, status: GateStatus, counted: bool, reason: String| DecisionResult {
                id: g.id.clone(),
                decision,
                by: by.to_owned(),
                status,
                counted,
                cluster: g.cluster.clone(),
                service: g.service.clone(),
                stage: g.stage.clone(),
                image: g.image.clone(),
                approvals: Approvals {
                    required: g.required,
                    approvers: g.approvers.clone(),
                },
                deadline: g.deadline.clone(),
                deployment: None,
                reason,
                notices: Vec::new(),
            };
        if decision == Decision::Approve
            && g.approvers.iter().any(|a| a == by)
            && g.status == GateStatus::Applying
            && stale_apply(deps, &g)
        {
            // The apply this approval triggered failed half-way (ECS or the store answered a
            // fault): the approver's retry resumes it, as the reconcile would.
            let moved = apply(deps, &g, by).await?;
            let mut r = answer(&g, moved.status, false, moved.reason);
            r.notices = moved.notices;
            r.deployment = moved.deployment;
            return Ok(r);
        }
        if decision == Decision::Approve && g.approvers.iter().any(|a| a == by) {
            let reason = format!(
                "{by} approved {} already: counted once; {}",
                g.id,
                g.reason.clone().unwrap_or_default()
            );
            return Ok(answer(&g, g.status, false, reason));
        }
        match g.status {
            GateStatus::AwaitingApproval => {}
            GateStatus::WaitingForStage => {
                return Err(DecisionError::NotAwaitingApproval {
                    id: g.id.clone(),
                    stage: g.after.clone().unwrap_or_default(),
                }
                .into());
            }
            other => {
                return Err(DecisionError::Closed {
                    id: g.id.clone(),
                    status: other,
                    reason: g.reason.clone().unwrap_or_default(),
                }
                .into());
            }
        }
        let now = Timestamp::now();
        if let Some((status, reason)) = stopped(deps, &g, &now).await? {
            if stop(deps, &g, status, &reason, by).await?.is_none() {
                continue;
            }
            return Err(DecisionError::Closed {
                id: g.id.clone(),
                status,
                reason,
            }
            .into());
        }
        let image = image_of(&g)?;
        if decision == Decision::Deny {
            let reason = format!("denied by {by}");
            let Some(n) = stop(deps, &g, GateStatus::Denied, &reason, by).await? else {
                continue;
            };
            let mut r = answer(&g, GateStatus::Denied, true, reason);
            r.notices.push(n);
            return Ok(r);
        }
        let mut approvers = g.approvers.clone();
        approvers.push(by.to_owned());
        let have = approvers.len();
        let complete = u32::try_from(have).unwrap_or(u32::MAX) >= g.required;
        let (status, reason) = if complete {
            (
                GateStatus::Applying,
                format!("approved by {}: deploying", approvers.join(", ")),
            )
        } else {
            (
                GateStatus::AwaitingApproval,
                awaiting_reason(
                    g.required,
                    have,
                    g.deadline.as_deref().unwrap_or_default(),
                    &g.id,
                ),
            )
        };
        let u = versioned(&g)
            .set("approvers", json!(approvers))
            .set("status", status.as_str())
            .set("reason", reason.as_str());
        let u = if complete {
            u.set("decided_by", by).set("decided_at", now.as_str())
        } else {
            u
        };
        let vote = format!("approved by {by} ({have} of {})", g.required);
        let h = decision_op(
            &entry(&g, &image, EntryKind::Approval, status.as_str(), &vote, by),
            &now,
        );
        if !commit(deps, u, Some(h)).await? {
            // Another decision came first: read again and count on top of it.
            continue;
        }
        let mut g = g;
        g.approvers = approvers;
        g.version += 1;
        g.status = status;
        if !complete {
            return Ok(answer(&g, status, true, reason));
        }
        let moved = apply(deps, &g, by).await?;
        let mut r = answer(&g, moved.status, true, moved.reason);
        r.notices = moved.notices;
        r.deployment = moved.deployment;
        return Ok(r);
    }
    Err(StoreError::Unavailable {
        operation: "TransactWriteItems",
        message: format!("{id} kept changing while the decision was recorded: retry"),
        source: None,
    }
    .into())
}

/// A hold in `applying` whose apply has had the service's lease time to finish: its process
/// died or failed, and it may be resumed (the service's door keeps the deployment to once).
fn stale_apply(deps: &Deps<'_>, g: &GateRecord) -> bool {
    let since = g.decided_at.as_deref().unwrap_or_default();
    Timestamp::parse(since)
        .map(|t| t.plus(deps.lease).as_str() <= Timestamp::now().as_str())
        .unwrap_or(true)
}

/// What applying a hold did.
struct Applied {
    status: GateStatus,
    reason: String,
    deployment: Option<Deployment>,
    notices: Vec<Notice>,
}

/// The target a hold is deployed to: its rule as it is now (the policy may have changed while
/// it waited), or the service as the hold names it if no rule does any more.
fn target_of(deps: &Deps<'_>, g: &GateRecord, image: &ImageRef) -> Target {
    deps.rules
        .targets(image)
        .into_iter()
        .find(|t| t.cluster == g.cluster && t.service == g.service)
        .unwrap_or_else(|| Target {
            container: g.container.clone(),
            stage: g.stage.clone(),
            ..Target::service(&g.cluster, &g.service)
        })
}

/// Deploys a hold in `applying` through the service's door, as the push it holds, and
/// records how that went on it. `by` is who (or what) let it go.
async fn apply(deps: &Deps<'_>, g: &GateRecord, by: &str) -> Result<Applied, PipelineError> {
    let image = image_of(g)?;
    let mut target = target_of(deps, g, &image);
    target.container = g.container.clone().or(target.container);
    let bad = || {
        StoreError::Corrupt(format!(
            "held deployment {} names event {:?}",
            g.id, g.event
        ))
    };
    let (provider, event_id) = g.event.split_once('#').ok_or_else(bad)?;
    let provider = Provider::parse(provider).ok_or_else(bad)?;
    let occurred = Timestamp::parse(&g.pushed_at).map_err(|_| bad())?;
    // Recorded as the push it holds: the deployment item it wrote while held is replaced by
    // what was applied, and the push's history entry reads it in place of the hold.
    let push = ImageEvent::new(
        event_id.to_owned(),
        provider,
        Action::Push,
        image.clone(),
        occurred,
    );
    let proposal = Proposal {
        event: g.event.clone(),
        image: image.clone(),
        order: g.order.clone(),
    };
    // Not the push's name: the holder records what it applied as carried for that push
    // (`history::applied_op`), and the push's receipt is left as it is.
    let own = ["hold#", g.id.as_str()].concat();
    let d = if deps.deployer.dry_run() {
        let d = deps
            .deployer
            .apply(&image, &target, false, &Unguarded)
            .await?;
        let at = Timestamp::now();
        let mut ops = deployment_ops(&push, &d, &at).0;
        ops.push(super::history::applied_op(&push, &d, &own, &at));
        deps.store
            .transact(ops)
            .await?
            .map_err(|c| super::receipt::unexpected(&c))?;
        d
    } else {
        let holder = holder_id(&own);
        match knock(deps.store, &target, &proposal, &holder, deps.lease).await? {
            Door::Holder { resume } => {
                let desired = proposal.desired(&target);
                let held = hold(deps, &target, &holder, resume, &own, desired, None).await?;
                let ours = |d: &Deployment| d.image == image.deployable();
                match held.carried.into_iter().rev().find(ours).or(held.own) {
                    Some(d) => d,
                    None => Deployment::new(&target, &image, DeployOutcome::Superseded)
                        .with_reason("a newer push moved the service on while this was applied"),
                }
            }
            Door::Queued { carrier } => {
                // Another holder applies the newest desired state, this one: it records the
                // deployment; the hold stays `applying` until one of its applies sees it done.
                return Ok(Applied {
                    status: GateStatus::Applying,
                    reason: format!(
                        "{}/{} is being deployed by {carrier}, which applies this push",
                        g.cluster, g.service
                    ),
                    deployment: None,
                    notices: Vec::new(),
                });
            }
            Door::Superseded { winner, .. } => {
                Deployment::new(&target, &image, DeployOutcome::Superseded).with_reason(format!(
                    "a newer push ({winner}) is what {}/{} should run: not applied",
                    g.cluster, g.service
                ))
            }
        }
    };
    let d = Some(d);
    let (status, reason) = match &d {
        Some(d) if d.outcome == DeployOutcome::Superseded => (
            GateStatus::Superseded,
            d.reason.clone().unwrap_or_else(|| "superseded".into()),
        ),
        Some(d) => (
            GateStatus::Applied,
            format!(
                "{} by {by}: {}{}",
                if g.required > 0 {
                    "approved"
                } else {
                    "promoted"
                },
                d.outcome.as_str(),
                d.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        ),
        None => (GateStatus::Applied, format!("applied by {by}")),
    };
    let now = Timestamp::now();
    let outcome = d.as_ref().map_or("applied", |d| d.outcome.as_str());
    let mut u = Update::new(gate_key(&g.id))
        .add("version", 1)
        .set("status", status.as_str())
        .set("reason", reason.as_str())
        .set("outcome", outcome)
        .when(Cond::Eq("status", json!(GateStatus::Applying.as_str())));
    if let Some(td) = d.as_ref().and_then(|d| d.task_definition.as_deref()) {
        u = u.set("task_definition", td);
    }
    let kind = if g.required > 0 {
        EntryKind::Approval
    } else {
        EntryKind::Promotion
    };
    let mut e = entry(g, &image, kind, outcome, &reason, by);
    e.task_definition = d.as_ref().and_then(|d| d.task_definition.as_deref());
    let h = decision_op(&e, &now);
    // Refused: another apply of the same hold (the reconcile resuming one) recorded it first.
    commit(deps, u, Some(h)).await?;
    let mut notices = Vec::new();
    match d.as_ref().map(|d| (d.outcome, d)) {
        _ if status == GateStatus::Superseded => {
            notices.push(notice(
                g,
                NoticeKind::PromotionStopped,
                format!("{}: {reason}", g.id),
            ));
        }
        Some((DeployOutcome::Updated, d)) => notices.push(Notice {
            kind: NoticeKind::DeploymentStarted,
            service: format!("{}/{}", d.cluster, d.service),
            image: d.image.clone(),
            stage: d.stage.clone(),
            detail: Some(reason.clone()),
            event_id: Some(g.event.clone()),
        }),
        Some((DeployOutcome::Failed, d)) => notices.push(Notice {
            kind: NoticeKind::DeploymentFailed,
            service: format!("{}/{}", d.cluster, d.service),
            image: d.image.clone(),
            stage: d.stage.clone(),
            detail: d.reason.clone(),
            event_id: Some(g.event.clone()),
        }),
        _ => {}
    }
    Ok(Applied {
        status,
        reason,
        deployment: d,
        notices,
    })
}

/// Lets a hold whose stage passed go: on to its approvals (notified with what to run), or,
/// needing none, deployed. `None` when it changed meanwhile.
async fn promote(
    deps: &Deps<'_>,
    g: &GateRecord,
    by: &str,
) -> Result<Option<(Moved, Vec<Notice>)>, PipelineError> {
    let now = Timestamp::now();
    let image = image_of(g)?;
    let moved = |status, reason: String, deployment| Moved {
        id: g.id.clone(),
        cluster: g.cluster.clone(),
        service: g.service.clone(),
        status,
        reason,
        deployment,
    };
    let after = g.after.clone().unwrap_or_default();
    if g.required > 0 {
        let deadline = now.plus(std::time::Duration::from_secs(g.expires_secs));
        let reason = awaiting_reason(g.required, 0, deadline.as_str(), &g.id);
        let u = versioned(g)
            .set("status", GateStatus::AwaitingApproval.as_str())
            .set("deadline", deadline.as_str())
            .set("reason", reason.as_str());
        let passed = format!("stage {after} ran the digest healthily: {reason}");
        let h = decision_op(
            &entry(
                g,
                &image,
                EntryKind::Promotion,
                GateStatus::AwaitingApproval.as_str(),
                &passed,
                by,
            ),
            &now,
        );
        if !commit(deps, u, Some(h)).await? {
            return Ok(None);
        }
        let n = notice(
            g,
            NoticeKind::ApprovalRequired,
            format!("{}: {reason}", g.id),
        );
        return Ok(Some((
            moved(GateStatus::AwaitingApproval, reason, None),
            vec![n],
        )));
    }
    let u = versioned(g)
        .set("status", GateStatus::Applying.as_str())
        .set("decided_by", by)
        .set("decided_at", now.as_str())
        .set(
            "reason",
            format!("stage {after} ran the digest healthily: deploying"),
        );
    if !commit(deps, u, None).await? {
        return Ok(None);
    }
    let a = apply(deps, g, by).await?;
    Ok(Some((moved(a.status, a.reason, a.deployment), a.notices)))
}

/// Looks at one waiting hold again: stops it if it can no longer go, promotes it if its stage
/// passed; `None` when nothing changed.
async fn advance(
    deps: &Deps<'_>,
    g: &GateRecord,
    by: &str,
    now: &Timestamp,
) -> Result<Option<(Moved, Vec<Notice>)>, PipelineError> {
    let moved = |status, reason: String| Moved {
        id: g.id.clone(),
        cluster: g.cluster.clone(),
        service: g.service.clone(),
        status,
        reason,
        deployment: None,
    };
    if let Some((status, reason)) = stopped(deps, g, now).await? {
        return Ok(stop(deps, g, status, &reason, by)
            .await?
            .map(|n| (moved(status, reason), vec![n])));
    }
    if g.status != GateStatus::WaitingForStage {
        return Ok(None);
    }
    let Some(after) = g.after.as_deref() else {
        return Ok(None);
    };
    match stage_state(deps.store, after, &g.digest, g.soak_secs, now).await? {
        StageState::Failed(why) => Ok(stop(deps, g, GateStatus::StageFailed, &why, by)
            .await?
            .map(|n| (moved(GateStatus::StageFailed, why), vec![n]))),
        StageState::Passed => promote(deps, g, by).await,
        StageState::NotYet | StageState::Soaking(_) => Ok(None),
    }
}

/// After an ECS deployment outcome the outcomes path recorded (`answer`): if the service has a
/// stage, how it ran the digest is marked for the stages that wait for it, and the holds
/// waiting for that stage and digest move on (promoted, or stopped by a failure). A soak is
/// left to the scheduled reconcile.
pub async fn after_outcome(
    deps: &Deps<'_>,
    answer: &serde_json::Value,
) -> Result<(Vec<Moved>, Vec<Notice>), PipelineError> {
    let s = |k: &str| answer.get(k).and_then(serde_json::Value::as_str);
    let (Some("recorded"), Some(state), Some(cluster), Some(service), Some(digest)) = (
        s("outcome"),
        s("state"),
        s("cluster"),
        s("service"),
        s("digest"),
    ) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let failed = state == EcsOutcomeState::Failed.as_str();
    if !failed && state != EcsOutcomeState::Completed.as_str() {
        return Ok((Vec::new(), Vec::new()));
    }
    let Some(stage) = deps.rules.stage_of(cluster, service) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let now = Timestamp::now();
    let mut item = Map::new();
    for (k, v) in [
        ("type", json!("stage_mark")),
        ("stage", json!(stage)),
        ("digest", json!(digest)),
        ("cluster", json!(cluster)),
        ("service", json!(service)),
        ("state", json!(state)),
        ("at", json!(now.as_str())),
        ("expires_at", json!(ttl(deps, &now))),
    ] {
        item.insert(k.into(), v);
    }
    if let Some(r) = s("reason").filter(|r| !r.is_empty()) {
        item.insert("reason".into(), json!(r));
    }
    let key = Key::new(
        keys::stage_pk(stage),
        keys::stage_mark_sk(digest, cluster, service),
    );
    // A failure stays: a later completion of another deployment of the service does not
    // make the stage healthy again for this digest.
    let cond = (!failed).then(|| {
        Cond::Or(vec![
            Cond::ItemAbsent,
            Cond::Ne("state", json!(EcsOutcomeState::Failed.as_str())),
        ])
    });
    let _ = deps
        .store
        .transact(vec![Op::Put { key, item, cond }])
        .await?;
    let by = format!(
        "ecs:{cluster}/{service}:{}",
        s("deployment_id").unwrap_or_default()
    );
    let mut moved = Vec::new();
    let mut notices = Vec::new();
    for g in all_gates(deps.store).await?.into_iter().filter(|g| {
        g.status == GateStatus::WaitingForStage
            && g.after.as_deref() == Some(stage)
            && g.digest == digest
    }) {
        if let Some((m, n)) = advance(deps, &g, &by, &now).await? {
            moved.push(m);
            notices.extend(n);
        }
    }
    Ok((moved, notices))
}

/// The scheduled reconcile's look at every hold: expired ones, and ones whose digest was
/// quarantined or deleted or whose service a newer push reached, are stopped; ones whose
/// stage soaked are promoted; an apply that died half-way is resumed.
pub async fn sweep(deps: &Deps<'_>) -> Result<(Vec<Moved>, Vec<Notice>), PipelineError> {
    let now = Timestamp::now();
    let mut moved = Vec::new();
    let mut notices = Vec::new();
    for g in all_gates(deps.store).await? {
        if g.status == GateStatus::Applying {
            if stale_apply(deps, &g) {
                let by = g.decided_by.clone().unwrap_or_else(|| "reconcile".into());
                let a = apply(deps, &g, &by).await?;
                notices.extend(a.notices);
                moved.push(Moved {
                    id: g.id.clone(),
                    cluster: g.cluster.clone(),
                    service: g.service.clone(),
                    status: a.status,
                    reason: a.reason,
                    deployment: a.deployment,
                });
            }
            continue;
        }
        if !g.status.is_waiting() {
            continue;
        }
        if let Some((m, n)) = advance(deps, &g, "reconcile", &now).await? {
            moved.push(m);
            notices.extend(n);
        }
    }
    Ok((moved, notices))
}

/// What waits, and why: every hold awaiting approval or its stage, oldest first. A hold whose
/// digest was quarantined or deleted since, or whose deadline passed, is listed with that
/// (the next decision or reconcile records it).
pub async fn waiting(deps: &Deps<'_>) -> Result<Vec<Waiting>, PipelineError> {
    let now = Timestamp::now();
    let mut out = Vec::new();
    let mut gates: Vec<GateRecord> = all_gates(deps.store)
        .await?
        .into_iter()
        .filter(|g| g.status.is_waiting())
        .collect();
    gates.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    for g in gates {
        let (status, mut reason) = match stopped(deps, &g, &now).await? {
            Some((status, why)) => (status, why),
            None => (g.status, g.reason.clone().unwrap_or_default()),
        };
        if status == GateStatus::WaitingForStage
            && let Some(after) = g.after.as_deref()
        {
            match stage_state(deps.store, after, &g.digest, g.soak_secs, &now).await? {
                StageState::Soaking(until) => {
                    reason = format!(
                        "stage {after} completed the digest; soaking until {until}, then promoted by the scheduled reconcile"
                    );
                }
                StageState::Passed => {
                    reason = format!(
                        "stage {after} ran the digest healthily: promoted by the next reconcile"
                    );
                }
                StageState::Failed(why) => reason = why,
                StageState::NotYet => {}
            }
        }
        out.push(Waiting {
            approvals: (g.required > 0).then(|| Approvals {
                required: g.required,
                approvers: g.approvers.clone(),
            }),
            soak: (g.soak_secs > 0).then(|| format_duration(g.soak_secs)),
            id: g.id,
            status,
            cluster: g.cluster,
            service: g.service,
            stage: g.stage,
            image: g.image,
            pushed_at: g.pushed_at,
            since: g.created_at,
            reason,
            deadline: g.deadline,
            after: g.after,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_id_is_short_stable_per_push_and_service_and_distinct_across_them() {
        let a = hold_id("generic#p-1", "prod", "api");
        assert_eq!(a, hold_id("generic#p-1", "prod", "api"));
        assert_eq!(a.len(), 12);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(a, hold_id("generic#p-2", "prod", "api"));
        assert_ne!(a, hold_id("generic#p-1", "prod", "web"));
        // Where one part ends and the next begins is part of what is hashed.
        assert_ne!(hold_id("e", "a", "b/c"), hold_id("e", "a/b", "c"));
    }

    #[test]
    fn decisions_parse_from_the_route_and_serialise_as_they_parse() {
        assert_eq!(Decision::parse("approve"), Some(Decision::Approve));
        assert_eq!(Decision::parse("deny"), Some(Decision::Deny));
        assert_eq!(Decision::parse("Approve"), None);
        assert_eq!(serde_json::to_value(Decision::Deny).unwrap(), json!("deny"));
        for s in GateStatus::ALL {
            assert_eq!(GateStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }

    #[test]
    fn what_to_run_names_the_cli_and_the_route() {
        let r = awaiting_reason(2, 1, "2026-11-21T10:00:00Z", "3f9a1c0b7d2e");
        assert_eq!(
            r,
            "awaiting approval (1 of 2) until 2026-11-21T10:00:00Z: approve with `imagehook approve 3f9a1c0b7d2e` (or POST /approvals/3f9a1c0b7d2e/approve), deny with `imagehook deny 3f9a1c0b7d2e`"
        );
        assert!(stage_reason("staging", 1800).contains("runs 30m without failing"));
    }
}
