//! The image-record store: one table of images, tags, receipts, services and deployments
//! (DESIGN §4), behind a port with two implementations of the same semantics: DynamoDB in
//! production and an embedded, file-backed store for the local binary.
//!
//! The port is deliberately low-level (a conditional transaction, a get, a query) and split
//! along IAM's lines: reads, conditional writes and the full dump are separate traits, so a
//! function can do only what the ports it is given allow. What each event writes, and how a
//! refused condition is read, is decided by the pipeline, so the two stores cannot drift apart.
//! Reads come back as typed records ([`Record`]), decoded beside the adapters.

pub mod keys;
pub mod ops;

use async_trait::async_trait;
use serde_json::{Map, Value};

pub use crate::model::records::{Record, ServiceRecord};
pub use keys::Key;
pub use ops::{Cancelled, Cond, Op, Update};

/// The most operations one transaction may hold (DynamoDB's TransactWriteItems limit): writers
/// split larger writes into transactions of at most this many.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

pub type Item = Map<String, Value>;

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

impl StoreError {
    /// Whether a retry may succeed: the store was unreachable or refused for the moment. A
    /// rejected request or an unreadable record is a bug a retry repeats.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Io(_))
    }
}

/// Reads, consistent ones: DynamoDB's GetItem and Query (the running index included). All the
/// images function is given.
#[async_trait]
pub trait StoreRead: Send + Sync {
    /// One record.
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError>;

    /// The records of a partition whose sort key starts with `sk_prefix`.
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Record>, StoreError>;

    /// The services whose record says they run `image` (`registry/repo@digest`).
    async fn running(&self, image: &str) -> Result<Vec<ServiceRecord>, StoreError>;
}

/// Conditional, transactional writes: DynamoDB's TransactWriteItems.
#[async_trait]
pub trait StoreWrite: Send + Sync {
    /// Applies every op or none. `Ok(Err(_))` when a condition did not hold.
    async fn transact(&self, ops: Vec<Op>) -> Result<Result<(), Cancelled>, StoreError>;
}

/// Every stored item as it is, sorted by key: a full-table read (DynamoDB's Scan) for the local
/// binary's `imagehook state` and the tests, never given to a deployed function.
#[async_trait]
pub trait StoreDump: Send + Sync {
    async fn dump(&self) -> Result<Vec<Item>, StoreError>;
}

/// What the webhook and outcomes functions are given: reads and conditional writes.
pub trait Store: StoreRead + StoreWrite {}

impl<T: StoreRead + StoreWrite + ?Sized> Store for T {}
