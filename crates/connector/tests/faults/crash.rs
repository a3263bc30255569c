//! A node under load killed with SIGKILL at random moments (20 times; 200 with
//! `TDS_TEST_SCALE=full`), across real processes.
//!
//! The node runs in a child: this test binary run again with [`NODE_ENV`] set and the
//! filter selecting [`crash_node`] (which does nothing when the variable is absent). It
//! keeps three loads going until it is killed: log annotations, negotiations with the
//! hub (this process's connector) each followed by a fetch of the hub's asset, and, as a
//! provider, the hub's negotiations and fetches of the node's own asset. It prints one
//! flushed line per operation that returned `Ok` (what it acknowledged), and one per
//! chunk it writes.
//!
//! After each kill the node is restarted here, in-process, on its data directory, and:
//! the log verifies and extends the log seen at the previous restart (same root over the
//! old size); every acknowledged annotation is at its index; every agreement the node
//! acknowledged (as consumer) and every agreement the hub holds from it (as provider) is
//! in its store and in its log; every agreement record has its `agreement_concluded`
//! event and every such event its record; every stored resume state names only chunks
//! that are on disk with the asset's bytes; every acknowledged fetch is complete, logged
//! and byte-identical. The next incarnation resumes the fetch the kill interrupted:
//! it writes none of the chunks the stored state marks verified, and its receipt
//! resumes exactly those bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tds_connector::records::FetchRecord;
use tds_connector::store::Table;
use tds_connector::{Connector, ConnectorConfig, ConnectorEvent, FetchOptions};
use tds_core::hash::Hash256;
use tds_core::time::SystemClock;
use tds_core::{Clock, Signer, SigningKey};
use tds_identity::{Sector, TrustStore};
use tds_manifest::content::VerifierState;
use tds_provenance::event::{Annotation, Event, EventBody};

use crate::common::*;
use crate::relay::{seed, Rng};

/// The child's switch: the directory with its inputs and its data directory `node/`.
const NODE_ENV: &str = "TDS_CRASH_NODE";
/// The hub's address (child input).
const HUB_ENV: &str = "TDS_CRASH_HUB";
/// The node's listening address (child input; the same in every incarnation).
const LISTEN_ENV: &str = "TDS_CRASH_LISTEN";
/// The incarnation number (child input).
const GEN_ENV: &str = "TDS_CRASH_GEN";

const HUB_SEED: u8 = 51;
const NODE_SEED: u8 = 52;
const CHUNK: u64 = 256 << 10;
const OPEN: &str = "policy set;\n\npermit use\n  when purpose isA research;\n";

/// Both sides notice a dead peer within a second.
fn config(fetch_attempts: u32, connect_timeout: Duration) -> ConnectorConfig {
    ConnectorConfig {
        transport: tds_transport::TransportConfig {
            idle_timeout: Duration::from_secs(1),
            keep_alive: Duration::from_millis(250),
            ..tds_transport::TransportConfig::default()
        },
        connect_timeout,
        fetch_attempts,
        sync_every: CHUNK,
        ..ConnectorConfig::default()
    }
}

fn node_config() -> ConnectorConfig {
    config(5, Duration::from_secs(2))
}

