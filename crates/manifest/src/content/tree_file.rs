//! The sender's side for assets of any size: a chunk tree kept in a file (or any
//! positional store), so memory does not grow with the asset.
//!
//! A *chunk tree file* holds a 64-byte header and every perfect-subtree hash of the RFC
//! 9162 tree over the chunk leaves, level by level (spec/manifest.md §3.4). Building one
//! streams the leaves in chunk order and keeps one pending hash and one small write buffer
//! per level; answering a proof reads O(log n) hashes at computed offsets. A 1 TiB asset
//! in 1 MiB chunks makes a 64 MiB file (in 64 KiB chunks, 1 GiB), and neither building
//! nor serving it holds more than a few hundred KiB in memory.

use std::fs::File;
use std::io::{self, BufReader, Read};

use tds_core::hash::Hash256;
use tds_core::merkle::{self, MerkleError, NodeSource, RootBuilder};

use super::proof::ChunkProof;
use super::{ChunkSize, Commitment, MAX_CHUNKS};

/// The first 8 bytes of a chunk tree file.
pub const TREE_MAGIC: [u8; 8] = *b"TDSCTREE";

/// The chunk tree file format version.
pub const TREE_VERSION: u32 = 1;

/// The header length in bytes; the levels start right after it.
pub const TREE_HEADER_LEN: u64 = 64;

/// Bytes a [`ChunkTreeWriter`] buffers per level before writing them out.
const LEVEL_BUFFER: usize = 16 * 1024;

/// Most levels a tree of at most [`MAX_CHUNKS`] leaves has (levels 0 to 26).
const MAX_LEVELS: usize = 27;

/// Storage a chunk tree file is read from: bytes at an offset, and the total length.
/// Implemented for [`File`] (positional reads, no shared cursor) and for byte slices.
pub trait TreeStore {
    /// Fills `buf` with the bytes at `offset`, or fails (short data is an error).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The length in bytes.
    fn byte_len(&self) -> io::Result<u64>;
}

impl TreeStore for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl TreeStore for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn byte_len(&self) -> io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }
}

impl<T: TreeStore + ?Sized> TreeStore for &T {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn byte_len(&self) -> io::Result<u64> {
        (**self).byte_len()
    }
}

/// Storage a chunk tree file is written to: bytes at an offset. Implemented for [`File`]
/// and `Vec<u8>` (which grows as needed).
pub trait TreeSink {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the storage exactly `len` bytes long.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl TreeSink for File {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

impl TreeSink for Vec<u8> {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.resize(usize::try_from(len).map_err(io::Error::other)?, 0);
        Ok(())
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start
            .checked_add(buf.len())
            .ok_or_else(|| io::Error::other("offset overflows"))?;
        if self.len() < end {
            self.resize(end, 0);
        }
        if let Some(dst) = self.get_mut(start..end) {
            dst.copy_from_slice(buf);
        }
        Ok(())
    }
}

/// The fixed part of a chunk tree file: which asset the tree belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHeader {
    /// The chunk size in bytes (a power of two, at most 16 MiB).
    pub chunk_size: u32,
    /// The asset size in bytes.
    pub size: u64,
    /// The number of chunks, `ceil(size / chunk_size)`.
    pub chunks: u64,
    /// The root over the chunk leaves.
    pub root: Hash256,
}

impl TreeHeader {
    /// The header of the tree of `commitment`.
    pub fn of(commitment: &Commitment) -> Self {
        TreeHeader {
            chunk_size: commitment.chunk_size.as_u32(),
            size: commitment.size,
            chunks: commitment.chunks,
            root: commitment.root,
        }
    }

