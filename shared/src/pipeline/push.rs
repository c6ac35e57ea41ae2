//! The push path: record each push, then roll it out to the services that follow it, unless the
//! digest is quarantined or deleted, in which case the deployments wait as `blocked`.

use serde_json::json;

use super::converge::{self, Proposal};
use super::deps::{Deps, PipelineError, warn_failed};
use super::history::{self, EntryOutcome, Source};
use super::receipt::{MAX_ATTEMPTS, Receipt, pending, unexpected};
use super::{approve, deployments, held, quarantine, replicate};
use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::event::{ImageEvent, Provider, Timestamp};
use crate::model::quarantine::{Holds, Lift};
use crate::model::records::{ImageRecord, ImageStatus, ReceiptStatus, Record};
use crate::model::reference::artifact_tag;
use crate::model::result::{EventOutcome, EventResult};
use crate::model::rules::Target;
use crate::ports::store::keys;
use crate::ports::store::ops::{Cond, Op, Update};
use crate::ports::store::{Key, Store, StoreError};

/// How the warning about a push deployed by tag begins.
pub(super) const NO_DIGEST: &str = "the event carried no digest";

pub(super) async fn push_one(
    deps: &Deps<'_>,
    event: &ImageEvent,
    received_at: &Timestamp,
) -> Result<EventResult, PipelineError> {
    let targets = targets(deps, event).await?;
    if let Some(kind) = event
        .image
        .tag
        .as_ref()
        .and_then(|t| artifact_tag(t.as_str()))
        .filter(|_| targets.is_empty())
    {
        return Ok(EventResult::of(event, EventOutcome::Ignored).with_reason(format!(
            "the tag names a {kind} attached to an image, not an image to run: not recorded, not deployed (a rule with \"artifacts\": true deploys such tags)"
        )));
    }
    let receipt = deps.receipt(event, received_at);
    let recorded = record_push(deps.store, &receipt, &targets).await?;

    let mut result = match recorded {
        PushOutcome::Applied => EventResult::of(event, EventOutcome::Applied),
        PushOutcome::AppliedAcrPassed => EventResult::of(event, EventOutcome::Applied)
            .with_reason("ACR sent the push of a quarantined image, so it was marked Passed: quarantine released"),
        PushOutcome::Stale => {
            return Ok(EventResult::of(event, EventOutcome::Stale).with_reason(stale(event)));
        }
        PushOutcome::Blocked { reason } => {
            let mut result = EventResult::of(event, EventOutcome::Blocked).with_reason(&reason);
            result.deployments = targets
                .iter()
                .map(|t| {
                    Deployment::new(t, &event.image, DeployOutcome::Blocked).with_reason(&reason)
                })
                .collect();
            return Ok(result);
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
            "no deploy rule or followed service matches this image"
        };
        if result.outcome == EventOutcome::Applied {
            result.reason = Some(why.to_owned());
        }
        return Ok(result);
    }

    let (targets, mut deployments) = without_failed_rollouts(deps, event, targets).await?;
    let (targets, held) = held_for_regions(deps, event, targets).await?;
    if !held.is_empty() {
        held::hold(deps.store, &receipt, &held).await?;
        deployments.extend(held.iter().map(|(t, region)| {
            Deployment::new(t, &event.image, DeployOutcome::Blocked)
                .with_reason(held::not_yet_replicated(region))
        }));
    }
    let order = match recorded {
        // A redelivery is ordered by its first arrival, not by this one.
        PushOutcome::Duplicate { .. } => first_order(deps, event).await?,
        _ => converge::order_of(event.occurred_at.as_str(), received_at.as_str()),
    };
    let source = Source::of(event, converge::received_of(&order));
    let event_name = format!("{}#{}", event.provider, event.id);
    let pending = targets
        .into_iter()
        .map(|target| approve::Pending {
            target,
            image: &event.image,
            event: event_name.clone(),
            pushed_at: event.occurred_at.as_str().to_owned(),
            order: order.clone(),
            received_at: converge::received_of(&order).map(str::to_owned),
        })
        .collect();
    let (targets, gated) = approve::hold_gated(deps, pending).await?;
    deployments.extend(gated);
    let proposal = Proposal {
        event: format!("{}#{}", event.provider, event.id),
        image: event.image.clone(),
        order,
    };
    let proposals = targets.into_iter().map(|t| (t, proposal.clone())).collect();
    let deployments =
        super::deploy::deploy_all(deps, event, &source, proposals, deployments, &[]).await?;
    if event.image.digest.is_none() {
        result.warnings.push(format!(
            "{NO_DIGEST}: deployed by tag {}, not pinned",
            event.image.deployable()
        ));
    }
    warn_failed(&mut result, &deployments);
    result.deployments = deployments;
    Ok(result)
}

