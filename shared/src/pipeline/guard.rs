//! The deployment guard: ECS calls it as a deployment lifecycle hook (blue/green, linear and
//! canary deployments), whoever started the deployment (the console, CloudFormation, Terraform,
//! a CI script). It reads the images of the service revision being deployed, finds each one's
//! digest, and answers `FAILED` when imagehook's records hold any of them quarantined or
//! deleted, so that a quarantine or delete blocks every deployment and not only imagehook's.
//!
//! The contract is ECS's (docs/guard.md quotes it): the event names the service and the target
//! service revision (`executionDetails.targetServiceRevisionArn`); the answer is
//! `{"hookStatus": "SUCCEEDED" | "FAILED" | "IN_PROGRESS"}`, `IN_PROGRESS` with an optional
//! `callBackDelay` in seconds after which ECS asks again. A function that fails or answers
//! anything else rolls the deployment back, so every failure here is answered, never raised.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::notice::{Notice, NoticeKind};
use crate::model::records::{ImageRecord, ImageStatus, Record};
use crate::model::reference::{Digest, ImageRef, RegistryAliases, Tag};
use crate::ports::resolver::Resolver;
use crate::ports::revisions::{RevisionError, RevisionImage, Revisions};
use crate::ports::store::{Key, StoreRead, keys};

/// The largest event accepted. ECS's events are about a kilobyte; `hookDetails` carries what
/// the service's hook configuration adds, which is small by design.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// `executionId` is a UUID; anything much longer is not ECS's.
pub const MAX_EXECUTION_ID: usize = 128;
/// Stage names are upper-case words joined by `_` (`POST_PRODUCTION_TRAFFIC_SHIFT`).
pub const MAX_STAGE: usize = 64;
/// IAM's bound on an ARN.
pub const MAX_ARN: usize = 2048;
/// Revisions named in one traffic-weights map: a deployment moves traffic between a few.
pub const MAX_WEIGHTS: usize = 20;
/// Containers of one revision: ECS allows 10 per task definition; more is not ECS's answer.
pub const MAX_IMAGES: usize = 64;
/// How long ECS waits before asking again when ECS itself could not be read.
pub const RETRY_DELAY_SECS: u32 = 30;
/// The reason in an answer and a notice: enough for a page of images, bounded for the log.
const MAX_REASON: usize = 4096;

/// `GUARD_MODE`: whether an image imagehook has no record of is let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardMode {
    /// Only what imagehook holds quarantined or deleted is refused.
    #[default]
    Standard,
    /// Also an image imagehook has no record of (never pushed through it, or unresolvable).
    Strict,
}

impl GuardMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Strict => "strict",
        }
    }
}

/// `GUARD_ON_STORE_ERROR`: what an image whose record could not be read counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Let the deployment through (an outage of imagehook's table does not stop deployments).
    Open,
    /// Refuse it (nothing unchecked is deployed).
    Closed,
}

impl OnStoreError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    /// Closed in strict mode, open otherwise.
    pub fn default_for(mode: GuardMode) -> Self {
        match mode {
            GuardMode::Strict => Self::Closed,
            GuardMode::Standard => Self::Open,
        }
    }
}

/// How the guard decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GuardSettings {
    pub mode: GuardMode,
    pub on_store_error: OnStoreError,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self {
            mode: GuardMode::Standard,
            on_store_error: OnStoreError::default_for(GuardMode::Standard),
        }
    }
}

/// What the guard is given.
#[derive(Clone, Copy)]
pub struct GuardDeps<'a> {
    pub store: &'a dyn StoreRead,
    pub revisions: &'a dyn Revisions,
    /// Resolves a tag ECS reported no digest for and imagehook has no record of.
    pub resolver: Option<&'a dyn Resolver>,
    pub registry_aliases: &'a RegistryAliases,
    pub settings: GuardSettings,
}

/// Why an invocation is not a lifecycle hook event the guard can read. Every message names the
/// field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the event is {0} bytes, over the {MAX_PAYLOAD}-byte bound")]
    TooLarge(usize),
    #[error("the event is not a lifecycle hook event: {0}")]
    Shape(String),
    #[error("{field}: {why}")]
    Field { field: &'static str, why: String },
}

