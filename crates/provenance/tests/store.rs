//! File store: group commit, reopen, power loss, tampering, proofs.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use std::sync::Arc;

use tds_core::key::SigningKey;
use tds_core::merkle::{self, MemoryTree};
use tds_provenance::event::{Annotation, Event, EventBody};
use tds_provenance::store::{FileStore, LogStore, MemoryStore, OpenOptions};
use tds_provenance::{DirStorage, Log, SimStorage, Storage};

fn writer(flush: u64) -> OpenOptions {
    OpenOptions::writer().flush_every(flush)
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
        let opts = if write {
            OpenOptions::writer()
        } else {
            OpenOptions::reader()
        };
        let s = FileStore::open(st.clone(), opts.flush_every(64)).unwrap();
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
    let sim = SimStorage::new();
    let s = Arc::new(FileStore::open(Arc::new(sim.clone()), writer(256)).unwrap());
    let syncs_before = sim.syncs("events");
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
    // Counted, not inferred: 3,200 appends from 16 threads took fewer syncs of the events
    // file than appends (each batch is one sync; every 256 entries a flush adds one).
    let syncs = sim.syncs("events") - syncs_before;
    eprintln!("3200 appends from 16 threads: {syncs} syncs of events");
    assert!(syncs < 3200, "{syncs} syncs for 3200 appends: none shared");
    for (i, r) in &all {
        assert_eq!(&s.read(*i).unwrap(), r);
    }
    s.verify_storage().unwrap();
}

#[test]
fn async_appends_share_syncs() {
    let sim = SimStorage::new();
    let s = Arc::new(FileStore::open(Arc::new(sim.clone()), writer(256)).unwrap());
    let syncs_before = sim.syncs("events");
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
    let syncs = sim.syncs("events") - syncs_before;
    eprintln!("3200 two-record appends from 32 tasks: {syncs} syncs of events");
    assert!(syncs < 3200, "{syncs} syncs for 3200 appends: none shared");
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
        FileStore::open(Arc::new(sim.clone()), writer(256)).unwrap(),
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
        let mut per_crash: Vec<usize> = Vec::new();
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
            per_crash.push(got.len());
            acked.extend(got);
            drop(s);
            sim.power_loss(seed);
        }
        assert_acknowledged(round, &per_crash, &acked, storage.clone());
    }
}

/// Every crash of a round acknowledged a counted number of appends, their total is not
/// zero (so the round tested something), each index was acknowledged once, and after the
/// last power loss the log holds at least that many, each with its bytes.
fn assert_acknowledged(
    round: u64,
    per_crash: &[usize],
    acked: &[(u64, Vec<u8>)],
    storage: Arc<dyn Storage>,
) {
    assert_eq!(per_crash.iter().sum::<usize>(), acked.len());
    assert!(
        !acked.is_empty(),
        "round {round}: no append acknowledged before any crash {per_crash:?}"
    );
    let mut idx: Vec<u64> = acked.iter().map(|(i, _)| *i).collect();
    idx.sort_unstable();
    idx.dedup();
    assert_eq!(
        idx.len(),
        acked.len(),
        "round {round}: an index acknowledged twice"
    );
    let s = FileStore::open(storage, writer(64)).unwrap();
    assert!(
        s.size() > *idx.last().unwrap(),
        "round {round}: size {} but {} acknowledged",
        s.size(),
        acked.len()
    );
    for (i, r) in acked {
        assert_eq!(&s.read(*i).unwrap(), r);
    }
    if round < 3 {
        eprintln!("round {round}: acknowledged per crash {per_crash:?}, all survived");
    }
    s.verify_storage().unwrap();
}

