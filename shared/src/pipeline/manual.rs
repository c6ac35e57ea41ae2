//! Deploys and rollbacks asked for by hand (`imagehook deploy|rollback`, and the API route that
//! passes the caller's IAM principal), and what a service runs (`status`).
//!
//! A request by hand is not a side door: it proposes its image at the service's desired-state
//! door exactly as a push does (`converge`), ordered by the time it was asked, so it wins over
//! every push made before it, and a push made after it supersedes it. Whoever holds the lease
//! applies it, once; the rule's newer-only and follow-the-tag policies, which judge pushes, do
//! not apply to it.
//!
//! Each request has an id, and its record (`EVT#manual#<id>`) is written before anything else
//! on condition that it is new: a retried request finds it and is answered from it (or, when
//! the first attempt did not finish, finishes it with what the first attempt resolved), so it
//! never applies twice. What a request resolved (a tag to a digest, a rollback to a digest) is
//! fixed in that record when first asked.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::converge::{self, Door, Finish, Proposal, hold, holder_id, knock};
use super::deployments::{deployment_ops, service_record, write_chunked};
use super::deps::{Deps, PipelineError};
use super::receipt::unexpected;
use super::replicate;
use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::event::{Provider, Timestamp, content_id};
use crate::model::records::{
    DeploymentRecord, ImageRecord, ImageStatus, ManualRequestRecord, ReceiptStatus, Record,
    ServiceRecord,
};
use crate::model::reference::ImageRef;
use crate::model::rules::Target;
use crate::ports::deployer::Unguarded;
use crate::ports::store::keys;
use crate::ports::store::ops::{Cond, Op, Update};
use crate::ports::store::{Key, StoreError};

/// The longest reason a forced request may give.
pub const MAX_REASON: usize = 1024;
/// The longest name of who asked: IAM ARNs are at most 2048 characters.
pub const MAX_BY: usize = 2048;
/// The longest request id.
pub const MAX_REQUEST_ID: usize = 128;
/// ECS names clusters and services with at most 255 letters, digits, `-` and `_`.
pub const MAX_NAME: usize = 255;
/// The longest image reference accepted.
pub const MAX_IMAGE: usize = 512;
/// How many of a service's deployments `status` lists.
pub const LISTED_DEPLOYMENTS: usize = 10;
/// A request without an id is identified by its content within windows of this many seconds:
/// the same request again in its window, or in the next one, is a retry.
pub const WINDOW_SECONDS: i64 = 600;

/// `imagehook deploy` and the API's deploy route: run `image` on a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub cluster: String,
    pub service: String,
    /// `registry/repository@sha256:…` or `registry/repository:tag` (resolved to its digest).
    pub image: String,
    /// Deploy even a quarantined or deleted digest; needs `reason`.
    #[serde(default)]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The idempotency key; derived from the request's content when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `imagehook rollback` and the API's rollback route: return a service to the last digest that
/// completed there before the one it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub cluster: String,
    pub service: String,
    #[serde(default)]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManualAction {
    Deploy,
    Rollback,
}

impl ManualAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Rollback => "rollback",
        }
    }
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManualOutcome {
    /// This request held the service's lease and applied it: `deployment` says what ECS did
    /// (`updated`, `unchanged`, `failed`).
    Applied,
    /// Another holder (a push's delivery, the reconcile) is applying the service's newest
    /// desired state, which is this request's: it applies it, once.
    Queued,
    /// Something asked for later (a newer push, another request) is what the service should
    /// run: this one was not applied.
    Superseded,
    /// `DEPLOY_MODE=dry-run`: what would be done; nothing was written.
    Planned,
    /// The same request was made before: this is that request's answer, and nothing was done.
    Duplicate,
}

/// Where the digest deployed came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolved {
    /// The request named it.
    Request,
    /// The tag's record: the digest imagehook last saw pushed under the tag.
    TagRecord,
    /// The registry, asked which digest the tag names now.
    Registry,
    /// A rollback: the last digest whose deployment completed on the service before the one
    /// it runs.
    Deployments,
}

/// The answer to a deploy or rollback by hand, as the CLI prints it and the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualResult {
    pub request_id: String,
    pub action: ManualAction,
    pub outcome: ManualOutcome,
    pub cluster: String,
    pub service: String,
    /// The reference proposed: pinned by digest, with the tag it was asked by, if any.
    pub image: String,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub resolved_from: Resolved,
    /// Who asked: a local user, or the IAM principal's ARN.
    pub by: String,
    pub forced: bool,
    /// What the force overrode (`digest is quarantined: …`, `digest was deleted at …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_over: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_reason: Option<String>,
    /// For a rollback: the digest the service ran when it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<String>,
    /// Why, for `queued`, `superseded` and `duplicate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Why a request by hand was refused, or failed. The edge maps each to one status
/// (`edge/error.rs`).
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    /// A field out of bounds or malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// The image is not a reference, or names neither a tag nor a digest (422).
    #[error("{0}")]
    Reference(String),
    /// No rule or `imagehook:follow` tag names the service and imagehook has no record of it
    /// (404).
    #[error(
        "{cluster}/{service} is not a service imagehook deploys to: no rule or imagehook:follow tag names it, and it has no service record"
    )]
    UnknownService { cluster: String, service: String },
    /// The tag has no digest on record and the registry could not say (422).
    #[error("cannot resolve {image} to a digest: {why}")]
    Unresolved { image: String, why: String },
    /// 409 unless forced.
    #[error(
        "{digest} is quarantined ({reason}): not deployed; deploy it anyway with force and a reason"
    )]
    Quarantined { digest: String, reason: String },
    /// 409 unless forced.
    #[error("{digest} was deleted at {at}: not deployed; deploy it anyway with force and a reason")]
    Deleted { digest: String, at: String },
    /// 409: nothing completed on the service before what it runs.
    #[error("nothing to roll {cluster}/{service} back to: {why}")]
    NothingToRollBack {
        cluster: String,
        service: String,
        why: String,
    },
    /// 409: an explicit request id already named another request.
    #[error("request id {request_id} was already used for another request ({was}): use a new id")]
    RequestReused { request_id: String, was: String },
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl From<StoreError> for ManualError {
    fn from(e: StoreError) -> Self {
        Self::Pipeline(PipelineError::Store(e))
    }
}