/// The ordering key of an event's first delivery, from its receipt.
async fn first_order(deps: &Deps<'_>, event: &ImageEvent) -> Result<String, PipelineError> {
    let receipt = deps
        .store
        .get(&keys::receipt(event.provider.as_str(), &event.id))
        .await?
        .and_then(Record::receipt);
    Ok(
        match receipt.and_then(|r| r.occurred_at.zip(r.received_at)) {
            Some((occurred, received)) => converge::order_of(&occurred, &received),
            None => converge::order_of(event.occurred_at.as_str(), event.occurred_at.as_str()),
        },
    )
}

/// Force and newer-only rules compare with what the service runs, and would roll a digest
/// whose rollout failed (and was rolled back) out again on the next delivery that names it. For
/// them the service's record is read: what imagehook last deployed there (ECS shows a pinned
/// service as `repo@digest`, without the tag), and which digests failed. Plain rules deploy what
/// was pushed and pay for no read.
async fn without_failed_rollouts(
    deps: &Deps<'_>,
    event: &ImageEvent,
    targets: Vec<Target>,
) -> Result<(Vec<Target>, Vec<Deployment>), PipelineError> {
    let mut keep = Vec::with_capacity(targets.len());
    let mut skipped = Vec::new();
    for mut t in targets {
        if t.policy.newer_only || t.policy.follow_tag {
            let (record, failed) =
                deployments::service_record_with_failure(deps.store, &t.cluster, &t.service, event)
                    .await?;
            if let Some(digest) = event.image.digest.as_ref().filter(|_| failed) {
                skipped.push(
                    Deployment::new(&t, &event.image, DeployOutcome::Skipped).with_reason(format!(
                        "the rollout of {digest} to {}/{} failed before (see the service's last_failure): push a fix",
                        t.cluster, t.service
                    )),
                );
                continue;
            }
            t.last_deployed = record.digest.map(|d| (d, record.tag));
        }
        keep.push(t);
    }
    Ok((keep, skipped))
}

/// The services this push goes to: those rules name, then those that follow the image by their
/// own tag. A service named by a rule and tagged too follows the rule: it is the explicit,
/// reviewed configuration.
async fn targets(deps: &Deps<'_>, event: &ImageEvent) -> Result<Vec<Target>, PipelineError> {
    let mut targets = deps.rules.targets(&event.image);
    for t in &mut targets {
        if t.require_region.as_deref() == Some("service-region") {
            t.require_region = Some(deps.service_region.unwrap_or("service-region").to_owned());
        }
    }
    let artifact = event
        .image
        .tag
        .as_ref()
        .is_some_and(|t| artifact_tag(t.as_str()).is_some());
    if artifact {
        // No service runs a signature: only a rule that opts in deploys one.
        return Ok(targets);
    }
    for f in deps.deployer.followers(&event.image).await? {
        if !targets
            .iter()
            .any(|t| t.cluster == f.cluster && t.service == f.service)
        {
            targets.push(f);
        }
    }
    Ok(targets)
}

