//! The records the store keeps, as the pipeline reads them: typed, with statuses as enums. The
//! adapters decode stored items into these (`adapters/records.rs`), so no attribute map crosses
//! into the pipeline; the pipeline writes through the store port's operations, naming the same
//! attributes with the constants and `as_str` values below.

use serde::Serialize;
use serde_json::Value;

use crate::model::payload::UrlHints;
use crate::model::quarantine::Holds;

/// Where an image's digest stands in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageStatus {
    Active,
    Deleted,
    Quarantined,
}

impl ImageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deleted => "deleted",
            Self::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Deleted, Self::Quarantined]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Whether an event's receipt still waits for its deployments to be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    /// Recorded, but its deployments are not on record yet: a redelivery completes them.
    Pending,
    Done,
}

impl ReceiptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Done]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// One stored record, by its kind.
// Records live for one read and are matched at once; boxing the largest kinds would cost an
// allocation per read for no memory anyone holds.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Receipt(ReceiptRecord),
    Image(ImageRecord),
    ImageTag(ImageTagRecord),
    Region(RegionRecord),
    Tag(TagRecord),
    Service(ServiceRecord),
    Blocked(BlockedRecord),
    Rollout(RolloutRecord),
    History(HistoryRecord),
    HistoryApplied(HistoryApplied),
    Deployment(DeploymentRecord),
    ManualRequest(ManualRequestRecord),
    Gate(GateRecord),
    StageMark(StageMark),
    /// A kind the pipeline never reads back, named by its `type`.
    Other(String),
}

impl Record {
    pub fn receipt(self) -> Option<ReceiptRecord> {
        match self {
            Self::Receipt(r) => Some(r),
            _ => None,
        }
    }

    pub fn image(self) -> Option<ImageRecord> {
        match self {
            Self::Image(r) => Some(r),
            _ => None,
        }
    }

    pub fn region(self) -> Option<RegionRecord> {
        match self {
            Self::Region(r) => Some(r),
            _ => None,
        }
    }

    pub fn tag(self) -> Option<TagRecord> {
        match self {
            Self::Tag(r) => Some(r),
            _ => None,
        }
    }

    pub fn service(self) -> Option<ServiceRecord> {
        match self {
            Self::Service(r) => Some(r),
            _ => None,
        }
    }

    pub fn blocked(self) -> Option<BlockedRecord> {
        match self {
            Self::Blocked(r) => Some(r),
            _ => None,
        }
    }

    pub fn rollout(self) -> Option<RolloutRecord> {
        match self {
            Self::Rollout(r) => Some(r),
            _ => None,
        }
    }

    pub fn gate(self) -> Option<GateRecord> {
        match self {
            Self::Gate(r) => Some(r),
            _ => None,
        }
    }

    pub fn stage_mark(self) -> Option<StageMark> {
        match self {
            Self::StageMark(r) => Some(r),
            _ => None,
        }
    }

    pub fn history(self) -> Option<HistoryRecord> {
        match self {
            Self::History(r) => Some(r),
            _ => None,
        }
    }

    pub fn deployment(self) -> Option<DeploymentRecord> {
        match self {
            Self::Deployment(r) => Some(r),
            _ => None,
        }
    }

    pub fn manual_request(self) -> Option<ManualRequestRecord> {
        match self {
            Self::ManualRequest(r) => Some(r),
            _ => None,
        }
    }
}

/// One deployment imagehook recorded on a service (`DEP#<event time>#<what>#<event>`), with
/// the rollout's state as ECS deployment state changes reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentRecord {
    /// The event that made it (`provider#id`).
    pub event: String,
    /// `updated`, `unchanged`, `skipped`, `failed`, ... ([`crate::model::deployment::DeployOutcome`]).
    pub outcome: String,
    /// The reference the service was moved to (`registry/repo@sha256:…` when pinned).
    pub image: String,
    /// When imagehook recorded it.
    pub recorded_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecs_deployment_id: Option<String>,
    /// `in-progress`, `completed` or `failed`: the last state change ECS sent for the rollout
    /// (none: none arrived, or the deployment started none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When ECS says that state was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_at: Option<String>,
}