#[test]
fn power_loss_keeps_every_acknowledged_append() {
    for round in 0..(30 * scale()) {
        let sim = SimStorage::new();
        let storage: Arc<dyn Storage> = Arc::new(sim.clone());
        let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut per_crash: Vec<usize> = Vec::new();
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
            let mut got = Vec::new();
            for t in threads {
                got.extend(t.join().unwrap());
            }
            per_crash.push(got.len());
            acked.extend(got);
            drop(s);
            sim.power_loss(seed);
        }
        assert_acknowledged(round, &per_crash, &acked, storage.clone());
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

// ---------------------------------------------------------------------------------------
// Red-team finding 7: a forged commit marker (its checksum is unkeyed, so anyone can
// recompute it) must neither make a reader allocate what it claims nor make a writer cut
// acknowledged records.

/// The bytes of a commit-marker slot, as `spec/provenance.md` §2 defines them.
fn marker(seq: u64, ce: u64, cb: u64, de: u64, db: u64) -> Vec<u8> {
    let mut b = b"TDSLOG01".to_vec();
    for v in [seq, ce, cb, de, db] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let sum = tds_core::Hash256::sha256(&b);
    b.extend_from_slice(&sum.as_bytes()[..8]);
    b
}

/// Writes `slot` where its sequence number puts it.
fn put_marker(events: &mut [u8], seq: u64, slot: &[u8]) {
    let at = if seq.is_multiple_of(2) { 0 } else { 512 };
    events[at..at + slot.len()].copy_from_slice(slot);
}

/// `len ‖ check ‖ payload` of event record `index`.
fn record_bytes(index: u64, payload: &[u8]) -> Vec<u8> {
    let leaf = merkle::leaf_hash(payload);
    let mut m = b"tds/log-record/v1\0".to_vec();
    m.extend_from_slice(&index.to_be_bytes());
    m.extend_from_slice(leaf.as_bytes());
    let check = tds_core::Hash256::sha256(&m);
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&check.as_bytes()[..8]);
    out.extend_from_slice(payload);
    out
}

/// Offsets of the record boundaries of an events file: where each record starts, then
/// where the last ends.
fn boundaries(events: &[u8]) -> Vec<u64> {
    let mut out = vec![4096u64];
    let mut off = 4096usize;
    loop {
        let len = u32::from_le_bytes(events[off..off + 4].try_into().unwrap()) as usize;
        if len == 0 {
            return out;
        }
        off += 12 + len;
        out.push(off as u64);
    }
}

/// The largest sequence number of the two slots.
fn max_seq(events: &[u8]) -> u64 {
    [0usize, 512]
        .iter()
        .map(|&at| u64::from_le_bytes(events[at + 8..at + 16].try_into().unwrap()))
        .max()
        .unwrap()
}

/// A file that claims a length and reads as zeros past its real bytes, with some bytes
/// patched in: what a sparse file grown with `truncate -s` looks like, at no cost here.
struct SparseFile {
    inner: Arc<dyn tds_provenance::storage::StorageFile>,
    len: u64,
    patches: Patches,
}

impl tds_provenance::storage::StorageFile for SparseFile {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        if off + buf.len() as u64 > self.len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.fill(0);
        let real = self.inner.len()?;
        if off < real {
            let n = ((real - off) as usize).min(buf.len());
            self.inner.read_exact_at(&mut buf[..n], off)?;
        }
        for (at, bytes) in &self.patches {
            for (k, b) in bytes.iter().enumerate() {
                let p = at + k as u64;
                if p >= off && p < off + buf.len() as u64 {
                    buf[(p - off) as usize] = *b;
                }
            }
        }
        Ok(())
    }
    fn write_all_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
        Err(std::io::Error::other("read-only in this test"))
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.len)
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Err(std::io::Error::other("read-only in this test"))
    }
}

/// Bytes patched into a file: (offset, bytes).
type Patches = Vec<(u64, Vec<u8>)>;

/// A log directory some of whose files are [`SparseFile`]s: name -> (length, patches).
struct SparseStorage {
    inner: SimStorage,
    files: std::collections::HashMap<String, (u64, Patches)>,
}