    /// The 64 header bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        let fields: [&[u8]; 6] = [
            &TREE_MAGIC,
            &TREE_VERSION.to_be_bytes(),
            &self.chunk_size.to_be_bytes(),
            &self.size.to_be_bytes(),
            &self.chunks.to_be_bytes(),
            self.root.as_bytes(),
        ];
        let mut at = 0;
        for f in fields {
            if let Some(dst) = out.get_mut(at..at + f.len()) {
                dst.copy_from_slice(f);
            }
            at += f.len();
        }
        out
    }

    /// Parses and checks the 64 header bytes: magic, version, a power-of-two chunk size of
    /// at most 16 MiB, `chunks = ceil(size / chunk_size)` and at most [`MAX_CHUNKS`], and
    /// the empty-tree root for an empty asset.
    pub fn parse(bytes: &[u8; 64]) -> Result<Self, TreeFileError> {
        let (magic, rest) = bytes.split_at(8);
        if magic != TREE_MAGIC {
            return Err(TreeFileError::Format(
                "not a chunk tree file (bad magic)".into(),
            ));
        }
        let (version, rest) = rest.split_at(4);
        let (chunk_size, rest) = rest.split_at(4);
        let (size, rest) = rest.split_at(8);
        let (chunks, root) = rest.split_at(8);
        let version = u32::from_be_bytes(array(version));
        if version != TREE_VERSION {
            return Err(TreeFileError::Format(format!(
                "version {version} is not supported"
            )));
        }
        let chunk_size = u32::from_be_bytes(array(chunk_size));
        if !chunk_size.is_power_of_two() || u64::from(chunk_size) > ChunkSize::MAX.get() {
            return Err(TreeFileError::Format(format!(
                "chunk size {chunk_size} is not a power of two of at most 16 MiB"
            )));
        }
        let size = u64::from_be_bytes(array(size));
        let chunks = u64::from_be_bytes(array(chunks));
        let expected = size.div_ceil(u64::from(chunk_size));
        if chunks != expected {
            return Err(TreeFileError::Format(format!(
                "{chunks} chunks do not cover {size} bytes in chunks of {chunk_size}"
            )));
        }
        if chunks > MAX_CHUNKS {
            return Err(TreeFileError::Format(format!(
                "{chunks} chunks exceeds the limit of {MAX_CHUNKS}"
            )));
        }
        let root = Hash256::from_bytes(array(root));
        if chunks == 0 && root != merkle::empty_root() {
            return Err(TreeFileError::Format(
                "an empty asset must have the empty-tree root".into(),
            ));
        }
        Ok(TreeHeader {
            chunk_size,
            size,
            chunks,
            root,
        })
    }

    /// Whether this header describes `commitment`'s tree.
    pub fn matches(&self, commitment: &Commitment) -> bool {
        u64::from(self.chunk_size) == commitment.chunk_size.get()
            && self.size == commitment.size
            && self.chunks == commitment.chunks
            && self.root == commitment.root
    }

    /// The length of the whole file: the header and `2·chunks − popcount(chunks)` hashes.
    pub fn file_len(&self) -> u64 {
        TREE_HEADER_LEN + 32 * node_count(self.chunks)
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(..N) {
        out.copy_from_slice(src);
    }
    out
}

/// Hashes stored for a tree of `n` leaves: `Σ floor(n / 2^l)` = `2n − popcount(n)`.
fn node_count(n: u64) -> u64 {
    (2 * n).saturating_sub(u64::from(n.count_ones()))
}

/// Where each level starts, for a tree of `n` leaves (levels 0 up to the bit length of `n`).
fn level_starts(n: u64) -> [u64; MAX_LEVELS + 1] {
    let mut starts = [0u64; MAX_LEVELS + 1];
    let mut at = TREE_HEADER_LEN;
    for (l, s) in starts.iter_mut().enumerate() {
        *s = at;
        at += 32 * (n >> l);
    }
    starts
}

/// Why a chunk tree file could not be written, opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeFileError {
    /// The bytes do not follow the format (spec/manifest.md §3.4).
    #[error("chunk tree file: {0}")]
    Format(String),
    /// The file describes another asset than the commitment given.
    #[error("chunk tree file: it belongs to another asset (size, chunk size or root differ)")]
    OtherAsset,
    /// The stored hashes do not lead to the root in the header.
    #[error("chunk tree file: its hashes do not lead to its root")]
    Corrupt,
    /// More or fewer leaves than the header announced.
    #[error("chunk tree file: {got} leaves written, {expected} announced")]
    LeafCount {
        /// Leaves announced.
        expected: u64,
        /// Leaves written.
        got: u64,
    },
    /// A chunk index at or past the chunk count.
    #[error("chunk {index} does not exist: the tree has {chunks} chunk(s)")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The chunk count.
        chunks: u64,
    },
    /// Reading or writing failed.
    #[error("chunk tree file: {0}")]
    Io(io::Error),
}

impl tds_core::ErrorCode for TreeFileError {
    fn code(&self) -> &'static str {
        match self {
            TreeFileError::Format(_) => "manifest.tree.format",
            TreeFileError::OtherAsset => "manifest.tree.other_asset",
            TreeFileError::Corrupt => "manifest.tree.corrupt",
            TreeFileError::LeafCount { .. } => "manifest.tree.leaf_count",
            TreeFileError::IndexOutOfRange { .. } => "manifest.tree.index_out_of_range",
            TreeFileError::Io(_) => "manifest.tree.io",
        }
    }
}

impl From<io::Error> for TreeFileError {
    fn from(e: io::Error) -> Self {
        TreeFileError::Io(e)
    }
}

