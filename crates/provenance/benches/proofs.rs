//! Inclusion proof generation and verification in a 10M-entry file store, and the time
//! to open it. The store is built once under the target directory and reused
//! (`TDS_BENCH_ENTRIES` changes the size).

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "bench code: a failed unwrap is a failed bench"
)]

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use tds_core::merkle;
use tds_provenance::store::{FileStore, LogStore, OpenOptions};
use tds_provenance::DirStorage;

fn entries() -> u64 {
    std::env::var("TDS_BENCH_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000)
}

fn record(i: u64) -> Vec<u8> {
    format!("bench event {i:012} with some padding to look like a real event........").into_bytes()
}

fn store() -> FileStore {
    let n = entries();
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_TARGET_TMPDIR"), "/proof-bench"))
        .join(n.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let storage = Arc::new(DirStorage::new(&dir));
    {
        let s = FileStore::open(storage.clone(), OpenOptions::writer()).unwrap();
        let have = s.size();
        if have < n {
            eprintln!("building a {n}-entry store in {} (once)", dir.display());
            let t = Instant::now();
            let mut i = have;
            while i < n {
                let m = (n - i).min(10_000);
                let recs: Vec<Vec<u8>> = (i..i + m).map(record).collect();
                let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                s.append_many(&refs).unwrap();
                i += m;
            }
            s.flush().unwrap();
            eprintln!("built in {:.1} s", t.elapsed().as_secs_f64());
        }
    }
    let t = Instant::now();
    let mut opts = OpenOptions::reader();
    if let Some(level) = std::env::var("TDS_BENCH_MEMORY_LEVEL")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        opts = opts.memory_level(level);
    }
    let s = FileStore::open(storage, opts).unwrap();
    eprintln!(
        "opened {} entries in {:.1} ms",
        s.size(),
        t.elapsed().as_secs_f64() * 1e3
    );
    s
}

fn bench(c: &mut Criterion) {
    let s = store();
    let n = s.size();
    let root = merkle::root(&s, n).unwrap();
    let mut i = 0x1234_5678u64;
    c.bench_function("inclusion proof generation (10M)", |b| {
        b.iter(|| {
            i = (i.wrapping_mul(6364136223846793005).wrapping_add(1)) % n;
            s.inclusion_proof(i, n).unwrap()
        })
    });
    let idx: Vec<u64> = (0..1024u64).map(|k| (k * 9_767_399) % n).collect();
    let proofs: Vec<_> = idx
        .iter()
        .map(|&i| {
            (
                i,
                s.leaf(i).unwrap(),
                merkle::inclusion_proof(&s, i, n).unwrap(),
            )
        })
        .collect();
    // The raw primitive: as many SHA-256 hashes of 65 bytes as a proof has nodes.
    let depth = proofs[0].2.len();
    let mut buf = [0x01u8; 65];
    c.bench_function("raw: proof-length SHA-256 chain of 65-byte messages", |b| {
        b.iter(|| {
            for _ in 0..depth {
                let d = ring::digest::digest(&ring::digest::SHA256, &buf);
                buf[1..33].copy_from_slice(d.as_ref());
            }
            buf[1]
        })
    });
    let mut k = 0usize;
    c.bench_function("inclusion proof verification (10M)", |b| {
        b.iter(|| {
            let (i, leaf, p) = &proofs[k % proofs.len()];
            k += 1;
            merkle::verify_inclusion(leaf, *i, n, p, &root).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
