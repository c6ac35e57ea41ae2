//! Key formats of the single table. Changing one orphans every stored record: don't.

use super::Key;

pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const RECEIPT_SK: &str = "EVT";
pub const SERVICE_CURRENT: &str = "CURRENT";

pub fn image_pk(registry: &str, repository: &str) -> String {
    format!("IMG#{registry}/{repository}")
}

pub fn image_sk(digest: &str) -> String {
    format!("D#{digest}")
}

pub fn tag_sk(tag: &str) -> String {
    format!("T#{tag}")
}

pub fn receipt(provider: &str, event_id: &str) -> Key {
    Key {
        pk: format!("EVT#{provider}#{event_id}"),
        sk: RECEIPT_SK.to_owned(),
    }
}

pub fn service_pk(cluster: &str, service: &str) -> String {
    format!("SVC#{cluster}/{service}")
}

pub fn deployment_sk(at: &str, what: &str) -> String {
    format!("DEP#{at}#{what}")
}

/// A deployment held back because the digest was quarantined or deleted, one per service.
pub fn blocked_sk(digest: &str, cluster: &str, service: &str) -> String {
    format!("B#{digest}#{cluster}/{service}")
}

pub fn blocked_prefix(digest: &str) -> String {
    format!("B#{digest}#")
}

pub const TAG_PREFIX: &str = "T#";

/// Points from ECS's deployment id to the deployment item imagehook recorded for it.
pub fn rollout_sk(deployment_id: &str) -> String {
    format!("ECSDEP#{deployment_id}")
}

/// One rollout of a repository to a stage: `H#<stage>#<time>#<digest or tag>`, so a stage's
/// history reads in time order from one query.
pub fn history_sk(stage: &str, at: &str, what: &str) -> String {
    format!("H#{stage}#{at}#{what}")
}

pub fn history_prefix(stage: Option<&str>) -> String {
    match stage {
        Some(s) => format!("H#{s}#"),
        None => "H#".to_owned(),
    }
}