/// Runs `request.image` on the service, pinned by digest, through the service's desired state.
/// `by` is who asked (a local user name, or the caller's IAM principal ARN).
pub async fn deploy(
    deps: &Deps<'_>,
    request: DeployRequest,
    by: &str,
) -> Result<ManualResult, ManualError> {
    let by = asker(by)?;
    let cluster = name("cluster", &request.cluster)?;
    let service = name("service", &request.service)?;
    let force_reason = forced(request.force, request.reason.as_deref())?;
    let given = request.image.trim();
    if given.is_empty() || given.len() > MAX_IMAGE {
        return Err(ManualError::Invalid(format!(
            "image must be 1 to {MAX_IMAGE} characters: registry/repository@sha256:… or registry/repository:tag"
        )));
    }
    let mut image = ImageRef::parse(given)
        .map_err(|e| ManualError::Reference(format!("{given:?} is not an image reference: {e}")))?;
    if image.tag.is_none() && image.digest.is_none() {
        return Err(ManualError::Reference(format!(
            "{given:?} names neither a tag nor a digest: give image:tag or image@sha256:…"
        )));
    }
    image.registry = deps.registry_aliases.canonical(&image.registry);
    let fingerprint = fingerprint(&[
        ManualAction::Deploy.as_str(),
        cluster,
        service,
        &image.to_string(),
        force_reason.as_deref().unwrap_or(""),
    ]);
    let ids = Ids::new(request.request_id.as_deref(), &fingerprint)?;
    if let Some(found) = earlier(deps, &ids, &fingerprint).await? {
        return resume(deps, found).await;
    }
    let target = known_target(deps, cluster, service).await?.0;
    let (pinned, resolved_from) = pin(deps, image).await?;
    let plan = Plan {
        action: ManualAction::Deploy,
        target,
        image: pinned,
        resolved_from,
        by,
        force_reason,
        rolled_back_from: None,
        fingerprint,
    };
    run(deps, &ids, plan).await
}

/// Returns the service to the last digest that completed there before the one it runs: of its
/// deployment records (`SVC#<cluster>/<service>`, `DEP#…`), the one whose rollout ECS reported
/// completed (`state: completed`, recorded by the outcomes function from a
/// `SERVICE_DEPLOYMENT_COMPLETED` change) most recently by ECS's time (`state_at`), among those
/// of a digest other than the one the service record says it runs.
pub async fn rollback(
    deps: &Deps<'_>,
    request: RollbackRequest,
    by: &str,
) -> Result<ManualResult, ManualError> {
    let by = asker(by)?;
    let cluster = name("cluster", &request.cluster)?;
    let service = name("service", &request.service)?;
    let force_reason = forced(request.force, request.reason.as_deref())?;
    let fingerprint = fingerprint(&[
        ManualAction::Rollback.as_str(),
        cluster,
        service,
        force_reason.as_deref().unwrap_or(""),
    ]);
    let ids = Ids::new(request.request_id.as_deref(), &fingerprint)?;
    if let Some(found) = earlier(deps, &ids, &fingerprint).await? {
        return resume(deps, found).await;
    }
    let (target, _, record) = known_target(deps, cluster, service).await?;
    let current = record
        .digest
        .clone()
        .ok_or_else(|| ManualError::NothingToRollBack {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
            why: "imagehook has no record of a digest the service runs".into(),
        })?;
    let deployments = deployments_of(deps, cluster, service).await?;
    let back_to = rollback_candidate(&deployments, &current).ok_or_else(|| {
        ManualError::NothingToRollBack {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
            why: format!(
                "no deployment of a digest other than {current}, which it runs, has completed there (ECS reported SERVICE_DEPLOYMENT_COMPLETED)"
            ),
        }
    })?;
    let image = ImageRef::parse(&back_to.image)
        .map_err(|_| StoreError::Corrupt(format!("deployment {} names no image", back_to.event)))?;
    let plan = Plan {
        action: ManualAction::Rollback,
        target,
        image,
        resolved_from: Resolved::Deployments,
        by,
        force_reason,
        rolled_back_from: Some(current),
        fingerprint,
    };
    run(deps, &ids, plan).await
}

/// The deployment a rollback returns to: the most recently completed one (by ECS's time, then
/// by when imagehook recorded it) of a pinned digest other than `current`.
pub fn rollback_candidate<'a>(
    deployments: &'a [DeploymentRecord],
    current: &str,
) -> Option<&'a DeploymentRecord> {
    deployments
        .iter()
        .filter(|d| d.state.as_deref() == Some("completed"))
        .filter(|d| d.digest().is_some_and(|g| g != current))
        .max_by(|a, b| {
            (a.state_at.as_deref(), a.recorded_at.as_str())
                .cmp(&(b.state_at.as_deref(), b.recorded_at.as_str()))
        })
}

/// What a request resolved to, before it is recorded.
struct Plan {
    action: ManualAction,
    target: Target,
    image: ImageRef,
    resolved_from: Resolved,
    by: String,
    force_reason: Option<String>,
    rolled_back_from: Option<String>,
    fingerprint: String,
}

