//! The embedded store: the table inside this process, with conditions evaluated the way
//! DynamoDB evaluates them, and journaled to a file so that later runs of the local binary see
//! earlier records. Each committed transaction appends one JSON line with the new state of every
//! item it touched (`null` for a deleted one); opening the store replays and compacts the
//! journal. One process writes a directory's store (it holds a lock on `store.lock`); others
//! may open it read-only. Nothing the store answers, a read or a refused condition included,
//! leaves it before the journal is synced past every line it depends on (`group_commit`).
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
//! the in-memory map's invariants; two fifths of it is its tests.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
use group_commit::{GroupCommit, SyncFn, fdatasync};

mod group_commit;

const JOURNAL: &str = "store.jsonl";
/// The writer's lock file, holding its process id.
const LOCK: &str = "store.lock";

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
    /// The writer's lock on its directory, released when the store is dropped.
    _lock: Option<File>,
}

#[derive(Debug)]
struct Inner {
    items: Items,
    journal: Option<Journal>,
    /// Opened to read only: every transaction is refused.
    read_only: bool,
}

/// The journal file, opened to append and to read items back.
#[derive(Debug)]
struct Journal {
    /// The file, and how far it is synced.
    sync: Arc<GroupCommit>,
    /// Its length: where the next line starts.
    len: u64,
}

impl Journal {
    fn read(&self, at: u64, len: usize) -> Result<String, StoreError> {
        let mut buf = vec![0; len];
        read_exact_at(self.sync.file(), &mut buf, at)?;
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
                read_only: false,
            }),
            _lock: None,
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
                read_only: false,
            }),
            _lock: None,
        })
    }

    /// Opens (or creates) the store kept in `dir` to read and write it. The process holds an
    /// exclusive lock on `store.lock` in `dir` for as long as the store lives: one writer per
    /// directory, since opening compacts the journal (and replaces the file) and every writer
    /// appends to it. A second writer is refused with an error naming the holder's pid; a
    /// reader (`open_read_only`) needs no lock.
    ///
    /// A last line without its newline is a write that never completed (a crash, a full disk)
    /// and was never acknowledged: it is cut off with a warning. If the compacted copy cannot
    /// be written (a full disk), the store keeps the journal as it is.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, None, fdatasync())
    }

    /// `open`, with at most `room` bytes writable for the compacted copy (`None`: no limit) and
    /// `sync` in place of fdatasync: the tests' full or failing disk.
    fn open_with(dir: &Path, room: Option<u64>, sync: SyncFn) -> Result<Self, StoreError> {
        fs::create_dir_all(dir)?;
        let lock = lock(dir)?;
        let path = dir.join(JOURNAL);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let (items, whole) = replay(&path, &file)?;
        let len = file.metadata()?.len();
        if whole < len {
            tracing::warn!(
                journal = %path.display(),
                dropped_bytes = len - whole,
                "the journal ends in an unfinished line (a write cut short, never acknowledged): \
                 cutting its {} bytes off",
                len - whole
            );
            file.set_len(whole)?;
            file.sync_all()?;
        }
        let (items, file, len) = match compact(dir, &path, &items, room) {
            Ok((starts, len)) => {
                let kept = items
                    .into_iter()
                    .zip(starts)
                    .map(|((k, raw), at)| (k, Text::of(raw, at)))
                    .collect();
                // The compacted copy is a new file: the one opened above is gone.
                let file = OpenOptions::new().read(true).append(true).open(&path)?;
                (kept, file, len)
            }
            Err(e) => {
                tracing::warn!(
                    journal = %path.display(),
                    error = %e,
                    "could not compact the journal; appending to it as it is"
                );
                // A writer that crashed may have left lines unsynced, and they are about to be
                // read from: the first sync is not left to the next transaction.
                file.sync_data()?;
                (held(items), file, whole)
            }
        };
        Ok(Self {
            inner: Mutex::new(Inner {
                items,
                journal: Some(Journal {
                    sync: GroupCommit::new(file, len, sync),
                    len,
                }),
                read_only: false,
            }),
            _lock: Some(lock),
        })
    }

    /// Opens the store kept in `dir` to read it only, as it stands now: no lock, no compaction,
    /// nothing written (an unfinished last line is skipped, not cut), and every transaction is
    /// refused. For commands that only read (`imagehook state`, `history`), so that they can
    /// run beside the writer (`imagehook serve`) without disturbing it. Later writes by another
    /// process are not seen.
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(JOURNAL);
        let items = match File::open(&path) {
            Ok(file) => {
                let (items, whole) = replay(&path, &file)?;
                let len = file.metadata()?.len();
                if whole < len {
                    tracing::debug!(
                        journal = %path.display(),
                        skipped_bytes = len - whole,
                        "skipping the journal's unfinished last line"
                    );
                }
                held(items)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Items::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            inner: Mutex::new(Inner {
                items,
                journal: None,
                read_only: true,
            }),
            _lock: None,
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

    /// `with`, then waits until the journal is synced as far as it reached when `f` returned:
    /// what `f` wrote, and every line behind what it read (a condition refused because of a
    /// record not yet synced, say), would survive a power cut before the caller hears of it.
    async fn durably<T>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (value, reached) = self.with(|inner| {
            let value = f(inner)?;
            let reached = inner.journal.as_ref().map(|j| (Arc::clone(&j.sync), j.len));
            Ok((value, reached))
        })?;
        if let Some((sync, upto)) = reached {
            sync.durable(upto).await?;
        }
        Ok(value)
    }
}

