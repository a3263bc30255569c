//! The bytes of the file store (`spec/provenance.md` §2): constants, the commit marker,
//! record framing, and the one record parser that recovery, reads, checkpoints, the id
//! index and verification all use.

use std::io;

use tds_core::hash::{Hash256, Hasher};
use tds_core::merkle;

use crate::storage::StorageFile;

/// Bytes before the first record of the `events` file.
pub(crate) const HEADER_LEN: u64 = 4096;
/// Record header: length (4) and check (8).
pub(crate) const RECORD_HEADER: u64 = 12;
/// Largest record payload.
pub(crate) const MAX_RECORD: usize = crate::event::MAX_EVENT_BYTES;
/// The fewest bytes a record takes (a header and one payload byte): what bounds the
/// number of entries a file of a given length can hold.
pub(crate) const MIN_RECORD_BYTES: u64 = RECORD_HEADER + 1;
/// The most bytes a record takes.
pub(crate) const MAX_RECORD_BYTES: u64 = RECORD_HEADER + MAX_RECORD as u64;
/// Derived files (levels, index, tiles) are written and synced every this many entries.
pub(crate) const FLUSH_EVERY: u64 = 65_536;
/// Levels at and above this one stay in memory (about four bytes per leaf), so an
/// inclusion proof reads four hashes from disk.
pub(crate) const MEMORY_LEVEL: u32 = 4;
/// Derived files are synced in whole blocks of `2^ALIGN_LEVEL` entries.
pub(crate) const ALIGN_LEVEL: u32 = 6;
/// Derived files are synced in whole blocks of this many entries.
pub(crate) const ALIGN: u64 = 1 << ALIGN_LEVEL;
/// The events file grows in steps of this many zero bytes.
pub(crate) const PREALLOCATE: u64 = 8 << 20;

/// Tiles: for each aligned block of 16 leaves, the hashes of levels 0..=3 inside it
/// (16 + 8 + 4 + 2 = 30 hashes) stored together, so an inclusion proof reads its four
/// lowest siblings with one read.
pub(crate) const TILE_LEVELS: u32 = 4;
/// Leaves per tile.
pub(crate) const TILE_LEAVES: u64 = 1 << TILE_LEVELS;
/// Hashes per tile.
pub(crate) const TILE_HASHES: u64 = 30;
/// Bytes per tile.
pub(crate) const TILE_BYTES: u64 = TILE_HASHES * 32;

/// Where level `l`'s hashes start inside a tile (in hashes).
pub(crate) fn tile_level_start(l: u32) -> u64 {
    (0..l).map(|j| TILE_LEAVES >> j).sum()
}

/// The two commit-marker slots.
const SLOTS: [u64; 2] = [0, 512];
/// Bytes of one commit-marker slot.
pub(crate) const SLOT_LEN: usize = 56;
const MAGIC: &[u8; 8] = b"TDSLOG01";

/// The check domain of event records.
pub(crate) const EVENT_DOMAIN: &[u8] = b"tds/log-record/v1";
/// The check domain of checkpoint records.
pub(crate) const CHECKPOINT_DOMAIN: &[u8] = b"tds/log-checkpoint/v1";
/// The check domain of id-index batches.
pub(crate) const IDS_DOMAIN: &[u8] = b"tds/log-ids/v1";

/// The names of the log's files.
pub(crate) const EVENTS: &str = "events";
/// The record offsets.
pub(crate) const INDEX: &str = "index";
/// The tiles.
pub(crate) const TILES: &str = "tiles";
/// The checkpoint notes.
pub(crate) const CHECKPOINTS: &str = "checkpoints";
/// The id index.
pub(crate) const IDS: &str = "ids";

/// The name of the level file `l`.
pub(crate) fn level_name(l: usize) -> String {
    format!("level-{l:02}")
}

/// A commit marker: what is durable, and how much of it the derived files hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) seq: u64,
    pub(crate) committed_entries: u64,
    pub(crate) committed_bytes: u64,
    pub(crate) derived_entries: u64,
    pub(crate) derived_bytes: u64,
}

/// Whether `entries` records can take exactly `bytes - HEADER_LEN` bytes.
fn plausible(entries: u64, bytes: u64) -> bool {
    let Some(span) = bytes.checked_sub(HEADER_LEN) else {
        return false;
    };
    // Zero entries take zero bytes; n entries take between n minimal and n maximal records.
    entries
        .checked_mul(MIN_RECORD_BYTES)
        .is_some_and(|min| min <= span)
        && entries
            .checked_mul(MAX_RECORD_BYTES)
            .is_none_or(|max| span <= max)
}

impl Header {
    /// The marker of an empty log.
    pub(crate) fn empty() -> Header {
        Header {
            seq: 1,
            committed_bytes: HEADER_LEN,
            derived_bytes: HEADER_LEN,
            ..Header::default()
        }
    }

    /// Where this marker is written (slot `seq mod 2`).
    pub(crate) fn slot(&self) -> u64 {
        if self.seq.is_multiple_of(2) {
            SLOTS[0]
        } else {
            SLOTS[1]
        }
    }