impl DeploymentRecord {
    /// The digest the deployment pinned, when it did.
    pub fn digest(&self) -> Option<&str> {
        self.image
            .rsplit_once('@')
            .map(|(_, d)| d)
            .filter(|d| d.starts_with("sha256:"))
    }
}

/// A deploy or rollback asked for by hand, keyed by its request id (`EVT#manual#<id>`): what it
/// resolved to when first asked, so a retry applies that and nothing else, and, once done, the
/// answer it gave, so a retry gets the same one.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualRequestRecord {
    pub request_id: String,
    /// `deploy` or `rollback`.
    pub action: String,
    pub status: ReceiptStatus,
    pub cluster: String,
    pub service: String,
    /// The reference proposed, pinned (`registry/repo[:tag]@sha256:…`).
    pub image: String,
    /// Its place in the service's desired-state order.
    pub order: String,
    /// What identifies the request's content: a reused request id with other content is refused.
    pub fingerprint: String,
    pub by: String,
    pub force_reason: Option<String>,
    /// The answer, once done.
    pub result: Option<Value>,
}

/// An event's receipt.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptRecord {
    pub status: ReceiptStatus,
    /// The event's time as first recorded, and when its first delivery arrived.
    pub occurred_at: Option<String>,
    pub received_at: Option<String>,
    /// The verified request the event came from, as far as it was kept.
    pub payload: Option<KeptPayload>,
}

/// A receipt's copy of its request: the body when it was small enough, else its hash and size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptPayload {
    pub body: Option<String>,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub hints: UrlHints,
}

/// Why and by whom a digest is quarantined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    pub reason: String,
    pub source: Option<String>,
}

/// One digest of a repository.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageRecord {
    pub digest: Option<String>,
    pub status: Option<ImageStatus>,
    pub last_pushed_at: Option<String>,
    pub deleted_at: Option<String>,
    /// When a release last lifted a hold.
    pub released_at: Option<String>,
    pub quarantine: Option<Quarantine>,
    /// Each source's hold, of which `quarantine` is the summary.
    pub holds: Holds,
    /// Tags and regions as items of earlier versions kept them on the image item itself; now
    /// each is an item of its own (`ImageTagRecord`, `RegionRecord`), and readers take both.
    pub legacy_tags: Vec<String>,
    pub legacy_regions: Vec<String>,
    pub legacy_region_arrivals: Option<Value>,
    pub legacy_replication_failures: Option<Value>,
}

/// A tag pushed with a digest (and not deleted since by tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageTagRecord {
    pub digest: String,
    pub tag: String,
}

/// A digest in one registry replica: when it first arrived, and its last failed replication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionRecord {
    pub digest: String,
    pub region: String,
    /// The registry the replica serves the digest from (absent before replicas were named).
    pub registry: Option<String>,
    pub arrived_at: Option<String>,
    pub arrival_event: Option<String>,
    pub failed_at: Option<String>,
    pub failure_event: Option<String>,
    pub failure_reason: Option<String>,
    pub failures: u64,
}

/// Where a tag points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    pub tag: String,
    /// `None` for a tag pushed without a digest (unpinned).
    pub digest: Option<String>,
    /// The event that last moved it.
    pub event_id: Option<String>,
}

/// What imagehook knows of one ECS service: what it should run (desired), what imagehook last
/// made it run (applied), what ECS said it runs, and who is applying now (lease).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRecord {
    pub cluster: String,
    pub service: String,
    /// The digest and tag the service runs as far as imagehook knows: what it deployed there,
    /// or what ECS went back to after a failed rollout.
    pub digest: Option<String>,
    pub tag: Option<String>,
    /// The image reference the service runs (`registry/repo@digest`), when known.
    pub image: Option<String>,
    pub task_definition_arn: Option<String>,
    /// What it ran before imagehook's last change (`registry/repo@digest` when pinned), and
    /// that task definition: where a rolled-back deployment returns to.
    pub previous_image: Option<String>,
    pub previous_task_definition: Option<String>,
    /// An image the service was found running that imagehook did not deploy, when found.
    pub drift: Option<String>,
    /// Digests whose rollout to this service failed, as records of earlier versions kept them;
    /// now each is an item of its own (`keys::failed_rollout_sk`).
    pub legacy_failed_digests: Vec<String>,
    pub desired: Option<Desired>,
    pub applied: Option<Applied>,
    pub lease: Option<Lease>,
}