/// One lifecycle hook invocation, as the guard reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookEvent {
    pub execution_id: String,
    pub lifecycle_stage: String,
    /// The service deployment (`arn:…:service-deployment/<cluster>/<service>/<id>`).
    pub resource_arn: String,
    pub service_arn: String,
    /// `cluster/service`, from the service ARN.
    pub service: String,
    pub target_revision_arn: String,
    /// Traffic moves back from the target revision: ECS re-invokes the traffic-shift hooks
    /// during a rollback, with the target at 0 % and the revision it returns to at 100 %.
    pub rolling_back: bool,
}

/// The event's fields the guard reads. `hookDetails` (what a service's hook configuration
/// passes through) is not among them: the guard takes no setting from it, so that whoever edits
/// a service cannot turn the guard off for it. Fields ECS may add later are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    execution_id: String,
    lifecycle_stage: String,
    resource_arn: String,
    execution_details: RawDetails,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDetails {
    service_arn: String,
    target_service_revision_arn: String,
    #[serde(default)]
    test_traffic_weights: BTreeMap<String, f64>,
    #[serde(default)]
    production_traffic_weights: BTreeMap<String, f64>,
}

/// Reads one invocation's event: every value bounded, each refusal naming its field.
pub fn parse(body: &[u8]) -> Result<HookEvent, PayloadError> {
    if body.len() > MAX_PAYLOAD {
        return Err(PayloadError::TooLarge(body.len()));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let raw: RawEvent =
        serde_path_to_error::deserialize(de).map_err(|e| PayloadError::Shape(e.to_string()))?;
    let execution_id = bounded("executionId", raw.execution_id, MAX_EXECUTION_ID)?;
    let lifecycle_stage = bounded("lifecycleStage", raw.lifecycle_stage, MAX_STAGE)?;
    if !lifecycle_stage
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b == b'_')
    {
        return Err(PayloadError::Field {
            field: "lifecycleStage",
            why: format!("{lifecycle_stage:?} is not a stage name"),
        });
    }
    let resource_arn = ecs_arn("resourceArn", raw.resource_arn, "service-deployment/")?;
    let details = raw.execution_details;
    let service_arn = ecs_arn(
        "executionDetails.serviceArn",
        details.service_arn,
        "service/",
    )?;
    let target_revision_arn = ecs_arn(
        "executionDetails.targetServiceRevisionArn",
        details.target_service_revision_arn,
        "service-revision/",
    )?;
    let test = weights(
        "executionDetails.testTrafficWeights",
        details.test_traffic_weights,
    )?;
    let production = weights(
        "executionDetails.productionTrafficWeights",
        details.production_traffic_weights,
    )?;
    let service = service_of(&service_arn);
    let rolling_back = match lifecycle_stage.as_str() {
        "PRODUCTION_TRAFFIC_SHIFT" => moving_back(&production, &target_revision_arn),
        "TEST_TRAFFIC_SHIFT" => moving_back(&test, &target_revision_arn),
        _ => false,
    };
    Ok(HookEvent {
        execution_id,
        lifecycle_stage,
        resource_arn,
        service_arn,
        service,
        target_revision_arn,
        rolling_back,
    })
}

fn bounded(field: &'static str, value: String, max: usize) -> Result<String, PayloadError> {
    if value.is_empty() {
        return Err(PayloadError::Field {
            field,
            why: "is empty".into(),
        });
    }
    if value.len() > max {
        return Err(PayloadError::Field {
            field,
            why: format!("is {} bytes, over the {max}-byte bound", value.len()),
        });
    }
    Ok(value)
}

