//! Rolling an image out to the ECS services that follow it.
//!
//! `Deployer` is the port; `EcsDeployer` talks to ECS, `DryRunDeployer` only plans. Either way the
//! result is one `Deployment` per target, which the store records and the response reports.

mod dry_run;
mod ecs;
pub mod follow;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use dry_run::DryRunDeployer;
pub use ecs::EcsDeployer;

use crate::reference::ImageRef;
use crate::rules::Target;

/// What happened to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployOutcome {
    /// A new task-definition revision was registered and the service moved to it.
    Updated,
    /// The service already runs this image: nothing to do.
    Unchanged,
    /// The rule's policy keeps the service where it is (newer-only, force); the reason says why.
    Skipped,
    /// Dry-run: this is what would be done.
    Planned,
    /// The image may not be deployed (quarantined or deleted); applied on release.
    Blocked,
    /// The service or container could not be found or the update was refused. Logged; the
    /// delivery still succeeds because a retry could not fix it.
    Failed,
}

impl DeployOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Skipped => "skipped",
            Self::Planned => "planned",
            Self::Blocked => "blocked",
            Self::Failed => "failed",
        }
    }
}

/// The result for one target service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub cluster: String,
    pub service: String,
    pub outcome: DeployOutcome,
    /// The image the service is moved to (`registry/repo@sha256:...`, or `:tag` when unpinned).
    pub image: String,
    /// The task definition the service runs after this deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    /// The task definition it ran before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_task_definition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// ECS's id of the rollout UpdateService started (`ecs-svc/...`): deployment state changes
    /// name it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecs_deployment_id: Option<String>,
}

impl Deployment {
    pub fn new(target: &Target, image: &ImageRef, outcome: DeployOutcome) -> Self {
        Self {
            cluster: target.cluster.clone(),
            service: target.service.clone(),
            outcome,
            image: image.deployable(),
            task_definition: None,
            previous_task_definition: None,
            stage: target.stage.clone(),
            reason: None,
            ecs_deployment_id: None,
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// ECS could not be asked or answered with a fault a retry may fix (throttling, 5xx, network,
/// credentials): the sender is told to retry (503).
#[derive(Debug, thiserror::Error)]
#[error("ECS {operation} failed: {message}")]
pub struct DeployError {
    pub operation: &'static str,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Rolls an image out to services.
#[async_trait]
pub trait Deployer: Send + Sync {
    /// Deploys `image` to every target. Idempotent: a service that already runs the digest is
    /// `Unchanged`, so a retried delivery never registers a second revision.
    async fn deploy(
        &self,
        image: &ImageRef,
        targets: &[Target],
    ) -> Result<Vec<Deployment>, DeployError>;

    /// Whether this deployer only plans (`DEPLOY_MODE=dry-run`).
    fn dry_run(&self) -> bool;

    /// Services that follow this image by their own `imagehook:follow` tag, without a rule.
    async fn followers(&self, _image: &ImageRef) -> Result<Vec<Target>, DeployError> {
        Ok(Vec::new())
    }
}
