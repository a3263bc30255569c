//! The file-backed chunk tree (spec/manifest.md §3.4): built by streaming leaves with
//! bounded memory, its proofs verify with the receiver's `ChunkVerifier`, its parser is
//! strict, and a round trip through bytes gives the same tree.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

mod common;

use std::cell::Cell;
use std::io;

use common::*;
use proptest::prelude::*;
use tds_core::hash::Hash256;
use tds_core::merkle::{self, MemoryTree};
use tds_manifest::content::{
    write_tree_from_list, ChunkSize, ChunkTree, ChunkTreeFile, ChunkTreeWriter, ChunkVerifier,
    Commitment, TreeFileError, TreeHeader, TreeStore, TREE_HEADER_LEN,
};

/// Synthetic leaf `i`: the leaf hash of its index (no data needed).
fn leaf(i: u64) -> Hash256 {
    merkle::leaf_hash(&i.to_be_bytes())
}

fn tree_bytes(leaves: &[Hash256], cs: ChunkSize, size: u64) -> Vec<u8> {
    let mut w = ChunkTreeWriter::new(Vec::new(), cs, size).unwrap();
    for l in leaves {
        w.push(l).unwrap();
    }
    w.finish().unwrap().0
}

/// A store that counts the reads.
struct Counting<S> {
    inner: S,
    reads: Cell<u64>,
}

impl<S: TreeStore> TreeStore for Counting<S> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read_exact_at(buf, offset)
    }
    fn byte_len(&self) -> io::Result<u64> {
        self.inner.byte_len()
    }
}

#[test]
fn proofs_from_the_file_verify_with_the_chunk_verifier() {
    let cs = ChunkSize::for_tests(64).unwrap();
    for len in [0usize, 1, 64, 65, 640, 1000, 4097] {
        let d = data(len, 3);
        let mut w = ChunkTreeWriter::new(Vec::new(), cs, len as u64).unwrap();
        let c = builder(cs, 2)
            .build_with_leaves(&d[..], |_, l| w.push(l).map_err(io::Error::other))
            .unwrap();
        let (bytes, header) = w.finish().unwrap();
        assert_eq!(header, TreeHeader::of(&c));
        assert_eq!(bytes.len() as u64, header.file_len());
        let file = ChunkTreeFile::open_for(&bytes[..], &c).unwrap();
        file.check().unwrap();
        let (_, mem) = ChunkTree::build(&builder(cs, 1), &d[..]).unwrap();
        let mut v = ChunkVerifier::new(&c).unwrap();
        for i in (0..c.chunks).rev() {
            let proof = file.proof(i).unwrap();
            assert_eq!(proof, mem.proof(i).unwrap());
            v.verify(chunk(&d, &c, i), &proof).unwrap();
        }
        assert!(v.is_complete());
        assert_eq!(
            file.leaves().map(|l| l.unwrap()).collect::<Vec<_>>(),
            (0..c.chunks)
                .map(|i| mem.leaf(i).unwrap())
                .collect::<Vec<_>>()
        );
        assert!(matches!(
            file.proof(c.chunks),
            Err(TreeFileError::IndexOutOfRange { .. })
        ));
        // The same file from the chunk-hash list.
        let from_list = write_tree_from_list(&mem.to_chunk_list()[..], &c, Vec::new()).unwrap();
        assert_eq!(from_list, bytes);
    }
}

