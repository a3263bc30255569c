//! Opening a log: recovery in named steps (`spec/provenance.md` §2, "Recovery and
//! reading"). Every size the commit marker claims is checked against the files before
//! anything is allocated, truncated or cut: the marker's checksum is unkeyed, so a forged
//! one must not make a reader allocate without bound, nor a writer zero acknowledged
//! records (red-team finding 7).

use std::sync::Arc;

use tds_core::hash::Hash256;

use super::file::{Files, Level, OpenOptions, Recovery, Shared, State};
use super::format::{
    hashes, level_name, Fault, Header, Parsed, RecordReader, ALIGN_LEVEL, CHECKPOINTS,
    CHECKPOINT_DOMAIN, EVENTS, EVENT_DOMAIN, HEADER_LEN, INDEX, TILES, TILE_BYTES, TILE_LEAVES,
};
use super::ids::IdIndex;
use super::sync::{AtomicU64, Condvar, Mutex};
use super::{corrupt, io, StoreError};
use crate::storage::{Storage, StorageFile};

/// Bytes read at a time when scanning a file.
const SCAN_CHUNK: u64 = 1 << 20;
/// A chunk of zeros, to compare the tail with.
static ZEROS: [u8; SCAN_CHUNK as usize] = [0; SCAN_CHUNK as usize];

/// The derived files, opened and checked against the marker but not yet changed.
struct Derived {
    index: Option<Arc<dyn StorageFile>>,
    tiles: Option<Arc<dyn StorageFile>>,
    /// `level-00`, `level-01`, ... for every level with synced hashes.
    levels: Vec<Arc<dyn StorageFile>>,
}

/// Step 0: the `events` file, created with an empty marker by a writer that finds none.
fn open_events(
    storage: &dyn Storage,
    write: bool,
) -> Result<(Arc<dyn StorageFile>, u64), StoreError> {
    if !write && !storage.exists(EVENTS) {
        return Err(StoreError::Missing(EVENTS.into()));
    }
    let events = storage.open(EVENTS, write).map_err(io(EVENTS))?;
    let len = events.len().map_err(io(EVENTS))?;
    if len > 0 {
        return Ok((events, len));
    }
    if !write {
        return Err(StoreError::Missing(EVENTS.into()));
    }
    let mut page = Header::empty().encode();
    page.resize(HEADER_LEN as usize, 0);
    events.write_all_at(&page, 0).map_err(io(EVENTS))?;
    events.sync_data().map_err(io(EVENTS))?;
    storage.sync_dir().map_err(io("."))?;
    Ok((events, HEADER_LEN))
}

/// Step 1: the current commit marker, whose committed bytes the file must hold.
fn read_marker(events: &dyn StorageFile, len: u64) -> Result<Header, StoreError> {
    let header = Header::read(events)
        .map_err(io(EVENTS))?
        .ok_or_else(|| corrupt(EVENTS, "no valid commit marker in the header"))?;
    if header.committed_bytes > len {
        return Err(corrupt(
            EVENTS,
            format!(
                "file is {len} bytes but the commit marker covers {}",
                header.committed_bytes
            ),
        ));
    }
    Ok(header)
}

/// Opens derived file `name`: a writer creates it; a reader may find it missing.
fn open_derived(
    storage: &dyn Storage,
    name: &str,
    write: bool,
) -> Result<Option<Arc<dyn StorageFile>>, StoreError> {
    if write || storage.exists(name) {
        storage.open(name, write).map(Some).map_err(io(name))
    } else {
        Ok(None)
    }
}

/// Checks that `file` holds at least `need` bytes, as the marker says.
fn check_len(file: Option<&Arc<dyn StorageFile>>, name: &str, need: u64) -> Result<(), StoreError> {
    if need == 0 {
        return Ok(());
    }
    let f = file.ok_or_else(|| {
        corrupt(
            name,
            format!("missing, but the header says {need} bytes are synced"),
        )
    })?;
    let have = f.len().map_err(io(name))?;
    if have < need {
        return Err(corrupt(
            name,
            format!("{have} bytes, the header says {need} are synced"),
        ));
    }
    Ok(())
}

