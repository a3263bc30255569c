//! The index of log entries by the ids their events name: the agreement
//! ([`Event::agreement`]) and the assets (`asset_published`, `offer_published`,
//! `transfer_started`). Derived data: [`crate::Log`] notes each event it appends, entries
//! it was not told about (appended by a process that died before writing the index, or
//! straight through the store) are read back and decoded, and a file store keeps the
//! index in its `ids` file (`spec/provenance.md` §2), so a query reads that file and the
//! entries it names instead of every event.
//!
//! The file is batches framed like checkpoint records (domain `tds/log-ids/v1`, index =
//! batch number), each `end u64 ‖ (entry u64 ‖ id[32])*`: batch *k* covers the entries from
//! the previous batch's `end` up to its own. It is written without syncs: a batch that does
//! not check, does not follow its predecessor or reaches past the log ends the usable
//! part, and what it covered is recomputed from the events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tds_core::hash::Hash256;
use tds_core::merkle;

use super::format::{frame, Parsed, RecordReader, IDS, IDS_DOMAIN, MAX_RECORD};
use super::{io, LogStore, StoreError};
use crate::event::{Event, EventBody};
use crate::storage::{Storage, StorageFile};

/// Bytes of one row: entry (u64 LE) and id.
const ROW: usize = 40;
/// Most rows in one batch (a batch is one record).
const MAX_BATCH_ROWS: usize = (MAX_RECORD - 8) / ROW;
/// A writer appends batches once this many rows, or entries, wait in memory.
const PERSIST_ROWS: usize = 1024;
const PERSIST_ENTRIES: u64 = 65_536;
/// Entries read back per round of catching up.
const CATCH_UP_STEP: usize = 4096;
/// Noted entries waiting behind a gap before the gap is read back.
const MAX_PENDING: usize = 65_536;
/// Bytes read at a time from the file.
const SCAN_CHUNK: u64 = 1 << 20;

/// The ids an event names: its agreement, then the asset it concerns.
pub(crate) fn ids_of(e: &Event) -> Vec<Hash256> {
    let mut v = Vec::with_capacity(2);
    if let Some(a) = e.agreement() {
        v.push(*a);
    }
    if let EventBody::AssetPublished { asset, .. }
    | EventBody::OfferPublished { asset, .. }
    | EventBody::TransferStarted { asset, .. } = &e.body
    {
        if !v.contains(asset) {
            v.push(*asset);
        }
    }
    v
}

/// The ids a stored record names. A record that is not an event (a store holds any
/// bytes) names none.
pub(crate) fn ids_of_record(bytes: &[u8]) -> Vec<Hash256> {
    match Event::decode(bytes) {
        Ok(e) => ids_of(&e),
        Err(_) => Vec::new(),
    }
}

/// The entries below the size whose events name `id`, by reading every record (for
/// stores that keep no index).
pub(crate) fn scan_store<S: LogStore + ?Sized>(
    store: &S,
    id: &Hash256,
) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    for i in 0..store.size() {
        if ids_of_record(&store.read(i)?).contains(id) {
            out.push(i);
        }
    }
    Ok(out)
}

/// Reads record `i` of the log.
pub(crate) type ReadFn<'a> = &'a dyn Fn(u64) -> Result<Vec<u8>, StoreError>;

#[derive(Default)]
struct IdState {
    /// The file's usable batches are known (a reader finds them on its first query).
    loaded: bool,
    /// Entries below this are indexed: in the file's batches (below `persisted`) or in
    /// `rows`.
    covered: u64,
    /// Entries below this are in the file.
    persisted: u64,
    /// Batches in the file, and the byte length they take.
    batches: u64,
    file_end: u64,
    /// Rows of the entries in `[persisted, covered)` (of all entries without a file), in
    /// order.
    rows: Vec<(u64, Hash256)>,
    /// Entries noted at or above `covered`, waiting for those before them.
    pending: BTreeMap<u64, Vec<Hash256>>,
    /// Appending to the file failed: it is left as it is (the next writer recomputes what
    /// it lacks) and the rows stay in memory.
    write_failed: bool,
}

/// What a pass over the file found.
struct Scan {
    /// The entries the usable batches cover, their number and byte length.
    end_entry: u64,
    batches: u64,
    file_end: u64,
    /// Entries of rows naming the id asked for.
    matches: Vec<u64>,
}

