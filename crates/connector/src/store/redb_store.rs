//! [`RedbStore`]: the embedded default, one redb file with group commit.
//!
//! redb commits one write transaction at a time and syncs each (`Durability::Immediate`,
//! about a millisecond here); it has no group commit of its own. So callers never commit
//! themselves: they queue their batch and wait (a parked thread, or a task through its
//! `Waker`). One committer thread takes everything queued, applies it in one write
//! transaction, commits, then wakes every caller of that group; while it commits, the
//! next group queues (decision 0008's design, decision 0015).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use redb::{
    Database, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use super::{
    apply_batch, check_key, in_window, lock, Apply, Batch, CommitFuture, Completion, Entry,
    Outcome, Snapshot, Store, StoreError, Table, MAX_BATCH, MAX_SCAN,
};

/// The file a [`RedbStore`] keeps in its data directory.
pub const FILE_NAME: &str = "connector.redb";

/// Bytes of batches the committer puts in one transaction (at least one batch).
const MAX_GROUP: usize = 4 * MAX_BATCH;

/// How long the committer may hold a commit back for more batches, when the last group
/// held several (writers are concurrent) and fewer are queued yet. What PostgreSQL's
/// `commit_delay` with `commit_siblings` does: under concurrency one sync then covers
/// more batches (each sync costs the disk's time and the kernel's CPU); a lone writer
/// (groups of one) never waits.
const LINGER: std::time::Duration = std::time::Duration::from_micros(300);

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

fn def(table: Table) -> Def {
    TableDefinition::new(table.name())
}

/// A redb error as a [`StoreError`].
fn map_err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Locked("the store file".into())
        }
        redb::Error::Corrupted(s) => StoreError::Corrupt(s),
        redb::Error::Io(e) => StoreError::Io(e.to_string()),
        redb::Error::PreviousIo => {
            StoreError::Io("an earlier I/O failure; reopen the store".into())
        }
        redb::Error::DatabaseClosed => StoreError::Closed("the database is closed".into()),
        e => StoreError::Backend(e.to_string()),
    }
}

/// Counts of the committer's work since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedbStats {
    /// Write transactions committed (each one durable sync).
    pub transactions: u64,
    /// Batches acknowledged in them.
    pub batches: u64,
}

struct Queue {
    pending: VecDeque<(Batch, Completion)>,
    /// Bytes in `pending`.
    bytes: usize,
    shutdown: bool,
    /// Set when the committer is gone (it panicked): nothing is accepted any more.
    dead: bool,
}

struct Shared {
    db: Database,
    queue: Mutex<Queue>,
    work: Condvar,
    transactions: AtomicU64,
    batches: AtomicU64,
}

