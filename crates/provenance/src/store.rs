//! Log storage: the [`LogStore`] trait, an in-memory store and the durable file store.
//!
//! # The file store
//!
//! Files in one directory (see `spec/provenance.md` for the bytes):
//!
//! - `events`: a 4096-byte header with two commit-marker slots, then records
//!   `len (u32 LE) ‖ check (8) ‖ event bytes`, where `check` binds the record's index and
//!   leaf hash. The file is extended with zeros ahead of use, so a zero length ends the log.
//! - `level-NN`: the hashes of the perfect subtrees of level `NN` (32 bytes each, in order);
//!   `level-00` holds the leaf hashes.
//! - `index`: the byte offset of each record (u64 LE).
//! - `checkpoints`: signed checkpoint notes, framed like events.
//!
//! Appends use group commit: appenders queue their records and wait; a committer thread
//! writes the whole queue, calls `fdatasync` once and wakes the appenders of that batch,
//! while the next batch queues. An append returns only after its record is durable.
//! Appenders are threads ([`LogStore::append`], parked while they wait) or async tasks
//! ([`LogStore::append_durable`], whose wake-up costs no thread switch).
//!
//! The commit marker in the header records the durable size *before* the batch it is
//! written with, so it is always true when it reaches the disk. On open, records up to the
//! marker must all be intact (a bad one is corruption, reported); after the marker, the
//! first bad record ends the log (a torn tail, cut by a writer and reported in
//! [`Recovery`]). The level and index files are derived data written every
//! [`FLUSH_EVERY`] entries; the header says how much of them is synced, and the rest is
//! recomputed from the events on open.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tds_core::hash::Hash256;
use tds_core::merkle::{self, MerkleError, NodeSource};

use crate::storage::{Storage, StorageFile};

/// Bytes before the first record of the `events` file.
pub const HEADER_LEN: u64 = 4096;
/// Record header: length (4) and check (8).
pub const RECORD_HEADER: usize = 12;
/// Largest record payload.
pub const MAX_RECORD: usize = crate::event::MAX_EVENT_BYTES;
/// Derived files (levels, index) are written and synced every this many entries.
pub const FLUSH_EVERY: u64 = 65_536;
/// Default for [`OpenOptions::memory_level`]: levels 4 and up stay in memory (about four
/// bytes per leaf), so an inclusion proof reads four hashes from disk.
pub const MEMORY_LEVEL: u32 = 4;
/// Derived files are synced in whole blocks of this many entries.
const ALIGN_LEVEL: u32 = 6;
/// The events file grows in steps of this many zero bytes.
pub const PREALLOCATE: u64 = 8 << 20;

/// Tiles: for each aligned block of 16 leaves, the hashes of levels 0..=3 inside it
/// (16 + 8 + 4 + 2 = 30 hashes) stored together, so an inclusion proof reads its four
/// lowest siblings with one read.
const TILE_LEVELS: u32 = 4;
const TILE_LEAVES: u64 = 1 << TILE_LEVELS;
const TILE_HASHES: u64 = 30;
const TILE_BYTES: u64 = TILE_HASHES * 32;

/// Where level `l`'s hashes start inside a tile (in hashes).
fn tile_level_start(l: u32) -> u64 {
    (0..l).map(|j| TILE_LEAVES >> j).sum()
}

const SLOTS: [u64; 2] = [0, 512];
const SLOT_LEN: usize = 56;
const MAGIC: &[u8; 8] = b"TDSLOG01";
const ALIGN: u64 = 1 << ALIGN_LEVEL;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O error on one of the log's files.
    #[error("log file {file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Stored data that fails its checks: the log was damaged or tampered with.
    #[error("log corrupt: {file}: {what}")]
    Corrupt {
        /// The file.
        file: String,
        /// What is wrong, and where.
        what: String,
    },
    /// An earlier write failed; the store takes no more appends until reopened.
    #[error("log: an earlier write failed ({0}); reopen the log")]
    Failed(String),
    /// A write on a store opened for reading.
    #[error("log: opened read-only")]
    ReadOnly,
    /// No log exists where one was expected.
    #[error("log: no log at {0}")]
    Missing(String),
    /// An index at or beyond the size.
    #[error("log: index {index} is not below the log size {size}")]
    OutOfRange {
        /// The index asked for.
        index: u64,
        /// The log size.
        size: u64,
    },
    /// A record of bad size.
    #[error("log: record of {0} bytes (must be 1 to {MAX_RECORD})")]
    RecordSize(usize),
}

fn io(file: &str) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        file: file.to_owned(),
        source,
    }
}

fn corrupt(file: &str, what: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        file: file.to_owned(),
        what: what.into(),
    }
}

impl From<StoreError> for MerkleError {
    fn from(e: StoreError) -> Self {
        MerkleError::Source(e.to_string())
    }
}

/// What [`LogStore::append_durable`] returns.
pub type AppendFuture<'a> = Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send + 'a>>;

/// Storage for a provenance log: event bytes, their Merkle tree, checkpoint notes.
pub trait LogStore: NodeSource + Send + Sync {
    /// Entries durable so far.
    fn size(&self) -> u64;
    /// Appends one record; returns its index once it is durable. Safe to call from many
    /// threads: concurrent appends share syncs.
    fn append(&self, record: &[u8]) -> Result<u64, StoreError>;
    /// Appends several records in order; returns the index of the first once all are
    /// durable.
    fn append_many(&self, records: &[&[u8]]) -> Result<u64, StoreError> {
        let mut first = None;
        for r in records {
            let i = self.append(r)?;
            first.get_or_insert(i);
        }
        Ok(first.unwrap_or_else(|| self.size()))
    }
    /// Appends records in order without blocking: returns a future that resolves to the
    /// index of the first once all are durable. The records are queued when this is
    /// called, so dropping the future does not withdraw them. The default appends at once
    /// (for stores whose appends do not wait).
    fn append_durable<'a>(&'a self, records: &[&[u8]]) -> AppendFuture<'a> {
        Box::pin(std::future::ready(self.append_many(records)))
    }
    /// The bytes of entry `index`.
    fn read(&self, index: u64) -> Result<Vec<u8>, StoreError>;
    /// Stores a checkpoint note durably.
    fn add_checkpoint(&self, note: &[u8]) -> Result<(), StoreError>;
    /// Every stored checkpoint note, oldest first.
    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, StoreError>;

    /// The inclusion proof of `index` in the tree of `size` entries.
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash256>, MerkleError> {
        merkle::inclusion_proof(self, index, size)
    }

    /// The leaf hash of entry `index`.
    fn leaf(&self, index: u64) -> Result<Hash256, StoreError> {
        let size = self.size();
        if index >= size {
            return Err(StoreError::OutOfRange { index, size });
        }
        self.perfect(0, index).map_err(|e| StoreError::Corrupt {
            file: "level-00".into(),
            what: e.to_string(),
        })
    }
}

/// Records, their tree, and checkpoint notes.
type MemoryParts = (Vec<Vec<u8>>, merkle::MemoryTree, Vec<Vec<u8>>);

