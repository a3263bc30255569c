//! A consumer process killed with SIGKILL in the middle of a fetch: restarted from its
//! data directory, it resumes from the resume state it stored, asking for none of the
//! chunks that state marks verified, and ends with the asset's bytes.
//!
//! The consumer runs in a child: this test binary run again with [`CHILD_ENV`] set and
//! the filter selecting [`crash_child`] (which does nothing when the variable is absent).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tds_connector::{ConnectorConfig, ConnectorEvent, FetchOptions, Source};
use tds_core::hash::Hash256;
use tds_core::{Clock, SigningKey};
use tds_identity::{Sector, TrustStore};
use tokio::sync::broadcast;

use crate::common::*;

/// The child's switch: the directory holding its inputs (credential, crl, offer,
/// authority key) and its data directory `consumer/`.
const CHILD_ENV: &str = "TDS_CRASH_CHILD";
/// The provider's address (child input).
const PROVIDER_ENV: &str = "TDS_CRASH_PROVIDER";
/// The consumer's key seed (child input).
const SEED_ENV: &str = "TDS_CRASH_SEED";
/// The sync interval in bytes (child input).
const SYNC_ENV: &str = "TDS_CRASH_SYNC";

const OPEN: &str = "policy set;\n\npermit use\n  when purpose isA research;\n";

fn config(sync_every: u64) -> ConnectorConfig {
    ConnectorConfig {
        sync_every,
        ..ConnectorConfig::default()
    }
}