/// Step 2: the derived files hold at least what the marker says is synced.
fn open_derived_files(
    storage: &dyn Storage,
    header: &Header,
    write: bool,
) -> Result<Derived, StoreError> {
    let d = header.derived_entries;
    let index = open_derived(storage, INDEX, write)?;
    check_len(index.as_ref(), INDEX, d * 8)?;
    let tiles = open_derived(storage, TILES, write)?;
    check_len(tiles.as_ref(), TILES, d / TILE_LEAVES * TILE_BYTES)?;
    let mut levels = Vec::new();
    let mut l = 0usize;
    while l < 64 && (d >> l) > 0 {
        let name = level_name(l);
        let f = storage.open(&name, write).map_err(io(&name))?;
        check_len(Some(&f), &name, (d >> l) * 32)?;
        levels.push(f);
        l += 1;
    }
    Ok(Derived {
        index,
        tiles,
        levels,
    })
}

/// Step 3: the derived point the marker claims is real: the index's last synced offset
/// holds record `derived_entries - 1`, which checks and ends exactly at `derived_bytes`.
/// Without this, a forged marker could point the replay into the middle of the records
/// and have a writer zero everything after as a torn tail.
fn confirm_derived_point(
    events: &dyn StorageFile,
    derived: &Derived,
    header: &Header,
) -> Result<(), StoreError> {
    let d = header.derived_entries;
    let Some(last) = d.checked_sub(1) else {
        // No derived entries: the marker's decoding has checked derived_bytes = HEADER_LEN.
        return Ok(());
    };
    let index = derived
        .index
        .as_ref()
        .ok_or_else(|| corrupt(INDEX, "missing"))?;
    let mut b = [0u8; 8];
    index.read_exact_at(&mut b, last * 8).map_err(io(INDEX))?;
    let off = u64::from_le_bytes(b);
    let unconfirmed = |why: String| {
        corrupt(
            EVENTS,
            format!(
                "the commit marker says {d} entries ({} bytes) are in the derived files, but {why}; nothing was cut",
                header.derived_bytes
            ),
        )
    };
    if off < HEADER_LEN {
        return Err(unconfirmed(format!(
            "the index puts record {last} at offset {off}"
        )));
    }
    let mut reader = RecordReader::new(events, EVENT_DOMAIN, header.committed_bytes, 1);
    match reader.parse(off, last).map_err(io(EVENTS))? {
        Parsed::Record { next, .. } if next == header.derived_bytes => Ok(()),
        Parsed::Record { next, .. } => Err(unconfirmed(format!(
            "record {last} at offset {off} ends at {next}"
        ))),
        Parsed::End => Err(unconfirmed(format!(
            "there is no record {last} at offset {off}"
        ))),
        Parsed::Bad { fault, .. } => Err(unconfirmed(format!(
            "record {last} at offset {off}: {fault}"
        ))),
    }
}

/// Step 7 (writers): the derived files are cut to exactly what the marker records (the
/// rest is recomputed from the events).
fn truncate_derived(derived: &Derived, header: &Header) -> Result<(), StoreError> {
    let d = header.derived_entries;
    let cut = |f: Option<&Arc<dyn StorageFile>>, name: &str, need: u64| -> Result<(), StoreError> {
        if let Some(f) = f {
            if f.len().map_err(io(name))? > need {
                f.set_len(need).map_err(io(name))?;
            }
        }
        Ok(())
    };
    cut(derived.index.as_ref(), INDEX, d * 8)?;
    cut(derived.tiles.as_ref(), TILES, d / TILE_LEAVES * TILE_BYTES)?;
    for (l, f) in derived.levels.iter().enumerate() {
        cut(Some(f), &level_name(l), (d >> l) * 32)?;
    }
    Ok(())
}

