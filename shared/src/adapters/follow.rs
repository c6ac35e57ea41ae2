//! Zero-config follow: ECS services that carry an `imagehook:follow` tag follow the repositories
//! their containers run, with no rule. The tag's value is a tag pattern, as in a rule's `tags`
//! (`semver:^1`, `v*`, `regex:...`, `force`); `imagehook:newer-only` = `true` and
//! `imagehook:stage` = a stage name complete it.
//!
//! Discovery is ListServices and DescribeServices (with tags) per cluster named in
//! FOLLOW_CLUSTERS, then DescribeTaskDefinition for each tagged service. The result is kept for
//! the life of the execution environment, at most `ttl`, so a burst of pushes pays for it once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::ServiceField;
use tokio::sync::Mutex;

use super::aws::Lazy;
use super::ecs_errors::{DESCRIBE_BATCH, transient};
use crate::model::policy::{OnDrift, Policy};
use crate::model::reference::{ImageRef, image_name_of};
use crate::model::rules::{TagPattern, Target};
use crate::ports::deployer::DeployError;

pub const FOLLOW_TAG: &str = "imagehook:follow";
pub const NEWER_ONLY_TAG: &str = "imagehook:newer-only";
pub const STAGE_TAG: &str = "imagehook:stage";
pub const ON_DRIFT_TAG: &str = "imagehook:on-drift";

/// How long a discovery is trusted by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// One service that asked, by its tags, to follow what it runs.
#[derive(Debug, Clone)]
pub struct Follower {
    pub cluster: String,
    pub service: String,
    pattern: TagPattern,
    policy: Policy,
    stage: Option<String>,
    /// `registry/repository` of each container's image.
    images: Vec<String>,
}

impl Follower {
    fn target_for(&self, image: &ImageRef) -> Option<Target> {
        let tag = image.tag.as_ref()?;
        let name = image.name();
        (self.images.contains(&name) && self.pattern.matches(tag.as_str())).then(|| self.target())
    }

    fn target(&self) -> Target {
        Target {
            stage: self.stage.clone(),
            policy: self.policy.clone(),
            ..Target::service(&self.cluster, &self.service)
        }
    }
}

type Cached = Option<(Instant, Arc<Vec<Follower>>)>;

#[derive(Debug)]
pub struct Discovery {
    client: Arc<Lazy<Client>>,
    clusters: Vec<String>,
    ttl: Duration,
    cache: Mutex<Cached>,
}

impl Discovery {
    pub fn new(client: Arc<Lazy<Client>>, clusters: Vec<String>, ttl: Duration) -> Self {
        Self {
            client,
            clusters,
            ttl,
            cache: Mutex::new(None),
        }
    }

    /// The followers that take this image, as deploy targets.
    pub async fn targets(&self, image: &ImageRef) -> Result<Vec<Target>, DeployError> {
        Ok(self
            .followers()
            .await?
            .iter()
            .filter_map(|f| f.target_for(image))
            .collect())
    }

    /// Every follower, as a target without an image (for the scheduled reconcile).
    pub async fn all(&self) -> Result<Vec<Target>, DeployError> {
        Ok(self
            .followers()
            .await?
            .iter()
            .map(Follower::target)
            .collect())
    }

