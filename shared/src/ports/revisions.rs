//! The images of an ECS service revision: what a deployment is about to run. The deployment
//! guard reads them when ECS calls it as a lifecycle hook; the ECS adapter asks
//! DescribeServiceRevisions, whose `containerImages` carry each container's image reference and
//! the digest ECS resolved it to.

use async_trait::async_trait;

/// One container's image in a service revision, as ECS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionImage {
    pub container: Option<String>,
    /// The reference the task definition names (`registry/repo:tag`, `repo@sha256:…`).
    pub image: String,
    /// The digest ECS resolved the reference to, when it reports one.
    pub digest: Option<String>,
}

/// Why a revision's images could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    /// ECS could not be asked, or answered with a fault a later call may not repeat
    /// (throttling, 5xx, network).
    #[error("ECS DescribeServiceRevisions failed: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// ECS answered that it has no such revision (a `failures` entry).
    #[error("ECS does not describe the service revision {arn}: {reason}")]
    NotFound { arn: String, reason: String },
    /// ECS refused the request itself (access denied, an invalid ARN): asking again repeats it.
    #[error("ECS refused DescribeServiceRevisions: {0}")]
    Refused(String),
    /// The answer is not what the API reference describes (a revision without images, more
    /// containers than a task definition holds, a value over its bound).
    #[error("ECS described the service revision {arn} unexpectedly: {why}")]
    BadAnswer { arn: String, why: String },
}

impl RevisionError {
    /// Whether asking again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Reads what a service revision runs.
#[async_trait]
pub trait Revisions: Send + Sync {
    /// Every container image of the revision `arn`.
    async fn images(&self, arn: &str) -> Result<Vec<RevisionImage>, RevisionError>;
}
