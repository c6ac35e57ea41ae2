//! What ran where, when, and why not: for each repository, one entry per event and stage for
//! every push that concerns a service (applied, blocked, stale or superseded) and for every
//! release or arrival that applies a held push, each with the push's tag, digest and time and
//! the writing event's own time and receipt time. Written with the event's records; read by
//! `imagehook history` and GET /images/{repository}, newest first by one rule ([`order`]).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::event::{Action, ImageEvent, Timestamp};
use crate::model::records::{HistoryApplied, HistoryRecord, ImageRecord, Record, RegionRecord};
use crate::ports::store::keys;
use crate::ports::store::ops::Op;
use crate::ports::store::{Key, StoreError, StoreRead};

/// What an event that writes history entries is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Push,
    /// A release (or a clean scan) applying deployments held while the digest was quarantined.
    Release,
    /// A replica's arrival applying deployments held until the digest reached its region.
    Arrival,
    /// One person's approval of a held deployment (and, with the last one needed, its apply).
    Approval,
    /// A held deployment denied.
    Denial,
    /// A held deployment whose approvals did not come before its deadline.
    Expiry,
    /// A held deployment let go by its earlier stage: applied, or on to its approvals.
    Promotion,
    /// A held deployment that will not go: superseded, cancelled, or its earlier stage failed.
    Stop,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Release => "release",
            Self::Arrival => "arrival",
            Self::Approval => "approval",
            Self::Denial => "denial",
            Self::Expiry => "expiry",
            Self::Promotion => "promotion",
            Self::Stop => "stop",
        }
    }
}

/// What an entry says of its event as a whole; each service's own outcome is on the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOutcome {
    Applied,
    /// Held: the digest is quarantined, deleted after the push, or not yet in a required region.
    Blocked,
    /// The tag already pointed at a push at least as recent: recorded, deployed nowhere.
    Stale,
    /// A newer push is what every service of the stage should run.
    Superseded,
    /// Every service of the stage holds it for approvals or an earlier stage.
    Waiting,
}

impl EntryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Blocked => "blocked",
            Self::Stale => "stale",
            Self::Superseded => "superseded",
            Self::Waiting => "waiting",
        }
    }
}

/// The push a release or an arrival rolls out to one service, as its held deployment kept it:
/// the entry names that push's tag and time, not the release's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub cluster: String,
    pub service: String,
    /// `provider#id` of the push.
    pub event: String,
    pub tag: Option<String>,
    /// The push's time, as its sender stamped it.
    pub pushed_at: String,
}

/// The event that writes history entries, beyond what the event itself says.
#[derive(Debug, Clone)]
pub struct Source {
    pub kind: EntryKind,
    /// When imagehook received the event's first delivery (none where the caller cannot know).
    pub received_at: Option<String>,
    /// A push refused as a whole (blocked, stale), and why.
    pub refused: Option<(EntryOutcome, String)>,
    /// For a release or an arrival: the held push each service is given.
    pub pushes: Vec<Pushed>,
}

impl Source {
    /// The event's entries, as its action makes them.
    pub fn of(event: &ImageEvent, received_at: Option<&str>) -> Self {
        Self {
            kind: match event.action {
                Action::Push | Action::Delete => EntryKind::Push,
                Action::Replicate | Action::ReplicationFailed => EntryKind::Arrival,
                // A quarantine event applies held deployments only as a clean scan: a release.
                Action::Quarantine | Action::Release => EntryKind::Release,
            },
            received_at: received_at.map(str::to_owned),
            refused: None,
            pushes: Vec::new(),
        }
    }

    pub fn refused(mut self, outcome: EntryOutcome, reason: &str) -> Self {
        self.refused = Some((outcome, reason.to_owned()));
        self
    }
}

