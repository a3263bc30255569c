//! The content commitment, the streaming verifier and whole-copy checks: the cases the
//! issue lists, each caught at the 0-based index of the chunk it sits in.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

mod common;

use common::*;
use tds_core::hash::Hash256;
use tds_manifest::content::{
    check_data, ChunkError, ChunkProof, ChunkSize, ChunkVerifier, DataError, ListStatus,
    VerifierState, MAX_CHUNKS,
};
use tds_manifest::Commitment;

const CS: ChunkSize = ChunkSize::MIN; // 64 KiB
const K64: usize = 64 * 1024;

fn verify_all(data: &[u8], cs: ChunkSize) {
    let (c, tree) = commit(data, cs);
    let mut v = ChunkVerifier::new(&c).unwrap();
    for i in (0..c.chunks).rev() {
        let got = v
            .verify(chunk(data, &c, i), &tree.proof(i).unwrap())
            .unwrap();
        assert_eq!((got.index(), got.offset()), (i, c.chunk_offset(i)));
        assert_eq!(got.data(), chunk(data, &c, i));
    }
    assert!(v.is_complete());
}

fn check(data: &[u8], c: &Commitment, list: &[u8]) -> Result<ListStatus, DataError> {
    check_data(&builder(CS, 2), data, c, Some(list))
}

