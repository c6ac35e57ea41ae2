//! Group commit for the embedded store's journal. An answer leaves the store only once the
//! journal is synced (fdatasync) past every line it wrote or read, so a power cut loses nothing
//! acknowledged. One sync covers every line written before it started: the transactions that
//! arrive while a sync runs share the next one instead of paying one each (about 0.12 ms on an
//! ext4 disk; one after another under the store's lock they capped `imagehook serve` near 4k
//! events/s).
//!
//! The sync runs on tokio's blocking pool, outside the store's lock, so the local binary's one
//! runtime thread keeps serving, and keeps appending lines for the next sync, while the disk
//! works.

use std::fmt;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

use crate::ports::store::StoreError;

/// Makes the journal's written bytes durable: `File::sync_data` (fdatasync), or a test's
/// stand-in that counts, holds or fails.
pub(super) type SyncFn = Arc<dyn Fn(&File) -> io::Result<()> + Send + Sync>;

pub(super) fn fdatasync() -> SyncFn {
    Arc::new(File::sync_data)
}

/// The journal file, how far it is written and how far synced.
pub(super) struct GroupCommit {
    /// The journal. Compaction replaces the file only while the store opens, before this
    /// exists, so every sync reaches the file the lines go to.
    file: File,
    sync: SyncFn,
    /// Every line ending at or before this offset is whole in the file.
    written: AtomicU64,
    /// How far a finished sync reached.
    synced: AtomicU64,
    /// A sync is running: the others wait for it to end rather than start their own.
    syncing: AtomicBool,
    /// The first failed sync, never cleared. Its lines are already in memory, where later
    /// transactions read them, and Linux may drop the pages it failed to write while reporting
    /// the error once, so a later sync that succeeds proves nothing about them. Reopening the
    /// store starts again from what the file holds.
    failed: OnceLock<(io::ErrorKind, String)>,
    /// Wakes the waiters when a sync ends.
    ended: Notify,
}

impl fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit")
            .field("written", &self.written)
            .field("synced", &self.synced)
            .field("failed", &self.failed.get())
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// `file`, whose first `len` bytes the store has already made durable while opening.
    pub(super) fn new(file: File, len: u64, sync: SyncFn) -> Arc<Self> {
        Arc::new(Self {
            file,
            sync,
            written: AtomicU64::new(len),
            synced: AtomicU64::new(len),
            syncing: AtomicBool::new(false),
            failed: OnceLock::new(),
            ended: Notify::new(),
        })
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Refused once a sync has failed: nothing more is written or answered until the store is
    /// reopened.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        match self.failed.get() {
            None => Ok(()),
            Some((kind, message)) => Err(StoreError::Io(io::Error::new(
                *kind,
                format!(
                    "the journal could not be synced to disk ({message}); the store answers \
                     nothing more until it is reopened"
                ),
            ))),
        }
    }

    /// The lines up to `end` are whole in the file. Called under the store's lock, after the
    /// write returned.
    pub(super) fn wrote(&self, end: u64) {
        self.written.fetch_max(end, Ordering::Release);
    }

    /// Returns once a sync has covered the journal up to `upto`: at once if one already has,
    /// else after the running sync, or after the one this call runs when none is running.
    pub(super) async fn durable(self: &Arc<Self>, upto: u64) -> Result<(), StoreError> {
        loop {
            self.check()?;
            if self.synced.load(Ordering::Acquire) >= upto {
                return Ok(());
            }
            let ended = self.ended.notified();
            tokio::pin!(ended);
            // Registered before looking again, so that a sync ending in between still wakes it.
            ended.as_mut().enable();
            self.check()?;
            if self.synced.load(Ordering::Acquire) >= upto {
                return Ok(());
            }
            let lead =
                self.syncing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire);
            if lead.is_err() {
                ended.await;
                continue;
            }
            // The sync owns its outcome: a caller that stops waiting (a dropped request) still
            // has it recorded and the flag cleared.
            let leading = Leading(Arc::clone(self));
            tokio::task::spawn_blocking(move || leading.sync())
                .await
                .map_err(|e| {
                    StoreError::Io(io::Error::other(format!(
                        "the journal's sync did not run: {e}"
                    )))
                })?;
        }
    }
}

/// The running sync. Dropping it, after the sync or in place of it (a panic, a runtime
/// shutting down before the task ran), lets the next waiter lead.
struct Leading(Arc<GroupCommit>);

impl Leading {
    fn sync(self) {
        let g = &self.0;
        let upto = g.written.load(Ordering::Acquire);
        match (g.sync)(&g.file) {
            Ok(()) => {
                g.synced.fetch_max(upto, Ordering::AcqRel);
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    synced = g.synced.load(Ordering::Acquire),
                    written = upto,
                    "the embedded store's journal could not be synced; every request is \
                     refused until the store is reopened"
                );
                let _ = g.failed.set((e.kind(), e.to_string()));
            }
        }
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        self.0.syncing.store(false, Ordering::Release);
        self.0.ended.notify_waiters();
    }
}