/// The request's id, and the key of the previous window's derived id (a derived id only).
struct Ids {
    id: String,
    previous: Option<String>,
}

impl Ids {
    fn new(explicit: Option<&str>, fingerprint: &str) -> Result<Self, ManualError> {
        if let Some(id) = explicit {
            let ok = !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
            if !ok {
                return Err(ManualError::Invalid(format!(
                    "request_id must be 1 to {MAX_REQUEST_ID} of A-Z a-z 0-9 - _ . :"
                )));
            }
            return Ok(Self {
                id: id.to_owned(),
                previous: None,
            });
        }
        let window = Timestamp::now().unix_seconds().div_euclid(WINDOW_SECONDS);
        let derived = |w: i64| {
            let hash = fingerprint.trim_start_matches("sha256:");
            format!(
                "auto-{}-{}",
                &hash[..hash.len().min(32)],
                w * WINDOW_SECONDS
            )
        };
        Ok(Self {
            id: derived(window),
            previous: Some(derived(window - 1)),
        })
    }
}

/// What identifies a request's content.
fn fingerprint(parts: &[&str]) -> String {
    content_id(parts)
}

fn request_key(id: &str) -> Key {
    keys::receipt(Provider::Manual.as_str(), id)
}

fn event_of(id: &str) -> String {
    [Provider::Manual.as_str(), "#", id].concat()
}

/// The record of this request, or of the same request in the previous window, if there is one.
async fn earlier(
    deps: &Deps<'_>,
    ids: &Ids,
    fingerprint: &str,
) -> Result<Option<ManualRequestRecord>, ManualError> {
    let mut keys = vec![request_key(&ids.id)];
    keys.extend(ids.previous.as_deref().map(request_key));
    for key in keys {
        if let Some(r) = read_request(deps, &key).await? {
            same_request(&r, fingerprint)?;
            return Ok(Some(r));
        }
    }
    Ok(None)
}

async fn read_request(
    deps: &Deps<'_>,
    key: &Key,
) -> Result<Option<ManualRequestRecord>, StoreError> {
    match deps.store.get(key).await? {
        None => Ok(None),
        Some(Record::ManualRequest(r)) => Ok(Some(r)),
        Some(other) => Err(StoreError::Corrupt(format!(
            "{} holds {other:?}, not a request by hand",
            key.pk
        ))),
    }
}

fn same_request(r: &ManualRequestRecord, fingerprint: &str) -> Result<(), ManualError> {
    if r.fingerprint == fingerprint {
        return Ok(());
    }
    Err(ManualError::RequestReused {
        request_id: r.request_id.clone(),
        was: format!("{} of {}/{} to {}", r.action, r.cluster, r.service, r.image),
    })
}

/// A request seen before: its answer when it finished, else it is finished now with what it
/// resolved the first time.
async fn resume(deps: &Deps<'_>, found: ManualRequestRecord) -> Result<ManualResult, ManualError> {
    let stored = |v: &Value| {
        serde_json::from_value::<ManualResult>(v.clone()).map_err(|e| {
            StoreError::Corrupt(format!(
                "request {} keeps an unreadable answer: {e}",
                found.request_id
            ))
        })
    };
    if found.status == ReceiptStatus::Done {
        let mut answer = stored(found.result.as_ref().ok_or_else(|| {
            StoreError::Corrupt(format!(
                "request {} is done without an answer",
                found.request_id
            ))
        })?)?;
        answer.reason = Some(format!(
            "request {} was made before and answered {}: nothing was done again",
            found.request_id,
            outcome_name(answer.outcome)
        ));
        answer.outcome = ManualOutcome::Duplicate;
        return Ok(answer);
    }
    let draft = stored(found.result.as_ref().ok_or_else(|| {
        StoreError::Corrupt(format!("request {} keeps no draft", found.request_id))
    })?)?;
    let target = match known_target(deps, &found.cluster, &found.service).await {
        Ok((t, ..)) => t,
        // Known when it was first asked: its record says where it goes.
        Err(ManualError::UnknownService { .. }) => plain_target(&found.cluster, &found.service),
        Err(e) => return Err(e),
    };
    let image = ImageRef::parse(&found.image)
        .map_err(|_| StoreError::Corrupt(format!("request {} names no image", found.request_id)))?;
    drive(
        deps,
        &found,
        manual_target(target, &image, deps).await?,
        image,
        draft,
    )
    .await
}

fn outcome_name(o: ManualOutcome) -> &'static str {
    match o {
        ManualOutcome::Applied => "applied",
        ManualOutcome::Queued => "queued",
        ManualOutcome::Superseded => "superseded",
        ManualOutcome::Planned => "planned",
        ManualOutcome::Duplicate => "duplicate",
    }
}

