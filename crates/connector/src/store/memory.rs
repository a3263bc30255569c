//! [`MemoryStore`]: the [`Store`] semantics without durability, for tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use super::{
    apply_batch, check_key, in_window, lock, Apply, Batch, CommitFuture, Entry, Outcome, Snapshot,
    Store, StoreError, Table, MAX_SCAN,
};

type Tables = BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>;

/// An in-memory [`Store`]: same bounds, atomicity and counters as the durable backends,
/// nothing kept past the value's life. Commits are decided before they return.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn apply(&self, batch: &Batch) -> Outcome {
        batch.check()?;
        let mut tables = lock(&self.tables);
        // Apply to a copy of the touched entries only: a refused batch leaves nothing.
        let mut staged = Staged {
            base: &tables,
            writes: BTreeMap::new(),
        };
        let sums = apply_batch(&mut staged, batch)??;
        let writes = staged.writes;
        for ((table, key), value) in writes {
            let t = tables.entry(table).or_default();
            match value {
                Some(v) => {
                    t.insert(key, v);
                }
                None => {
                    t.remove(&key);
                }
            }
        }
        Ok(sums)
    }
}

/// Writes of one batch over the current tables.
struct Staged<'a> {
    base: &'a Tables,
    writes: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
}

impl Apply for Staged<'_> {
    fn read(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.writes.get(&(table, key.to_vec())) {
            return Ok(v.clone());
        }
        Ok(self.base.get(&table).and_then(|t| t.get(key)).cloned())
    }

    fn write(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.writes
            .insert((table, key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn remove(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.writes.insert((table, key.to_vec()), None);
        Ok(())
    }
}

impl Store for MemoryStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        Ok(lock(&self.tables)
            .get(&table)
            .and_then(|t| t.get(key))
            .cloned())
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
        let tables = lock(&self.tables);
        let Some(t) = tables.get(&table) else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        Ok(t.range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| in_window(k, prefix, after))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.apply(&batch).map(|_| ())
    }

    fn commit_async(&self, batch: Batch) -> CommitFuture {
        CommitFuture::ready_outcome(self.apply(&batch))
    }

    fn counter_add(&self, table: Table, key: &[u8], delta: u64) -> Result<u64, StoreError> {
        let mut b = Batch::new();
        b.add(table, key, delta);
        let sums = self.apply(&b)?;
        Ok(sums.first().copied().unwrap_or_default())
    }

    /// A copy of the tables (commits are applied under the same lock, so it is one
    /// instant's state).
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        Ok(Box::new(MemorySnapshot(lock(&self.tables).clone())))
    }
}

/// A [`MemoryStore`]'s tables, copied.
struct MemorySnapshot(Tables);

impl Snapshot for MemorySnapshot {
    fn entries_after(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let Some(t) = self.0.get(&table) else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Unbounded,
        };
        Ok(t.range((start, Bound::Unbounded))
            .take(limit.min(MAX_SCAN))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
