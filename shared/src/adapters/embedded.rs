//! The embedded store: the table inside this process, with conditions evaluated the way
//! DynamoDB evaluates them, and journaled to a file so that later runs of the local binary see
//! earlier records. Each committed transaction appends one JSON line with the new state of every
//! item it touched (`null` for a deleted one); opening the store replays and compacts the journal.
//!
//! Items are kept as their JSON text and parsed when read. A journaled store keeps that text
//! only in the journal: memory holds each key with where its latest text sits in the file, and
//! reading one is a positioned read. Holding the text as well cost a long `imagehook serve` run
//! 2.7 KB of fresh memory per push, and first-touch page faults on that memory were an eighth
//! of the server's CPU. Items that name a running image stay in memory too: the
//! delete warning scans for them, and there are few (one per followed service). The text leaves
//! out `PK` and `SK`, which the map's key and the journal line already hold; reading puts them
//! back.
//!
//! Over 500 lines in one file because the condition evaluator, the journal and the port share
//! the in-memory map's invariants; a quarter of it is its tests.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Value, json};

use super::records::{decode as record_of, services, texts};
use crate::ports::store::keys::{PK, SK};
use crate::ports::store::ops::{Cancelled, Cond, Op, Update};
use crate::ports::store::{
    Item, Key, Record, ServiceRecord, StoreDump, StoreError, StoreRead, StoreWrite,
};

const JOURNAL: &str = "store.jsonl";

type Items = BTreeMap<Key, Text>;

/// Where an item's text is.
#[derive(Debug)]
enum Text {
    Held(Box<RawValue>),
    /// `len` bytes at offset `at` of the journal.
    Journal {
        at: u64,
        len: usize,
    },
}

/// The attribute `running` scans for, as it appears in an item's text.
const RUNNING_ATTR: &str = "\"running\":";

impl Text {
    /// Where `raw` will be kept once it sits at `at` in the journal (`None`: no journal).
    fn of(raw: Box<RawValue>, at: Option<u64>) -> Self {
        match at {
            Some(at) if !raw.get().contains(RUNNING_ATTR) => Self::Journal {
                at,
                len: raw.get().len(),
            },
            _ => Self::Held(raw),
        }
    }
}

/// An in-process store, optionally persisted under a directory (the local binary's
/// `--state-dir`, `.imagehook/` by default).
#[derive(Debug)]
pub struct EmbeddedStore {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    items: Items,
    journal: Option<Journal>,
}

/// The journal file, opened to append and to read items back.
#[derive(Debug)]
struct Journal {
    file: File,
    /// Its length: where the next line starts.
    len: u64,
}

impl Journal {
    fn read(&self, at: u64, len: usize) -> Result<String, StoreError> {
        let mut buf = vec![0; len];
        read_exact_at(&self.file, &mut buf, at)?;
        String::from_utf8(buf)
            .map_err(|_| StoreError::Corrupt(format!("journal bytes {at}..+{len} are not UTF-8")))
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut at: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, at)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                at += n as u64;
            }
        }
    }
    Ok(())
}

/// One journal entry: an item's key and its new state (`None`: deleted).
type Change = (Key, Option<Box<RawValue>>);

fn decode(key: &Key, text: &str) -> Result<Item, StoreError> {
    let mut item: Item =
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    item.insert(PK.into(), Value::String(key.pk.clone()));
    item.insert(SK.into(), Value::String(key.sk.clone()));
    Ok(item)
}