/// An ECS ARN of the resource type `kind` (`service/`, `service-revision/`, ...).
fn ecs_arn(field: &'static str, value: String, kind: &str) -> Result<String, PayloadError> {
    let value = bounded(field, value, MAX_ARN)?;
    let resource = value
        .strip_prefix("arn:")
        .and_then(|rest| {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            match parts.as_slice() {
                [_partition, "ecs", _region, _account, resource] => Some(*resource),
                _ => None,
            }
        })
        .and_then(|r| r.strip_prefix(kind))
        .filter(|name| !name.is_empty() && !name.chars().any(char::is_control));
    match resource {
        Some(_) => Ok(value),
        None => Err(PayloadError::Field {
            field,
            why: format!(
                "{:?} is not an ECS {} ARN",
                value.chars().take(200).collect::<String>(),
                kind.trim_end_matches('/')
            ),
        }),
    }
}

fn weights(
    field: &'static str,
    map: BTreeMap<String, f64>,
) -> Result<BTreeMap<String, f64>, PayloadError> {
    if map.len() > MAX_WEIGHTS {
        return Err(PayloadError::Field {
            field,
            why: format!(
                "names {} revisions, over the bound of {MAX_WEIGHTS}",
                map.len()
            ),
        });
    }
    for (arn, weight) in &map {
        if arn.len() > MAX_ARN {
            return Err(PayloadError::Field {
                field,
                why: format!("a revision ARN of {} bytes", arn.len()),
            });
        }
        if !(0.0..=100.0).contains(weight) {
            return Err(PayloadError::Field {
                field,
                why: format!("weight {weight} is not a percentage"),
            });
        }
    }
    Ok(map)
}

/// `cluster/service` of `arn:…:service/<cluster>/<service>` (the service name alone for the
/// old format without the cluster).
fn service_of(service_arn: &str) -> String {
    service_arn
        .split_once(":service/")
        .map_or(service_arn, |(_, s)| s)
        .to_owned()
}

/// The target revision gets no traffic and another revision gets all of it.
fn moving_back(map: &BTreeMap<String, f64>, target: &str) -> bool {
    map.get(target).is_some_and(|w| *w == 0.0)
        && map
            .iter()
            .any(|(arn, w)| arn != target && (*w - 100.0).abs() < f64::EPSILON)
}

/// What the guard answers ECS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HookStatus {
    Succeeded,
    Failed,
    InProgress,
}

impl HookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::InProgress => "IN_PROGRESS",
        }
    }
}

/// Where an image's digest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigestFrom {
    /// The reference is pinned (`@sha256:…`).
    Reference,
    /// ECS reported the digest it resolved the reference to (`imageDigest`).
    Ecs,
    /// imagehook's record of the tag.
    TagRecord,
    /// The registry, asked for the tag.
    Registry,
}

/// How imagehook's records stand on one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "standing", rename_all = "kebab-case")]
pub enum Standing {
    /// On record, neither held nor deleted.
    Clear,
    /// At least one hold: `source: reason` each.
    Quarantined { holds: Vec<String> },
    /// A tombstone.
    Deleted { at: Option<String> },
    /// imagehook has no record of it, or could not find its digest.
    Unknown { why: String },
    /// The record could not be read.
    Unreadable { error: String },
}

/// One image of the revision and how it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The reference as the revision names it.
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest_from: Option<DigestFrom>,
    #[serde(flatten)]
    pub standing: Standing,
}

impl Checked {
    /// The image pinned by the digest checked, when there is one.
    pub fn pinned(&self) -> String {
        match &self.digest {
            Some(d) => {
                let name = self
                    .image
                    .split_once('@')
                    .map_or(self.image.as_str(), |(n, _)| n);
                format!("{name}@{d}")
            }
            None => self.image.clone(),
        }
    }

    /// Why this image fails the deployment under `settings`, if it does.
    fn refusal(&self, settings: GuardSettings) -> Option<String> {
        let what = match &self.container {
            Some(c) => format!("{} (container {c})", self.pinned()),
            None => self.pinned(),
        };
        match &self.standing {
            Standing::Clear => None,
            Standing::Quarantined { holds } => {
                Some(format!("{what} is quarantined: {}", holds.join("; ")))
            }
            Standing::Deleted { at } => Some(format!(
                "{what} was deleted (tombstone{})",
                at.as_deref()
                    .map(|a| format!(" at {a}"))
                    .unwrap_or_default()
            )),
            Standing::Unknown { why } if settings.mode == GuardMode::Strict => Some(format!(
                "{what} is unknown to imagehook (GUARD_MODE=strict): {why}"
            )),
            Standing::Unknown { .. } => None,
            Standing::Unreadable { error } if settings.on_store_error == OnStoreError::Closed => {
                Some(format!(
                    "{what} could not be checked (GUARD_ON_STORE_ERROR=closed): {error}"
                ))
            }
            Standing::Unreadable { .. } => None,
        }
    }
}

