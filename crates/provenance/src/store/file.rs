//! The durable file store: its options, its shared state, and the [`LogStore`] facade.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;

use tds_core::hash::Hash256;
use tds_core::merkle::{MerkleError, NodeSource};

use super::format::{FLUSH_EVERY, MEMORY_LEVEL};
use super::ids::IdIndex;
use super::sync::{lock, thread, AtomicU64, Condvar, Mutex};
use super::{io, AppendFuture, LogCut, LogStore, StoreError, StoreVerify};
use crate::storage::{Storage, StorageFile};

/// Options for [`FileStore::open`]: [`OpenOptions::writer`] or [`OpenOptions::reader`],
/// adjusted for tests and benchmarks by the other methods.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    pub(crate) write: bool,
    pub(crate) flush_every: u64,
    pub(crate) memory_level: u32,
}

impl OpenOptions {
    /// Options of a writer: takes the writer lock, creates a missing log, cuts a torn tail.
    pub fn writer() -> Self {
        OpenOptions {
            write: true,
            flush_every: FLUSH_EVERY,
            memory_level: MEMORY_LEVEL,
        }
    }

    /// Options of a reader: takes no lock and never writes.
    pub fn reader() -> Self {
        OpenOptions {
            write: false,
            ..Self::writer()
        }
    }

    /// Writes the derived files every this many entries (rounded up to a multiple of 64;
    /// default 65,536). Tests use small values to exercise flushes.
    pub fn flush_every(self, entries: u64) -> Self {
        OpenOptions {
            flush_every: entries,
            ..self
        }
    }

    /// Keeps tree levels at and above this one (at most 6) in memory and reads lower ones
    /// from their files (default 4: about four bytes of memory per entry, and one tile
    /// read per proof).
    pub fn memory_level(self, level: u32) -> Self {
        OpenOptions {
            memory_level: level,
            ..self
        }
    }
}

/// What opening the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Entries in the log.
    pub entries: u64,
    /// Entries re-read from the events file because the derived files lagged.
    pub replayed: u64,
    /// Non-zero bytes of an unacknowledged torn tail (cut by a writer, ignored by a reader).
    pub torn_tail_bytes: u64,
    /// Whether a torn checkpoint record was found at the end of `checkpoints`.
    pub torn_checkpoint: bool,
}

impl Recovery {
    /// What a writer cut on open, in words for an operator (`None` if nothing was cut).
    pub fn describe_cut(&self) -> Option<String> {
        (self.torn_tail_bytes > 0 || self.torn_checkpoint).then(|| {
            format!(
                "cut an unacknowledged torn tail ({} bytes{}) left by a crash",
                self.torn_tail_bytes,
                if self.torn_checkpoint {
                    ", and a torn checkpoint"
                } else {
                    ""
                }
            )
        })
    }
}

/// The durable file-based log store. See the [module docs](super).
///
/// A writer runs one committer thread, which writes and syncs the queued records in
/// batches; appenders (threads through [`LogStore::append`], tasks through
/// [`LogStore::append_durable`]) wait for the batch holding their records.
pub struct FileStore {
    pub(super) shared: Arc<Shared>,
    pub(super) committer: Option<thread::JoinHandle<()>>,
}

/// The files of a log. Derived files a reader finds missing are `None` (a log whose header
/// says they hold nothing yet).
pub(super) struct Files {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) events: Arc<dyn StorageFile>,
    pub(super) index: Option<Arc<dyn StorageFile>>,
    pub(super) tiles: Option<Arc<dyn StorageFile>>,
    pub(super) checkpoints: Option<Arc<dyn StorageFile>>,
}

/// The state shared by a [`FileStore`] and its committer thread.
pub(super) struct Shared {
    pub(super) files: Files,
    pub(super) state: Mutex<State>,
    /// Signalled when the leader role is released (for `become_leader`).
    pub(super) cond: Condvar,
    /// Signalled when the committer has work (records queued, the leader role released,
    /// shutdown).
    pub(super) work: Condvar,
    /// Entries durable (mirrors `State::size`, readable without the lock).
    pub(super) durable: AtomicU64,
    pub(super) write: bool,
    pub(super) flush_every: u64,
    pub(super) memory_level: u32,
    pub(super) recovery: Recovery,
    /// The index of entries by the ids their events name.
    pub(super) ids: IdIndex,
    pub(super) _lock: Option<Box<dyn Send + Sync>>,
}

/// One level of the tree: hashes from `base` on are in memory; below `base` they are in
/// the level file.
#[derive(Default)]
pub(super) struct Level {
    pub(super) base: u64,
    pub(super) mem: Vec<Hash256>,
    /// Hashes written to the level file and synced.
    pub(super) flushed: u64,
}

impl Level {
    pub(super) fn get_mem(&self, index: u64) -> Option<Hash256> {
        let i = usize::try_from(index.checked_sub(self.base)?).ok()?;
        self.mem.get(i).copied()
    }
}