impl EmbeddedStore {
    /// A store that lives only as long as the process.
    pub fn in_memory() -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: Items::new(),
                journal: None,
            }),
        }
    }

    /// An in-memory store holding `items` (each with its `PK` and `SK`): a scratch copy of
    /// another store, for `imagehook simulate`.
    pub fn seeded(items: Vec<Item>) -> Result<Self, StoreError> {
        let mut map = Items::new();
        for item in items {
            let key = |a: &str| {
                item.get(a)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| StoreError::Corrupt(format!("an item without {a}")))
            };
            let k = Key {
                pk: key(PK)?,
                sk: key(SK)?,
            };
            map.insert(k, Text::Held(encode_put(&item)?));
        }
        Ok(Self {
            inner: Mutex::new(Inner {
                items: map,
                journal: None,
            }),
        })
    }

    /// Opens (or creates) the store kept in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir)?;
        let path = dir.join(JOURNAL);
        let mut items = BTreeMap::new();
        if path.exists() {
            for (n, line) in BufReader::new(File::open(&path)?).lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let corrupt = |what: &str| {
                    StoreError::Corrupt(format!("{}:{}: {what}", path.display(), n + 1))
                };
                let batch: Vec<(String, String, Option<Box<RawValue>>)> =
                    serde_json::from_str(&line).map_err(|e| corrupt(&e.to_string()))?;
                for (pk, sk, item) in batch {
                    let key = Key { pk, sk };
                    match item {
                        Some(item) => items.insert(key, item),
                        None => items.remove(&key),
                    };
                }
            }
        }
        let (items, len) = compact(&path, items)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        Ok(Self {
            inner: Mutex::new(Inner {
                items,
                journal: Some(Journal { file, len }),
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

/// Rewrites the journal as one line per item, atomically (write, then rename). Returns the
/// items as kept from then on, and the journal's length.
fn compact(path: &Path, items: BTreeMap<Key, Box<RawValue>>) -> Result<(Items, u64), StoreError> {
    let tmp: PathBuf = path.with_extension("jsonl.tmp");
    let mut kept = Items::new();
    let mut len = 0;
    {
        let mut w = BufWriter::new(File::create(&tmp)?);
        let mut line = Vec::new();
        for (k, raw) in items {
            line.clear();
            let at = append_line(&mut line, [(&k, Some(&*raw))])?[0];
            w.write_all(&line)?;
            kept.insert(k, Text::of(raw, at.map(|a| len + a)));
            len += line.len() as u64;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    Ok((kept, len))
}

/// Appends one journal line, `[[pk, sk, item or null], ...]`, to `line`; returns where in
/// `line` each item's text starts.
fn append_line<'a>(
    line: &mut Vec<u8>,
    changes: impl IntoIterator<Item = (&'a Key, Option<&'a RawValue>)>,
) -> Result<Vec<Option<u64>>, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    let mut starts = Vec::new();
    line.push(b'[');
    for (i, (k, raw)) in changes.into_iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.push(b'[');
        serde_json::to_writer(&mut *line, &k.pk).map_err(corrupt)?;
        line.push(b',');
        serde_json::to_writer(&mut *line, &k.sk).map_err(corrupt)?;
        line.push(b',');
        match raw {
            Some(raw) => {
                starts.push(Some(line.len() as u64));
                line.extend_from_slice(raw.get().as_bytes());
            }
            None => {
                starts.push(None);
                line.extend_from_slice(b"null");
            }
        }
        line.push(b']');
    }
    line.extend_from_slice(b"]\n");
    Ok(starts)
}

impl Inner {
    fn decode(&self, key: &Key, text: &Text) -> Result<Item, StoreError> {
        match text {
            Text::Held(raw) => decode(key, raw.get()),
            Text::Journal { at, len } => match &self.journal {
                Some(j) => decode(key, &j.read(*at, *len)?),
                None => Err(StoreError::Corrupt(
                    "an item kept in a missing journal".into(),
                )),
            },
        }
    }

    fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.items.get(key).map(|t| self.decode(key, t)).transpose()
    }

    /// Journal first, then memory: a failed write to disk leaves memory unchanged too.
    fn commit(&mut self, changes: Vec<Change>) -> Result<(), StoreError> {
        let starts = match &mut self.journal {
            None => vec![None; changes.len()],
            Some(j) => {
                let mut line = Vec::with_capacity(2048);
                let at = append_line(&mut line, changes.iter().map(|(k, i)| (k, i.as_deref())))?;
                // One write per transaction. If it fails part-way, the journal is cut back to
                // its last whole line, so that the next transaction's offsets (and the next
                // open's replay) stay right.
                if let Err(e) = j.file.write_all(&line) {
                    let _ = j.file.set_len(j.len);
                    return Err(e.into());
                }
                let base = j.len;
                j.len += line.len() as u64;
                at.into_iter().map(|a| a.map(|a| base + a)).collect()
            }
        };
        for ((k, item), at) in changes.into_iter().zip(starts) {
            match item {
                Some(raw) => self.items.insert(k, Text::of(raw, at)),
                None => self.items.remove(&k),
            };
        }
        Ok(())
    }
}

fn holds(cond: &Cond, item: Option<&Item>) -> bool {
    let attr = |a: &str| item.and_then(|i| i.get(a));
    match cond {
        Cond::ItemAbsent => item.is_none(),
        Cond::ItemPresent => item.is_some(),
        Cond::Missing(a) => attr(a).is_none(),
        Cond::Present(a) => attr(a).is_some(),
        Cond::Eq(a, v) => attr(a).is_some_and(|x| x == v),
        Cond::Ne(a, v) => attr(a).is_some_and(|x| x != v),
        Cond::Le(a, v) => attr(a).is_some_and(|x| compare(x, v).is_some_and(Ordering::is_le)),
        Cond::Lt(a, v) => attr(a).is_some_and(|x| compare(x, v).is_some_and(Ordering::is_lt)),
        Cond::And(cs) => cs.iter().all(|c| holds(c, item)),
        Cond::Or(cs) => cs.iter().any(|c| holds(c, item)),
    }
}

/// DynamoDB compares strings by bytes and numbers by value; other pairs do not compare.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        _ => None,
    }
}

