//! Checking a whole copy of an asset against its commitment, naming the first bad chunk.
//!
//! The root alone says whether the data matches, not where it differs. To name the chunk,
//! the check reads a *chunk-hash list* beside the data (the leaf hashes in chunk order,
//! 32 bytes each; `tds manifest create` writes one next to the manifest), verifies the list
//! against the signed root, and compares leaf by leaf. Data and list are both streamed:
//! memory stays bounded whatever the asset size.
//!
//! The list's conventions live here too: its format (the leaf hashes in chunk order,
//! 32 bytes each, nothing else; spec/manifest.md §3.2), written by [`ChunkListWriter`],
//! and its place beside a manifest file, [`chunk_list_path`] (`MANIFEST.chunks`).

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use tds_core::hash::Hash256;
use tds_core::merkle::RootBuilder;
use tds_core::ErrorCode;

use super::build::{BuildError, ContentBuilder, StreamError};
use super::Commitment;

/// Why a copy of the data does not match. Chunk indices are 0-based.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// Chunk `index` differs from the one committed to (the chunk-hash list was verified
    /// against the root, so this is the first bad chunk).
    #[error("chunk {index} does not match the manifest")]
    Chunk {
        /// The first bad chunk.
        index: u64,
    },
    /// Chunk `index` has the wrong length: the data is shorter or longer than committed.
    #[error("chunk {index} does not match the manifest: {detail}")]
    Length {
        /// The first chunk whose length differs.
        index: u64,
        /// What differs.
        detail: String,
    },
    /// The data's root differs and no verified chunk-hash list says where.
    #[error("data does not match the manifest (its merkle root differs); {note}")]
    Root {
        /// Why no chunk can be named.
        note: String,
    },
    /// The data could not be read or hashed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The chunk-hash list could not be read.
    #[error("chunk list: read failed: {0}")]
    ListIo(io::Error),
}

impl ErrorCode for DataError {
    fn code(&self) -> &'static str {
        match self {
            DataError::Chunk { .. } => "manifest.data.chunk_mismatch",
            DataError::Length { .. } => "manifest.data.wrong_length",
            DataError::Root { .. } => "manifest.data.root_mismatch",
            DataError::Build(e) => e.code(),
            DataError::ListIo(_) => "manifest.data.list_read_failed",
        }
    }
}

/// What is appended to a manifest's file name to name its chunk-hash list.
pub const CHUNK_LIST_SUFFIX: &str = ".chunks";

/// Where the chunk-hash list of the manifest file `manifest` is kept by convention: the
/// same path with [`CHUNK_LIST_SUFFIX`] appended (`data.manifest.chunks`).
pub fn chunk_list_path(manifest: &Path) -> PathBuf {
    let mut s = manifest.as_os_str().to_owned();
    s.push(CHUNK_LIST_SUFFIX);
    PathBuf::from(s)
}

/// Writes a chunk-hash list: each leaf hash, in chunk order, as its 32 bytes. Give it
/// the leaves as [`ContentBuilder::build_with_leaves`] hands them on.
#[derive(Debug)]
pub struct ChunkListWriter<W: Write> {
    out: W,
    entries: u64,
}

impl<W: Write> ChunkListWriter<W> {
    /// A writer into `out` (wrap a file in a `BufWriter`).
    pub fn new(out: W) -> Self {
        ChunkListWriter { out, entries: 0 }
    }

