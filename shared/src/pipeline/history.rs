//! Versions per stage: for each repository and stage, which tag and digest were rolled out when,
//! and to which services. Written with an event's deployments; read by `imagehook history` and
//! GET /images/{repository}.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::model::deployment::Deployment;
use crate::model::event::{ImageEvent, Timestamp};
use crate::model::records::{HistoryRecord, ImageRecord, Record, RegionRecord};
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
/// A digest's tags and regions are items of their own under it (`D#<digest>#…`), read in the same
/// query and joined with what records of earlier versions kept on the image item.
pub async fn images(
    store: &dyn StoreRead,
    registry: &str,
    repository: &str,
) -> Result<Vec<Value>, StoreError> {
    let records = store
        .query(&keys::image_pk(registry, repository), "D#")
        .await?;
    let mut images: Vec<Listed> = Vec::new();
    let mut tags: Vec<(String, String)> = Vec::new();
    let mut regions: Vec<RegionRecord> = Vec::new();
    for record in records {
        match record {
            Record::Image(i) => images.push(Listed::from(i)),
            Record::ImageTag(t) => tags.push((t.digest, t.tag)),
            Record::Region(r) => regions.push(r),
            _ => {}
        }
    }
    // A repository may hold thousands of digests: find each by a map, not a scan.
    let at: HashMap<String, usize> = images
        .iter()
        .enumerate()
        .filter_map(|(n, i)| Some((i.digest.clone()?, n)))
        .collect();
    for (digest, tag) in tags {
        if let Some(n) = at.get(&digest).copied()
            && !images[n].tags.contains(&tag)
        {
            images[n].tags.push(tag);
        }
    }
    for r in regions {
        let Some(n) = at.get(&r.digest).copied() else {
            continue;
        };
        let i = &mut images[n];
        if let Some(at) = &r.arrived_at {
            if !i.regions.contains(&r.region) {
                i.regions.push(r.region.clone());
            }
            i.arrivals
                .push(json!({"region": r.region, "at": at, "event": r.arrival_event}));
        }
        if let Some(at) = &r.failed_at {
            i.failures.push(
                json!({"region": r.region, "at": at, "event": r.failure_event,
                                   "reason": r.failure_reason, "failures": r.failures}),
            );
        }
    }
    Ok(images.into_iter().map(Listed::into_json).collect())
}

/// One digest as listed, gathered from its items.
struct Listed {
    digest: Option<String>,
    status: Option<String>,
    last_pushed_at: Option<String>,
    tags: Vec<String>,
    regions: Vec<String>,
    arrivals: Vec<Value>,
    failures: Vec<Value>,
}

impl From<ImageRecord> for Listed {
    fn from(i: ImageRecord) -> Self {
        let list = |v: Option<Value>| match v {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        Self {
            digest: i.digest,
            status: i.status.map(|s| s.as_str().to_owned()),
            last_pushed_at: i.last_pushed_at,
            tags: i.legacy_tags,
            regions: i.legacy_regions,
            arrivals: list(i.legacy_region_arrivals),
            failures: list(i.legacy_replication_failures),
        }
    }
}

impl Listed {
    fn into_json(self) -> Value {
        let mut out = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                out.insert(k.into(), v);
            }
        };
        let list = |v: Vec<Value>| (!v.is_empty()).then_some(Value::Array(v));
        put("digest", self.digest.map(Value::from));
        put("tags", (!self.tags.is_empty()).then(|| json!(self.tags)));
        put("status", self.status.map(Value::from));
        put("last_pushed_at", self.last_pushed_at.map(Value::from));
        put(
            "regions",
            (!self.regions.is_empty()).then(|| json!(self.regions)),
        );
        put("region_arrivals", list(self.arrivals));
        put("replication_failures", list(self.failures));
        Value::Object(out)
    }
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
