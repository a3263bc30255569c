use std::path::{Path, PathBuf};

use base64::Engine as _;
use proptest::prelude::*;
use serde::Deserialize;

use super::*;

/// The obviously-correct recursive definition from RFC 9162 §2.1.1.
fn reference_root(leaves: &[Hash256]) -> Hash256 {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

fn leaves(n: usize) -> Vec<Hash256> {
    (0..n)
        .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
        .collect()
}

#[test]
fn known_roots_of_the_transparency_dev_leaves() {
    let data: [&[u8]; 8] = [
        b"",
        &[0x00],
        &[0x10],
        &[0x20, 0x21],
        &[0x30, 0x31],
        &[0x40, 0x41, 0x42, 0x43],
        &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        &[
            0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
            0x6e, 0x6f,
        ],
    ];
    let tree = MemoryTree::from_leaves(data.iter().map(|d| leaf_hash(d)));
    assert_eq!(
        tree.root().to_hex(),
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    );
    assert_eq!(
        empty_root().to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn memory_tree_and_root_builder_match_the_reference() {
    for n in 0..70 {
        let l = leaves(n);
        let tree = MemoryTree::from_leaves(l.iter().copied());
        let mut b = RootBuilder::new();
        for x in &l {
            b.push(*x);
        }
        assert_eq!(tree.root(), reference_root(&l), "n={n}");
        assert_eq!(b.root(), reference_root(&l), "n={n}");
        assert_eq!(b.size(), n as u64);
    }
}

#[test]
fn every_inclusion_and_consistency_proof_of_small_trees_verifies() {
    let l = leaves(40);
    let tree = MemoryTree::from_leaves(l.iter().copied());
    for size in 1..=40u64 {
        let root = reference_root(&l[..size as usize]);
        for index in 0..size {
            let proof = inclusion_proof(&tree, index, size).unwrap();
            assert_eq!(proof.len(), inclusion_proof_len(index, size));
            verify_inclusion(&l[index as usize], index, size, &proof, &root).unwrap();
            // The wrong index or leaf fails.
            let wrong = (index + 1) % size;
            if wrong != index {
                assert!(verify_inclusion(&l[index as usize], wrong, size, &proof, &root).is_err());
            }
        }
        for size1 in 1..=size {
            let root1 = reference_root(&l[..size1 as usize]);
            let proof = consistency_proof(&tree, size1, size).unwrap();
            verify_consistency(size1, size, &proof, &root1, &root).unwrap();
            if size1 < size {
                assert!(verify_consistency(size1, size, &proof, &root, &root1).is_err());
            }
        }
    }
    assert!(consistency_proof(&tree, 0, 5).is_err());
    assert!(inclusion_proof(&tree, 5, 5).is_err());
}

// ---- transparency-dev vectors ----------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InclusionCase {
    leaf_idx: i128,
    tree_size: i128,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsistencyCase {
    size1: i128,
    size2: i128,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    want_err: bool,
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn files(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../spec/vectors/rfc9162-merkle")
        .join(dir);
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn rfc9162_inclusion_vectors() {
    let (mut ok, mut bad) = (0, 0);
    for path in files("inclusion") {
        let c: InclusionCase =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let proof: Vec<Vec<u8>> = c.proof.unwrap_or_default().iter().map(|p| b64(p)).collect();
        let refs: Vec<&[u8]> = proof.iter().map(Vec::as_slice).collect();
        let result = match (u64::try_from(c.leaf_idx), u64::try_from(c.tree_size)) {
            (Ok(i), Ok(n)) => {
                verify_inclusion_bytes(&b64(&c.leaf_hash), i, n, &refs, &b64(&c.root))
            }
            _ => Err(MerkleError::IndexOutOfRange { index: 0, size: 0 }),
        };
        assert_eq!(
            result.is_err(),
            c.want_err,
            "{}: {result:?}",
            path.display()
        );
        // The cached verifier agrees, from an empty cache.
        if let (Ok(i), Ok(n), Some(leaf), Some(root)) = (
            u64::try_from(c.leaf_idx),
            u64::try_from(c.tree_size),
            Hash256::from_slice(&b64(&c.leaf_hash)),
            Hash256::from_slice(&b64(&c.root)),
        ) {
            if proof.iter().all(|p| p.len() == 32) {
                let hashes: Vec<Hash256> = proof.iter().map(|p| h32(p).unwrap()).collect();
                let cached =
                    verify_inclusion_cached(&leaf, i, n, &hashes, &root, &mut PathCache::new());
                assert_eq!(cached.is_err(), c.want_err, "{}: cached", path.display());
            }
        }
        if c.want_err {
            bad += 1;
        } else {
            ok += 1;
        }
    }
    assert!(ok >= 5 && bad >= 50, "ok={ok} bad={bad}");
}

#[test]
fn rfc9162_consistency_vectors() {
    let (mut ok, mut bad) = (0, 0);
    for path in files("consistency") {
        let c: ConsistencyCase =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let proof: Vec<Vec<u8>> = c.proof.unwrap_or_default().iter().map(|p| b64(p)).collect();
        let refs: Vec<&[u8]> = proof.iter().map(Vec::as_slice).collect();
        let result = match (u64::try_from(c.size1), u64::try_from(c.size2)) {
            (Ok(a), Ok(b)) => verify_consistency_bytes(a, b, &refs, &b64(&c.root1), &b64(&c.root2)),
            _ => Err(MerkleError::BadSizes { size1: 0, size2: 0 }),
        };
        assert_eq!(
            result.is_err(),
            c.want_err,
            "{}: {result:?}",
            path.display()
        );
        if c.want_err {
            bad += 1;
        } else {
            ok += 1;
        }
    }
    assert!(ok >= 5 && bad >= 50, "ok={ok} bad={bad}");
}

proptest! {
    #[test]
    fn proofs_verify_and_tampering_fails(size in 1u64..3000, index_seed in any::<u64>(), size1_seed in any::<u64>(), flip in any::<(usize, u8)>()) {
        let l = leaves(size as usize);
        let tree = MemoryTree::from_leaves(l.iter().copied());
        let root = tree.root();
        let index = index_seed % size;
        let mut proof = inclusion_proof(&tree, index, size).unwrap();
        verify_inclusion(&l[index as usize], index, size, &proof, &root).unwrap();
        if !proof.is_empty() {
            let i = flip.0 % proof.len();
            let mut bytes = *proof[i].as_bytes();
            bytes[(flip.1 % 32) as usize] ^= 1;
            proof[i] = Hash256::from_bytes(bytes);
            prop_assert!(verify_inclusion(&l[index as usize], index, size, &proof, &root).is_err());
        }
        let size1 = 1 + size1_seed % size;
        let root1 = reference_root(&l[..size1 as usize]);
        let cproof = consistency_proof(&tree, size1, size).unwrap();
        prop_assert!(verify_consistency(size1, size, &cproof, &root1, &root).is_ok());
    }
}

proptest! {
    /// One cache through a run of valid and tampered proofs in one tree (and now and then
    /// against a wrong root): every answer is the uncached verifier's.
    #[test]
    fn cached_verification_answers_like_the_plain_one(
        size in 1u64..400,
        steps in prop::collection::vec((any::<u64>(), 0u8..5, any::<(usize, u8)>()), 1..40),
    ) {
        let l = leaves(size as usize);
        let tree = MemoryTree::from_leaves(l.iter().copied());
        let good_root = tree.root();
        let other_root = leaf_hash(b"another tree");
        let mut cache = PathCache::new();
        for (k, (seed, kind, flip)) in steps.into_iter().enumerate() {
            let index = seed % size;
            let mut proof = inclusion_proof(&tree, index, size).unwrap();
            let mut leaf = l[index as usize];
            let mut root = good_root;
            match kind {
                // A flipped bit in one proof element.
                1 if !proof.is_empty() => {
                    let i = flip.0 % proof.len();
                    let mut bytes = *proof[i].as_bytes();
                    bytes[(flip.1 % 32) as usize] ^= 1;
                    proof[i] = Hash256::from_bytes(bytes);
                }
                // Another leaf.
                2 => leaf = leaf_hash(b"not in the tree"),
                // The proof of a neighbour.
                3 if size > 1 => {
                    let other = (index + 1 + flip.0 as u64 % (size - 1)) % size;
                    proof = inclusion_proof(&tree, other, size).unwrap();
                }
                // Another root.
                4 => root = other_root,
                _ => {}
            }
            let plain = verify_inclusion(&leaf, index, size, &proof, &root);
            let cached = verify_inclusion_cached(&leaf, index, size, &proof, &root, &mut cache);
            prop_assert_eq!(plain.is_ok(), cached.is_ok(), "step {} kind {}", k, kind);
        }
    }
}

proptest! {
    #[test]
    fn a_leaf_hashed_in_pieces_is_the_leaf_hashed_whole(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        at.sort_unstable();
        let mut h = LeafHasher::new();
        let mut start = 0;
        for end in at.into_iter().chain([data.len()]) {
            h.update(&data[start..end]);
            start = end;
        }
        let pieces = h.finish();
        prop_assert_eq!(pieces, HashedLeaf::of(&data));
        prop_assert_eq!(*pieces.leaf(), leaf_hash(&data));
        prop_assert_eq!(pieces.len(), data.len() as u64);
    }
}
