//! How the ECS adapter reads ECS's answers: which errors no retry can fix, which ask the sender
//! to redeliver, and how many services one DescribeServices takes. Shared by deploys and
//! follow discovery.

use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::ports::deployer::DeployError;

/// DescribeServices takes at most this many services per call (here and in follow discovery).
pub(super) const DESCRIBE_BATCH: usize = 10;

/// Error codes that no retry can fix: the deployment is recorded as failed instead of asking
/// the sender to redeliver for a day.
const PERMANENT_CODES: &[&str] = &[
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "ServiceNotActiveException",
    "InvalidParameterException",
    "ClientException",
    "PlatformUnknownException",
    "PlatformTaskDefinitionIncompatibilityException",
    // DescribeExpressGatewayService answers a missing Express service with this one
    // (UpdateExpressGatewayService with ServiceNotFoundException), and either call answers a
    // Region or account without Express Mode with UnsupportedFeatureException.
    "ResourceNotFoundException",
    "UnsupportedFeatureException",
];

pub(super) enum Failure {
    Permanent(String),
    Transient(DeployError),
}

pub(super) fn classify<E, R>(operation: &'static str, err: SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.code() {
        Some(c) if PERMANENT_CODES.contains(&c) => Failure::Permanent(format!(
            "{operation}: {c}: {}",
            err.message().unwrap_or("refused")
        )),
        _ => Failure::Transient(transient(operation, err)),
    }
}

/// An SDK error as a `DeployError`, which asks the sender to redeliver. Discovery (follow.rs)
/// treats every error so: a failed scan must not read as "no followers".
pub(super) fn transient(
    operation: &'static str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> DeployError {
    DeployError {
        operation,
        message: DisplayErrorContext(&err).to_string(),
        source: Some(Box::new(err)),
    }
}