/// A store in memory, for tests and for embedding where durability comes from elsewhere.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryParts>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NodeSource for MemoryStore {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash256, MerkleError> {
        lock(&self.inner).1.perfect(level, index)
    }
}

impl LogStore for MemoryStore {
    fn size(&self) -> u64 {
        lock(&self.inner).1.size()
    }
    fn append(&self, record: &[u8]) -> Result<u64, StoreError> {
        if record.is_empty() || record.len() > MAX_RECORD {
            return Err(StoreError::RecordSize(record.len()));
        }
        let mut g = lock(&self.inner);
        let i = g.1.size();
        g.0.push(record.to_vec());
        g.1.push(merkle::leaf_hash(record));
        Ok(i)
    }
    fn read(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        let g = lock(&self.inner);
        let size = g.1.size();
        usize::try_from(index)
            .ok()
            .and_then(|i| g.0.get(i))
            .cloned()
            .ok_or(StoreError::OutOfRange { index, size })
    }
    fn add_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        lock(&self.inner).2.push(note.to_vec());
        Ok(())
    }
    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(lock(&self.inner).2.clone())
    }
}

/// What opening the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

/// What a full verification checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreVerify {
    /// Entries whose records, leaf hashes and index entries were checked.
    pub entries: u64,
    /// Interior hashes recomputed and compared.
    pub interior: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Header {
    seq: u64,
    committed_entries: u64,
    committed_bytes: u64,
    derived_entries: u64,
    derived_bytes: u64,
}

impl Header {
    fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        let mut w = Vec::with_capacity(SLOT_LEN);
        w.extend_from_slice(MAGIC);
        for v in [
            self.seq,
            self.committed_entries,
            self.committed_bytes,
            self.derived_entries,
            self.derived_bytes,
        ] {
            w.extend_from_slice(&v.to_le_bytes());
        }
        let c = checksum(&[&w]);
        w.extend_from_slice(&c);
        b.copy_from_slice(&w);
        b
    }

    fn decode(b: &[u8]) -> Option<Header> {
        let body = b.get(..48)?;
        if body.get(..8)? != MAGIC || b.get(48..56)? != checksum(&[body]) {
            return None;
        }
        let u = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(body.get(i..i + 8)?.try_into().ok()?))
        };
        let h = Header {
            seq: u(8)?,
            committed_entries: u(16)?,
            committed_bytes: u(24)?,
            derived_entries: u(32)?,
            derived_bytes: u(40)?,
        };
        (h.committed_bytes >= HEADER_LEN
            && h.derived_bytes >= HEADER_LEN
            && h.derived_entries <= h.committed_entries
            && h.derived_bytes <= h.committed_bytes)
            .then_some(h)
    }
}

/// First 8 bytes of SHA-256 over the parts.
fn checksum(parts: &[&[u8]]) -> [u8; 8] {
    let mut ctx = tds_core::hash::Hasher::plain();
    for p in parts {
        ctx.update(p);
    }
    let d = ctx.finish();
    let mut out = [0u8; 8];
    if let Some(s) = d.as_bytes().get(..8) {
        out.copy_from_slice(s);
    }
    out
}

/// The check of record `index` with leaf hash `leaf`.
fn record_check(domain: &[u8], index: u64, leaf: &Hash256) -> [u8; 8] {
    checksum(&[domain, &[0], &index.to_be_bytes(), leaf.as_bytes()])
}

const EVENT_DOMAIN: &[u8] = b"tds/log-record/v1";
const CHECKPOINT_DOMAIN: &[u8] = b"tds/log-checkpoint/v1";

/// Frames `payload` as record `index`.
fn frame(out: &mut Vec<u8>, domain: &[u8], index: u64, payload: &[u8], leaf: &Hash256) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&record_check(domain, index, leaf));
    out.extend_from_slice(payload);
}

/// One level of the tree: hashes from `base` on are in memory; below `base` they are in
/// the level file.
#[derive(Default)]
struct Level {
    base: u64,
    mem: Vec<Hash256>,
    /// Hashes written to the level file and synced.
    flushed: u64,
}

impl Level {
    fn get_mem(&self, index: u64) -> Option<Hash256> {
        let i = usize::try_from(index.checked_sub(self.base)?).ok()?;
        self.mem.get(i).copied()
    }
}

struct State {
    levels: Vec<Level>,
    level_files: Vec<Arc<dyn StorageFile>>,
    /// Leaves durable.
    size: u64,
    /// End of the durable records.
    end: u64,
    idx_base: u64,
    idx_mem: Vec<u64>,
    // Queue of records not yet written.
    queue: Vec<u8>,
    queue_leaves: Vec<Hash256>,
    queue_offsets: Vec<u64>,
    next_index: u64,
    next_offset: u64,
    /// Someone (the committer, or a marker, flush or checkpoint write) holds the files.
    leader: bool,
    /// Appenders waiting for their records to be durable: (entries needed, who).
    waiters: Vec<(u64, Waiter)>,
    /// Threads waiting in `become_leader`.
    leader_waiters: usize,
    /// The id the next waiting future gets.
    next_task: u64,
    /// The committer is waiting for work.
    committer_idle: bool,
    /// The store is being dropped: the committer ends once the queue is empty.
    shutdown: bool,
    failed: Option<String>,
    header: Header,
    alloc: u64,
    checkpoints: Vec<Vec<u8>>,
    checkpoints_end: u64,
}

impl State {
    fn push_leaf(&mut self, leaf: Hash256) -> Result<(), StoreError> {
        let mut idx = self.size;
        let mut hash = leaf;
        let mut l = 0usize;
        loop {
            if self.levels.len() <= l {
                self.levels.push(Level::default());
            }
            let level = self
                .levels
                .get_mut(l)
                .ok_or_else(|| corrupt("tree", "level missing"))?;
            level.mem.push(hash);
            if idx & 1 == 0 {
                break;
            }
            let left = level.get_mem(idx - 1).ok_or_else(|| {
                corrupt("tree", format!("level {l} node {} not in memory", idx - 1))
            })?;
            hash = merkle::node_hash(&left, &hash);
            idx >>= 1;
            l += 1;
        }
        self.size += 1;
        Ok(())
    }
}

/// An appender waiting for its records to be durable.
enum Waiter {
    /// A thread in [`LogStore::append_many`], parked.
    Thread(std::thread::Thread),
    /// A task awaiting [`LogStore::append_durable`], with the id of its future (a future
    /// polled again replaces its waker instead of adding one).
    Task(u64, Waker),
}

/// Fails the store when a panic unwinds out of log I/O (a bug in a [`Storage`]
/// implementation, say): every waiting appender is woken to see the failure, and the
/// leader role is given up if this party held it. Nobody waits for a party that is gone.
/// Declared before any lock guard of the same function, so it runs after they are dropped.
struct FailOnPanic<'a> {
    shared: &'a Shared,
    holds_leader: bool,
}

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut st = lock(&self.shared.state);
        if st.failed.is_none() {
            st.failed = Some("a panic during log I/O; reopen the log".into());
        }
        if self.holds_leader {
            st.leader = false;
        }
        let all = std::mem::take(&mut st.waiters);
        drop(st);
        all.into_iter().for_each(|(_, w)| w.wake());
        self.shared.cond.notify_all();
        self.shared.work.notify_all();
    }
}