/// Targets whose rule requires a region the digest has not reached yet are held (with that
/// region) until a replication event says it arrived. The push's own region counts; otherwise
/// the image's record says where it is, read once and only when a rule asks.
async fn held_for_regions(
    deps: &Deps<'_>,
    event: &ImageEvent,
    targets: Vec<Target>,
) -> Result<(Vec<Target>, Vec<(Target, String)>), PipelineError> {
    let (Some(digest), true) = (
        &event.image.digest,
        targets.iter().any(|t| t.require_region.is_some()),
    ) else {
        return Ok((targets, Vec::new()));
    };
    let presence = replicate::presence(
        deps.store,
        event.image.registry.as_str(),
        event.image.repository.as_str(),
        digest.as_str(),
    )
    .await?;
    let mut deploy = Vec::with_capacity(targets.len());
    let mut held = Vec::new();
    for mut t in targets {
        // A service that pulls from a replica the digest has reached is deployed its reference.
        t.replicas.clone_from(&presence.replicas);
        let Some(wanted) = t.require_region.as_deref() else {
            deploy.push(t);
            continue;
        };
        let region = match wanted {
            "service-region" => deps.service_region.unwrap_or("service-region").to_owned(),
            r => r.to_owned(),
        };
        if event.region.as_deref() == Some(region.as_str()) || presence.regions.contains(&region) {
            deploy.push(t);
        } else {
            held.push((t, region));
        }
    }
    Ok((deploy, held))
}

/// What recording a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Recorded, and the tag (if any) now points at this digest.
    Applied,
    /// Recorded on the image, but the tag already points at a push at least this recent.
    Stale,
    /// Seen before: nothing changed. `pending` when the earlier delivery recorded the event but
    /// not its deployments, which must then be completed.
    Duplicate { pending: bool },
    /// Recorded, tag moved, but the digest may not be deployed (quarantined, or deleted after
    /// this push): the deployments are recorded as blocked and applied on release.
    Blocked { reason: String },
    /// Applied, and the digest's ACR quarantine lifted: with quarantine enabled, ACR sends the
    /// push of a quarantined image only once the image has been marked Passed.
    AppliedAcrPassed,
}

#[derive(Clone, PartialEq, Eq)]
enum PushVariant {
    Normal,
    Stale,
    Blocked,
    /// ACR's hold lifted from the holds read at version `read`; others may remain, and then
    /// the push is blocked by them.
    AcrPassed {
        holds: Holds,
        read: u64,
    },
}

impl PushVariant {
    fn blocked(&self) -> bool {
        match self {
            Self::Blocked => true,
            Self::AcrPassed { holds, .. } => !holds.is_empty(),
            _ => false,
        }
    }
}

/// The quarantine source ACR's own quarantine events record.
const ACR_SOURCE: &str = "acr";
const ACR_PASSED: &str = "ACR sent the push of a quarantined image: it was marked Passed";

/// Records that `tag` was pushed with `digest`.
fn image_tag(r: &Receipt<'_>, digest: &str, tag: &str) -> Op {
    let mut item = serde_json::Map::new();
    item.insert("type".into(), json!("image_tag"));
    item.insert("digest".into(), json!(digest));
    item.insert("tag".into(), json!(tag));
    Op::Put {
        key: Key::new(r.image_pk(), keys::image_tag_sk(digest, tag)),
        item,
        cond: None,
    }
}

