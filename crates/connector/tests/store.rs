//! The store behaviour suite, run against both backends, and the redb backend's
//! durability tests (reopen, SIGKILL of a child process, one store per file).

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tds_connector::store::{
    Batch, CommitFuture, MemoryStore, RedbStore, Store, StoreError, Table, MAX_BATCH, MAX_KEY,
    MAX_VALUE,
};
use tds_core::ErrorCode;

/// The child-process switch of the SIGKILL test: the file to commit into.
const CHILD_ENV: &str = "TDS_KV_KILL_CHILD";

fn full_scale() -> bool {
    std::env::var("TDS_TEST_SCALE").is_ok_and(|s| s == "full")
}

// ---- the behaviour suite, one fn per behaviour, each taking any store ----

fn put_get_delete(s: &dyn Store) {
    assert_eq!(s.get(Table::Agreements, b"a").unwrap(), None);
    let mut b = Batch::new();
    b.put(Table::Agreements, b"a".to_vec(), b"one".to_vec());
    b.put(Table::Offers, b"a".to_vec(), b"other table".to_vec());
    s.commit(b).unwrap();
    assert_eq!(s.get(Table::Agreements, b"a").unwrap().unwrap(), b"one");
    assert_eq!(s.get(Table::Offers, b"a").unwrap().unwrap(), b"other table");
    let mut b = Batch::new();
    b.put(Table::Agreements, b"a".to_vec(), b"two".to_vec());
    s.commit(b).unwrap();
    assert_eq!(s.get(Table::Agreements, b"a").unwrap().unwrap(), b"two");
    let mut b = Batch::new();
    b.delete(Table::Agreements, b"a".to_vec());
    b.delete(Table::Agreements, b"never there".to_vec());
    s.commit(b).unwrap();
    assert_eq!(s.get(Table::Agreements, b"a").unwrap(), None);
    assert!(s.get(Table::Offers, b"a").unwrap().is_some());
    // An empty batch is a no-op.
    s.commit(Batch::new()).unwrap();
}

fn atomic_batches(s: &dyn Store) {
    let mut b = Batch::new();
    b.put(Table::Assets, b"x".to_vec(), b"1".to_vec());
    b.put(
        Table::Assets,
        vec![7u8; MAX_KEY + 1],
        b"too long a key".to_vec(),
    );
    let e = s.commit(b).unwrap_err();
    assert_eq!(e.code(), "kv.too_large");
    assert_eq!(s.get(Table::Assets, b"x").unwrap(), None, "all or nothing");

    let mut b = Batch::new();
    b.put(Table::Assets, b"x".to_vec(), b"1".to_vec());
    b.put(Table::Assets, b"big".to_vec(), vec![0u8; MAX_VALUE + 1]);
    assert_eq!(s.commit(b).unwrap_err().code(), "kv.too_large");
    assert_eq!(s.get(Table::Assets, b"x").unwrap(), None);

    let mut b = Batch::new();
    for i in 0..5u8 {
        b.put(Table::Assets, vec![i], vec![i; MAX_BATCH / 4]);
    }
    let e = s.commit(b).unwrap_err();
    assert!(
        matches!(e, StoreError::TooLarge { what: "batch", .. }),
        "{e}"
    );
    assert_eq!(s.get(Table::Assets, &[0]).unwrap(), None);

    // A counter add refused (not a counter) refuses its whole batch.
    let mut b = Batch::new();
    b.put(Table::Usage, b"text".to_vec(), b"not eight bytes".to_vec());
    s.commit(b).unwrap();
    let mut b = Batch::new();
    b.put(Table::Assets, b"x".to_vec(), b"1".to_vec());
    b.add(Table::Usage, b"text".to_vec(), 1);
    assert_eq!(s.commit(b).unwrap_err().code(), "kv.not_counter");
    assert_eq!(s.get(Table::Assets, b"x").unwrap(), None);
    // Overflow likewise.
    s.counter_add(Table::Usage, b"big", u64::MAX - 1).unwrap();
    let mut b = Batch::new();
    b.put(Table::Assets, b"x".to_vec(), b"1".to_vec());
    b.add(Table::Usage, b"big".to_vec(), 2);
    assert_eq!(s.commit(b).unwrap_err().code(), "kv.overflow");
    assert_eq!(s.get(Table::Assets, b"x").unwrap(), None);
    assert_eq!(s.counter(Table::Usage, b"big").unwrap(), u64::MAX - 1);
    // Puts, deletes and adds on one key in one batch apply in order.
    let mut b = Batch::new();
    b.add(Table::Usage, b"seq".to_vec(), 5);
    b.delete(Table::Usage, b"seq".to_vec());
    b.add(Table::Usage, b"seq".to_vec(), 2);
    b.add(Table::Usage, b"seq".to_vec(), 3);
    s.commit(b).unwrap();
    assert_eq!(s.counter(Table::Usage, b"seq").unwrap(), 5);
    // Reads are bounded too.
    assert_eq!(
        s.get(Table::Assets, &vec![0u8; MAX_KEY + 1])
            .unwrap_err()
            .code(),
        "kv.too_large"
    );
}

