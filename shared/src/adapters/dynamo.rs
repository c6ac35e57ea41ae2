//! The DynamoDB adapter: renders the ledger's ops as one `TransactWriteItems`, asks for the old
//! item on every refused condition (so that callers learn why without a read), and maps the
//! SDK's errors to retry-or-not.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update as DynUpdate,
};
use serde_json::{Map, Value};

use super::records::{decode, services};
use crate::ports::store::keys::{PK, SK};
use crate::ports::store::ops::{Cancelled, Cond, Op, Update};
use crate::ports::store::{
    Item, Key, Record, ServiceRecord, StoreDump, StoreError, StoreRead, StoreWrite,
};

use crate::ports::store::MAX_TRANSACTION_ITEMS;
/// The sparse index over service CURRENT items by the image they run.
pub const RUNNING_INDEX: &str = "running";
const CONDITION_FAILED: &str = "ConditionalCheckFailed";
const ALL_OLD: ReturnValuesOnConditionCheckFailure = ReturnValuesOnConditionCheckFailure::AllOld;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn key_attrs(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(key.pk.clone())),
        (SK.to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

/// An item as JSON, the form `dump` and the local binary's `state` print.
pub fn item_to_json(item: &HashMap<String, AttributeValue>) -> Map<String, Value> {
    item.iter()
        .map(|(k, v)| (k.clone(), from_attr(v)))
        .collect()
}

fn to_attr(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attr).collect()),
        Value::Object(o) => {
            AttributeValue::M(o.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect())
        }
    }
}

fn from_attr(a: &AttributeValue) -> Value {
    match a {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| n.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::String(n.clone())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Ss(ss) => {
            let mut v = ss.clone();
            v.sort();
            Value::from(v)
        }
        AttributeValue::Ns(ns) => Value::from(ns.clone()),
        AttributeValue::L(l) => Value::Array(l.iter().map(from_attr).collect()),
        AttributeValue::M(m) => Value::Object(item_to_json(m)),
        _ => Value::Null,
    }
}

fn classify<E, R>(operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if err.code() == Some("ValidationException") {
        return StoreError::Rejected {
            operation,
            message: err.message().unwrap_or("validation failed").to_owned(),
        };
    }
    StoreError::Unavailable {
        operation,
        message: DisplayErrorContext(&err).to_string(),
        source: Some(Box::new(err)),
    }
}

fn rejected(e: impl std::fmt::Display) -> StoreError {
    StoreError::Rejected {
        operation: "TransactWriteItems",
        message: e.to_string(),
    }
}

/// Attribute names and values of one expression, every name aliased (several here, `size`,
/// `status`, `type`, are reserved words).
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, n: &str) -> String {
        let alias = format!("#{n}");
        self.names.insert(alias.clone(), n.to_owned());
        alias
    }
    fn value(&mut self, v: AttributeValue) -> String {
        let alias = format!(":v{}", self.values.len());
        self.values.insert(alias.clone(), v);
        alias
    }
    fn cond(&mut self, c: &Cond) -> String {
        let cmp = |e: &mut Self, a: &str, op: &str, v: &Value| {
            let (n, v) = (e.name(a), e.value(to_attr(v)));
            format!("{n} {op} {v}")
        };
        match c {
            Cond::ItemAbsent => format!("attribute_not_exists({})", self.name(PK)),
            Cond::ItemPresent => format!("attribute_exists({})", self.name(PK)),
            Cond::Missing(a) => format!("attribute_not_exists({})", self.name(a)),
            Cond::Present(a) => format!("attribute_exists({})", self.name(a)),
            Cond::Eq(a, v) => cmp(self, a, "=", v),
            Cond::Ne(a, v) => cmp(self, a, "<>", v),
            Cond::Le(a, v) => cmp(self, a, "<=", v),
            Cond::Lt(a, v) => cmp(self, a, "<", v),
            Cond::And(cs) => self.join(cs, " AND "),
            Cond::Or(cs) => self.join(cs, " OR "),
        }
    }
    fn join(&mut self, cs: &[Cond], sep: &str) -> String {
        let parts: Vec<String> = cs.iter().map(|c| format!("({})", self.cond(c))).collect();
        parts.join(sep)
    }
    fn names(&self) -> Option<HashMap<String, String>> {
        Some(self.names.clone()).filter(|n| !n.is_empty())
    }
    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        Some(self.values.clone()).filter(|v| !v.is_empty())
    }
}

fn update_expression(u: &Update, e: &mut Expr) -> String {
    let mut set = Vec::new();
    for (a, v) in &u.set {
        set.push(format!("{} = {}", e.name(a), e.value(to_attr(v))));
    }
    for (a, v) in &u.set_if_absent {
        let n = e.name(a);
        set.push(format!("{n} = if_not_exists({n}, {})", e.value(to_attr(v))));
    }
    for (to, from, d) in &u.copy {
        let (to, from) = (e.name(to), e.name(from));
        set.push(format!(
            "{to} = if_not_exists({from}, {})",
            e.value(to_attr(d))
        ));
    }
    for (a, v) in &u.append {
        let n = e.name(a);
        let empty = e.value(AttributeValue::L(Vec::new()));
        let item = e.value(AttributeValue::L(vec![to_attr(v)]));
        set.push(format!(
            "{n} = list_append(if_not_exists({n}, {empty}), {item})"
        ));
    }
    let mut add = Vec::new();
    for (a, n) in &u.add {
        add.push(format!(
            "{} {}",
            e.name(a),
            e.value(AttributeValue::N(n.to_string()))
        ));
    }
    for (a, v) in &u.add_to_set {
        add.push(format!(
            "{} {}",
            e.name(a),
            e.value(AttributeValue::Ss(vec![v.clone()]))
        ));
    }
    let mut delete = Vec::new();
    for (a, v) in &u.delete_from_set {
        delete.push(format!(
            "{} {}",
            e.name(a),
            e.value(AttributeValue::Ss(vec![v.clone()]))
        ));
    }
    let remove: Vec<String> = u.remove.iter().map(|a| e.name(a)).collect();
    let mut parts = Vec::new();
    for (word, list) in [
        ("SET", set),
        ("ADD", add),
        ("DELETE", delete),
        ("REMOVE", remove),
    ] {
        if !list.is_empty() {
            parts.push(format!("{word} {}", list.join(", ")));
        }
    }
    parts.join(" ")
}

