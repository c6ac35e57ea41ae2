//! The embedded store: the same items and the same conditional semantics as the DynamoDB table,
//! held in memory and journaled to a file so that later runs of the local binary see earlier
//! records. Each committed write appends one JSON line with the full new state of every item it
//! touched; opening the store replays the journal and compacts it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::keys::{PK, SK};
use super::{
    DeploymentsWrite, Key, PushOutcome, PushWrite, RECEIPT_DONE, RECEIPT_PENDING, Store, StoreError,
};

const JOURNAL: &str = "store.jsonl";

type Items = BTreeMap<Key, Map<String, Value>>;

/// An in-process store, optionally persisted under a directory (the local binary's
/// `--state-dir`, `.imagehook/` by default).
#[derive(Debug)]
pub struct EmbeddedStore {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    items: Items,
    journal: Option<BufWriter<File>>,
}

impl EmbeddedStore {
    /// A store that lives only as long as the process (tests, `simulate`).
    pub fn in_memory() -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: Items::new(),
                journal: None,
            }),
        }
    }

    /// Opens (or creates) the store kept in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir)?;
        let path = dir.join(JOURNAL);
        let mut items = Items::new();
        if path.exists() {
            for (n, line) in BufReader::new(File::open(&path)?).lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let batch: Vec<Map<String, Value>> = serde_json::from_str(&line).map_err(|e| {
                    StoreError::Corrupt(format!("{}:{}: {e}", path.display(), n + 1))
                })?;
                for item in batch {
                    let key = key_of(&item).ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "{}:{}: item without PK/SK",
                            path.display(),
                            n + 1
                        ))
                    })?;
                    items.insert(key, item);
                }
            }
        }
        compact(&path, &items)?;
        let journal = OpenOptions::new().append(true).create(true).open(&path)?;
        Ok(Self {
            inner: Mutex::new(Inner {
                items,
                journal: Some(BufWriter::new(journal)),
            }),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| StoreError::Corrupt("embedded store lock poisoned".into()))?;
        f(&mut inner)
    }
}