fn scans(s: &dyn Store) {
    let mut b = Batch::new();
    for k in [
        &b"agr/1"[..],
        b"agr/2",
        b"agr/3",
        b"agr0",
        b"agq/9",
        b"b",
        b"agr/22",
    ] {
        b.put(Table::Negotiations, k.to_vec(), [b"v:", k].concat());
    }
    s.commit(b).unwrap();
    let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<Vec<u8>> {
        v.into_iter()
            .map(|(k, val)| {
                assert_eq!(val, [b"v:", k.as_slice()].concat());
                k
            })
            .collect()
    };
    let all = keys(s.scan_prefix(Table::Negotiations, b"agr/", 100).unwrap());
    assert_eq!(
        all,
        vec![
            b"agr/1".to_vec(),
            b"agr/2".to_vec(),
            b"agr/22".to_vec(),
            b"agr/3".to_vec()
        ]
    );
    let two = keys(s.scan_prefix(Table::Negotiations, b"agr/", 2).unwrap());
    assert_eq!(two, all[..2].to_vec());
    let next = keys(
        s.scan_prefix_after(Table::Negotiations, b"agr/", Some(&two[1]), 2)
            .unwrap(),
    );
    assert_eq!(next, all[2..].to_vec());
    assert!(s
        .scan_prefix(Table::Negotiations, b"agr/", 0)
        .unwrap()
        .is_empty());
    assert!(s
        .scan_prefix(Table::Negotiations, b"zzz", 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        s.scan_prefix(Table::Negotiations, b"", 100).unwrap().len(),
        7
    );
    assert!(s.scan_prefix(Table::Duties, b"", 100).unwrap().is_empty());
}

fn concurrent_counters(s: Arc<dyn Store>) {
    let threads = 8;
    let per = 200u64;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..per {
                    let n = s.counter_add(Table::Usage, b"agreement-1/uses", 1).unwrap();
                    assert!(n > last, "counter went from {last} to {n}");
                    last = n;
                    // And adds inside batches with other writes.
                    let mut b = Batch::new();
                    b.add(Table::Usage, b"agreement-1/bytes".to_vec(), 1000);
                    b.put(Table::Transfers, b"t".to_vec(), n.to_be_bytes().to_vec());
                    s.commit(b).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = threads * per;
    assert_eq!(s.counter(Table::Usage, b"agreement-1/uses").unwrap(), total);
    assert_eq!(
        s.counter(Table::Usage, b"agreement-1/bytes").unwrap(),
        total * 1000
    );
}

fn async_commits(s: Arc<dyn Store>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..32u32)
            .map(|t| {
                let s = s.clone();
                tokio::spawn(async move {
                    for i in 0..20u32 {
                        let mut b = Batch::new();
                        b.put(
                            Table::Nonces,
                            format!("n/{t:02}/{i:02}").into_bytes(),
                            vec![1],
                        );
                        b.add(Table::Meta, b"async".to_vec(), 1);
                        s.commit_async(b).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // A refused batch resolves to its error.
        let mut b = Batch::new();
        b.put(Table::Nonces, vec![0u8; MAX_KEY + 1], vec![]);
        assert_eq!(s.commit_async(b).await.unwrap_err().code(), "kv.too_large");
    });
    assert_eq!(s.counter(Table::Meta, b"async").unwrap(), 32 * 20);
    assert_eq!(
        s.scan_prefix(Table::Nonces, b"n/", 10_000).unwrap().len(),
        640
    );
}

/// A snapshot sees the commits before it and none after; written out, it opens as a
/// redb store holding exactly those entries (more than one copy page, every table).
fn snapshots(s: &dyn Store) {
    let mut b = Batch::new();
    for i in 0..300u32 {
        b.put(Table::Agreements, i.to_be_bytes().to_vec(), vec![7; 100]);
    }
    b.put(Table::Meta, b"v".to_vec(), b"1".to_vec());
    b.add(Table::Usage, b"count".to_vec(), 5);
    s.commit(b).unwrap();
    let snap = s.snapshot().unwrap();
    let mut b = Batch::new();
    b.put(Table::Agreements, b"later".to_vec(), b"x".to_vec());
    b.delete(Table::Meta, b"v".to_vec());
    s.commit(b).unwrap();
    let first = snap.entries_after(Table::Agreements, None, 10).unwrap();
    assert_eq!(first.len(), 10);
    let next = snap
        .entries_after(Table::Agreements, Some(&first[9].0), 1_000)
        .unwrap();
    assert_eq!(next.len(), 290, "the later commit shows in the snapshot");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.redb");
    let written = tds_connector::store::write_snapshot(snap.as_ref(), &path).unwrap();
    assert_eq!(written, 302);
    assert!(tds_connector::store::write_snapshot(snap.as_ref(), &path).is_err());
    drop(snap);
    let copy = RedbStore::open_file(&path).unwrap();
    assert_eq!(
        copy.scan_prefix(Table::Agreements, b"", 1_000)
            .unwrap()
            .len(),
        300
    );
    assert_eq!(copy.get(Table::Agreements, b"later").unwrap(), None);
    assert_eq!(copy.get(Table::Meta, b"v").unwrap().unwrap(), b"1");
    assert_eq!(copy.counter(Table::Usage, b"count").unwrap(), 5);
}

/// Every behaviour, against a fresh store from `make`.
fn suite(make: &dyn Fn() -> Arc<dyn Store>) {
    snapshots(make().as_ref());
    put_get_delete(make().as_ref());
    atomic_batches(make().as_ref());
    scans(make().as_ref());
    concurrent_counters(make());
    async_commits(make());
}

#[test]
fn memory_store_behaviour() {
    suite(&|| Arc::new(MemoryStore::new()));
}

#[test]
fn redb_store_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicU32::new(0);
    suite(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new(RedbStore::open(&dir.path().join(format!("s{i}"))).unwrap())
    });
}

#[test]
fn table_names_are_stable() {
    let names: Vec<_> = Table::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(
        names,
        [
            "offers",
            "assets",
            "negotiations",
            "agreements",
            "terminations",
            "usage",
            "nonces",
            "transfers",
            "duties",
            "meta"
        ]
    );
}

#[test]
fn commit_future_is_backend_neutral() {
    // A backend that drops its end without completing: the waiter gets kv.closed.
    let (fut, done) = CommitFuture::pending();
    drop(done);
    assert_eq!(fut.wait().unwrap_err().code(), "kv.closed");
    // Completed from another thread, awaited from a runtime.
    let (fut, done) = CommitFuture::pending();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        done.complete(Ok(()));
    });
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(fut)
        .unwrap();
    t.join().unwrap();
}

