//! File store: group commit, reopen, power loss, tampering, proofs.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use tds_core::key::SigningKey;
use tds_core::merkle::{self, MemoryTree};
use tds_provenance::event::{Annotation, Event, EventBody};
use tds_provenance::store::{FileStore, LogStore, OpenOptions};
use tds_provenance::{DirStorage, Log, SimStorage, Storage};

fn writer(flush: u64) -> OpenOptions {
    OpenOptions {
        write: true,
        flush_every: flush,
        ..OpenOptions::writer()
    }
}

fn rec(i: u64) -> Vec<u8> {
    format!("record number {i} {}", "x".repeat((i % 50) as usize)).into_bytes()
}

fn scale() -> u64 {
    match std::env::var("TDS_TEST_SCALE").as_deref() {
        Ok("full") => 20,
        _ => 1,
    }
}

#[test]
fn append_reopen_prove() {
    let dir = tempfile::tempdir().unwrap();
    let st: Arc<dyn Storage> = Arc::new(DirStorage::new(dir.path()));
    let mut tree = MemoryTree::new();
    {
        let s = FileStore::open(st.clone(), writer(64)).unwrap();
        for i in 0..1000 {
            assert_eq!(s.append(&rec(i)).unwrap(), i);
            tree.push(merkle::leaf_hash(&rec(i)));
        }
        assert_eq!(merkle::root(&s, 1000).unwrap(), tree.root());
    }
    for write in [false, true] {
        let s = FileStore::open(
            st.clone(),
            OpenOptions {
                write,
                flush_every: 64,
                ..OpenOptions::writer()
            },
        )
        .unwrap();
        assert_eq!(s.size(), 1000);
        assert_eq!(s.read(777).unwrap(), rec(777));
        s.verify_storage().unwrap();
        for size in [1u64, 2, 3, 63, 64, 65, 127, 500, 1000] {
            let root = merkle::root(&s, size).unwrap();
            assert_eq!(root, merkle::root(&tree, size).unwrap());
            for idx in [0, size / 2, size - 1] {
                let p = merkle::inclusion_proof(&s, idx, size).unwrap();
                assert_eq!(p, merkle::inclusion_proof(&tree, idx, size).unwrap());
                assert_eq!(p, s.inclusion_proof(idx, size).unwrap());
                merkle::verify_inclusion(&merkle::leaf_hash(&rec(idx)), idx, size, &p, &root)
                    .unwrap();
            }
            let c = merkle::consistency_proof(&s, size, 1000).unwrap();
            merkle::verify_consistency(size, 1000, &c, &root, &tree.root()).unwrap();
        }
    }
}

