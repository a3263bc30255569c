//! The tree and the derived files: leaf and interior hashes (`level-NN`, in memory for
//! the upper levels), record offsets (`index`) and `tiles`; reads and proofs through them.

use std::sync::Arc;

use tds_core::hash::Hash256;
use tds_core::merkle::{self, MerkleError, NodeSource};

use super::file::{Shared, State};
use super::format::{
    hashes, level_name, tile_level_start, Parsed, RecordReader, ALIGN, EVENTS, EVENT_DOMAIN, INDEX,
    TILES, TILE_BYTES, TILE_LEAVES, TILE_LEVELS,
};
use super::sync::{lock, MutexGuard};
use super::{corrupt, io, StoreError};
use crate::storage::StorageFile;

impl State {
    /// Adds a durable leaf to the tree: its hash and every perfect subtree it completes.
    pub(super) fn push_leaf(&mut self, leaf: Hash256) -> Result<(), StoreError> {
        let mut idx = self.size;
        let mut hash = leaf;
        let mut l = 0usize;
        loop {
            if self.levels.len() <= l {
                self.levels.push(super::file::Level::default());
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

    /// The hash of node `i` of level `l`, which must be in memory.
    fn mem_hash(&self, l: usize, i: u64) -> Result<Hash256, StoreError> {
        self.levels
            .get(l)
            .and_then(|lv| lv.get_mem(i))
            .ok_or_else(|| corrupt(&level_name(l), format!("hash {i} is not in memory")))
    }
}

/// `n`, which counts items of a vector of `len`, as an index no larger than `len`.
fn at_most(n: u64, len: usize) -> usize {
    usize::try_from(n).map_or(len, |n| n.min(len))
}

/// What a flush of the derived files writes, taken under the lock.
struct FlushPlan {
    target: u64,
    /// (level, first hash, bytes).
    levels: Vec<(usize, u64, Vec<u8>)>,
    index_at: u64,
    index: Vec<u8>,
    tiles_at: u64,
    tiles: Vec<u8>,
    header: super::format::Header,
    files: Vec<Arc<dyn StorageFile>>,
}

impl Shared {
    /// Plans a flush of the derived files up to the last aligned entry; `None` if there
    /// is nothing to flush.
    fn plan_flush(&self, st: &State) -> Result<Option<FlushPlan>, StoreError> {
        let target = st.size / ALIGN * ALIGN;
        let d = st.header.derived_entries;
        if target <= d {
            return Ok(None);
        }
        let mut levels = Vec::new();
        for (l, level) in st.levels.iter().enumerate() {
            let upto = target >> l;
            if upto <= level.flushed {
                continue;
            }
            let mut buf = Vec::with_capacity(((upto - level.flushed) * 32) as usize);
            for i in level.flushed..upto {
                buf.extend_from_slice(st.mem_hash(l, i)?.as_bytes());
            }
            levels.push((l, level.flushed, buf));
        }
        let offsets = usize::try_from(target - st.idx_base)
            .ok()
            .and_then(|n| st.idx_mem.get(..n))
            .ok_or_else(|| corrupt(INDEX, format!("offsets up to {target} are not in memory")))?;
        let index: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        let mut tiles = Vec::new();
        for b in d / TILE_LEAVES..target / TILE_LEAVES {
            for l in 0..TILE_LEVELS {
                let per = TILE_LEAVES >> l;
                for i in b * per..(b + 1) * per {
                    tiles.extend_from_slice(st.mem_hash(l as usize, i)?.as_bytes());
                }
            }
        }
        let target_bytes = if target == st.size {
            st.end
        } else {
            usize::try_from(target - st.idx_base)
                .ok()
                .and_then(|i| st.idx_mem.get(i))
                .copied()
                .ok_or_else(|| corrupt(INDEX, format!("offset {target} is not in memory")))?
        };
        let mut header = st.header;
        header.seq += 1;
        header.committed_entries = st.size;
        header.committed_bytes = st.end;
        header.derived_entries = target;
        header.derived_bytes = target_bytes;
        Ok(Some(FlushPlan {
            target,
            levels,
            index_at: st.idx_base * 8,
            index,
            tiles_at: d / TILE_LEAVES * TILE_BYTES,
            tiles,
            header,
            files: st.level_files.clone(),
        }))
    }

    /// Writes and syncs the planned derived data, then the marker that records it.
    fn write_flush(&self, plan: &mut FlushPlan) -> Result<(), StoreError> {
        let files = &self.files;
        for (l, at, buf) in &plan.levels {
            let name = level_name(*l);
            while plan.files.len() <= *l {
                let f = files
                    .storage
                    .open(&level_name(plan.files.len()), true)
                    .map_err(io(&name))?;
                plan.files.push(f);
            }
            let f = plan
                .files
                .get(*l)
                .ok_or_else(|| corrupt(&name, "missing"))?;
            f.write_all_at(buf, at * 32).map_err(io(&name))?;
            f.sync_data().map_err(io(&name))?;
        }
        let index = files
            .index
            .as_ref()
            .ok_or_else(|| corrupt(INDEX, "not open for writing"))?;
        index
            .write_all_at(&plan.index, plan.index_at)
            .map_err(io(INDEX))?;
        index.sync_data().map_err(io(INDEX))?;
        let tiles = files
            .tiles
            .as_ref()
            .ok_or_else(|| corrupt(TILES, "not open for writing"))?;
        tiles
            .write_all_at(&plan.tiles, plan.tiles_at)
            .map_err(io(TILES))?;
        tiles.sync_data().map_err(io(TILES))?;
        files.storage.sync_dir().map_err(io("."))?;
        self.write_header(&plan.header)
    }

    /// Writes and syncs the derived files up to the last aligned entry; leader only.
    pub(super) fn flush_derived<'a>(&'a self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let mut plan = match self.plan_flush(&st) {
            Ok(Some(p)) => p,
            Ok(None) => return st,
            Err(e) => {
                let mut st = st;
                st.failed = Some(tds_core::code::full_message(&e));
                return st;
            }
        };
        drop(st);
        let r = self.write_flush(&mut plan);
        let mut st = lock(&self.state);
        match r {
            Ok(()) => {
                let target = plan.target;
                st.level_files = plan.files;
                for (l, level) in st.levels.iter_mut().enumerate() {
                    let upto = target >> l;
                    if upto > level.flushed {
                        level.flushed = upto;
                    }
                    if (l as u32) < self.memory_level && upto > level.base {
                        let synced = at_most(upto - level.base, level.mem.len());
                        level.mem.drain(..synced);
                        level.base = upto;
                    }
                }
                let synced = at_most(target - st.idx_base, st.idx_mem.len());
                st.idx_mem.drain(..synced);
                st.idx_base = target;
                st.header = plan.header;
            }
            Err(e) => st.failed = Some(tds_core::code::full_message(&e)),
        }
        st
    }

    /// The offset of record `index` and the end of the durable records.
    pub(super) fn offset_of(&self, index: u64) -> Result<(u64, u64), StoreError> {
        let (base, end, in_mem) = {
            let st = lock(&self.state);
            if index >= st.size {
                return Err(StoreError::OutOfRange {
                    index,
                    size: st.size,
                });
            }
            let in_mem = index
                .checked_sub(st.idx_base)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| st.idx_mem.get(i))
                .copied();
            (st.idx_base, st.end, in_mem)
        };
        if let Some(o) = in_mem {
            return Ok((o, end));
        }
        // Below the in-memory offsets: synced to the index file.
        let index_file =
            self.files.index.as_ref().ok_or_else(|| {
                corrupt(INDEX, format!("missing, but entry {index} is below {base}"))
            })?;
        let mut b = [0u8; 8];
        index_file
            .read_exact_at(&mut b, index * 8)
            .map_err(io(INDEX))?;
        Ok((u64::from_le_bytes(b), end))
    }

    /// The bytes of entry `index`.
    pub(super) fn read(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        let (off, end) = self.offset_of(index)?;
        let mut reader = RecordReader::new(self.files.events.as_ref(), EVENT_DOMAIN, end, 1);
        match reader.parse(off, index).map_err(io(EVENTS))? {
            Parsed::Record { payload, .. } => Ok(payload.to_vec()),
            Parsed::End => Err(corrupt(
                EVENTS,
                format!("record {index} at offset {off}: no record there"),
            )),
            Parsed::Bad { fault, .. } => Err(corrupt(
                EVENTS,
                format!("record {index} at offset {off}: {fault}"),
            )),
        }
    }

    /// `count` hashes of level `l` from `first` on, from the level file and memory.
    pub(super) fn stored_range(
        &self,
        l: usize,
        first: u64,
        count: usize,
    ) -> Result<Vec<Hash256>, StoreError> {
        let name = level_name(l);
        let (file, flushed, mem) = {
            let st = lock(&self.state);
            let Some(level) = st.levels.get(l) else {
                return Err(corrupt(&name, "level missing"));
            };
            let mem: Vec<(u64, Hash256)> = (first..first + count as u64)
                .filter_map(|i| level.get_mem(i).map(|h| (i, h)))
                .collect();
            (st.level_files.get(l).cloned(), level.base, mem)
        };
        let mut out = Vec::with_capacity(count);
        let on_disk = flushed.saturating_sub(first).min(count as u64);
        if on_disk > 0 {
            let f = file.ok_or_else(|| corrupt(&name, "file missing"))?;
            let mut buf = vec![0u8; (on_disk * 32) as usize];
            f.read_exact_at(&mut buf, first * 32).map_err(io(&name))?;
            out.extend(hashes(&buf).ok_or_else(|| corrupt(&name, "partial hash"))?);
        }
        out.extend(
            mem.into_iter()
                .filter(|(i, _)| *i >= first + on_disk)
                .map(|(_, h)| h),
        );
        if out.len() != count {
            return Err(corrupt(&name, format!("hashes from {first} missing")));
        }
        Ok(out)
    }

    /// The inclusion proof of `index` in the tree of `size` entries: the four lowest
    /// siblings from one tile read when the tile is synced and not in memory.
    pub(super) fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash256>, MerkleError> {
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
        let tile = match &self.files.tiles {
            Some(tiles) if block < synced && !in_memory && (block + 1) * TILE_LEAVES <= size => {
                let mut buf = vec![0u8; TILE_BYTES as usize];
                tiles
                    .read_exact_at(&mut buf, block * TILE_BYTES)
                    .map_err(|e| MerkleError::Source(format!("tiles: {e}")))?;
                Some(buf)
            }
            _ => None,
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
                // The tile holds 30 whole hashes and `at` is one of them.
                if let Some(h) = tile.get(at..at + 32).and_then(Hash256::from_slice) {
                    return Ok(h);
                }
            }
        }
        self.store.perfect(level, index)
    }
}