/// Checks what the digest may be, records the request, and takes it through the door.
async fn run(deps: &Deps<'_>, ids: &Ids, plan: Plan) -> Result<ManualResult, ManualError> {
    let digest = plan
        .image
        .digest
        .as_ref()
        .map(ToString::to_string)
        .ok_or_else(|| StoreError::Corrupt("a request by hand was not pinned".into()))?;
    let image_record = deps
        .store
        .get(&Key::new(
            keys::image_pk(plan.image.registry.as_str(), plan.image.repository.as_str()),
            keys::image_sk(&digest),
        ))
        .await?
        .and_then(Record::image);
    let forced_over = admit(image_record.as_ref(), &digest, plan.force_reason.as_deref())?;
    let mut warnings = Vec::new();
    if image_record.is_none() {
        warnings.push(format!(
            "imagehook has no record of {digest} in {}: no push of it was received, so nothing is known of its quarantine",
            plan.image.name()
        ));
    }
    let failed = deps
        .store
        .get(&Key::new(
            keys::service_pk(&plan.target.cluster, &plan.target.service),
            keys::failed_rollout_sk(&digest),
        ))
        .await?
        .is_some();
    if failed {
        warnings.push(format!(
            "the rollout of {digest} to {}/{} failed before (see the service's last_failure)",
            plan.target.cluster, plan.target.service
        ));
    }
    let target = manual_target(plan.target, &plan.image, deps).await?;
    let mut draft = ManualResult {
        request_id: ids.id.clone(),
        action: plan.action,
        outcome: ManualOutcome::Queued,
        cluster: target.cluster.clone(),
        service: target.service.clone(),
        image: plan.image.to_string(),
        digest,
        tag: plan.image.tag.as_ref().map(ToString::to_string),
        resolved_from: plan.resolved_from,
        by: plan.by.clone(),
        forced: plan.force_reason.is_some(),
        forced_over,
        force_reason: plan.force_reason.clone(),
        rolled_back_from: plan.rolled_back_from,
        reason: None,
        deployment: None,
        warnings,
    };
    if deps.deployer.dry_run() {
        // Plans go through no holder, so nothing drops the policy but this.
        let mut asked = target.clone();
        asked.policy.newer_only = false;
        asked.policy.follow_tag = false;
        let d = deps
            .deployer
            .apply(&plan.image, &asked, false, &Unguarded)
            .await
            .map_err(PipelineError::from)?;
        draft.outcome = ManualOutcome::Planned;
        draft.deployment = Some(d);
        return Ok(draft);
    }
    let now = Timestamp::now();
    let record = ManualRequestRecord {
        request_id: ids.id.clone(),
        action: plan.action.as_str().to_owned(),
        status: ReceiptStatus::Pending,
        cluster: target.cluster.clone(),
        service: target.service.clone(),
        image: plan.image.to_string(),
        order: converge::order_of(now.as_str(), now.as_str()),
        fingerprint: plan.fingerprint,
        by: plan.by,
        force_reason: plan.force_reason,
        result: None,
    };
    let mut ops = vec![Op::Put {
        key: request_key(&ids.id),
        item: request_item(&record, &draft, deps, &now),
        cond: Some(Cond::ItemAbsent),
    }];
    if let Some(previous) = &ids.previous {
        // A delete of what must not exist, on condition that it does not: it writes nothing and
        // refuses the transaction if the same request was recorded in the previous window.
        ops.push(Op::Delete {
            key: request_key(previous),
            cond: Some(Cond::ItemAbsent),
        });
    }
    if let Err(c) = deps.store.transact(ops).await? {
        // The same request, recorded meanwhile by a concurrent attempt: finish it (or answer
        // it) as that attempt recorded it.
        let found = c
            .failed
            .iter()
            .find_map(|(_, r)| match r {
                Some(Record::ManualRequest(r)) => Some(r.clone()),
                _ => None,
            })
            .ok_or_else(|| unexpected(&c))?;
        same_request(&found, &record.fingerprint)?;
        return resume(deps, found).await;
    }
    drive(deps, &record, target, plan.image, draft).await
}

/// The request's record, with the answer so far (`result`), from which a retry finishes it.
fn request_item(
    r: &ManualRequestRecord,
    draft: &ManualResult,
    deps: &Deps<'_>,
    now: &Timestamp,
) -> Map<String, Value> {
    let mut item = Map::new();
    item.insert("type".into(), json!("manual_request"));
    item.insert("provider".into(), json!(Provider::Manual.as_str()));
    item.insert("request_id".into(), json!(r.request_id));
    item.insert("action".into(), json!(r.action));
    item.insert("status".into(), json!(r.status.as_str()));
    item.insert("cluster".into(), json!(r.cluster));
    item.insert("service".into(), json!(r.service));
    item.insert("image".into(), json!(r.image));
    item.insert("order".into(), json!(r.order));
    item.insert("fingerprint".into(), json!(r.fingerprint));
    item.insert("by".into(), json!(r.by));
    if let Some(reason) = &r.force_reason {
        item.insert("force_reason".into(), json!(reason));
    }
    item.insert("received_at".into(), json!(now.as_str()));
    item.insert(
        "expires_at".into(),
        json!(now.unix_seconds() + i64::from(deps.receipt_ttl_days) * super::deps::SECONDS_PER_DAY),
    );
    item.insert(
        "result".into(),
        serde_json::to_value(draft).unwrap_or(Value::Null),
    );
    item
}