fn push_ops(r: &Receipt<'_>, targets: &[Target], variant: &PushVariant, reason: &str) -> Vec<Op> {
    let e = r.event;
    let t = e.occurred_at.as_str();
    let blocked = variant.blocked();
    let (status, outcome) = match variant {
        _ if blocked => (ReceiptStatus::Done, "blocked"),
        PushVariant::Stale => (ReceiptStatus::Done, "stale"),
        _ if !targets.is_empty() => (ReceiptStatus::Pending, "applied"),
        _ => (ReceiptStatus::Done, "applied"),
    };
    let mut ops = vec![r.put(status, outcome, blocked.then_some(reason))];
    if let Some(key) = r.image_key() {
        let digest = r.digest();
        if let Some(tag) = &e.image.tag {
            ops.push(image_tag(r, digest, tag.as_str()));
        }
        if let Some(region) = &e.region {
            ops.push(replicate::arrived(r, digest, region));
        }
        let mut u = r
            .image_update(key)
            .set_if_absent("status", ImageStatus::Active.as_str())
            .set_opt("media_type", e.media_type.as_deref())
            .set_opt("size", e.size)
            .add("push_count", 1);
        if *variant == PushVariant::Normal {
            // Active again unless quarantined, or deleted after this push was made.
            u = u
                .set("status", ImageStatus::Active.as_str())
                .set("last_pushed_at", t)
                .when(Cond::And(vec![
                    Cond::Missing("quarantine_reason"),
                    Cond::Or(vec![
                        Cond::Missing("deleted_at"),
                        Cond::Ne("status", json!(ImageStatus::Deleted.as_str())),
                        Cond::Lt("deleted_at", json!(t)),
                    ]),
                ]));
            u.set_if_absent.retain(|(a, _)| *a != "status");
        }
        if let PushVariant::AcrPassed { holds, read } = variant {
            u = quarantine::holds_update(u, holds, *read, true).set("released_at", t);
            if holds.is_empty() {
                u = u.set("last_pushed_at", t);
            }
            u.set_if_absent.retain(|(a, _)| *a != "status");
            ops.push(r.change(
                digest,
                "released",
                Some(&format!("{ACR_SOURCE}: {ACR_PASSED}")),
            ));
        }
        if matches!(variant, PushVariant::Stale | PushVariant::Blocked) || blocked {
            // The digest was pushed even when its tag had moved on or it may not deploy: the
            // image's first push must not read as never.
            u = u.set_if_absent("last_pushed_at", t);
        }
        if *variant == PushVariant::Blocked {
            // Still held or deleted when written: a release in between sends the push out.
            u = u.when(Cond::Or(vec![
                Cond::Present("quarantine_reason"),
                Cond::Eq("status", json!(ImageStatus::Deleted.as_str())),
            ]));
        }
        ops.insert(1, Op::Update(u));
    }
    if let (Some(tag), true) = (&e.image.tag, *variant != PushVariant::Stale) {
        let mut u = Update::new(Key::new(r.image_pk(), keys::tag_sk(tag.as_str())))
            .set("type", "tag")
            .set("registry", e.image.registry.as_str())
            .set("repository", e.image.repository.as_str())
            .set("tag", tag.as_str())
            .set("updated_at", t)
            .set("event_id", e.id.as_str())
            .copy("previous_digest", "digest", "")
            .add("version", 1)
            .when(Cond::Or(vec![
                Cond::Missing("updated_at"),
                Cond::Le("updated_at", json!(t)),
            ]));
        u = match &e.image.digest {
            Some(d) => u.set("digest", d.as_str()).remove("unpinned"),
            None => u.set("unpinned", true).remove("digest"),
        };
        ops.push(Op::Update(u));
    }
    // A push that deploys nowhere is in the history from the transaction that records it.
    let source = || Source::of(e, Some(r.received_at.as_str()));
    if blocked {
        let mut held = Vec::with_capacity(targets.len());
        for target in targets {
            // Released, it still waits for the region its rule requires.
            let region = target.require_region.as_deref();
            ops.push(held::blocked_op(r, target, reason, region));
            let dep = Deployment::new(target, &e.image, DeployOutcome::Blocked).with_reason(reason);
            let (key, item) = deployments::deployment_item(e, &dep, r.received_at);
            ops.push(Op::Put {
                key,
                item,
                cond: None,
            });
            held.push(dep);
        }
        let source = source().refused(EntryOutcome::Blocked, reason);
        ops.extend(history::history_ops(e, &source, &held, r.received_at));
    }
    if *variant == PushVariant::Stale {
        let why = stale(e);
        let skipped: Vec<Deployment> = targets
            .iter()
            .map(|t| Deployment::new(t, &e.image, DeployOutcome::Skipped).with_reason(&why))
            .collect();
        let source = source().refused(EntryOutcome::Stale, &why);
        ops.extend(history::history_ops(e, &source, &skipped, r.received_at));
    }
    ops
}

