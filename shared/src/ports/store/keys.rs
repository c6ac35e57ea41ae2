//! Key formats of the single table. Changing one orphans every stored record: don't.
//! Keys are joined with `concat`, not `format!`: every delivery builds several, and the
//! formatting machinery cost more than the copying.

/// An item's key.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const RECEIPT_SK: &str = "EVT";
pub const SERVICE_CURRENT: &str = "CURRENT";

pub fn image_pk(registry: &str, repository: &str) -> String {
    ["IMG#", registry, "/", repository].concat()
}

pub fn image_sk(digest: &str) -> String {
    ["D#", digest].concat()
}

/// A tag pushed with a digest, one item each, beside the digest's own item (`D#<digest>`): an
/// image item holds no list that grows with its tags.
pub fn image_tag_sk(digest: &str, tag: &str) -> String {
    ["D#", digest, "#T#", tag].concat()
}

/// Where a digest stands in one registry replica (arrived, failed to replicate), one item per
/// region beside the digest's own item.
pub fn region_sk(digest: &str, region: &str) -> String {
    ["D#", digest, "#R#", region].concat()
}

pub fn regions_prefix(digest: &str) -> String {
    ["D#", digest, "#R#"].concat()
}

/// One lifecycle change of a digest (deleted, untagged, quarantined, released), in time order
/// under the digest. Outside `D#`, so listing a repository's digests never reads them.
pub fn change_sk(digest: &str, at: &str, event: &str) -> String {
    ["C#", digest, "#", at, "#", event].concat()
}

pub fn changes_prefix(digest: &str) -> String {
    ["C#", digest, "#"].concat()
}

/// A digest whose rollout to the service failed, one item each on the service's partition.
pub fn failed_rollout_sk(digest: &str) -> String {
    ["F#", digest].concat()
}

pub fn tag_sk(tag: &str) -> String {
    ["T#", tag].concat()
}

pub fn receipt(provider: &str, event_id: &str) -> Key {
    Key {
        pk: ["EVT#", provider, "#", event_id].concat(),
        sk: RECEIPT_SK.to_owned(),
    }
}

pub fn service_pk(cluster: &str, service: &str) -> String {
    ["SVC#", cluster, "/", service].concat()
}

pub fn deployment_sk(at: &str, what: &str) -> String {
    ["DEP#", at, "#", what].concat()
}

/// A deployment held back because the digest was quarantined or deleted, one per service.
pub fn blocked_sk(digest: &str, cluster: &str, service: &str) -> String {
    ["B#", digest, "#", cluster, "/", service].concat()
}

pub fn blocked_prefix(digest: &str) -> String {
    ["B#", digest, "#"].concat()
}

pub const TAG_PREFIX: &str = "T#";

/// Points from ECS's deployment id to the deployment item imagehook recorded for it.
pub fn rollout_sk(deployment_id: &str) -> String {
    ["ECSDEP#", deployment_id].concat()
}

/// One rollout of a repository to a stage: `H#<stage>#<time>#<digest or tag>`, so a stage's
/// history reads in time order from one query.
pub fn history_sk(stage: &str, at: &str, what: &str) -> String {
    ["H#", stage, "#", at, "#", what].concat()
}

/// What a lease holder applied to one service for a push whose own delivery was queued behind
/// it: beside that push's entries of the stage (`H#<stage>#<push time>#<push>`), one per service.
pub fn history_applied_sk(
    stage: &str,
    pushed_at: &str,
    push: &str,
    cluster: &str,
    service: &str,
) -> String {
    [
        "H#", stage, "#", pushed_at, "#", push, "#A#", cluster, "/", service,
    ]
    .concat()
}

pub fn history_prefix(stage: Option<&str>) -> String {
    match stage {
        Some(s) => ["H#", s, "#"].concat(),
        None => "H#".to_owned(),
    }
}

/// Held deployments that wait for approvals or an earlier stage: one partition, so that what
/// waits is listed with one query and each is read by the id a person types.
pub const GATES_PK: &str = "GATES";

pub fn gate_sk(id: &str) -> String {
    ["G#", id].concat()
}

pub const GATES_PREFIX: &str = "G#";

/// How a stage's deployments of a digest ended, one item per service of the stage: what a
/// later stage waits for.
pub fn stage_pk(stage: &str) -> String {
    ["STAGE#", stage].concat()
}

pub fn stage_mark_sk(digest: &str, cluster: &str, service: &str) -> String {
    ["D#", digest, "#", cluster, "/", service].concat()
}

pub fn stage_marks_prefix(digest: &str) -> String {
    ["D#", digest, "#"].concat()
}
