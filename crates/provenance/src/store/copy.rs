//! Copying a cut of a log ([`LogStore::cut`]) into a new file store: what a backup of a
//! running node archives.

use std::sync::Arc;

use super::file::{FileStore, OpenOptions};
use super::format::EVENTS;
use super::{corrupt, LogCut, LogStore, StoreError};
use crate::storage::Storage;

/// Records read and appended at a time (one sync each).
const BATCH: u64 = 4096;

/// Writes a new file store in `dest` holding the entries `0..cut.size` of `source` and the
/// cut's checkpoint notes, and returns the entries copied. Every record is read back
/// through `source`'s checks and hashed again as it is appended, so the copy is a
/// verified log of exactly the cut (its derived files written, the zeros preallocated
/// after the last record cut off). Refuses a `dest` that holds a log already.
///
/// `source` may grow meanwhile: entries below the cut never change.
pub fn copy_cut(
    source: &dyn LogStore,
    cut: &LogCut,
    dest: Arc<dyn Storage>,
) -> Result<u64, StoreError> {
    if dest.exists(EVENTS) {
        return Err(corrupt(
            EVENTS,
            "the copy's destination holds a log already",
        ));
    }
    if cut.size > source.size() {
        return Err(StoreError::OutOfRange {
            index: cut.size,
            size: source.size(),
        });
    }
    let copy = FileStore::open(dest, OpenOptions::writer())?;
    let mut next = 0u64;
    while next < cut.size {
        let end = next.saturating_add(BATCH).min(cut.size);
        let records = (next..end)
            .map(|i| source.read(i))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let first = copy.append_many(&refs)?;
        if first != next {
            return Err(corrupt(
                EVENTS,
                format!("the copy appended at {first}, expected {next}"),
            ));
        }
        next = end;
    }
    for note in &cut.checkpoints {
        copy.add_checkpoint(note)?;
    }
    copy.flush()?;
    copy.shared.trim_events()?;
    Ok(cut.size)
}