/// Takes the writer's lock on `store.lock` in `dir` and writes this process's id into it, or
/// says which process holds it. The lock is on a file of its own because compaction replaces
/// the journal: a lock on the journal would stay with the old file.
fn lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            // The holder may not have written its id yet: then it is unnamed.
            let _ = file.read_to_string(&mut pid);
            let holder = match pid.trim() {
                "" => "another process".to_owned(),
                pid => format!("process {pid}"),
            };
            return Err(StoreError::Io(std::io::Error::new(
                ErrorKind::ResourceBusy,
                format!(
                    "the state dir {} is in use by {holder} (imagehook serve?); stop it or use \
                     another --state-dir",
                    dir.display()
                ),
            )));
        }
        Err(TryLockError::Error(e)) => return Err(e.into()),
    }
    // Only to name the holder in a refusal: a full disk must not keep the store shut.
    let _ = file
        .set_len(0)
        .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()));
    Ok(file)
}

/// The items a journal holds, replayed line by line from its start, and the length of its
/// whole lines. A last line without its newline is left out: its write never completed.
fn replay(path: &Path, file: &File) -> Result<(BTreeMap<Key, Box<RawValue>>, u64), StoreError> {
    let mut items = BTreeMap::new();
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut whole = 0;
    for n in 1.. {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        whole += read as u64;
        let corrupt = |what: &str| StoreError::Corrupt(format!("{}:{n}: {what}", path.display()));
        let text = std::str::from_utf8(&line).map_err(|e| corrupt(&e.to_string()))?;
        if text.trim().is_empty() {
            continue;
        }
        let batch: Vec<(String, String, Option<Box<RawValue>>)> =
            serde_json::from_str(text).map_err(|e| corrupt(&e.to_string()))?;
        for (pk, sk, item) in batch {
            let key = Key { pk, sk };
            match item {
                Some(item) => items.insert(key, item),
                None => items.remove(&key),
            };
        }
    }
    Ok((items, whole))
}

/// Items kept in memory only.
fn held(items: BTreeMap<Key, Box<RawValue>>) -> Items {
    items
        .into_iter()
        .map(|(k, raw)| (k, Text::Held(raw)))
        .collect()
}