/// What a service should run: the image of the newest proposal that matched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The event that proposed it, `provider#id`.
    pub event: String,
    /// The full reference (`registry/repo:tag@digest`).
    pub image: String,
    /// The ordering key: the sender's time, then the receipt time (both RFC 3339 with nine
    /// fractional digits, so the text order is the time order).
    pub order: String,
    pub container: Option<String>,
    pub stage: Option<String>,
    /// Other registries the digest had arrived in when it was proposed (replicas a service may
    /// pull it from), so a holder that takes over deploys it as the proposer would have.
    pub replicas: Vec<String>,
}

/// The last desired state a holder finished applying, whatever the outcome (updated,
/// unchanged, skipped by the rule's policy, failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub event: String,
    pub outcome: String,
    pub at: String,
}

/// One writer at a time per service: the holder applies the desired state until it and the
/// applied state agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    /// Past this instant the holder is presumed dead and another may take over.
    pub until: String,
}

/// A deployment held back: the digest is quarantined or deleted, or not yet in a region the
/// rule requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedRecord {
    pub digest: String,
    pub cluster: String,
    pub service: String,
    pub container: Option<String>,
    pub stage: Option<String>,
    pub tag: Option<String>,
    /// Held until the digest arrives in this region, not for a quarantine.
    pub waiting_region: Option<String>,
    /// The push that was held (`provider#id`), when it was made and when it arrived.
    pub event: Option<String>,
    pub pushed_at: Option<String>,
    pub blocked_at: Option<String>,
}

/// Where a held deployment of one push to one service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStatus {
    /// Waits for the digest's deployment to the earlier stage to complete and soak.
    WaitingForStage,
    /// Waits for approvals.
    AwaitingApproval,
    /// Approved (or promoted) and being deployed through the service's door.
    Applying,
    /// Went through the door (the deployment says how it ended).
    Applied,
    Denied,
    /// Its deadline passed before enough approvals came.
    Expired,
    /// A newer push for the service came first.
    Superseded,
    /// The digest was quarantined or deleted.
    Cancelled,
    /// The earlier stage's deployment of the digest failed or was rolled back.
    StageFailed,
}

impl GateStatus {
    pub const ALL: [GateStatus; 9] = [
        Self::WaitingForStage,
        Self::AwaitingApproval,
        Self::Applying,
        Self::Applied,
        Self::Denied,
        Self::Expired,
        Self::Superseded,
        Self::Cancelled,
        Self::StageFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WaitingForStage => "waiting_for_stage",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Applying => "applying",
            Self::Applied => "applied",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Superseded => "superseded",
            Self::Cancelled => "cancelled",
            Self::StageFailed => "stage_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Still held: a decision, a stage outcome or the reconcile may move it.
    pub fn is_waiting(self) -> bool {
        matches!(self, Self::WaitingForStage | Self::AwaitingApproval)
    }
}

/// A deployment held for approvals or an earlier stage (`keys::gate_sk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRecord {
    pub id: String,
    pub status: GateStatus,
    pub cluster: String,
    pub service: String,
    pub container: Option<String>,
    /// The stage of the service held.
    pub stage: Option<String>,
    /// The push held: its full reference (`registry/repo:tag@digest`), digest, event
    /// (`provider#id`), sender time and ordering key.
    pub image: String,
    pub digest: String,
    pub event: String,
    pub pushed_at: String,
    pub order: String,
    pub received_at: Option<String>,
    /// Approvals needed (0: none), and who approved, in order.
    pub required: u32,
    pub approvers: Vec<String>,
    pub expires_secs: u64,
    /// When approvals stop being accepted, set once it awaits them.
    pub deadline: Option<String>,
    /// The stage it waits for, and for how long that stage must run the digest.
    pub after: Option<String>,
    pub soak_secs: u64,
    pub reason: Option<String>,
    pub created_at: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    /// The outcome and task definition of the deployment, once applied.
    pub outcome: Option<String>,
    pub task_definition: Option<String>,
    /// Bumped by every change: each change is conditional on the version it read.
    pub version: u64,
}

