//! The interfaces the pipeline works through: the store, the deployer and the notifier. Adapters
//! implement them; the pipeline never names an adapter.

pub mod deployer;
pub mod notifier;
pub mod store;
