//! A store shim for tests: writes fail with the error of a full disk (`ENOSPC`) while it
//! is "full"; reads always go through. Used by the usage suite and the full-disk faults.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use tds_connector::store::{Batch, CommitFuture, Entry, Snapshot, Store, StoreError, Table};

/// Wraps `inner`; see the module.
pub struct FullStore {
    inner: Arc<dyn Store>,
    full: AtomicBool,
    refused: AtomicU64,
}

impl FullStore {
    /// Not full yet.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            full: AtomicBool::new(false),
            refused: AtomicU64::new(0),
        }
    }

    /// Full (every write refused) or not.
    pub fn set_full(&self, full: bool) {
        self.full.store(full, SeqCst);
    }

    /// Writes refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(SeqCst)
    }

    fn refuse(&self) -> Option<StoreError> {
        if !self.full.load(SeqCst) {
            return None;
        }
        self.refused.fetch_add(1, SeqCst);
        Some(StoreError::Io(
            std::io::Error::from_raw_os_error(28).to_string(),
        ))
    }
}

impl Store for FullStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }

    fn scan_prefix_after(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.inner.scan_prefix_after(table, prefix, after, limit)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        match self.refuse() {
            Some(e) => Err(e),
            None => self.inner.commit(batch),
        }
    }

    fn commit_async(&self, batch: Batch) -> CommitFuture {
        match self.refuse() {
            Some(e) => CommitFuture::ready(Err(e)),
            None => self.inner.commit_async(batch),
        }
    }

    fn counter_add(&self, table: Table, key: &[u8], delta: u64) -> Result<u64, StoreError> {
        match self.refuse() {
            Some(e) => Err(e),
            None => self.inner.counter_add(table, key, delta),
        }
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        self.inner.snapshot()
    }
}
