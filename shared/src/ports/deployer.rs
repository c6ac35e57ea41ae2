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

    /// Services that follow this image by their own `imagehook:follow` tag, without a rule.
    async fn followers(&self, _image: &ImageRef) -> Result<Vec<Target>, DeployError> {
        Ok(Vec::new())
    }
}