/// One history entry per stage (services without one share an entry of no stage) and per push
/// rolled out, listing each service with its outcome (a release or an arrival that applies
/// nothing: one entry without services). Keyed by the stage, the event's time and
/// the event (and, for a release or an arrival, the push it applies), so re-recording the same
/// event (a retried delivery completing its deployments) writes the same keys: no duplicates.
pub fn history_ops(
    event: &ImageEvent,
    source: &Source,
    deployments: &[Deployment],
    at: &Timestamp,
) -> Vec<Op> {
    let img = &event.image;
    let by = format!("{}#{}", event.provider, event.id);
    let own = Pushed {
        cluster: String::new(),
        service: String::new(),
        event: by.clone(),
        tag: img.tag.as_ref().map(ToString::to_string),
        pushed_at: event.occurred_at.as_str().to_owned(),
    };
    let push_of = |d: &Deployment| {
        source
            .pushes
            .iter()
            .find(|p| p.cluster == d.cluster && p.service == d.service)
            .unwrap_or(&own)
    };
    let mut entries: Vec<(Option<&str>, &Pushed, Vec<&Deployment>)> = Vec::new();
    // A release or an arrival that applies nothing is still in the history, without services;
    // a push that concerns no service is not.
    if deployments.is_empty() && source.kind != EntryKind::Push {
        entries.push((None, &own, Vec::new()));
    }
    for d in deployments {
        let (stage, push) = (d.stage.as_deref(), push_of(d));
        match entries
            .iter_mut()
            .find(|(s, p, _)| *s == stage && p.event == push.event)
        {
            Some((_, _, list)) => list.push(d),
            None => entries.push((stage, push, vec![d])),
        }
    }
    entries
        .into_iter()
        .map(|(stage, push, list)| {
            let (outcome, reason) = entry_outcome(source, &list);
            let services: Vec<Value> = list.iter().map(|d| service_entry(d, at)).collect();
            let mut item = Map::new();
            item.insert("type".into(), json!("history"));
            if let Some(stage) = stage {
                item.insert("stage".into(), json!(stage));
            }
            item.insert("kind".into(), json!(source.kind.as_str()));
            item.insert("outcome".into(), json!(outcome.as_str()));
            if let Some(r) = reason {
                item.insert("reason".into(), json!(r));
            }
            item.insert("registry".into(), json!(img.registry.as_str()));
            item.insert("repository".into(), json!(img.repository.as_str()));
            if let Some(t) = &push.tag {
                item.insert("tag".into(), json!(t));
            }
            if let Some(d) = &img.digest {
                item.insert("digest".into(), json!(d.as_str()));
            }
            item.insert("pushed_at".into(), json!(push.pushed_at));
            item.insert("push_event".into(), json!(push.event));
            item.insert("event".into(), json!(by));
            item.insert("at".into(), json!(event.occurred_at.as_str()));
            if let Some(r) = &source.received_at {
                item.insert("received_at".into(), json!(r));
            }
            item.insert("services".into(), Value::Array(services));
            let what = if push.event == by {
                by.clone()
            } else {
                [by.as_str(), "#", push.event.as_str()].concat()
            };
            Op::Put {
                key: Key::new(
                    keys::image_pk(img.registry.as_str(), img.repository.as_str()),
                    keys::history_sk(stage.unwrap_or_default(), event.occurred_at.as_str(), &what),
                ),
                item,
                cond: None,
            }
        })
        .collect()
}

/// The entry's outcome: the push's own when it was refused as a whole, else superseded or
/// blocked when every service of the entry says so (with the first one's reason), else applied.
/// One service of a history entry: what the event's deployment did there, and when.
pub fn service_entry(d: &Deployment, at: &Timestamp) -> Value {
    let mut s = json!({"cluster": d.cluster, "service": d.service,
                       "outcome": d.outcome.as_str(), "at": at.as_str()});
    if let Some(td) = &d.task_definition {
        s["task_definition"] = json!(td);
    }
    if let Some(r) = &d.reason {
        s["reason"] = json!(r);
    }
    s
}