    async fn followers(&self) -> Result<Arc<Vec<Follower>>, DeployError> {
        // Held across the scan: concurrent pushes in one environment wait for one discovery
        // instead of each running their own.
        let mut cache = self.cache.lock().await;
        if let Some((at, followers)) = cache.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(followers.clone());
        }
        let mut found = Vec::new();
        for cluster in &self.clusters {
            found.extend(self.scan(cluster).await?);
        }
        tracing::info!(
            followers = found.len(),
            clusters = self.clusters.len(),
            "discovered services tagged {FOLLOW_TAG}"
        );
        let found = Arc::new(found);
        *cache = Some((Instant::now(), found.clone()));
        Ok(found)
    }

    async fn scan(&self, cluster: &str) -> Result<Vec<Follower>, DeployError> {
        let mut arns = Vec::new();
        let mut pages = self
            .client
            .get()
            .list_services()
            .cluster(cluster)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| transient("ListServices", e))?;
            arns.extend(page.service_arns().iter().cloned());
        }
        let mut out = Vec::new();
        for batch in arns.chunks(DESCRIBE_BATCH) {
            let described = self
                .client
                .get()
                .describe_services()
                .cluster(cluster)
                .set_services(Some(batch.to_vec()))
                .include(ServiceField::Tags)
                .send()
                .await
                .map_err(|e| transient("DescribeServices", e))?;
            for svc in described.services() {
                let tag = |k: &str| {
                    svc.tags()
                        .iter()
                        .find(|t| t.key() == Some(k))
                        .and_then(|t| t.value())
                        .map(str::to_owned)
                };
                let (Some(value), Some(name), Some(td)) =
                    (tag(FOLLOW_TAG), svc.service_name(), svc.task_definition())
                else {
                    continue;
                };
                let newer_only = tag(NEWER_ONLY_TAG).is_some_and(|v| v == "true");
                let Some((pattern, mut policy)) = parse_follow(&value, newer_only) else {
                    tracing::warn!(
                        cluster,
                        service = name,
                        value = %value,
                        "ignoring {FOLLOW_TAG}: not a tag pattern (semver:<range>, regex:<re>, a glob, or force)"
                    );
                    continue;
                };
                if tag(ON_DRIFT_TAG).as_deref() == Some("restore") {
                    policy.on_drift = OnDrift::Restore;
                }
                let images = self.images_of(td).await?;
                out.push(Follower {
                    cluster: cluster.to_owned(),
                    service: name.to_owned(),
                    pattern,
                    policy,
                    stage: tag(STAGE_TAG),
                    images,
                });
            }
        }
        Ok(out)
    }

    async fn images_of(&self, task_definition: &str) -> Result<Vec<String>, DeployError> {
        let td = self
            .client
            .get()
            .describe_task_definition()
            .task_definition(task_definition)
            .send()
            .await
            .map_err(|e| transient("DescribeTaskDefinition", e))?;
        Ok(td
            .task_definition()
            .map(|t| t.container_definitions())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.image())
            .map(image_name_of)
            .collect())
    }
}

/// The pattern and policy a follow tag asks for; `None` when the value is no pattern.
fn parse_follow(value: &str, newer_only: bool) -> Option<(TagPattern, Policy)> {
    let pattern = TagPattern::parse(value).ok()?;
    let follow_tag = matches!(pattern, TagPattern::Force);
    let policy = Policy {
        scheme: pattern.scheme(),
        newer_only: newer_only && !follow_tag,
        follow_tag,
        on_drift: OnDrift::Report,
    };
    Some((pattern, policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_values_are_rule_patterns() {
        let (p, policy) = parse_follow("semver:^1", true).unwrap();
        assert!(p.matches("1.4.0") && !p.matches("2.0.0"));
        assert!(policy.newer_only && !policy.follow_tag);
        let (_, policy) = parse_follow("force", true).unwrap();
        assert!(policy.follow_tag && !policy.newer_only);
        assert!(parse_follow("semver:not a range", false).is_none());
        let f = Follower {
            cluster: "c".into(),
            service: "s".into(),
            pattern: TagPattern::parse("v*").unwrap(),
            policy: Policy::default(),
            stage: Some("prod".into()),
            images: vec!["registry.example.com/shop/api".into()],
        };
        let t = f
            .target_for(&ImageRef::parse("registry.example.com/shop/api:v2").unwrap())
            .unwrap();
        assert_eq!(
            (t.service.as_str(), t.stage.as_deref()),
            ("s", Some("prod"))
        );
        assert!(
            f.target_for(&ImageRef::parse("registry.example.com/shop/api:2").unwrap())
                .is_none()
        );
        assert!(
            f.target_for(&ImageRef::parse("registry.example.com/shop/web:v2").unwrap())
                .is_none()
        );
    }
}
