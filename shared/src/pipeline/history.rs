//! Versions per stage: for each repository and stage, which tag and digest were rolled out when,
//! and to which services. Written with an event's deployments; read by `imagehook history` and
//! GET /images/{repository}.

use serde_json::{Map, Value, json};

use crate::model::deployment::Deployment;
use crate::model::event::{ImageEvent, Timestamp};
use crate::model::records::HistoryRecord;
use crate::ports::store::keys;
use crate::ports::store::ops::Op;
use crate::ports::store::{Key, StoreError, StoreRead};

/// One history item per stage the event's deployments name, listing every service of that
/// stage with its outcome. Re-recording the same event (a retried delivery completing its
/// deployments) writes the same keys: no duplicates.
pub fn history_ops(event: &ImageEvent, deployments: &[Deployment], at: &Timestamp) -> Vec<Op> {
    let img = &event.image;
    let what = img
        .digest
        .as_ref()
        .map_or_else(|| img.to_string(), ToString::to_string);
    let mut stages: Vec<&str> = deployments
        .iter()
        .filter_map(|d| d.stage.as_deref())
        .collect();
    stages.sort_unstable();
    stages.dedup();
    stages
        .into_iter()
        .map(|stage| {
            let services: Vec<Value> = deployments
                .iter()
                .filter(|d| d.stage.as_deref() == Some(stage))
                .map(|d| {
                    let mut s = json!({"cluster": d.cluster, "service": d.service,
                                       "outcome": d.outcome.as_str(), "at": at.as_str()});
                    if let Some(td) = &d.task_definition {
                        s["task_definition"] = json!(td);
                    }
                    if let Some(r) = &d.reason {
                        s["reason"] = json!(r);
                    }
                    s
                })
                .collect();
            let mut item = Map::new();
            item.insert("type".into(), json!("history"));
            item.insert("stage".into(), json!(stage));
            item.insert("registry".into(), json!(img.registry.as_str()));
            item.insert("repository".into(), json!(img.repository.as_str()));
            if let Some(t) = &img.tag {
                item.insert("tag".into(), json!(t.as_str()));
            }
            if let Some(d) = &img.digest {
                item.insert("digest".into(), json!(d.as_str()));
            }
            item.insert("pushed_at".into(), json!(event.occurred_at.as_str()));
            item.insert(
                "event".into(),
                json!(format!("{}#{}", event.provider, event.id)),
            );
            item.insert("services".into(), Value::Array(services));
            Op::Put {
                key: Key::new(
                    keys::image_pk(img.registry.as_str(), img.repository.as_str()),
                    keys::history_sk(stage, event.occurred_at.as_str(), &what),
                ),
                item,
                cond: None,
            }
        })
        .collect()
}

/// A repository's history, newest first, for one stage or all of them.
pub async fn history(
    store: &dyn StoreRead,
    registry: &str,
    repository: &str,
    stage: Option<&str>,
) -> Result<Vec<HistoryRecord>, StoreError> {
    let mut records: Vec<HistoryRecord> = store
        .query(
            &keys::image_pk(registry, repository),
            &keys::history_prefix(stage),
        )
        .await?
        .into_iter()
        .filter_map(|r| r.history())
        .collect();
    records.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at));
    Ok(records)
}

/// The repository's digests as the API shows them: tags, status, and where each has arrived.
pub async fn images(
    store: &dyn StoreRead,
    registry: &str,
    repository: &str,
) -> Result<Vec<Value>, StoreError> {
    let records = store
        .query(&keys::image_pk(registry, repository), "D#")
        .await?;
    Ok(records
        .into_iter()
        .filter_map(|r| r.image())
        .map(|i| {
            let mut out = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    out.insert(k.into(), v);
                }
            };
            put("digest", i.digest.map(Value::from));
            put("tags", (!i.tags.is_empty()).then(|| json!(i.tags)));
            put("status", i.status.map(|s| json!(s.as_str())));
            put("last_pushed_at", i.last_pushed_at.map(Value::from));
            put("regions", (!i.regions.is_empty()).then(|| json!(i.regions)));
            put("region_arrivals", i.region_arrivals);
            put("replication_failures", i.replication_failures);
            Value::Object(out)
        })
        .collect())
}

/// The history as the API and the CLI print it: stages, each newest first.
pub fn by_stage(records: Vec<HistoryRecord>) -> Value {
    let mut stages = Map::new();
    for record in records {
        let entry = serde_json::to_value(&record).unwrap_or_default();
        if let Value::Array(list) = stages
            .entry(record.stage)
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(entry);
        }
    }
    Value::Object(stages)
}