fn entry_outcome<'a>(
    source: &'a Source,
    list: &[&'a Deployment],
) -> (EntryOutcome, Option<&'a str>) {
    if let Some((outcome, reason)) = &source.refused {
        return (*outcome, Some(reason.as_str()));
    }
    for (every, outcome) in [
        (DeployOutcome::Superseded, EntryOutcome::Superseded),
        (DeployOutcome::Blocked, EntryOutcome::Blocked),
    ] {
        if !list.is_empty() && list.iter().all(|d| d.outcome == every) {
            return (outcome, list.first().and_then(|d| d.reason.as_deref()));
        }
    }
    if !list.is_empty()
        && list.iter().all(|d| {
            matches!(
                d.outcome,
                DeployOutcome::AwaitingApproval | DeployOutcome::WaitingForStage
            )
        })
    {
        return (
            EntryOutcome::Waiting,
            list.first().and_then(|d| d.reason.as_deref()),
        );
    }
    (EntryOutcome::Applied, None)
}

/// What a lease holder applied for a push (`event`, as its desired state names it) whose own
/// delivery was queued behind the holder: that delivery's entry lists the service as `queued`,
/// and is read with this in its place. `by` is the holder's event, or `reconcile`.
pub fn applied_op(event: &ImageEvent, d: &Deployment, by: &str, at: &Timestamp) -> Op {
    let img = &event.image;
    let push = format!("{}#{}", event.provider, event.id);
    let mut item = Map::new();
    item.insert("type".into(), json!("history_applied"));
    if let Some(stage) = &d.stage {
        item.insert("stage".into(), json!(stage));
    }
    item.insert("push_event".into(), json!(push));
    item.insert("cluster".into(), json!(d.cluster));
    item.insert("service".into(), json!(d.service));
    item.insert("outcome".into(), json!(d.outcome.as_str()));
    item.insert("at".into(), json!(at.as_str()));
    item.insert("by".into(), json!(by));
    if let Some(td) = &d.task_definition {
        item.insert("task_definition".into(), json!(td));
    }
    if let Some(r) = &d.reason {
        item.insert("reason".into(), json!(r));
    }
    Op::Put {
        key: Key::new(
            keys::image_pk(img.registry.as_str(), img.repository.as_str()),
            keys::history_applied_sk(
                d.stage.as_deref().unwrap_or_default(),
                event.occurred_at.as_str(),
                &push,
                &d.cluster,
                &d.service,
            ),
        ),
        item,
        cond: None,
    }
}

/// What a decision on a held deployment says, for its history entry.
#[derive(Debug, Clone)]
pub struct Decided<'a> {
    pub kind: EntryKind,
    /// The held deployment's id.
    pub id: &'a str,
    /// The push held: its reference (with tag and digest), event and sender time.
    pub image: &'a crate::model::reference::ImageRef,
    pub push_event: &'a str,
    pub pushed_at: &'a str,
    pub stage: Option<&'a str>,
    pub cluster: &'a str,
    pub service: &'a str,
    /// The held deployment's state after the decision (`applied`, `denied`, ...), or the
    /// deployment's own outcome once applied.
    pub outcome: &'a str,
    pub reason: &'a str,
    /// Who decided: a person's name or IAM principal, or `reconcile`, or the ECS deployment
    /// whose outcome promoted it.
    pub by: &'a str,
    pub task_definition: Option<&'a str>,
}