#[test]
fn concurrent_appends_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(FileStore::open(Arc::new(DirStorage::new(dir.path())), writer(256)).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| {
                        let r = rec(t * 1000 + i);
                        (s.append(&r).unwrap(), r)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(s.size(), 3200);
    for (i, r) in &all {
        assert_eq!(&s.read(*i).unwrap(), r);
    }
    s.verify_storage().unwrap();
}

#[test]
fn async_appends_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(FileStore::open(Arc::new(DirStorage::new(dir.path())), writer(256)).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let all: Vec<(u64, Vec<u8>)> = rt.block_on(async {
        let tasks: Vec<_> = (0..32u64)
            .map(|t| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for i in 0..100u64 {
                        let r = rec(t * 1000 + i);
                        let pair = [r.as_slice(), b"second"];
                        let first = s.append_durable(&pair).await.unwrap();
                        // Durable once resolved: the size already covers both.
                        assert!(s.size() >= first + 2);
                        mine.push((first, r));
                        mine.push((first + 1, b"second".to_vec()));
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    assert_eq!(s.size(), 6400);
    let mut seen: Vec<u64> = all.iter().map(|(i, _)| *i).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..6400).collect::<Vec<_>>());
    for (i, r) in &all {
        assert_eq!(&s.read(*i).unwrap(), r);
    }
    s.verify_storage().unwrap();
    // Bad input is refused before anything is queued.
    let e = rt.block_on(s.append_durable(&[b"ok", b""])).unwrap_err();
    assert!(e.to_string().contains("0 bytes"), "{e}");
    assert_eq!(s.size(), 6400);
    // The log's async append, through the same queue.
    let key = SigningKey::generate().unwrap();
    let actor = key.id();
    drop(s);
    let log = Log::new(
        FileStore::open(Arc::new(DirStorage::new(dir.path())), writer(256)).unwrap(),
        key,
    );
    let e = Event::new(
        tds_core::Timestamp::from_millis(1),
        actor,
        EventBody::Annotation {
            text: Annotation::new("async").unwrap(),
        },
    );
    assert_eq!(rt.block_on(log.append_async(&e)).unwrap(), 6400);
    assert_eq!(log.event(6400).unwrap(), e);
}

#[test]
fn power_loss_keeps_every_acknowledged_async_append() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    for round in 0..(10 * scale()) {
        let sim = SimStorage::new();
        let storage: Arc<dyn Storage> = Arc::new(sim.clone());
        let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64 ^ round;
        for crash in 0..4u64 {
            let s = Arc::new(FileStore::open(storage.clone(), writer(64)).unwrap());
            for (i, r) in &acked {
                assert_eq!(&s.read(*i).unwrap(), r, "round {round} crash {crash}");
            }
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            sim.fail_after(20 + (seed >> 33) % 400);
            let got: Vec<(u64, Vec<u8>)> = rt.block_on(async {
                let tasks: Vec<_> = (0..16u64)
                    .map(|t| {
                        let s = s.clone();
                        tokio::spawn(async move {
                            let mut mine = Vec::new();
                            for i in 0..10_000u64 {
                                let r = rec(crash * 1_000_000 + t * 100_000 + i);
                                match s.append_durable(&[&r]).await {
                                    Ok(ix) => mine.push((ix, r)),
                                    // The failure reaches every waiting task.
                                    Err(_) => break,
                                }
                            }
                            mine
                        })
                    })
                    .collect();
                let mut got = Vec::new();
                for t in tasks {
                    got.extend(t.await.unwrap());
                }
                got
            });
            acked.extend(got);
            drop(s);
            sim.power_loss(seed);
        }
        let s = FileStore::open(storage.clone(), writer(64)).unwrap();
        for (i, r) in &acked {
            assert_eq!(&s.read(*i).unwrap(), r);
        }
        s.verify_storage().unwrap();
    }
}

#[test]
fn power_loss_keeps_every_acknowledged_append() {
    for round in 0..(30 * scale()) {
        let sim = SimStorage::new();
        let storage: Arc<dyn Storage> = Arc::new(sim.clone());
        let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ round;
        for crash in 0..4u64 {
            let s = Arc::new(FileStore::open(storage.clone(), writer(64)).unwrap());
            for (i, r) in &acked {
                assert_eq!(&s.read(*i).unwrap(), r, "round {round} crash {crash}");
            }
            s.verify_storage().unwrap();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            sim.fail_after(20 + (seed >> 33) % 400);
            let threads: Vec<_> = (0..4u64)
                .map(|t| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let mut mine = Vec::new();
                        for i in 0..10_000u64 {
                            let r = rec(crash * 1_000_000 + t * 100_000 + i);
                            match s.append(&r) {
                                Ok(ix) => mine.push((ix, r)),
                                Err(_) => break,
                            }
                        }
                        mine
                    })
                })
                .collect();
            for t in threads {
                acked.extend(t.join().unwrap());
            }
            drop(s);
            sim.power_loss(seed);
        }
        let s = FileStore::open(storage.clone(), writer(64)).unwrap();
        for (i, r) in &acked {
            assert_eq!(&s.read(*i).unwrap(), r);
        }
        if round < 3 {
            eprintln!(
                "round {round}: {} acknowledged appends survived 4 power losses",
                acked.len()
            );
        }
        s.verify_storage().unwrap();
    }
}

fn build(dir: &std::path::Path, n: u64) -> SigningKey {
    let key = SigningKey::from_seed(&[5; 32]);
    let s = FileStore::open(Arc::new(DirStorage::new(dir)), writer(64)).unwrap();
    let log = Log::new(s, SigningKey::from_seed(&[5; 32]));
    for i in 0..n {
        let e = Event::new(
            tds_core::Timestamp::from_millis(i),
            key.id(),
            EventBody::Annotation {
                text: Annotation::new(&format!("event {i}")).unwrap(),
            },
        );
        log.append(&e).unwrap();
        if i == n / 2 {
            log.checkpoint().unwrap();
        }
    }
    log.checkpoint().unwrap();
    key
}

