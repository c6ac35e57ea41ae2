//! The EventBridge envelope of ECR's events (pushes, deletes, replications, scans and
//! Inspector findings), shared by the push and the scan parsers.

use serde::Deserialize;
use serde_json::Value;

use super::common::non_empty;
use crate::model::event::{IgnoredEvent, Provider};

#[derive(Deserialize)]
pub(super) struct Envelope {
    pub(super) id: String,
    #[serde(rename = "detail-type")]
    pub(super) detail_type: String,
    pub(super) source: String,
    #[serde(default)]
    pub(super) account: Option<String>,
    #[serde(default)]
    pub(super) region: Option<String>,
    #[serde(default)]
    pub(super) time: Option<String>,
    /// The ARNs or ids of what the event concerns (Inspector: the scanned resource).
    #[serde(default)]
    pub(super) resources: Vec<String>,
    pub(super) detail: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct ImageAction {
    #[serde(default)]
    pub(super) result: Option<String>,
    #[serde(default)]
    pub(super) repository_name: Option<String>,
    #[serde(default)]
    pub(super) image_digest: Option<String>,
    #[serde(default)]
    pub(super) action_type: Option<String>,
    #[serde(default)]
    pub(super) image_tag: Option<String>,
    #[serde(default)]
    pub(super) manifest_media_type: Option<String>,
    /// Replication events: where the image came from.
    #[serde(default)]
    pub(super) source_account: Option<String>,
    #[serde(default)]
    pub(super) source_region: Option<String>,
}

impl ImageAction {
    pub(super) fn tag_and_digest(&self) -> (&Option<String>, &Option<String>) {
        (&self.image_tag, &self.image_digest)
    }
}

/// The ECR registry of an account and Region: `.amazonaws.com.cn` in the China Regions.
pub(super) fn registry_host(account: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{suffix}")
}

pub(super) fn ignored(
    env: &Envelope,
    detail: Option<&ImageAction>,
    action: &str,
    reason: String,
) -> IgnoredEvent {
    let registry = match (non_empty(&env.account), non_empty(&env.region)) {
        (Some(a), Some(r)) => Some(registry_host(a, r)),
        _ => None,
    };
    let field = |k: &str| env.detail.get(k).and_then(Value::as_str).map(str::to_owned);
    IgnoredEvent {
        id: Some(env.id.clone()),
        provider: Provider::EcrEventbridge,
        action: action.to_owned(),
        reason,
        registry,
        repository: detail
            .and_then(|d| d.repository_name.clone())
            .or_else(|| field("repository-name")),
        tag: detail
            .and_then(|d| d.image_tag.clone())
            .or_else(|| field("image-tag")),
        digest: detail
            .and_then(|d| d.image_digest.clone())
            .or_else(|| field("image-digest")),
    }
}
