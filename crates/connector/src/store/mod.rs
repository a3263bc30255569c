//! The connector's durable state: a key-value [`Store`] over bytes (decision 0015).
//!
//! Keys and values are bytes in named [`Table`]s; typed wrappers above this module write
//! values as canonical CBOR and choose key layouts (an agreement's id, an offer id, a
//! counter per agreement). Writes go in a [`Batch`], applied all or nothing, and a commit
//! returns once the batch is durable. Counters ([`Op::Add`]) are read-modify-write inside
//! the backend's write transaction, so concurrent adds (usage under concurrent transfers)
//! add up exactly, also between several node replicas sharing one database.
//!
//! Nothing in [`Store`] assumes one process: no iteration over live state, no in-memory
//! locks handed to callers, no callbacks. A PostgreSQL backend fits the same trait (one
//! SQL transaction per group of batches; `Add` as `INSERT .. ON CONFLICT DO UPDATE`).
//!
//! Backends: [`MemoryStore`] (tests, no durability) and [`RedbStore`] (the embedded
//! default, one redb file with group commit by a committer thread).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;

mod memory;
mod redb_store;

pub use memory::MemoryStore;
pub use redb_store::{row_counts_read_only, write_snapshot, RedbStats, RedbStore, FILE_NAME};

/// A key and its value, as scans return them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The longest key: 1 KiB.
pub const MAX_KEY: usize = 1024;
/// The largest value: 16 MiB.
pub const MAX_VALUE: usize = 16 << 20;
/// The largest batch (keys plus values of all its operations): 64 MiB.
pub const MAX_BATCH: usize = 64 << 20;
/// The most entries one scan returns, whatever the limit asked.
pub const MAX_SCAN: usize = 10_000;

/// A table of the connector's state. The names are stable: they are table names on disk
/// (and in a future SQL schema).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Offers this side makes.
    Offers,
    /// Assets this side serves.
    Assets,
    /// Negotiations in progress or ended.
    Negotiations,
    /// Agreements this side is a party of.
    Agreements,
    /// Terminations of agreements.
    Terminations,
    /// Usage counters and records (uses, bytes) per agreement.
    Usage,
    /// Contract request nonces already seen.
    Nonces,
    /// Transfers and their resume state.
    Transfers,
    /// Duties with deadlines (delete within, report every).
    Duties,
    /// The store's own metadata (schema version and the like).
    Meta,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 10] = [
        Table::Offers,
        Table::Assets,
        Table::Negotiations,
        Table::Agreements,
        Table::Terminations,
        Table::Usage,
        Table::Nonces,
        Table::Transfers,
        Table::Duties,
        Table::Meta,
    ];

    /// The stable name, e.g. `"agreements"`.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Offers => "offers",
            Table::Assets => "assets",
            Table::Negotiations => "negotiations",
            Table::Agreements => "agreements",
            Table::Terminations => "terminations",
            Table::Usage => "usage",
            Table::Nonces => "nonces",
            Table::Transfers => "transfers",
            Table::Duties => "duties",
            Table::Meta => "meta",
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One write of a [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The table.
        table: Table,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Removes `key` (nothing if absent).
    Delete {
        /// The table.
        table: Table,
        /// The key.
        key: Vec<u8>,
    },
    /// Adds `delta` to the counter at `key` (absent: 0), inside the write transaction.
    /// A counter's value is 8 bytes, the count as a big-endian `u64`. The batch is refused
    /// (`kv.overflow`, `kv.not_counter`) if the sum overflows or the value there is not a
    /// counter.
    Add {
        /// The table.
        table: Table,
        /// The key.
        key: Vec<u8>,
        /// What to add.
        delta: u64,
    },
}

impl Op {
    /// The table written.
    pub fn table(&self) -> Table {
        match self {
            Op::Put { table, .. } | Op::Delete { table, .. } | Op::Add { table, .. } => *table,
        }
    }

    /// The key written.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } | Op::Add { key, .. } => key,
        }
    }

    /// Bytes this operation counts against [`MAX_BATCH`].
    fn size(&self) -> usize {
        match self {
            Op::Put { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } => key.len(),
            Op::Add { key, .. } => key.len() + 8,
        }
    }
}

