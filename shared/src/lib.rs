//! imagehook's core: everything that is not Lambda glue.
//!
//! A request flows one way: [`auth`] verifies the raw bytes, [`providers`] parse them into
//! [`event::ImageEvent`]s, the function's path ([`pipeline`]) records them in a [`store::Store`] and
//! rolls them out through a [`deploy::Deployer`], and [`http`] maps the result to a response.

#[cfg(feature = "aws")]
pub mod app;
pub mod auth;
#[cfg(feature = "aws")]
pub mod aws;
pub mod config;
#[cfg(feature = "aws")]
pub mod deploy;
pub mod event;
#[cfg(feature = "aws")]
pub mod http;
#[cfg(feature = "aws")]
pub mod images_api;
pub mod metrics;
#[cfg(feature = "aws")]
pub mod notify;
#[cfg(feature = "aws")]
pub mod outcome;
#[cfg(feature = "aws")]
pub mod pipeline;
pub mod policy;
pub mod providers;
pub mod reference;
#[cfg(feature = "aws")]
pub mod replay;
pub mod rollout;
pub mod rules;
#[cfg(feature = "aws")]
pub mod store;

#[cfg(feature = "aws")]
pub use app::{App, Function};

/// A failure of the store or of ECS while handling an event, mapped to 503 (retry) or 500 at
/// the edge.
#[cfg(feature = "aws")]
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("deploy: {0}")]
    Deploy(#[from] deploy::DeployError),
}