/// Rewrites the journal as one line per item, atomically: a copy in `store.jsonl.tmp`, synced,
/// renamed over the journal, and the directory synced so that the rename (and what is appended
/// to the new file) survives a crash. Returns where each item's text starts in the new journal
/// (in `items`' order) and its length. On failure the journal is untouched and the copy is
/// removed.
fn compact(
    dir: &Path,
    path: &Path,
    items: &BTreeMap<Key, Box<RawValue>>,
    room: Option<u64>,
) -> Result<(Vec<Option<u64>>, u64), StoreError> {
    let tmp: PathBuf = path.with_extension("jsonl.tmp");
    let written = write_compacted(&tmp, items, room).and_then(|done| {
        fs::rename(&tmp, path)?;
        Ok(done)
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    let done = written?;
    sync_dir(dir)?;
    Ok(done)
}

fn write_compacted(
    tmp: &Path,
    items: &BTreeMap<Key, Box<RawValue>>,
    room: Option<u64>,
) -> Result<(Vec<Option<u64>>, u64), StoreError> {
    let mut w = BufWriter::new(Room {
        file: File::create(tmp)?,
        left: room,
    });
    let mut starts = Vec::with_capacity(items.len());
    let mut len = 0;
    let mut line = Vec::new();
    for (k, raw) in items {
        line.clear();
        let at = append_line(&mut line, [(k, Some(&**raw))])?[0];
        w.write_all(&line)?;
        starts.push(at.map(|a| len + a));
        len += line.len() as u64;
    }
    w.into_inner()
        .map_err(|e| e.into_error())?
        .file
        .sync_all()?;
    Ok((starts, len))
}

/// A file that takes at most `left` more bytes (`None`: any number), then fails as a full disk
/// does.
struct Room {
    file: File,
    left: Option<u64>,
}

impl Write for Room {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(left) = &mut self.left else {
            return self.file.write(buf);
        };
        let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
        if take == 0 && !buf.is_empty() {
            return Err(ErrorKind::StorageFull.into());
        }
        let n = self.file.write(&buf[..take])?;
        *left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Makes a rename in `dir` durable. Only Unix can open a directory to sync it.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
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
        if self.read_only {
            return Err(StoreError::Rejected {
                operation: "transact",
                message: "this embedded store was opened read-only".into(),
            });
        }
        let starts = match &mut self.journal {
            None => vec![None; changes.len()],
            Some(j) => {
                j.sync.check()?;
                let mut line = Vec::with_capacity(2048);
                let at = append_line(&mut line, changes.iter().map(|(k, i)| (k, i.as_deref())))?;
                // One write per transaction. If it fails part-way, the journal is cut back to
                // its last whole line, so that the next transaction's offsets (and the next
                // open's replay) stay right.
                let mut file = j.sync.file();
                if let Err(e) = file.write_all(&line) {
                    let _ = file.set_len(j.len);
                    return Err(e.into());
                }
                let base = j.len;
                j.len += line.len() as u64;
                j.sync.wrote(j.len);
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
        // DynamoDB's limit, so a write that would fail there fails here too.
        if ops.len() > crate::ports::store::MAX_TRANSACTION_ITEMS {
            return Err(StoreError::Rejected {
                operation: "TransactWriteItems",
                message: format!("{} items in one transaction", ops.len()),
            });
        }
        self.durably(|inner| {
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
        .await
    }
}

#[async_trait]
impl StoreRead for EmbeddedStore {
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        self.durably(|inner| inner.get(key)?.as_ref().map(record_of).transpose())
            .await
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Record>, StoreError> {
        self.durably(|inner| {
            inner
                .items
                .range(Key::new(pk, sk_prefix)..)
                .take_while(|(k, _)| k.pk == pk && k.sk.starts_with(sk_prefix))
                .map(|(k, t)| record_of(&inner.decode(k, t)?))
                .collect()
        })
        .await
    }

    async fn running(&self, image: &str) -> Result<Vec<ServiceRecord>, StoreError> {
        // A scan of the items held in memory, which include every item with a `running`
        // attribute, as DynamoDB's sparse GSI holds exactly those; only delete warnings ask.
        let needle =
            serde_json::to_string(image).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let items = self
            .durably(|inner| {
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
            })
            .await?;
        services(&items)
    }
}

#[async_trait]
impl StoreDump for EmbeddedStore {
    async fn dump(&self) -> Result<Vec<Item>, StoreError> {
        self.durably(|inner| {
            inner
                .items
                .iter()
                .map(|(k, t)| inner.decode(k, t))
                .collect()
        })
        .await
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

    /// Every item of `store`, as `(SK, n)` pairs.
    async fn ns(store: &EmbeddedStore) -> Vec<(String, i64)> {
        store
            .dump()
            .await
            .unwrap()
            .iter()
            .map(|i| (i[SK].as_str().unwrap().to_owned(), i["n"].as_i64().unwrap()))
            .collect()
    }

    #[tokio::test]
    async fn one_writer_per_dir_and_readers_beside_it_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = EmbeddedStore::open(dir.path()).unwrap();
        a.transact(vec![put("p", "1", json!({"n": 1}))])
            .await
            .unwrap()
            .unwrap();

        // A second writer would compact the journal away from under `a`: it is refused, and
        // told who holds the directory.
        let e = EmbeddedStore::open(dir.path()).unwrap_err();
        let StoreError::Io(io) = &e else {
            panic!("{e}")
        };
        assert_eq!(io.kind(), ErrorKind::ResourceBusy);
        let message = e.to_string();
        assert!(
            message.contains(&format!("in use by process {}", std::process::id())),
            "{message}"
        );
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );

        // A reader (`imagehook state`) sees what is written, and writes nothing.
        let b = EmbeddedStore::open_read_only(dir.path()).unwrap();
        assert_eq!(ns(&b).await, [("1".to_owned(), 1)]);
        let refused = b.transact(vec![put("p", "x", json!({"n": 0}))]).await;
        assert!(matches!(refused, Err(StoreError::Rejected { .. })));

        // `a` keeps writing, and all of it is there once it is gone.
        a.transact(vec![put("p", "2", json!({"n": 2}))])
            .await
            .unwrap()
            .unwrap();
        drop(b);
        a.transact(vec![put("p", "3", json!({"n": 3}))])
            .await
            .unwrap()
            .unwrap();
        drop(a);
        let reopened = EmbeddedStore::open(dir.path()).unwrap();
        let want = [
            ("1".to_owned(), 1),
            ("2".to_owned(), 2),
            ("3".to_owned(), 3),
        ];
        assert_eq!(ns(&reopened).await, want);
    }

    #[tokio::test]
    async fn an_unfinished_last_line_is_cut_and_every_whole_line_kept() {
        let (dir, store) = journaled(vec![put("p", "1", json!({"n": 1}))]).await;
        store
            .transact(vec![put("p", "2", json!({"n": 2}))])
            .await
            .unwrap()
            .unwrap();
        drop(store);
        let path = dir.path().join(JOURNAL);
        let whole = fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(b"[[\"");
        fs::write(&path, &torn).unwrap();

        // A reader skips the line and leaves the file alone.
        let reader = EmbeddedStore::open_read_only(dir.path()).unwrap();
        assert_eq!(ns(&reader).await.len(), 2);
        assert_eq!(fs::read(&path).unwrap(), torn);
        drop(reader);

        let store = EmbeddedStore::open(dir.path()).unwrap();
        let want = [("1".to_owned(), 1), ("2".to_owned(), 2)];
        assert_eq!(ns(&store).await, want);
        let journal = fs::read(&path).unwrap();
        assert_eq!(journal.last(), Some(&b'\n'));
        assert!(journal.len() <= whole.len());
        store
            .transact(vec![put("p", "3", json!({"n": 3}))])
            .await
            .unwrap()
            .unwrap();
        drop(store);
        let reopened = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(ns(&reopened).await.len(), 3);
    }

    #[tokio::test]
    async fn an_unfinished_line_is_cut_even_when_compaction_fails() {
        let (dir, store) = journaled(vec![put("p", "1", json!({"n": 1}))]).await;
        drop(store);
        let path = dir.path().join(JOURNAL);
        let whole = fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(b"[[\"p\",\"2\",{\"n\":");
        fs::write(&path, &torn).unwrap();

        let store = EmbeddedStore::open_with(dir.path(), Some(0), fdatasync()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), whole);
        assert_eq!(ns(&store).await, [("1".to_owned(), 1)]);
    }

    #[tokio::test]
    async fn a_full_disk_keeps_the_journal_uncompacted_and_leaves_no_copy() {
        let (dir, store) = journaled(vec![put("p", "1", json!({"n": 1}))]).await;
        for n in 2..6 {
            let bump = Update::new(Key::new("p", "1")).set("n", n);
            store
                .transact(vec![Op::Update(bump)])
                .await
                .unwrap()
                .unwrap();
        }
        store
            .transact(vec![put("p", "2", json!({"n": 20}))])
            .await
            .unwrap()
            .unwrap();
        drop(store);
        let path = dir.path().join(JOURNAL);
        let tmp = dir.path().join("store.jsonl.tmp");
        let before = fs::read(&path).unwrap();

        // Room for part of the compacted copy only.
        let store = EmbeddedStore::open_with(dir.path(), Some(10), fdatasync()).unwrap();
        assert!(!tmp.exists());
        assert_eq!(fs::read(&path).unwrap(), before);
        let want = [("1".to_owned(), 5), ("2".to_owned(), 20)];
        assert_eq!(ns(&store).await, want);

        // It keeps appending to the journal it has.
        let bump = Update::new(Key::new("p", "2")).add("n", 1);
        store
            .transact(vec![Op::Update(bump)])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read(&store, "p", "2").await.unwrap()["n"], 21);
        drop(store);

        // With room again, the next open compacts it: one line per item.
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(!tmp.exists());
        let want = [("1".to_owned(), 5), ("2".to_owned(), 21)];
        assert_eq!(ns(&store).await, want);
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
    }
}

#[cfg(test)]
mod durability_tests {
    use std::sync::Condvar;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    use super::*;

    /// fdatasync as the tests see it: it counts the syncs, notes how far each reached (the
    /// file's length when it started), and can be slowed, held or made to fail.
    #[derive(Default)]
    struct Disk {
        syncs: AtomicUsize,
        reached: AtomicU64,
        failing: AtomicBool,
        slow: bool,
        held: Mutex<bool>,
        opened: Condvar,
    }

    impl Disk {
        fn slow() -> Arc<Self> {
            Arc::new(Self {
                slow: true,
                ..Self::default()
            })
        }

        fn sync_fn(self: &Arc<Self>) -> SyncFn {
            let disk = Arc::clone(self);
            Arc::new(move |file| disk.sync(file))
        }

        fn sync(&self, file: &File) -> std::io::Result<()> {
            let len = file.metadata()?.len();
            let mut held = self.held.lock().unwrap();
            while *held {
                held = self.opened.wait(held).unwrap();
            }
            drop(held);
            if self.slow {
                // Long enough for the other transactions to line up behind this sync.
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.failing.load(SeqCst) {
                return Err(std::io::Error::other("injected: the disk refused the sync"));
            }
            file.sync_data()?;
            self.syncs.fetch_add(1, SeqCst);
            self.reached.fetch_max(len, SeqCst);
            Ok(())
        }

        fn hold(&self) {
            *self.held.lock().unwrap() = true;
        }

        fn release(&self) {
            *self.held.lock().unwrap() = false;
            self.opened.notify_all();
        }
    }

    fn put(sk: &str, n: i64) -> Op {
        Op::Put {
            key: Key::new("p", sk),
            item: serde_json::from_value(json!({ "n": n })).unwrap(),
            cond: Some(Cond::ItemAbsent),
        }
    }

    /// Where each line of the journal ends, by the sort key of its one item.
    fn line_ends(dir: &Path) -> BTreeMap<String, u64> {
        let journal = fs::read_to_string(dir.join(JOURNAL)).unwrap();
        let mut end = 0;
        let mut ends = BTreeMap::new();
        for line in journal.split_inclusive('\n') {
            end += line.len() as u64;
            let batch: Vec<(String, String, Value)> = serde_json::from_str(line).unwrap();
            ends.insert(batch[0].1.clone(), end);
        }
        ends
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_transactions_share_syncs_and_each_is_answered_after_one_covers_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::slow();
        let store = Arc::new(EmbeddedStore::open_with(dir.path(), None, disk.sync_fn()).unwrap());

        let tasks: Vec<_> = (0..50)
            .map(|n| {
                let (store, disk) = (Arc::clone(&store), Arc::clone(&disk));
                tokio::spawn(async move {
                    store
                        .transact(vec![put(&n.to_string(), n)])
                        .await
                        .unwrap()
                        .unwrap();
                    (n.to_string(), disk.reached.load(SeqCst))
                })
            })
            .collect();
        let mut answered = Vec::new();
        for task in tasks {
            answered.push(task.await.unwrap());
        }

        let ends = line_ends(dir.path());
        assert_eq!(ends.len(), 50);
        for (sk, reached) in &answered {
            assert!(
                *reached >= ends[sk],
                "transaction {sk} was answered when syncs had reached byte {reached}, \
                 before the end of its line at {}",
                ends[sk]
            );
        }
        let syncs = disk.syncs.load(SeqCst);
        assert!(
            (1..=25).contains(&syncs),
            "{syncs} syncs for 50 concurrent transactions"
        );
    }

    #[tokio::test]
    async fn a_refusal_or_a_read_that_saw_an_unsynced_line_waits_for_its_sync() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(Disk::default());
        let store = Arc::new(EmbeddedStore::open_with(dir.path(), None, disk.sync_fn()).unwrap());
        disk.hold();

        let first = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.transact(vec![put("1", 1)]).await }
        });
        // The same put again: refused, since the first one's record is in memory, but not yet
        // durable, so neither is the refusal (a redelivery answered `duplicate`).
        let again = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.transact(vec![put("1", 1)]).await }
        });
        let read = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.get(&Key::new("p", "1")).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!first.is_finished() && !again.is_finished() && !read.is_finished());
        assert_eq!(disk.syncs.load(SeqCst), 0);

        disk.release();
        assert!(matches!(first.await.unwrap(), Ok(Ok(()))));
        assert!(matches!(again.await.unwrap(), Ok(Err(Cancelled { .. }))));
        assert!(read.await.unwrap().unwrap().is_some());
        assert!(disk.syncs.load(SeqCst) >= 1);
    }

    #[tokio::test]
    async fn a_failed_sync_fails_every_waiting_transaction_and_the_store_answers_nothing_after() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(Disk::default());
        let store = Arc::new(EmbeddedStore::open_with(dir.path(), None, disk.sync_fn()).unwrap());
        store.transact(vec![put("0", 0)]).await.unwrap().unwrap();
        disk.hold();
        disk.failing.store(true, SeqCst);

        let waiting: Vec<_> = (1..6)
            .map(|n| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.transact(vec![put(&n.to_string(), n)]).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        disk.release();
        for task in waiting {
            let e = task.await.unwrap().unwrap_err();
            assert!(matches!(e, StoreError::Io(_)), "{e}");
            assert!(e.is_retryable(), "{e}");
        }

        // The disk works again, but what the failed sync left unwritten may be lost: nothing
        // more is written or answered, reads included, since they would show those records.
        disk.failing.store(false, SeqCst);
        let e = store.transact(vec![put("6", 6)]).await.unwrap_err();
        assert!(e.to_string().contains("could not be synced"), "{e}");
        assert!(store.get(&Key::new("p", "1")).await.is_err());
        assert!(store.get(&Key::new("p", "0")).await.is_err());
        assert!(
            !fs::read_to_string(dir.path().join(JOURNAL))
                .unwrap()
                .contains(r#""6""#)
        );

        // Reopened, the store starts again from what the file holds.
        drop(store);
        let reopened = EmbeddedStore::open(dir.path()).unwrap();
        assert!(reopened.get(&Key::new("p", "0")).await.unwrap().is_some());
    }
}
