//! Held deployments: a deployment of a quarantined or deleted digest, or of one not yet in the
//! region its rule requires, waits as a `blocked` record, and is applied on release (or on
//! arrival), once per service and only where the tag still points at the digest.

use serde_json::{Map, json};

use super::converge::{self, Proposal};
use super::deps::{Deps, PipelineError, warn_failed};
use super::history::{Pushed, Source};
use super::receipt::Receipt;
use crate::model::event::ImageEvent;
use crate::model::records::Record;
use crate::model::result::EventResult;
use crate::model::rules::Target;
use crate::ports::store::keys;
use crate::ports::store::ops::Op;
use crate::ports::store::{Key, Store, StoreError};

/// A held deployment of the event's digest to `target`: released by the quarantine function, or,
/// with `waiting_region`, applied when the digest arrives in that region.
pub(super) fn blocked_op(
    r: &Receipt<'_>,
    target: &Target,
    reason: &str,
    waiting_region: Option<&str>,
) -> Op {
    let e = r.event;
    let digest = r.digest();
    let mut b = Map::new();
    b.insert("type".into(), json!("blocked"));
    b.insert("cluster".into(), json!(target.cluster));
    b.insert("service".into(), json!(target.service));
    b.insert("digest".into(), json!(digest));
    b.insert("image".into(), json!(e.image.deployable()));
    b.insert("event".into(), json!(r.by()));
    b.insert("blocked_at".into(), json!(r.received_at.as_str()));
    b.insert("pushed_at".into(), json!(e.occurred_at.as_str()));
    b.insert("reason".into(), json!(reason));
    for (k, v) in [
        ("tag", e.image.tag.as_ref().map(|t| t.to_string())),
        ("container", target.container.clone()),
        ("stage", target.stage.clone()),
        ("waiting_region", waiting_region.map(str::to_owned)),
    ] {
        if let Some(v) = v {
            b.insert(k.into(), json!(v));
        }
    }
    Op::Put {
        key: Key::new(
            r.image_pk(),
            keys::blocked_sk(digest, &target.cluster, &target.service),
        ),
        item: b,
        cond: None,
    }
}

/// A deployment held back, as the blocked record says.
#[derive(Debug, Clone)]
pub struct Blocked {
    pub key: Key,
    pub target: Target,
    pub tag: Option<String>,
    /// Held (also) until the digest arrives in this region (a rule's `require_region`): a
    /// release applies it only once the digest is there.
    pub waiting_region: Option<String>,
    /// The held push (`provider#id`) and its ordering key: applied on release only if it is
    /// still the newest proposal for the service.
    pub event: Option<String>,
    pub order: String,
}

/// The blocked deployments of a digest, one per service.
pub async fn blocked_deployments(
    store: &dyn Store,
    event: &ImageEvent,
) -> Result<Vec<Blocked>, StoreError> {
    let Some(digest) = &event.image.digest else {
        return Ok(Vec::new());
    };
    let pk = keys::image_pk(
        event.image.registry.as_str(),
        event.image.repository.as_str(),
    );
    Ok(store
        .query(&pk, &keys::blocked_prefix(digest.as_str()))
        .await?
        .into_iter()
        .filter_map(|r| r.blocked())
        .map(|b| Blocked {
            order: converge::order_of(
                b.pushed_at
                    .as_deref()
                    .or(b.blocked_at.as_deref())
                    .unwrap_or_default(),
                b.blocked_at.as_deref().unwrap_or_default(),
            ),
            event: b.event,
            key: Key::new(
                pk.clone(),
                keys::blocked_sk(&b.digest, &b.cluster, &b.service),
            ),
            // The policy is the rule's, looked up again when the deployment is applied.
            target: Target {
                container: b.container,
                stage: b.stage,
                ..Target::service(b.cluster, b.service)
            },
            tag: b.tag,
            waiting_region: b.waiting_region,
        })
        .collect())
}

/// Where a tag points now (`None`: no such tag, or unpinned).
pub async fn tag_digest(
    store: &dyn Store,
    event: &ImageEvent,
    tag: &str,
) -> Result<Option<String>, StoreError> {
    let pk = keys::image_pk(
        event.image.registry.as_str(),
        event.image.repository.as_str(),
    );
    Ok(store
        .get(&Key::new(pk, keys::tag_sk(tag)))
        .await?
        .and_then(|r| r.tag())
        .and_then(|t| t.digest))
}