/// How one service of a stage ran a digest: what a later stage waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageMark {
    pub digest: String,
    pub cluster: String,
    pub service: String,
    /// `completed` or `failed`.
    pub state: String,
    pub at: String,
    pub reason: Option<String>,
}

/// Points an ECS deployment id at the deployment item imagehook recorded when it started it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRecord {
    pub deployment_sk: String,
    pub digest: Option<String>,
    /// The reference deployed, as ECS was given it.
    pub image: Option<String>,
}

/// One entry of a repository's history: one event (a push, or the release or arrival that
/// applied a held push) in one stage, with the push it rolls out and what each service of that
/// stage did. Entries written by earlier versions carry only `stage`, `tag`, `digest`,
/// `pushed_at`, `event` and `services`; the other fields read as none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRecord {
    /// None for services that belong to no stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// `push`, `release` or `arrival`; `deploy` or `rollback` by hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `applied`, `blocked`, `stale` or `superseded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The tag of the push rolled out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The sender's time of the push rolled out.
    pub pushed_at: String,
    /// That push (`provider#id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_event: Option<String>,
    /// The event that wrote the entry (`provider#id`): the push itself, or the release or
    /// arrival that applied it.
    pub event: String,
    /// That event's time, as its sender stamped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// When imagehook received that event (its first delivery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    /// Who asked, for a deploy or rollback by hand, or who decided, for a decision on a held
    /// deployment (approval, denial...): a local user or an IAM principal's ARN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// A refusal a deploy by hand was forced over (the digest's quarantine or deletion), and
    /// the reason its requester gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forced_over: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_reason: Option<String>,
    /// For a rollback: the digest the service ran when it was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<String>,
    pub services: Vec<HistoryService>,
}

impl HistoryRecord {
    /// The ordering key, oldest first: the sender's time of the event that wrote the entry,
    /// then its receipt time, then the event, the stage and the push. Entries of earlier
    /// versions have only their push time and event.
    pub fn order(&self) -> (&str, &str, &str, &str, &str) {
        (
            self.at.as_deref().unwrap_or(&self.pushed_at),
            self.received_at.as_deref().unwrap_or_default(),
            &self.event,
            self.stage.as_deref().unwrap_or_default(),
            self.push_event.as_deref().unwrap_or_default(),
        )
    }
}

/// What a lease holder applied to one service for a push whose own delivery was queued behind
/// it, and so recorded that service as `queued` in its history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryApplied {
    pub stage: Option<String>,
    /// The push applied (`provider#id`).
    pub push_event: String,
    pub cluster: String,
    pub service: String,
    pub outcome: String,
    pub at: String,
    pub task_definition: Option<String>,
    pub reason: Option<String>,
    /// The delivery that applied it (its event), or `reconcile`.
    pub by: Option<String>,
}

/// One service of a stage in a history record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryService {
    pub cluster: String,
    pub service: String,
    pub outcome: String,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_stored_names() {
        for s in [
            ImageStatus::Active,
            ImageStatus::Deleted,
            ImageStatus::Quarantined,
        ] {
            assert_eq!(ImageStatus::parse(s.as_str()), Some(s));
        }
        for s in [ReceiptStatus::Pending, ReceiptStatus::Done] {
            assert_eq!(ReceiptStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ImageStatus::parse("Active"), None);
        assert_eq!(ReceiptStatus::parse(""), None);
    }
}
