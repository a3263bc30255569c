//! The receiver's side: a streaming verifier that checks chunks in any order against the
//! root, hands each chunk back only once it checks, and remembers which chunks are done.

use serde::{Deserialize, Serialize};
use tds_core::cbor::{self, CborError, Limits};
use tds_core::hash::Hash256;
use tds_core::merkle::{self, HashedLeaf};
use tds_core::ErrorCode;

use super::proof::{ChunkProof, MAX_PROOF_LEN};
use super::{Commitment, CommitmentError};

/// Why a chunk, a proof or a verifier state was refused. Chunk indices are 0-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// The chunk's bytes or its proof do not lead to the committed root.
    #[error("chunk {index} does not match the manifest")]
    Mismatch {
        /// The chunk.
        index: u64,
    },
    /// The chunk has the wrong length for its position.
    #[error("chunk {index} does not match the manifest: {got} bytes, expected {expected}")]
    Length {
        /// The chunk.
        index: u64,
        /// The length the commitment calls for.
        expected: u64,
        /// The length received.
        got: u64,
    },
    /// An index at or past the chunk count.
    #[error("chunk {index} does not exist: the manifest names {chunks} chunk(s)")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The chunk count.
        chunks: u64,
    },
    /// A proof with more than [`MAX_PROOF_LEN`] hashes.
    #[error("chunk {index}: proof of {len} hashes exceeds the limit of 64")]
    ProofTooLong {
        /// The chunk.
        index: u64,
        /// The proof length.
        len: usize,
    },
    /// Bytes that are not a canonical proof or state. (The message carries the CBOR
    /// error's own, so it is not also given as the source.)
    #[error("chunk proof or verifier state: {0}")]
    Cbor(CborError),
    /// A commitment whose fields do not fit together.
    #[error(transparent)]
    Commitment(#[from] CommitmentError),
    /// A saved state that does not belong to this commitment or is malformed.
    #[error("verifier state: {0}")]
    State(String),
    /// A chunk-hash list that does not fit the commitment.
    #[error("chunk list: {0}")]
    List(String),
}

impl From<CborError> for ChunkError {
    fn from(e: CborError) -> Self {
        ChunkError::Cbor(e)
    }
}

impl ErrorCode for ChunkError {
    fn code(&self) -> &'static str {
        match self {
            ChunkError::Mismatch { .. } => "manifest.chunk.mismatch",
            ChunkError::Length { .. } => "manifest.chunk.wrong_length",
            ChunkError::IndexOutOfRange { .. } => "manifest.chunk.index_out_of_range",
            ChunkError::ProofTooLong { .. } => "manifest.chunk.proof_too_long",
            ChunkError::Cbor(_) => "manifest.chunk.malformed",
            ChunkError::Commitment(e) => e.code(),
            ChunkError::State(_) => "manifest.chunk.bad_state",
            ChunkError::List(_) => "manifest.chunk.bad_list",
        }
    }
}

/// A chunk that has been checked against the commitment. Only
/// [`ChunkVerifier::verify`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedChunk<'a> {
    index: u64,
    offset: u64,
    data: &'a [u8],
}

impl<'a> VerifiedChunk<'a> {
    /// The chunk index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Where the chunk starts in the asset.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The checked bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

/// Checks chunks of one asset as they arrive, in any order, each with its
/// [`ChunkProof`]. Its state is the commitment plus one bit per chunk (at most 8 MiB, for
/// [`MAX_CHUNKS`](super::MAX_CHUNKS)); [`state`](Self::state) and
/// [`resume`](Self::resume) carry it across restarts so a transfer resumes where it
/// stopped.
///
/// ```
/// use std::num::NonZeroUsize;
/// use tds_manifest::content::{ChunkSize, ChunkTree, ChunkVerifier, ContentBuilder};
///
/// let data = vec![9u8; 300_000];
/// let builder = ContentBuilder::new(ChunkSize::MIN, NonZeroUsize::MIN);
/// let (commitment, tree) = ChunkTree::build(&builder, &data[..])?; // the sender
/// let mut verifier = ChunkVerifier::new(&commitment)?;           // the receiver
/// for index in (0..commitment.chunks).rev() {
///     let start = commitment.chunk_offset(index) as usize;
///     let len = commitment.chunk_len(index).ok_or("no such chunk")? as usize;
///     let chunk = verifier.verify(&data[start..start + len], &tree.proof(index)?)?;
///     assert_eq!(chunk.index(), index);
/// }
/// assert!(verifier.is_complete());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ChunkVerifier {
    commitment: Commitment,
    bits: Vec<u64>,
    done: u64,
    /// The interior hashes of the last path checked (at most 64; never changes an answer).
    cache: merkle::PathCache,
}

