//! The few DynamoDB write and read shapes imagehook uses, as plain data. The record logic
//! (`ledger`) builds these once; each store only executes them: DynamoDB by rendering
//! expressions, the embedded store by evaluating them on its items. That is what keeps the two
//! stores' semantics the same.

use serde_json::{Map, Value};

use super::keys::Key;
use crate::model::records::Record;

/// A condition on one item, evaluated as DynamoDB does (a comparison with a missing attribute
/// is false).
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// The item does not exist.
    ItemAbsent,
    /// The item exists.
    ItemPresent,
    Missing(&'static str),
    Present(&'static str),
    Eq(&'static str, Value),
    Ne(&'static str, Value),
    Le(&'static str, Value),
    Lt(&'static str, Value),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

/// An UpdateItem: every right-hand side reads the item as it was before the update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    pub key: Key,
    pub set: Vec<(&'static str, Value)>,
    /// `SET a = if_not_exists(a, v)`
    pub set_if_absent: Vec<(&'static str, Value)>,
    /// `SET to = if_not_exists(from, default)`: copies an attribute's old value.
    pub copy: Vec<(&'static str, &'static str, Value)>,
    /// `ADD n :i`
    pub add: Vec<(&'static str, i64)>,
    /// `ADD s :{v}` on a string set
    pub add_to_set: Vec<(&'static str, String)>,
    /// `DELETE s :{v}` on a string set
    pub delete_from_set: Vec<(&'static str, String)>,
    /// `SET l = list_append(if_not_exists(l, []), [v])`
    pub append: Vec<(&'static str, Value)>,
    pub remove: Vec<&'static str>,
    pub cond: Option<Cond>,
}

impl Update {
    pub fn new(key: Key) -> Self {
        Self {
            key,
            ..Self::default()
        }
    }
    /// Sets `a`; setting it again replaces the value (DynamoDB refuses one update that names
    /// a path twice).
    pub fn set(mut self, a: &'static str, v: impl Into<Value>) -> Self {
        let v = v.into();
        match self.set.iter_mut().find(|(name, _)| *name == a) {
            Some(slot) => slot.1 = v,
            None => self.set.push((a, v)),
        }
        self
    }
    pub fn set_opt(self, a: &'static str, v: Option<impl Into<Value>>) -> Self {
        match v {
            Some(v) => self.set(a, v),
            None => self,
        }
    }
    pub fn set_if_absent(mut self, a: &'static str, v: impl Into<Value>) -> Self {
        self.set_if_absent.push((a, v.into()));
        self
    }
    pub fn copy(mut self, to: &'static str, from: &'static str, default: impl Into<Value>) -> Self {
        self.copy.push((to, from, default.into()));
        self
    }
    pub fn add(mut self, a: &'static str, n: i64) -> Self {
        self.add.push((a, n));
        self
    }
    pub fn add_to_set(mut self, a: &'static str, v: impl Into<String>) -> Self {
        self.add_to_set.push((a, v.into()));
        self
    }
    pub fn delete_from_set(mut self, a: &'static str, v: impl Into<String>) -> Self {
        self.delete_from_set.push((a, v.into()));
        self
    }
    pub fn append(mut self, a: &'static str, v: Value) -> Self {
        self.append.push((a, v));
        self
    }
    pub fn remove(mut self, a: &'static str) -> Self {
        self.remove.push(a);
        self
    }
    pub fn when(mut self, c: Cond) -> Self {
        self.cond = Some(c);
        self
    }
}

/// One item of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put {
        key: Key,
        item: Map<String, Value>,
        cond: Option<Cond>,
    },
    Update(Update),
    Delete {
        key: Key,
        cond: Option<Cond>,
    },
}

impl Op {
    pub fn key(&self) -> &Key {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
            Op::Update(u) => &u.key,
        }
    }
}

/// A transaction whose conditions did not hold: nothing was written. Lists the failed items by
/// position, each with the record as it was (DynamoDB's `ReturnValuesOnConditionCheckFailure`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cancelled {
    pub failed: Vec<(usize, Option<Record>)>,
}

impl Cancelled {
    pub fn failed_at(&self, index: usize) -> Option<Option<&Record>> {
        self.failed
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, item)| item.as_ref())
    }
}
