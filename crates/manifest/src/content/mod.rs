//! The content commitment: fixed-size chunks, an RFC 9162 Merkle tree over them, and the
//! tools that build it ([`ContentBuilder`]), prove chunks ([`ChunkTree`], [`ChunkProof`])
//! and check them as they arrive ([`ChunkVerifier`]).
//!
//! Chunk `i` (0-based) is bytes `[i * chunk_size, min((i + 1) * chunk_size, size))`; every
//! chunk but the last is exactly `chunk_size` bytes, the last is 1 to `chunk_size` bytes,
//! and the empty asset has no chunks. The leaf of chunk `i` is `SHA-256(0x00 ‖ chunk)`,
//! interior nodes are `SHA-256(0x01 ‖ left ‖ right)` ([`tds_core::merkle`]), and the root of
//! the empty asset is `SHA-256("")`.

mod build;
mod file_build;
mod list;
mod proof;
mod tree_file;
mod verify;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tds_core::hash::Hash256;
use tds_core::ErrorCode;

pub use build::{BuildError, ContentBuilder, Progress, BUFFER_BUDGET};
pub use list::{
    check_data, chunk_list_path, ChunkListWriter, DataError, ListStatus, CHUNK_LIST_SUFFIX,
};
pub use proof::{ChunkProof, ChunkTree, MAX_PROOF_LEN};
pub use tree_file::{
    write_tree_from_list, ChunkTreeFile, ChunkTreeWriter, TreeFileError, TreeHeader, TreeSink,
    TreeStore, TREE_HEADER_LEN, TREE_MAGIC, TREE_VERSION,
};
pub use verify::{ChunkError, ChunkVerifier, VerifiedChunk, VerifierState};

/// The most chunks one asset may have: 2^26. The verifier's bitmap is then at most
/// 8 MiB; with 1 MiB chunks an asset may be 64 TiB, with 64 KiB chunks 4 TiB.
pub const MAX_CHUNKS: u64 = 1 << 26;

/// A chunk size: a power of two from 64 KiB to 16 MiB.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkSize(u32);

impl ChunkSize {
    /// 64 KiB, the smallest size a manifest may name.
    pub const MIN: ChunkSize = ChunkSize(64 * 1024);
    /// 16 MiB, the largest size a manifest may name.
    pub const MAX: ChunkSize = ChunkSize(16 * 1024 * 1024);
    /// 1 MiB, the default.
    pub const DEFAULT: ChunkSize = ChunkSize(1024 * 1024);

    /// A chunk size of `bytes`, which must be a power of two from 64 KiB to 16 MiB.
    pub fn new(bytes: u64) -> Result<ChunkSize, ChunkSizeError> {
        if !bytes.is_power_of_two()
            || bytes < u64::from(Self::MIN.0)
            || bytes > u64::from(Self::MAX.0)
        {
            return Err(ChunkSizeError(bytes));
        }
        u32::try_from(bytes)
            .map(ChunkSize)
            .map_err(|_| ChunkSizeError(bytes))
    }

    /// Any power of two from 1 byte to 16 MiB, for tests and tools that want many chunks
    /// from little data. A manifest never accepts a size below 64 KiB, so a commitment
    /// made with one cannot be signed into a manifest that decodes.
    #[doc(hidden)]
    pub fn for_tests(bytes: u32) -> Result<ChunkSize, ChunkSizeError> {
        if bytes.is_power_of_two() && bytes <= Self::MAX.0 {
            Ok(ChunkSize(bytes))
        } else {
            Err(ChunkSizeError(u64::from(bytes)))
        }
    }

    /// The size in bytes.
    pub const fn get(self) -> u64 {
        self.0 as u64
    }

    /// The size in bytes, as a `u32` (it is at most 16 MiB).
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// The size in bytes, as a `usize` (a chunk always fits in memory).
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }

    /// How many chunks `size` bytes make (0 for the empty asset).
    pub const fn chunks_for(self, size: u64) -> u64 {
        size.div_ceil(self.0 as u64)
    }
}

impl Default for ChunkSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Debug for ChunkSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkSize({})", self.0)
    }
}

impl fmt::Display for ChunkSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A chunk size that is not a power of two from 64 KiB to 16 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("chunk size {0} is not a power of two from 65536 (64 KiB) to 16777216 (16 MiB)")]
pub struct ChunkSizeError(pub u64);

