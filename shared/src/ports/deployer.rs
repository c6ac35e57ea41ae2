//! Rolling an image out to the ECS services that follow it.
//!
//! `Deployer` is the port; the ECS adapter talks to ECS, the dry-run adapter only plans. Either
//! way the result is one [`Deployment`] per target, which the pipeline records and the response
//! reports.

use async_trait::async_trait;

pub use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::reference::ImageRef;
use crate::model::rules::Target;

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

impl DeployError {
    /// ECS faults reach the pipeline only when a retry may fix them: what a retry cannot fix
    /// (a missing service, a refused update) is a `Failed` deployment, not an error.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

/// Asked by the deployer right before it changes ECS: whether the change is still wanted.
/// The holder of a service's lease answers from the service record, so a proposal that lost
/// while the service was being described never reaches ECS.
#[async_trait]
pub trait Guard: Send + Sync {
    /// `None`: go ahead. `Some(why)`: stop; the deployment is reported superseded with `why`.
    async fn check(&self) -> Result<Option<String>, DeployError>;
}

/// A guard that never stops a deployment.
pub struct Unguarded;

#[async_trait]
impl Guard for Unguarded {
    async fn check(&self) -> Result<Option<String>, DeployError> {
        Ok(None)
    }
}

/// Rolls an image out to one service.
#[async_trait]
pub trait Deployer: Send + Sync {
    /// Moves `target` to `image`: describes the service, decides with the target's policy,
    /// asks `guard`, then changes ECS if it does not already run the image. Idempotent: a
    /// service that already runs the digest is `Unchanged`. With `resume`, an earlier holder
    /// may have died between registering the task definition and updating the service: a
    /// registered revision that already runs the image is used instead of a new one.
    async fn apply(
        &self,
        image: &ImageRef,
        target: &Target,
        resume: bool,
        guard: &dyn Guard,
    ) -> Result<Deployment, DeployError>;

    /// Whether it only plans (`DEPLOY_MODE=dry-run`): plans go through no lease and leave no
    /// desired state, so switching to `apply` later starts from what ECS runs.
    fn dry_run(&self) -> bool {
        false
    }

    /// What the service runs now: its task definition and each container's image; `None`
    /// when the service cannot be described (missing, inactive). Drift checks compare this
    /// with what imagehook applied.
    async fn running(&self, _target: &Target) -> Result<Option<Running>, DeployError> {
        Ok(None)
    }

    /// Services that follow this image by their own `imagehook:follow` tag, without a rule.
    async fn followers(&self, _image: &ImageRef) -> Result<Vec<Target>, DeployError> {
        Ok(Vec::new())
    }

    /// Every service that follows an image by its tag, for the scheduled reconcile.
    async fn all_followers(&self) -> Result<Vec<Target>, DeployError> {
        Ok(Vec::new())
    }
}

/// What a service runs, as ECS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub task_definition: String,
    /// (container name, image) of every container.
    pub containers: Vec<(String, String)>,
    /// Whether a rollout is still in progress (more than one deployment): drift is judged
    /// only on a settled service.
    pub settled: bool,
}