/// Writes a chunk tree file from leaf hashes streamed in chunk order, holding one pending
/// hash and one buffer of at most 16 KiB per level: memory does not depend on the number
/// of chunks beyond its logarithm.
///
/// The chunk count must be known in advance (the levels' offsets depend on it): make the
/// writer with the asset's size and chunk size, [`push`](Self::push) every leaf, then
/// [`finish`](Self::finish), which writes the header with the root.
#[derive(Debug)]
pub struct ChunkTreeWriter<S: TreeSink> {
    sink: S,
    header: TreeHeader,
    starts: [u64; MAX_LEVELS + 1],
    /// Hashes written out per level so far.
    written: [u64; MAX_LEVELS + 1],
    /// The buffered, not yet written hashes of each level.
    buffers: Vec<Vec<u8>>,
    /// A left sibling waiting for its right one, per level.
    pending: [Option<Hash256>; MAX_LEVELS + 1],
    root: RootBuilder,
}

impl<S: TreeSink> ChunkTreeWriter<S> {
    /// A writer for the tree of an asset of `size` bytes in chunks of `chunk_size`.
    pub fn new(sink: S, chunk_size: ChunkSize, size: u64) -> Result<Self, TreeFileError> {
        let chunks = chunk_size.chunks_for(size);
        if chunks > MAX_CHUNKS {
            return Err(TreeFileError::Format(format!(
                "{chunks} chunks exceeds the limit of {MAX_CHUNKS}"
            )));
        }
        Ok(ChunkTreeWriter {
            sink,
            header: TreeHeader {
                chunk_size: chunk_size.as_u32(),
                size,
                chunks,
                root: merkle::empty_root(),
            },
            starts: level_starts(chunks),
            written: [0; MAX_LEVELS + 1],
            buffers: (0..MAX_LEVELS).map(|_| Vec::new()).collect(),
            pending: [None; MAX_LEVELS + 1],
            root: RootBuilder::new(),
        })
    }

    /// Appends the next leaf hash.
    pub fn push(&mut self, leaf: &Hash256) -> Result<(), TreeFileError> {
        if self.root.size() >= self.header.chunks {
            return Err(TreeFileError::LeafCount {
                expected: self.header.chunks,
                got: self.root.size().saturating_add(1),
            });
        }
        self.root.push(*leaf);
        let mut hash = *leaf;
        let mut level = 0usize;
        loop {
            self.store(level, &hash)?;
            let Some(slot) = self.pending.get_mut(level) else {
                return Err(TreeFileError::Format("tree deeper than 27 levels".into()));
            };
            match slot.take() {
                None => {
                    *slot = Some(hash);
                    return Ok(());
                }
                Some(left) => {
                    hash = merkle::node_hash(&left, &hash);
                    level += 1;
                }
            }
        }
    }

    fn store(&mut self, level: usize, hash: &Hash256) -> Result<(), TreeFileError> {
        let buf = self
            .buffers
            .get_mut(level)
            .ok_or_else(|| TreeFileError::Format("tree deeper than 27 levels".into()))?;
        if buf.capacity() == 0 {
            buf.reserve_exact(LEVEL_BUFFER);
        }
        buf.extend_from_slice(hash.as_bytes());
        if buf.len() >= LEVEL_BUFFER {
            self.flush_level(level)?;
        }
        Ok(())
    }

    fn flush_level(&mut self, level: usize) -> Result<(), TreeFileError> {
        let (Some(buf), Some(start), Some(written)) = (
            self.buffers.get_mut(level),
            self.starts.get(level),
            self.written.get_mut(level),
        ) else {
            return Err(TreeFileError::Format("tree deeper than 27 levels".into()));
        };
        if buf.is_empty() {
            return Ok(());
        }
        self.sink.write_all_at(buf, start + 32 * *written)?;
        *written += buf.len() as u64 / 32;
        buf.clear();
        Ok(())
    }

    /// Leaves pushed so far.
    pub fn leaves(&self) -> u64 {
        self.root.size()
    }

    /// The bytes this writer holds beyond its fixed fields: the level buffers' capacity.
    /// At most 27 × 16 KiB whatever the number of chunks.
    pub fn buffered_capacity(&self) -> usize {
        self.buffers.iter().map(Vec::capacity).sum()
    }