impl Waiter {
    fn wake(self) {
        match self {
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(_, w) => w.wake(),
        }
    }
}

/// Options for [`FileStore::open`].
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// Open for appending (takes the writer lock, creates a missing log, cuts a torn tail).
    pub write: bool,
    /// Write the derived files every this many entries (rounded up to a multiple of 64;
    /// default [`FLUSH_EVERY`]).
    pub flush_every: u64,
    /// Tree levels at and above this one (at most 6) are kept in memory; lower ones are
    /// read from their files (default [`MEMORY_LEVEL`]).
    pub memory_level: u32,
}

impl OpenOptions {
    /// Options of a writer.
    pub fn writer() -> Self {
        OpenOptions {
            write: true,
            flush_every: FLUSH_EVERY,
            memory_level: MEMORY_LEVEL,
        }
    }

    /// Options of a reader.
    pub fn reader() -> Self {
        OpenOptions {
            write: false,
            flush_every: FLUSH_EVERY,
            memory_level: MEMORY_LEVEL,
        }
    }
}

/// The durable file-based log store. See the [module docs](self).
///
/// A writer runs one committer thread, which writes and syncs the queued records in
/// batches; appenders (threads through [`LogStore::append`], tasks through
/// [`LogStore::append_durable`]) wait for the batch holding their records.
pub struct FileStore {
    shared: Arc<Shared>,
    committer: Option<std::thread::JoinHandle<()>>,
}

/// The state shared by a [`FileStore`] and its committer thread.
struct Shared {
    storage: Arc<dyn Storage>,
    events: Arc<dyn StorageFile>,
    index: Arc<dyn StorageFile>,
    tiles: Arc<dyn StorageFile>,
    ckpt: Arc<dyn StorageFile>,
    state: Mutex<State>,
    /// Signalled when the leader role is released (for `become_leader`).
    cond: Condvar,
    /// Signalled when the committer has work (records queued, the leader role released,
    /// shutdown).
    work: Condvar,
    /// Entries durable (mirrors `State::size`, readable without the lock).
    durable: AtomicU64,
    write: bool,
    flush_every: u64,
    memory_level: u32,
    recovery: Recovery,
    _lock: Option<Box<dyn Send + Sync>>,
}

fn level_name(l: usize) -> String {
    format!("level-{l:02}")
}

fn read_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