/// The history entry of a decision on a held deployment, in the stage of the service it holds,
/// at the time it was made, keyed by the hold, the kind of decision and who made it (a
/// retried approval finds its vote counted and writes none).
pub fn decision_op(d: &Decided<'_>, at: &Timestamp) -> Op {
    let img = d.image;
    let mut service = json!({"cluster": d.cluster, "service": d.service, "outcome": d.outcome,
                             "at": at.as_str(), "reason": d.reason});
    if let Some(td) = d.task_definition {
        service["task_definition"] = json!(td);
    }
    let mut item = Map::new();
    item.insert("type".into(), json!("history"));
    if let Some(stage) = d.stage {
        item.insert("stage".into(), json!(stage));
    }
    item.insert("kind".into(), json!(d.kind.as_str()));
    item.insert("outcome".into(), json!(d.outcome));
    item.insert("reason".into(), json!(d.reason));
    item.insert("registry".into(), json!(img.registry.as_str()));
    item.insert("repository".into(), json!(img.repository.as_str()));
    if let Some(t) = &img.tag {
        item.insert("tag".into(), json!(t.as_str()));
    }
    if let Some(g) = &img.digest {
        item.insert("digest".into(), json!(g.as_str()));
    }
    item.insert("pushed_at".into(), json!(d.pushed_at));
    item.insert("push_event".into(), json!(d.push_event));
    let event = ["hold#", d.id].concat();
    item.insert("event".into(), json!(event));
    item.insert("by".into(), json!(d.by));
    item.insert("at".into(), json!(at.as_str()));
    item.insert("services".into(), Value::Array(vec![service]));
    Op::Put {
        key: Key::new(
            keys::image_pk(img.registry.as_str(), img.repository.as_str()),
            keys::history_sk(
                d.stage.unwrap_or_default(),
                at.as_str(),
                &[event.as_str(), "#", d.kind.as_str(), "#", d.by].concat(),
            ),
        ),
        item,
        cond: None,
    }
}

/// Services an entry lists as `queued` (or held for approvals or a stage) read as what the lease
/// holder then applied there.
fn with_applied(entries: &mut [HistoryRecord], applied: Vec<HistoryApplied>) {
    if applied.is_empty() {
        return;
    }
    let mut by_service: HashMap<(Option<String>, String, String, String), HistoryApplied> =
        HashMap::new();
    for a in applied {
        let key = (
            a.stage.clone(),
            a.push_event.clone(),
            a.cluster.clone(),
            a.service.clone(),
        );
        by_service.insert(key, a);
    }
    for e in entries {
        let push = e.push_event.clone().unwrap_or_else(|| e.event.clone());
        // Queued behind a holder, or held for approvals or a stage and let go since.
        for s in e.services.iter_mut().filter(|s| {
            matches!(
                s.outcome.as_str(),
                "queued" | "awaiting_approval" | "waiting_for_stage"
            )
        }) {
            let key = (
                e.stage.clone(),
                push.clone(),
                s.cluster.clone(),
                s.service.clone(),
            );
            if let Some(a) = by_service.get(&key) {
                s.outcome = a.outcome.clone();
                s.at = a.at.clone();
                s.task_definition = a.task_definition.clone();
                s.reason = Some(a.reason.clone().unwrap_or_else(|| {
                    match a.by.as_deref().and_then(|b| b.strip_prefix("hold#")) {
                        Some(id) => format!(
                            "held as {id}, then let go (see that hold's approval or promotion entry)"
                        ),
                        None => format!(
                            "applied by {}, which held the service's lease",
                            a.by.as_deref().unwrap_or("another delivery")
                        ),
                    }
                }));
            }
        }
    }
}

/// Newest first: the reverse of [`HistoryRecord::order`]. A total order on what the entries
/// hold, so two reads of the same records list them alike.
pub fn order(records: &mut [HistoryRecord]) {
    records.sort_by(|a, b| b.order().cmp(&a.order()));
}

/// A repository's history, newest first, for one stage or all of them.
pub async fn history(
    store: &dyn StoreRead,
    registry: &str,
    repository: &str,
    stage: Option<&str>,
) -> Result<Vec<HistoryRecord>, StoreError> {
    let mut records = Vec::new();
    let mut applied = Vec::new();
    for record in store
        .query(
            &keys::image_pk(registry, repository),
            &keys::history_prefix(stage),
        )
        .await?
    {
        match record {
            Record::History(h) => records.push(h),
            Record::HistoryApplied(a) => applied.push(a),
            _ => {}
        }
    }
    with_applied(&mut records, applied);
    order(&mut records);
    Ok(records)
}

