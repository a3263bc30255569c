//! The sender's side: a tree over the chunk leaves that answers inclusion proofs, and the
//! proof format.

use std::io::Read;

use serde::{Deserialize, Serialize};
use tds_core::cbor::{self, Limits};
use tds_core::hash::Hash256;
use tds_core::merkle::{self, MemoryTree, MerkleError, NodeSource};

use super::build::{BuildError, ContentBuilder};
use super::verify::ChunkError;
use super::{Commitment, MAX_CHUNKS};

/// The most hashes an inclusion proof may carry (a tree of at most 2^64 leaves).
pub const MAX_PROOF_LEN: usize = 64;

/// Largest encoded proof accepted: a map with the index and 64 hashes, with room to spare.
const MAX_PROOF_BYTES: usize = 4096;

/// The proof that one chunk belongs to a committed asset: its 0-based index and the RFC
/// 9162 inclusion path of its leaf (sibling hashes from the leaf upwards).
///
/// Encoded as canonical CBOR: `{"path": [bstr .size 32, ...], "index": uint}` (keys in
/// canonical order: `path` before `index` because shorter keys sort first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkProof {
    /// The chunk index.
    pub index: u64,
    /// The inclusion path, leaf upwards.
    pub path: Vec<Hash256>,
}

impl ChunkProof {
    /// The canonical CBOR encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ChunkError> {
        Ok(cbor::encode(self)?)
    }

    /// Decodes a proof, refusing anything non-canonical, oversized or longer than
    /// [`MAX_PROOF_LEN`] hashes.
    pub fn from_bytes(bytes: &[u8]) -> Result<ChunkProof, ChunkError> {
        let limits = Limits {
            max_depth: 2,
            max_size: MAX_PROOF_BYTES,
            allow_floats: false,
        };
        let proof: ChunkProof = cbor::decode_with(bytes, &limits)?;
        if proof.path.len() > MAX_PROOF_LEN {
            return Err(ChunkError::ProofTooLong {
                index: proof.index,
                len: proof.path.len(),
            });
        }
        Ok(proof)
    }
}

/// A Merkle tree over an asset's chunk leaves, kept by whoever sends the asset so it can
/// prove any chunk without reading the others. About 64 bytes per chunk (64 MiB for a
/// 1 TiB asset in 1 MiB chunks); the chunk-hash list it is made from is 32 bytes per chunk.
#[derive(Clone, Debug, Default)]
pub struct ChunkTree {
    tree: MemoryTree,
}

impl ChunkTree {
    /// A tree over leaf hashes in chunk order.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash256>) -> Self {
        ChunkTree {
            tree: MemoryTree::from_leaves(leaves),
        }
    }

    /// Hashes `reader` with `builder` and keeps the leaves.
    pub fn build<R: Read>(
        builder: &ContentBuilder<'_>,
        reader: R,
    ) -> Result<(Commitment, ChunkTree), BuildError> {
        let mut tree = MemoryTree::new();
        let c = builder.build_with_leaves(reader, |_, leaf| {
            tree.push(*leaf);
            Ok(())
        })?;
        Ok((c, ChunkTree { tree }))
    }

    /// A tree from a chunk-hash list (32-byte leaf hashes in chunk order, nothing else),
    /// checked against `commitment`: the count and the root must match.
    pub fn from_chunk_list(list: &[u8], commitment: &Commitment) -> Result<Self, ChunkError> {
        if list.len() as u64 != commitment.chunks.saturating_mul(32)
            || commitment.chunks > MAX_CHUNKS
        {
            return Err(ChunkError::List(format!(
                "{} bytes is not {} hashes of 32 bytes",
                list.len(),
                commitment.chunks
            )));
        }
        #[expect(clippy::expect_used, reason = "chunks_exact(32) yields 32-byte slices")]
        let tree = ChunkTree::from_leaves(
            list.chunks_exact(32)
                .map(|h| Hash256::from_slice(h).expect("32 bytes")),
        );
        if tree.root() != commitment.root {
            return Err(ChunkError::List(
                "its root is not the root the manifest commits to".into(),
            ));
        }
        Ok(tree)
    }

    /// The chunk-hash list: the leaf hashes in chunk order, 32 bytes each.
    pub fn to_chunk_list(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..self.len() {
            #[expect(
                clippy::expect_used,
                reason = "the tree keeps every leaf below its size at level 0"
            )]
            let h = self.tree.perfect(0, i).expect("leaf below the size");
            out.extend_from_slice(h.as_bytes());
        }
        out
    }

    /// The number of chunks.
    pub fn len(&self) -> u64 {
        self.tree.size()
    }

    /// Whether there are no chunks (the empty asset).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The root.
    pub fn root(&self) -> Hash256 {
        self.tree.root()
    }

    /// The leaf hash of chunk `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash256> {
        self.tree.perfect(0, index).ok()
    }

    /// The inclusion proof of chunk `index`.
    pub fn proof(&self, index: u64) -> Result<ChunkProof, MerkleError> {
        Ok(ChunkProof {
            index,
            path: merkle::inclusion_proof(&self.tree, index, self.len())?,
        })
    }
}
