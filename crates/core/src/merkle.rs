//! RFC 9162 Merkle trees: hashing, proofs and their verification.
//!
//! One implementation serves the content commitment of data-asset manifests (leaves are
//! chunks) and the provenance log (leaves are events):
//!
//! - the hash of the empty tree is `SHA-256()`;
//! - a leaf hash is `SHA-256(0x00 ‖ data)`;
//! - an interior node is `SHA-256(0x01 ‖ left ‖ right)`;
//! - a tree of `n > 1` leaves splits at `k`, the largest power of two smaller than `n`.
//!
//! Proof generation reads hashes of *perfect* subtrees (a power-of-two number of leaves,
//! aligned) from a [`NodeSource`], so a store that keeps them (tiles) answers every proof
//! in O(log n) reads. Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and passes the
//! transparency-dev test vectors (`spec/vectors/rfc9162-merkle`).
//!
//! ```
//! use tds_core::merkle::{self, MemoryTree};
//!
//! let mut tree = MemoryTree::new();
//! for data in [&b"a"[..], b"b", b"c"] {
//!     tree.push(merkle::leaf_hash(data));
//! }
//! let root = tree.root();
//! let proof = merkle::inclusion_proof(&tree, 2, 3)?;
//! merkle::verify_inclusion(&merkle::leaf_hash(b"c"), 2, 3, &proof, &root)?;
//! # Ok::<(), merkle::MerkleError>(())
//! ```

use crate::hash::Hash256;

/// Why a proof could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// A leaf index at or beyond the tree size.
    #[error("merkle: index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// Sizes that admit no proof (size1 > size2, or a consistency proof from size 0).
    #[error("merkle: no proof exists between sizes {size1} and {size2}")]
    BadSizes {
        /// The first size.
        size1: u64,
        /// The second size.
        size2: u64,
    },
    /// A proof of the wrong length for its sizes.
    #[error("merkle: proof has {got} hashes, expected {expected}")]
    WrongProofLength {
        /// Hashes given.
        got: usize,
        /// Hashes the sizes call for.
        expected: usize,
    },
    /// A proof element that is not 32 bytes.
    #[error("merkle: proof hash {index} is {len} bytes, not 32")]
    BadHashLength {
        /// Its position in the proof.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The proof leads to a different root.
    #[error("merkle: proof does not lead to the expected root")]
    RootMismatch,
    /// The node source could not supply a hash.
    #[error("merkle: node source: {0}")]
    Source(String),
}

impl crate::ErrorCode for MerkleError {
    fn code(&self) -> &'static str {
        match self {
            MerkleError::IndexOutOfRange { .. } => "merkle.index_out_of_range",
            MerkleError::BadSizes { .. } => "merkle.bad_sizes",
            MerkleError::WrongProofLength { .. } => "merkle.wrong_proof_length",
            MerkleError::BadHashLength { .. } => "merkle.bad_hash_length",
            MerkleError::RootMismatch => "merkle.root_mismatch",
            MerkleError::Source(_) => "merkle.source",
        }
    }
}

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash256 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    to_hash(ctx.finish())
}

/// [`leaf_hash`] over bytes that arrive in pieces (a chunk read from the network as
/// it comes, never copied into one buffer).
pub struct LeafHasher {
    ctx: ring::digest::Context,
    len: u64,
}

impl LeafHasher {
    /// A hasher primed with the leaf prefix.
    pub fn new() -> LeafHasher {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&[0x00]);
        LeafHasher { ctx, len: 0 }
    }

    /// Adds the next piece.
    pub fn update(&mut self, piece: &[u8]) {
        self.ctx.update(piece);
        self.len = self.len.saturating_add(piece.len() as u64);
    }

    /// The leaf hash of everything added, with its length.
    pub fn finish(self) -> HashedLeaf {
        HashedLeaf {
            leaf: to_hash(self.ctx.finish()),
            len: self.len,
        }
    }
}

impl Default for LeafHasher {
    fn default() -> Self {
        LeafHasher::new()
    }
}

impl std::fmt::Debug for LeafHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafHasher")
            .field("len", &self.len)
            .finish()
    }
}

/// The leaf hash of some bytes and their length. Made only by hashing them
/// ([`HashedLeaf::of`], [`LeafHasher::finish`]), so a verifier that takes one knows the
/// hash is of real bytes of that length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedLeaf {
    leaf: Hash256,
    len: u64,
}