/// Verifiers are equal when they check the same commitment and have verified the same
/// chunks; the hash cache is not part of that.
impl PartialEq for ChunkVerifier {
    fn eq(&self, other: &Self) -> bool {
        self.commitment == other.commitment && self.bits == other.bits && self.done == other.done
    }
}

impl Eq for ChunkVerifier {}

impl ChunkVerifier {
    /// A verifier with no chunk checked yet.
    pub fn new(commitment: &Commitment) -> Result<Self, ChunkError> {
        commitment.check()?;
        let words = usize::try_from(commitment.chunks.div_ceil(64))
            .map_err(|_| ChunkError::State("too many chunks for this platform".into()))?;
        Ok(ChunkVerifier {
            commitment: *commitment,
            bits: vec![0; words],
            done: 0,
            cache: merkle::PathCache::new(),
        })
    }

    /// The commitment chunks are checked against.
    pub fn commitment(&self) -> &Commitment {
        &self.commitment
    }

    /// Checks chunk `proof.index` and returns it if it belongs to the asset. A chunk
    /// received twice is checked again and returned again; the state does not change.
    pub fn verify<'a>(
        &mut self,
        data: &'a [u8],
        proof: &ChunkProof,
    ) -> Result<VerifiedChunk<'a>, ChunkError> {
        let offset = self.verify_hashed(&HashedLeaf::of(data), proof)?;
        Ok(VerifiedChunk {
            index: proof.index,
            offset,
            data,
        })
    }

    /// [`verify`](Self::verify) for a chunk hashed as it arrived in pieces
    /// ([`tds_core::merkle::LeafHasher`]): checks its length and leaf against the
    /// commitment and returns where it starts in the asset.
    pub fn verify_hashed(
        &mut self,
        chunk: &HashedLeaf,
        proof: &ChunkProof,
    ) -> Result<u64, ChunkError> {
        let index = proof.index;
        let c = &self.commitment;
        let expected = c.chunk_len(index).ok_or(ChunkError::IndexOutOfRange {
            index,
            chunks: c.chunks,
        })?;
        if chunk.len() != expected {
            return Err(ChunkError::Length {
                index,
                expected,
                got: chunk.len(),
            });
        }
        if proof.path.len() > MAX_PROOF_LEN {
            return Err(ChunkError::ProofTooLong {
                index,
                len: proof.path.len(),
            });
        }
        merkle::verify_inclusion_cached(
            chunk.leaf(),
            index,
            c.chunks,
            &proof.path,
            &c.root,
            &mut self.cache,
        )
        .map_err(|_| ChunkError::Mismatch { index })?;
        let offset = c.chunk_offset(index);
        self.mark(index);
        Ok(offset)
    }

    fn mark(&mut self, index: u64) {
        let (word, bit) = (index / 64, index % 64);
        if let Some(w) = usize::try_from(word)
            .ok()
            .and_then(|w| self.bits.get_mut(w))
        {
            if *w & (1 << bit) == 0 {
                *w |= 1 << bit;
                self.done += 1;
            }
        }
    }

    /// Takes back the check of chunk `index`: its caller could not store it, so a state
    /// saved from now on does not claim it and a resume asks for it again. Returns whether
    /// it was checked.
    pub fn forget(&mut self, index: u64) -> bool {
        let (word, bit) = (index / 64, index % 64);
        let Some(w) = usize::try_from(word)
            .ok()
            .and_then(|w| self.bits.get_mut(w))
        else {
            return false;
        };
        if *w & (1 << bit) == 0 {
            return false;
        }
        *w &= !(1 << bit);
        self.done -= 1;
        true
    }

    /// Whether chunk `index` has been checked.
    pub fn is_verified(&self, index: u64) -> bool {
        let (word, bit) = (index / 64, index % 64);
        index < self.commitment.chunks
            && usize::try_from(word)
                .ok()
                .and_then(|w| self.bits.get(w))
                .is_some_and(|w| w & (1 << bit) != 0)
    }

    /// How many distinct chunks have been checked.
    pub fn verified_count(&self) -> u64 {
        self.done
    }

    /// Whether every chunk has been checked.
    pub fn is_complete(&self) -> bool {
        self.done == self.commitment.chunks
    }

    /// The first chunk at or after `from` not yet checked.
    pub fn next_missing(&self, from: u64) -> Option<u64> {
        let mut i = from;
        while i < self.commitment.chunks {
            #[expect(
                clippy::expect_used,
                reason = "i < chunks, and bits holds ceil(chunks / 64) words"
            )]
            let word = usize::try_from(i / 64)
                .ok()
                .and_then(|w| self.bits.get(w))
                .copied()
                .expect("a word for every chunk");
            let rest = !word >> (i % 64);
            if rest != 0 {
                let found = i + u64::from(rest.trailing_zeros());
                return (found < self.commitment.chunks).then_some(found);
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }

    /// The chunks not yet checked, in order.
    pub fn missing(&self) -> impl Iterator<Item = u64> + '_ {
        let mut from = 0;
        std::iter::from_fn(move || {
            let next = self.next_missing(from)?;
            from = next + 1;
            Some(next)
        })
    }

    /// The state to save for resuming.
    pub fn state(&self) -> VerifierState {
        let mut verified = Vec::with_capacity(self.bits.len() * 8);
        for w in &self.bits {
            verified.extend_from_slice(&w.to_le_bytes());
        }
        // bits holds ceil(chunks / 64) words, so this is at most its length in bytes.
        verified.truncate(self.bits.len() * 8 - bitmap_slack(self.commitment.chunks));
        VerifierState {
            version: VerifierState::VERSION,
            size: self.commitment.size,
            chunk_size: self.commitment.chunk_size.get(),
            root: self.commitment.root,
            verified,
        }
    }

    /// A verifier that continues from a saved state, which must be for `commitment`.
    pub fn resume(commitment: &Commitment, state: &VerifierState) -> Result<Self, ChunkError> {
        let mut v = ChunkVerifier::new(commitment)?;
        if state.version != VerifierState::VERSION {
            return Err(ChunkError::State(format!(
                "version {} is not supported",
                state.version
            )));
        }
        if state.size != commitment.size
            || state.chunk_size != commitment.chunk_size.get()
            || state.root != commitment.root
        {
            return Err(ChunkError::State(
                "it belongs to another asset (size, chunk size or root differ)".into(),
            ));
        }
        let want = v.bits.len() * 8 - bitmap_slack(commitment.chunks);
        if state.verified.len() != want {
            return Err(ChunkError::State(format!(
                "verified: {} bytes, expected {want}",
                state.verified.len()
            )));
        }
        for (i, byte) in state.verified.iter().enumerate() {
            let (word, shift) = (i / 8, (i % 8) * 8);
            if let Some(w) = v.bits.get_mut(word) {
                *w |= u64::from(*byte) << shift;
            }
        }
        let extra = commitment.chunks % 64;
        if extra != 0 {
            if let Some(last) = v.bits.last() {
                if last >> extra != 0 {
                    return Err(ChunkError::State(
                        "verified: bits set past the last chunk".into(),
                    ));
                }
            }
        }
        v.done = v.bits.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(v)
    }
}