    /// Writes the remaining hashes and the header; checks that exactly the announced
    /// number of leaves was pushed. Returns the sink and the header (with the root).
    pub fn finish(mut self) -> Result<(S, TreeHeader), TreeFileError> {
        if self.root.size() != self.header.chunks {
            return Err(TreeFileError::LeafCount {
                expected: self.header.chunks,
                got: self.root.size(),
            });
        }
        for level in 0..MAX_LEVELS {
            self.flush_level(level)?;
        }
        self.header.root = self.root.root();
        // Exactly the format's length, whatever the sink held before.
        self.sink.set_len(self.header.file_len())?;
        self.sink.write_all_at(&self.header.to_bytes(), 0)?;
        Ok((self.sink, self.header))
    }
}

/// A chunk tree kept in a [`TreeStore`] (a file): answers inclusion proofs for any chunk
/// with O(log n) positional reads and no in-memory copy of the tree.
///
/// ```
/// use std::num::NonZeroUsize;
/// use tds_manifest::content::{ChunkSize, ChunkTreeFile, ChunkTreeWriter, ChunkVerifier, ContentBuilder};
///
/// let data = vec![5u8; 300_000];
/// let builder = ContentBuilder::new(ChunkSize::MIN, NonZeroUsize::MIN);
/// // The sender writes the tree while hashing (here into memory; a file in practice).
/// let mut writer = ChunkTreeWriter::new(Vec::new(), ChunkSize::MIN, data.len() as u64)?;
/// let commitment = builder.build_with_leaves(&data[..], |_, leaf| {
///     writer.push(leaf).map_err(std::io::Error::other)
/// })?;
/// let (bytes, _) = writer.finish()?;
/// let tree = ChunkTreeFile::open_for(&bytes[..], &commitment)?;
/// let mut verifier = ChunkVerifier::new(&commitment)?;
/// let proof = tree.proof(2)?;
/// verifier.verify(&data[2 * 65536..3 * 65536], &proof)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ChunkTreeFile<S: TreeStore> {
    store: S,
    header: TreeHeader,
    starts: [u64; MAX_LEVELS + 1],
}

impl<S: TreeStore> ChunkTreeFile<S> {
    /// Opens a chunk tree file: parses the header, checks that the length is exactly what
    /// the header calls for, and that the stored hashes lead to the header's root (O(log n)
    /// reads). It does not re-hash every level; [`check`](Self::check) does.
    pub fn open(store: S) -> Result<Self, TreeFileError> {
        let len = store.byte_len()?;
        if len < TREE_HEADER_LEN {
            return Err(TreeFileError::Format(format!(
                "{len} bytes is shorter than the {TREE_HEADER_LEN}-byte header"
            )));
        }
        let mut head = [0u8; 64];
        store.read_exact_at(&mut head, 0)?;
        let header = TreeHeader::parse(&head)?;
        if len != header.file_len() {
            return Err(TreeFileError::Format(format!(
                "{len} bytes, but {} chunks call for {}",
                header.chunks,
                header.file_len()
            )));
        }
        let tree = ChunkTreeFile {
            store,
            starts: level_starts(header.chunks),
            header,
        };
        let root = merkle::root(&tree, header.chunks).map_err(|_| TreeFileError::Corrupt)?;
        if root != header.root {
            return Err(TreeFileError::Corrupt);
        }
        Ok(tree)
    }

    /// Opens a chunk tree file and checks that it is the tree of `commitment`.
    pub fn open_for(store: S, commitment: &Commitment) -> Result<Self, TreeFileError> {
        let tree = Self::open(store)?;
        if !tree.header.matches(commitment) {
            return Err(TreeFileError::OtherAsset);
        }
        Ok(tree)
    }

    /// The header.
    pub fn header(&self) -> &TreeHeader {
        &self.header
    }

    /// The number of chunks.
    pub fn len(&self) -> u64 {
        self.header.chunks
    }

    /// Whether there are no chunks (the empty asset).
    pub fn is_empty(&self) -> bool {
        self.header.chunks == 0
    }

    /// The root.
    pub fn root(&self) -> Hash256 {
        self.header.root
    }

    /// The leaf hash of chunk `index`.
    pub fn leaf(&self, index: u64) -> Result<Hash256, TreeFileError> {
        self.node(0, index)
    }

    /// The inclusion proof of chunk `index`: at most 2⌈log2 n⌉ reads.
    pub fn proof(&self, index: u64) -> Result<ChunkProof, TreeFileError> {
        let chunks = self.header.chunks;
        if index >= chunks {
            return Err(TreeFileError::IndexOutOfRange { index, chunks });
        }
        // With the index in range, the only failure left is a read of the store.
        let path = merkle::inclusion_proof(self, index, chunks)
            .map_err(|e| TreeFileError::Io(io::Error::other(e.to_string())))?;
        Ok(ChunkProof { index, path })
    }

