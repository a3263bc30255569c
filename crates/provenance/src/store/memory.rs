//! A store in memory.

use std::sync::{Mutex, MutexGuard};

use tds_core::hash::Hash256;
use tds_core::merkle::{self, MerkleError, NodeSource};

use super::format::MAX_RECORD;
use super::ids::IdIndex;
use super::{LogCut, LogStore, StoreError};

/// Records, their tree, and checkpoint notes.
#[derive(Default)]
struct MemoryParts {
    records: Vec<Vec<u8>>,
    tree: merkle::MemoryTree,
    checkpoints: Vec<Vec<u8>>,
}

/// A store in memory, for tests and for embedding where durability comes from elsewhere.
pub struct MemoryStore {
    inner: Mutex<MemoryParts>,
    ids: IdIndex,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            inner: Mutex::default(),
            ids: IdIndex::in_memory(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn parts(&self) -> MutexGuard<'_, MemoryParts> {
        // Every holder leaves the parts consistent before anything that can panic.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl NodeSource for MemoryStore {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash256, MerkleError> {
        self.parts().tree.perfect(level, index)
    }
}

impl LogStore for MemoryStore {
    fn size(&self) -> u64 {
        self.parts().tree.size()
    }

    fn append(&self, record: &[u8]) -> Result<u64, StoreError> {
        if record.is_empty() || record.len() > MAX_RECORD {
            return Err(StoreError::RecordSize(record.len()));
        }
        let mut g = self.parts();
        let i = g.tree.size();
        g.records.push(record.to_vec());
        g.tree.push(merkle::leaf_hash(record));
        Ok(i)
    }

    fn read(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        let g = self.parts();
        let size = g.tree.size();
        usize::try_from(index)
            .ok()
            .and_then(|i| g.records.get(i))
            .cloned()
            .ok_or(StoreError::OutOfRange { index, size })
    }

    fn add_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        self.parts().checkpoints.push(note.to_vec());
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.parts().checkpoints.clone())
    }

    /// Holds the store's lock while `at_cut` runs: appends wait for it.
    fn cut(&self, at_cut: &mut dyn FnMut()) -> Result<LogCut, StoreError> {
        let g = self.parts();
        at_cut();
        Ok(LogCut {
            size: g.tree.size(),
            checkpoints: g.checkpoints.clone(),
        })
    }

    fn note_ids(&self, index: u64, ids: &[Hash256]) {
        self.ids.note(index, ids, &|i| self.read(i));
    }

    fn entries_naming(&self, id: &Hash256) -> Result<Option<Vec<u64>>, StoreError> {
        self.ids.query(id, self.size(), &|i| self.read(i)).map(Some)
    }
}