/// Applies held deployments of the event's digest, once per service and only where the held
/// tag still points at the digest (a tag that moved on was deployed, or held, by the newer
/// push), with the policy each rule has now. `replicas`: the other registries the digest has
/// arrived in, so a service that pulls from one of them is deployed its reference. Then records them, settles every entry in `held`,
/// and marks the event's receipt done, even when nothing was deployed.
pub(crate) async fn apply_held(
    deps: &Deps<'_>,
    event: &ImageEvent,
    held: &[Blocked],
    replicas: &[String],
    result: &mut EventResult,
) -> Result<(), PipelineError> {
    let digest = event.image.digest.as_ref().map(ToString::to_string);
    let mut proposals: Vec<(Target, Proposal)> = Vec::new();
    let mut source = Source::of(event, received_at(deps, event).await?.as_deref());
    let mut gated: Vec<(Target, crate::model::reference::ImageRef, Blocked)> = Vec::new();
    for b in held {
        let current = match &b.tag {
            Some(tag) => tag_digest(deps.store, event, tag).await?,
            None => digest.clone(),
        };
        if current == digest
            && !proposals
                .iter()
                .any(|(t, _)| t.cluster == b.target.cluster && t.service == b.target.service)
        {
            let mut target = with_current_policy(deps, event, b);
            target.replicas = replicas.to_vec();
            if !target.gate.is_open() {
                // Released, it still waits for its approvals or its earlier stage.
                gated.push((target, tagged(event, b), b.clone()));
                continue;
            }
            let proposal = Proposal {
                event: b
                    .event
                    .clone()
                    .unwrap_or_else(|| format!("{}#{}", event.provider, event.id)),
                // Deployed as the release names it, by digest: the held tag chose the rule.
                image: event.image.clone(),
                order: b.order.clone(),
            };
            // The history names the push applied: its tag and time, which the release lacks.
            source.pushes.push(Pushed {
                cluster: b.target.cluster.clone(),
                service: b.target.service.clone(),
                event: proposal.event.clone(),
                tag: b.tag.clone(),
                // The held push's time leads its ordering key; a held entry that kept no push
                // time leads with when it was held, the nearest to it that is known.
                pushed_at: b.order.split('#').next().unwrap_or_default().to_owned(),
            });
            proposals.push((target, proposal));
        }
    }
    let settled: Vec<_> = held.iter().map(|b| b.key.clone()).collect();
    let pending = gated
        .iter()
        .map(|(t, image, b)| super::approve::Pending {
            target: t.clone(),
            image,
            event: b
                .event
                .clone()
                .unwrap_or_else(|| format!("{}#{}", event.provider, event.id)),
            pushed_at: b.order.split('#').next().unwrap_or_default().to_owned(),
            order: b.order.clone(),
            received_at: converge::received_of(&b.order).map(str::to_owned),
        })
        .collect();
    // Gated holds come back open only when their stage passed and they need no approval.
    let (open, waiting) = super::approve::hold_gated(deps, pending).await?;
    for t in open {
        if let Some((_, image, b)) = gated
            .iter()
            .find(|(g, _, _)| g.cluster == t.cluster && g.service == t.service)
        {
            let proposal = Proposal {
                event: b
                    .event
                    .clone()
                    .unwrap_or_else(|| format!("{}#{}", event.provider, event.id)),
                image: image.clone(),
                order: b.order.clone(),
            };
            proposals.push((t, proposal));
        }
    }
    let deployments =
        super::deploy::deploy_all(deps, event, &source, proposals, waiting, &settled).await?;
    warn_failed(result, &deployments);
    result.deployments = deployments;
    Ok(())
}

/// When the event's first delivery was received, as its receipt (written before any held
/// deployment is applied) says.
async fn received_at(deps: &Deps<'_>, event: &ImageEvent) -> Result<Option<String>, StoreError> {
    Ok(deps
        .store
        .get(&keys::receipt(event.provider.as_str(), &event.id))
        .await?
        .and_then(Record::receipt)
        .and_then(|r| r.received_at))
}

/// A held deployment with the rollout policy its rule has now (rules may have changed while
/// the digest was held); the default policy if no rule names the service any more.
fn with_current_policy(deps: &Deps<'_>, event: &ImageEvent, b: &Blocked) -> Target {
    let image = tagged(event, b);
    let mut target = b.target.clone();
    if let Some(t) = deps
        .rules
        .targets(&image)
        .into_iter()
        .find(|t| t.cluster == target.cluster && t.service == target.service)
    {
        target.policy = t.policy;
        target.gate = t.gate;
        // What kind of service it is (ECS or Express Mode) is the rule's, not the hold's.
        target.express = t.express;
    }
    target
}

/// The event's image with the tag the held push had: the tag chose the rule.
fn tagged(event: &ImageEvent, b: &Blocked) -> crate::model::reference::ImageRef {
    let mut image = event.image.clone();
    if let Some(tag) = b
        .tag
        .as_deref()
        .and_then(|t| crate::model::reference::Tag::parse(t).ok())
    {
        image.tag = Some(tag);
    }
    image
}

/// Holds deployments until the digest arrives in their region.
pub async fn hold(
    store: &dyn Store,
    r: &Receipt<'_>,
    held: &[(Target, String)],
) -> Result<(), StoreError> {
    if held.is_empty() {
        return Ok(());
    }
    let ops = held
        .iter()
        .map(|(t, region)| blocked_op(r, t, &not_yet_replicated(region), Some(region.as_str())))
        .collect();
    store
        .transact(ops)
        .await?
        .map_err(|_| StoreError::Corrupt("unconditional puts were refused".into()))
}

pub fn not_yet_replicated(region: &str) -> String {
    format!("not yet replicated to {region}: deployed when the digest arrives there")
}