/// The repository's digests as the API shows them: tags, status, and where each has arrived.
/// A digest's tags and regions are items of their own under it (`D#<digest>#…`), read in the same
/// query and joined with what records of earlier versions kept on the image item.
pub async fn images(
    store: &dyn StoreRead,
    registry: &str,
    repository: &str,
) -> Result<Vec<Value>, StoreError> {
    let records = store
        .query(&keys::image_pk(registry, repository), "D#")
        .await?;
    let mut images: Vec<Listed> = Vec::new();
    let mut tags: Vec<(String, String)> = Vec::new();
    let mut regions: Vec<RegionRecord> = Vec::new();
    for record in records {
        match record {
            Record::Image(i) => images.push(Listed::from(i)),
            Record::ImageTag(t) => tags.push((t.digest, t.tag)),
            Record::Region(r) => regions.push(r),
            _ => {}
        }
    }
    // A repository may hold thousands of digests: find each by a map, not a scan.
    let at: HashMap<String, usize> = images
        .iter()
        .enumerate()
        .filter_map(|(n, i)| Some((i.digest.clone()?, n)))
        .collect();
    for (digest, tag) in tags {
        if let Some(n) = at.get(&digest).copied()
            && !images[n].tags.contains(&tag)
        {
            images[n].tags.push(tag);
        }
    }
    for r in regions {
        let Some(n) = at.get(&r.digest).copied() else {
            continue;
        };
        let i = &mut images[n];
        if let Some(at) = &r.arrived_at {
            if !i.regions.contains(&r.region) {
                i.regions.push(r.region.clone());
            }
            i.arrivals
                .push(json!({"region": r.region, "at": at, "event": r.arrival_event}));
        }
        if let Some(at) = &r.failed_at {
            i.failures.push(
                json!({"region": r.region, "at": at, "event": r.failure_event,
                                   "reason": r.failure_reason, "failures": r.failures}),
            );
        }
    }
    Ok(images.into_iter().map(Listed::into_json).collect())
}

/// One digest as listed, gathered from its items.
struct Listed {
    digest: Option<String>,
    status: Option<String>,
    last_pushed_at: Option<String>,
    tags: Vec<String>,
    regions: Vec<String>,
    arrivals: Vec<Value>,
    failures: Vec<Value>,
}

impl From<ImageRecord> for Listed {
    fn from(i: ImageRecord) -> Self {
        let list = |v: Option<Value>| match v {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        Self {
            digest: i.digest,
            status: i.status.map(|s| s.as_str().to_owned()),
            last_pushed_at: i.last_pushed_at,
            tags: i.legacy_tags,
            regions: i.legacy_regions,
            arrivals: list(i.legacy_region_arrivals),
            failures: list(i.legacy_replication_failures),
        }
    }
}

impl Listed {
    fn into_json(self) -> Value {
        let mut out = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                out.insert(k.into(), v);
            }
        };
        let list = |v: Vec<Value>| (!v.is_empty()).then_some(Value::Array(v));
        put("digest", self.digest.map(Value::from));
        put("tags", (!self.tags.is_empty()).then(|| json!(self.tags)));
        put("status", self.status.map(Value::from));
        put("last_pushed_at", self.last_pushed_at.map(Value::from));
        put(
            "regions",
            (!self.regions.is_empty()).then(|| json!(self.regions)),
        );
        put("region_arrivals", list(self.arrivals));
        put("replication_failures", list(self.failures));
        Value::Object(out)
    }
}

/// The history as the API and the CLI print it: stages, each newest first. Entries of
/// services that belong to no stage are only in the flat list ([`listed`]).
pub fn by_stage(records: &[HistoryRecord]) -> Value {
    let mut stages = Map::new();
    for record in records {
        let Some(stage) = &record.stage else {
            continue;
        };
        let entry = serde_json::to_value(record).unwrap_or_default();
        if let Value::Array(list) = stages
            .entry(stage.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(entry);
        }
    }
    Value::Object(stages)
}

/// Every entry, of every stage and of none, newest first.
pub fn listed(records: &[HistoryRecord]) -> Value {
    Value::Array(
        records
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect(),
    )
}