/// Writes applied together: all of them or none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put {
            table,
            key: key.into(),
            value: value.into(),
        });
    }

    /// Adds a delete.
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete {
            table,
            key: key.into(),
        });
    }

    /// Adds a counter increment (see [`Op::Add`]).
    pub fn add(&mut self, table: Table, key: impl Into<Vec<u8>>, delta: u64) {
        self.ops.push(Op::Add {
            table,
            key: key.into(),
            delta,
        });
    }

    /// Adds an operation.
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values (what [`MAX_BATCH`] bounds).
    pub fn size(&self) -> usize {
        self.ops.iter().map(Op::size).sum()
    }

    /// Checks the bounds ([`MAX_KEY`], [`MAX_VALUE`], [`MAX_BATCH`]); backends call this
    /// before anything is written.
    pub fn check(&self) -> Result<(), StoreError> {
        let mut total = 0usize;
        for op in &self.ops {
            check_key(op.key())?;
            if let Op::Put { value, .. } = op {
                if value.len() > MAX_VALUE {
                    return Err(StoreError::TooLarge {
                        what: "value",
                        size: value.len(),
                        limit: MAX_VALUE,
                    });
                }
            }
            total = total.saturating_add(op.size());
        }
        if total > MAX_BATCH {
            return Err(StoreError::TooLarge {
                what: "batch",
                size: total,
                limit: MAX_BATCH,
            });
        }
        Ok(())
    }
}

impl From<Vec<Op>> for Batch {
    fn from(ops: Vec<Op>) -> Self {
        Batch { ops }
    }
}

/// Checks a key's length.
pub(crate) fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.len() > MAX_KEY {
        return Err(StoreError::TooLarge {
            what: "key",
            size: key.len(),
            limit: MAX_KEY,
        });
    }
    Ok(())
}

/// Why a store operation failed. Cloneable: one failed group commit reports the same
/// error to every caller of the group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A key, value or batch over its limit; nothing was written.
    #[error("{what} of {size} bytes is over the limit of {limit}")]
    TooLarge {
        /// `"key"`, `"value"` or `"batch"`.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A counter add would overflow `u64`; the batch was not applied.
    #[error("counter {table}/{key} would overflow")]
    Overflow {
        /// The table.
        table: Table,
        /// The key, hex.
        key: String,
    },
    /// An add to a value that is not a counter (8 bytes); the batch was not applied.
    #[error("{table}/{key} holds {len} bytes, not a counter")]
    NotCounter {
        /// The table.
        table: Table,
        /// The key, hex.
        key: String,
        /// The value's length.
        len: usize,
    },
    /// The storage failed reading or writing (disk, file system).
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// The stored data does not check (checksums, structure).
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// The store is open elsewhere (this process or another); one store per file.
    #[error("{0}: already open by another store (one store per file)")]
    Locked(String),
    /// The store is shut down (or its committer stopped); nothing more is accepted.
    #[error("store closed: {0}")]
    Closed(String),
    /// The storage engine refused for another reason.
    #[error("storage engine: {0}")]
    Backend(String),
}

impl tds_core::ErrorCode for StoreError {
    fn code(&self) -> &'static str {
        match self {
            StoreError::TooLarge { .. } => "kv.too_large",
            StoreError::Overflow { .. } => "kv.overflow",
            StoreError::NotCounter { .. } => "kv.not_counter",
            StoreError::Io(_) => "kv.io",
            StoreError::Corrupt(_) => "kv.corrupt",
            StoreError::Locked(_) => "kv.locked",
            StoreError::Closed(_) => "kv.closed",
            StoreError::Backend(_) => "kv.backend",
        }
    }
}

/// Hex of a key, for messages.
fn hex_key(key: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(key.len().min(64) * 2 + 3);
    for b in key.iter().take(64) {
        let _ = write!(s, "{b:02x}");
    }
    if key.len() > 64 {
        s.push_str("...");
    }
    s
}

/// The connector's storage: tables of byte keys and values, atomic durable batches.
///
/// Every method may be called from many threads at once. [`Store::commit`] and
/// [`Store::counter_add`] block the calling thread until the write is durable; from async
/// code use [`Store::commit_async`], which blocks nothing.
pub trait Store: Send + Sync {
    /// The value at `key`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` entries (at most [`MAX_SCAN`]) whose key starts with `prefix` and
    /// comes after `after` (if given), in key order. Page through a prefix by passing the
    /// last key returned as the next `after`.
    fn scan_prefix_after(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Up to `limit` entries (at most [`MAX_SCAN`]) whose key starts with `prefix`, in key
    /// order.
    fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.scan_prefix_after(table, prefix, None, limit)
    }

    /// Applies `batch` atomically; returns once it is durable. Blocks the calling thread.
    /// An `Err` means none of it was applied.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;