impl Shared {
    fn open(storage: Arc<dyn Storage>, opts: OpenOptions) -> Result<Shared, StoreError> {
        let lock_guard = if opts.write {
            Some(storage.lock().map_err(io("LOCK"))?)
        } else {
            None
        };
        if !opts.write && !storage.exists("events") {
            return Err(StoreError::Missing("events".into()));
        }
        let events = storage.open("events", opts.write).map_err(io("events"))?;
        let mut len = events.len().map_err(io("events"))?;
        if len == 0 {
            if !opts.write {
                return Err(StoreError::Missing("events".into()));
            }
            let h = Header {
                seq: 1,
                committed_bytes: HEADER_LEN,
                derived_bytes: HEADER_LEN,
                ..Header::default()
            };
            let mut page = vec![0u8; HEADER_LEN as usize];
            if let Some(s) = page.get_mut(..SLOT_LEN) {
                s.copy_from_slice(&h.encode());
            }
            events.write_all_at(&page, 0).map_err(io("events"))?;
            events.sync_data().map_err(io("events"))?;
            storage.sync_dir().map_err(io("."))?;
            len = HEADER_LEN;
        }
        let mut header: Option<Header> = None;
        for off in SLOTS {
            let mut b = [0u8; SLOT_LEN];
            if events.read_exact_at(&mut b, off).is_ok() {
                if let Some(h) = Header::decode(&b) {
                    if header.is_none_or(|cur| h.seq > cur.seq) {
                        header = Some(h);
                    }
                }
            }
        }
        let header =
            header.ok_or_else(|| corrupt("events", "no valid commit marker in the header"))?;
        if header.committed_bytes > len {
            return Err(corrupt(
                "events",
                format!(
                    "file is {len} bytes but the commit marker covers {}",
                    header.committed_bytes
                ),
            ));
        }
        let index = storage.open("index", opts.write).or_else(|e| {
            if !opts.write
                && e.kind() == std::io::ErrorKind::NotFound
                && header.derived_entries == 0
            {
                storage.open("events", false)
            } else {
                Err(e)
            }
        });
        let index = index.map_err(io("index"))?;
        let ckpt_file = if storage.exists("checkpoints") || opts.write {
            storage
                .open("checkpoints", opts.write)
                .map_err(io("checkpoints"))?
        } else {
            events.clone()
        };
        let has_ckpt_file = storage.exists("checkpoints");
        let tiles = if storage.exists("tiles") || opts.write {
            storage.open("tiles", opts.write).map_err(io("tiles"))?
        } else if header.derived_entries == 0 {
            events.clone()
        } else {
            return Err(corrupt("tiles", "missing"));
        };
        if header.derived_entries > 0 {
            let need = header.derived_entries / TILE_LEAVES * TILE_BYTES;
            let have = tiles.len().map_err(io("tiles"))?;
            if have < need {
                return Err(corrupt(
                    "tiles",
                    format!("{have} bytes, the header says {need} are synced"),
                ));
            }
            if opts.write && have > need {
                tiles.set_len(need).map_err(io("tiles"))?;
            }
        }

        let memory_level = opts.memory_level.min(ALIGN_LEVEL);
        let d = header.derived_entries;
        if d % ALIGN != 0 {
            return Err(corrupt(
                "events",
                "derived size in the header is not aligned",
            ));
        }
        if d > 0 {
            let need = d * 8;
            let have = index.len().map_err(io("index"))?;
            if have < need {
                return Err(corrupt(
                    "index",
                    format!("{have} bytes, the header says {need} are synced"),
                ));
            }
            if opts.write && have > need {
                index.set_len(need).map_err(io("index"))?;
            }
        }
        let mut levels = Vec::new();
        let mut level_files: Vec<Arc<dyn StorageFile>> = Vec::new();
        let mut l = 0usize;
        while l < 64 && (d >> l) > 0 {
            let name = level_name(l);
            let f = storage.open(&name, opts.write).map_err(io(&name))?;
            let count = d >> l;
            let need = count * 32;
            let have = f.len().map_err(io(&name))?;
            if have < need {
                return Err(corrupt(
                    &name,
                    format!("{have} bytes, the header says {need} are synced"),
                ));
            }
            if opts.write && have > need {
                f.set_len(need).map_err(io(&name))?;
            }
            let mut level = Level {
                base: count,
                mem: Vec::new(),
                flushed: count,
            };
            if l as u32 >= memory_level {
                let mut buf =
                    vec![0u8; usize::try_from(need).map_err(|_| corrupt(&name, "too large"))?];
                f.read_exact_at(&mut buf, 0).map_err(io(&name))?;
                level.base = 0;
                level.mem = buf
                    .chunks_exact(32)
                    .filter_map(Hash256::from_slice)
                    .collect();
            }
            levels.push(level);
            level_files.push(f);
            l += 1;
        }
        // Levels above those with synced nodes start empty at base 0.
        let mut st = State {
            levels,
            level_files,
            size: d,
            end: header.derived_bytes,
            idx_base: d,
            idx_mem: Vec::new(),
            queue: Vec::new(),
            queue_leaves: Vec::new(),
            queue_offsets: Vec::new(),
            next_index: 0,
            next_offset: 0,
            leader: false,
            waiters: Vec::new(),
            leader_waiters: 0,
            next_task: 0,
            committer_idle: false,
            shutdown: false,
            failed: None,
            header,
            alloc: len,
            checkpoints: Vec::new(),
            checkpoints_end: 0,
        };
        // Replay the records after the derived point.
        let mut recovery = Recovery::default();
        let mut off = header.derived_bytes;
        let mut hdr = [0u8; RECORD_HEADER];
        let mut payload = Vec::new();
        let mut bad: Option<String> = None;
        loop {
            if events.read_exact_at(&mut hdr, off).is_err() {
                if off < len {
                    bad = Some("record header runs past the end of the file".into());
                }
                break;
            }
            let rlen = read_u32(&hdr).unwrap_or(0) as usize;
            if rlen == 0 {
                if hdr.iter().any(|b| *b != 0) {
                    bad = Some("record of length zero".into());
                }
                break;
            }
            if rlen > MAX_RECORD {
                bad = Some(format!("record length {rlen} is over the limit"));
                break;
            }
            payload.resize(rlen, 0);
            if events
                .read_exact_at(&mut payload, off + RECORD_HEADER as u64)
                .is_err()
            {
                bad = Some("record runs past the end of the file".into());
                break;
            }
            let leaf = merkle::leaf_hash(&payload);
            if hdr.get(4..12) != Some(&record_check(EVENT_DOMAIN, st.size, &leaf)[..]) {
                bad = Some("checksum mismatch".into());
                break;
            }
            st.push_leaf(leaf)?;
            st.idx_mem.push(off);
            off += (RECORD_HEADER + rlen) as u64;
            recovery.replayed += 1;
        }
        if off < header.committed_bytes || st.size < header.committed_entries {
            return Err(corrupt(
                "events",
                format!(
                    "record {} at offset {off}: {} inside the committed part (the commit marker covers {} records, {} bytes)",
                    st.size,
                    bad.as_deref().unwrap_or("log ends early"),
                    header.committed_entries,
                    header.committed_bytes
                ),
            ));
        }
        st.end = off;
        // Non-zero bytes after the end are an unacknowledged torn tail.
        let mut pos = off;
        let mut chunk = vec![0u8; 1 << 20];
        let zeros = vec![0u8; 1 << 20];
        while pos < len {
            let n = usize::try_from((len - pos).min(chunk.len() as u64)).unwrap_or(0);
            let Some(buf) = chunk.get_mut(..n) else { break };
            events.read_exact_at(buf, pos).map_err(io("events"))?;
            // Compared with memcmp first: the usual tail is all zeros.
            if Some(&*buf) == zeros.get(..n) {
                pos += n as u64;
                continue;
            }
            let nz = buf.iter().filter(|b| **b != 0).count() as u64;
            if nz > 0 {
                recovery.torn_tail_bytes += nz;
                if opts.write {
                    buf.fill(0);
                    events.write_all_at(buf, pos).map_err(io("events"))?;
                }
            }
            pos += n as u64;
        }
        // Checkpoints.
        if has_ckpt_file {
            let clen = ckpt_file.len().map_err(io("checkpoints"))?;
            let mut off = 0u64;
            while off < clen {
                match read_record(
                    ckpt_file.as_ref(),
                    off,
                    CHECKPOINT_DOMAIN,
                    st.checkpoints.len() as u64,
                ) {
                    Ok(p) => {
                        off += (RECORD_HEADER + p.len()) as u64;
                        st.checkpoints.push(p);
                    }
                    Err(reason) => {
                        // A bad record that reaches the end of the file is a torn append;
                        // anything followed by more data is corruption.
                        let mut h = [0u8; RECORD_HEADER];
                        let claimed = match ckpt_file.read_exact_at(&mut h, off) {
                            Ok(()) => {
                                off + RECORD_HEADER as u64 + u64::from(read_u32(&h).unwrap_or(0))
                            }
                            Err(_) => clen,
                        };
                        if claimed < clen {
                            return Err(corrupt(
                                "checkpoints",
                                format!(
                                    "checkpoint {} at offset {off}: {reason}",
                                    st.checkpoints.len()
                                ),
                            ));
                        }
                        recovery.torn_checkpoint = true;
                        if opts.write {
                            ckpt_file.set_len(off).map_err(io("checkpoints"))?;
                            ckpt_file.sync_data().map_err(io("checkpoints"))?;
                        }
                        break;
                    }
                }
            }
            st.checkpoints_end = off;
        }
        st.next_index = st.size;
        st.next_offset = st.end;
        recovery.entries = st.size;
        let store = Shared {
            storage,
            events,
            index,
            ckpt: ckpt_file,
            tiles,
            durable: AtomicU64::new(st.size),
            state: Mutex::new(st),
            cond: Condvar::new(),
            work: Condvar::new(),
            write: opts.write,
            flush_every: opts.flush_every.max(1).div_ceil(ALIGN) * ALIGN,
            memory_level,
            recovery,
            _lock: lock_guard,
        };
        if opts.write {
            store.sync_marker()?;
            store.storage.sync_dir().map_err(io("."))?;
        }
        Ok(store)
    }