    /// The slot bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(SLOT_LEN);
        w.extend_from_slice(MAGIC);
        for v in [
            self.seq,
            self.committed_entries,
            self.committed_bytes,
            self.derived_entries,
            self.derived_bytes,
        ] {
            w.extend_from_slice(&v.to_le_bytes());
        }
        let c = checksum(&[&w]);
        w.extend_from_slice(&c);
        w
    }

    /// A slot's marker, if its magic and checksum are right and what it claims is
    /// possible: sizes in order, and a byte count that records of the claimed number can
    /// fill (the checksum is unkeyed, so anyone can write a slot that passes it; these
    /// checks bound what such a slot can make a reader believe).
    pub(crate) fn decode(b: &[u8]) -> Option<Header> {
        let body = b.get(..48)?;
        if body.get(..8)? != MAGIC || b.get(48..56)? != checksum(&[body]) {
            return None;
        }
        let u = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(body.get(i..i + 8)?.try_into().ok()?))
        };
        let h = Header {
            seq: u(8)?,
            committed_entries: u(16)?,
            committed_bytes: u(24)?,
            derived_entries: u(32)?,
            derived_bytes: u(40)?,
        };
        (h.derived_entries <= h.committed_entries
            && h.derived_bytes <= h.committed_bytes
            && h.derived_entries.is_multiple_of(ALIGN)
            && plausible(h.committed_entries, h.committed_bytes)
            && plausible(h.derived_entries, h.derived_bytes)
            && plausible(
                h.committed_entries - h.derived_entries,
                HEADER_LEN + (h.committed_bytes - h.derived_bytes),
            ))
        .then_some(h)
    }

    /// Reads both slots and returns the valid one with the larger `seq`.
    pub(crate) fn read(events: &dyn StorageFile) -> io::Result<Option<Header>> {
        let mut best: Option<Header> = None;
        for off in SLOTS {
            let mut b = [0u8; SLOT_LEN];
            match events.read_exact_at(&mut b, off) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => continue,
                Err(e) => return Err(e),
            }
            if let Some(h) = Header::decode(&b) {
                if best.is_none_or(|cur| h.seq > cur.seq) {
                    best = Some(h);
                }
            }
        }
        Ok(best)
    }
}

/// The first eight bytes of a digest.
fn first8(h: &Hash256) -> [u8; 8] {
    let [a, b, c, d, e, f, g, i, ..] = *h.as_bytes();
    [a, b, c, d, e, f, g, i]
}

/// First 8 bytes of SHA-256 over the parts.
pub(crate) fn checksum(parts: &[&[u8]]) -> [u8; 8] {
    let mut ctx = Hasher::plain();
    for p in parts {
        ctx.update(p);
    }
    first8(&ctx.finish())
}

/// The check of record `index` with leaf hash `leaf`.
pub(crate) fn record_check(domain: &[u8], index: u64, leaf: &Hash256) -> [u8; 8] {
    checksum(&[domain, &[0], &index.to_be_bytes(), leaf.as_bytes()])
}

/// Appends `payload` framed as record `index` (`len ‖ check ‖ payload`) to `out`. The
/// caller has checked that `payload` is 1 to [`MAX_RECORD`] bytes.
pub(crate) fn frame(out: &mut Vec<u8>, domain: &[u8], index: u64, payload: &[u8], leaf: &Hash256) {
    // At most MAX_RECORD (64 KiB) bytes: the length fits a u32.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&record_check(domain, index, leaf));
    out.extend_from_slice(payload);
}

/// Splits hashes stored back to back; `None` if the bytes are not a whole number of them.
pub(crate) fn hashes(bytes: &[u8]) -> Option<Vec<Hash256>> {
    let (whole, rest) = bytes.as_chunks::<32>();
    rest.is_empty()
        .then(|| whole.iter().copied().map(Hash256::from_bytes).collect())
}

/// Why the bytes at a record position are not a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The file ends inside the 12-byte record header.
    HeaderPastEnd,
    /// A zero length with a non-zero check.
    ZeroLength,
    /// A length over [`MAX_RECORD`].
    TooLong(u32),
    /// The payload runs past the end of the file.
    PayloadPastEnd,
    /// The check does not match the payload and index.
    Checksum,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::HeaderPastEnd => write!(f, "record header runs past the end of the file"),
            Fault::ZeroLength => write!(f, "record of length zero"),
            Fault::TooLong(n) => write!(f, "record length {n} is over the limit"),
            Fault::PayloadPastEnd => write!(f, "record runs past the end of the file"),
            Fault::Checksum => write!(f, "checksum mismatch"),
        }
    }
}

/// What a record position holds.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    /// A record that checks.
    Record {
        /// Its payload.
        payload: &'a [u8],
        /// `SHA-256(0x00 ‖ payload)`.
        leaf: Hash256,
        /// Where the next record starts.
        next: u64,
    },
    /// The end of the records: the end of the file, or twelve zero bytes.
    End,
    /// Not a record.
    Bad {
        /// Why.
        fault: Fault,
        /// Where the record would end by its length field, if that could be read.
        claimed_end: Option<u64>,
    },
}