impl HashedLeaf {
    /// Hashes `data` whole.
    pub fn of(data: &[u8]) -> HashedLeaf {
        HashedLeaf {
            leaf: leaf_hash(data),
            len: data.len() as u64,
        }
    }

    /// `SHA-256(0x00 ‖ data)`.
    pub fn leaf(&self) -> &Hash256 {
        &self.leaf
    }

    /// The length of the data hashed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte was hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash256, right: &Hash256) -> Hash256 {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left.as_bytes());
    buf[33..].copy_from_slice(right.as_bytes());
    Hash256::sha256(&buf)
}

/// The root of the empty tree: `SHA-256()`.
pub fn empty_root() -> Hash256 {
    Hash256::sha256(&[])
}

#[expect(
    clippy::expect_used,
    reason = "a ring SHA-256 digest is always 32 bytes"
)]
fn to_hash(d: ring::digest::Digest) -> Hash256 {
    Hash256::from_slice(d.as_ref()).expect("SHA-256 digests are 32 bytes")
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Where the hashes of perfect subtrees come from.
///
/// `perfect(level, index)` is the root of the `2^level` leaves starting at
/// `index << level`; level 0 is the leaf hashes.
pub trait NodeSource {
    /// The hash of one perfect subtree that lies wholly inside the tree.
    fn perfect(&self, level: u32, index: u64) -> Result<Hash256, MerkleError>;
}

/// The root of leaves `[start, end)`, where `start` is a multiple of the largest power of
/// two not above `end - start` (as every subtree in RFC 9162 recursion is).
pub fn subtree_root<S: NodeSource + ?Sized>(
    source: &S,
    start: u64,
    end: u64,
) -> Result<Hash256, MerkleError> {
    let n = end.saturating_sub(start);
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() {
        let level = n.trailing_zeros();
        return source.perfect(level, start >> level);
    }
    // Walk down the right edge, remembering the perfect left subtrees, then fold up.
    let mut lefts = Vec::with_capacity(64);
    let (mut a, mut len) = (start, n);
    while !len.is_power_of_two() {
        let k = split_point(len);
        lefts.push(source.perfect(k.trailing_zeros(), a >> k.trailing_zeros())?);
        a += k;
        len -= k;
    }
    let mut acc = source.perfect(len.trailing_zeros(), a >> len.trailing_zeros())?;
    for left in lefts.iter().rev() {
        acc = node_hash(left, &acc);
    }
    Ok(acc)
}

/// The root of a tree of `size` leaves.
pub fn root<S: NodeSource + ?Sized>(source: &S, size: u64) -> Result<Hash256, MerkleError> {
    subtree_root(source, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1),
/// ordered from the leaf upwards.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash256>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::with_capacity(64);
    let (mut start, mut end) = (0u64, size);
    // Collected from the top down; reversed at the end.
    while end - start > 1 {
        let k = split_point(end - start);
        if index < start + k {
            proof.push(subtree_root(source, start + k, end)?);
            end = start + k;
        } else {
            proof.push(subtree_root(source, start, start + k)?);
            start += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof from size `size1` to size `size2` (RFC 9162 §2.1.4.1).
pub fn consistency_proof<S: NodeSource + ?Sized>(
    source: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash256>, MerkleError> {
    if size1 == 0 || size1 > size2 {
        return Err(MerkleError::BadSizes { size1, size2 });
    }
    let mut proof = Vec::with_capacity(64);
    // SUBPROOF(m, D[start:end], b), iteratively.
    let (mut start, mut end, mut m, mut complete) = (0u64, size2, size1, true);
    loop {
        let n = end - start;
        if m == n {
            if !complete {
                proof.push(subtree_root(source, start, end)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            proof.push(subtree_root(source, start + k, end)?);
            end = start + k;
        } else {
            proof.push(subtree_root(source, start, start + k)?);
            start += k;
            m -= k;
            complete = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

fn check_len(proof: &[&[u8]]) -> Result<(), MerkleError> {
    for (index, p) in proof.iter().enumerate() {
        if p.len() != 32 {
            return Err(MerkleError::BadHashLength {
                index,
                len: p.len(),
            });
        }
    }
    Ok(())
}

/// A proof element, leaf hash or root as a hash (callers check the lengths first; one of
/// another length can never match a SHA-256 tree).
fn h32(b: &[u8]) -> Result<Hash256, MerkleError> {
    Hash256::from_slice(b).ok_or(MerkleError::RootMismatch)
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2).
pub fn root_from_inclusion_proof(
    leaf: &Hash256,
    index: u64,
    size: u64,
    proof: &[Hash256],
) -> Result<Hash256, MerkleError> {
    walk_inclusion_proof(leaf, index, size, proof, |_, left, right| {
        node_hash(left, right)
    })
}

/// RFC 9162 §2.1.3.2 with the interior hashing left to `hash(level, left, right)`, where
/// `level` is the height of the node being made (1 for the parent of two leaves).
#[inline]
fn walk_inclusion_proof(
    leaf: &Hash256,
    index: u64,
    size: u64,
    proof: &[Hash256],
    mut hash: impl FnMut(u32, &Hash256, &Hash256) -> Hash256,
) -> Result<Hash256, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    let wrong_length = || MerkleError::WrongProofLength {
        got: proof.len(),
        expected,
    };
    if proof.len() != expected {
        return Err(wrong_length());
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut level = 0u32;
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(wrong_length());
        }
        if fnode & 1 == 1 || fnode == snode {
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
                level += 1;
            }
            r = hash(level, p, &r);
        } else {
            r = hash(level, &r, p);
        }
        fnode >>= 1;
        snode >>= 1;
        level += 1;
    }
    if snode != 0 {
        return Err(wrong_length());
    }
    Ok(r)
}

/// The interior hashes of the last inclusion path checked, kept to shorten the next one
/// ([`verify_inclusion_cached`]).
///
/// A proof's interior hashes are all `node_hash(left, right)`. The cache remembers, for
/// each level, the last `(left, right)` pair hashed there and its result. When the next
/// proof needs the same pair at that level, the result is reused instead of hashed again.
/// This is memoization of a pure function, so every proof gets exactly the answer it would
/// get without the cache, whatever the cache holds. Proofs for nearby leaves share their
/// upper path, so verifying chunks in order, or in reverse, hashes about two nodes per
/// chunk instead of log2(chunks). The cache holds at most 64 entries, whatever the size of
/// the tree.
#[derive(Clone, Debug, Default)]
pub struct PathCache {
    nodes: Vec<Option<(Hash256, Hash256, Hash256)>>,
}

impl PathCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn node_hash(&mut self, level: u32, left: &Hash256, right: &Hash256) -> Hash256 {
        if self.nodes.len() < 64 {
            self.nodes.resize(64, None);
        }
        let slot = self.nodes.get_mut(level as usize);
        match slot {
            Some(Some((l, r, h))) if l == left && r == right => *h,
            Some(slot) => {
                let h = node_hash(left, right);
                *slot = Some((*left, *right, h));
                h
            }
            None => node_hash(left, right),
        }
    }
}

/// [`verify_inclusion`] with the interior hashes memoized in `cache`: the same answer for
/// every input, usually with fewer hashes when consecutive proofs come from one tree.
pub fn verify_inclusion_cached(
    leaf: &Hash256,
    index: u64,
    size: u64,
    proof: &[Hash256],
    root: &Hash256,
    cache: &mut PathCache,
) -> Result<(), MerkleError> {
    let r = walk_inclusion_proof(leaf, index, size, proof, |level, left, right| {
        cache.node_hash(level, left, right)
    })?;
    if r == *root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// The number of hashes in the inclusion proof of `index` in a tree of `size`.
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    if index >= size {
        return 0;
    }
    // Hashes below the point where the paths to `index` and to the last leaf meet, plus
    // one per set bit above it on the right edge.
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    (inner + border) as usize
}

/// Checks an inclusion proof against a root.
pub fn verify_inclusion(
    leaf: &Hash256,
    index: u64,
    size: u64,
    proof: &[Hash256],
    root: &Hash256,
) -> Result<(), MerkleError> {
    if root_from_inclusion_proof(leaf, index, size, proof)? == *root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// [`verify_inclusion`] over raw byte strings, as the reference verifier takes them: every
/// proof element must be 32 bytes; the leaf hash and root are compared as bytes.
pub fn verify_inclusion_bytes(
    leaf: &[u8],
    index: u64,
    size: u64,
    proof: &[&[u8]],
    root: &[u8],
) -> Result<(), MerkleError> {
    check_len(proof)?;
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    if leaf.len() != 32 || root.len() != 32 {
        // A leaf hash or root of another length can never be part of a SHA-256 tree.
        return Err(MerkleError::RootMismatch);
    }
    let proof = proof
        .iter()
        .map(|p| h32(p))
        .collect::<Result<Vec<_>, _>>()?;
    verify_inclusion(&h32(leaf)?, index, size, &proof, &h32(root)?)
}

/// Checks a consistency proof between two roots (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash256],
    root1: &Hash256,
    root2: &Hash256,
) -> Result<(), MerkleError> {
    let refs: Vec<&[u8]> = proof.iter().map(|h| h.as_bytes().as_slice()).collect();
    verify_consistency_bytes(size1, size2, &refs, root1.as_bytes(), root2.as_bytes())
}

/// [`verify_consistency`] over raw byte strings, as the reference verifier takes them.
pub fn verify_consistency_bytes(
    size1: u64,
    size2: u64,
    proof: &[&[u8]],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), MerkleError> {
    check_len(proof)?;
    if size2 < size1 || size1 == 0 {
        return Err(MerkleError::BadSizes { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(MerkleError::WrongProofLength {
                got: proof.len(),
                expected: 0,
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    if root1.len() != 32 || root2.len() != 32 {
        return Err(MerkleError::RootMismatch);
    }
    let (root1, root2) = (h32(root1)?, h32(root2)?);
    let proof = proof
        .iter()
        .map(|p| h32(p))
        .collect::<Result<Vec<_>, _>>()?;

    // Drop the common right-edge levels of size1 - 1; if size1 is a power of two its
    // root is the first hash of the path.
    let shift = size1.trailing_zeros();
    let mut fnode = (size1 - 1) >> shift;
    let mut snode = (size2 - 1) >> shift;
    let mut rest = proof.as_slice();
    let seed = if size1.is_power_of_two() {
        root1
    } else {
        match rest.split_first() {
            Some((first, tail)) => {
                rest = tail;
                *first
            }
            None => {
                return Err(MerkleError::WrongProofLength {
                    got: 0,
                    expected: 1,
                })
            }
        }
    };
    let mut fr = seed;
    let mut sr = seed;
    for c in rest {
        if snode == 0 {
            return Err(MerkleError::WrongProofLength {
                got: proof.len(),
                expected: proof.len() - rest.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(MerkleError::WrongProofLength {
            got: proof.len(),
            expected: proof.len() + 1,
        });
    }
    if fr != root1 || sr != root2 {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// An in-memory tree keeping every perfect subtree hash (about two hashes per leaf).
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` = perfect subtree of level `l`, index `i`.
    levels: Vec<Vec<Hash256>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over these leaf hashes.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash256>) -> Self {
        let mut t = Self::new();
        for l in leaves {
            t.push(l);
        }
        t
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash256) {
        let mut level = 0;
        let mut hash = leaf;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                return;
            };
            row.push(hash);
            let n = row.len();
            if n % 2 == 1 {
                return;
            }
            let (Some(l), Some(r)) = (row.get(n - 2), row.get(n - 1)) else {
                return;
            };
            hash = node_hash(l, r);
            level += 1;
        }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The current root.
    #[expect(
        clippy::expect_used,
        reason = "a MemoryTree holds every perfect subtree of its own size, so the root of that size cannot fail"
    )]
    pub fn root(&self) -> Hash256 {
        root(self, self.size()).expect("a memory tree has every node of its own size")
    }
}

impl NodeSource for MemoryTree {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash256, MerkleError> {
        self.levels
            .get(level as usize)
            .and_then(|row| row.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or_else(|| MerkleError::Source(format!("no node at level {level} index {index}")))
    }
}

/// Computes a root from leaf hashes streamed in order, keeping O(log n) hashes (a
/// compact range): memory does not grow with the number of leaves.
#[derive(Clone, Debug, Default)]
pub struct RootBuilder {
    /// Roots of the perfect subtrees covering the leaves so far, largest first.
    stack: Vec<(u32, Hash256)>,
    size: u64,
}

impl RootBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the next leaf hash.
    pub fn push(&mut self, leaf: Hash256) {
        let mut level = 0u32;
        let mut hash = leaf;
        while let Some((top_level, top)) = self.stack.last().copied() {
            if top_level != level {
                break;
            }
            self.stack.pop();
            hash = node_hash(&top, &hash);
            level += 1;
        }
        self.stack.push((level, hash));
        self.size += 1;
    }

    /// Leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the leaves pushed so far.
    pub fn root(&self) -> Hash256 {
        let mut iter = self.stack.iter().rev();
        let Some((_, last)) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, (_, left)| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests;