fn say(line: &str) -> Res {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

fn hex_of(h: &Hash256) -> String {
    hex::encode(h.as_bytes())
}

// ---- the child ----

/// The node of `a_sigkilled_node_keeps_what_it_acknowledged_and_resumes`; killed by it.
#[test]
fn crash_node() -> Res {
    let Some(dir) = std::env::var_os(NODE_ENV) else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(node_main(Path::new(&dir)))
}

fn node_builder(
    dir: &Path,
    credential: Vec<u8>,
    crl: Vec<u8>,
) -> Res<tds_connector::ConnectorBuilder> {
    let authority: [u8; 32] = std::fs::read(dir.join("authority"))?
        .try_into()
        .map_err(|_| "authority key length")?;
    let mut trust = TrustStore::new();
    trust.add_authority(tds_core::PublicKey::from_bytes(&authority)?);
    trust.add_revocation_list(&crl, SystemClock.now())?;
    Ok(Connector::builder(
        Arc::new(SigningKey::from_seed(&[NODE_SEED; 32])),
        credential,
        trust,
    )
    .revocation_list(crl)
    .config(node_config())
    .data_dir(dir.join("node")))
}

async fn node_main(dir: &Path) -> Res {
    let hub: std::net::SocketAddr = std::env::var(HUB_ENV)?.parse()?;
    let listen: std::net::SocketAddr = std::env::var(LISTEN_ENV)?.parse()?;
    let generation: u64 = std::env::var(GEN_ENV)?.parse()?;
    let node = node_builder(
        dir,
        std::fs::read(dir.join("credential"))?,
        std::fs::read(dir.join("crl"))?,
    )?
    .listen(listen)
    .start()
    .await?;
    say("ready")?;
    let offer = std::fs::read(dir.join("hub-offer"))?;
    let annotating = tokio::spawn(annotate_loop(node.clone(), generation));
    let fetching = tokio::spawn(fetch_loop(node.clone(), hub, offer, dir.join("out")));
    let (a, f) = tokio::join!(annotating, fetching);
    say(&format!("note: the loads ended: {a:?} {f:?}"))?;
    Ok(())
}

async fn annotate_loop(node: Connector, generation: u64) -> Res {
    for n in 0u64.. {
        let text = format!("crash test {generation}.{n}");
        let event = Event::new(
            SystemClock.now(),
            node.id(),
            EventBody::Annotation {
                text: Annotation::new(&text)?,
            },
        );
        match node.log().append_async(&event).await {
            Ok(index) => say(&format!("annotated {index} {text}"))?,
            Err(e) => say(&format!("note: annotate: {e}"))?,
        }
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    Ok(())
}

/// Resumes what an earlier incarnation left unfinished, then negotiates and fetches
/// again and again.
async fn fetch_loop(
    node: Connector,
    hub: std::net::SocketAddr,
    offer: Vec<u8>,
    out: PathBuf,
) -> Res {
    for (agreement, path) in incomplete_fetches(&node)? {
        say(&format!("resuming {}", hex_of(&agreement)))?;
        fetch_one(&node, hub, agreement, path).await?;
    }
    loop {
        match node.negotiate(hub, &offer, None, "research".parse()?).await {
            Ok(a) => {
                let id = a.id();
                say(&format!("agreed {}", hex_of(&id)))?;
                fetch_one(&node, hub, id, out.join(format!("{}.bin", hex_of(&id)))).await?;
            }
            Err(e) => {
                say(&format!("note: negotiate: {e}"))?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Fetches with a sink that prints the index of each chunk it writes.
async fn fetch_one(
    node: &Connector,
    hub: std::net::SocketAddr,
    agreement: Hash256,
    path: PathBuf,
) -> Res {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(&path)?;
    let mut options = FetchOptions::new(path, "research".parse()?);
    options.sink = Some(Arc::new(PrintingSink {
        file,
        agreement: hex_of(&agreement),
    }));
    match node.fetch(hub, &agreement, options).await {
        Ok(r) => say(&format!(
            "fetched {} {} {} {}",
            hex_of(&agreement),
            r.fetched,
            r.resumed,
            r.attempts
        )),
        Err(e) => say(&format!("note: fetch: {e}")),
    }
}

/// The consumer's stored fetches that are not complete: (agreement, output file).
fn incomplete_fetches(c: &Connector) -> Res<Vec<(Hash256, PathBuf)>> {
    let mut v = Vec::new();
    for (key, rec) in c
        .store()
        .scan_prefix_after(Table::Transfers, b"", None, 10_000)?
    {
        let rec: FetchRecord = tds_core::cbor::decode(&rec)?;
        if !rec.complete && !rec.deleted {
            let key: [u8; 32] = key.try_into().map_err(|_| "transfer key length")?;
            v.push((Hash256::from_bytes(key), PathBuf::from(rec.out)));
        }
    }
    Ok(v)
}

/// Writes to a file, printing `chunk <agreement> <index>` as each chunk's first piece
/// lands (pieces of a chunk arrive in order).
struct PrintingSink {
    file: std::fs::File,
    agreement: String,
}

impl tds_connector::DataSink for PrintingSink {
    fn write_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        if offset.is_multiple_of(CHUNK) {
            say(&format!("chunk {} {}", self.agreement, offset / CHUNK))
                .map_err(std::io::Error::other)?;
        }
        self.file.write_all_at(bytes, offset)
    }

    fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

// ---- the parent ----

/// What the children acknowledged and what the checks found, over all incarnations.
#[derive(Default)]
struct Ledger {
    /// Acknowledged annotations: index → text.
    annotations: BTreeMap<u64, String>,
    /// Agreements the node acknowledged as consumer.
    agreed: BTreeSet<Hash256>,
    /// Acknowledged fetches: agreement → (fetched, resumed).
    fetched: HashMap<Hash256, (u64, u64)>,
    /// Fetches checked complete (their files removed).
    done: HashSet<Hash256>,
    /// The log's size and root at the last restart.
    log: Option<(u64, Hash256)>,
    /// Log entries read so far (agreement_concluded and transfer_completed noted).
    scanned: u64,
    concluded: HashSet<Hash256>,
    completed: HashSet<Hash256>,
    /// Counts for the report.
    kills: u64,
    acks_checked: u64,
    resumes: u64,
    resumed_bytes: u64,
    chunks_written: u64,
    notes: u64,
}

/// A stored resume state: its chunk indexes and bytes.
struct Resume {
    chunks: BTreeSet<u64>,
    bytes: u64,
}

fn parse_hash(hex_text: &str) -> Res<Hash256> {
    let b: [u8; 32] = hex::decode(hex_text)?
        .try_into()
        .map_err(|_| "hash length")?;
    Ok(Hash256::from_bytes(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_node_keeps_what_it_acknowledged_and_resumes() -> Res {
    let kills = if full() { 200 } else { 20 };
    let size: usize = if full() { 48 << 20 } else { 16 << 20 };
    let seed = seed();
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut space = Space::new()?;
    let hub_m = space.member(HUB_SEED, Sector::POWER, "CN-SX")?;
    let node_m = space.member(NODE_SEED, Sector::FINANCE, "CN-SX")?;
    let node_id = node_m.key.key_id();
    let dir = tempfile::tempdir()?;
    let hub = connector_with(
        &space,
        &hub_m,
        Backend::Memory,
        config(1, Duration::from_secs(1)),
        None,
    )
    .await?;
    let hub_addr = hub.local_addr()?;
    let asset = data(size, HUB_SEED);
    let (_, hub_offer) = publish(
        &hub,
        &hub_m,
        dir.path(),
        "hub-asset.bin",
        &asset,
        CHUNK,
        &AssetSpec::default(),
        OPEN,
    )
    .await?;

    // The node's inputs, its address, and its own asset (published once, before the
    // kills, by the node itself started here).
    std::fs::write(dir.path().join("credential"), &node_m.credential)?;
    std::fs::write(dir.path().join("crl"), &space.crl)?;
    std::fs::write(dir.path().join("hub-offer"), &hub_offer)?;
    std::fs::write(
        dir.path().join("authority"),
        space.authority.public_key().as_bytes(),
    )?;
    std::fs::create_dir_all(dir.path().join("out"))?;
    std::fs::create_dir_all(dir.path().join("hub-out"))?;
    let listen = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let node_asset = data(1 << 20, NODE_SEED);
    let node_offer = {
        let node = node_builder(dir.path(), node_m.credential.clone(), space.crl.clone())?
            .listen(listen)
            .start()
            .await?;
        let (_, offer) = publish(
            &node,
            &node_m,
            dir.path(),
            "node-asset.bin",
            &node_asset,
            CHUNK,
            &AssetSpec::default(),
            OPEN,
        )
        .await?;
        node.shutdown().await;
        offer
    };
    released(&dir.path().join("node")).await?;

    // The hub's sessions with the node: a kill is over once they are closed.
    let live = Arc::new(AtomicU64::new(0));
    {
        let mut events = hub.subscribe();
        let live = live.clone();
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                match e {
                    ConnectorEvent::PeerConnected { peer, .. } if peer == node_id => {
                        live.fetch_add(1, SeqCst);
                    }
                    ConnectorEvent::PeerClosed { peer, .. } if peer == node_id => {
                        live.fetch_sub(1, SeqCst);
                    }
                    _ => {}
                }
            }
        });
    }
    // The hub's load on the node: negotiations, and every fourth a fetch.
    let stop = Arc::new(AtomicBool::new(false));
    let hub_acks: Arc<Mutex<Vec<Hash256>>> = Arc::default();
    let hub_fetches = Arc::new(AtomicU64::new(0));
    let hub_load = {
        let (hub, stop, acks, fetches) = (
            hub.clone(),
            stop.clone(),
            hub_acks.clone(),
            hub_fetches.clone(),
        );
        let out = dir.path().join("hub-out");
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                let Ok(purpose) = "research".parse() else {
                    return;
                };
                let agreed = tokio::time::timeout(
                    Duration::from_secs(5),
                    hub.negotiate(listen, &node_offer, None, purpose),
                )
                .await;
                let Ok(Ok(a)) = agreed else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                acks.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(a.id());
                n += 1;
                if n.is_multiple_of(4) {
                    let Ok(purpose) = "research".parse() else {
                        return;
                    };
                    let path = out.join(format!("{n}.bin"));
                    let got = tokio::time::timeout(
                        Duration::from_secs(5),
                        hub.fetch(listen, &a.id(), FetchOptions::new(path.clone(), purpose)),
                    )
                    .await;
                    if matches!(got, Ok(Ok(_))) {
                        fetches.fetch_add(1, SeqCst);
                    }
                    let _ = std::fs::remove_file(path);
                }
            }
        })
    };

    let ctx = |what: String| format!("{what} (seed {seed}; rerun with TDS_FAULT_SEED={seed})");
    let mut ledger = Ledger::default();
    let mut resumable: HashMap<Hash256, Resume> = HashMap::new();
    for generation in 0..kills {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--exact", "crash::crash_node", "--nocapture"])
            .env(NODE_ENV, dir.path())
            .env(HUB_ENV, hub_addr.to_string())
            .env(LISTEN_ENV, listen.to_string())
            .env(GEN_ENV, generation.to_string())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("node.err"))?)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        // Lines before `ready` are the test harness's.
        let mut early = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(l) if l == "ready" => break,
                Ok(l) => early.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    let _ = child.kill();
                    let err = std::fs::read_to_string(dir.path().join("node.err"))?;
                    return Err(ctx(format!(
                        "incarnation {generation} did not start: {early:?} {err}"
                    ))
                    .into());
                }
            }
        }
        // A random moment of its life.
        tokio::time::sleep(Duration::from_millis(30 + rng.below(570))).await;
        child.kill()?; // SIGKILL
        let status = child.wait()?;
        let _ = reader.join();
        let lines: Vec<String> = rx.try_iter().collect();
        assert!(
            !status.success(),
            "{}",
            ctx(format!(
                "incarnation {generation} ended on its own: {lines:?}"
            ))
        );
        ledger.kills += 1;
        take_lines(&mut ledger, &lines, &resumable, size as u64)
            .map_err(|e| ctx(format!("incarnation {generation}: {e}")))?;
        // The hub's sessions with the dead node end at its idle timeout.
        let until = Instant::now() + Duration::from_secs(10);
        while live.load(SeqCst) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let acks: Vec<Hash256> = hub_acks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        resumable = check(
            &space,
            &node_m,
            dir.path(),
            &mut ledger,
            &acks,
            &asset,
            None,
        )
        .await
        .map_err(|e| ctx(format!("after kill {}: {e}", generation + 1)))?;
    }
    stop.store(true, SeqCst);
    let _ = hub_load.await;
    // The last kill's interrupted fetches, finished by the restarted node here.
    let acks: Vec<Hash256> = hub_acks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    check(
        &space,
        &node_m,
        dir.path(),
        &mut ledger,
        &acks,
        &asset,
        Some(hub_addr),
    )
    .await
    .map_err(|e| ctx(format!("at the end: {e}")))?;
    println!(
        "crash (seed {seed}): {} SIGKILLs; acknowledged and checked: {} annotations, {} \
         agreements as consumer, {} as provider, {} fetches ({} checks in all); {} \
         interrupted fetches resumed ({} MiB not fetched again), {} chunks written; the \
         hub fetched from the node {} times; {} notes from the node; {:.1} s",
        ledger.kills,
        ledger.annotations.len(),
        ledger.agreed.len(),
        acks.len(),
        ledger.fetched.len(),
        ledger.acks_checked,
        ledger.resumes,
        ledger.resumed_bytes >> 20,
        ledger.chunks_written,
        hub_fetches.load(SeqCst),
        ledger.notes,
        started.elapsed().as_secs_f64(),
    );
    assert!(ledger.resumes > 0, "{}", ctx("no fetch was resumed".into()));
    hub.shutdown().await;
    Ok(())
}