/// The embedded store: one redb file, `<data dir>/connector.redb`, committed in groups by
/// a committer thread (`tds-kv-commit`). Reads are redb read transactions, concurrent
/// with the committer. One `RedbStore` per file: a second open, in this process or
/// another, fails with `kv.locked`. Dropping the store commits what is queued, then
/// closes the file.
pub struct RedbStore {
    shared: Arc<Shared>,
    committer: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store of the data directory `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
        Self::open_file(&dir.join(FILE_NAME))
    }

    /// Opens (or creates) the store in the file `path`.
    pub fn open_file(path: &Path) -> Result<Self, StoreError> {
        let db = Database::builder()
            .create(path)
            .map_err(|e| match map_err(e) {
                StoreError::Locked(_) => StoreError::Locked(path.display().to_string()),
                // Name the file: "permission denied" alone does not say where.
                StoreError::Io(e) => StoreError::Io(format!("{}: {e}", path.display())),
                e => e,
            })?;
        // Every table exists from the start, so reads never meet a missing one.
        let mut txn = db.begin_write().map_err(map_err)?;
        txn.set_durability(Durability::Immediate).map_err(map_err)?;
        for t in Table::ALL {
            txn.open_table(def(t)).map_err(map_err)?;
        }
        txn.commit().map_err(map_err)?;
        let shared = Arc::new(Shared {
            db,
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                bytes: 0,
                shutdown: false,
                dead: false,
            }),
            work: Condvar::new(),
            transactions: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let committer = std::thread::Builder::new()
            .name("tds-kv-commit".into())
            .spawn(move || sh.run_committer())
            .map_err(|e| StoreError::Io(format!("starting the committer thread: {e}")))?;
        Ok(RedbStore {
            shared,
            committer: Some(committer),
            path: path.to_path_buf(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the committer has done so far.
    pub fn stats(&self) -> RedbStats {
        RedbStats {
            transactions: self.shared.transactions.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
        }
    }

    /// Queues `batch` for the committer.
    fn enqueue(&self, batch: Batch) -> CommitFuture {
        if let Err(e) = batch.check() {
            return CommitFuture::ready(Err(e));
        }
        if batch.is_empty() {
            return CommitFuture::ready(Ok(()));
        }
        let (fut, done) = CommitFuture::pending();
        let mut q = lock(&self.shared.queue);
        if q.dead || q.shutdown {
            drop(q);
            done.complete(Err(StoreError::Closed("the committer has stopped".into())));
            return fut;
        }
        q.bytes += batch.size();
        q.pending.push_back((batch, done));
        drop(q);
        self.shared.work.notify_one();
        fut
    }
}

/// Marks the store dead if the committer unwinds: queued commits are dropped, which
/// resolves them to `kv.closed`, and later ones are refused.
struct DeadOnPanic<'a>(&'a Shared);

impl Drop for DeadOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = lock(&self.0.queue);
            q.dead = true;
            let pending = std::mem::take(&mut q.pending);
            drop(q);
            drop(pending);
        }
    }
}

impl Shared {
    fn run_committer(&self) {
        let _guard = DeadOnPanic(self);
        let mut last_group = 0usize;
        loop {
            let mut q = lock(&self.queue);
            while q.pending.is_empty() && !q.shutdown {
                q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.pending.is_empty() {
                return;
            }
            if last_group >= 2 && q.pending.len() < last_group {
                let deadline = std::time::Instant::now() + LINGER;
                while q.pending.len() < last_group && !q.shutdown {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    q = self
                        .work
                        .wait_timeout(q, left)
                        .map_or_else(|p| p.into_inner().0, |(g, _)| g);
                }
            }
            // Everything queued, up to MAX_GROUP bytes.
            let mut group = Vec::new();
            let mut bytes = 0usize;
            while let Some((b, _)) = q.pending.front() {
                let size = b.size();
                if !group.is_empty() && bytes + size > MAX_GROUP {
                    break;
                }
                bytes += size;
                if let Some(entry) = q.pending.pop_front() {
                    group.push(entry);
                }
            }
            q.bytes -= bytes;
            drop(q);
            last_group = group.len();
            let n = group.len() as u64;
            match self.commit_group(&group) {
                Ok(outcomes) => {
                    self.transactions.fetch_add(1, Ordering::Relaxed);
                    self.batches.fetch_add(n, Ordering::Relaxed);
                    for ((_, done), outcome) in group.into_iter().zip(outcomes) {
                        done.finish(outcome);
                    }
                }
                Err(e) => {
                    for (_, done) in group {
                        done.finish(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Applies the group in one write transaction and commits it durably. The outcome of
    /// each batch (a refused counter add refuses only its own batch); `Err` if the
    /// transaction failed, in which case nothing of the group is applied.
    fn commit_group(&self, group: &[(Batch, Completion)]) -> Result<Vec<Outcome>, StoreError> {
        let mut txn = self.db.begin_write().map_err(map_err)?;
        txn.set_durability(Durability::Immediate).map_err(map_err)?;
        let mut outcomes = Vec::with_capacity(group.len());
        {
            let mut w = Writer {
                txn: &txn,
                open: HashMap::new(),
            };
            for (batch, _) in group {
                outcomes.push(apply_batch(&mut w, batch)?);
            }
        }
        txn.commit().map_err(map_err)?;
        Ok(outcomes)
    }
}

/// The tables of one write transaction, opened as needed.
struct Writer<'t> {
    txn: &'t redb::WriteTransaction,
    open: HashMap<Table, redb::Table<'t, &'static [u8], &'static [u8]>>,
}

impl<'t> Writer<'t> {
    fn table(
        &mut self,
        t: Table,
    ) -> Result<&mut redb::Table<'t, &'static [u8], &'static [u8]>, StoreError> {
        match self.open.entry(t) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                Ok(e.insert(self.txn.open_table(def(t)).map_err(map_err)?))
            }
        }
    }
}

impl Apply for Writer<'_> {
    fn read(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.table(table)?;
        let v = t.get(key).map_err(map_err)?.map(|g| g.value().to_vec());
        Ok(v)
    }

    fn write(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.table(table)?.insert(key, value).map_err(map_err)?;
        Ok(())
    }

    fn remove(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.table(table)?.remove(key).map_err(map_err)?;
        Ok(())
    }
}

impl Store for RedbStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let txn = self.shared.db.begin_read().map_err(map_err)?;
        let t = txn.open_table(def(table)).map_err(map_err)?;
        let v = t.get(key).map_err(map_err)?.map(|g| g.value().to_vec());
        Ok(v)
    }

    fn scan_prefix_after(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        check_key(prefix)?;
        let limit = limit.min(MAX_SCAN);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let txn = self.shared.db.begin_read().map_err(map_err)?;
        let t = txn.open_table(def(table)).map_err(map_err)?;
        let start: &[u8] = match after {
            Some(a) if a >= prefix => a,
            _ => prefix,
        };
        for entry in t.range(start..).map_err(map_err)? {
            let (k, v) = entry.map_err(map_err)?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            if !in_window(k, prefix, after) {
                continue;
            }
            out.push((k.to_vec(), v.value().to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.enqueue(batch).wait()
    }

    fn commit_async(&self, batch: Batch) -> CommitFuture {
        self.enqueue(batch)
    }

    fn counter_add(&self, table: Table, key: &[u8], delta: u64) -> Result<u64, StoreError> {
        let mut b = Batch::new();
        b.add(table, key, delta);
        let sums = self.enqueue(b).wait_outcome()?;
        Ok(sums.first().copied().unwrap_or_default())
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        let txn = self.shared.db.begin_read().map_err(map_err)?;
        Ok(Box::new(RedbSnapshot(txn)))
    }
}

/// A [`RedbStore`] at one instant: a redb read transaction (it sees the transactions
/// committed before it began, and keeps their pages until it is dropped).
struct RedbSnapshot(redb::ReadTransaction);

impl Snapshot for RedbSnapshot {
    fn entries_after(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let limit = limit.min(MAX_SCAN);
        let t = self.0.open_table(def(table)).map_err(map_err)?;
        let range = match after {
            Some(a) => t.range::<&[u8]>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => t.range::<&[u8]>(..),
        }
        .map_err(map_err)?;
        let mut out = Vec::new();
        for entry in range.take(limit) {
            let (k, v) = entry.map_err(map_err)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// Entries read from a snapshot at a time while it is copied.
const COPY_PAGE: usize = 128;

/// Writes `snapshot` as a new store file at `path`, one that [`RedbStore::open_file`]
/// opens: every table, every entry, committed durably in transactions of at most
/// [`MAX_BATCH`] bytes. Refuses a `path` that exists. Returns the entries written.
pub fn write_snapshot(snapshot: &dyn Snapshot, path: &Path) -> Result<u64, StoreError> {
    if path.exists() {
        return Err(StoreError::Io(format!(
            "{}: exists; a snapshot is written to a new file",
            path.display()
        )));
    }
    let db = Database::builder().create(path).map_err(map_err)?;
    let mut written = 0u64;
    for table in Table::ALL {
        let mut after: Option<Vec<u8>> = None;
        // Opened in every copy (an empty table too): the store expects all of them.
        let mut txn = db.begin_write().map_err(map_err)?;
        txn.set_durability(Durability::Immediate).map_err(map_err)?;
        let mut bytes = 0usize;
        loop {
            let page = snapshot.entries_after(table, after.as_deref(), COPY_PAGE)?;
            let Some((last, _)) = page.last() else { break };
            let last = last.clone();
            {
                let mut t = txn.open_table(def(table)).map_err(map_err)?;
                for (k, v) in &page {
                    t.insert(k.as_slice(), v.as_slice()).map_err(map_err)?;
                    bytes = bytes.saturating_add(k.len() + v.len());
                    written += 1;
                }
            }
            if bytes >= MAX_BATCH {
                txn.commit().map_err(map_err)?;
                txn = db.begin_write().map_err(map_err)?;
                txn.set_durability(Durability::Immediate).map_err(map_err)?;
                bytes = 0;
            }
            after = Some(last);
        }
        txn.open_table(def(table)).map_err(map_err)?;
        txn.commit().map_err(map_err)?;
    }
    Ok(written)
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        lock(&self.shared.queue).shutdown = true;
        self.shared.work.notify_all();
        if let Some(h) = self.committer.take() {
            // Never join from the committer itself (it holds no RedbStore, but be sure).
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// The number of rows of each of `tables` in the store file of data directory `dir`,
/// read without opening the file for writing (a stopped node's home that is read-only:
/// `tds status`). A table never written counts 0. A file left by a process that did not
/// shut down cleanly needs the repair a writable open does: that is an error here.
pub fn row_counts_read_only(dir: &Path, tables: &[Table]) -> Result<Vec<u64>, StoreError> {
    let path = dir.join(FILE_NAME);
    let db = ReadOnlyDatabase::open(&path).map_err(|e| match map_err(e) {
        StoreError::Io(m) => StoreError::Io(format!("{}: {m}", path.display())),
        other => other,
    })?;
    let txn = db.begin_read().map_err(map_err)?;
    tables
        .iter()
        .map(|t| match txn.open_table(def(*t)) {
            Ok(table) => table.len().map_err(map_err),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(map_err(e)),
        })
        .collect()
}
