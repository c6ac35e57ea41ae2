//! The DynamoDB adapter. One `TransactWriteItems` per push (receipt + image + tag), conditional,
//! with the old receipt returned on a duplicate so that the push path never reads.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde_json::{Map, Value};

use super::keys::{PK, SK};
use super::{
    DeploymentsWrite, Key, PushOutcome, PushWrite, RECEIPT_DONE, RECEIPT_PENDING, Store, StoreError,
};

/// TransactWriteItems takes at most 100 items.
const MAX_TRANSACTION_ITEMS: usize = 100;
const CONDITION_FAILED: &str = "ConditionalCheckFailed";

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

pub(crate) fn to_attr(v: &Value) -> AttributeValue {
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

pub(crate) fn from_attr(a: &AttributeValue) -> Value {
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
        AttributeValue::M(m) => {
            let mut o: Vec<_> = m.iter().collect();
            o.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k.clone(), from_attr(v)))
                    .collect(),
            )
        }
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

/// An update expression assembled clause by clause, with every name aliased (many attribute
/// names here, `size`, `status`, `type`, are DynamoDB reserved words).
#[derive(Default)]
struct UpdateExpr {
    set: Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl UpdateExpr {
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
    fn set(&mut self, n: &str, v: AttributeValue) {
        let (n, v) = (self.name(n), self.value(v));
        self.set.push(format!("{n} = {v}"));
    }
    fn set_if_absent(&mut self, n: &str, v: AttributeValue) {
        let (n, v) = (self.name(n), self.value(v));
        self.set.push(format!("{n} = if_not_exists({n}, {v})"));
    }
    fn add(&mut self, n: &str, v: AttributeValue) {
        let (n, v) = (self.name(n), self.value(v));
        self.add.push(format!("{n} {v}"));
    }
    fn remove(&mut self, n: &str) {
        let n = self.name(n);
        self.remove.push(n);
    }
    fn expression(&self) -> String {
        let mut parts = Vec::new();
        if !self.set.is_empty() {
            parts.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.add.is_empty() {
            parts.push(format!("ADD {}", self.add.join(", ")));
        }
        if !self.remove.is_empty() {
            parts.push(format!("REMOVE {}", self.remove.join(", ")));
        }
        parts.join(" ")
    }
    fn into_update(
        self,
        table: &str,
        key: &Key,
        condition: Option<String>,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(table)
            .set_key(Some(key_attrs(key)))
            .update_expression(self.expression())
            .set_condition_expression(condition)
            .set_expression_attribute_names(Some(self.names))
            .set_expression_attribute_values(Some(self.values).filter(|v| !v.is_empty()))
            .build()
            .map_err(|e| StoreError::Rejected {
                operation: "TransactWriteItems",
                message: e.to_string(),
            })?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

fn put(
    builder: aws_sdk_dynamodb::types::builders::PutBuilder,
) -> Result<TransactWriteItem, StoreError> {
    let put = builder.build().map_err(|e| StoreError::Rejected {
        operation: "TransactWriteItems",
        message: e.to_string(),
    })?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoStore {
    fn push_items(
        &self,
        w: &PushWrite,
    ) -> Result<(Vec<TransactWriteItem>, Option<usize>), StoreError> {
        let mut items = Vec::with_capacity(3);
        let mut receipt = key_attrs(&w.receipt_key);
        receipt.extend(w.receipt.iter().map(|(k, v)| (k.clone(), to_attr(v))));
        items.push(put(Put::builder()
            .table_name(&self.table)
            .set_item(Some(receipt))
            .condition_expression("attribute_not_exists(PK)")
            .return_values_on_condition_check_failure(
                ReturnValuesOnConditionCheckFailure::AllOld,
            ))?);

        if let Some(img) = &w.image {
            let mut u = UpdateExpr::default();
            u.set("type", s("image"));
            u.set("registry", s(&img.registry));
            u.set("repository", s(&img.repository));
            u.set("digest", s(&img.digest));
            u.set_if_absent("first_seen", s(img.pushed_at.as_str()));
            u.set_if_absent("status", s("active"));
            if img.move_last_pushed {
                u.set("last_pushed_at", s(img.pushed_at.as_str()));
            }
            if let Some(mt) = &img.media_type {
                u.set("media_type", s(mt));
            }
            if let Some(size) = img.size {
                u.set("size", n(size));
            }
            u.add("push_count", n(1));
            u.add("version", n(1));
            if let Some(tag) = &img.tag {
                u.add("tags", AttributeValue::Ss(vec![tag.clone()]));
            }
            items.push(u.into_update(&self.table, &img.key, None)?);
        }

        let mut tag_index = None;
        if let Some(tag) = &w.tag {
            let mut u = UpdateExpr::default();
            u.set("type", s("tag"));
            u.set("registry", s(&tag.registry));
            u.set("repository", s(&tag.repository));
            u.set("tag", s(&tag.tag));
            u.set("updated_at", s(tag.updated_at.as_str()));
            u.set("event_id", s(&tag.event_id));
            let digest = u.name("digest");
            let none = u.value(s(""));
            let prev = u.name("previous_digest");
            u.set
                .push(format!("{prev} = if_not_exists({digest}, {none})"));
            match &tag.digest {
                Some(d) => {
                    u.set("digest", s(d));
                    u.remove("unpinned");
                }
                None => {
                    u.set("unpinned", AttributeValue::Bool(true));
                    u.remove("digest");
                }
            }
            u.add("version", n(1));
            let at = u.name("updated_at");
            let t = u.value(s(tag.updated_at.as_str()));
            let cond = format!("attribute_not_exists({at}) OR {at} <= {t}");
            tag_index = Some(items.len());
            items.push(u.into_update(&self.table, &tag.key, Some(cond))?);
        }
        Ok((items, tag_index))
    }

    async fn try_push(&self, w: &PushWrite) -> Result<Result<(), Cancelled>, StoreError> {
        let (items, tag_index) = self.push_items(w)?;
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
                    let failed =
                        |i: usize| reasons.get(i).and_then(|r| r.code()) == Some(CONDITION_FAILED);
                    if failed(0) {
                        let status = reasons[0]
                            .item()
                            .and_then(|i| i.get("status"))
                            .and_then(|a| a.as_s().ok())
                            .map(String::as_str);
                        return Ok(Err(Cancelled::Duplicate {
                            pending: status == Some(RECEIPT_PENDING),
                        }));
                    }
                    if tag_index.is_some_and(failed) {
                        return Ok(Err(Cancelled::Stale));
                    }
                }
                Err(classify("TransactWriteItems", err))
            }
        }
    }
}

enum Cancelled {
    Duplicate { pending: bool },
    Stale,
}

#[async_trait]
impl Store for DynamoStore {
    async fn record_push(&self, write: &PushWrite) -> Result<PushOutcome, StoreError> {
        match self.try_push(write).await? {
            Ok(()) => Ok(PushOutcome::Applied),
            Err(Cancelled::Duplicate { pending }) => Ok(PushOutcome::Duplicate { pending }),
            Err(Cancelled::Stale) => match self.try_push(&write.as_stale()).await? {
                Ok(()) => Ok(PushOutcome::Stale),
                Err(Cancelled::Duplicate { pending }) => Ok(PushOutcome::Duplicate { pending }),
                Err(Cancelled::Stale) => Err(StoreError::Corrupt(
                    "a write without a tag change failed its tag condition".into(),
                )),
            },
        }
    }

    async fn record_deployments(&self, w: &DeploymentsWrite) -> Result<(), StoreError> {
        let mut items = Vec::new();
        for (key, item) in &w.deployments {
            let mut attrs = key_attrs(key);
            attrs.extend(item.iter().map(|(k, v)| (k.clone(), to_attr(v))));
            items.push(put(Put::builder()
                .table_name(&self.table)
                .set_item(Some(attrs)))?);
        }
        for svc in &w.services {
            let mut u = UpdateExpr::default();
            for (k, v) in &svc.item {
                u.set(k, to_attr(v));
            }
            u.add("version", n(1));
            items.push(u.into_update(&self.table, &svc.key, None)?);
        }
        let mut receipt = UpdateExpr::default();
        receipt.set("status", s(RECEIPT_DONE));
        receipt.set("deployed_at", s(w.at.as_str()));
        let receipt = receipt.into_update(&self.table, &w.receipt_key, None)?;

        // Large fan-outs are written in chunks; the receipt goes last, so it only says `done`
        // once every deployment is on record.
        let mut chunks: Vec<Vec<TransactWriteItem>> = items
            .chunks(MAX_TRANSACTION_ITEMS - 1)
            .map(<[TransactWriteItem]>::to_vec)
            .collect();
        match chunks.last_mut() {
            Some(last) => last.push(receipt),
            None => chunks.push(vec![receipt]),
        }
        for chunk in chunks {
            self.client
                .transact_write_items()
                .set_transact_items(Some(chunk))
                .send()
                .await
                .map_err(|e| classify("TransactWriteItems", e))?;
        }
        Ok(())
    }

    async fn dump(&self) -> Result<Vec<Map<String, Value>>, StoreError> {
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
            for item in page.items() {
                let mut m: Vec<_> = item.iter().collect();
                m.sort_by(|a, b| a.0.cmp(b.0));
                out.push(
                    m.into_iter()
                        .map(|(k, v)| (k.clone(), from_attr(v)))
                        .collect(),
                );
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        out.sort_by(|a: &Map<String, Value>, b| {
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
