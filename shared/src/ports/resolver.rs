//! Asking a registry which digest a tag points at. Senders that name only a tag (Quay, Docker
//! Hub, Gitea, a generic push without a digest) would otherwise deploy `repo:tag`, which ECS
//! resolves again on every task start, and record pushes that cannot tell one image of the tag
//! from the next.
//!
//! `Resolver` is the port; the registry adapter speaks the Distribution API. A failure is never
//! a failed delivery: the push goes on unpinned, and the response says why.

use async_trait::async_trait;

use crate::model::reference::{Digest, ImageRef};

/// Why a tag was not resolved. Every message names the cause in the registry's own terms
/// (status, error code) and never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the reference names no tag")]
    NoTag,
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The transport's own account: `cannot connect: ...`, or why the request failed.
    #[error("{0}")]
    Connect(String),
    #[error("unexpected answer: {0}")]
    BadAnswer(String),
    /// The registry (or its token service) is reached over plain HTTP and is not one of the
    /// hosts allowed to be.
    #[error("{0}")]
    Insecure(String),
}

/// Resolves an image's tag to the digest the registry holds for it now.
#[async_trait]
pub trait Resolver: Send + Sync {
    /// The digest of the manifest (or manifest list / image index) `image`'s tag names.
    async fn resolve(&self, image: &ImageRef) -> Result<Digest, ResolveError>;

    /// How long one request's resolutions may take together: the sender is waiting (EventBridge
    /// retries after 5 s, Distribution's notifier after 1 s).
    fn budget(&self) -> std::time::Duration;
}