    /// What opening found.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Writes a commit marker covering everything durable and syncs it, so no acknowledged
    /// record is left after the marker (called on open, after checkpoints and on drop).
    pub fn sync_marker(&self) -> Result<(), StoreError> {
        if !self.write {
            return Err(StoreError::ReadOnly);
        }
        let mut guard = self.fail_on_panic();
        let mut st = self.become_leader()?;
        guard.holds_leader = true;
        let mut h = st.header;
        if h.committed_entries == st.size && h.committed_bytes == st.end {
            self.release_leader(&mut st);
            guard.holds_leader = false;
            return Ok(());
        }
        h.seq += 1;
        h.committed_entries = st.size;
        h.committed_bytes = st.end;
        drop(st);
        let r = self.write_header(&h);
        let mut st = lock(&self.state);
        self.release_leader(&mut st);
        guard.holds_leader = false;
        match r {
            Ok(()) => {
                st.header = h;
                Ok(())
            }
            Err(e) => {
                st.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn write_header(&self, h: &Header) -> Result<(), StoreError> {
        let slot = SLOTS.get((h.seq % 2) as usize).copied().unwrap_or(0);
        self.events
            .write_all_at(&h.encode(), slot)
            .map_err(io("events"))?;
        self.events.sync_data().map_err(io("events"))
    }

    /// Gives up the leader role: wakes the committer and anyone waiting to lead.
    fn release_leader(&self, st: &mut State) {
        st.leader = false;
        if st.leader_waiters > 0 {
            self.cond.notify_all();
        }
        self.work.notify_one();
    }

    /// A guard that fails the store if a panic unwinds past it (see [`FailOnPanic`]).
    fn fail_on_panic(&self) -> FailOnPanic<'_> {
        FailOnPanic {
            shared: self,
            holds_leader: false,
        }
    }

    fn become_leader(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let mut st = lock(&self.state);
        loop {
            if let Some(f) = &st.failed {
                return Err(StoreError::Failed(f.clone()));
            }
            if !st.leader {
                st.leader = true;
                return Ok(st);
            }
            st.leader_waiters += 1;
            st = self
                .cond
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            st.leader_waiters -= 1;
        }
    }

    /// The committer thread: writes and syncs the queue in batches until shutdown, then
    /// wakes the appenders of each batch.
    fn run_committer(&self) {
        let mut guard = self.fail_on_panic();
        let mut st = lock(&self.state);
        loop {
            if st.failed.is_some() && !st.waiters.is_empty() {
                // Nothing will be committed again: every waiter learns of the failure.
                let all = std::mem::take(&mut st.waiters);
                drop(st);
                all.into_iter().for_each(|(_, w)| w.wake());
                st = lock(&self.state);
                continue;
            }
            let has_work = st.failed.is_none() && !st.queue_leaves.is_empty();
            if !has_work || st.leader {
                if st.shutdown && !has_work {
                    return;
                }
                st.committer_idle = true;
                st = self
                    .work
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                st.committer_idle = false;
                continue;
            }
            st.leader = true;
            guard.holds_leader = true;
            st = self.commit(st);
            // Acknowledge the batch before any flush of the derived files.
            let size = st.size;
            let mut ready = Vec::new();
            for (need, w) in std::mem::take(&mut st.waiters) {
                if need <= size {
                    ready.push(w);
                } else {
                    st.waiters.push((need, w));
                }
            }
            let flush = st.failed.is_none() && size - st.header.derived_entries >= self.flush_every;
            if !flush {
                self.end_commit(&mut st, &mut guard);
            }
            drop(st);
            ready.into_iter().for_each(Waiter::wake);
            st = lock(&self.state);
            if flush {
                st = self.flush_derived(st);
                self.end_commit(&mut st, &mut guard);
            }
        }
    }

    /// The committer gives up the leader role (it waits for work itself, so only those
    /// waiting to lead are told).
    fn end_commit(&self, st: &mut State, guard: &mut FailOnPanic<'_>) {
        st.leader = false;
        guard.holds_leader = false;
        if st.leader_waiters > 0 {
            self.cond.notify_all();
        }
    }

    /// Writes the queue as one batch; called by the leader with the lock held.
    fn commit<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let batch = std::mem::take(&mut st.queue);
        let leaves = std::mem::take(&mut st.queue_leaves);
        let offsets = std::mem::take(&mut st.queue_offsets);
        if leaves.is_empty() {
            return st;
        }
        let start = st.end;
        let end = start + batch.len() as u64;
        let mut h = st.header;
        h.seq += 1;
        h.committed_entries = st.size;
        h.committed_bytes = st.end;
        let alloc = st.alloc;
        let new_alloc = if end > alloc {
            end.div_ceil(PREALLOCATE) * PREALLOCATE + PREALLOCATE
        } else {
            alloc
        };
        drop(st);
        let r = (|| -> Result<(), StoreError> {
            if new_alloc > alloc {
                let zeros = vec![0u8; 1 << 20];
                let mut pos = alloc;
                while pos < new_alloc {
                    let n = (new_alloc - pos).min(zeros.len() as u64);
                    let z = zeros.get(..n as usize).unwrap_or(&[]);
                    self.events.write_all_at(z, pos).map_err(io("events"))?;
                    pos += n;
                }
            }
            let slot = SLOTS.get((h.seq % 2) as usize).copied().unwrap_or(0);
            self.events
                .write_all_at(&h.encode(), slot)
                .map_err(io("events"))?;
            self.events
                .write_all_at(&batch, start)
                .map_err(io("events"))?;
            self.events.sync_data().map_err(io("events"))
        })();
        let mut st = lock(&self.state);
        match r {
            Ok(()) => {
                for (leaf, off) in leaves.into_iter().zip(offsets) {
                    if let Err(e) = st.push_leaf(leaf) {
                        st.failed = Some(e.to_string());
                        return st;
                    }
                    st.idx_mem.push(off);
                }
                st.end = end;
                st.header = h;
                st.alloc = new_alloc;
                self.durable.store(st.size, Ordering::Release);
            }
            Err(e) => st.failed = Some(e.to_string()),
        }
        st
    }

    /// Writes and syncs the derived files up to the last aligned entry; leader only.
    fn flush_derived<'a>(&'a self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let target = st.size / ALIGN * ALIGN;
        let d = st.header.derived_entries;
        if target <= d {
            return st;
        }
        // Snapshot what to write.
        let mut writes: Vec<(usize, u64, Vec<u8>)> = Vec::new();
        for (l, level) in st.levels.iter().enumerate() {
            let upto = target >> l;
            if upto <= level.flushed {
                continue;
            }
            let mut buf = Vec::with_capacity(((upto - level.flushed) * 32) as usize);
            for i in level.flushed..upto {
                if let Some(h) = level.get_mem(i) {
                    buf.extend_from_slice(h.as_bytes());
                }
            }
            writes.push((l, level.flushed, buf));
        }
        let mut idx_buf = Vec::with_capacity(((target - st.idx_base) * 8) as usize);
        for off in st.idx_mem.iter().take((target - st.idx_base) as usize) {
            idx_buf.extend_from_slice(&off.to_le_bytes());
        }
        let idx_at = st.idx_base * 8;
        let mut tile_buf = Vec::new();
        for b in d / TILE_LEAVES..target / TILE_LEAVES {
            for l in 0..TILE_LEVELS {
                let per = TILE_LEAVES >> l;
                for i in b * per..(b + 1) * per {
                    let h = st
                        .levels
                        .get(l as usize)
                        .and_then(|lv| lv.get_mem(i))
                        .unwrap_or_default();
                    tile_buf.extend_from_slice(h.as_bytes());
                }
            }
        }
        let tile_at = d / TILE_LEAVES * TILE_BYTES;
        let target_bytes = if target == st.size {
            st.end
        } else {
            st.idx_mem
                .get((target - st.idx_base) as usize)
                .copied()
                .unwrap_or(st.end)
        };
        let mut h = st.header;
        h.seq += 1;
        h.committed_entries = st.size;
        h.committed_bytes = st.end;
        h.derived_entries = target;
        h.derived_bytes = target_bytes;
        let mut files = st.level_files.clone();
        drop(st);
        let r = (|| -> Result<Vec<Arc<dyn StorageFile>>, StoreError> {
            for (l, at, buf) in &writes {
                let name = level_name(*l);
                while files.len() <= *l {
                    let f = self
                        .storage
                        .open(&level_name(files.len()), true)
                        .map_err(io(&name))?;
                    files.push(f);
                }
                let f = files.get(*l).ok_or_else(|| corrupt(&name, "missing"))?;
                f.write_all_at(buf, at * 32).map_err(io(&name))?;
                f.sync_data().map_err(io(&name))?;
            }
            self.index
                .write_all_at(&idx_buf, idx_at)
                .map_err(io("index"))?;
            self.index.sync_data().map_err(io("index"))?;
            self.tiles
                .write_all_at(&tile_buf, tile_at)
                .map_err(io("tiles"))?;
            self.tiles.sync_data().map_err(io("tiles"))?;
            self.storage.sync_dir().map_err(io("."))?;
            self.write_header(&h)?;
            Ok(files)
        })();
        let mut st = lock(&self.state);
        match r {
            Ok(files) => {
                st.level_files = files;
                for (l, level) in st.levels.iter_mut().enumerate() {
                    let upto = target >> l;
                    if upto > level.flushed {
                        level.flushed = upto;
                    }
                    if (l as u32) < self.memory_level && upto > level.base {
                        let drop_n = (upto - level.base) as usize;
                        level.mem.drain(..drop_n.min(level.mem.len()));
                        level.base = upto;
                    }
                }
                let drop_n = ((target - st.idx_base) as usize).min(st.idx_mem.len());
                st.idx_mem.drain(..drop_n);
                st.idx_base = target;
                st.header = h;
            }
            Err(e) => st.failed = Some(e.to_string()),
        }
        st
    }