/// Reads `count` hashes of a level file into memory, a chunk at a time. Memory grows only
/// with hashes actually read, and an all-zero hash (a region never written: a sparse file
/// grown to what a forged marker claims) ends the load as corruption before more is read.
fn load_level(f: &dyn StorageFile, name: &str, count: u64) -> Result<Vec<Hash256>, StoreError> {
    let mut mem: Vec<Hash256> = Vec::new();
    let mut buf = Vec::new();
    let mut at = 0u64;
    while at < count {
        let n = (count - at).min(SCAN_CHUNK / 32);
        let hashes_n = usize::try_from(n).map_err(|_| corrupt(name, "too large"))?;
        mem.try_reserve(hashes_n)
            .map_err(|_| StoreError::OutOfMemory {
                file: name.to_owned(),
                bytes: count.saturating_mul(32),
            })?;
        buf.resize(hashes_n * 32, 0);
        f.read_exact_at(&mut buf, at * 32).map_err(io(name))?;
        let got = hashes(&buf).ok_or_else(|| corrupt(name, "partial hash"))?;
        if let Some(k) = got.iter().position(|h| *h == Hash256::default()) {
            return Err(corrupt(
                name,
                format!("hash {} is all zeros: never written", at + k as u64),
            ));
        }
        mem.extend(got);
        at += n;
    }
    Ok(mem)
}

/// Step 4: the tree's levels: hashes of levels at or above `memory_level` in memory,
/// lower ones left in their files.
fn load_levels(
    derived: &Derived,
    header: &Header,
    memory_level: u32,
) -> Result<Vec<Level>, StoreError> {
    let d = header.derived_entries;
    let mut levels = Vec::with_capacity(derived.levels.len());
    for (l, f) in derived.levels.iter().enumerate() {
        let count = d >> l;
        let mut level = Level {
            base: count,
            mem: Vec::new(),
            flushed: count,
        };
        if l as u32 >= memory_level {
            level.mem = load_level(f.as_ref(), &level_name(l), count)?;
            level.base = 0;
        }
        levels.push(level);
    }
    Ok(levels)
}

/// Step 5: replays the records after the derived point, up to the first that does not
/// check. Every record the marker says is committed must be there, and the marker's
/// committed size must fall on a record boundary.
fn replay(
    events: &dyn StorageFile,
    len: u64,
    header: &Header,
    st: &mut State,
    recovery: &mut Recovery,
) -> Result<(), StoreError> {
    let mut reader = RecordReader::new(events, EVENT_DOMAIN, len, SCAN_CHUNK);
    let mut off = header.derived_bytes;
    let stop = loop {
        if st.size == header.committed_entries && off != header.committed_bytes {
            return Err(corrupt(
                EVENTS,
                format!(
                    "the commit marker says {} records end at offset {}, but they end at {off}",
                    header.committed_entries, header.committed_bytes
                ),
            ));
        }
        match reader.parse(off, st.size).map_err(io(EVENTS))? {
            Parsed::Record { leaf, next, .. } => {
                st.push_leaf(leaf)?;
                st.idx_mem.push(off);
                off = next;
                recovery.replayed += 1;
            }
            Parsed::End => break None,
            Parsed::Bad { fault, .. } => break Some(fault),
        }
    };
    if off < header.committed_bytes || st.size < header.committed_entries {
        return Err(corrupt(
            EVENTS,
            format!(
                "record {} at offset {off}: {} inside the committed part (the commit marker covers {} records, {} bytes)",
                st.size,
                stop.as_ref().map_or_else(|| "log ends early".to_owned(), Fault::to_string),
                header.committed_entries,
                header.committed_bytes
            ),
        ));
    }
    st.end = off;
    Ok(())
}

/// Step 6: non-zero bytes after the end are an unacknowledged torn tail: counted, and
/// zeroed by a writer.
fn cut_torn_tail(
    events: &dyn StorageFile,
    end: u64,
    len: u64,
    write: bool,
    recovery: &mut Recovery,
) -> Result<(), StoreError> {
    let mut pos = end;
    let mut buf = Vec::new();
    while pos < len {
        let n = (len - pos).min(SCAN_CHUNK);
        buf.resize(n as usize, 0);
        events.read_exact_at(&mut buf, pos).map_err(io(EVENTS))?;
        // The usual tail is all zeros: compared with memcmp before counting bytes.
        if buf.as_slice() == ZEROS.split_at(buf.len()).0 {
            pos += n;
            continue;
        }
        let nz = buf.iter().filter(|b| **b != 0).count() as u64;
        if nz > 0 {
            recovery.torn_tail_bytes += nz;
            if write {
                buf.fill(0);
                events.write_all_at(&buf, pos).map_err(io(EVENTS))?;
            }
        }
        pos += n;
    }
    Ok(())
}