#[test]
fn empty_asset_has_no_chunks_and_the_empty_root() {
    let (c, tree) = commit(&[], CS);
    assert_eq!((c.size, c.chunks), (0, 0));
    assert_eq!(
        c.root.to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(c.root, Hash256::sha256(b""));
    let v = ChunkVerifier::new(&c).unwrap();
    assert!(v.is_complete());
    assert_eq!(v.next_missing(0), None);
    assert!(tree.to_chunk_list().is_empty());
    assert_eq!(
        check(&[], &c, &tree.to_chunk_list()).unwrap(),
        ListStatus::Verified
    );
    // One byte where none is committed is caught as chunk 0.
    let err = check(&[0], &c, &[]).unwrap_err();
    assert!(matches!(err, DataError::Length { index: 0, .. }), "{err}");
}

#[test]
fn exactly_one_chunk_and_one_byte_more() {
    let d = data(K64 + 1, 1);
    let (one, _) = commit(&d[..K64], CS);
    assert_eq!(one.chunks, 1);
    assert_eq!(one.root, tds_core::merkle::leaf_hash(&d[..K64]));
    verify_all(&d[..K64], CS);
    let (two, tree) = commit(&d, CS);
    assert_eq!(two.chunks, 2);
    assert_eq!(two.chunk_len(1), Some(1));
    verify_all(&d, CS);
    // The one-chunk proof has no hashes; the two-chunk proofs have one each.
    assert_eq!(tree.proof(1).unwrap().path.len(), 1);
}

#[test]
fn flipped_bit_in_first_middle_and_last_chunk_is_caught_at_that_index() {
    let d = data(5 * K64 + 1000, 2); // 6 chunks, the last one short
    let (c, tree) = commit(&d, CS);
    let list = tree.to_chunk_list();
    for index in [0u64, 3, 5] {
        let mut bad = d.clone();
        let at = c.chunk_offset(index) as usize + 17;
        bad[at] ^= 0x04;
        // The streaming verifier refuses that chunk and names it...
        let mut v = ChunkVerifier::new(&c).unwrap();
        let err = v
            .verify(chunk(&bad, &c, index), &tree.proof(index).unwrap())
            .unwrap_err();
        assert_eq!(err, ChunkError::Mismatch { index });
        assert_eq!(
            err.to_string(),
            format!("chunk {index} does not match the manifest")
        );
        assert!(!v.is_verified(index));
        assert_eq!(v.verified_count(), 0);
        // ...and the others still pass.
        for i in (0..c.chunks).filter(|i| *i != index) {
            v.verify(chunk(&bad, &c, i), &tree.proof(i).unwrap())
                .unwrap();
        }
        assert_eq!(v.missing().collect::<Vec<_>>(), vec![index]);
        // A whole-copy check with the chunk list names it too.
        let err = check(&bad, &c, &list).unwrap_err();
        assert!(
            matches!(err, DataError::Chunk { index: i } if i == index),
            "{err}"
        );
        // Without the list only the root says the copy is bad.
        let err = check_data(&builder(CS, 1), &bad[..], &c, None::<&[u8]>).unwrap_err();
        assert!(matches!(err, DataError::Root { .. }), "{err}");
    }
}

#[test]
fn truncated_data_is_caught_at_the_chunk_where_it_ends() {
    let d = data(4 * K64 + 10, 3); // 5 chunks
    let (c, tree) = commit(&d, CS);
    let list = tree.to_chunk_list();
    for (cut, index) in [
        (d.len() - 1, 4),
        (4 * K64, 4),
        (3 * K64 + 5, 3),
        (K64 - 1, 0),
        (0, 0),
    ] {
        let err = check(&d[..cut], &c, &list).unwrap_err();
        assert!(
            matches!(&err, DataError::Length { index: i, .. } if *i == index),
            "cut {cut}: {err}"
        );
        assert!(err
            .to_string()
            .starts_with(&format!("chunk {index} does not match the manifest")));
        // Without a list the length still names the chunk.
        let err = check_data(&builder(CS, 1), &d[..cut], &c, None::<&[u8]>).unwrap_err();
        assert!(
            matches!(&err, DataError::Length { index: i, .. } if *i == index),
            "{err}"
        );
    }
    // A short last chunk offered to the streaming verifier.
    let mut v = ChunkVerifier::new(&c).unwrap();
    let err = v
        .verify(&chunk(&d, &c, 4)[..9], &tree.proof(4).unwrap())
        .unwrap_err();
    assert_eq!(
        err,
        ChunkError::Length {
            index: 4,
            expected: 10,
            got: 9
        }
    );
}

#[test]
fn extended_data_is_caught() {
    let d = data(3 * K64 + 10, 4); // 4 chunks, the last short
    let (c, tree) = commit(&d, CS);
    let list = tree.to_chunk_list();
    let mut longer = d.clone();
    longer.push(0);
    let err = check(&longer, &c, &list).unwrap_err();
    assert!(matches!(err, DataError::Length { index: 3, .. }), "{err}");
    // A whole extra chunk after a full last chunk names the chunk past the end.
    let d = data(2 * K64, 5);
    let (c, tree) = commit(&d, CS);
    let mut longer = d.clone();
    longer.extend_from_slice(&[1, 2, 3]);
    let err = check(&longer, &c, &tree.to_chunk_list()).unwrap_err();
    assert!(matches!(err, DataError::Length { index: 2, .. }), "{err}");
    // The streaming verifier refuses indices past the end.
    let mut v = ChunkVerifier::new(&c).unwrap();
    let err = v
        .verify(
            &[1, 2, 3],
            &ChunkProof {
                index: 2,
                path: vec![],
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        ChunkError::IndexOutOfRange {
            index: 2,
            chunks: 2
        }
    );
}

#[test]
fn a_chunk_from_another_asset_is_refused() {
    let a = data(4 * K64, 6);
    let b = data(4 * K64, 7);
    let (ca, tree_a) = commit(&a, CS);
    let (cb, tree_b) = commit(&b, CS);
    let mut v = ChunkVerifier::new(&ca).unwrap();
    // B's chunk with B's proof: consistent in itself, but not under A's root.
    let err = v
        .verify(chunk(&b, &cb, 2), &tree_b.proof(2).unwrap())
        .unwrap_err();
    assert_eq!(err, ChunkError::Mismatch { index: 2 });
    // B's chunk with A's proof.
    let err = v
        .verify(chunk(&b, &cb, 2), &tree_a.proof(2).unwrap())
        .unwrap_err();
    assert_eq!(err, ChunkError::Mismatch { index: 2 });
    // A's chunk 1 presented as chunk 2.
    let mut p = tree_a.proof(1).unwrap();
    p.index = 2;
    assert_eq!(
        v.verify(chunk(&a, &ca, 1), &p).unwrap_err(),
        ChunkError::Mismatch { index: 2 }
    );
    // A chunk list of another asset does not verify, so nothing is named from it.
    let err = check(&a, &ca, &tree_b.to_chunk_list());
    assert!(matches!(err, Ok(ListStatus::Invalid(_))), "{err:?}");
}

#[test]
fn resume_from_saved_state() {
    let d = data(10 * K64 + 3, 8); // 11 chunks
    let (c, tree) = commit(&d, CS);
    let mut v = ChunkVerifier::new(&c).unwrap();
    for i in [0, 1, 2, 7, 10] {
        v.verify(chunk(&d, &c, i), &tree.proof(i).unwrap()).unwrap();
    }
    let saved = v.state().to_bytes().unwrap();
    assert!(saved.len() < 200, "{}", saved.len());
    drop(v);
    let state = VerifierState::from_bytes(&saved).unwrap();
    let mut v = ChunkVerifier::resume(&c, &state).unwrap();
    assert_eq!(v.verified_count(), 5);
    assert_eq!(v.next_missing(0), Some(3));
    assert_eq!(v.missing().collect::<Vec<_>>(), vec![3, 4, 5, 6, 8, 9]);
    let missing: Vec<u64> = v.missing().collect();
    for i in missing {
        v.verify(chunk(&d, &c, i), &tree.proof(i).unwrap()).unwrap();
    }
    assert!(v.is_complete());
    // Verifying a chunk twice changes nothing.
    v.verify(chunk(&d, &c, 0), &tree.proof(0).unwrap()).unwrap();
    assert_eq!(v.verified_count(), 11);

    // A state for another asset, or with bits past the end, is refused.
    let (other, _) = commit(&d[..K64], CS);
    assert!(matches!(
        ChunkVerifier::resume(&other, &state),
        Err(ChunkError::State(_))
    ));
    let mut bad = state.clone();
    bad.verified[1] |= 0x80; // chunk 15 of 11
    assert!(matches!(
        ChunkVerifier::resume(&c, &bad),
        Err(ChunkError::State(_))
    ));
}

#[test]
fn state_is_bounded_for_a_tebibyte_at_one_mebibyte_chunks() {
    let c = Commitment {
        size: 1 << 40,
        chunk_size: ChunkSize::DEFAULT,
        chunks: 1 << 20,
        root: Hash256::sha256(b"x"),
        alg: Default::default(),
    };
    let v = ChunkVerifier::new(&c).unwrap();
    let state = v.state().to_bytes().unwrap();
    // A 128 KiB bitmap plus a small header.
    assert!(state.len() < 128 * 1024 + 128, "{}", state.len());
    // Too many chunks for the bound is refused up front.
    let huge = Commitment {
        size: (MAX_CHUNKS + 1) * 65536,
        chunk_size: ChunkSize::MIN,
        chunks: MAX_CHUNKS + 1,
        ..c
    };
    assert!(ChunkVerifier::new(&huge).is_err());
}

#[test]
fn proofs_round_trip_and_bad_ones_are_refused() {
    let d = data(7 * K64, 9);
    let (c, tree) = commit(&d, CS);
    let mut v = ChunkVerifier::new(&c).unwrap();
    let p = tree.proof(5).unwrap();
    let bytes = p.to_bytes().unwrap();
    assert_eq!(ChunkProof::from_bytes(&bytes).unwrap(), p);
    // Wrong length of path, a flipped hash in the path.
    let mut short = p.clone();
    short.path.pop();
    assert_eq!(
        v.verify(chunk(&d, &c, 5), &short).unwrap_err(),
        ChunkError::Mismatch { index: 5 }
    );
    let mut flipped = p.clone();
    let mut h = *flipped.path[0].as_bytes();
    h[0] ^= 1;
    flipped.path[0] = Hash256::from_bytes(h);
    assert_eq!(
        v.verify(chunk(&d, &c, 5), &flipped).unwrap_err(),
        ChunkError::Mismatch { index: 5 }
    );
    // Too long a proof is refused when decoding.
    let long = ChunkProof {
        index: 0,
        path: vec![Hash256::default(); 65],
    };
    assert!(ChunkProof::from_bytes(&long.to_bytes().unwrap()).is_err());
    // Trailing bytes are refused.
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(ChunkProof::from_bytes(&trailing).is_err());
}

#[test]
fn chunk_sizes_outside_the_range_are_refused() {
    for bad in [0, 1, 4096, 65535, 65537, 3 << 16, 32 << 20] {
        assert!(ChunkSize::new(bad).is_err(), "{bad}");
    }
    for good in [64 << 10, 1 << 20, 16 << 20] {
        assert_eq!(ChunkSize::new(good).unwrap().get(), good);
    }
    assert_eq!(ChunkSize::default().get(), 1 << 20);
}

#[test]
fn many_chunks_with_tiny_chunk_sizes() {
    // Tiny chunks give many tree shapes quickly (tests only; manifests refuse them).
    let scale = if full_scale() { 20_000 } else { 2_000 };
    let d = data(scale, 10);
    for cs in [1u32, 2, 16, 64, 1024] {
        verify_all(&d, ChunkSize::for_tests(cs).unwrap());
    }
}

#[test]
fn heavy_round_trip_at_full_scale() {
    // A few MiB by default; 256 MiB in 1 MiB chunks with TDS_TEST_SCALE=full.
    let (len, cs) = if full_scale() {
        (256 << 20, ChunkSize::DEFAULT)
    } else {
        (3 << 20, ChunkSize::MIN)
    };
    let d = data(len, 11);
    verify_all(&d, cs);
    let (c, tree) = commit(&d, cs);
    assert_eq!(
        check_data(&builder(cs, 2), &d[..], &c, Some(&tree.to_chunk_list()[..])).unwrap(),
        ListStatus::Verified
    );
}

/// A reader that hands out at most `step` bytes per call, like a pipe or a socket.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// With several threads, chunks go out in batches of at least 1 MiB: sizes around batch
/// boundaries, short reads and more threads than batches all give the one-thread root, and
/// every leaf arrives in index order.
#[test]
fn threaded_batches_give_the_same_commitment() {
    let mib = 1024 * 1024;
    for len in [
        0,
        1,
        K64 - 1,
        mib - 1,
        mib,
        mib + 1,
        2 * mib,
        5 * mib + 12_345,
    ] {
        let d = data(len, len as u64);
        for cs in [CS, ChunkSize::DEFAULT] {
            let want = builder(cs, 1).build_slice(&d).unwrap();
            for threads in [2, 3, 5] {
                for step in [usize::MAX, 7_777] {
                    let mut seen = Vec::new();
                    let got = builder(cs, threads)
                        .build_with_leaves(Trickle { data: &d, step }, |i, _| {
                            seen.push(i);
                            Ok(())
                        })
                        .unwrap();
                    assert_eq!(got, want, "len {len} cs {} threads {threads}", cs.get());
                    assert_eq!(seen, (0..want.chunks).collect::<Vec<_>>());
                }
            }
        }
    }
}

/// Positional reads from a file (each hashing thread reads its own batches): sizes around
/// batch boundaries and more threads than batches give the one-thread root, leaves arrive
/// in index order, progress adds up, and a pipe falls back to plain reads.
#[test]
fn file_builds_with_positional_reads_give_the_same_commitment() {
    let mib = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("asset.bin");
    for len in [0, 1, K64 + 1, mib - 1, mib, mib + 1, 3 * mib + 12_345] {
        let d = data(len, len as u64 + 7);
        std::fs::write(&path, &d).unwrap();
        for cs in [CS, ChunkSize::DEFAULT, ChunkSize::MAX] {
            let want = builder(cs, 1).build_slice(&d).unwrap();
            for threads in [1, 2, 3, 8] {
                let file = std::fs::File::open(&path).unwrap();
                let mut seen = Vec::new();
                let bytes = std::cell::Cell::new(0u64);
                let progress = |n: u64| bytes.set(bytes.get() + n);
                let got = builder(cs, threads)
                    .progress(&progress)
                    .build_file_with_leaves(&file, |i, _| {
                        seen.push(i);
                        Ok(())
                    })
                    .unwrap();
                assert_eq!(got, want, "len {len} cs {} threads {threads}", cs.get());
                assert_eq!(seen, (0..want.chunks).collect::<Vec<_>>());
                assert_eq!(bytes.get(), len as u64);
            }
        }
    }
    // The whole file, whatever its cursor (positional reads with any thread count).
    let d = data(mib + 77, 2);
    std::fs::write(&path, &d).unwrap();
    let want = builder(CS, 1).build_slice(&d).unwrap();
    for threads in [1, 2] {
        let mut file = std::fs::File::open(&path).unwrap();
        std::io::Read::read_exact(&mut file, &mut [0u8; 1000]).unwrap();
        assert_eq!(builder(CS, threads).build_file(&file).unwrap(), want);
    }
    // A pipe is read from its cursor to its end.
    let mut child = std::process::Command::new("cat")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pipe: std::fs::File = std::os::fd::OwnedFd::from(child.stdout.take().unwrap()).into();
    assert_eq!(builder(CS, 2).build_file(&pipe).unwrap(), want);
    child.wait().unwrap();
    // A leaf callback's error stops the build.
    std::fs::write(&path, data(3 * mib, 1)).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let err = builder(CS, 2)
        .build_file_with_leaves(&file, |i, _| {
            if i == 20 {
                Err(std::io::Error::other("list disk full"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(err.to_string().contains("list disk full"), "{err}");
}