    /// Writes the derived files and a fresh commit marker now.
    pub fn flush(&self) -> Result<(), StoreError> {
        if !self.write {
            return Err(StoreError::ReadOnly);
        }
        let mut guard = self.fail_on_panic();
        let st = self.become_leader()?;
        guard.holds_leader = true;
        let mut st = self.flush_derived(st);
        self.release_leader(&mut st);
        guard.holds_leader = false;
        if let Some(f) = &st.failed {
            return Err(StoreError::Failed(f.clone()));
        }
        drop(st);
        self.sync_marker()
    }

    fn offset_of(&self, index: u64) -> Result<(u64, u64), StoreError> {
        let st = lock(&self.state);
        if index >= st.size {
            return Err(StoreError::OutOfRange {
                index,
                size: st.size,
            });
        }
        let next = |i: u64| -> Option<u64> {
            if i == st.size {
                Some(st.end)
            } else if i >= st.idx_base {
                st.idx_mem.get((i - st.idx_base) as usize).copied()
            } else {
                None
            }
        };
        if let Some(o) = next(index) {
            return Ok((o, next(index + 1).unwrap_or(0)));
        }
        drop(st);
        let mut b = [0u8; 8];
        self.index
            .read_exact_at(&mut b, index * 8)
            .map_err(io("index"))?;
        Ok((u64::from_le_bytes(b), 0))
    }

    /// Recomputes every leaf and interior hash from the events and compares them, and the
    /// index, with what is stored. Read-only.
    pub fn verify_storage(&self) -> Result<StoreVerify, StoreError> {
        let (size, end) = {
            let st = lock(&self.state);
            (st.size, st.end)
        };
        let mut report = StoreVerify::default();
        // Pending comparisons per level: (first index, hashes).
        let mut computed: Vec<(u64, Vec<Hash256>)> = Vec::new();
        let mut lefts: Vec<Hash256> = Vec::new();
        let mut off = HEADER_LEN;
        let mut buf = Vec::new();
        let mut buf_at = HEADER_LEN;
        let read_chunk = 1u64 << 20;
        for i in 0..size {
            // Make sure the record header and payload are in the buffer.
            let need = |b: &Vec<u8>, at: u64, from: u64, n: u64| {
                from + n <= at + b.len() as u64 && from >= at
            };
            if !need(&buf, buf_at, off, RECORD_HEADER as u64) {
                buf_at = off;
                let n = (end - off).min(read_chunk);
                buf.resize(n as usize, 0);
                self.events
                    .read_exact_at(&mut buf, off)
                    .map_err(io("events"))?;
            }
            let rel = (off - buf_at) as usize;
            let rlen = buf.get(rel..).and_then(read_u32).unwrap_or(0) as usize;
            if rlen == 0 || rlen > MAX_RECORD || off + (RECORD_HEADER + rlen) as u64 > end {
                return Err(corrupt(
                    "events",
                    format!("record {i} at offset {off}: bad length {rlen}"),
                ));
            }
            if !need(&buf, buf_at, off, (RECORD_HEADER + rlen) as u64) {
                buf_at = off;
                let n = (end - off).min(read_chunk.max((RECORD_HEADER + rlen) as u64));
                buf.resize(n as usize, 0);
                self.events
                    .read_exact_at(&mut buf, off)
                    .map_err(io("events"))?;
            }
            let rel = (off - buf_at) as usize;
            let check = buf.get(rel + 4..rel + 12).unwrap_or(&[]);
            let payload = buf
                .get(rel + RECORD_HEADER..rel + RECORD_HEADER + rlen)
                .unwrap_or(&[]);
            let leaf = merkle::leaf_hash(payload);
            if check != record_check(EVENT_DOMAIN, i, &leaf) {
                return Err(corrupt(
                    "events",
                    format!("record {i} at offset {off}: checksum mismatch"),
                ));
            }
            let (stored_off, _) = self.offset_of(i)?;
            if stored_off != off {
                return Err(corrupt(
                    "index",
                    format!("entry {i}: offset {stored_off}, the record is at {off}"),
                ));
            }
            // Push into the recomputation: `lefts[l]` is the last even node of level l,
            // the left sibling of the next odd one.
            let mut idx = i;
            let mut hash = leaf;
            let mut l = 0usize;
            loop {
                if computed.len() <= l {
                    computed.push((idx, Vec::new()));
                    lefts.push(Hash256::default());
                }
                if let Some((_, v)) = computed.get_mut(l) {
                    v.push(hash);
                }
                if idx & 1 == 0 {
                    if let Some(s) = lefts.get_mut(l) {
                        *s = hash;
                    }
                    break;
                }
                let left = lefts.get(l).copied().unwrap_or_default();
                hash = merkle::node_hash(&left, &hash);
                idx >>= 1;
                l += 1;
            }
            off += (RECORD_HEADER + rlen) as u64;
            report.entries += 1;
            if (i + 1) % FLUSH_EVERY == 0 || i + 1 == size {
                report.interior += self.compare_levels(&mut computed)?;
            }
        }
        self.verify_tiles()?;
        Ok(report)
    }