fn verify_dir(dir: &std::path::Path, key: &SigningKey) -> Result<(), String> {
    let s = FileStore::open(Arc::new(DirStorage::new(dir)), OpenOptions::reader())
        .map_err(|e| e.to_string())?;
    Log::new(
        s,
        SigningKey::from_seed(&key.public_key().as_bytes().map(|_| 5)),
    )
    .verify()
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[test]
fn tampering_is_named() {
    let cases: &[(&str, u64, &str)] = &[
        ("events", 4096 + 20, "events"),
        ("events", 4096 + 6000, "events"),
        ("level-00", 32 * 10 + 3, "level-00"),
        ("level-03", 32 * 2 + 1, "level-03"),
        ("level-07", 5, "level-07"),
        ("index", 8 * 20, "index"),
        ("tiles", 32 * 40 + 7, "tiles"),
        ("checkpoints", 30, "checkpoint"),
    ];
    for (file, off, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let key = build(dir.path(), 300);
        verify_dir(dir.path(), &key).unwrap();
        let p = dir.path().join(file);
        let mut b = std::fs::read(&p).unwrap();
        b[*off as usize] ^= 0x20;
        std::fs::write(&p, &b).unwrap();
        let err = verify_dir(dir.path(), &key).unwrap_err();
        assert!(err.contains(want), "{file}@{off}: {err}");
    }
}

#[test]
fn torn_tail_is_cut_but_committed_damage_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let st: Arc<dyn Storage> = Arc::new(DirStorage::new(dir.path()));
    {
        let s = FileStore::open(st.clone(), writer(1 << 20)).unwrap();
        for i in 0..100 {
            s.append(&rec(i)).unwrap();
        }
    }
    let p = dir.path().join("events");
    let mut b = std::fs::read(&p).unwrap();
    // Find the end: the first zero length after the header.
    let mut off = 4096usize;
    loop {
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        off += 12 + len;
    }
    let end = off;
    // A torn record after the end: cut, reported.
    b[end..end + 4].copy_from_slice(&40u32.to_le_bytes());
    b[end + 12] = 7;
    std::fs::write(&p, &b).unwrap();
    {
        let s = FileStore::open(st.clone(), writer(1 << 20)).unwrap();
        assert_eq!(s.size(), 100);
        assert!(s.recovery().torn_tail_bytes > 0);
        assert_eq!(s.append(&rec(100)).unwrap(), 100);
    }
    // Damage inside the committed part: reported, not cut.
    let mut b = std::fs::read(&p).unwrap();
    b[4096 + 12 * 50 + 3000] ^= 1;
    std::fs::write(&p, &b).unwrap();
    let err = FileStore::open(st.clone(), writer(1 << 20))
        .err()
        .expect("corruption must be reported");
    assert!(err.to_string().contains("committed"), "{err}");
}

/// Storage whose `sync_data` panics once armed: a bug in a `Storage` implementation.
struct PanickyStorage {
    inner: SimStorage,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

struct PanickyFile {
    inner: Arc<dyn tds_provenance::storage::StorageFile>,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl tds_provenance::storage::StorageFile for PanickyFile {
    fn read_exact_at(&self, b: &mut [u8], o: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(b, o)
    }
    fn write_all_at(&self, b: &[u8], o: u64) -> std::io::Result<()> {
        self.inner.write_all_at(b, o)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("a storage bug in sync_data (expected by the test)");
        }
        self.inner.sync_data()
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, l: u64) -> std::io::Result<()> {
        self.inner.set_len(l)
    }
}

impl Storage for PanickyStorage {
    fn open(
        &self,
        name: &str,
        write: bool,
    ) -> std::io::Result<Arc<dyn tds_provenance::storage::StorageFile>> {
        Ok(Arc::new(PanickyFile {
            inner: self.inner.open(name, write)?,
            armed: self.armed.clone(),
        }))
    }
    fn exists(&self, name: &str) -> bool {
        self.inner.exists(name)
    }
    fn lock(&self) -> std::io::Result<Box<dyn Send + Sync>> {
        self.inner.lock()
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        self.inner.sync_dir()
    }
}

/// Runs `f` on another thread and returns its result; fails the test if it has not
/// finished after a minute (a liveness check: the operation must not hang).
fn finishes<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("hung after a panic in the committer")
}

/// A panic in the committer (from the storage) fails the store: thread and task appenders
/// get an error instead of waiting forever, later appends are refused, and dropping the
/// store returns.
#[test]
fn a_panic_in_the_committer_fails_the_store_instead_of_hanging() {
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storage = Arc::new(PanickyStorage {
        inner: SimStorage::new(),
        armed: armed.clone(),
    });
    let s = Arc::new(FileStore::open(storage, writer(64)).unwrap());
    s.append(b"before").unwrap();
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let s2 = s.clone();
    let r = finishes(move || s2.append(b"during"));
    assert!(r.unwrap_err().to_string().contains("panic"));
    let s3 = s.clone();
    let r = finishes(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(s3.append_durable(&[b"async"]))
    });
    assert!(r.is_err());
    assert!(s.append(b"after").is_err());
    assert_eq!(s.size(), 1);
    armed.store(false, std::sync::atomic::Ordering::SeqCst);
    let s = Arc::into_inner(s).unwrap();
    finishes(move || drop(s));
}