/// The guard's answer to one invocation, with what it found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub status: HookStatus,
    /// Why it failed (or asks again); every refused image named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds until ECS asks again (`IN_PROGRESS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_back_delay: Option<u32>,
    pub images: Vec<Checked>,
    /// The images that failed it, as `(pinned image, why)`.
    #[serde(skip)]
    pub refused: Vec<(String, String)>,
}

impl Verdict {
    fn new(status: HookStatus) -> Self {
        Self {
            status,
            reason: None,
            call_back_delay: None,
            images: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// A failure that is not about one image (the event, the revision).
    pub fn failed(reason: impl Into<String>) -> Self {
        let mut v = Self::new(HookStatus::Failed);
        v.reason = Some(clip(reason.into()));
        v
    }

    /// The answer ECS reads: `hookStatus`, `callBackDelay` with `IN_PROGRESS`, and on failure
    /// the reason in `hookDetails`, the answer's one documented place for the function's own
    /// data (ECS shows the hook as failed; the reason is also logged and notified).
    pub fn response(&self) -> Value {
        let mut out = json!({ "hookStatus": self.status.as_str() });
        if let Some(delay) = self.call_back_delay {
            out["callBackDelay"] = json!(delay);
        }
        if let (HookStatus::Failed, Some(reason)) = (self.status, &self.reason) {
            out["hookDetails"] = json!({ "imagehookReason": reason });
        }
        out
    }
}

/// Decides one hook invocation whose event was read.
pub async fn decide(deps: &GuardDeps<'_>, event: &HookEvent) -> Verdict {
    if event.rolling_back {
        // Traffic returns to the revision that ran before: refusing that would keep traffic on
        // the revision being rolled back, which is never safer.
        let mut v = Verdict::new(HookStatus::Succeeded);
        v.reason =
            Some("the deployment is rolling back: traffic leaves the target revision".into());
        return v;
    }
    let images = match deps.revisions.images(&event.target_revision_arn).await {
        Ok(images) => images,
        Err(e) if e.is_retryable() => {
            let mut v = Verdict::new(HookStatus::InProgress);
            v.call_back_delay = Some(RETRY_DELAY_SECS);
            v.reason = Some(clip(format!(
                "the revision's images could not be read; ECS asks again in {RETRY_DELAY_SECS} s: {e}"
            )));
            return v;
        }
        Err(e) => return Verdict::failed(revision_failure(&e)),
    };
    if images.is_empty() || images.len() > MAX_IMAGES {
        return Verdict::failed(format!(
            "ECS described the service revision {} with {} container images",
            event.target_revision_arn,
            images.len()
        ));
    }
    let mut checked = Vec::new();
    for image in &images {
        checked.extend(check(deps, image).await);
    }
    let refused: Vec<(String, String)> = checked
        .iter()
        .filter_map(|c| c.refusal(deps.settings).map(|why| (c.pinned(), why)))
        .collect();
    let mut v = Verdict::new(if refused.is_empty() {
        HookStatus::Succeeded
    } else {
        HookStatus::Failed
    });
    if !refused.is_empty() {
        let whys: Vec<&str> = refused.iter().map(|(_, why)| why.as_str()).collect();
        v.reason = Some(clip(whys.join("; ")));
    }
    v.images = checked;
    v.refused = refused;
    v
}

fn revision_failure(e: &RevisionError) -> String {
    format!("the images of the revision being deployed could not be read, so none was checked: {e}")
}

/// One container's image: its digests (the pinned one and ECS's, or its tag's), each judged by
/// imagehook's record of it.
async fn check(deps: &GuardDeps<'_>, image: &RevisionImage) -> Vec<Checked> {
    let at = |digest: Option<String>, from: Option<DigestFrom>, standing: Standing| Checked {
        container: image.container.clone(),
        image: image.image.clone(),
        digest,
        digest_from: from,
        standing,
    };
    let reference = match ImageRef::parse(&image.image) {
        Ok(mut r) => {
            r.registry = deps.registry_aliases.canonical(&r.registry);
            r
        }
        Err(e) => {
            return vec![at(
                image.digest.clone(),
                None,
                Standing::Unknown {
                    why: format!("not an image reference imagehook reads: {e}"),
                },
            )];
        }
    };
    let mut digests: Vec<(Digest, DigestFrom)> = Vec::new();
    if let Some(d) = &reference.digest {
        digests.push((d.clone(), DigestFrom::Reference));
    }
    match image.digest.as_deref().map(Digest::parse) {
        Some(Ok(d)) if !digests.iter().any(|(k, _)| *k == d) => digests.push((d, DigestFrom::Ecs)),
        Some(Err(e)) => {
            return vec![at(
                None,
                None,
                Standing::Unknown {
                    why: format!("ECS reported a digest imagehook cannot read: {e}"),
                },
            )];
        }
        _ => {}
    }
    if digests.is_empty() {
        match by_tag(deps, &reference).await {
            Ok(found) => digests.push(found),
            Err(standing) => return vec![at(None, None, standing)],
        }
    }
    let mut out = Vec::new();
    for (digest, from) in digests {
        let key = Key::new(
            keys::image_pk(reference.registry.as_str(), reference.repository.as_str()),
            keys::image_sk(digest.as_str()),
        );
        let standing = match deps.store.get(&key).await {
            Ok(Some(Record::Image(record))) => judge(&record),
            Ok(_) => Standing::Unknown {
                why: format!("imagehook has no record of {}@{digest}", reference.name()),
            },
            Err(e) => Standing::Unreadable {
                error: e.to_string(),
            },
        };
        out.push(at(Some(digest.to_string()), Some(from), standing));
    }
    out
}

/// The digest of a reference without one: imagehook's record of its tag, else its registry.
async fn by_tag(deps: &GuardDeps<'_>, image: &ImageRef) -> Result<(Digest, DigestFrom), Standing> {
    // A reference without a tag or digest runs `latest`, as the container runtime pulls it.
    let tag = match &image.tag {
        Some(t) => t.clone(),
        None => Tag::parse("latest").map_err(|e| Standing::Unknown { why: e.to_string() })?,
    };
    let key = Key::new(
        keys::image_pk(image.registry.as_str(), image.repository.as_str()),
        keys::tag_sk(tag.as_str()),
    );
    match deps.store.get(&key).await {
        Ok(Some(Record::Tag(t))) => {
            if let Some(d) = t.digest {
                return Digest::parse(&d)
                    .map(|d| (d, DigestFrom::TagRecord))
                    .map_err(|_| Standing::Unreadable {
                        error: format!("the record of tag {tag} holds digest {d:?}"),
                    });
            }
        }
        Ok(_) => {}
        Err(e) => {
            return Err(Standing::Unreadable {
                error: e.to_string(),
            });
        }
    }
    let mut pinned = image.clone();
    pinned.tag = Some(tag);
    let Some(resolver) = deps.resolver else {
        return Err(Standing::Unknown {
            why: "ECS reported no digest, imagehook has no digest on record for the tag, and asking registries is off (RESOLVE_DIGESTS=off)".into(),
        });
    };
    let budget: Duration = resolver.budget();
    match tokio::time::timeout(budget, resolver.resolve(&pinned)).await {
        Ok(Ok(d)) => Ok((d, DigestFrom::Registry)),
        Ok(Err(e)) => Err(Standing::Unknown {
            why: format!(
                "ECS reported no digest, imagehook has none on record for the tag, and the registry said: {e}"
            ),
        }),
        Err(_) => Err(Standing::Unknown {
            why: format!(
                "ECS reported no digest, imagehook has none on record for the tag, and the registry did not answer within {} ms",
                budget.as_millis()
            ),
        }),
    }
}

/// How an image record stands: any hold quarantines it, a tombstone blocks it.
fn judge(record: &ImageRecord) -> Standing {
    if !record.holds.is_empty() {
        return Standing::Quarantined {
            holds: record
                .holds
                .held
                .iter()
                .map(|h| format!("{} hold since {}: {}", h.source, h.at, h.reason))
                .collect(),
        };
    }
    match record.status {
        // A record written before holds were kept per source has only the summary.
        Some(ImageStatus::Quarantined) => Standing::Quarantined {
            holds: vec![record.quarantine.as_ref().map_or_else(
                || "no reason recorded".to_owned(),
                |q| match &q.source {
                    Some(s) => format!("{s} hold: {}", q.reason),
                    None => q.reason.clone(),
                },
            )],
        },
        Some(ImageStatus::Deleted) => Standing::Deleted {
            at: record.deleted_at.clone(),
        },
        Some(ImageStatus::Active) | None => Standing::Clear,
    }
}

/// One notice per refused image (one for the whole deployment when no image was checked).
pub fn notices(event: Option<&HookEvent>, verdict: &Verdict) -> Vec<Notice> {
    if verdict.status != HookStatus::Failed {
        return Vec::new();
    }
    let service = event.map_or_else(|| "an unknown service".to_owned(), |e| e.service.clone());
    let event_id = event.map(|e| e.resource_arn.clone());
    let notice = |image: String, detail: String| Notice {
        kind: NoticeKind::DeploymentRefused,
        service: service.clone(),
        image,
        stage: None,
        detail: Some(detail),
        event_id: event_id.clone(),
    };
    if verdict.refused.is_empty() {
        let image = event.map_or_else(
            || "an unreadable hook event".to_owned(),
            |e| e.target_revision_arn.clone(),
        );
        return vec![notice(image, verdict.reason.clone().unwrap_or_default())];
    }
    verdict
        .refused
        .iter()
        .map(|(image, why)| notice(image.clone(), why.clone()))
        .collect()
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PRE_SCALE_UP event of ECS's "Lambda hooks for Amazon ECS service deployments".
    const PRE_SCALE_UP: &str = include_str!("../../../events/guard-pre-scale-up.json");

    /// The rollback example of the same page: PRODUCTION_TRAFFIC_SHIFT with the target at 0.
    const ROLLBACK: &str = include_str!("../../../events/guard-rollback.json");

    /// PRE_PRODUCTION_TRAFFIC_SHIFT has the same weights going forward: not a rollback.
    const PRE_PRODUCTION: &str = r#"{
      "executionId": "a2b3c4d5-e6f7-8901-abcd-ef1234567890",
      "lifecycleStage": "PRE_PRODUCTION_TRAFFIC_SHIFT",
      "resourceArn": "arn:aws:ecs:us-west-2:123456789012:service-deployment/my-cluster/my-service/EZe5RNVLH6PPzHXINuP28",
      "executionDetails": {
        "serviceArn": "arn:aws:ecs:us-west-2:123456789012:service/my-cluster/my-service",
        "targetServiceRevisionArn": "arn:aws:ecs:us-west-2:123456789012:service-revision/my-cluster/my-service/9313423515462893900",
        "testTrafficWeights": {},
        "productionTrafficWeights": {
          "arn:aws:ecs:us-west-2:123456789012:service-revision/my-cluster/my-service/9313423515462893900": 0,
          "arn:aws:ecs:us-west-2:123456789012:service-revision/my-cluster/my-service/1920498462936580504": 100
        }
      },
      "hookDetails": {"S3_BUCKET_NAME": "my-approval-bucket"}
    }"#;

    fn with(field: &[&str], value: Value) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(PRE_SCALE_UP).unwrap();
        let mut at = &mut v;
        for f in &field[..field.len() - 1] {
            at = &mut at[*f];
        }
        at[field[field.len() - 1]] = value;
        v.to_string().into_bytes()
    }

