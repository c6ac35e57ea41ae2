//! imagehook's core: everything that is not Lambda glue.
//!
//! Dependencies run one way (docs/architecture.md draws them, and the `layers` test enforces
//! them): [`edge`] (Lambda/HTTP glue and the one error → status map) → [`app`] (configuration
//! and adapters wired into the pipeline) → [`pipeline`] (one file per action, owning its rules
//! and its writes) → [`ports`] (store, deployer, notifier) → [`model`]. [`adapters`] implement
//! the ports; [`auth`] and [`providers`] are pure functions over the model.

#[cfg(feature = "aws")]
pub mod adapters;
#[cfg(feature = "aws")]
pub mod app;
pub mod auth;
#[cfg(feature = "aws")]
pub mod edge;
pub mod model;
#[cfg(feature = "aws")]
pub mod pipeline;
#[cfg(feature = "aws")]
pub mod ports;
pub mod providers;