/// Whole bytes of the last bitmap word that lie past `chunks` (0 to 7): the state keeps
/// `ceil(chunks / 8)` bytes of the `ceil(chunks / 64)` words.
fn bitmap_slack(chunks: u64) -> usize {
    let used = chunks.div_ceil(8) % 8;
    if used == 0 {
        0
    } else {
        8 - used as usize
    }
}

/// What a [`ChunkVerifier`] needs to resume: which asset (size, chunk size, root) and a
/// bitmap of checked chunks (bit `i % 8` of byte `i / 8` is chunk `i`). Canonical CBOR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierState {
    /// Format version (1).
    pub version: u64,
    /// The asset size.
    pub size: u64,
    /// The chunk size.
    pub chunk_size: u64,
    /// The root.
    pub root: Hash256,
    /// The bitmap of checked chunks.
    #[serde(with = "serde_bytes")]
    pub verified: Vec<u8>,
}

impl VerifierState {
    /// The current format version.
    pub const VERSION: u64 = 1;

    /// The canonical CBOR encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ChunkError> {
        Ok(cbor::encode(self)?)
    }

    /// Decodes a saved state (at most 8 MiB of bitmap plus the header).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChunkError> {
        let limits = Limits {
            max_depth: 2,
            max_size: 9 * 1024 * 1024,
            allow_floats: false,
        };
        Ok(cbor::decode_with(bytes, &limits)?)
    }
}