// ---- redb durability ----

#[test]
fn redb_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = RedbStore::open(dir.path()).unwrap();
        let mut b = Batch::new();
        b.put(Table::Agreements, b"k".to_vec(), b"v".to_vec());
        s.commit(b).unwrap();
        // Queued async commits are finished by drop even if nobody awaits them.
        for i in 0..50u32 {
            let mut b = Batch::new();
            b.put(Table::Duties, i.to_be_bytes().to_vec(), b"d".to_vec());
            drop(s.commit_async(b));
        }
        assert_eq!(s.counter_add(Table::Usage, b"c", 7).unwrap(), 7);
    }
    let s = RedbStore::open(dir.path()).unwrap();
    assert_eq!(s.get(Table::Agreements, b"k").unwrap().unwrap(), b"v");
    assert_eq!(s.scan_prefix(Table::Duties, b"", 100).unwrap().len(), 50);
    assert_eq!(s.counter_add(Table::Usage, b"c", 1).unwrap(), 8);
    assert!(s.path().ends_with("connector.redb"));
}

/// A stopped store's rows counted without opening it for writing, from a read-only file.
#[test]
fn redb_rows_are_counted_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    {
        let s = RedbStore::open(dir.path()).unwrap();
        let mut b = Batch::new();
        for i in 0..7u32 {
            b.put(Table::Agreements, i.to_be_bytes().to_vec(), b"a".to_vec());
        }
        b.put(Table::Transfers, b"t".to_vec(), b"t".to_vec());
        s.commit(b).unwrap();
    }
    let file = dir.path().join("connector.redb");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    let counts = tds_connector::store::row_counts_read_only(
        dir.path(),
        &[Table::Agreements, Table::Transfers, Table::Duties],
    )
    .unwrap();
    assert_eq!(counts, vec![7, 1, 0]);
    // No store there: an error naming the file, not a new file.
    let empty = tempfile::tempdir().unwrap();
    let e =
        tds_connector::store::row_counts_read_only(empty.path(), &[Table::Agreements]).unwrap_err();
    assert!(e.to_string().contains("connector.redb"), "{e}");
    assert!(!empty.path().join("connector.redb").exists());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn redb_second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let s = RedbStore::open(dir.path()).unwrap();
    let e = RedbStore::open(dir.path()).unwrap_err();
    assert_eq!(e.code(), "kv.locked", "{e}");
    assert!(e.to_string().contains("connector.redb"), "{e}");
    // In another process too.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_open_for_lock_test", "--nocapture"])
        .env("TDS_KV_LOCK_CHILD", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("open: kv.locked"), "{stdout}");
    drop(s);
    RedbStore::open(dir.path()).unwrap();
}

