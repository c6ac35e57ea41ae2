//! imagehook's core: everything that is not Lambda glue.
//!
//! A request flows one way: [`auth`] verifies the raw bytes, [`providers`] parse them into
//! [`event::ImageEvent`]s, the function's path ([`pipeline`]) records them in a [`store::Store`] and
//! rolls them out through a [`deploy::Deployer`], and [`http`] maps the result to a response.

pub mod app;
pub mod auth;
pub mod aws;
pub mod config;
pub mod deploy;
pub mod event;
pub mod http;
pub mod images_api;
pub mod metrics;
pub mod notify;
pub mod outcome;
pub mod pipeline;
pub mod policy;
pub mod providers;
pub mod reference;
pub mod replay;
pub mod rollout;
pub mod rules;
pub mod store;

pub use app::{App, Function};

/// A failure of the store or of ECS while handling an event, mapped to 503 (retry) or 500 at
/// the edge.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("deploy: {0}")]
    Deploy(#[from] deploy::DeployError),
}
