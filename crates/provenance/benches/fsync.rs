//! Durable append throughput against the raw primitive, on the same disk in the same run:
//!
//! 1. raw: write a record and `fdatasync`, one at a time (growing file, and again into a
//!    preallocated file);
//! 2. raw batched: write 1,000 records, then one `fdatasync`;
//! 3. the file store with group commit and 64 concurrent writers, each waiting for its own
//!    append to be durable: 64 threads, then 64 tasks on a two-worker tokio runtime.
//!
//! `cargo bench -p tds-provenance --bench fsync` (set `TDS_BENCH_DIR` to measure another
//! disk; the default is under the target directory).

#![expect(
    clippy::unwrap_used,
    reason = "bench code: a failed unwrap is a failed bench"
)]

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use tds_provenance::store::{FileStore, LogStore, OpenOptions};
use tds_provenance::DirStorage;

fn main() {
    let base = std::env::var("TDS_BENCH_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_TARGET_TMPDIR"), "/fsync-bench").to_owned());
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let record = vec![0x5au8; 120];

    // 1. One fdatasync per append.
    let n1 = 2_000u64;
    let mut f = std::fs::File::create(dir.path().join("raw1")).unwrap();
    let t = Instant::now();
    for _ in 0..n1 {
        f.write_all(&record).unwrap();
        f.sync_data().unwrap();
    }
    let raw1 = n1 as f64 / t.elapsed().as_secs_f64();

    // 1b. One fdatasync per append into a preallocated (zero-filled, synced) file: the
    // in-place overwrite the store does, without file-size metadata in each sync.
    let mut f = std::fs::File::create(dir.path().join("raw1b")).unwrap();
    f.write_all(&vec![0u8; (n1 as usize + 1) * record.len()])
        .unwrap();
    f.sync_all().unwrap();
    let t = Instant::now();
    for i in 0..n1 {
        std::os::unix::fs::FileExt::write_all_at(&f, &record, i * record.len() as u64).unwrap();
        f.sync_data().unwrap();
    }
    let raw1b = n1 as f64 / t.elapsed().as_secs_f64();

    // 2. One fdatasync per 1,000 appends.
    let n2 = 200_000u64;
    let mut f = std::fs::File::create(dir.path().join("raw2")).unwrap();
    let t = Instant::now();
    for i in 0..n2 {
        f.write_all(&record).unwrap();
        if i % 1000 == 999 {
            f.sync_data().unwrap();
        }
    }
    let raw2 = n2 as f64 / t.elapsed().as_secs_f64();

    // 3. Group commit, 64 writers.
    let n3 = 200_000u64;
    let writers = 64u64;
    let ldir = dir.path().join("log");
    std::fs::create_dir_all(&ldir).unwrap();
    let store =
        Arc::new(FileStore::open(Arc::new(DirStorage::new(&ldir)), OpenOptions::writer()).unwrap());
    let t = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let s = store.clone();
            let r = record.clone();
            std::thread::spawn(move || {
                for _ in 0..n3 / writers {
                    s.append(&r).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let group = (n3 / writers * writers) as f64 / t.elapsed().as_secs_f64();

    drop(store);

    // 3b. Group commit, 64 async writers (tasks on a runtime with one worker per core).
    let adir = dir.path().join("log-async");
    std::fs::create_dir_all(&adir).unwrap();
    let store =
        Arc::new(FileStore::open(Arc::new(DirStorage::new(&adir)), OpenOptions::writer()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let t = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let s = store.clone();
                let r = record.clone();
                tokio::spawn(async move {
                    for _ in 0..n3 / writers {
                        s.append_durable(&[&r]).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let tasks = (n3 / writers * writers) as f64 / t.elapsed().as_secs_f64();

    println!("raw fdatasync per append:     {raw1:>10.0} appends/s");
    println!("raw fdatasync per append, preallocated: {raw1b:>10.0} appends/s");
    println!("raw fdatasync per 1000:       {raw2:>10.0} appends/s");
    println!("file store, 64 writer threads: {group:>10.0} appends/s");
    println!("file store, 64 writer tasks:   {tasks:>10.0} appends/s");
    for (name, v) in [("threads", group), ("tasks", tasks)] {
        println!(
            "ratios ({name}): /raw-per-append {:.1}x, /raw-per-append-preallocated {:.1}x, /raw-batched {:.3}",
            v / raw1,
            v / raw1b,
            v / raw2
        );
    }
}