fn say(line: &str) -> Res {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// The child of `sigkilled_consumer_resumes_from_its_stored_state`: starts a consumer
/// on `<dir>/consumer`, negotiates the offer, prints `agreement <id>`, then fetches into
/// `<dir>/consumer/fetched.bin`, printing `synced <bytes>` each time the resume state it
/// stored grows. It is killed before the fetch can end (the provider holds back the
/// second half of the asset).
#[test]
fn crash_child() -> Res {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    let dir = PathBuf::from(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(child_main(&dir))
}

async fn child_main(dir: &Path) -> Res {
    let seed: u8 = std::env::var(SEED_ENV)?.parse()?;
    let sync_every: u64 = std::env::var(SYNC_ENV)?.parse()?;
    let addr: std::net::SocketAddr = std::env::var(PROVIDER_ENV)?.parse()?;
    let key = Arc::new(SigningKey::from_seed(&[seed; 32]));
    let authority: [u8; 32] = std::fs::read(dir.join("authority"))?
        .try_into()
        .map_err(|_| "authority key length")?;
    let crl = std::fs::read(dir.join("crl"))?;
    let mut trust = TrustStore::new();
    trust.add_authority(tds_core::PublicKey::from_bytes(&authority)?);
    trust.add_revocation_list(&crl, tds_core::time::SystemClock.now())?;
    let consumer =
        tds_connector::Connector::builder(key, std::fs::read(dir.join("credential"))?, trust)
            .revocation_list(crl)
            .config(config(sync_every))
            .data_dir(dir.join("consumer"))
            .start()
            .await?;
    let offer = std::fs::read(dir.join("offer"))?;
    let agreement = consumer
        .negotiate(addr, &offer, None, "research".parse()?)
        .await?
        .id();
    say(&format!("agreement {agreement}"))?;
    // Report the stored resume state as it grows.
    let watcher = {
        let consumer = consumer.clone();
        std::thread::spawn(move || -> Res {
            let mut last = 0;
            loop {
                if let Some(s) = stored_state(&consumer, &agreement)? {
                    let (bytes, _) = verified_chunks(&s);
                    if bytes > last {
                        last = bytes;
                        say(&format!("synced {bytes}"))?;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let receipt = consumer
        .fetch(
            addr,
            &agreement,
            FetchOptions::new(
                dir.join("consumer").join("fetched.bin"),
                "research".parse()?,
            ),
        )
        .await;
    // Not reached when the parent kills it in time.
    say(&format!("fetch ended: {receipt:?}"))?;
    drop(watcher);
    Ok(())
}

enum Line {
    Agreement(Hash256),
    Synced(u64),
    Other(String),
}

fn parse(line: &str) -> Line {
    if let Some(a) = line.strip_prefix("agreement ").and_then(|a| a.parse().ok()) {
        return Line::Agreement(a);
    }
    if let Some(n) = line.strip_prefix("synced ").and_then(|n| n.parse().ok()) {
        return Line::Synced(n);
    }
    Line::Other(line.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_consumer_resumes_from_its_stored_state() -> Res {
    let (size, chunk) = if full() {
        (256usize << 20, 1u64 << 20)
    } else {
        (32usize << 20, 1u64 << 20)
    };
    let (pseed, cseed) = (31u8, 32u8);
    let mut space = Space::new()?;
    let grid = space.member(pseed, Sector::POWER, "CN-SX")?;
    let bank = space.member(cseed, Sector::FINANCE, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let cdir = dir.path().join("consumer");
    let out = cdir.join("fetched.bin");
    // A short idle timeout: the provider soon notices the killed consumer is gone.
    let pconfig = ConnectorConfig {
        transport: tds_transport::TransportConfig {
            idle_timeout: Duration::from_secs(2),
            keep_alive: Duration::from_millis(500),
            ..tds_transport::TransportConfig::default()
        },
        ..ConnectorConfig::default()
    };
    let provider = connector_with(&space, &grid, Backend::Memory, pconfig, None).await?;
    let mut provider_events = provider.subscribe();
    let bytes = data(size, pseed);
    let path = dir.path().join("asset.bin");
    std::fs::write(&path, &bytes)?;
    let manifest = manifest_for(&grid, &path, chunk, &AssetSpec::default())?;
    let source = ChunkSource::new(bytes, chunk);
    let chunks = source.chunks();
    // The second half waits until the child is dead: the kill lands mid-transfer.
    let held = chunks / 2;
    let source = Arc::new(source.holding_from(held));
    let custom = Source::Custom {
        name: "held".into(),
        source: source.clone(),
    };
    let (_, offer) = publish_source(&provider, &manifest, custom, OPEN).await?;
    source.arm();

    // The child consumer.
    std::fs::write(dir.path().join("credential"), &bank.credential)?;
    std::fs::write(dir.path().join("crl"), &space.crl)?;
    std::fs::write(dir.path().join("offer"), &offer)?;
    std::fs::write(
        dir.path().join("authority"),
        space.authority.public_key().as_bytes(),
    )?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "restart::crash_child", "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .env(PROVIDER_ENV, provider.local_addr()?.to_string())
        .env(SEED_ENV, cseed.to_string())
        .env(SYNC_ENV, chunk.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Wait for the agreement and for the stored resume state to cover what the child
    // surely verified: it asked for chunk `held` (which the provider holds back) only
    // with fewer than `window` chunks in flight, so at least `held - (window - 1)`
    // chunks before it verified. Then kill it.
    let window = tds_protocol::session::Config::default().chunk_window as u64;
    let want = held.saturating_sub(window - 1).max(1) * chunk;
    let mut agreement = None;
    let mut synced = 0u64;
    let mut other = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(if full() { 120 } else { 30 });
    while synced < want && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(line)) = tokio::time::timeout(left, rx.recv()).await else {
            break;
        };
        match parse(&line) {
            Line::Agreement(a) => agreement = Some(a),
            Line::Synced(n) => synced = n,
            Line::Other(l) => other.push(l),
        }
    }
    let synced_before_kill = synced;
    child.kill()?; // SIGKILL
    let status = child.wait()?;
    source.release();
    let _ = reader.join();
    while let Ok(line) = rx.try_recv() {
        match parse(&line) {
            Line::Agreement(a) => agreement = Some(a),
            Line::Synced(n) => synced = n,
            Line::Other(l) => other.push(l),
        }
    }
    assert!(!status.success(), "the child ended on its own: {other:?}");
    let agreement = agreement.ok_or_else(|| format!("the child negotiated nothing: {other:?}"))?;
    assert!(
        synced_before_kill >= want,
        "the child's stored resume state covers {synced_before_kill} bytes, not the {want} it verified \
         before the provider stalled: {other:?}"
    );
    // Chunks the dead consumer asked for are served (into the void) until the provider
    // closes its connection; count reads after that.
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match provider_events.recv().await {
                Ok(ConnectorEvent::PeerClosed { .. }) => return true,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await;
    assert_eq!(
        closed,
        Ok(true),
        "the provider kept the dead consumer's connection"
    );
    let read_by_child = source.reads();

    // Restart the consumer on the child's data directory.
    let consumer = connector_with(&space, &bank, Backend::Dir(&cdir), config(chunk), None).await?;
    let state = stored_state(&consumer, &agreement)?.ok_or("no resume state after the kill")?;
    let (resumable, verified) = verified_chunks(&state);
    assert!(
        resumable >= synced,
        "the state went back: {resumable} < {synced}"
    );
    assert!(
        !verified.iter().any(|i| *i >= held),
        "chunks the provider never served are marked verified"
    );
    // Every chunk the state marks verified is on disk; others hold the asset's bytes
    // (verified after the last sync), nothing, or (written when the kill came) some of
    // each: never a byte that is not the asset's.
    let file = std::fs::read(&out)?;
    let mut unrecorded = 0u64;
    for i in 0..chunks {
        let start = usize::try_from(i * chunk)?;
        let want = source.chunk_bytes(i);
        let have = file.get(start..).unwrap_or_default();
        let have = have.get(..want.len()).unwrap_or(have);
        if verified.contains(&i) {
            assert!(have == want, "chunk {i} is marked verified but not on disk");
        } else if have == want {
            unrecorded += 1;
        } else {
            assert!(
                have.iter().zip(want).all(|(h, w)| h == w || *h == 0),
                "chunk {i} holds bytes that are not the asset's"
            );
        }
    }
    let receipt = consumer
        .fetch(
            provider.local_addr()?,
            &agreement,
            FetchOptions::new(out.clone(), "research".parse()?),
        )
        .await?;
    assert_eq!(std::fs::read(&out)?, source.bytes, "the fetched bytes");
    assert_eq!(receipt.size, size as u64);
    assert!(receipt.resumed > 0, "nothing resumed");
    assert_eq!(
        receipt.resumed, resumable,
        "resumed what the stored state says"
    );
    assert_eq!(receipt.fetched + receipt.resumed, receipt.size);
    assert_eq!(receipt.attempts, 1);
    // The restarted consumer asked for exactly the chunks the state did not mark.
    let after = source.reads();
    for i in 0..chunks {
        let idx = usize::try_from(i)?;
        let asked =
            after.get(idx).copied().unwrap_or(0) - read_by_child.get(idx).copied().unwrap_or(0);
        let want = u64::from(!verified.contains(&i));
        assert_eq!(
            asked, want,
            "chunk {i} was read {asked} times after the restart"
        );
    }
    // The log survived the kill and holds the whole story.
    consumer.log().verify()?;
    let kinds = event_kinds(&consumer, &agreement)?;
    assert!(
        kinds.contains(&"agreement_concluded".to_owned()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"transfer_completed".to_owned()),
        "{kinds:?}"
    );
    println!(
        "sigkill: {chunks} chunks of {chunk} bytes; the child was served {} and stored {} as verified; \
         after the restart {} resumed, {} fetched ({} of them verified by the child after its last sync)",
        read_by_child.iter().filter(|r| **r > 0).count(),
        verified.len(),
        receipt.resumed / chunk,
        receipt.fetched.div_ceil(chunk),
        unrecorded,
    );
    consumer.shutdown().await;
    provider.shutdown().await;
    Ok(())
}

/// Regression (issue 13, adversarial list): the usage guard held the connector's core
/// and the core held the guard, so a connector shut down and dropped never let go of its
/// store, its log and their files: starting it again in the same process on the same
/// data directory failed with `kv.locked` for ever. Dropped, it now releases them once
/// its sessions have ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_shut_down_and_dropped_releases_its_data_directory() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(71, Sector::POWER, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("grid");
    let first = connector(&space, &grid, Backend::Dir(&data)).await?;
    let published = publish(
        &first,
        &grid,
        dir.path(),
        "asset.bin",
        &data_bytes(),
        65536,
        &AssetSpec::default(),
        OPEN,
    )
    .await?;
    first.shutdown().await;
    drop(first);
    // Its tasks end as their connections close; then the directory is free.
    let deadline = Instant::now() + Duration::from_secs(20);
    let again = loop {
        match connector(&space, &grid, Backend::Dir(&data)).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("the data directory stayed in use: {e}").into()),
        }
    };
    // The restarted connector has what the first stored.
    assert!(again.offer(&offer_id(&published.1)?)?.is_some());
    again.shutdown().await;
    Ok(())
}

fn data_bytes() -> Vec<u8> {
    data(100_000, 71)
}

fn offer_id(offer: &[u8]) -> Res<Hash256> {
    Ok(tds_policy::contract::verify_offer(offer)?.id())
}
