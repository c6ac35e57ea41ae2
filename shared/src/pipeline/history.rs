//! Versions per stage: for each repository and stage, which tag and digest were rolled out when,
//! and to which services. Written with an event's deployments; read by `imagehook history` and
//! GET /images/{repository}.

use serde_json::{Map, Value, json};

use crate::model::deployment::Deployment;
use crate::model::event::{ImageEvent, Timestamp};
use crate::ports::store::keys;
use crate::ports::store::ops::Op;
use crate::ports::store::{Item, Key, Store, StoreError};

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
    store: &dyn Store,
    registry: &str,
    repository: &str,
    stage: Option<&str>,
) -> Result<Vec<Item>, StoreError> {
    let mut items = store
        .query(
            &keys::image_pk(registry, repository),
            &keys::history_prefix(stage),
        )
        .await?;
    items.sort_by(|a, b| {
        let at = |i: &Item| {
            i.get("pushed_at")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        at(b).cmp(&at(a))
    });
    Ok(items)
}

/// The repository's digests as the API shows them: tags, status, and where each has arrived.
pub async fn images(
    store: &dyn Store,
    registry: &str,
    repository: &str,
) -> Result<Vec<Value>, StoreError> {
    let items = store
        .query(&keys::image_pk(registry, repository), "D#")
        .await?;
    Ok(items
        .into_iter()
        .map(|i| {
            let mut out = Map::new();
            for k in [
                "digest",
                "tags",
                "status",
                "last_pushed_at",
                "regions",
                "region_arrivals",
                "replication_failures",
            ] {
                if let Some(v) = i.get(k) {
                    out.insert(k.into(), v.clone());
                }
            }
            Value::Object(out)
        })
        .collect())
}

/// The history as the API and the CLI print it: stages, each newest first.
pub fn by_stage(items: Vec<Item>) -> Value {
    let mut stages = Map::new();
    for mut item in items {
        let stage = item
            .get("stage")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for k in [
            keys::PK,
            keys::SK,
            "type",
            "stage",
            "registry",
            "repository",
        ] {
            item.remove(k);
        }
        if let Value::Array(list) = stages
            .entry(stage)
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(Value::Object(item));
        }
    }
    Value::Object(stages)
}