#[test]
fn a_real_file_works_as_store_and_sink() {
    let cs = ChunkSize::for_tests(128).unwrap();
    let d = data(128 * 37 + 5, 9);
    let (c, mem) = ChunkTree::build(&builder(cs, 1), &d[..]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("asset.tree");
    // A longer file at the same path is cut to the format's length.
    std::fs::write(&path, vec![0xaa; 100_000]).unwrap();
    let sink = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    write_tree_from_list(&mem.to_chunk_list()[..], &c, sink).unwrap();
    let file = ChunkTreeFile::open_for(std::fs::File::open(&path).unwrap(), &c).unwrap();
    file.check().unwrap();
    for i in 0..c.chunks {
        assert_eq!(file.proof(i).unwrap(), mem.proof(i).unwrap());
    }
}

#[test]
fn the_list_must_be_the_commitments() {
    let cs = ChunkSize::for_tests(64).unwrap();
    let d = data(64 * 10, 1);
    let (c, mem) = ChunkTree::build(&builder(cs, 1), &d[..]).unwrap();
    let list = mem.to_chunk_list();
    let short = write_tree_from_list(&list[..list.len() - 32], &c, Vec::new()).unwrap_err();
    assert!(matches!(short, TreeFileError::LeafCount { .. }), "{short}");
    let mut long = list.clone();
    long.extend_from_slice(&[0; 32]);
    let long = write_tree_from_list(&long[..], &c, Vec::new()).unwrap_err();
    assert!(matches!(long, TreeFileError::LeafCount { .. }), "{long}");
    let mut other = list.clone();
    other[5] ^= 1;
    let other = write_tree_from_list(&other[..], &c, Vec::new()).unwrap_err();
    assert!(matches!(other, TreeFileError::OtherAsset), "{other}");
    // A writer refuses leaves past the announced count, and a short finish.
    let mut w = ChunkTreeWriter::new(Vec::new(), cs, 64).unwrap();
    w.push(&leaf(0)).unwrap();
    assert!(matches!(
        w.push(&leaf(1)),
        Err(TreeFileError::LeafCount { .. })
    ));
    let w = ChunkTreeWriter::new(Vec::new(), cs, 65).unwrap();
    assert!(matches!(w.finish(), Err(TreeFileError::LeafCount { .. })));
}

#[test]
fn the_parser_is_strict() {
    let cs = ChunkSize::for_tests(64).unwrap();
    let leaves: Vec<_> = (0..11).map(leaf).collect();
    let good = tree_bytes(&leaves, cs, 64 * 11 - 3);
    ChunkTreeFile::open(&good[..]).unwrap().check().unwrap();
    let refused = |bytes: &[u8]| ChunkTreeFile::open(bytes).err();
    // Length: short, long, header only.
    assert!(refused(&good[..good.len() - 1]).is_some());
    let mut long = good.clone();
    long.push(0);
    assert!(refused(&long).is_some());
    assert!(refused(&good[..TREE_HEADER_LEN as usize]).is_some());
    assert!(refused(&good[..10]).is_some());
    // Every header byte matters (magic, version, chunk size, size, count, root).
    for i in 0..TREE_HEADER_LEN as usize {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        // The size's lowest byte may change within the last chunk and still describe 11
        // chunks (701 -> 700): the header is then as consistent as before.
        if i != 23 {
            assert!(
                refused(&bad).is_some(),
                "header byte {i} flipped is accepted"
            );
        }
    }
    // A flipped interior or leaf hash: open catches what lies on the root's path,
    // check() catches everything.
    for i in TREE_HEADER_LEN as usize..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x80;
        let caught = match ChunkTreeFile::open(&bad[..]) {
            Err(_) => true,
            Ok(f) => f.check().is_err(),
        };
        assert!(caught, "tree byte {i} flipped is not caught");
    }
    // The empty asset: a header and nothing else, with the empty root.
    let empty = tree_bytes(&[], cs, 0);
    assert_eq!(empty.len() as u64, TREE_HEADER_LEN);
    let f = ChunkTreeFile::open(&empty[..]).unwrap();
    assert!(f.is_empty());
    assert_eq!(f.root(), merkle::empty_root());
    // Another commitment is refused.
    let other = Commitment::new(64 * 11 - 3, cs, leaf(99)).unwrap();
    assert!(matches!(
        ChunkTreeFile::open_for(&good[..], &other),
        Err(TreeFileError::OtherAsset)
    ));
}