/// The child of `redb_second_open_is_locked` (does nothing unless spawned by it).
#[test]
fn child_open_for_lock_test() {
    let Some(dir) = std::env::var_os("TDS_KV_LOCK_CHILD") else {
        return;
    };
    match RedbStore::open(Path::new(&dir)) {
        Ok(_) => println!("open: ok"),
        Err(e) => println!("open: {}", e.code()),
    }
}

/// The child of `redb_acknowledged_commits_survive_sigkill`: commits numbered batches
/// from several threads and async tasks, printing each number once acknowledged.
#[test]
fn child_commit_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let s: Arc<RedbStore> = Arc::new(RedbStore::open(Path::new(&dir)).unwrap());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let batch_of = |n: u64| {
        let mut b = Batch::new();
        b.put(Table::Transfers, n.to_be_bytes().to_vec(), vec![7u8; 100]);
        b.add(Table::Usage, b"acked".to_vec(), 1);
        b
    };
    // Threads.
    for _ in 0..4 {
        let (s, out, next) = (s.clone(), out.clone(), next.clone());
        std::thread::spawn(move || loop {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            s.commit(batch_of(n)).unwrap();
            let mut o = out.lock().unwrap();
            writeln!(o, "{n}").unwrap();
            o.flush().unwrap();
        });
    }
    // Tasks.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async move {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (s, out, next) = (s.clone(), out.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        s.commit_async(batch_of(n)).await.unwrap();
                        let mut o = out.lock().unwrap();
                        writeln!(o, "{n}").unwrap();
                        o.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn redb_acknowledged_commits_survive_sigkill() {
    let rounds = if full_scale() { 5 } else { 1 };
    let want = if full_scale() { 5_000 } else { 300 };
    let dir = tempfile::tempdir().unwrap();
    let mut acked_total = std::collections::BTreeSet::new();
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_commit_until_killed", "--nocapture"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = Vec::new();
        let started = Instant::now();
        let mut lines = BufReader::new(stdout).lines();
        // Read acknowledgements until enough (or a deadline), then kill mid-stream.
        while acked.len() < want && started.elapsed() < Duration::from_secs(20) {
            let Some(Ok(line)) = lines.next() else { break };
            if let Ok(n) = line.trim().parse::<u64>() {
                acked.push(n);
            }
        }
        child.kill().unwrap(); // SIGKILL
                               // What it printed before dying was acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Ok(n) = line.trim().parse::<u64>() {
                acked.push(n);
            }
        }
        child.wait().unwrap();
        assert!(
            !acked.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        let s = RedbStore::open(dir.path()).unwrap();
        for n in &acked {
            assert!(
                s.get(Table::Transfers, &n.to_be_bytes()).unwrap().is_some(),
                "round {round}: acknowledged commit {n} lost"
            );
        }
        acked_total.extend(acked.iter().map(|n| (round, *n)));
        // Every batch that survived is whole: the counter is at least the acknowledged.
        let count = s.counter(Table::Usage, b"acked").unwrap();
        let present = s.scan_prefix(Table::Transfers, b"", 100_000).unwrap().len() as u64;
        assert!(count >= acked.len() as u64);
        // Keys repeat across rounds (numbers restart), so only the first round's count
        // equals the rows.
        if round == 0 {
            assert_eq!(count, present, "a batch applied in part");
        }
    }
    assert!(!acked_total.is_empty());
}
