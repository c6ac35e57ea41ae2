//! What every action is given, and how it fails: the pipeline's dependencies borrowed from the
//! function's long-lived state, and the one error type the edge maps to a status.

use super::receipt::Receipt;
use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::event::{ImageEvent, Timestamp};
use crate::model::quarantine::QuarantinePolicy;
use crate::model::reference::RegistryAliases;
use crate::model::result::EventResult;
use crate::model::rules::Rules;
use crate::ports::deployer::{DeployError, Deployer};
use crate::ports::resolver::Resolver;
use crate::ports::store::{Store, StoreError};

/// A failure of the store or of ECS while handling an event. Both are worth the sender's retry
/// or not as the underlying error says ([`PipelineError::is_retryable`]); the edge maps it to a
/// status once.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("deploy: {0}")]
    Deploy(#[from] DeployError),
    /// A decision on a held deployment was refused: the caller's to correct, never retried.
    #[error(transparent)]
    Decision(#[from] crate::model::approval::DecisionError),
}

impl PipelineError {
    /// Whether the sender's retry may succeed where this attempt failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Deploy(e) => e.is_retryable(),
            Self::Decision(_) => false,
        }
    }
}

pub(super) const SECONDS_PER_DAY: i64 = 86_400;

/// What the paths need, borrowed from the function's long-lived state.
#[derive(Clone, Copy)]
pub struct Deps<'a> {
    pub store: &'a dyn Store,
    pub deployer: &'a dyn Deployer,
    pub rules: &'a Rules,
    pub quarantine: &'a QuarantinePolicy,
    pub receipt_ttl_days: u32,
    /// What `require_region: service-region` stands for.
    pub service_region: Option<&'a str>,
    /// Other names of registries, mapped to their canonical one before an event is handled.
    pub registry_aliases: &'a RegistryAliases,
    /// The verified request the events came from, kept on their receipts for replay.
    pub payload: Option<&'a crate::model::payload::Payload>,
    /// How long a service's lease lasts (`LEASE_SECONDS`).
    pub lease: std::time::Duration,
    /// Resolves a pushed tag to its digest (`RESOLVE_DIGESTS`); none: pushes without a digest
    /// deploy by tag.
    pub resolver: Option<&'a dyn Resolver>,
}

impl Deps<'_> {
    pub fn receipt<'e>(&'e self, event: &'e ImageEvent, received_at: &'e Timestamp) -> Receipt<'e> {
        Receipt {
            event,
            received_at,
            payload: self.payload,
            expires_at: received_at.unix_seconds()
                + i64::from(self.receipt_ttl_days) * SECONDS_PER_DAY,
        }
    }
}

/// Deployments that failed become warnings too, so a sender's log shows them.
pub(super) fn warn_failed(result: &mut EventResult, deployments: &[Deployment]) {
    for d in deployments {
        if d.outcome == DeployOutcome::Failed {
            result.warnings.push(format!(
                "deployment to {}/{} failed: {}",
                d.cluster,
                d.service,
                d.reason.as_deref().unwrap_or("unknown reason")
            ));
        }
    }
}
