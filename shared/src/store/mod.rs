//! The image-record store: one table of images, tags, receipts, services and deployments
//! (DESIGN §4), behind a port with two implementations of the same semantics:
//! DynamoDB in production and an embedded, file-backed store for the local binary.
//!
//! Both implementations apply the same `PushWrite` plan, built here once, so that what a push
//! writes is decided in one place and only how it is written differs.

mod dynamo;
mod embedded;
pub mod keys;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

pub use dynamo::{DynamoStore, item_to_json};
pub use embedded::EmbeddedStore;

use crate::deploy::{DeployOutcome, Deployment};
use crate::event::{ImageEvent, Timestamp};

/// Receipt states: `pending` while an event's deployments are not recorded yet, else `done`.
pub const RECEIPT_PENDING: &str = "pending";
pub const RECEIPT_DONE: &str = "done";

/// What recording a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Recorded, and the tag (if any) now points at this digest.
    Applied,
    /// Recorded on the image, but the tag already points at a push at least this recent.
    Stale,
    /// Seen before (same provider and event id): nothing changed. `pending` when the earlier
    /// delivery recorded the event but not its deployments, which must then be re-run.
    Duplicate { pending: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused for a reason a retry may fix (throttling,
    /// 5xx, network, credentials). The sender is asked to retry.
    #[error("{operation} failed: {message}")]
    Unavailable {
        operation: &'static str,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The request itself was invalid: our bug, not the sender's.
    #[error("{operation} was rejected: {message}")]
    Rejected {
        operation: &'static str,
        message: String,
    },
    #[error("embedded store: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

/// The port the functions use. Only what a handler needs: no reads on the push path.
#[async_trait]
pub trait Store: Send + Sync {
    /// Records a push in one atomic write: receipt, image and tag, or nothing at all.
    async fn record_push(&self, write: &PushWrite) -> Result<PushOutcome, StoreError>;

    /// Records an event's deployments and marks its receipt done, in one atomic write.
    async fn record_deployments(&self, write: &DeploymentsWrite) -> Result<(), StoreError>;

    /// Every stored record, sorted by key (for `imagehook state` and the tests).
    async fn dump(&self) -> Result<Vec<Map<String, Value>>, StoreError>;
}

/// An item's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

/// Changes to an image item on push.
#[derive(Debug, Clone)]
pub struct ImageChange {
    pub key: Key,
    pub registry: String,
    pub repository: String,
    pub digest: String,
    pub tag: Option<String>,
    pub pushed_at: Timestamp,
    /// Only a push that is not stale moves `last_pushed_at`.
    pub move_last_pushed: bool,
    pub media_type: Option<String>,
    pub size: Option<u64>,
}

/// Moving a tag. Applied only when the tag's `updated_at` is not newer than `updated_at`.
#[derive(Debug, Clone)]
pub struct TagChange {
    pub key: Key,
    pub registry: String,
    pub repository: String,
    pub tag: String,
    /// `None` for a push that carried no digest (deployed by tag, unpinned).
    pub digest: Option<String>,
    pub updated_at: Timestamp,
    pub event_id: String,
}

/// Everything one push writes.
#[derive(Debug, Clone)]
pub struct PushWrite {
    /// Put only if absent: the idempotency guard.
    pub receipt_key: Key,
    pub receipt: Map<String, Value>,
    pub image: Option<ImageChange>,
    pub tag: Option<TagChange>,
}

impl PushWrite {
    /// The plan for one push event. `needs_deploy` writes the receipt `pending`, so that a
    /// retry after a failed deployment re-runs the deployment instead of calling it a duplicate.
    pub fn for_push(
        event: &ImageEvent,
        received_at: &Timestamp,
        expires_at: i64,
        needs_deploy: bool,
    ) -> Self {
        let img = &event.image;
        let image_pk = keys::image_pk(img.registry.as_str(), img.repository.as_str());
        let receipt_key = keys::receipt(event.provider.as_str(), &event.id);
        let mut receipt = Map::new();
        receipt.insert("type".into(), json!("receipt"));
        receipt.insert("provider".into(), json!(event.provider.as_str()));
        receipt.insert("event_id".into(), json!(event.id));
        receipt.insert("action".into(), json!(event.action.as_str()));
        receipt.insert("image".into(), json!(img.to_string()));
        receipt.insert("occurred_at".into(), json!(event.occurred_at.as_str()));
        receipt.insert("received_at".into(), json!(received_at.as_str()));
        receipt.insert("expires_at".into(), json!(expires_at));
        receipt.insert(
            "status".into(),
            json!(if needs_deploy {
                RECEIPT_PENDING
            } else {
                RECEIPT_DONE
            }),
        );
        receipt.insert("outcome".into(), json!("applied"));
        Self {
            image: img.digest.as_ref().map(|d| ImageChange {
                key: Key {
                    pk: image_pk.clone(),
                    sk: keys::image_sk(d.as_str()),
                },
                registry: img.registry.to_string(),
                repository: img.repository.to_string(),
                digest: d.to_string(),
                tag: img.tag.as_ref().map(ToString::to_string),
                pushed_at: event.occurred_at.clone(),
                move_last_pushed: true,
                media_type: event.media_type.clone(),
                size: event.size,
            }),
            tag: img.tag.as_ref().map(|t| TagChange {
                key: Key {
                    pk: image_pk.clone(),
                    sk: keys::tag_sk(t.as_str()),
                },
                registry: img.registry.to_string(),
                repository: img.repository.to_string(),
                tag: t.to_string(),
                digest: img.digest.as_ref().map(ToString::to_string),
                updated_at: event.occurred_at.clone(),
                event_id: event.id.clone(),
            }),
            receipt_key,
            receipt,
        }
    }

    /// The same push once the tag turned out to be newer: recorded on the image, the tag left
    /// alone, nothing to deploy.
    pub fn as_stale(&self) -> Self {
        let mut stale = self.clone();
        stale.tag = None;
        if let Some(img) = &mut stale.image {
            img.move_last_pushed = false;
        }
        stale.receipt.insert("status".into(), json!(RECEIPT_DONE));
        stale.receipt.insert("outcome".into(), json!("stale"));
        stale
    }
}

/// The service's CURRENT item after a deployment that changed or confirmed what it runs.
#[derive(Debug, Clone)]
pub struct ServiceCurrent {
    pub key: Key,
    pub item: Map<String, Value>,
}

/// Everything recording an event's deployments writes.
#[derive(Debug, Clone)]
pub struct DeploymentsWrite {
    pub receipt_key: Key,
    /// DEP items, keyed by event time and image, so a re-run overwrites instead of adding.
    pub deployments: Vec<(Key, Map<String, Value>)>,
    pub services: Vec<ServiceCurrent>,
    pub at: Timestamp,
}

impl DeploymentsWrite {
    pub fn new(event: &ImageEvent, deployments: &[Deployment], at: &Timestamp) -> Self {
        let receipt_key = keys::receipt(event.provider.as_str(), &event.id);
        let mut deps = Vec::new();
        let mut services = Vec::new();
        let what = event
            .image
            .digest
            .as_ref()
            .map_or_else(|| event.image.to_string(), ToString::to_string);
        for d in deployments {
            let pk = keys::service_pk(&d.cluster, &d.service);
            let mut item = Map::new();
            item.insert("type".into(), json!("deployment"));
            item.insert("cluster".into(), json!(d.cluster));
            item.insert("service".into(), json!(d.service));
            item.insert("outcome".into(), json!(d.outcome.as_str()));
            item.insert("to".into(), json!(d.image));
            item.insert(
                "event".into(),
                json!(format!("{}#{}", event.provider, event.id)),
            );
            item.insert("recorded_at".into(), json!(at.as_str()));
            for (k, v) in [
                ("task_definition", &d.task_definition),
                ("from_task_definition", &d.previous_task_definition),
                ("stage", &d.stage),
                ("reason", &d.reason),
            ] {
                if let Some(v) = v {
                    item.insert(k.into(), json!(v));
                }
            }
            deps.push((
                Key {
                    pk: pk.clone(),
                    sk: keys::deployment_sk(event.occurred_at.as_str(), &what),
                },
                item,
            ));
            if matches!(d.outcome, DeployOutcome::Updated | DeployOutcome::Unchanged) {
                let mut cur = Map::new();
                cur.insert("type".into(), json!("service"));
                cur.insert("cluster".into(), json!(d.cluster));
                cur.insert("service".into(), json!(d.service));
                cur.insert("image".into(), json!(d.image));
                if let Some(digest) = &event.image.digest {
                    cur.insert("digest".into(), json!(digest.as_str()));
                }
                if let Some(td) = &d.task_definition {
                    cur.insert("task_definition_arn".into(), json!(td));
                }
                cur.insert("updated_at".into(), json!(at.as_str()));
                services.push(ServiceCurrent {
                    key: Key {
                        pk,
                        sk: keys::SERVICE_CURRENT.to_owned(),
                    },
                    item: cur,
                });
            }
        }
        Self {
            receipt_key,
            deployments: deps,
            services,
            at: at.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.deployments.is_empty()
    }
}
