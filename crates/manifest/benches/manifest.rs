//! Building and verifying content commitments against one pass of raw ring SHA-256 over
//! the same bytes, in the same run (the machine is noisy; compare ratios, not absolutes).
//!
//! `cargo bench -p tds-manifest` uses 256 MiB; `TDS_BENCH_FULL=1` uses 1 GiB. Each figure
//! is the median of `TDS_BENCH_RUNS` runs (default 5). `File (pread)` hashes the same bytes
//! from a temporary file (in the page cache) with `build_file`.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "bench code: a failed unwrap is a failed bench"
)]

use std::io::Read;
use std::num::NonZeroUsize;
use std::time::Instant;

use tds_manifest::content::{ChunkSize, ChunkTree, ChunkVerifier, ContentBuilder};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A reader over a slice that hands out at most `max` bytes per call, like a file would.
struct SliceReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Read for SliceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn secs<F: FnMut()>(mut f: F) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// Runs one pass of raw SHA-256, the same split over two threads, and `f`, back to back,
/// `runs` times; returns (median seconds of `f`, median of raw/f, median of raw2/f).
/// Measuring each triple together keeps a load change on the shared machine from landing
/// on one side of the comparison only; raw2 shows how much of a second core the machine
/// actually gives right now.
fn measure<F: FnMut()>(runs: usize, data: &[u8], mut f: F) -> (f64, f64, f64) {
    let mut ts = Vec::with_capacity(runs);
    let mut r1 = Vec::with_capacity(runs);
    let mut r2 = Vec::with_capacity(runs);
    for _ in 0..runs {
        let raw = secs(|| raw_hash(data));
        let raw2 = secs(|| raw_hash2(data));
        let t = secs(&mut f);
        ts.push(t);
        r1.push(raw / t);
        r2.push(raw2 / t);
    }
    (median(ts), median(r1), median(r2))
}

fn raw_hash(data: &[u8]) {
    std::hint::black_box(ring::digest::digest(&ring::digest::SHA256, data));
}

/// Two raw SHA-256 passes over the two halves, on two scoped threads.
fn raw_hash2(data: &[u8]) {
    let (a, b) = data.split_at(data.len() / 2);
    std::thread::scope(|s| {
        s.spawn(|| raw_hash(a));
        s.spawn(|| raw_hash(b));
    });
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run tiny then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let full = std::env::var("TDS_BENCH_FULL").is_ok_and(|v| v == "1");
    let size: usize = if quick {
        4 << 20
    } else if full {
        1 << 30
    } else {
        256 << 20
    };
    let runs: usize = std::env::var("TDS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 5 });
    let mut data = vec![0u8; size];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mib = size as f64 / (1024.0 * 1024.0);
    println!("data: {mib:.0} MiB, median of {runs} run(s)");

    let mut raw_times = Vec::new();
    let mut raw2_times = Vec::new();
    for _ in 0..runs {
        raw_times.push(secs(|| raw_hash(&data)));
        raw2_times.push(secs(|| raw_hash2(&data)));
    }
    let (raw1, raw2) = (median(raw_times), median(raw2_times));
    println!(
        "raw ring SHA-256, one pass, 1 thread:               {:8.1} MiB/s",
        mib / raw1
    );
    println!(
        "raw ring SHA-256, two halves on 2 threads:          {:8.1} MiB/s  ({:.2}x the 1-thread pass: the parallelism the machine gives now)",
        mib / raw2,
        raw1 / raw2
    );
    println!(
        "(ratios: medians over runs of raw time / build time, raw and build measured back to back)"
    );

    // The same bytes in a file (in the page cache after the first pass), for build_file's
    // positional reads.
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, &data).unwrap();

    for cs in [ChunkSize::DEFAULT, ChunkSize::MIN] {
        for threads in [1usize, 2] {
            let b = ContentBuilder::new(cs, NonZeroUsize::new(threads).unwrap());
            let report = |what: &str, (t, r1, r2): (f64, f64, f64)| {
                println!(
                    "build, {what:<18} chunk {:>8}, {threads} thread(s): {:8.1} MiB/s  {r1:.2}x raw  ({r2:.2}x raw on 2 threads)",
                    cs.get(),
                    mib / t
                );
            };
            report(
                "Read (copies),",
                measure(runs, &data, || {
                    let c = b
                        .build(SliceReader {
                            data: &data,
                            pos: 0,
                        })
                        .unwrap();
                    std::hint::black_box(c);
                }),
            );
            report(
                "BufRead (in place),",
                measure(runs, &data, || {
                    std::hint::black_box(b.build_buffered(&data[..]).unwrap());
                }),
            );
            report(
                "File (pread),",
                measure(runs, &data, || {
                    std::hint::black_box(b.build_file(&file).unwrap());
                }),
            );
            report(
                "slice,",
                measure(runs, &data, || {
                    std::hint::black_box(b.build_slice(&data).unwrap());
                }),
            );
        }
    }

    // Verifier: every chunk with its inclusion proof, in reverse order, proofs prepared
    // beforehand (a receiver gets them with the chunks).
    for cs in [ChunkSize::DEFAULT, ChunkSize::MIN] {
        let b = ContentBuilder::new(cs, NonZeroUsize::new(2).unwrap());
        let (c, tree) = ChunkTree::build(&b, &data[..]).unwrap();
        let proofs: Vec<_> = (0..c.chunks).map(|i| tree.proof(i).unwrap()).collect();
        let proof_bytes: usize = proofs.iter().map(|p| p.to_bytes().unwrap().len()).sum();
        let (t, ratio, _) = measure(runs, &data, || {
            let mut v = ChunkVerifier::new(&c).unwrap();
            for p in proofs.iter().rev() {
                let start = c.chunk_offset(p.index) as usize;
                let len = c.chunk_len(p.index).unwrap() as usize;
                std::hint::black_box(v.verify(&data[start..start + len], p).unwrap());
            }
            assert!(v.is_complete());
        });
        let state = ChunkVerifier::new(&c)
            .unwrap()
            .state()
            .to_bytes()
            .unwrap()
            .len();
        println!(
            "verify, per-chunk proofs, chunk {:>8}, 1 thread:    {:8.1} MiB/s  {ratio:.2}x raw; proofs {:.3}% of the data; state {} bytes",
            cs.get(),
            mib / t,
            100.0 * proof_bytes as f64 / size as f64,
            state
        );
    }
}