fn stale(event: &ImageEvent) -> String {
    format!(
        "tag {} already points at a push at least as recent as {}: recorded on the image, not deployed",
        event.image.tag.as_ref().map_or("", |t| t.as_str()),
        event.occurred_at
    )
}

/// Records a push: receipt, image and tag in one transaction (DESIGN §4).
pub async fn record_push(
    store: &dyn Store,
    r: &Receipt<'_>,
    targets: &[Target],
) -> Result<PushOutcome, StoreError> {
    let mut variant = PushVariant::Normal;
    let mut reason = String::new();
    for _ in 0..MAX_ATTEMPTS {
        let ops = push_ops(r, targets, &variant, &reason);
        let tag_at = ops
            .iter()
            .position(|o| o.key().sk.starts_with(keys::TAG_PREFIX));
        let image_at = r.image_key().map(|_| 1);
        let cancelled = match store.transact(ops).await? {
            Ok(()) => {
                return Ok(match variant {
                    PushVariant::Normal => PushOutcome::Applied,
                    PushVariant::AcrPassed { holds, .. } if holds.is_empty() => {
                        PushOutcome::AppliedAcrPassed
                    }
                    PushVariant::AcrPassed { .. } | PushVariant::Blocked => {
                        PushOutcome::Blocked { reason }
                    }
                    PushVariant::Stale => PushOutcome::Stale,
                });
            }
            Err(c) => c,
        };
        if let Some(old) = cancelled.failed_at(0) {
            return Ok(PushOutcome::Duplicate {
                pending: pending(old),
            });
        }
        if tag_at.is_some_and(|i| cancelled.failed_at(i).is_some()) {
            variant = PushVariant::Stale;
            continue;
        }
        match image_at.and_then(|i| cancelled.failed_at(i)) {
            Some(old) => {
                let old = match old {
                    Some(Record::Image(image)) => Some(image),
                    _ => None,
                };
                // What refused the write, as it stands now: a hold, or a delete made after this
                // push. Neither (a release or a revival in between): the push goes out as usual.
                let t = r.event.occurred_at.as_str();
                let held = old.is_some_and(|i| i.quarantine.is_some());
                let deleted_after = old.is_some_and(|i| {
                    i.status == Some(ImageStatus::Deleted)
                        && i.deleted_at.as_deref().is_some_and(|d| d >= t)
                });
                if !held && !deleted_after {
                    variant = PushVariant::Normal;
                    continue;
                }
                let acr_passed = match old {
                    Some(i)
                        if r.event.provider == Provider::Acr
                            && i.holds.get(ACR_SOURCE).is_some() =>
                    {
                        let mut holds = i.holds.clone();
                        matches!(
                            holds.lift(ACR_SOURCE, r.event.occurred_at.as_str()),
                            Lift::Lifted(_)
                        )
                        .then(|| (holds, i.holds.version))
                    }
                    _ => None,
                };
                match acr_passed {
                    Some((holds, read)) => {
                        reason = match holds.summary() {
                            Some(rest) => format!(
                                "ACR marked the image Passed, but the digest is still quarantined: {rest}"
                            ),
                            None => String::new(),
                        };
                        variant = PushVariant::AcrPassed { holds, read };
                    }
                    _ => {
                        reason = blocked_reason(old);
                        variant = PushVariant::Blocked;
                    }
                }
            }
            None => return Err(unexpected(&cancelled)),
        }
    }
    Err(StoreError::Corrupt(
        "push could not be recorded: conditions kept changing".into(),
    ))
}

fn blocked_reason(image: Option<&ImageRecord>) -> String {
    match image.and_then(|i| i.quarantine.as_ref()) {
        Some(q) => format!("digest is quarantined: {}", q.reason),
        None => format!(
            "digest was deleted at {}, after this push",
            image
                .and_then(|i| i.deleted_at.as_deref())
                .unwrap_or("an unknown time")
        ),
    }
}
