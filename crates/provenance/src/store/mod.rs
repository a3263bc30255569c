//! Log storage: the [`LogStore`] trait, an in-memory store and the durable file store.
//!
//! # The file store
//!
//! Files in one directory (`spec/provenance.md` §2 has the bytes):
//!
//! - `events`: a 4096-byte header with two commit-marker slots, then records
//!   `len (u32 LE) ‖ check (8) ‖ event bytes`, where `check` binds the record's index and
//!   leaf hash. The file is extended with zeros ahead of use, so a zero length ends the log.
//! - `level-NN`: the hashes of the perfect subtrees of level `NN` (32 bytes each, in order);
//!   `level-00` holds the leaf hashes. `index`: the byte offset of each record (u64 LE).
//!   `tiles`: the four lowest levels of each block of 16 leaves, together.
//! - `checkpoints`: signed checkpoint notes, framed like events.
//! - `ids`: the entries by the agreement and asset ids their events name.
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
//! [`Recovery`]). The level, index and tile files are derived data written every 65,536
//! entries; the header says how much of them is synced, and the rest is recomputed from
//! the events on open.
//!
//! The code: `format` (the bytes and the one record parser), `open` (recovery in named
//! steps), `commit` (the committer and the leader role), `derived` (the tree, derived
//! files, reads and proofs), `verify`, `ids` (the id index), `file` (the [`FileStore`]
//! facade) and `memory` ([`MemoryStore`]).

use std::future::Future;
use std::pin::Pin;

use tds_core::hash::Hash256;
use tds_core::merkle::{self, MerkleError, NodeSource};

mod commit;
mod copy;
mod derived;
mod file;
mod format;
pub(crate) mod ids;
mod memory;
mod open;
mod sync;
#[cfg(test)]
mod tests;
mod verify;

pub use commit::Appending;
pub use copy::copy_cut;
pub use file::{FileStore, OpenOptions, Recovery};
pub use memory::MemoryStore;
pub use verify::StoreVerify;

/// [`LogStore::verify_storage`]'s default (for [`crate::log::recompute`]).
pub(crate) fn verify_recompute<S: LogStore + ?Sized>(store: &S) -> Result<StoreVerify, StoreError> {
    verify::recompute(store)
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O error on one of the log's files.
    #[error("log file {file}")]
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
    /// Loading a file into memory needs more than can be allocated.
    #[error("log file {file}: cannot allocate memory to load {bytes} bytes")]
    OutOfMemory {
        /// The file.
        file: String,
        /// The bytes it would take.
        bytes: u64,
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
    #[error("log: record of {0} bytes (must be 1 to {max})", max = format::MAX_RECORD)]
    RecordSize(usize),
}

impl tds_core::ErrorCode for StoreError {
    fn code(&self) -> &'static str {
        match self {
            StoreError::Io { .. } => "store.io",
            StoreError::Corrupt { .. } => "store.corrupt",
            StoreError::OutOfMemory { .. } => "store.out_of_memory",
            StoreError::Failed(_) => "store.failed",
            StoreError::ReadOnly => "store.read_only",
            StoreError::Missing(_) => "store.missing",
            StoreError::OutOfRange { .. } => "store.out_of_range",
            StoreError::RecordSize(_) => "store.record_size",
        }
    }
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

/// A log at one instant, taken by [`LogStore::cut`]: its size and the checkpoint notes
/// stored by then (each of a size at most `size`). Entries below `size` never change, so
/// they can be copied afterwards ([`copy_cut`]) while the log grows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogCut {
    /// Entries durable at the instant.
    pub size: u64,
    /// The checkpoint notes stored at the instant, oldest first.
    pub checkpoints: Vec<Vec<u8>>,
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
    /// durable (the size, for no records).
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

    /// The log at one instant ([`LogCut`]), with `at_cut` run at that instant: while it
    /// runs, no append becomes durable and no checkpoint is stored, so a caller can take
    /// a view of other state (a key-value store's snapshot) that agrees exactly with this
    /// prefix of the log. Appenders wait meanwhile, so `at_cut` should be short, and it
    /// must not append to this log or store a checkpoint (it would wait for itself). The
    /// default runs `at_cut` and then reads the size: right only for a store nobody
    /// appends to concurrently.
    fn cut(&self, at_cut: &mut dyn FnMut()) -> Result<LogCut, StoreError> {
        at_cut();
        Ok(LogCut {
            size: self.size(),
            checkpoints: self.checkpoints()?,
        })
    }

    /// Checks every stored record and hash; read-only. The default reads every record,
    /// recomputes its leaf hash and every interior hash, and compares them with the nodes
    /// the store serves; [`FileStore`] also checks its index and tiles.
    fn verify_storage(&self) -> Result<StoreVerify, StoreError> {
        verify::recompute(self)
    }

    /// Notes that durable entry `index` holds an event naming `ids` (its agreement and
    /// asset ids), for [`LogStore::entries_naming`]. [`crate::Log`] calls it after each
    /// append. It never fails: an index is derived data, and what it misses is read back
    /// from the events. The default keeps no index.
    fn note_ids(&self, index: u64, ids: &[Hash256]) {
        let _ = (index, ids);
    }

    /// The entries below the size whose events name `id` as their agreement or an asset,
    /// ascending, from the store's index; `None` if the store keeps none (the default), in
    /// which case [`crate::Log::events_for`] reads every event.
    fn entries_naming(&self, id: &Hash256) -> Result<Option<Vec<u64>>, StoreError> {
        let _ = id;
        Ok(None)
    }
}

// A boxed store is a store, so one `Log<Box<dyn LogStore>>` type serves both backends.
impl NodeSource for Box<dyn LogStore> {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash256, MerkleError> {
        (**self).perfect(level, index)
    }
}

impl LogStore for Box<dyn LogStore> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn append(&self, record: &[u8]) -> Result<u64, StoreError> {
        (**self).append(record)
    }
    fn append_many(&self, records: &[&[u8]]) -> Result<u64, StoreError> {
        (**self).append_many(records)
    }
    fn append_durable<'a>(&'a self, records: &[&[u8]]) -> AppendFuture<'a> {
        (**self).append_durable(records)
    }
    fn read(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        (**self).read(index)
    }
    fn add_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        (**self).add_checkpoint(note)
    }
    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        (**self).checkpoints()
    }
    fn cut(&self, at_cut: &mut dyn FnMut()) -> Result<LogCut, StoreError> {
        (**self).cut(at_cut)
    }
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash256>, MerkleError> {
        (**self).inclusion_proof(index, size)
    }
    fn leaf(&self, index: u64) -> Result<Hash256, StoreError> {
        (**self).leaf(index)
    }
    fn verify_storage(&self) -> Result<StoreVerify, StoreError> {
        (**self).verify_storage()
    }
    fn note_ids(&self, index: u64, ids: &[Hash256]) {
        (**self).note_ids(index, ids)
    }
    fn entries_naming(&self, id: &Hash256) -> Result<Option<Vec<u64>>, StoreError> {
        (**self).entries_naming(id)
    }
}