/// Finishes a Put, Update or Delete builder (three SDK types with the same setters): the
/// condition, its names and values, and the old item back when the condition fails.
macro_rules! conditional {
    ($builder:expr, $cond:expr, $expr:expr) => {
        $builder
            .set_condition_expression($cond)
            .set_expression_attribute_names($expr.names())
            .set_expression_attribute_values($expr.values())
            .return_values_on_condition_check_failure(ALL_OLD)
            .build()
            .map_err(rejected)?
    };
}

impl DynamoStore {
    fn render(&self, op: &Op) -> Result<TransactWriteItem, StoreError> {
        let mut e = Expr::default();
        Ok(match op {
            Op::Put { key, item, cond } => {
                let mut attrs = key_attrs(key);
                attrs.extend(item.iter().map(|(k, v)| (k.clone(), to_attr(v))));
                let cond = cond.as_ref().map(|c| e.cond(c));
                let put = conditional!(
                    Put::builder().table_name(&self.table).set_item(Some(attrs)),
                    cond,
                    e
                );
                TransactWriteItem::builder().put(put).build()
            }
            Op::Update(u) => {
                let expression = update_expression(u, &mut e);
                let cond = u.cond.as_ref().map(|c| e.cond(c));
                let update = conditional!(
                    DynUpdate::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_attrs(&u.key)))
                        .update_expression(expression),
                    cond,
                    e
                );
                TransactWriteItem::builder().update(update).build()
            }
            Op::Delete { key, cond } => {
                let cond = cond.as_ref().map(|c| e.cond(c));
                let delete = conditional!(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_attrs(key))),
                    cond,
                    e
                );
                TransactWriteItem::builder().delete(delete).build()
            }
        })
    }

    async fn query_pages(
        &self,
        index: Option<&str>,
        key_condition: &str,
        names: HashMap<String, String>,
        values: HashMap<String, AttributeValue>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression(key_condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                // Index reads are eventually consistent; table reads need not be.
                .consistent_read(index.is_none())
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            out.extend(page.items().iter().map(item_to_json));
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl StoreWrite for DynamoStore {
    async fn transact(&self, ops: Vec<Op>) -> Result<Result<(), Cancelled>, StoreError> {
        if ops.len() > MAX_TRANSACTION_ITEMS {
            return Err(rejected(format!("{} items in one transaction", ops.len())));
        }
        let items = ops
            .iter()
            .map(|op| self.render(op))
            .collect::<Result<Vec<_>, _>>()?;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Ok(())),
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(tc)) =
                    err.as_service_error()
                {
                    let reasons = tc.cancellation_reasons();
                    let failed = reasons
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some(CONDITION_FAILED))
                        .map(|(i, r)| {
                            Ok((i, r.item().map(|it| decode(&item_to_json(it))).transpose()?))
                        })
                        .collect::<Result<Vec<_>, StoreError>>()?;
                    // Only refused conditions are an answer; a conflict or throttle is retried.
                    let others = reasons
                        .iter()
                        .any(|r| !matches!(r.code(), None | Some("None") | Some(CONDITION_FAILED)));
                    if !failed.is_empty() && !others {
                        return Ok(Err(Cancelled { failed }));
                    }
                }
                Err(classify("TransactWriteItems", err))
            }
        }
    }
}

#[async_trait]
impl StoreRead for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        out.item().map(|i| decode(&item_to_json(i))).transpose()
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Record>, StoreError> {
        let items = self
            .query_pages(
                None,
                "#pk = :pk AND begins_with(#sk, :sk)",
                HashMap::from([("#pk".into(), PK.into()), ("#sk".into(), SK.into())]),
                HashMap::from([
                    (":pk".into(), AttributeValue::S(pk.to_owned())),
                    (":sk".into(), AttributeValue::S(sk_prefix.to_owned())),
                ]),
            )
            .await?;
        items.iter().map(decode).collect()
    }

    async fn running(&self, image: &str) -> Result<Vec<ServiceRecord>, StoreError> {
        let items = self
            .query_pages(
                Some(RUNNING_INDEX),
                "#r = :r",
                HashMap::from([("#r".into(), "running".into())]),
                HashMap::from([(":r".into(), AttributeValue::S(image.to_owned()))]),
            )
            .await?;
        services(&items)
    }
}

#[async_trait]
impl StoreDump for DynamoStore {
    async fn dump(&self) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("Scan", e))?;
            out.extend(page.items().iter().map(item_to_json));
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        out.sort_by(|a: &Item, b| {
            (
                a.get(PK).and_then(Value::as_str),
                a.get(SK).and_then(Value::as_str),
            )
                .cmp(&(
                    b.get(PK).and_then(Value::as_str),
                    b.get(SK).and_then(Value::as_str),
                ))
        });
        Ok(out)
    }
}
