//! The image-record store: one table of images, tags, receipts, services and deployments
//! (DESIGN §4), behind a port with two implementations of the same semantics: DynamoDB in
//! production and an embedded, file-backed store for the local binary.
//!
//! The port is deliberately low-level (a conditional transaction, a get, a query): what each
//! event writes, and how a refused condition is read, is decided once in [`ledger`], so the two
//! stores cannot drift apart.

pub mod keys;
pub mod ops;

use async_trait::async_trait;
use serde_json::{Map, Value};

pub use ops::{Cancelled, Cond, Op, Update};

/// Receipt states: `pending` while an event's deployments are not recorded yet, else `done`.
pub const RECEIPT_PENDING: &str = "pending";
pub const RECEIPT_DONE: &str = "done";

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

/// An item's key.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// The strings of a string-set (or list) attribute; none when absent.
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The port.
#[async_trait]
pub trait Store: Send + Sync {
    /// Applies every op or none. `Ok(Err(_))` when a condition did not hold.
    async fn transact(&self, ops: Vec<Op>) -> Result<Result<(), Cancelled>, StoreError>;

    /// One item, read consistently.
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;

    /// The items of a partition whose sort key starts with `sk_prefix`, read consistently.
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError>;

    /// The services whose CURRENT item says they run `image` (`registry/repo@digest`).
    async fn running(&self, image: &str) -> Result<Vec<Item>, StoreError>;

    /// Every stored record, sorted by key (for `imagehook state` and the tests).
    async fn dump(&self) -> Result<Vec<Item>, StoreError>;
}