    /// Re-hashes every level and compares it with the level above (streaming, O(1)
    /// memory): the file is then exactly the tree of its leaves and root.
    pub fn check(&self) -> Result<(), TreeFileError> {
        let n = self.header.chunks;
        let mut level = 0usize;
        while (n >> (level + 1)) > 0 {
            let below = LevelReader::new(&self.store, self.starts_at(level)?, n >> level);
            let above = LevelReader::new(&self.store, self.starts_at(level + 1)?, n >> (level + 1));
            let mut below = below;
            for parent in above {
                let parent = parent?;
                let (Some(l), Some(r)) = (below.next(), below.next()) else {
                    return Err(TreeFileError::Corrupt);
                };
                if merkle::node_hash(&l?, &r?) != parent {
                    return Err(TreeFileError::Corrupt);
                }
            }
            level += 1;
        }
        Ok(())
    }

    /// The leaf hashes in chunk order, streamed (the chunk-hash list).
    pub fn leaves(&self) -> impl Iterator<Item = Result<Hash256, TreeFileError>> + '_ {
        LevelReader::new(&self.store, TREE_HEADER_LEN, self.header.chunks)
    }

    /// The store, back.
    pub fn into_inner(self) -> S {
        self.store
    }

    fn starts_at(&self, level: usize) -> Result<u64, TreeFileError> {
        self.starts
            .get(level)
            .copied()
            .ok_or_else(|| TreeFileError::Format("tree deeper than 27 levels".into()))
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash256, TreeFileError> {
        let count = self.header.chunks >> level.min(63);
        let start = usize::try_from(level)
            .ok()
            .and_then(|l| self.starts.get(l))
            .copied()
            .filter(|_| index < count)
            .ok_or_else(|| {
                TreeFileError::Format(format!("no node at level {level} index {index}"))
            })?;
        let mut buf = [0u8; 32];
        self.store.read_exact_at(&mut buf, start + 32 * index)?;
        Ok(Hash256::from_bytes(buf))
    }
}

impl<S: TreeStore> NodeSource for ChunkTreeFile<S> {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash256, MerkleError> {
        self.node(level, index)
            .map_err(|e| MerkleError::Source(e.to_string()))
    }
}

/// Reads `count` hashes from `start` in order, 4 KiB at a time.
struct LevelReader<'a, S: TreeStore + ?Sized> {
    store: &'a S,
    at: u64,
    left: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a, S: TreeStore + ?Sized> LevelReader<'a, S> {
    fn new(store: &'a S, start: u64, count: u64) -> Self {
        LevelReader {
            store,
            at: start,
            left: count,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl<S: TreeStore + ?Sized> Iterator for LevelReader<'_, S> {
    type Item = Result<Hash256, TreeFileError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            if self.left == 0 {
                return None;
            }
            // At most 128 hashes (4 KiB) at a time.
            let take = self.left.min(128);
            self.buf.resize(take as usize * 32, 0);
            if let Err(e) = self.store.read_exact_at(&mut self.buf, self.at) {
                self.left = 0;
                self.buf.clear();
                return Some(Err(e.into()));
            }
            self.at += take * 32;
            self.left -= take;
            self.pos = 0;
        }
        let h = self
            .buf
            .get(self.pos..self.pos + 32)
            .and_then(Hash256::from_slice)?;
        self.pos += 32;
        Some(Ok(h))
    }
}

/// Writes the chunk tree file of `commitment` from its chunk-hash list (32-byte leaf
/// hashes in chunk order), streaming: the list must hold exactly `commitment.chunks`
/// hashes whose root is `commitment.root`.
pub fn write_tree_from_list<R: Read, S: TreeSink>(
    list: R,
    commitment: &Commitment,
    sink: S,
) -> Result<S, TreeFileError> {
    commitment
        .check()
        .map_err(|e| TreeFileError::Format(e.to_string()))?;
    let mut writer = ChunkTreeWriter::new(sink, commitment.chunk_size, commitment.size)?;
    let mut list = BufReader::new(list);
    let mut entry = [0u8; 32];
    for _ in 0..commitment.chunks {
        list.read_exact(&mut entry).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => TreeFileError::LeafCount {
                expected: commitment.chunks,
                got: writer.leaves(),
            },
            _ => TreeFileError::Io(e),
        })?;
        writer.push(&Hash256::from_bytes(entry))?;
    }
    if list.read(&mut entry)? != 0 {
        return Err(TreeFileError::LeafCount {
            expected: commitment.chunks,
            got: commitment.chunks.saturating_add(1),
        });
    }
    let (sink, header) = writer.finish()?;
    if header.root != commitment.root {
        return Err(TreeFileError::OtherAsset);
    }
    Ok(sink)
}