/// The request at the service's door: applied as the holder, queued behind one, or superseded.
async fn drive(
    deps: &Deps<'_>,
    r: &ManualRequestRecord,
    target: Target,
    image: ImageRef,
    mut result: ManualResult,
) -> Result<ManualResult, ManualError> {
    let event = event_of(&r.request_id);
    let proposal = Proposal {
        event: event.clone(),
        image: image.clone(),
        order: r.order.clone(),
    };
    let holder = holder_id(&event);
    let at = Timestamp::now();
    let answer = |mut result: ManualResult, d: &Deployment| {
        result.outcome = match d.outcome {
            DeployOutcome::Superseded => ManualOutcome::Superseded,
            DeployOutcome::Queued => ManualOutcome::Queued,
            _ => ManualOutcome::Applied,
        };
        if result.outcome != ManualOutcome::Applied {
            result.reason.clone_from(&d.reason);
        }
        result.deployment = Some(d.clone());
        result
    };
    let (d, finished) = match knock(deps.store, &target, &proposal, &holder, deps.lease).await? {
        Door::Holder { resume } => {
            let close = |d: &Deployment| {
                closing_ops(r, &answer(result.clone(), d), &image, &at, Closing::Applier)
            };
            let finish: Finish<'_> = &close;
            let held = hold(
                deps,
                &target,
                &holder,
                resume,
                &event,
                proposal.desired(&target),
                Some(finish),
            )
            .await?;
            let d = held.own.unwrap_or_else(|| {
                Deployment::new(&target, &image, DeployOutcome::Queued).with_reason(format!(
                    "{}/{} moved on to a newer desired state while this request was being applied",
                    target.cluster, target.service
                ))
            });
            (d, held.finished)
        }
        Door::Queued { carrier } => (
            Deployment::new(&target, &image, DeployOutcome::Queued).with_reason(format!(
                "{}/{} is being deployed by {carrier}, which applies the newest desired state, this request's: it applies it once",
                target.cluster, target.service
            )),
            false,
        ),
        Door::Superseded { winner, .. } => (
            Deployment::new(&target, &image, DeployOutcome::Superseded).with_reason(format!(
                "{winner}, asked for or pushed after this request, is what {}/{} should run: this request is not applied",
                target.cluster, target.service
            )),
            false,
        ),
    };
    result = answer(result, &d);
    if !finished {
        let mut ops = Vec::new();
        if matches!(d.outcome, DeployOutcome::Queued | DeployOutcome::Superseded) {
            // Never reached ECS from here. Recorded only where nothing is yet: a holder that
            // applied this request wrote the same key, and what it applied is the truth.
            let (records, _) = deployment_ops(&manual_event(r, &image)?, &d, &at);
            for op in records {
                let op = match op {
                    Op::Put { key, item, .. } => Op::Put {
                        key,
                        item,
                        cond: Some(Cond::ItemAbsent),
                    },
                    other => other,
                };
                // Refused: the deployment is on record already.
                let _ = deps.store.transact(vec![op]).await?;
            }
        }
        let closing = match result.outcome {
            ManualOutcome::Applied => Closing::Applier,
            ManualOutcome::Queued => Closing::Queued,
            _ => Closing::Bystander,
        };
        ops.extend(closing_ops(r, &result, &image, &at, closing));
        if closing == Closing::Applier {
            write_chunked(deps.store, ops).await?;
        } else {
            for op in ops {
                // Refused: an attempt that applied this request recorded it first.
                let _ = deps.store.transact(vec![op]).await?;
            }
        }
    }
    Ok(result)
}

/// Who closes a request, and so what its closing records may overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// This attempt applied it: its records are the truth.
    Applier,
    /// Another holder carries it: the history says so where nothing is recorded yet, and the
    /// request stays pending, so a retry goes through the door again.
    Queued,
    /// Superseded before this attempt applied it: recorded where nothing is yet (an attempt
    /// that applied it may have), and the request closed if it is still pending.
    Bystander,
}

/// The event a request's records name: `manual#<id>`, at the time it was asked.
fn manual_event(
    r: &ManualRequestRecord,
    image: &ImageRef,
) -> Result<crate::model::event::ImageEvent, StoreError> {
    let asked = r.order.split('#').next().unwrap_or_default();
    let at = Timestamp::parse(asked)
        .map_err(|_| StoreError::Corrupt(format!("request {} has no time", r.request_id)))?;
    Ok(crate::model::event::ImageEvent::new(
        r.request_id.clone(),
        Provider::Manual,
        crate::model::event::Action::Push,
        image.clone(),
        at,
    ))
}

/// The request's history entry, and its record marked done with its answer (left pending
/// while another holder carries it, so that a retry goes through the door again).
fn closing_ops(
    r: &ManualRequestRecord,
    result: &ManualResult,
    image: &ImageRef,
    at: &Timestamp,
    closing: Closing,
) -> Vec<Op> {
    let asked = r.order.split('#').next().unwrap_or_default();
    let event = event_of(&r.request_id);
    let stage = result.deployment.as_ref().and_then(|d| d.stage.clone());
    let mut entry = Map::new();
    entry.insert("type".into(), json!("history"));
    if let Some(s) = &stage {
        entry.insert("stage".into(), json!(s));
    }
    entry.insert("kind".into(), json!(result.action.as_str()));
    let superseded = result.outcome == ManualOutcome::Superseded;
    entry.insert(
        "outcome".into(),
        json!(if superseded { "superseded" } else { "applied" }),
    );
    if superseded && let Some(reason) = &result.reason {
        entry.insert("reason".into(), json!(reason));
    }
    entry.insert("registry".into(), json!(image.registry.as_str()));
    entry.insert("repository".into(), json!(image.repository.as_str()));
    if let Some(t) = &image.tag {
        entry.insert("tag".into(), json!(t.as_str()));
    }
    entry.insert("digest".into(), json!(result.digest));
    entry.insert("pushed_at".into(), json!(asked));
    entry.insert("push_event".into(), json!(event));
    entry.insert("event".into(), json!(event));
    entry.insert("at".into(), json!(asked));
    entry.insert("received_at".into(), json!(asked));
    entry.insert("by".into(), json!(result.by));
    for (k, v) in [
        ("forced_over", &result.forced_over),
        ("force_reason", &result.force_reason),
        ("rolled_back_from", &result.rolled_back_from),
    ] {
        if let Some(v) = v {
            entry.insert(k.into(), json!(v));
        }
    }
    let services: Vec<Value> = result
        .deployment
        .iter()
        .map(|d| super::history::service_entry(d, at))
        .collect();
    entry.insert("services".into(), Value::Array(services));
    let mut ops = vec![Op::Put {
        key: Key::new(
            keys::image_pk(image.registry.as_str(), image.repository.as_str()),
            keys::history_sk(stage.as_deref().unwrap_or_default(), asked, &event),
        ),
        item: entry,
        cond: (closing != Closing::Applier).then_some(Cond::ItemAbsent),
    }];
    let done = Update::new(request_key(&r.request_id))
        .set("status", ReceiptStatus::Done.as_str())
        .set("outcome", outcome_name(result.outcome))
        .set(
            "result",
            serde_json::to_value(result).unwrap_or(Value::Null),
        )
        .set("done_at", at.as_str());
    match closing {
        Closing::Applier => ops.push(Op::Update(done)),
        Closing::Bystander => ops.push(Op::Update(
            done.when(Cond::Eq("status", json!(ReceiptStatus::Pending.as_str()))),
        )),
        Closing::Queued => {}
    }
    ops
}

