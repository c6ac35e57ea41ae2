//! End-to-end suite: the push, delete and quarantine handlers against moto's DynamoDB and ECS through the real SDK
//! clients, driven by the API Gateway events in `events/`.
#![allow(clippy::unwrap_used)]

mod bounds;
mod budget;
mod contract;
mod edge;
mod express;
mod fault_matrix;
mod faults;
mod follow;
mod guard;
mod history;
mod holds;
mod identity;
mod lifecycle;
mod limits;
mod manual;
mod new_senders;
mod notify;
mod oidc;
mod once;
mod pinning;
mod promotion;
mod proxy;
mod push;
mod reconcile;
mod replication;
mod rollout;
mod secrets;
mod security;
mod senders;
