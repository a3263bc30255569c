//! Full verification: every record, leaf and interior hash recomputed from the records
//! and compared with what the store serves (any store), and for the file store also with
//! its index and tiles.

use tds_core::hash::Hash256;
use tds_core::merkle;

use super::file::Shared;
use super::format::{
    level_name, tile_level_start, Parsed, RecordReader, EVENTS, EVENT_DOMAIN, FLUSH_EVERY,
    HEADER_LEN, INDEX, TILES, TILE_BYTES, TILE_HASHES, TILE_LEAVES, TILE_LEVELS,
};
use super::sync::lock;
use super::{corrupt, io, LogStore, StoreError};

/// What a full verification checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreVerify {
    /// Entries whose records, leaf hashes (and, in a file store, index entries) were
    /// checked.
    pub entries: u64,
    /// Interior hashes recomputed and compared.
    pub interior: u64,
}

/// Recomputes the tree bottom-up from leaf hashes pushed in order: `lefts[l]` is the last
/// completed node of level `l` still waiting for its right sibling.
#[derive(Default)]
struct Recompute {
    lefts: Vec<Option<Hash256>>,
}

impl Recompute {
    /// Pushes leaf `i`; calls `done(level, index, hash)` for every node it completes, the
    /// leaf first.
    fn push(
        &mut self,
        i: u64,
        leaf: Hash256,
        mut done: impl FnMut(usize, u64, &Hash256) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut idx = i;
        let mut hash = leaf;
        let mut l = 0usize;
        loop {
            done(l, idx, &hash)?;
            if self.lefts.len() <= l {
                self.lefts.push(None);
            }
            let slot = self
                .lefts
                .get_mut(l)
                .ok_or_else(|| corrupt("tree", "level missing"))?;
            if idx & 1 == 0 {
                *slot = Some(hash);
                return Ok(());
            }
            let left = slot.take().ok_or_else(|| {
                corrupt(
                    "tree",
                    format!("level {l} node {} was not computed", idx - 1),
                )
            })?;
            hash = merkle::node_hash(&left, &hash);
            idx >>= 1;
            l += 1;
        }
    }
}

/// The check every store has: reads each record, recomputes its leaf hash and every
/// perfect subtree it completes, and compares them with the nodes the store serves.
pub(crate) fn recompute<S: LogStore + ?Sized>(store: &S) -> Result<StoreVerify, StoreError> {
    let mut report = StoreVerify::default();
    let mut tree = Recompute::default();
    for i in 0..store.size() {
        let leaf = merkle::leaf_hash(&store.read(i)?);
        let mut interior = 0;
        tree.push(i, leaf, |l, idx, h| {
            let stored = store
                .perfect(l as u32, idx)
                .map_err(|e| corrupt("tree", e.to_string()))?;
            if stored != *h {
                let what = if l == 0 {
                    format!("leaf hash {idx} differs from its record")
                } else {
                    format!("interior hash level {l} index {idx} differs from the recomputed one")
                };
                return Err(corrupt(&level_name(l), what));
            }
            interior += u64::from(l > 0);
            Ok(())
        })?;
        report.entries += 1;
        report.interior += interior;
    }
    Ok(report)
}

impl Shared {
    /// Reads every record from the start, checks it and its index entry, recomputes every
    /// hash and compares it with the level files and memory, then the tiles. Read-only.
    pub(super) fn verify_storage(&self) -> Result<StoreVerify, StoreError> {
        let (size, end) = {
            let st = lock(&self.state);
            (st.size, st.end)
        };
        let mut report = StoreVerify::default();
        // Computed hashes not yet compared, per level: (first index, hashes).
        let mut computed: Vec<(u64, Vec<Hash256>)> = Vec::new();
        let mut tree = Recompute::default();
        let mut reader = RecordReader::new(self.files.events.as_ref(), EVENT_DOMAIN, end, 1 << 20);
        let mut off = HEADER_LEN;
        for i in 0..size {
            let (leaf, next) = match reader.parse(off, i).map_err(io(EVENTS))? {
                Parsed::Record { leaf, next, .. } => (leaf, next),
                Parsed::End => {
                    return Err(corrupt(
                        EVENTS,
                        format!("record {i} at offset {off}: log ends early"),
                    ))
                }
                Parsed::Bad { fault, .. } => {
                    return Err(corrupt(
                        EVENTS,
                        format!("record {i} at offset {off}: {fault}"),
                    ))
                }
            };
            let (stored_off, _) = self.offset_of(i)?;
            if stored_off != off {
                return Err(corrupt(
                    INDEX,
                    format!("entry {i}: offset {stored_off}, the record is at {off}"),
                ));
            }
            tree.push(i, leaf, |l, idx, h| {
                if computed.len() <= l {
                    computed.push((idx, Vec::new()));
                }
                if let Some((_, v)) = computed.get_mut(l) {
                    v.push(*h);
                }
                Ok(())
            })?;
            off = next;
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
        if blocks == 0 {
            return Ok(());
        }
        let tiles = self
            .files
            .tiles
            .as_ref()
            .ok_or_else(|| corrupt(TILES, "missing"))?;
        let per_read = 1024u64;
        let mut b = 0;
        while b < blocks {
            let n = per_read.min(blocks - b);
            let mut buf = vec![0u8; (n * TILE_BYTES) as usize];
            tiles
                .read_exact_at(&mut buf, b * TILE_BYTES)
                .map_err(io(TILES))?;
            for l in 0..TILE_LEVELS {
                let per = TILE_LEAVES >> l;
                let stored = self.stored_range(l as usize, b * per, (n * per) as usize)?;
                for k in 0..n {
                    for j in 0..per {
                        let at = ((k * TILE_HASHES + tile_level_start(l) + j) * 32) as usize;
                        let want = stored.get((k * per + j) as usize);
                        if buf.get(at..at + 32) != want.map(|h| &h.as_bytes()[..]) {
                            return Err(corrupt(
                                TILES,
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

    /// Compares computed hashes with stored ones; returns how many interior hashes were
    /// compared.
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
                        format!(
                            "{what} level {l} index {}: stored hash differs from the recomputed one",
                            *first + k as u64
                        ),
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
}