    #[test]
    fn the_documented_events_are_read() {
        let e = parse(PRE_SCALE_UP.as_bytes()).unwrap();
        assert_eq!(e.lifecycle_stage, "PRE_SCALE_UP");
        assert_eq!(e.service, "my-cluster/my-service");
        assert!(e.target_revision_arn.ends_with("/9313423515462893900"));
        assert!(!e.rolling_back);
        assert!(parse(ROLLBACK.as_bytes()).unwrap().rolling_back);
        assert!(!parse(PRE_PRODUCTION.as_bytes()).unwrap().rolling_back);
    }

    #[test]
    fn a_malformed_event_is_refused_naming_the_field() {
        let e = parse(b"not json").unwrap_err();
        assert!(matches!(e, PayloadError::Shape(_)), "{e}");
        let e = parse(br#"{"executionId": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("lifecycleStage"), "{e}");
        let e = parse(&with(
            &["executionDetails", "targetServiceRevisionArn"],
            json!(7),
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("executionDetails.targetServiceRevisionArn"),
            "{e}"
        );
        let e = parse(&with(
            &["executionDetails", "targetServiceRevisionArn"],
            json!("arn:aws:ecs:us-west-2:123456789012:service/my-cluster/my-service"),
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("not an ECS service-revision ARN"),
            "{e}"
        );
        let e = parse(&with(
            &["resourceArn"],
            json!("arn:aws:lambda:us-west-2:1:function:x"),
        ))
        .unwrap_err();
        assert!(e.to_string().starts_with("resourceArn:"), "{e}");
        let e = parse(&with(&["lifecycleStage"], json!("pre scale up"))).unwrap_err();
        assert!(e.to_string().starts_with("lifecycleStage:"), "{e}");
        let e = parse(&with(&["executionId"], json!(""))).unwrap_err();
        assert_eq!(e.to_string(), "executionId: is empty");
    }

    #[test]
    fn every_value_of_the_event_is_bounded() {
        let e = parse(&vec![b' '; MAX_PAYLOAD + 1]).unwrap_err();
        assert_eq!(e, PayloadError::TooLarge(MAX_PAYLOAD + 1));
        let e = parse(&with(
            &["executionId"],
            json!("x".repeat(MAX_EXECUTION_ID + 1)),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("over the 128-byte bound"), "{e}");
        let e = parse(&with(&["lifecycleStage"], json!("A".repeat(MAX_STAGE + 1)))).unwrap_err();
        assert!(e.to_string().starts_with("lifecycleStage:"), "{e}");
        let long = format!(
            "arn:aws:ecs:us-west-2:123456789012:service/my-cluster/{}",
            "s".repeat(MAX_ARN)
        );
        let e = parse(&with(&["executionDetails", "serviceArn"], json!(long))).unwrap_err();
        assert!(e.to_string().contains("2048-byte bound"), "{e}");
        let many: serde_json::Map<String, Value> = (0..=MAX_WEIGHTS)
            .map(|i| {
                (
                    format!("arn:aws:ecs:us-west-2:1:service-revision/c/s/{i}"),
                    json!(0),
                )
            })
            .collect();
        let e = parse(&with(
            &["executionDetails", "testTrafficWeights"],
            Value::Object(many),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("over the bound of 20"), "{e}");
        let e = parse(&with(
            &["executionDetails", "productionTrafficWeights"],
            json!({"arn:aws:ecs:us-west-2:1:service-revision/c/s/1": 101}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("not a percentage"), "{e}");
        let e = parse(&with(
            &["executionDetails", "productionTrafficWeights"],
            json!({"arn:aws:ecs:us-west-2:1:service-revision/c/s/1": "half"}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("productionTrafficWeights"), "{e}");
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser() {
        let samples: [&[u8]; 7] = [
            b"",
            b"null",
            b"[]",
            b"{\"executionDetails\": null}",
            "{\"executionId\": \"\u{0}\"}".as_bytes(),
            &[0xff, 0xfe, 0x00],
            b"{\"executionId\":\"a\",\"lifecycleStage\":\"PRE_SCALE_UP\",\"resourceArn\":\"arn:\",\"executionDetails\":{}}",
        ];
        for s in samples {
            assert!(parse(s).is_err());
        }
    }

    #[test]
    fn the_answer_is_the_hook_contract() {
        let ok = Verdict::new(HookStatus::Succeeded);
        assert_eq!(ok.response(), json!({"hookStatus": "SUCCEEDED"}));
        let failed = Verdict::failed("registry.example.com/shop/api@sha256:… is quarantined");
        assert_eq!(
            failed.response(),
            json!({"hookStatus": "FAILED", "hookDetails": {
                "imagehookReason": "registry.example.com/shop/api@sha256:… is quarantined"}})
        );
        let mut again = Verdict::new(HookStatus::InProgress);
        again.call_back_delay = Some(RETRY_DELAY_SECS);
        assert_eq!(
            again.response(),
            json!({"hookStatus": "IN_PROGRESS", "callBackDelay": 30})
        );
        let long = Verdict::failed("x".repeat(10 * MAX_REASON));
        assert!(long.reason.unwrap().len() <= MAX_REASON + '…'.len_utf8());
    }

    fn checked(standing: Standing) -> Checked {
        Checked {
            container: Some("api".into()),
            image: "registry.example.com/shop/api:v1".into(),
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            digest_from: Some(DigestFrom::Ecs),
            standing,
        }
    }

    #[test]
    fn what_refuses_depends_on_the_mode_and_the_store_setting() {
        let standard = GuardSettings::default();
        let strict = GuardSettings {
            mode: GuardMode::Strict,
            on_store_error: OnStoreError::default_for(GuardMode::Strict),
        };
        assert_eq!(standard.on_store_error, OnStoreError::Open);
        assert_eq!(strict.on_store_error, OnStoreError::Closed);
        let held = checked(Standing::Quarantined {
            holds: vec!["manual hold since 2026-12-01T00:00:00Z: CVE-2026-1".into()],
        });
        let why = held.refusal(standard).unwrap();
        assert!(
            why.starts_with(&format!(
                "registry.example.com/shop/api:v1@sha256:{} (container api) is quarantined: manual hold",
                "a".repeat(64)
            )),
            "{why}"
        );
        assert!(
            checked(Standing::Deleted {
                at: Some("2026-12-01T00:00:00Z".into())
            })
            .refusal(standard)
            .unwrap()
            .contains("deleted (tombstone at 2026-12-01T00:00:00Z)")
        );
        let unknown = checked(Standing::Unknown {
            why: "no record".into(),
        });
        assert_eq!(unknown.refusal(standard), None);
        assert!(
            unknown
                .refusal(strict)
                .unwrap()
                .contains("GUARD_MODE=strict")
        );
        let down = checked(Standing::Unreadable {
            error: "GetItem failed".into(),
        });
        assert_eq!(down.refusal(standard), None);
        assert!(
            down.refusal(strict)
                .unwrap()
                .contains("GUARD_ON_STORE_ERROR=closed")
        );
        assert_eq!(checked(Standing::Clear).refusal(strict), None);
    }

    #[test]
    fn a_failed_answer_notifies_once_per_refused_image() {
        let event = parse(PRE_SCALE_UP.as_bytes()).unwrap();
        let mut v = Verdict::new(HookStatus::Failed);
        v.refused = vec![
            ("r/a@sha256:1".into(), "quarantined".into()),
            ("r/b@sha256:2".into(), "deleted".into()),
        ];
        let sent = notices(Some(&event), &v);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].kind, NoticeKind::DeploymentRefused);
        assert_eq!(sent[0].service, "my-cluster/my-service");
        assert_eq!(sent[1].detail.as_deref(), Some("deleted"));
        assert!(notices(Some(&event), &Verdict::new(HookStatus::Succeeded)).is_empty());
        let unreadable = notices(None, &Verdict::failed("executionId: is empty"));
        assert_eq!(unreadable.len(), 1);
        assert_eq!(
            unreadable[0].detail.as_deref(),
            Some("executionId: is empty")
        );
    }
}