/// An item's attributes while an update is worked out: the old item's values are borrowed and
/// only what the update writes is new, so nothing is copied just to be encoded and dropped.
type Draft<'a> = BTreeMap<&'a str, Cow<'a, Value>>;

/// An item as the journal and memory hold it: its attributes without the key (a `PK` or `SK`
/// among them is skipped).
struct Attrs<I>(I);

impl<'a, I> Serialize for Attrs<I>
where
    I: Iterator<Item = (&'a str, &'a Value)> + Clone,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (a, v) in self.0.clone() {
            if a != PK && a != SK {
                m.serialize_entry(a, v)?;
            }
        }
        m.end()
    }
}

fn encode<'a>(
    attrs: impl Iterator<Item = (&'a str, &'a Value)> + Clone,
) -> Result<Box<RawValue>, StoreError> {
    to_raw_value(&Attrs(attrs)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode_put(item: &Item) -> Result<Box<RawValue>, StoreError> {
    encode(item.iter().map(|(a, v)| (a.as_str(), v)))
}

fn encode_draft(draft: &Draft<'_>) -> Result<Box<RawValue>, StoreError> {
    encode(draft.iter().map(|(a, v)| (*a, v.as_ref())))
}

/// The item after an update (without its key); every right-hand side reads `old`.
fn apply<'a>(u: &'a Update, old: Option<&'a Item>) -> Draft<'a> {
    let before = |a: &str| old.and_then(|o| o.get(a));
    let mut item: Draft<'a> = old
        .map(|o| {
            o.iter()
                .map(|(a, v)| (a.as_str(), Cow::Borrowed(v)))
                .collect()
        })
        .unwrap_or_default();
    for (a, v) in &u.set {
        item.insert(a, Cow::Borrowed(v));
    }
    for (a, v) in &u.set_if_absent {
        item.insert(a, Cow::Borrowed(before(a).unwrap_or(v)));
    }
    for (to, from, default) in &u.copy {
        item.insert(to, Cow::Borrowed(before(from).unwrap_or(default)));
    }
    for (a, n) in &u.add {
        let cur = before(a).and_then(Value::as_i64).unwrap_or(0);
        item.insert(a, Cow::Owned(json!(cur + n)));
    }
    for (a, v) in &u.add_to_set {
        let mut set = texts(item.get(a).map(AsRef::as_ref));
        if !set.contains(v) {
            set.push(v.clone());
            set.sort();
        }
        item.insert(a, Cow::Owned(json!(set)));
    }
    for (a, v) in &u.delete_from_set {
        let mut set = texts(item.get(a).map(AsRef::as_ref));
        set.retain(|x| x != v);
        // DynamoDB has no empty sets: removing the last element removes the attribute.
        if set.is_empty() {
            item.remove(a);
        } else {
            item.insert(a, Cow::Owned(json!(set)));
        }
    }
    for (a, v) in &u.append {
        let mut list = before(a)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        list.push(v.clone());
        item.insert(a, Cow::Owned(Value::Array(list)));
    }
    for a in &u.remove {
        item.remove(a);
    }
    item
}

#[async_trait]
impl StoreWrite for EmbeddedStore {
    async fn transact(&self, ops: Vec<Op>) -> Result<Result<(), Cancelled>, StoreError> {
        self.with(|inner| {
            let olds = ops
                .iter()
                .map(|op| inner.get(op.key()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut failed = Vec::new();
            for (i, (op, old)) in ops.iter().zip(&olds).enumerate() {
                let cond = match op {
                    Op::Put { cond, .. } | Op::Delete { cond, .. } => cond.as_ref(),
                    Op::Update(u) => u.cond.as_ref(),
                };
                if cond.is_some_and(|c| !holds(c, old.as_ref())) {
                    failed.push((i, old.as_ref().map(record_of).transpose()?));
                }
            }
            if !failed.is_empty() {
                return Ok(Err(Cancelled { failed }));
            }
            let changes = ops
                .into_iter()
                .zip(&olds)
                .map(|(op, old)| {
                    Ok(match op {
                        Op::Put { key, item, .. } => {
                            let raw = encode_put(&item)?;
                            (key, Some(raw))
                        }
                        Op::Update(u) => {
                            let raw = encode_draft(&apply(&u, old.as_ref()))?;
                            (u.key, Some(raw))
                        }
                        Op::Delete { key, .. } => (key, None),
                    })
                })
                .collect::<Result<Vec<Change>, StoreError>>()?;
            inner.commit(changes)?;
            Ok(Ok(()))
        })
    }
}

#[async_trait]
impl StoreRead for EmbeddedStore {
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        self.with(|inner| inner.get(key)?.as_ref().map(record_of).transpose())
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Record>, StoreError> {
        self.with(|inner| {
            inner
                .items
                .range(Key::new(pk, sk_prefix)..)
                .take_while(|(k, _)| k.pk == pk && k.sk.starts_with(sk_prefix))
                .map(|(k, t)| record_of(&inner.decode(k, t)?))
                .collect()
        })
    }

    async fn running(&self, image: &str) -> Result<Vec<ServiceRecord>, StoreError> {
        // A scan of the items held in memory, which include every item with a `running`
        // attribute, as DynamoDB's sparse GSI holds exactly those; only delete warnings ask.
        let needle =
            serde_json::to_string(image).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let items = self.with(|inner| {
            inner
                .items
                .iter()
                .filter_map(|(k, t)| match t {
                    Text::Held(raw) if raw.get().contains(&needle) => Some((k, raw.get())),
                    _ => None,
                })
                .map(|(k, text)| decode(k, text))
                .filter(|i| {
                    i.as_ref().map_or(true, |i| {
                        i.get("running").and_then(Value::as_str) == Some(image)
                    })
                })
                .collect::<Result<Vec<Item>, StoreError>>()
        })?;
        services(&items)
    }
}

#[async_trait]
impl StoreDump for EmbeddedStore {
    async fn dump(&self) -> Result<Vec<Item>, StoreError> {
        self.with(|inner| {
            inner
                .items
                .iter()
                .map(|(k, t)| inner.decode(k, t))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_dynamodb_semantics() {
        let item: Item =
            serde_json::from_value(json!({"PK": "a", "SK": "b", "t": "2026", "n": 3})).unwrap();
        assert!(holds(&Cond::ItemPresent, Some(&item)));
        assert!(holds(&Cond::ItemAbsent, None));
        assert!(holds(&Cond::Le("t", json!("2026")), Some(&item)));
        assert!(!holds(&Cond::Lt("t", json!("2026")), Some(&item)));
        // A comparison with a missing attribute is false, even `<>`.
        assert!(!holds(&Cond::Ne("missing", json!("x")), Some(&item)));
        assert!(!holds(&Cond::Le("missing", json!("x")), Some(&item)));
        assert!(holds(
            &Cond::Or(vec![Cond::Missing("missing"), Cond::Eq("n", json!(4))]),
            Some(&item)
        ));
        assert!(!holds(
            &Cond::And(vec![Cond::Present("t"), Cond::Eq("n", json!(4))]),
            Some(&item)
        ));
    }

    #[test]
    fn updates_read_the_old_item() {
        let old: Item =
            serde_json::from_value(json!({"PK": "p", "SK": "s", "digest": "a", "tags": ["x"]}))
                .unwrap();
        let u = Update::new(Key::new("p", "s"))
            .copy("previous_digest", "digest", "")
            .set("digest", "b")
            .add("version", 1)
            .delete_from_set("tags", "x")
            .append("history", json!({"change": "moved"}));
        let new = decode(&u.key, encode_draft(&apply(&u, Some(&old))).unwrap().get()).unwrap();
        assert_eq!(new["PK"], "p");
        assert_eq!(new["previous_digest"], "a");
        assert_eq!(new["digest"], "b");
        assert_eq!(new["version"], 1);
        assert!(new.get("tags").is_none());
        assert_eq!(new["history"], json!([{"change": "moved"}]));
    }

    #[tokio::test]
    async fn journal_lines_hold_the_key_once_and_older_lines_still_load() {
        let dir = tempfile::tempdir().unwrap();
        // A line as earlier versions wrote it: the key inside the item as well.
        fs::write(
            dir.path().join(JOURNAL),
            "[[\"P\",\"S\",{\"PK\":\"P\",\"SK\":\"S\",\"a\":1}]]\n",
        )
        .unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let old = read(&store, "P", "S").await;
        assert_eq!(old, Some(json!({"PK": "P", "SK": "S", "a": 1})));

        let item: Item = serde_json::from_value(json!({"b": 2})).unwrap();
        let put = Op::Put {
            key: Key::new("P2", "S2"),
            item,
            cond: Some(Cond::ItemAbsent),
        };
        store.transact(vec![put]).await.unwrap().unwrap();
        let journal = fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        assert_eq!(journal.lines().last(), Some(r#"[["P2","S2",{"b":2}]]"#));

        drop(store);
        let reopened = EmbeddedStore::open(dir.path()).unwrap();
        let new = read(&reopened, "P2", "S2").await;
        assert_eq!(new, Some(json!({"PK": "P2", "SK": "S2", "b": 2})));
        let all = reopened.dump().await.unwrap();
        assert_eq!(all.len(), 2);
    }

    fn put(pk: &str, sk: &str, item: Value) -> Op {
        Op::Put {
            key: Key::new(pk, sk),
            item: serde_json::from_value(item).unwrap(),
            cond: None,
        }
    }

    /// An item as stored, below the typed read port.
    async fn read(store: &EmbeddedStore, pk: &str, sk: &str) -> Option<Value> {
        store
            .with(|inner| inner.get(&Key::new(pk, sk)))
            .unwrap()
            .map(Value::Object)
    }

    /// A store journaled in a new directory, after one transaction of `ops`.
    async fn journaled(ops: Vec<Op>) -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.transact(ops).await.unwrap().unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn items_kept_in_the_journal_read_back_after_later_writes_and_reopening() {
        let (dir, store) = journaled(vec![
            put("p", "a", json!({"n": 1, "s": "quote \" and é"})),
            put("p", "b", json!({"n": 2})),
        ])
        .await;
        let bump = Update::new(Key::new("p", "a")).add("n", 10);
        store
            .transact(vec![Op::Update(bump), put("q", "c", json!({"n": 3}))])
            .await
            .unwrap()
            .unwrap();
        let gone = Op::Delete {
            key: Key::new("p", "b"),
            cond: Some(Cond::ItemPresent),
        };
        store.transact(vec![gone]).await.unwrap().unwrap();

        let expected = [
            (
                "p",
                "a",
                Some(json!({"PK": "p", "SK": "a", "n": 11, "s": "quote \" and é"})),
            ),
            ("p", "b", None),
            ("q", "c", Some(json!({"PK": "q", "SK": "c", "n": 3}))),
        ];
        for (pk, sk, want) in &expected {
            assert_eq!(read(&store, pk, sk).await, *want, "{pk}/{sk}");
        }
        assert_eq!(store.query("p", "").await.unwrap().len(), 1);
        drop(store);
        let reopened = EmbeddedStore::open(dir.path()).unwrap();
        for (pk, sk, want) in &expected {
            assert_eq!(read(&reopened, pk, sk).await, *want, "{pk}/{sk} reopened");
        }
        assert_eq!(reopened.dump().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn running_finds_journaled_services_before_and_after_reopening() {
        let (dir, store) = journaled(vec![
            put(
                "SVC#c/web",
                "CURRENT",
                json!({"type": "service", "cluster": "c", "service": "web", "running": "r/app@sha256:1"}),
            ),
            put(
                "SVC#c/api",
                "CURRENT",
                json!({"type": "service", "cluster": "c", "service": "api", "running": "r/app@sha256:2"}),
            ),
            put("IMG#r/app", "D#sha256:1", json!({"digest": "sha256:1"})),
        ])
        .await;
        let found = store.running("r/app@sha256:1").await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].service, "web");
        drop(store);
        let reopened = EmbeddedStore::open(dir.path()).unwrap();
        let found = reopened.running("r/app@sha256:2").await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].service, "api");
        assert!(reopened.running("r/app@sha256:3").await.unwrap().is_empty());
    }
}