/// Takes one incarnation's lines into the ledger, checking that it wrote none of the
/// chunks `resumable` marks verified and resumed exactly those bytes.
fn take_lines(
    ledger: &mut Ledger,
    lines: &[String],
    resumable: &HashMap<Hash256, Resume>,
    size: u64,
) -> Res {
    for line in lines {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["annotated", index, text @ ..] => {
                ledger.annotations.insert(index.parse()?, text.join(" "));
            }
            ["agreed", a] => {
                ledger.agreed.insert(parse_hash(a)?);
            }
            ["chunk", a, index] => {
                ledger.chunks_written += 1;
                let (a, index) = (parse_hash(a)?, index.parse::<u64>()?);
                if resumable.get(&a).is_some_and(|r| r.chunks.contains(&index)) {
                    return Err(format!("chunk {index} of {a} was fetched again").into());
                }
            }
            ["fetched", a, fetched, resumed, _attempts] => {
                let a = parse_hash(a)?;
                let (fetched, resumed): (u64, u64) = (fetched.parse()?, resumed.parse()?);
                if let Some(r) = resumable.get(&a) {
                    if resumed != r.bytes || fetched + resumed != size {
                        return Err(format!(
                            "fetch of {a} resumed {resumed} and fetched {fetched} bytes; the \
                             stored state held {}",
                            r.bytes
                        )
                        .into());
                    }
                    if r.bytes > 0 {
                        ledger.resumes += 1;
                        ledger.resumed_bytes += r.bytes;
                    }
                }
                ledger.fetched.insert(a, (fetched, resumed));
            }
            ["resuming", _] => {}
            ["note:", ..] => ledger.notes += 1,
            _ => return Err(format!("unexpected line from the node: {line:?}").into()),
        }
    }
    Ok(())
}