/// Step 8: the checkpoint notes. A bad record that reaches the end of the file is a torn
/// append (cut by a writer); one followed by more data is corruption.
fn read_checkpoints(
    storage: &dyn Storage,
    write: bool,
    st: &mut State,
    recovery: &mut Recovery,
) -> Result<Option<Arc<dyn StorageFile>>, StoreError> {
    let Some(file) = open_derived(storage, CHECKPOINTS, write)? else {
        return Ok(None);
    };
    let clen = file.len().map_err(io(CHECKPOINTS))?;
    let mut reader = RecordReader::new(file.as_ref(), CHECKPOINT_DOMAIN, clen, SCAN_CHUNK);
    let mut off = 0u64;
    while off < clen {
        let n = st.checkpoints.len() as u64;
        let (fault, claimed_end) = match reader.parse(off, n).map_err(io(CHECKPOINTS))? {
            Parsed::Record { payload, next, .. } => {
                st.checkpoints.push(payload.to_vec());
                off = next;
                continue;
            }
            // The file is not preallocated: zeros inside it are not an end.
            Parsed::End => (Fault::ZeroLength, Some(off + super::format::RECORD_HEADER)),
            Parsed::Bad { fault, claimed_end } => (fault, claimed_end),
        };
        if claimed_end.is_some_and(|e| e < clen) {
            return Err(corrupt(
                "checkpoints",
                format!("checkpoint {n} at offset {off}: {fault}"),
            ));
        }
        recovery.torn_checkpoint = true;
        if write {
            file.set_len(off).map_err(io(CHECKPOINTS))?;
            file.sync_data().map_err(io(CHECKPOINTS))?;
        }
        break;
    }
    st.checkpoints_end = off;
    Ok(Some(file))
}

impl State {
    fn new(
        levels: Vec<Level>,
        level_files: Vec<Arc<dyn StorageFile>>,
        header: Header,
        alloc: u64,
    ) -> State {
        let d = header.derived_entries;
        State {
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
            alloc,
            checkpoints: Vec::new(),
            checkpoints_end: 0,
        }
    }
}

impl Shared {
    /// Opens the log in `storage` (see the module docs for the steps).
    pub(super) fn open(storage: Arc<dyn Storage>, opts: OpenOptions) -> Result<Shared, StoreError> {
        let lock_guard = if opts.write {
            Some(storage.lock().map_err(io("LOCK"))?)
        } else {
            None
        };
        let (events, len) = open_events(storage.as_ref(), opts.write)?;
        let header = read_marker(events.as_ref(), len)?;
        let derived = open_derived_files(storage.as_ref(), &header, opts.write)?;
        confirm_derived_point(events.as_ref(), &derived, &header)?;
        let memory_level = opts.memory_level.min(ALIGN_LEVEL);
        let levels = load_levels(&derived, &header, memory_level)?;
        let mut st = State::new(levels, derived.levels.clone(), header, len);
        let mut recovery = Recovery::default();
        replay(events.as_ref(), len, &header, &mut st, &mut recovery)?;
        // Only now, with the marker confirmed by the records, does a writer change a file.
        if opts.write {
            truncate_derived(&derived, &header)?;
        }
        let Derived { index, tiles, .. } = derived;
        cut_torn_tail(events.as_ref(), st.end, len, opts.write, &mut recovery)?;
        let checkpoints = read_checkpoints(storage.as_ref(), opts.write, &mut st, &mut recovery)?;
        st.next_index = st.size;
        st.next_offset = st.end;
        recovery.entries = st.size;
        let ids = IdIndex::open(storage.as_ref(), opts.write, st.size)?;
        let store = Shared {
            files: Files {
                storage,
                events,
                index,
                tiles,
                checkpoints,
            },
            durable: AtomicU64::new(st.size),
            state: Mutex::new(st),
            cond: Condvar::new(),
            work: Condvar::new(),
            write: opts.write,
            flush_every: opts.flush_every.max(1).div_ceil(super::format::ALIGN)
                * super::format::ALIGN,
            memory_level,
            recovery,
            ids,
            _lock: lock_guard,
        };
        if opts.write {
            store.sync_marker()?;
            store.files.storage.sync_dir().map_err(io("."))?;
        }
        Ok(store)
    }
}