    /// Compares every synced tile with the (already verified) level hashes.
    fn verify_tiles(&self) -> Result<(), StoreError> {
        let d = lock(&self.state).header.derived_entries;
        let blocks = d / TILE_LEAVES;
        let per_read = 1024u64;
        let mut b = 0;
        while b < blocks {
            let n = per_read.min(blocks - b);
            let mut buf = vec![0u8; (n * TILE_BYTES) as usize];
            self.tiles
                .read_exact_at(&mut buf, b * TILE_BYTES)
                .map_err(io("tiles"))?;
            for l in 0..TILE_LEVELS {
                let per = TILE_LEAVES >> l;
                let stored = self.stored_range(l as usize, b * per, (n * per) as usize)?;
                for k in 0..n {
                    for j in 0..per {
                        let at = ((k * TILE_HASHES + tile_level_start(l) + j) * 32) as usize;
                        let want = stored.get((k * per + j) as usize);
                        if buf.get(at..at + 32) != want.map(|h| &h.as_bytes()[..]) {
                            return Err(corrupt(
                                "tiles",
                                format!(
                                    "tile {} level {l} index {}: stored hash differs from the level file",
                                    b + k,
                                    (b + k) * per + j
                                ),
                            ));
                        }
                    }
                }
            }
            b += n;
        }
        Ok(())
    }

    /// Compares computed hashes with stored ones.
    fn compare_levels(&self, computed: &mut [(u64, Vec<Hash256>)]) -> Result<u64, StoreError> {
        let mut n = 0;
        for (l, (first, v)) in computed.iter_mut().enumerate() {
            if v.is_empty() {
                continue;
            }
            let stored = self.stored_range(l, *first, v.len())?;
            for (k, (a, b)) in v.iter().zip(stored.iter()).enumerate() {
                if a != b {
                    let what = if l == 0 { "leaf hash" } else { "interior hash" };
                    return Err(corrupt(
                        &level_name(l),
                        format!("{what} level {l} index {}: stored hash differs from the recomputed one", *first + k as u64),
                    ));
                }
            }
            if l > 0 {
                n += v.len() as u64;
            }
            *first += v.len() as u64;
            v.clear();
        }
        Ok(n)
    }

    fn stored_range(&self, l: usize, first: u64, count: usize) -> Result<Vec<Hash256>, StoreError> {
        type Snapshot = (Option<Arc<dyn StorageFile>>, u64, Vec<(u64, Hash256)>);
        let (file, flushed, mem): Snapshot = {
            let st = lock(&self.state);
            let Some(level) = st.levels.get(l) else {
                return Err(corrupt(&level_name(l), "level missing"));
            };
            let mem = (first..first + count as u64)
                .filter_map(|i| level.get_mem(i).map(|h| (i, h)))
                .collect();
            (st.level_files.get(l).cloned(), level.base, mem)
        };
        let mut out = Vec::with_capacity(count);
        let on_disk = flushed.saturating_sub(first).min(count as u64);
        if on_disk > 0 {
            let f = file.ok_or_else(|| corrupt(&level_name(l), "file missing"))?;
            let mut buf = vec![0u8; (on_disk * 32) as usize];
            f.read_exact_at(&mut buf, first * 32)
                .map_err(io(&level_name(l)))?;
            out.extend(buf.chunks_exact(32).filter_map(Hash256::from_slice));
        }
        out.extend(
            mem.into_iter()
                .filter(|(i, _)| *i >= first + on_disk)
                .map(|(_, h)| h),
        );
        if out.len() != count {
            return Err(corrupt(
                &level_name(l),
                format!("hashes from {first} missing"),
            ));
        }
        Ok(out)
    }
}

fn read_record(
    f: &dyn StorageFile,
    off: u64,
    domain: &[u8],
    index: u64,
) -> Result<Vec<u8>, String> {
    let mut h = [0u8; RECORD_HEADER];
    f.read_exact_at(&mut h, off)
        .map_err(|_| "record header runs past the end".to_owned())?;
    let rlen = read_u32(&h).unwrap_or(0) as usize;
    if rlen == 0 || rlen > MAX_RECORD {
        return Err(format!("bad record length {rlen}"));
    }
    let mut p = vec![0u8; rlen];
    f.read_exact_at(&mut p, off + RECORD_HEADER as u64)
        .map_err(|_| "record runs past the end".to_owned())?;
    if h.get(4..12) != Some(&record_check(domain, index, &merkle::leaf_hash(&p))[..]) {
        return Err("checksum mismatch".into());
    }
    Ok(p)
}

impl NodeSource for Shared {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash256, MerkleError> {
        let file = {
            let st = lock(&self.state);
            if level >= 64 || index >= (st.size >> level) {
                return Err(MerkleError::Source(format!(
                    "no node at level {level} index {index} in a tree of {}",
                    st.size
                )));
            }
            let lv = st.levels.get(level as usize);
            if let Some(h) = lv.and_then(|lv| lv.get_mem(index)) {
                return Ok(h);
            }
            st.level_files.get(level as usize).cloned()
        };
        let f = file.ok_or_else(|| MerkleError::Source(format!("level {level} has no file")))?;
        let mut b = [0u8; 32];
        f.read_exact_at(&mut b, index * 32)
            .map_err(|e| MerkleError::Source(format!("{}: {e}", level_name(level as usize))))?;
        Ok(Hash256::from_bytes(b))
    }
}

/// A node source with one tile read ahead: the four lowest siblings of a proof come from
/// one read instead of four.
struct WithTile<'a> {
    store: &'a Shared,
    block: u64,
    tile: Option<Vec<u8>>,
}

impl NodeSource for WithTile<'_> {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash256, MerkleError> {
        if let Some(tile) = &self.tile {
            if level < TILE_LEVELS && index >> (TILE_LEVELS - level) == self.block {
                let j = index - (self.block << (TILE_LEVELS - level));
                let at = ((tile_level_start(level) + j) * 32) as usize;
                if let Some(h) = tile.get(at..at + 32).and_then(Hash256::from_slice) {
                    return Ok(h);
                }
            }
        }
        self.store.perfect(level, index)
    }
}

impl Shared {
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash256>, MerkleError> {
        let block = index / TILE_LEAVES;
        let (synced, in_memory) = {
            let st = lock(&self.state);
            let in_memory = self.memory_level == 0
                || st
                    .levels
                    .first()
                    .is_some_and(|lv| lv.base <= block * TILE_LEAVES);
            (st.header.derived_entries / TILE_LEAVES, in_memory)
        };
        let tile = if block < synced && !in_memory && (block + 1) * TILE_LEAVES <= size {
            let mut buf = vec![0u8; TILE_BYTES as usize];
            self.tiles
                .read_exact_at(&mut buf, block * TILE_BYTES)
                .map_err(|e| MerkleError::Source(format!("tiles: {e}")))?;
            Some(buf)
        } else {
            None
        };
        merkle::inclusion_proof(
            &WithTile {
                store: self,
                block,
                tile,
            },
            index,
            size,
        )
    }

