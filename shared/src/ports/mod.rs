//! The interfaces the pipeline works through: the store, the deployer, the notifier, the
//! registry resolver and the images of an ECS service revision (the deployment guard's).
//! Adapters implement them; the pipeline never names an adapter.

pub mod deployer;
pub mod notifier;
pub mod resolver;
pub mod revisions;
pub mod store;