    /// Appends leaf `index`, which must be the next one.
    pub fn push(&mut self, index: u64, leaf: &Hash256) -> io::Result<()> {
        if index != self.entries {
            return Err(io::Error::other(format!(
                "chunk list: leaf {index} given, leaf {} expected next",
                self.entries
            )));
        }
        self.out.write_all(leaf.as_bytes())?;
        self.entries += 1;
        Ok(())
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The underlying writer, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// What became of the chunk-hash list during a successful [`check_data`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListStatus {
    /// It was given and matches the signed root.
    Verified,
    /// None was given.
    Absent,
    /// It was given but does not match the commitment (the data was checked by its root).
    Invalid(String),
}

/// Hashes a copy of the data with `builder` and checks it against `commitment`, using the
/// chunk-hash list `list` (if given) to name the first bad chunk.
pub fn check_data<R: Read, L: Read>(
    builder: &ContentBuilder<'_>,
    data: R,
    commitment: &Commitment,
    list: Option<L>,
) -> Result<ListStatus, DataError> {
    let mut list = list.map(|l| ListReader::new(BufReader::new(l)));
    let mut data_root = RootBuilder::new();
    let mut first_hash_bad: Option<u64> = None;
    let mut len_bad: Option<(u64, String)> = None;
    let c = *commitment;

    let streamed = builder.stream(data, |leaf| {
        let got = leaf.len as u64;
        match c.chunk_len(leaf.index) {
            None => {
                len_bad = Some((
                    leaf.index,
                    format!("the data is longer than the {} byte(s) committed", c.size),
                ));
                return Err(None);
            }
            Some(expected) if expected != got => {
                len_bad = Some((
                    leaf.index,
                    if got < expected {
                        format!("the data ends after {got} of its {expected} bytes")
                    } else {
                        format!("{got} bytes, expected {expected}")
                    },
                ));
                return Err(None);
            }
            Some(_) => {}
        }
        data_root.push(leaf.hash);
        if let Some(l) = list.as_mut() {
            match l.next_entry() {
                Ok(Some(entry)) if entry != leaf.hash && first_hash_bad.is_none() => {
                    first_hash_bad = Some(leaf.index);
                }
                Ok(_) => {}
                Err(e) => return Err(Some(e)),
            }
        }
        Ok(())
    });
    match streamed {
        Ok(_) => {}
        Err(StreamError::Build(e)) => return Err(e.into()),
        Err(StreamError::Sink(Some(io))) => return Err(DataError::ListIo(io)),
        Err(StreamError::Sink(None)) => {}
    }
    if len_bad.is_none() && data_root.size() < c.chunks {
        let index = data_root.size();
        #[expect(clippy::expect_used, reason = "index < c.chunks, so the chunk exists")]
        let expected = c.chunk_len(index).expect("index < chunks");
        len_bad = Some((
            index,
            format!("the data ends before it (0 of its {expected} bytes)"),
        ));
    }

    let status = match list.as_mut() {
        None => ListStatus::Absent,
        Some(l) => l.finish(&c).map_err(DataError::ListIo)?,
    };
    if status == ListStatus::Verified {
        // The first problem wins; a length problem at the same index is the more precise.
        if let Some((index, detail)) = len_bad {
            if first_hash_bad.is_none_or(|hash_bad| index <= hash_bad) {
                return Err(DataError::Length { index, detail });
            }
        }
        if let Some(index) = first_hash_bad {
            return Err(DataError::Chunk { index });
        }
        return Ok(status);
    }
    if let Some((index, detail)) = len_bad {
        return Err(DataError::Length { index, detail });
    }
    if data_root.root() != c.root {
        let note = match status {
            ListStatus::Invalid(why) => format!("the chunk list cannot name the chunk: {why}"),
            _ => "without a chunk list the bad chunk cannot be named".to_string(),
        };
        return Err(DataError::Root { note });
    }
    Ok(status)
}

/// Reads a chunk-hash list entry by entry, folding it into a root as it goes.
struct ListReader<R> {
    reader: R,
    root: RootBuilder,
    short: bool,
    /// Bytes of a partial entry at the end (0 if the list ends on a whole entry).
    partial: usize,
}

impl<R: Read> ListReader<R> {
    fn new(reader: R) -> Self {
        ListReader {
            reader,
            root: RootBuilder::new(),
            short: false,
            partial: 0,
        }
    }

    /// The next leaf hash, or `None` once the list has ended.
    fn next_entry(&mut self) -> io::Result<Option<Hash256>> {
        if self.short {
            return Ok(None);
        }
        let mut buf = [0u8; 32];
        let mut filled = 0;
        while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
            match self.reader.read(rest) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled < 32 {
            // A partial trailing entry makes the list invalid (finish says so).
            self.short = true;
            self.partial = filled;
            return Ok(None);
        }
        let h = Hash256::from_bytes(buf);
        self.root.push(h);
        Ok(Some(h))
    }

    /// Reads the rest of the list and says whether it matches `c`.
    fn finish(&mut self, c: &Commitment) -> io::Result<ListStatus> {
        while self.root.size() <= c.chunks {
            if self.next_entry()?.is_none() {
                break;
            }
        }
        if self.partial > 0 {
            return Ok(ListStatus::Invalid(format!(
                "it ends with a partial hash of {} byte(s)",
                self.partial
            )));
        }
        if self.root.size() > c.chunks {
            return Ok(ListStatus::Invalid(format!(
                "it holds more hashes than the {} chunk(s) the manifest names",
                c.chunks
            )));
        }
        if self.root.size() < c.chunks {
            return Ok(ListStatus::Invalid(format!(
                "it holds {} hash(es), the manifest names {} chunk(s)",
                self.root.size(),
                c.chunks
            )));
        }
        if self.root.root() != c.root {
            return Ok(ListStatus::Invalid(
                "its root is not the root the manifest commits to".into(),
            ));
        }
        Ok(ListStatus::Verified)
    }
}