/// Waits until nothing holds the node's store and log (a connector in this process is
/// gone, its threads too).
async fn released(data_dir: &Path) -> Res {
    use tds_provenance::storage::Storage;
    let until = Instant::now() + Duration::from_secs(10);
    let log = tds_provenance::storage::DirStorage::new(&data_dir.join("log"));
    loop {
        let held = tds_connector::store::RedbStore::open(data_dir)
            .map_err(|e| e.to_string())
            .and_then(|s| log.lock().map(|l| (s, l)).map_err(|e| e.to_string()));
        match held {
            Ok(s) => {
                drop(s);
                return Ok(());
            }
            Err(e) if Instant::now() > until => {
                return Err(format!("the node's store stays in use: {e}").into())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Restarts the node here on its data directory and checks what it holds; returns the
/// resume states of its unfinished fetches. `finish`: the hub's address, to resume
/// those fetches here and check their receipts and bytes.
async fn check(
    space: &Space,
    node_m: &Member,
    dir: &Path,
    ledger: &mut Ledger,
    hub_acks: &[Hash256],
    asset: &[u8],
    finish: Option<std::net::SocketAddr>,
) -> Res<HashMap<Hash256, Resume>> {
    let node = node_builder(dir, node_m.credential.clone(), space.crl.clone())?
        .start()
        .await?;
    let r = check_node(&node, ledger, hub_acks, asset, finish).await;
    node.shutdown().await;
    drop(node);
    released(&dir.join("node")).await?;
    r
}

async fn check_node(
    node: &Connector,
    ledger: &mut Ledger,
    hub_acks: &[Hash256],
    asset: &[u8],
    finish: Option<std::net::SocketAddr>,
) -> Res<HashMap<Hash256, Resume>> {
    let log = node.log();
    log.verify()?;
    let size = log.size();
    // The log at the last restart is a prefix of this one.
    if let Some((old, root)) = ledger.log {
        if size < old || log.root(old)? != root {
            return Err(
                format!("the log of size {old} at the last restart is not a prefix").into(),
            );
        }
    }
    ledger.log = Some((size, log.root(size)?));
    // Acknowledged annotations, each at its index (checked once: the prefix check
    // above keeps them).
    for (index, text) in ledger.annotations.range(ledger.scanned..) {
        ledger.acks_checked += 1;
        if *index >= size {
            return Err(
                format!("acknowledged annotation {index} is beyond the log ({size})").into(),
            );
        }
        match log.event(*index)?.body {
            EventBody::Annotation { text: t } if t.as_str() == text => {}
            other => {
                return Err(
                    format!("entry {index} is not the annotation {text:?}: {other:?}").into(),
                )
            }
        }
    }
    // Note the agreements concluded and the transfers completed in the new entries.
    for i in ledger.scanned..size {
        match log.event(i)?.body {
            EventBody::AgreementConcluded { agreement, .. } => {
                ledger.concluded.insert(agreement);
            }
            EventBody::TransferCompleted { agreement, .. } => {
                ledger.completed.insert(agreement);
            }
            _ => {}
        }
    }
    ledger.scanned = size;
    // Agreement records and agreement events, one for one.
    let store = node.store();
    let mut records = HashSet::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = store.scan_prefix_after(Table::Agreements, b"", after.as_deref(), 1000)?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.clone());
        for (k, _) in rows {
            let k: [u8; 32] = k.try_into().map_err(|_| "agreement key length")?;
            records.insert(Hash256::from_bytes(k));
        }
    }
    let unlogged: Vec<_> = records.difference(&ledger.concluded).collect();
    let unstored: Vec<_> = ledger.concluded.difference(&records).collect();
    if !unlogged.is_empty() || !unstored.is_empty() {
        return Err(format!(
            "agreement records without their event: {unlogged:?}; events without their \
             record: {unstored:?}"
        )
        .into());
    }
    // Every agreement acknowledged, as consumer or as provider, is held.
    for a in ledger.agreed.iter().chain(hub_acks) {
        ledger.acks_checked += 1;
        if !records.contains(a) {
            return Err(format!("acknowledged agreement {a} is not held").into());
        }
    }
    // Fetches: stored states name chunks on disk; acknowledged ones are whole and logged.
    let mut resumable = HashMap::new();
    for (k, v) in store.scan_prefix_after(Table::Transfers, b"", None, 10_000)? {
        let k: [u8; 32] = k.try_into().map_err(|_| "transfer key length")?;
        let a = Hash256::from_bytes(k);
        if ledger.done.contains(&a) {
            continue;
        }
        let rec: FetchRecord = tds_core::cbor::decode(&v)?;
        let acked = ledger.fetched.contains_key(&a);
        if acked {
            ledger.acks_checked += 1;
            if !rec.complete || !ledger.completed.contains(&a) {
                return Err(format!(
                    "acknowledged fetch {a}: complete {}, logged {}",
                    rec.complete,
                    ledger.completed.contains(&a)
                )
                .into());
            }
        }
        let out = PathBuf::from(&rec.out);
        let file = std::fs::read(&out).unwrap_or_default();
        if rec.complete {
            if Hash256::sha256(&file) != Hash256::sha256(asset) {
                return Err(format!("fetch {a} is complete but its file differs").into());
            }
            if acked {
                // Checked for good: free the disk.
                ledger.done.insert(a);
                let _ = std::fs::remove_file(&out);
            }
            continue;
        }
        let (bytes, chunks) = if rec.verified.is_empty() {
            (0, Vec::new())
        } else {
            verified_chunks(&VerifierState::from_bytes(&rec.verified)?)
        };
        for &i in &chunks {
            let start = usize::try_from(i * CHUNK)?;
            let end = (start + usize::try_from(CHUNK)?).min(asset.len());
            if file.get(start..end) != asset.get(start..end) {
                return Err(format!("chunk {i} of {a} is marked verified but not on disk").into());
            }
        }
        if let Some(hub) = finish {
            let r = node
                .fetch(hub, &a, FetchOptions::new(out.clone(), "research".parse()?))
                .await?;
            let size = asset.len() as u64;
            if r.resumed != bytes || r.fetched + r.resumed != size {
                return Err(format!(
                    "the last fetch of {a} resumed {} and fetched {} bytes; the stored \
                     state held {bytes}",
                    r.resumed, r.fetched
                )
                .into());
            }
            if Hash256::sha256(&std::fs::read(&out)?) != Hash256::sha256(asset) {
                return Err(format!("the last fetch of {a}: the bytes differ").into());
            }
            if bytes > 0 {
                ledger.resumes += 1;
                ledger.resumed_bytes += bytes;
            }
            let _ = std::fs::remove_file(&out);
            continue;
        }
        resumable.insert(
            a,
            Resume {
                chunks: chunks.into_iter().collect(),
                bytes,
            },
        );
    }
    Ok(resumable)
}

/// Copies a directory of files (a stopped connector's log).
fn copy_files(from: &Path, to: &Path) -> Res {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// A provider with one published asset and a consumer, each on its own data directory.
struct Pair {
    space: Space,
    grid: Member,
    bank: Member,
    dir: tempfile::TempDir,
    pdir: PathBuf,
    cdir: PathBuf,
    provider: Connector,
    consumer: Connector,
    offer: Vec<u8>,
}

impl Pair {
    /// Members `seed` (power) and `seed2` (finance); the asset is `size` bytes.
    async fn start(seed: u8, seed2: u8, size: usize) -> Res<Pair> {
        let mut space = Space::new()?;
        let grid = space.member(seed, Sector::POWER, "CN-SX")?;
        let bank = space.member(seed2, Sector::FINANCE, "CN-SX")?;
        let dir = tempfile::tempdir()?;
        let (pdir, cdir) = (dir.path().join("provider"), dir.path().join("consumer"));
        let cfg = ConnectorConfig::default;
        let provider = connector_with(&space, &grid, Backend::Dir(&pdir), cfg(), None).await?;
        let (_, offer) = publish(
            &provider,
            &grid,
            dir.path(),
            "asset.bin",
            &data(size, seed),
            CHUNK,
            &AssetSpec::default(),
            OPEN,
        )
        .await?;
        let consumer = connector_with(&space, &bank, Backend::Dir(&cdir), cfg(), None).await?;
        Ok(Pair {
            space,
            grid,
            bank,
            dir,
            pdir,
            cdir,
            provider,
            consumer,
            offer,
        })
    }
}

/// Stops both connectors and waits until their data directories are free.
async fn stop_both(provider: Connector, consumer: Connector, pdir: &Path, cdir: &Path) -> Res {
    consumer.shutdown().await;
    drop(consumer);
    provider.shutdown().await;
    drop(provider);
    released(pdir).await?;
    released(cdir).await
}

/// The two halves a crash can split, made by hand: a start completes each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_completes_an_agreement_a_crash_left_half_written() -> Res {
    let Pair {
        space,
        grid,
        bank,
        dir,
        pdir,
        cdir,
        provider,
        consumer,
        offer,
    } = Pair::start(61, 62, 1 << 20).await?;
    let cfg = ConnectorConfig::default;
    let addr = provider.local_addr()?;
    consumer
        .negotiate(addr, &offer, None, "research".parse()?)
        .await?;
    stop_both(provider, consumer, &pdir, &cdir).await?;
    // The provider's log as it was before the second agreement.
    copy_files(&pdir.join("log"), &dir.path().join("old-log"))?;
    let provider = connector_with(&space, &grid, Backend::Dir(&pdir), cfg(), None).await?;
    let addr = provider.local_addr()?;
    let consumer = connector_with(&space, &bank, Backend::Dir(&cdir), cfg(), None).await?;
    let second = consumer
        .negotiate(addr, &offer, None, "research".parse()?)
        .await?
        .id();
    stop_both(provider, consumer, &pdir, &cdir).await?;

    // The provider's record of the second agreement without its event (the log's
    // commit lost), the consumer's event of it without its record (the store's).
    std::fs::remove_dir_all(pdir.join("log"))?;
    copy_files(&dir.path().join("old-log"), &pdir.join("log"))?;
    {
        let store = tds_connector::store::RedbStore::open(&cdir)?;
        let mut b = tds_connector::store::Batch::new();
        b.delete(Table::Agreements, second.as_bytes().to_vec());
        tds_connector::store::Store::commit(&store, b)?;
    }
    let provider = connector_with(&space, &grid, Backend::Dir(&pdir), cfg(), None).await?;
    let consumer = connector_with(&space, &bank, Backend::Dir(&cdir), cfg(), None).await?;
    provider.log().verify()?;
    consumer.log().verify()?;
    for (c, a) in [(&provider, second), (&consumer, second)] {
        let kinds = event_kinds(c, &a)?;
        assert_eq!(
            kinds.iter().filter(|k| *k == "agreement_concluded").count(),
            1,
            "{kinds:?}"
        );
        let rec = c
            .store()
            .get(Table::Agreements, a.as_bytes())?
            .ok_or("no record")?;
        let rec: tds_connector::records::AgreementRecord = tds_core::cbor::decode(&rec)?;
        assert_eq!(
            tds_policy::contract::verify_agreement(&rec.agreement)?.id(),
            a
        );
    }
    // The restored consumer record serves: the consumer fetches under it.
    let out = dir.path().join("fetched.bin");
    let receipt = consumer
        .fetch(
            provider.local_addr()?,
            &second,
            FetchOptions::new(out.clone(), "research".parse()?),
        )
        .await?;
    assert_eq!(receipt.size, 1 << 20);
    assert_eq!(std::fs::read(&out)?, data(1 << 20, 61));
    // A second start repairs nothing more.
    let size = provider.log().size();
    provider.shutdown().await;
    drop(provider);
    released(&pdir).await?;
    let provider = connector_with(&space, &grid, Backend::Dir(&pdir), cfg(), None).await?;
    assert_eq!(provider.log().size(), size);
    consumer.shutdown().await;
    provider.shutdown().await;
    Ok(())
}

/// A termination a crash split, both ways, made by hand: a start completes each. The
/// consumer's termination record lost (its event logged): restored, and the agreement
/// stays ended — the consumer cannot fetch under it. The provider's record of a second
/// termination written without its event (the log's commit lost): the event is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_completes_a_termination_a_crash_left_half_written() -> Res {
    let Pair {
        space,
        grid,
        bank,
        dir,
        pdir,
        cdir,
        provider,
        consumer,
        offer,
    } = Pair::start(71, 72, 1 << 16).await?;
    let cfg = ConnectorConfig::default;
    let addr = provider.local_addr()?;
    let first = consumer
        .negotiate(addr, &offer, None, "research".parse()?)
        .await?
        .id();
    let second = consumer
        .negotiate(addr, &offer, None, "research".parse()?)
        .await?
        .id();
    consumer.terminate(&first, "no longer needed").await?;
    stop_both(provider, consumer, &pdir, &cdir).await?;

    // The consumer's record of the first termination lost; a provider record of a
    // second termination whose event never reached the log.
    {
        let store = tds_connector::store::RedbStore::open(&cdir)?;
        let mut b = tds_connector::store::Batch::new();
        b.delete(Table::Terminations, first.as_bytes().to_vec());
        tds_connector::store::Store::commit(&store, b)?;
    }
    {
        let store = tds_connector::store::RedbStore::open(&pdir)?;
        let rec = tds_connector::records::TerminationRecord {
            by: grid.key.id(),
            code: "terminated".into(),
            termination: Vec::new(),
            time: SystemClock.now(),
        };
        let mut b = tds_connector::store::Batch::new();
        b.put(
            Table::Terminations,
            second.as_bytes().to_vec(),
            tds_core::cbor::encode(&rec)?,
        );
        tds_connector::store::Store::commit(&store, b)?;
    }
    let provider = connector_with(&space, &grid, Backend::Dir(&pdir), cfg(), None).await?;
    let consumer = connector_with(&space, &bank, Backend::Dir(&cdir), cfg(), None).await?;
    provider.log().verify()?;
    consumer.log().verify()?;
    // The consumer's record is back, and the agreement stays ended.
    let rec = consumer
        .store()
        .get(Table::Terminations, first.as_bytes())?
        .ok_or("the termination record was not restored")?;
    let rec: tds_connector::records::TerminationRecord = tds_core::cbor::decode(&rec)?;
    assert_eq!(rec.by, bank.key.id());
    let out = dir.path().join("after.bin");
    let refused = consumer
        .fetch(
            provider.local_addr()?,
            &first,
            FetchOptions::new(out, "research".parse()?),
        )
        .await
        .err()
        .ok_or("fetched under a terminated agreement")?;
    assert!(refused.to_string().contains("terminated"), "{refused}");
    // The provider logs that denial as `access_denied` (appended after its answer went
    // out): wait for it, so the sizes compared below are final.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !event_kinds(&provider, &first)?
        .iter()
        .any(|k| k == "access_denied")
    {
        if Instant::now() > deadline {
            return Err("the provider never logged the denial".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The provider's log now holds the second termination, once.
    let kinds = event_kinds(&provider, &second)?;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "agreement_terminated")
            .count(),
        1,
        "{kinds:?}"
    );
    // A second start repairs nothing more: no agreement or termination event is added
    // on either side (other events, such as the denial above, may still be landing).
    let repairs = |c: &Connector| -> Res<Vec<usize>> {
        let mut n = Vec::new();
        for a in [&first, &second] {
            let kinds = event_kinds(c, a)?;
            for kind in ["agreement_concluded", "agreement_terminated"] {
                n.push(kinds.iter().filter(|k| *k == kind).count());
            }
        }
        Ok(n)
    };
    let (before_p, before_c) = (repairs(&provider)?, repairs(&consumer)?);
    stop_both(provider, consumer, &pdir, &cdir).await?;
    let provider = connector_with(&space, &grid, Backend::Dir(&pdir), cfg(), None).await?;
    let consumer = connector_with(&space, &bank, Backend::Dir(&cdir), cfg(), None).await?;
    assert_eq!(repairs(&provider)?, before_p);
    assert_eq!(repairs(&consumer)?, before_c);
    consumer.shutdown().await;
    provider.shutdown().await;
    Ok(())
}

/// A publication a crash split after its records were committed and before its events
/// were appended (made by putting back the log from before the publication): the next
/// start appends `asset_published` and `offer_published`, once, and a second start
/// appends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_logs_a_publication_a_crash_left_unlogged() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(73, Sector::POWER, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let pdir = dir.path().join("provider");
    let cfg = ConnectorConfig::default;
    let provider = connector_with(&space, &grid, Backend::Dir(&pdir), cfg(), None).await?;
    provider.shutdown().await;
    drop(provider);
    released(&pdir).await?;
    copy_files(&pdir.join("log"), &dir.path().join("old-log"))?;
    let provider = connector_with(&space, &grid, Backend::Dir(&pdir), cfg(), None).await?;
    let (asset, offer) = publish(
        &provider,
        &grid,
        dir.path(),
        "asset.bin",
        &data(1 << 16, 73),
        CHUNK,
        &AssetSpec::default(),
        OPEN,
    )
    .await?;
    provider.shutdown().await;
    drop(provider);
    released(&pdir).await?;
    std::fs::remove_dir_all(pdir.join("log"))?;
    copy_files(&dir.path().join("old-log"), &pdir.join("log"))?;

    let provider = connector_with(&space, &grid, Backend::Dir(&pdir), cfg(), None).await?;
    provider.log().verify()?;
    let asset_hash: Hash256 = asset.parse()?;
    let kinds = event_kinds(&provider, &asset_hash)?;
    for kind in ["asset_published", "offer_published"] {
        assert_eq!(
            kinds.iter().filter(|k| *k == kind).count(),
            1,
            "{kind}: {kinds:?}"
        );
    }
    assert!(provider
        .offer(&tds_policy::contract::verify_offer(&offer)?.id())?
        .is_some());
    let size = provider.log().size();
    provider.shutdown().await;
    drop(provider);
    released(&pdir).await?;
    let provider = connector_with(&space, &grid, Backend::Dir(&pdir), cfg(), None).await?;
    assert_eq!(provider.log().size(), size);
    provider.shutdown().await;
    Ok(())
}