/// Refuses a quarantined or deleted digest unless forced; forced, names what was overridden.
fn admit(
    image: Option<&ImageRecord>,
    digest: &str,
    force_reason: Option<&str>,
) -> Result<Option<String>, ManualError> {
    let refusal = match image {
        Some(i) if i.quarantine.is_some() || i.status == Some(ImageStatus::Quarantined) => {
            let reason = i
                .quarantine
                .as_ref()
                .map_or_else(|| "no reason recorded".to_owned(), |q| q.reason.clone());
            Some(ManualError::Quarantined {
                digest: digest.to_owned(),
                reason,
            })
        }
        Some(i) if i.status == Some(ImageStatus::Deleted) => Some(ManualError::Deleted {
            digest: digest.to_owned(),
            at: i
                .deleted_at
                .clone()
                .unwrap_or_else(|| "an unknown time".into()),
        }),
        _ => None,
    };
    match (refusal, force_reason) {
        (None, _) => Ok(None),
        (Some(ManualError::Quarantined { reason, .. }), Some(_)) => {
            Ok(Some(format!("digest is quarantined: {reason}")))
        }
        (Some(ManualError::Deleted { at, .. }), Some(_)) => {
            Ok(Some(format!("digest was deleted at {at}")))
        }
        (Some(refused), _) => Err(refused),
    }
}

/// Pins `image` by digest: as given, else its tag's record, else the registry.
async fn pin(deps: &Deps<'_>, image: ImageRef) -> Result<(ImageRef, Resolved), ManualError> {
    if image.digest.is_some() {
        return Ok((image, Resolved::Request));
    }
    let Some(tag) = image.tag.clone() else {
        return Err(ManualError::Reference(format!(
            "{image} names neither a tag nor a digest"
        )));
    };
    let recorded = deps
        .store
        .get(&Key::new(
            keys::image_pk(image.registry.as_str(), image.repository.as_str()),
            keys::tag_sk(tag.as_str()),
        ))
        .await?
        .and_then(Record::tag)
        .and_then(|t| t.digest);
    if let Some(d) = recorded {
        let digest = crate::model::reference::Digest::parse(&d)
            .map_err(|_| StoreError::Corrupt(format!("tag {tag} records digest {d:?}")))?;
        let mut pinned = image;
        pinned.digest = Some(digest);
        return Ok((pinned, Resolved::TagRecord));
    }
    let Some(resolver) = deps.resolver else {
        return Err(ManualError::Unresolved {
            image: image.to_string(),
            why: "imagehook has no digest on record for the tag, and asking registries is off (RESOLVE_DIGESTS=off): name the digest".into(),
        });
    };
    match tokio::time::timeout(resolver.budget(), resolver.resolve(&image)).await {
        Ok(Ok(digest)) => {
            let mut pinned = image;
            pinned.digest = Some(digest);
            Ok((pinned, Resolved::Registry))
        }
        Ok(Err(e)) => Err(ManualError::Unresolved {
            image: image.to_string(),
            why: format!("no digest on record for the tag, and the registry said: {e}"),
        }),
        Err(_) => Err(ManualError::Unresolved {
            image: image.to_string(),
            why: format!(
                "no digest on record for the tag, and the registry did not answer within {} ms",
                resolver.budget().as_millis()
            ),
        }),
    }
}

/// How imagehook knows a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KnownBy {
    /// A deploy rule names it.
    Rule,
    /// It carries the `imagehook:follow` tag in a `FOLLOW_CLUSTERS` cluster.
    Follow,
    /// Neither, but imagehook has deployed or proposed something there.
    Record,
}

/// The service as a rule, a follow tag or its own record names it, with its record.
async fn known_target(
    deps: &Deps<'_>,
    cluster: &str,
    service: &str,
) -> Result<(Target, KnownBy, ServiceRecord), ManualError> {
    let is = |t: &Target| t.cluster == cluster && t.service == service;
    let record = service_record(deps.store, cluster, service).await?;
    // What the service last ran as imagehook knows it, for the rule's policy: the holder of
    // this request may carry a newer push, which that policy judges (as the push path does).
    let ran = |mut t: Target| {
        t.last_deployed = record.digest.clone().map(|d| (d, record.tag.clone()));
        t
    };
    if let Some(t) = deps.rules.all_targets().into_iter().find(is) {
        return Ok((ran(t), KnownBy::Rule, record));
    }
    let followed = deps
        .deployer
        .all_followers()
        .await
        .map_err(PipelineError::from)?;
    if let Some(t) = followed.into_iter().find(is) {
        return Ok((ran(t), KnownBy::Follow, record));
    }
    if record.desired.is_some() || record.applied.is_some() || record.digest.is_some() {
        let mut t = plain_target(cluster, service);
        if let Some(d) = &record.desired {
            t.container = d.container.clone().filter(|c| !c.is_empty());
            t.stage = d.stage.clone().filter(|s| !s.is_empty());
        }
        return Ok((t, KnownBy::Record, record));
    }
    Err(ManualError::UnknownService {
        cluster: cluster.to_owned(),
        service: service.to_owned(),
    })
}

fn plain_target(cluster: &str, service: &str) -> Target {
    // No gate: a request by hand is its own approval, whoever may call the route chose the
    // digest.
    Target::service(cluster, service)
}