/// Rewrites the journal as one line per item, atomically (write, then rename).
fn compact(path: &Path, items: &Items) -> Result<(), StoreError> {
    let tmp: PathBuf = path.with_extension("jsonl.tmp");
    {
        let mut w = BufWriter::new(File::create(&tmp)?);
        for item in items.values() {
            serde_json::to_writer(&mut w, &[item])
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            w.write_all(b"\n")?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    Ok(())
}

fn key_of(item: &Map<String, Value>) -> Option<Key> {
    Some(Key {
        pk: item.get(PK)?.as_str()?.to_owned(),
        sk: item.get(SK)?.as_str()?.to_owned(),
    })
}

impl Inner {
    /// Commits a set of new item states: journal first, then memory, so that a failed write to
    /// disk leaves the in-memory state unchanged too (nothing half-applied).
    fn commit(&mut self, changed: Vec<(Key, Map<String, Value>)>) -> Result<(), StoreError> {
        if let Some(j) = &mut self.journal {
            let batch: Vec<&Map<String, Value>> = changed.iter().map(|(_, i)| i).collect();
            serde_json::to_writer(&mut *j, &batch)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            j.write_all(b"\n")?;
            j.flush()?;
        }
        for (k, v) in changed {
            self.items.insert(k, v);
        }
        Ok(())
    }

    /// The current state of an item, or a new one with just its key (DynamoDB's UpdateItem
    /// creates missing items the same way).
    fn current(&self, key: &Key) -> Map<String, Value> {
        self.items.get(key).cloned().unwrap_or_else(|| {
            let mut m = Map::new();
            m.insert(PK.into(), json!(key.pk));
            m.insert(SK.into(), json!(key.sk));
            m
        })
    }

    fn push_changes(&self, w: &PushWrite) -> Vec<(Key, Map<String, Value>)> {
        let mut changed = Vec::with_capacity(3);
        let mut receipt = self.current(&w.receipt_key);
        receipt.extend(w.receipt.clone());
        changed.push((w.receipt_key.clone(), receipt));

        if let Some(img) = &w.image {
            let mut item = self.current(&img.key);
            item.insert("type".into(), json!("image"));
            item.insert("registry".into(), json!(img.registry));
            item.insert("repository".into(), json!(img.repository));
            item.insert("digest".into(), json!(img.digest));
            item.entry("first_seen")
                .or_insert(json!(img.pushed_at.as_str()));
            item.entry("status").or_insert(json!("active"));
            if img.move_last_pushed {
                item.insert("last_pushed_at".into(), json!(img.pushed_at.as_str()));
            }
            if let Some(mt) = &img.media_type {
                item.insert("media_type".into(), json!(mt));
            }
            if let Some(size) = img.size {
                item.insert("size".into(), json!(size));
            }
            increment(&mut item, "push_count");
            increment(&mut item, "version");
            if let Some(tag) = &img.tag {
                let mut tags: Vec<String> = item
                    .get("tags")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                    tags.sort();
                }
                item.insert("tags".into(), json!(tags));
            }
            changed.push((img.key.clone(), item));
        }

        if let Some(tag) = &w.tag {
            let mut item = self.current(&tag.key);
            let previous = item.get("digest").cloned().unwrap_or(json!(""));
            item.insert("type".into(), json!("tag"));
            item.insert("registry".into(), json!(tag.registry));
            item.insert("repository".into(), json!(tag.repository));
            item.insert("tag".into(), json!(tag.tag));
            item.insert("updated_at".into(), json!(tag.updated_at.as_str()));
            item.insert("event_id".into(), json!(tag.event_id));
            item.insert("previous_digest".into(), previous);
            match &tag.digest {
                Some(d) => {
                    item.insert("digest".into(), json!(d));
                    item.remove("unpinned");
                }
                None => {
                    item.insert("unpinned".into(), json!(true));
                    item.remove("digest");
                }
            }
            increment(&mut item, "version");
            changed.push((tag.key.clone(), item));
        }
        changed
    }

    fn tag_is_newer(&self, w: &PushWrite) -> bool {
        w.tag.as_ref().is_some_and(|t| {
            self.items
                .get(&t.key)
                .and_then(|i| i.get("updated_at"))
                .and_then(Value::as_str)
                .is_some_and(|current| current > t.updated_at.as_str())
        })
    }
}

fn increment(item: &mut Map<String, Value>, field: &str) {
    let n = item.get(field).and_then(Value::as_u64).unwrap_or(0);
    item.insert(field.into(), json!(n + 1));
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn record_push(&self, write: &PushWrite) -> Result<PushOutcome, StoreError> {
        self.with(|inner| {
            if let Some(existing) = inner.items.get(&write.receipt_key) {
                let pending =
                    existing.get("status").and_then(Value::as_str) == Some(RECEIPT_PENDING);
                return Ok(PushOutcome::Duplicate { pending });
            }
            if inner.tag_is_newer(write) {
                let changes = inner.push_changes(&write.as_stale());
                inner.commit(changes)?;
                return Ok(PushOutcome::Stale);
            }
            let changes = inner.push_changes(write);
            inner.commit(changes)?;
            Ok(PushOutcome::Applied)
        })
    }

    async fn record_deployments(&self, w: &DeploymentsWrite) -> Result<(), StoreError> {
        self.with(|inner| {
            let mut changed = Vec::new();
            for (key, item) in &w.deployments {
                let mut full = item.clone();
                full.insert(PK.into(), json!(key.pk));
                full.insert(SK.into(), json!(key.sk));
                changed.push((key.clone(), full));
            }
            for svc in &w.services {
                let mut item = inner.current(&svc.key);
                item.extend(svc.item.clone());
                increment(&mut item, "version");
                changed.push((svc.key.clone(), item));
            }
            let mut receipt = inner.current(&w.receipt_key);
            receipt.insert("status".into(), json!(RECEIPT_DONE));
            receipt.insert("deployed_at".into(), json!(w.at.as_str()));
            changed.push((w.receipt_key.clone(), receipt));
            inner.commit(changed)
        })
    }

    async fn dump(&self) -> Result<Vec<Map<String, Value>>, StoreError> {
        self.with(|inner| Ok(inner.items.values().cloned().collect()))
    }
}
