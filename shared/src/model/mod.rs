//! The domain: events and image references, deploy rules and their policies, and the results
//! the pipeline reports. Imports nothing else of the crate.

pub mod approval;
pub mod deployment;
pub mod ecs_outcome;
pub mod event;
pub mod function;
pub mod glob;
pub mod notice;
pub mod payload;
pub mod policy;
pub mod quarantine;
pub mod records;
pub mod reference;
pub mod result;
pub mod rules;