/// Everything behind the state lock.
pub(super) struct State {
    pub(super) levels: Vec<Level>,
    pub(super) level_files: Vec<Arc<dyn StorageFile>>,
    /// Leaves durable.
    pub(super) size: u64,
    /// End of the durable records.
    pub(super) end: u64,
    /// Offsets of the records from `idx_base` on (below it they are in `index`).
    pub(super) idx_base: u64,
    pub(super) idx_mem: Vec<u64>,
    /// Queue of framed records not yet written, their leaf hashes and offsets.
    pub(super) queue: Vec<u8>,
    pub(super) queue_leaves: Vec<Hash256>,
    pub(super) queue_offsets: Vec<u64>,
    pub(super) next_index: u64,
    pub(super) next_offset: u64,
    /// Someone (the committer, or a marker, flush or checkpoint write) holds the files.
    pub(super) leader: bool,
    /// Appenders waiting for their records to be durable: (entries needed, who).
    pub(super) waiters: Vec<(u64, Waiter)>,
    /// Threads waiting in `become_leader`.
    pub(super) leader_waiters: usize,
    /// The id the next waiting future gets.
    pub(super) next_task: u64,
    /// The committer is waiting for work.
    pub(super) committer_idle: bool,
    /// The store is being dropped: the committer ends once the queue is empty.
    pub(super) shutdown: bool,
    pub(super) failed: Option<String>,
    pub(super) header: super::format::Header,
    /// Length of the events file (zeros after `end`).
    pub(super) alloc: u64,
    pub(super) checkpoints: Vec<Vec<u8>>,
    pub(super) checkpoints_end: u64,
}

/// An appender waiting for its records to be durable.
pub(super) enum Waiter {
    /// A thread in [`LogStore::append_many`], parked.
    Thread(thread::Thread),
    /// A task awaiting [`LogStore::append_durable`], with the id of its future (a future
    /// polled again replaces its waker instead of adding one).
    Task(u64, Waker),
}

impl Waiter {
    pub(super) fn wake(self) {
        match self {
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(_, w) => w.wake(),
        }
    }
}

impl FileStore {
    /// Opens (or, for a writer, creates) the log in `storage`. A writer starts its
    /// committer thread.
    pub fn open(storage: Arc<dyn Storage>, opts: OpenOptions) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared::open(storage, opts)?);
        let committer = if opts.write {
            let sh = shared.clone();
            let t = thread::Builder::new()
                .name("tds-log-commit".into())
                .spawn(move || sh.run_committer())
                .map_err(io("committer thread"))?;
            Some(t)
        } else {
            None
        };
        let store = FileStore { shared, committer };
        if opts.write {
            // Bring the id index up to the log (records appended by a process that died
            // before it wrote them, or a log older than the index).
            let sh = &store.shared;
            sh.ids
                .catch_up(sh.durable.load(Ordering::Acquire), &|i| sh.read(i))?;
            sh.ids.persist();
        }
        Ok(store)
    }

    /// What opening found.
    pub fn recovery(&self) -> &Recovery {
        &self.shared.recovery
    }

    /// Writes a commit marker covering everything durable and syncs it, so no acknowledged
    /// record is left after the marker (called on open, after checkpoints and on drop).
    pub fn sync_marker(&self) -> Result<(), StoreError> {
        self.shared.sync_marker()
    }

    /// Writes the derived files and a fresh commit marker now.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.shared.flush()?;
        self.shared.ids.persist();
        Ok(())
    }
}

impl NodeSource for FileStore {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash256, MerkleError> {
        self.shared.perfect(level, index)
    }
}

impl LogStore for FileStore {
    fn size(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash256>, MerkleError> {
        self.shared.inclusion_proof(index, size)
    }

    fn append(&self, record: &[u8]) -> Result<u64, StoreError> {
        self.shared.append_many(&[record])
    }

    fn append_many(&self, records: &[&[u8]]) -> Result<u64, StoreError> {
        self.shared.append_many(records)
    }

    fn append_durable<'a>(&'a self, records: &[&[u8]]) -> AppendFuture<'a> {
        Box::pin(self.shared.append_async(records))
    }

    fn read(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        self.shared.read(index)
    }

    fn add_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        self.shared.add_checkpoint(note)
    }

    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(lock(&self.shared.state).checkpoints.clone())
    }

    /// Holds the leader role while `at_cut` runs: the committer writes no batch and no
    /// checkpoint is stored meanwhile (appenders queue and wait).
    fn cut(&self, at_cut: &mut dyn FnMut()) -> Result<LogCut, StoreError> {
        self.shared.cut(at_cut)
    }

    /// Recomputes every leaf and interior hash from the events and compares them, the
    /// index and the tiles with what is stored. Read-only.
    fn verify_storage(&self) -> Result<StoreVerify, StoreError> {
        self.shared.verify_storage()
    }

    fn note_ids(&self, index: u64, ids: &[Hash256]) {
        let sh = &self.shared;
        sh.ids.note(index, ids, &|i| sh.read(i));
    }

    fn entries_naming(&self, id: &Hash256) -> Result<Option<Vec<u64>>, StoreError> {
        let sh = &self.shared;
        let size = sh.durable.load(Ordering::Acquire);
        sh.ids.query(id, size, &|i| sh.read(i)).map(Some)
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        if let Some(t) = self.committer.take() {
            lock(&self.shared.state).shutdown = true;
            self.shared.work.notify_one();
            if t.thread().id() == thread::current().id() {
                // Dropped by the committer itself (a waker it woke held the last reference):
                // it ends on its own once the queue is empty; the next open writes the
                // marker.
                return;
            }
            // The committer drains the queue first. If it panicked, `FailOnPanic` has
            // failed the store, and the marker below is skipped.
            let _ = t.join();
        }
        if self.shared.write && lock(&self.shared.state).failed.is_none() {
            // Best effort: a later open recovers the same state without them.
            let _ = self.shared.sync_marker();
            self.shared.ids.persist();
        }
    }
}