/// Reads records `len ‖ check ‖ payload` from a file, through a buffer of `chunk`
/// bytes (1 for single reads, more for scans). The one parser of the store.
pub(crate) struct RecordReader<'f> {
    file: &'f dyn StorageFile,
    domain: &'static [u8],
    /// Bytes past this offset are not looked at (the end of the file, or of the durable
    /// records).
    limit: u64,
    chunk: u64,
    buf: Vec<u8>,
    buf_at: u64,
}

impl<'f> RecordReader<'f> {
    /// A reader of `file`'s records of `domain`, up to `limit`.
    pub(crate) fn new(
        file: &'f dyn StorageFile,
        domain: &'static [u8],
        limit: u64,
        chunk: u64,
    ) -> Self {
        RecordReader {
            file,
            domain,
            limit,
            chunk: chunk.max(1),
            buf: Vec::new(),
            buf_at: 0,
        }
    }

    /// Makes `[at, at + n)` available in the buffer; `Ok(false)` if it runs past the limit
    /// or the end of the file.
    fn fill(&mut self, at: u64, n: u64) -> io::Result<bool> {
        let end = match at.checked_add(n) {
            Some(e) if e <= self.limit => e,
            _ => return Ok(false),
        };
        let buf_end = self.buf_at + self.buf.len() as u64;
        if at >= self.buf_at && end <= buf_end {
            return Ok(true);
        }
        let want = n.max(self.chunk).min(self.limit - at);
        let want = usize::try_from(want).map_err(io::Error::other)?;
        self.buf.resize(want, 0);
        self.buf_at = at;
        match self.file.read_exact_at(&mut self.buf, at) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // The file is shorter than the limit: read what is there.
                self.buf.clear();
                let len = self.file.len()?.min(self.limit);
                if len <= at {
                    return Ok(false);
                }
                let have = usize::try_from(len - at).map_err(io::Error::other)?;
                self.buf.resize(have, 0);
                self.file.read_exact_at(&mut self.buf, at)?;
                Ok(end <= len)
            }
            Err(e) => Err(e),
        }
    }

    /// The bytes `[at, at + n)`, which [`Self::fill`] made available.
    fn bytes(&self, at: u64, n: u64) -> io::Result<&[u8]> {
        let from = at
            .checked_sub(self.buf_at)
            .and_then(|d| usize::try_from(d).ok());
        let to = from.and_then(|f| f.checked_add(usize::try_from(n).ok()?));
        from.zip(to)
            .and_then(|(f, t)| self.buf.get(f..t))
            .ok_or_else(|| io::Error::other("record reader: bytes asked for are not in its buffer"))
    }

    /// Parses the record at `off`, expected to be record number `index`. I/O errors other
    /// than a short file are returned as errors, never taken for the end of the log.
    pub(crate) fn parse(&mut self, off: u64, index: u64) -> io::Result<Parsed<'_>> {
        if off >= self.limit {
            return Ok(Parsed::End);
        }
        if !self.fill(off, RECORD_HEADER)? {
            let rest = self.file.len()?.min(self.limit).saturating_sub(off);
            // What is there of a header: zeros end the log, anything else is torn.
            let mut tail = vec![0u8; usize::try_from(rest).map_err(io::Error::other)?];
            self.file.read_exact_at(&mut tail, off)?;
            return Ok(if tail.iter().all(|b| *b == 0) {
                Parsed::End
            } else {
                Parsed::Bad {
                    fault: Fault::HeaderPastEnd,
                    claimed_end: None,
                }
            });
        }
        let mut header = [0u8; RECORD_HEADER as usize];
        header.copy_from_slice(self.bytes(off, RECORD_HEADER)?);
        let [l0, l1, l2, l3, check @ ..] = header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        let claimed_end = Some(off + RECORD_HEADER + u64::from(len));
        if len == 0 {
            return Ok(if check == [0; 8] {
                Parsed::End
            } else {
                Parsed::Bad {
                    fault: Fault::ZeroLength,
                    claimed_end,
                }
            });
        }
        if len as usize > MAX_RECORD {
            return Ok(Parsed::Bad {
                fault: Fault::TooLong(len),
                claimed_end,
            });
        }
        let at = off + RECORD_HEADER;
        if !self.fill(at, u64::from(len))? {
            return Ok(Parsed::Bad {
                fault: Fault::PayloadPastEnd,
                claimed_end,
            });
        }
        let payload = self.bytes(at, u64::from(len))?;
        let leaf = merkle::leaf_hash(payload);
        if check != record_check(self.domain, index, &leaf) {
            return Ok(Parsed::Bad {
                fault: Fault::Checksum,
                claimed_end,
            });
        }
        Ok(Parsed::Record {
            payload,
            leaf,
            next: at + u64::from(len),
        })
    }
}