impl ErrorCode for ChunkSizeError {
    fn code(&self) -> &'static str {
        "manifest.content.chunk_size"
    }
}

impl Serialize for ChunkSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.get())
    }
}

impl<'de> Deserialize<'de> for ChunkSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        ChunkSize::new(v).map_err(serde::de::Error::custom)
    }
}

/// The hash algorithm and tree shape of a content commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ContentAlg {
    /// SHA-256 leaves and nodes in the RFC 9162 tree shape.
    #[serde(rename = "sha-256")]
    #[default]
    Sha256,
}

impl ContentAlg {
    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ContentAlg::Sha256 => "sha-256",
        }
    }
}

/// A commitment to an asset's exact bytes: size, chunk size, chunk count, Merkle root.
///
/// Its fields are checked for consistency by [`Commitment::check`] (which every decoder
/// and every constructor in this crate calls): `chunks == ceil(size / chunk_size)`,
/// `chunks <= MAX_CHUNKS`, and the empty asset has the empty root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Commitment {
    /// The asset size in bytes.
    pub size: u64,
    /// The chunk size.
    pub chunk_size: ChunkSize,
    /// The number of chunks.
    pub chunks: u64,
    /// The RFC 9162 root over the chunk leaves.
    pub root: Hash256,
    /// The hash algorithm.
    pub alg: ContentAlg,
}

/// Why a commitment's fields do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitmentError {
    /// `chunks` is not `ceil(size / chunk_size)`.
    #[error("content.chunks: {chunks} chunks do not cover {size} bytes in chunks of {chunk_size} (expected {expected})")]
    ChunkCount {
        /// The size.
        size: u64,
        /// The chunk size.
        chunk_size: u64,
        /// The count given.
        chunks: u64,
        /// The count the size calls for.
        expected: u64,
    },
    /// More than [`MAX_CHUNKS`] chunks.
    #[error("content.chunks: {chunks} chunks exceeds the limit of {limit}")]
    TooManyChunks {
        /// The count.
        chunks: u64,
        /// The limit.
        limit: u64,
    },
    /// An empty asset whose root is not `SHA-256("")`.
    #[error(
        "content.root: the empty asset must have the empty-tree root (sha-256 of the empty string)"
    )]
    EmptyRoot,
}

impl ErrorCode for CommitmentError {
    fn code(&self) -> &'static str {
        match self {
            CommitmentError::ChunkCount { .. } => "manifest.content.chunk_count",
            CommitmentError::TooManyChunks { .. } => "manifest.content.too_many_chunks",
            CommitmentError::EmptyRoot => "manifest.content.empty_root",
        }
    }
}

impl Commitment {
    /// A commitment from its parts, checked.
    pub fn new(size: u64, chunk_size: ChunkSize, root: Hash256) -> Result<Self, CommitmentError> {
        let c = Commitment {
            size,
            chunk_size,
            chunks: chunk_size.chunks_for(size),
            root,
            alg: ContentAlg::Sha256,
        };
        c.check()?;
        Ok(c)
    }

    /// Checks that the fields fit together.
    pub fn check(&self) -> Result<(), CommitmentError> {
        let expected = self.chunk_size.chunks_for(self.size);
        if self.chunks != expected {
            return Err(CommitmentError::ChunkCount {
                size: self.size,
                chunk_size: self.chunk_size.get(),
                chunks: self.chunks,
                expected,
            });
        }
        if self.chunks > MAX_CHUNKS {
            return Err(CommitmentError::TooManyChunks {
                chunks: self.chunks,
                limit: MAX_CHUNKS,
            });
        }
        if self.size == 0 && self.root != tds_core::merkle::empty_root() {
            return Err(CommitmentError::EmptyRoot);
        }
        Ok(())
    }

    /// The length chunk `index` must have, or `None` past the last chunk.
    pub fn chunk_len(&self, index: u64) -> Option<u64> {
        if index >= self.chunks {
            return None;
        }
        let start = index.checked_mul(self.chunk_size.get())?;
        Some((self.size - start).min(self.chunk_size.get()))
    }

    /// The byte offset where chunk `index` starts.
    pub fn chunk_offset(&self, index: u64) -> u64 {
        index.saturating_mul(self.chunk_size.get())
    }
}