impl Storage for SparseStorage {
    fn open(
        &self,
        name: &str,
        write: bool,
    ) -> std::io::Result<Arc<dyn tds_provenance::storage::StorageFile>> {
        let inner = self
            .inner
            .open(name, write || self.files.contains_key(name))?;
        Ok(match self.files.get(name) {
            Some((len, patches)) => Arc::new(SparseFile {
                inner,
                len: *len,
                patches: patches.clone(),
            }),
            None => inner,
        })
    }
    fn exists(&self, name: &str) -> bool {
        self.files.contains_key(name) || self.inner.exists(name)
    }
    fn lock(&self) -> std::io::Result<Box<dyn Send + Sync>> {
        self.inner.lock()
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Peak resident memory of this process, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A genuine log of 300 records (256 of them in the derived files) in simulated storage.
fn genuine_log() -> (SimStorage, Vec<Vec<u8>>) {
    let sim = SimStorage::new();
    let s = FileStore::open(Arc::new(sim.clone()), writer(64)).unwrap();
    let recs: Vec<Vec<u8>> = (0..300).map(rec).collect();
    for r in &recs {
        s.append(r).unwrap();
    }
    s.flush().unwrap();
    drop(s);
    (sim, recs)
}

/// A marker claiming 2^34 entries over sparse files (the red team's setting, where the
/// reader used to allocate the upper tree levels up front and abort) is refused with a
/// typed error, without the memory it claims: whether the claimed derived point fails to
/// check against the index and the records, or is forged to pass that and the level
/// files hold only zeros where hashes should be.
#[test]
fn red_team_7_a_marker_claiming_a_huge_log_is_refused_before_allocating() {
    let d: u64 = 1 << 34;
    let db = 4096 + 13 * d;
    for forge_derived_point in [false, true] {
        let (sim, _) = genuine_log();
        let mut events = sim.read_file("events").unwrap();
        let seq = max_seq(&events) + 1;
        put_marker(&mut events, seq, &marker(seq, d, db, d, db));
        let mut files = std::collections::HashMap::new();
        let mut ev_patches = vec![(0u64, events[..4096].to_vec())];
        let mut idx_patches = Vec::new();
        if forge_derived_point {
            // Record d-1, one byte long, ending exactly at the claimed derived point,
            // and the index entry pointing at it.
            let at = db - 13;
            ev_patches.push((at, record_bytes(d - 1, b"x")));
            idx_patches.push(((d - 1) * 8, at.to_le_bytes().to_vec()));
        }
        files.insert("events".to_owned(), (db + 8 * 1024 * 1024, ev_patches));
        files.insert("index".to_owned(), (d * 8, idx_patches));
        files.insert("tiles".to_owned(), (d / 16 * 960, Vec::new()));
        for l in 0..64 {
            if d >> l == 0 {
                break;
            }
            files.insert(format!("level-{l:02}"), ((d >> l) * 32, Vec::new()));
        }
        let storage: Arc<dyn Storage> = Arc::new(SparseStorage {
            inner: sim.clone(),
            files,
        });
        // A writer is refused the same way, before it writes anything (the sparse files
        // refuse writes, which would show as an I/O error instead).
        for opts in [OpenOptions::reader(), OpenOptions::writer()] {
            let before = peak_rss();
            let err = FileStore::open(storage.clone(), opts)
                .err()
                .expect("a forged marker must be refused");
            let grew = peak_rss().saturating_sub(before);
            let msg = err.to_string();
            if forge_derived_point {
                assert!(
                    msg.contains("level-04") && msg.contains("never written"),
                    "{msg}"
                );
            } else {
                assert!(
                    msg.contains("commit marker") && msg.contains("nothing was cut"),
                    "{msg}"
                );
            }
            // The level files claim 2^34 leaves: loading level 4 up front would take 32 GiB.
            assert!(grew < 256 << 20, "peak memory grew by {grew} bytes");
        }
    }
}

/// Forged markers whose checksums are right cannot make a writer zero acknowledged
/// records: each either opens to the whole log, records intact and no torn tail, or is
/// refused with the events file untouched. The first is the red team's (zero entries
/// ending inside the first record, which made a writer zero every record as a torn tail
/// and sign a checkpoint of zero leaves).
#[test]
fn red_team_7_a_forged_marker_never_makes_a_writer_cut_records() {
    let (sim0, recs) = genuine_log();
    let events0 = sim0.read_file("events").unwrap();
    let b = boundaries(&events0);
    assert_eq!(b.len(), 301);
    let cases: Vec<(&str, u64, u64, u64, u64)> = vec![
        ("zero entries ending inside record 0", 0, 4097, 0, 4097),
        (
            "zero derived entries at a later record",
            300,
            b[300],
            0,
            b[100],
        ),
        (
            "derived count and bytes that disagree",
            300,
            b[300],
            256,
            b[100],
        ),
        (
            "derived bytes inside a record",
            300,
            b[300],
            256,
            b[256] + 5,
        ),
        (
            "committed count and bytes that disagree",
            200,
            b[150],
            64,
            b[64],
        ),
        ("nothing committed, all bytes claimed", 0, b[300], 0, 4096),
        ("fewer committed than there are", 100, b[100], 64, b[64]),
    ];
    for (name, ce, cb, de, db) in cases {
        let (sim, _) = genuine_log();
        let mut events = sim.read_file("events").unwrap();
        let seq = max_seq(&events) + 1;
        put_marker(&mut events, seq, &marker(seq, ce, cb, de, db));
        sim.write_file("events", &events);
        let opened = FileStore::open(Arc::new(sim.clone()), writer(64));
        match opened {
            Ok(s) => {
                assert_eq!(s.size(), 300, "{name}");
                assert_eq!(s.recovery().torn_tail_bytes, 0, "{name}");
                for (i, r) in recs.iter().enumerate() {
                    assert_eq!(&s.read(i as u64).unwrap(), r, "{name}");
                }
                s.verify_storage().unwrap();
            }
            Err(e) => {
                assert!(e.to_string().contains("corrupt"), "{name}: {e}");
                let after = sim.read_file("events").unwrap();
                assert_eq!(after[4096..], events[4096..], "{name}: records changed");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The index by agreement and asset id, and verification of any store.

fn id(b: u8) -> tds_core::Hash256 {
    tds_core::Hash256::from_bytes([b; 32])
}

/// Events about agreements 1 and 2 and assets 3 and 4 among annotations.
fn indexed_events(actor: tds_core::Hash256, n: u64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let body = match i % 10 {
                1 => EventBody::AssetPublished {
                    asset: id(3 + (i % 20 == 1) as u8),
                    object: None,
                },
                3 => EventBody::AgreementConcluded {
                    agreement: id(1 + (i % 20 == 3) as u8),
                    negotiation: id(9),
                    provider: actor,
                    consumer: id(8),
                    object: None,
                },
                6 => EventBody::TransferStarted {
                    transfer: id(7),
                    agreement: id(1),
                    asset: id(3),
                },
                8 => EventBody::AgreementExpired { agreement: id(2) },
                _ => EventBody::Annotation {
                    text: Annotation::new(&format!("event {i}")).unwrap(),
                },
            };
            Event::new(tds_core::Timestamp::from_millis(i), actor, body)
        })
        .collect()
}

/// What the index must answer, by reading every event.
fn naming(events: &[Event], x: &tds_core::Hash256) -> Vec<u64> {
    (0..events.len() as u64)
        .filter(|i| {
            let e = &events[*i as usize];
            e.agreement() == Some(x)
                || matches!(&e.body,
                    EventBody::AssetPublished { asset, .. }
                    | EventBody::TransferStarted { asset, .. } if asset == x)
        })
        .collect()
}

/// A store that counts reads and can serve one record tampered with.
struct Watched<S> {
    inner: S,
    reads: std::sync::atomic::AtomicU64,
    tamper: Option<u64>,
}

impl<S: tds_core::merkle::NodeSource> tds_core::merkle::NodeSource for Watched<S> {
    fn perfect(&self, level: u32, index: u64) -> Result<tds_core::Hash256, merkle::MerkleError> {
        self.inner.perfect(level, index)
    }
}

impl<S: LogStore> LogStore for Watched<S> {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn append(&self, record: &[u8]) -> Result<u64, tds_provenance::store::StoreError> {
        self.inner.append(record)
    }
    fn read(&self, index: u64) -> Result<Vec<u8>, tds_provenance::store::StoreError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut r = self.inner.read(index)?;
        if self.tamper == Some(index) {
            r[0] ^= 1;
        }
        Ok(r)
    }
    fn add_checkpoint(&self, note: &[u8]) -> Result<(), tds_provenance::store::StoreError> {
        self.inner.add_checkpoint(note)
    }
    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, tds_provenance::store::StoreError> {
        self.inner.checkpoints()
    }
    fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<tds_core::Hash256>, merkle::MerkleError> {
        self.inner.inclusion_proof(index, size)
    }
    fn note_ids(&self, index: u64, ids: &[tds_core::Hash256]) {
        self.inner.note_ids(index, ids)
    }
    fn entries_naming(
        &self,
        id: &tds_core::Hash256,
    ) -> Result<Option<Vec<u64>>, tds_provenance::store::StoreError> {
        self.inner.entries_naming(id)
    }
}

fn watched<S>(inner: S) -> Watched<S> {
    Watched {
        inner,
        reads: std::sync::atomic::AtomicU64::new(0),
        tamper: None,
    }
}

/// `Log::events_for` answers from the index: in a file store (kept in `ids`, caught up
/// from events appended around `Log`, read by readers, recomputed when damaged) and in
/// memory; evidence export reads only the events it exports.
#[test]
fn events_for_uses_the_index_and_export_reads_only_what_it_exports() {
    let key = SigningKey::from_seed(&[4; 32]);
    let actor = key.id();
    let events = indexed_events(actor, 1000);
    let sim = SimStorage::new();
    {
        let log = Log::new(
            watched(FileStore::open(Arc::new(sim.clone()), writer(64)).unwrap()),
            SigningKey::from_seed(&[4; 32]),
        );
        for e in &events[..990] {
            log.append(e).unwrap();
        }
        // Appended around `Log`: the index learns of them from the events.
        for e in &events[990..] {
            log.store().append(&e.encode().unwrap()).unwrap();
        }
        for x in 1..=4 {
            assert_eq!(
                log.events_for(&id(x)).unwrap(),
                naming(&events, &id(x)),
                "id {x}"
            );
        }
        assert_eq!(log.events_for(&id(99)).unwrap(), Vec::<u64>::new());
        let note = log.checkpoint().unwrap();
        log.store()
            .reads
            .store(0, std::sync::atomic::Ordering::SeqCst);
        let b = tds_provenance::evidence::export(&log, &id(1), &note, vec![]).unwrap();
        let want: Vec<u64> = {
            let mut v = naming(&events, &id(1));
            v.extend(naming(&events, &id(3)).into_iter().filter(|i| i % 10 == 1));
            v.sort_unstable();
            v.dedup();
            v
        };
        let got: Vec<u64> = b.events.iter().map(|e| e.index).collect();
        assert_eq!(got, want);
        let reads = log.store().reads.load(std::sync::atomic::Ordering::SeqCst);
        // Each exported event once, and the transfer events once more (they name the
        // asset too); never the 1000-entry log.
        assert!(
            reads <= 2 * want.len() as u64,
            "{reads} reads for {} events",
            want.len()
        );
    }
    assert!(!sim.read_file("ids").unwrap().is_empty());
    // A reader answers the same from the file.
    let reader = Log::new(
        FileStore::open(Arc::new(sim.clone()), OpenOptions::reader()).unwrap(),
        SigningKey::from_seed(&[4; 32]),
    );
    for x in 1..=4 {
        assert_eq!(reader.events_for(&id(x)).unwrap(), naming(&events, &id(x)));
    }
    drop(reader);
    // Damage in the file: from there on it is recomputed from the events.
    let ids_len = sim.read_file("ids").unwrap().len() as u64;
    assert!(sim.flip_byte("ids", ids_len / 2));
    for opts in [OpenOptions::reader(), OpenOptions::writer()] {
        let log = Log::new(
            FileStore::open(Arc::new(sim.clone()), opts).unwrap(),
            SigningKey::from_seed(&[4; 32]),
        );
        for x in 1..=4 {
            assert_eq!(log.events_for(&id(x)).unwrap(), naming(&events, &id(x)));
        }
    }
    // In memory, the same answers.
    let mem = Log::new(MemoryStore::new(), SigningKey::from_seed(&[4; 32]));
    for e in &events {
        mem.append(e).unwrap();
    }
    for x in 1..=4 {
        assert_eq!(mem.events_for(&id(x)).unwrap(), naming(&events, &id(x)));
    }
}

/// `Log::verify` checks any store: a memory store verifies, and one serving a record
/// that does not match its leaf hash fails, naming the entry.
#[test]
fn log_verify_works_for_every_store() {
    let key = SigningKey::from_seed(&[6; 32]);
    let events = indexed_events(key.id(), 300);
    let mem = MemoryStore::new();
    for e in &events {
        mem.append(&e.encode().unwrap()).unwrap();
    }
    let log = Log::new(mem, SigningKey::from_seed(&[6; 32]));
    log.checkpoint().unwrap();
    let r = log.verify().unwrap();
    assert_eq!(r.storage.entries, 300);
    assert_eq!(r.storage.interior, 150 + 75 + 37 + 18 + 9 + 4 + 2 + 1);
    let mut bad = watched(MemoryStore::new());
    for e in &events {
        bad.append(&e.encode().unwrap()).unwrap();
    }
    bad.tamper = Some(123);
    let err = Log::new(bad, SigningKey::from_seed(&[6; 32]))
        .verify()
        .unwrap_err()
        .to_string();
    assert!(err.contains("leaf hash 123"), "{err}");
}

/// A cut taken while threads append, copied while they go on: the copy holds exactly the
/// cut's entries and checkpoints, verifies, has no preallocated zeros, and takes appends.
#[test]
fn a_cut_copied_while_appends_go_on_is_exactly_that_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let src_dir = dir.path().join("src");
    std::fs::create_dir(&src_dir).unwrap();
    let key = SigningKey::from_seed(&[5; 32]);
    let s = FileStore::open(Arc::new(DirStorage::new(&src_dir)), writer(64)).unwrap();
    let log = Arc::new(Log::new(s, SigningKey::from_seed(&[5; 32])));
    let append = |log: &Log<FileStore>, i: u64| {
        let e = Event::new(
            tds_core::Timestamp::from_millis(i),
            key.id(),
            EventBody::Annotation {
                text: Annotation::new(&format!("event {i}")).unwrap(),
            },
        );
        log.append(&e).unwrap();
    };
    for i in 0..300 {
        append(&log, i);
    }
    log.checkpoint().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let (log, stop) = (log.clone(), stop.clone());
            let key = SigningKey::from_seed(&[5; 32]);
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let e = Event::new(
                        tds_core::Timestamp::from_millis(1_000_000 + t * 1_000_000 + i),
                        key.id(),
                        EventBody::Annotation {
                            text: Annotation::new(&format!("writer {t} event {i}")).unwrap(),
                        },
                    );
                    log.append(&e).unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    while log.size() < 600 {
        std::thread::yield_now();
    }
    // What the callback sees is what the cut holds: no append lands while it runs.
    let mut seen = None;
    let cut = log.store().cut(&mut || seen = Some(log.size())).unwrap();
    assert_eq!(seen, Some(cut.size));
    assert_eq!(cut.checkpoints.len(), 1);
    let root = log.root(cut.size).unwrap();
    let copy_dir = dir.path().join("copy");
    std::fs::create_dir(&copy_dir).unwrap();
    let copied =
        tds_provenance::store::copy_cut(log.store(), &cut, Arc::new(DirStorage::new(&copy_dir)))
            .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(copied, cut.size);
    assert!(log.size() >= cut.size);
    // No zeros after the last record are archived.
    let events = std::fs::read(copy_dir.join("events")).unwrap();
    assert_ne!(
        events.last(),
        Some(&0),
        "preallocated zeros left in the copy"
    );
    verify_dir(&copy_dir, &key).unwrap();
    {
        let s =
            FileStore::open(Arc::new(DirStorage::new(&copy_dir)), OpenOptions::reader()).unwrap();
        assert_eq!(s.size(), cut.size);
        assert_eq!(s.checkpoints().unwrap(), cut.checkpoints);
        let copy = Log::new(s, SigningKey::from_seed(&[5; 32]));
        assert_eq!(copy.root(cut.size).unwrap(), root);
    }
    // A writer reopens the copy and appends after the cut.
    let s = FileStore::open(Arc::new(DirStorage::new(&copy_dir)), writer(64)).unwrap();
    assert_eq!(s.append(&rec(1)).unwrap(), cut.size);
    drop(s);
    // A second copy into a directory holding a log is refused.
    let again =
        tds_provenance::store::copy_cut(log.store(), &cut, Arc::new(DirStorage::new(&copy_dir)));
    assert!(again.is_err());
}