/// Splits a batch payload into its `end` and rows, if it follows a batch ending at
/// `prev_end` and stays below the log `size`.
fn parse_batch(payload: &[u8], prev_end: u64, size: u64) -> Option<(u64, Vec<(u64, Hash256)>)> {
    let (end, rows) = payload.split_first_chunk::<8>()?;
    let end = u64::from_le_bytes(*end);
    if end <= prev_end || end > size {
        return None;
    }
    let (rows, rest) = rows.as_chunks::<ROW>();
    if !rest.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut last = prev_end;
    for row in rows {
        let (entry, id) = row.split_first_chunk::<8>()?;
        let entry = u64::from_le_bytes(*entry);
        if entry < last || entry >= end {
            return None;
        }
        last = entry;
        out.push((entry, Hash256::from_slice(id)?));
    }
    Some((end, out))
}

/// Reads the usable batches of `file` (up to byte `limit`), collecting the entries of rows
/// naming `want`.
fn scan(
    file: &dyn StorageFile,
    size: u64,
    limit: u64,
    want: Option<&Hash256>,
) -> Result<Scan, StoreError> {
    let limit = limit.min(file.len().map_err(io(IDS))?);
    let mut reader = RecordReader::new(file, IDS_DOMAIN, limit, SCAN_CHUNK);
    let mut s = Scan {
        end_entry: 0,
        batches: 0,
        file_end: 0,
        matches: Vec::new(),
    };
    while let Parsed::Record { payload, next, .. } =
        reader.parse(s.file_end, s.batches).map_err(io(IDS))?
    {
        let Some((end, rows)) = parse_batch(payload, s.end_entry, size) else {
            break;
        };
        if let Some(id) = want {
            s.matches
                .extend(rows.iter().filter(|(_, r)| r == id).map(|(e, _)| *e));
        }
        s.end_entry = end;
        s.batches += 1;
        s.file_end = next;
    }
    Ok(s)
}

fn lock(m: &Mutex<IdState>) -> MutexGuard<'_, IdState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The index of a store (see the [module docs](self)). Its lock is never held while the
/// store is read.
pub(crate) struct IdIndex {
    /// The `ids` file: `None` for a store in memory, or a reader of a log without one.
    file: Option<Arc<dyn StorageFile>>,
    /// Whether this store appends to the file.
    write: bool,
    state: Mutex<IdState>,
}

impl IdIndex {
    /// An index kept in memory only.
    pub(crate) fn in_memory() -> IdIndex {
        IdIndex {
            file: None,
            write: false,
            state: Mutex::new(IdState {
                loaded: true,
                ..IdState::default()
            }),
        }
    }

    /// The index of a log of `size` entries in `storage`. A writer opens (or creates)
    /// the `ids` file and cuts what of it is not usable; a reader looks at it on its
    /// first query.
    pub(crate) fn open(
        storage: &dyn Storage,
        write: bool,
        size: u64,
    ) -> Result<IdIndex, StoreError> {
        let file = if write || storage.exists(IDS) {
            Some(storage.open(IDS, write).map_err(io(IDS))?)
        } else {
            None
        };
        let index = IdIndex {
            file,
            write,
            state: Mutex::new(IdState::default()),
        };
        if write {
            index.load(size)?;
        }
        Ok(index)
    }