/// The target a request by hand is proposed to: the rule's, with the replicas the digest has
/// reached (a service that pulls from one is deployed its reference), without the rule's wait
/// for a region (whoever asks chose the digest). The rule's policy stays: the holder drops it
/// for a desired state asked for by hand (`converge`), and applies it to a newer push it may
/// carry in the same loop.
async fn manual_target(
    mut t: Target,
    image: &ImageRef,
    deps: &Deps<'_>,
) -> Result<Target, ManualError> {
    t.require_region = None;
    if let Some(digest) = &image.digest {
        t.replicas = replicate::presence(
            deps.store,
            image.registry.as_str(),
            image.repository.as_str(),
            digest.as_str(),
        )
        .await?
        .replicas;
    }
    Ok(t)
}

/// Every deployment recorded on the service.
async fn deployments_of(
    deps: &Deps<'_>,
    cluster: &str,
    service: &str,
) -> Result<Vec<DeploymentRecord>, StoreError> {
    Ok(deps
        .store
        .query(&keys::service_pk(cluster, service), "DEP#")
        .await?
        .into_iter()
        .filter_map(Record::deployment)
        .collect())
}

/// What a service runs and why: `imagehook status`, and the API's status route.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub cluster: String,
    pub service: String,
    pub known_by: KnownBy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// What imagehook last made the service run (or ECS returned it to after a failed
    /// rollout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningNow>,
    /// What ECS describes, when it can be asked (`DEPLOY_MODE=apply`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecs: Option<EcsView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<DesiredView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedView>,
    /// The desired state was applied (no holder still owes it).
    pub in_sync: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseView>,
    /// An image ECS was found running that imagehook did not deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// Where `rollback` would take the service now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<DeploymentRecord>,
    /// The newest deployments first, at most [`LISTED_DEPLOYMENTS`].
    pub deployments: Vec<DeploymentRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunningNow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EcsView {
    pub task_definition: String,
    /// Each container's image.
    pub containers: Map<String, Value>,
    /// No rollout in progress.
    pub settled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DesiredView {
    pub event: String,
    pub image: String,
    /// The sender's time (or the time a request by hand was made), then the receipt time.
    pub order: String,
    /// Asked for by hand (`manual#<request id>`).
    pub by_hand: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppliedView {
    pub event: String,
    pub outcome: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    pub holder: String,
    pub until: String,
    /// Not expired: its holder is presumed to be applying.
    pub live: bool,
}

/// What the service runs, what it should run, who is applying, and its last deployments.
pub async fn status(
    deps: &Deps<'_>,
    cluster: &str,
    service: &str,
) -> Result<ServiceStatus, ManualError> {
    let cluster = name("cluster", cluster)?;
    let service = name("service", service)?;
    let (target, known_by, record) = known_target(deps, cluster, service).await?;
    let ecs = deps
        .deployer
        .running(&target)
        .await
        .map_err(PipelineError::from)?
        .map(|r| EcsView {
            task_definition: r.task_definition,
            containers: r
                .containers
                .into_iter()
                .map(|(name, image)| (name, Value::String(image)))
                .collect(),
            settled: r.settled,
        });
    let mut deployments = deployments_of(deps, cluster, service).await?;
    let rollback_to = record
        .digest
        .as_deref()
        .and_then(|current| rollback_candidate(&deployments, current))
        .cloned();
    deployments.sort_by(|a, b| b.recorded_at.cmp(&a.recorded_at));
    deployments.truncate(LISTED_DEPLOYMENTS);
    let now = Timestamp::now();
    let known = record.digest.is_some() || record.image.is_some();
    Ok(ServiceStatus {
        cluster: cluster.to_owned(),
        service: service.to_owned(),
        known_by,
        stage: target.stage.clone(),
        running: known.then(|| RunningNow {
            image: record.image.clone(),
            digest: record.digest.clone(),
            tag: record.tag.clone(),
            task_definition: record.task_definition_arn.clone(),
        }),
        ecs,
        in_sync: match (&record.desired, &record.applied) {
            (Some(d), Some(a)) => d.event == a.event,
            (None, _) => true,
            (Some(_), None) => false,
        },
        desired: record.desired.as_ref().map(|d| DesiredView {
            event: d.event.clone(),
            image: d.image.clone(),
            order: d.order.clone(),
            by_hand: converge::is_manual(&d.event),
        }),
        applied: record.applied.as_ref().map(|a| AppliedView {
            event: a.event.clone(),
            outcome: a.outcome.clone(),
            at: a.at.clone(),
        }),
        lease: record.lease.as_ref().map(|l| LeaseView {
            holder: l.holder.clone(),
            until: l.until.clone(),
            live: l.until.as_str() >= now.as_str(),
        }),
        drift: record.drift.clone(),
        rollback_to,
        deployments,
    })
}

/// An ECS cluster or service name: what ECS accepts, so nothing else reaches a key.
fn name<'a>(what: &str, value: &'a str) -> Result<&'a str, ManualError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(value)
    } else {
        Err(ManualError::Invalid(format!(
            "{what} must be an ECS {what} name: 1 to {MAX_NAME} of A-Z a-z 0-9 - _ (got {:?})",
            clip(value)
        )))
    }
}

/// Who asked, as it will be recorded.
fn asker(by: &str) -> Result<String, ManualError> {
    let by = by.trim();
    if by.is_empty() || by.chars().count() > MAX_BY || by.chars().any(char::is_control) {
        return Err(ManualError::Invalid(format!(
            "who asked must be named in 1 to {MAX_BY} printable characters"
        )));
    }
    Ok(by.to_owned())
}

