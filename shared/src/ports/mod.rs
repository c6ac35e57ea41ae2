//! The interfaces the pipeline works through: the store, the deployer, the notifier and the
//! registry resolver. Adapters implement them; the pipeline never names an adapter.

pub mod deployer;
pub mod notifier;
pub mod resolver;
pub mod store;