/// An asset far larger than the test's memory, from synthetic leaves: 2^18 chunks by
/// default (a 256 GiB asset in 1 MiB chunks; the tree file is 16 MiB), 2^24 with
/// `TDS_TEST_SCALE=full` (1 TiB in 64 KiB chunks, 16 TiB in 1 MiB chunks; a 1 GiB file).
/// Memory is bounded by the data structure: the writer's buffers never exceed 27 levels ×
/// 16 KiB whatever the count, the reader keeps only its header and level offsets and reads
/// the file positionally, and a proof reads O(log n) hashes.
#[test]
fn a_large_asset_from_synthetic_leaves_stays_bounded() {
    let n: u64 = if full_scale() { 1 << 24 } else { 1 << 18 };
    let n = n + 3; // not a power of two: the right edge is ragged
    let cs = ChunkSize::DEFAULT;
    let size = n * cs.get() - 12_345;
    let bound = 27 * 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.tree");
    let sink = std::fs::File::create(&path).unwrap();
    let mut w = ChunkTreeWriter::new(sink, cs, size).unwrap();
    let mut max_buffered = 0;
    let mut root = merkle::RootBuilder::new();
    for i in 0..n {
        let l = leaf(i);
        root.push(l);
        w.push(&l).unwrap();
        if i % 4096 == 0 {
            max_buffered = max_buffered.max(w.buffered_capacity());
        }
    }
    max_buffered = max_buffered.max(w.buffered_capacity());
    assert!(max_buffered <= bound, "{max_buffered} bytes buffered");
    let (_, header) = w.finish().unwrap();
    assert_eq!(header.root, root.root());
    let c = Commitment::new(size, cs, root.root()).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        TREE_HEADER_LEN + 32 * (2 * n - u64::from(n.count_ones()))
    );
    let counting = Counting {
        inner: std::fs::File::open(&path).unwrap(),
        reads: Cell::new(0),
    };
    let file = ChunkTreeFile::open_for(&counting, &c).unwrap();
    // Opening reads the header and the popcount(n) hashes of the root, nothing more.
    assert!(counting.reads.get() <= 1 + u64::from(n.count_ones()));
    let log2 = 64 - u64::from((n - 1).leading_zeros());
    for i in [0, 1, n / 2, n - 4, n - 1, 12_345 % n] {
        counting.reads.set(0);
        let proof = file.proof(i).unwrap();
        assert!(
            counting.reads.get() <= 2 * log2,
            "proof of {i} read {} hashes",
            counting.reads.get()
        );
        merkle::verify_inclusion(&leaf(i), i, n, &proof.path, &c.root).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if full_scale() { 256 } else { 48 }))]

    /// Writing then opening gives the in-memory tree's leaves and proofs, and writing again
    /// from what was read gives the same bytes.
    #[test]
    fn round_trip(n in 0u64..300, cs_log in 0u32..=12, short in 0u64..64) {
        let cs = ChunkSize::for_tests(1 << cs_log).unwrap();
        let size = if n == 0 { 0 } else { n * cs.get() - short.min(cs.get() - 1) };
        let leaves: Vec<_> = (0..n).map(leaf).collect();
        let bytes = tree_bytes(&leaves, cs, size);
        let mem = MemoryTree::from_leaves(leaves.iter().copied());
        let file = ChunkTreeFile::open(&bytes[..]).unwrap();
        file.check().unwrap();
        prop_assert_eq!(file.root(), mem.root());
        prop_assert_eq!(file.header().size, size);
        let read: Vec<_> = file.leaves().map(|l| l.unwrap()).collect();
        prop_assert_eq!(&read, &leaves);
        for i in 0..n {
            prop_assert_eq!(file.proof(i).unwrap().path, merkle::inclusion_proof(&mem, i, n).unwrap());
        }
        prop_assert_eq!(tree_bytes(&read, cs, size), bytes.clone());
        let mut header = [0u8; 64];
        header.copy_from_slice(&bytes[..64]);
        prop_assert_eq!(TreeHeader::parse(&header).unwrap().to_bytes(), header);
    }
}

#[test]
fn the_committed_fuzz_seeds_are_valid_tree_files() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/chunk_tree_file");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let file = ChunkTreeFile::open(&bytes[..]).unwrap();
        file.check().unwrap();
        seen += 1;
    }
    assert!(seen >= 5);
}