/// The reason a forced request gives; a reason without force is refused too, since it would
/// be recorded as if it had overridden something.
fn forced(force: bool, reason: Option<&str>) -> Result<Option<String>, ManualError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    match (force, reason) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(ManualError::Invalid(
            "reason is only recorded with force: drop it, or force".into(),
        )),
        (true, None) => Err(ManualError::Invalid(
            "force needs a reason, which is recorded in the history".into(),
        )),
        (true, Some(r)) if r.chars().count() > MAX_REASON || r.chars().any(char::is_control) => {
            Err(ManualError::Invalid(format!(
                "reason must be 1 to {MAX_REASON} printable characters"
            )))
        }
        (true, Some(r)) => Ok(Some(r.to_owned())),
    }
}

/// A value quoted back in an error, cut short.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(
        image: &str,
        state: Option<&str>,
        state_at: &str,
        recorded_at: &str,
    ) -> DeploymentRecord {
        DeploymentRecord {
            event: format!("generic#{recorded_at}"),
            outcome: "updated".into(),
            image: image.into(),
            recorded_at: recorded_at.into(),
            task_definition: None,
            stage: None,
            reason: None,
            ecs_deployment_id: None,
            state: state.map(str::to_owned),
            state_at: Some(state_at.to_owned()),
        }
    }

    fn digest(n: u32) -> String {
        format!("sha256:{n:064x}")
    }

    #[test]
    fn a_rollback_returns_to_the_last_completed_digest_other_than_the_running_one() {
        let d1 = format!("r.io/a@{}", digest(1));
        let d2 = format!("r.io/a@{}", digest(2));
        let d3 = format!("r.io/a@{}", digest(3));
        let list = vec![
            dep(&d1, Some("completed"), "t1", "r1"),
            dep(&d2, Some("completed"), "t2", "r2"),
            dep(&d3, Some("failed"), "t4", "r4"),
            dep(&d2, Some("in-progress"), "t5", "r5"),
        ];
        let back = rollback_candidate(&list, &digest(2)).unwrap();
        assert_eq!(back.digest(), Some(digest(1).as_str()));
        let back = rollback_candidate(&list, &digest(3)).unwrap();
        assert_eq!(
            back.digest(),
            Some(digest(2).as_str()),
            "failed rollouts never count"
        );
        assert!(rollback_candidate(&list[..1], &digest(1)).is_none());
        let unpinned = vec![dep("r.io/a:v1", Some("completed"), "t1", "r1")];
        assert!(rollback_candidate(&unpinned, &digest(9)).is_none());
    }

    #[test]
    fn forcing_needs_a_reason_and_a_reason_needs_force() {
        assert!(matches!(forced(true, None), Err(ManualError::Invalid(_))));
        assert!(matches!(
            forced(true, Some("  ")),
            Err(ManualError::Invalid(_))
        ));
        assert!(matches!(
            forced(false, Some("why")),
            Err(ManualError::Invalid(_))
        ));
        assert!(matches!(
            forced(true, Some(&"x".repeat(MAX_REASON + 1))),
            Err(ManualError::Invalid(_))
        ));
        assert_eq!(
            forced(true, Some(" hotfix ")).unwrap().as_deref(),
            Some("hotfix")
        );
        assert_eq!(forced(false, None).unwrap(), None);
    }

    #[test]
    fn names_and_request_ids_are_bounded_to_what_keys_can_hold() {
        assert!(name("cluster", "prod-1_a").is_ok());
        for bad in ["", "a/b", "a#b", &"x".repeat(MAX_NAME + 1)] {
            assert!(name("service", bad).is_err(), "{bad}");
        }
        assert!(Ids::new(Some("ci-1234:retry.2"), "sha256:ab").is_ok());
        for bad in ["", "a#b", "a b", &"x".repeat(MAX_REQUEST_ID + 1)] {
            assert!(Ids::new(Some(bad), "sha256:ab").is_err(), "{bad}");
        }
        assert!(asker("arn:aws:iam::123456789012:user/ana").is_ok());
        assert!(asker("a\nb").is_err());
        assert!(asker(&"x".repeat(MAX_BY + 1)).is_err());
    }

    #[test]
    fn a_derived_request_id_names_its_window_and_the_one_before() {
        let ids = Ids::new(None, &fingerprint(&["deploy", "prod", "api"])).unwrap();
        let previous = ids.previous.unwrap();
        assert!(ids.id.starts_with("auto-") && previous.starts_with("auto-"));
        let window = |id: &str| id.rsplit('-').next().unwrap().parse::<i64>().unwrap();
        assert_eq!(window(&ids.id) - window(&previous), WINDOW_SECONDS);
        assert!(ids.id.len() <= MAX_REQUEST_ID);
    }

    #[test]
    fn quarantined_and_deleted_digests_are_refused_unless_forced() {
        let quarantined = ImageRecord {
            status: Some(ImageStatus::Quarantined),
            quarantine: Some(crate::model::records::Quarantine {
                reason: "CVE-1".into(),
                source: None,
            }),
            ..ImageRecord::default()
        };
        assert!(matches!(
            admit(Some(&quarantined), "sha256:a", None),
            Err(ManualError::Quarantined { reason, .. }) if reason == "CVE-1"
        ));
        assert_eq!(
            admit(Some(&quarantined), "sha256:a", Some("hotfix")).unwrap(),
            Some("digest is quarantined: CVE-1".to_owned())
        );
        let deleted = ImageRecord {
            status: Some(ImageStatus::Deleted),
            deleted_at: Some("t9".into()),
            ..ImageRecord::default()
        };
        assert!(matches!(
            admit(Some(&deleted), "sha256:a", None),
            Err(ManualError::Deleted { at, .. }) if at == "t9"
        ));
        assert_eq!(admit(None, "sha256:a", None).unwrap(), None);
    }
}