    /// Finds the file's usable batches, once.
    fn load(&self, size: u64) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        if st.loaded {
            return Ok(());
        }
        if let Some(f) = &self.file {
            let s = scan(f.as_ref(), size, u64::MAX, None)?;
            if self.write && f.len().map_err(io(IDS))? > s.file_end {
                f.set_len(s.file_end).map_err(io(IDS))?;
                f.sync_data().map_err(io(IDS))?;
            }
            st.covered = s.end_entry;
            st.persisted = s.end_entry;
            st.batches = s.batches;
            st.file_end = s.file_end;
        }
        st.loaded = true;
        Ok(())
    }

    /// Notes that durable entry `index` names `ids`. Never fails: what cannot be recorded
    /// now is read back from the events later.
    pub(crate) fn note(&self, index: u64, ids: &[Hash256], read: ReadFn<'_>) {
        let mut st = lock(&self.state);
        if !st.loaded || index < st.covered {
            return;
        }
        if index == st.covered && st.pending.is_empty() {
            // In order, the usual case: straight into the rows.
            st.rows.extend(ids.iter().map(|id| (index, *id)));
            st.covered += 1;
        } else {
            st.pending.insert(index, ids.to_vec());
            advance(&mut st);
        }
        self.maybe_persist(&mut st);
        let gap = st.pending.len() > MAX_PENDING;
        let upto = st.pending.last_key_value().map(|(k, _)| *k);
        drop(st);
        if let (true, Some(upto)) = (gap, upto) {
            // An entry nobody noted holds the rest back: read it from the log. A failure
            // leaves the gap to the next query, which reports it.
            let _ = self.catch_up(upto, read);
        }
    }

    /// Indexes every entry below `size` not indexed yet, reading it from the log.
    pub(crate) fn catch_up(&self, size: u64, read: ReadFn<'_>) -> Result<(), StoreError> {
        self.load(size)?;
        loop {
            let missing: Vec<u64> = {
                let st = lock(&self.state);
                let mut v = Vec::new();
                let mut e = st.covered;
                while e < size && v.len() < CATCH_UP_STEP {
                    if !st.pending.contains_key(&e) {
                        v.push(e);
                    }
                    e += 1;
                }
                v
            };
            if missing.is_empty() {
                return Ok(());
            }
            let mut got = Vec::with_capacity(missing.len());
            for e in missing {
                got.push((e, ids_of_record(&read(e)?)));
            }
            let mut st = lock(&self.state);
            for (e, ids) in got {
                if e >= st.covered {
                    st.pending.insert(e, ids);
                }
            }
            advance(&mut st);
            self.maybe_persist(&mut st);
        }
    }

    /// The entries below `size` whose events name `id`, ascending.
    pub(crate) fn query(
        &self,
        id: &Hash256,
        size: u64,
        read: ReadFn<'_>,
    ) -> Result<Vec<u64>, StoreError> {
        self.catch_up(size, read)?;
        let (file_end, mut out) = {
            let st = lock(&self.state);
            let mine: Vec<u64> = st
                .rows
                .iter()
                .filter(|(_, r)| r == id)
                .map(|(e, _)| *e)
                .collect();
            (st.file_end, mine)
        };
        if let Some(f) = &self.file {
            if file_end > 0 {
                out.extend(scan(f.as_ref(), size, file_end, Some(id))?.matches);
            }
        }
        out.retain(|e| *e < size);
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Appends what is indexed in memory to the file (a writer's).
    pub(crate) fn persist(&self) {
        let mut st = lock(&self.state);
        self.persist_locked(&mut st);
    }

    fn maybe_persist(&self, st: &mut IdState) {
        if st.rows.len() >= PERSIST_ROWS || st.covered - st.persisted >= PERSIST_ENTRIES {
            self.persist_locked(st);
        }
    }

    fn persist_locked(&self, st: &mut IdState) {
        let Some(f) = self.file.as_ref().filter(|_| self.write) else {
            return;
        };
        if st.write_failed || !st.loaded || st.covered <= st.persisted {
            return;
        }
        let out = batches(&st.rows, st.covered, st.batches);
        match f.write_all_at(&out.bytes, st.file_end) {
            Ok(()) => {
                st.file_end += out.bytes.len() as u64;
                st.batches += out.count;
                st.persisted = st.covered;
                st.rows.clear();
            }
            Err(_) => st.write_failed = true,
        }
    }
}

/// Moves noted entries that follow the indexed ones into the rows.
fn advance(st: &mut IdState) {
    while let Some(ids) = st.pending.remove(&st.covered) {
        let c = st.covered;
        st.rows.extend(ids.into_iter().map(|id| (c, id)));
        st.covered += 1;
    }
}

/// Framed batches and their number.
struct Batches {
    bytes: Vec<u8>,
    count: u64,
}

/// Frames `rows` (of entries below `covered`) as batches numbered from `first`, split
/// between entries, the last one ending at `covered`.
fn batches(rows: &[(u64, Hash256)], covered: u64, first: u64) -> Batches {
    let mut out = Batches {
        bytes: Vec::new(),
        count: 0,
    };
    let mut rest = rows;
    loop {
        let mut take = rest.len().min(MAX_BATCH_ROWS);
        // Never split one entry's rows between batches (an event names at most two ids).
        if let Some((next_entry, _)) = rest.get(take) {
            while take > 0 && rest.get(take - 1).is_some_and(|(e, _)| e == next_entry) {
                take -= 1;
            }
            if take == 0 {
                // One entry with more rows than a batch holds: impossible (an event
                // names at most two ids), but never loop on it.
                take = rest.len().min(MAX_BATCH_ROWS);
            }
        }
        let (now, later) = rest.split_at(take);
        let end = match (later.first(), now.last()) {
            (Some(_), Some((last, _))) => last + 1,
            _ => covered,
        };
        let mut payload = Vec::with_capacity(8 + now.len() * ROW);
        payload.extend_from_slice(&end.to_le_bytes());
        for (e, id) in now {
            payload.extend_from_slice(&e.to_le_bytes());
            payload.extend_from_slice(id.as_bytes());
        }
        frame(
            &mut out.bytes,
            IDS_DOMAIN,
            first + out.count,
            &payload,
            &merkle::leaf_hash(&payload),
        );
        out.count += 1;
        rest = later;
        if rest.is_empty() {
            return out;
        }
    }
}