    /// Applies `batch` atomically: queued now, the future resolves once it is durable
    /// (needs no particular async runtime). Dropping the future does not withdraw the
    /// batch: only the acknowledgement is lost.
    fn commit_async(&self, batch: Batch) -> CommitFuture;

    /// Adds `delta` to the counter at `key` durably and returns its new value (an
    /// [`Op::Add`] alone in a batch). Blocks the calling thread.
    fn counter_add(&self, table: Table, key: &[u8], delta: u64) -> Result<u64, StoreError>;

    /// The counter at `key` (0 if absent).
    fn counter(&self, table: Table, key: &[u8]) -> Result<u64, StoreError> {
        match self.get(table, key)? {
            None => Ok(0),
            Some(v) => decode_counter(table, key, &v),
        }
    }

    /// A view of every table as of now: the commits acknowledged before the call, none
    /// after ([`Snapshot`]). Cheap to take (a read transaction); copy it with
    /// [`write_snapshot`]. A backup takes it at the instant it cuts the provenance log
    /// (`Connector::backup`). The default refuses (`kv.backend`): a store that cannot
    /// take one.
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        Err(StoreError::Backend(
            "this store cannot take snapshots".into(),
        ))
    }
}

/// A store's tables at one instant ([`Store::snapshot`]); later commits do not show in it.
pub trait Snapshot: Send {
    /// Up to `limit` entries (at most [`MAX_SCAN`]) of `table` whose key comes after
    /// `after` (from the first if `None`), in key order. Page through a table by passing
    /// the last key returned as the next `after`.
    fn entries_after(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;
}

/// A counter's value from its 8 bytes.
pub(crate) fn decode_counter(table: Table, key: &[u8], v: &[u8]) -> Result<u64, StoreError> {
    let b: [u8; 8] = v.try_into().map_err(|_| StoreError::NotCounter {
        table,
        key: hex_key(key),
        len: v.len(),
    })?;
    Ok(u64::from_be_bytes(b))
}

/// Whether `key` is in the scan window.
pub(crate) fn in_window(key: &[u8], prefix: &[u8], after: Option<&[u8]>) -> bool {
    key.starts_with(prefix) && after.is_none_or(|a| key > a)
}

/// Where a backend applies a batch: reads see the writes applied before them.
pub(crate) trait Apply {
    /// The current value at `key`.
    fn read(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets `key`.
    fn write(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key`.
    fn remove(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError>;
}

/// Applies one batch (already checked against the bounds): first works out every
/// counter's new value, so a refused add leaves nothing of the batch written (`Ok(Err)`),
/// then writes. Returns the value after each [`Op::Add`], in order. An outer `Err` is a
/// storage failure that fails the whole transaction.
pub(crate) fn apply_batch(
    target: &mut dyn Apply,
    batch: &Batch,
) -> Result<Result<Vec<u64>, StoreError>, StoreError> {
    // Counters first: values as the batch will see them (puts and deletes before an add
    // on the same key count).
    enum Local<'a> {
        Absent,
        Bytes(&'a [u8]),
        Count(u64),
    }
    let mut seen: HashMap<(Table, &[u8]), Local<'_>> = HashMap::new();
    let mut sums = Vec::new();
    for op in batch.ops() {
        match op {
            Op::Put { table, key, value } => {
                seen.insert((*table, key), Local::Bytes(value));
            }
            Op::Delete { table, key } => {
                seen.insert((*table, key), Local::Absent);
            }
            Op::Add { table, key, delta } => {
                let current = match seen.get(&(*table, key.as_slice())) {
                    Some(Local::Absent) => Ok(0),
                    Some(Local::Bytes(v)) => decode_counter(*table, key, v),
                    Some(Local::Count(n)) => Ok(*n),
                    None => match target.read(*table, key)? {
                        None => Ok(0),
                        Some(v) => decode_counter(*table, key, &v),
                    },
                };
                let current = match current {
                    Ok(n) => n,
                    Err(e) => return Ok(Err(e)),
                };
                let Some(sum) = current.checked_add(*delta) else {
                    return Ok(Err(StoreError::Overflow {
                        table: *table,
                        key: hex_key(key),
                    }));
                };
                seen.insert((*table, key), Local::Count(sum));
                sums.push(sum);
            }
        }
    }
    let mut next = sums.iter();
    for op in batch.ops() {
        match op {
            Op::Put { table, key, value } => target.write(*table, key, value)?,
            Op::Delete { table, key } => target.remove(*table, key)?,
            Op::Add { table, key, .. } => {
                let sum = next.next().copied().unwrap_or_default();
                target.write(*table, key, &sum.to_be_bytes())?;
            }
        }
    }
    Ok(Ok(sums))
}

/// Locks a mutex; a poisoned lock is taken over (every critical section here leaves its
/// data consistent before anything that can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a commit resolves to inside the crate: the value after each add.
pub(crate) type Outcome = Result<Vec<u64>, StoreError>;

/// The rendezvous of one commit and whoever waits for it (a parked thread or a task).
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    result: Option<Outcome>,
    waker: Option<Waker>,
    thread: Option<Thread>,
}

/// The backend's end of a pending commit: [`Completion::complete`] resolves the
/// [`CommitFuture`] (or wakes the thread blocked on it). Dropped without completing, it
/// resolves the commit to `kv.closed`, so nobody waits for a backend that is gone.
pub struct Completion {
    slot: Option<Arc<Slot>>,
}

impl Completion {
    /// Resolves the commit.
    pub fn complete(self, result: Result<(), StoreError>) {
        self.finish(result.map(|()| Vec::new()));
    }

    /// Resolves the commit with the value after each add.
    pub(crate) fn finish(mut self, result: Outcome) {
        if let Some(slot) = self.slot.take() {
            resolve(&slot, result);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            resolve(
                &slot,
                Err(StoreError::Closed("the commit was abandoned".into())),
            );
        }
    }
}

fn resolve(slot: &Slot, result: Outcome) {
    let mut st = lock(&slot.state);
    st.result = Some(result);
    let waker = st.waker.take();
    let thread = st.thread.take();
    drop(st);
    if let Some(w) = waker {
        w.wake();
    }
    if let Some(t) = thread {
        t.unpark();
    }
}

/// A commit under way: resolves once the batch is durable (or refused). Made by
/// [`Store::commit_async`]; a backend makes one with [`CommitFuture::pending`] or
/// [`CommitFuture::ready`]. Needs no async runtime: it is woken through its
/// [`Waker`].
#[must_use = "the batch is queued already; await this to know it is durable"]
pub struct CommitFuture {
    inner: Inner,
}

enum Inner {
    Ready(Option<Outcome>),
    Pending(Arc<Slot>),
}

impl CommitFuture {
    /// A commit already decided.
    pub fn ready(result: Result<(), StoreError>) -> Self {
        Self::ready_outcome(result.map(|()| Vec::new()))
    }

    pub(crate) fn ready_outcome(result: Outcome) -> Self {
        CommitFuture {
            inner: Inner::Ready(Some(result)),
        }
    }

    /// A pending commit and the backend's end of it.
    pub fn pending() -> (Self, Completion) {
        let slot = Arc::new(Slot::default());
        (
            CommitFuture {
                inner: Inner::Pending(slot.clone()),
            },
            Completion { slot: Some(slot) },
        )
    }

    /// Blocks the calling thread until the commit is decided; returns the value after
    /// each add.
    pub(crate) fn wait_outcome(self) -> Outcome {
        match self.inner {
            Inner::Ready(r) => r.unwrap_or_else(|| Err(polled_after_end())),
            Inner::Pending(slot) => loop {
                let mut st = lock(&slot.state);
                if let Some(r) = st.result.take() {
                    return r;
                }
                st.thread = Some(std::thread::current());
                drop(st);
                std::thread::park();
            },
        }
    }

    /// Blocks the calling thread until the commit is decided.
    pub fn wait(self) -> Result<(), StoreError> {
        self.wait_outcome().map(|_| ())
    }
}

fn polled_after_end() -> StoreError {
    StoreError::Closed("commit polled after it ended".into())
}

impl Future for CommitFuture {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Ready(r) => Poll::Ready(
                r.take()
                    .unwrap_or_else(|| Err(polled_after_end()))
                    .map(|_| ()),
            ),
            Inner::Pending(slot) => {
                let mut st = lock(&slot.state);
                if let Some(r) = st.result.take() {
                    drop(st);
                    this.inner = Inner::Ready(None);
                    return Poll::Ready(r.map(|_| ()));
                }
                // Polled again: replace the waker rather than keep two.
                match &mut st.waker {
                    Some(w) => w.clone_from(cx.waker()),
                    None => st.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl std::fmt::Debug for CommitFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.inner {
            Inner::Ready(Some(_)) => "ready",
            Inner::Ready(None) => "ended",
            Inner::Pending(_) => "pending",
        };
        f.debug_struct("CommitFuture")
            .field("state", &state)
            .finish()
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("done", &self.slot.is_none())
            .finish()
    }
}