    /// Queues `records` for the committer; returns the index of the first and the size
    /// at which all are durable. `waiter` is woken once they are.
    fn enqueue(&self, records: &[&[u8]], waiter: Option<Waiter>) -> Result<(u64, u64), StoreError> {
        if !self.write {
            return Err(StoreError::ReadOnly);
        }
        let mut leaves = Vec::with_capacity(records.len());
        for r in records {
            if r.is_empty() || r.len() > MAX_RECORD {
                return Err(StoreError::RecordSize(r.len()));
            }
            leaves.push(merkle::leaf_hash(r));
        }
        let mut st = lock(&self.state);
        if let Some(f) = &st.failed {
            return Err(StoreError::Failed(f.clone()));
        }
        let first = st.next_index;
        let mut q = std::mem::take(&mut st.queue);
        for (r, leaf) in records.iter().zip(leaves) {
            let me = st.next_index;
            st.next_index += 1;
            let at = st.next_offset;
            st.next_offset += (RECORD_HEADER + r.len()) as u64;
            frame(&mut q, EVENT_DOMAIN, me, r, &leaf);
            st.queue_leaves.push(leaf);
            st.queue_offsets.push(at);
        }
        st.queue = q;
        let last = st.next_index;
        if let Some(w) = waiter {
            st.waiters.push((last, w));
        }
        if st.committer_idle {
            st.committer_idle = false;
            self.work.notify_one();
        }
        Ok((first, last))
    }

    fn append_many(&self, records: &[&[u8]]) -> Result<u64, StoreError> {
        let me = std::thread::current();
        let (first, last) = self.enqueue(records, Some(Waiter::Thread(me)))?;
        loop {
            if self.durable.load(Ordering::Acquire) >= last {
                return Ok(first);
            }
            std::thread::park();
            if self.durable.load(Ordering::Acquire) >= last {
                return Ok(first);
            }
            // Woken without the records durable: a failure, or a spurious wake-up.
            let st = lock(&self.state);
            if st.size >= last {
                return Ok(first);
            }
            if let Some(f) = &st.failed {
                return Err(StoreError::Failed(f.clone()));
            }
        }
    }

    fn append_async(&self, records: &[&[u8]]) -> Appending<'_> {
        match self.enqueue(records, None) {
            Ok((first, last)) => Appending {
                shared: Some(self),
                first,
                last,
                error: None,
                id: None,
            },
            Err(e) => Appending {
                shared: None,
                first: 0,
                last: 0,
                error: Some(e),
                id: None,
            },
        }
    }

    fn read(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        let (off, _) = self.offset_of(index)?;
        read_record(self.events.as_ref(), off, EVENT_DOMAIN, index).map_err(|reason| {
            corrupt(
                "events",
                format!("record {index} at offset {off}: {reason}"),
            )
        })
    }

    fn add_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        if !self.write {
            return Err(StoreError::ReadOnly);
        }
        if note.is_empty() || note.len() > MAX_RECORD {
            return Err(StoreError::RecordSize(note.len()));
        }
        self.sync_marker()?;
        let mut guard = self.fail_on_panic();
        let mut st = self.become_leader()?;
        guard.holds_leader = true;
        let n = st.checkpoints.len() as u64;
        let at = st.checkpoints_end;
        let mut rec = Vec::with_capacity(note.len() + RECORD_HEADER);
        frame(
            &mut rec,
            CHECKPOINT_DOMAIN,
            n,
            note,
            &merkle::leaf_hash(note),
        );
        drop(st);
        let r = self
            .ckpt
            .write_all_at(&rec, at)
            .and_then(|()| self.ckpt.sync_data())
            .map_err(io("checkpoints"))
            .and_then(|()| self.storage.sync_dir().map_err(io(".")));
        st = lock(&self.state);
        self.release_leader(&mut st);
        guard.holds_leader = false;
        match r {
            Ok(()) => {
                st.checkpoints.push(note.to_vec());
                st.checkpoints_end = at + rec.len() as u64;
                Ok(())
            }
            Err(e) => {
                st.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(lock(&self.state).checkpoints.clone())
    }
}

/// The future of [`LogStore::append_durable`] on a [`FileStore`]: the records are queued
/// when it is made; it resolves to the index of the first once all are durable.
#[must_use = "the records are queued already; await this to know they are durable"]
pub struct Appending<'a> {
    shared: Option<&'a Shared>,
    first: u64,
    last: u64,
    error: Option<StoreError>,
    /// Set once the future has registered a waker.
    id: Option<u64>,
}

impl Future for Appending<'_> {
    type Output = Result<u64, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(sh) = this.shared else {
            return Poll::Ready(Err(this.error.take().unwrap_or_else(|| {
                StoreError::Failed("append polled after it ended".into())
            })));
        };
        if sh.durable.load(Ordering::Acquire) >= this.last {
            this.shared = None;
            return Poll::Ready(Ok(this.first));
        }
        let mut st = lock(&sh.state);
        if st.size >= this.last {
            this.shared = None;
            return Poll::Ready(Ok(this.first));
        }
        if let Some(f) = &st.failed {
            this.shared = None;
            return Poll::Ready(Err(StoreError::Failed(f.clone())));
        }
        if let Some(id) = this.id {
            // Polled again: update its waker rather than adding a second one.
            for (_, w) in st.waiters.iter_mut() {
                if let Waiter::Task(i, waker) = w {
                    if *i == id {
                        waker.clone_from(cx.waker());
                        return Poll::Pending;
                    }
                }
            }
        }
        let id = st.next_task;
        st.next_task += 1;
        this.id = Some(id);
        st.waiters
            .push((this.last, Waiter::Task(id, cx.waker().clone())));
        Poll::Pending
    }
}

impl FileStore {
    /// Opens (or, for a writer, creates) the log in `storage`. A writer starts its
    /// committer thread.
    pub fn open(storage: Arc<dyn Storage>, opts: OpenOptions) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared::open(storage, opts)?);
        let committer = if opts.write {
            let sh = shared.clone();
            let t = std::thread::Builder::new()
                .name("tds-log-commit".into())
                .spawn(move || sh.run_committer())
                .map_err(io("committer thread"))?;
            Some(t)
        } else {
            None
        };
        Ok(FileStore { shared, committer })
    }

    /// What opening found.
    pub fn recovery(&self) -> &Recovery {
        self.shared.recovery()
    }

    /// Writes a commit marker covering everything durable and syncs it, so no acknowledged
    /// record is left after the marker (called on open, after checkpoints and on drop).
    pub fn sync_marker(&self) -> Result<(), StoreError> {
        self.shared.sync_marker()
    }

    /// Writes the derived files and a fresh commit marker now.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.shared.flush()
    }

    /// Recomputes every leaf and interior hash from the events and compares them, and the
    /// index, with what is stored. Read-only.
    pub fn verify_storage(&self) -> Result<StoreVerify, StoreError> {
        self.shared.verify_storage()
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
        self.shared.checkpoints()
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        if let Some(t) = self.committer.take() {
            lock(&self.shared.state).shutdown = true;
            self.shared.work.notify_one();
            if t.thread().id() == std::thread::current().id() {
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
            // Best effort: a later open recovers the same state without it.
            let _ = self.shared.sync_marker();
        }
    }
}
