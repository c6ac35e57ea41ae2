//! Implementations of the ports: DynamoDB and the embedded store, ECS (its Express Mode services
//! in `express`) and dry-run, the images of an ECS service revision (`revisions`), Slack and
//! SNS, the registry resolver; Secrets Manager, which the wiring reads the webhook secret and the
//! registry logins from; the OIDC issuers' key sets (`jwks`); and the TLS configuration the
//! HTTPS clients share (`tls`). They import only the ports and the model.

pub mod aws;
pub mod dry_run;
pub mod dynamo;
pub mod ecs;
mod ecs_errors;
pub mod embedded;
pub mod express;
pub mod follow;
pub mod jwks;
pub mod records;
pub mod registry;
pub mod revisions;
mod sdk_http;
pub mod secrets;
pub mod slack;
pub mod sns;
pub mod tls;

pub use dry_run::DryRunDeployer;
pub use dynamo::{DynamoStore, RUNNING_INDEX, item_to_json};
pub use ecs::EcsDeployer;
pub use embedded::EmbeddedStore;
