//! A provider whose data source serves a wrong chunk: the consumer refuses it before a
//! byte of it is written, alerts, logs the failed transfer, and resumes in a new transfer
//! without asking for a verified chunk again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tds_connector::{
    AlertKind, Connector, ConnectorConfig, ConnectorError, ConnectorEvent, FetchOptions, Source,
};
use tds_core::hash::Hash256;
use tds_core::ErrorCode;
use tds_identity::Sector;
use tokio::sync::broadcast;

use crate::common::*;

const OPEN: &str = "policy set;\n\npermit use\n  when purpose isA research;\n";

struct Bad {
    provider: Connector,
    consumer: Connector,
    source: Arc<ChunkSource>,
    agreement: Hash256,
    /// The chunk served corrupted.
    bad: u64,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

/// A provider serving `size` bytes whose chunk `bad` (the middle one) is corrupted once
/// or on every read, and a consumer (redb) holding an agreement for it, fetching with
/// `fetch_attempts` and syncing its resume state after every chunk.
async fn bad_provider(seed: u8, every: bool, fetch_attempts: u32) -> Res<Bad> {
    let (size, chunk) = if full() {
        (64usize << 20, 256u64 << 10)
    } else {
        (4usize << 20, 64u64 << 10)
    };
    let mut space = Space::new()?;
    let grid = space.member(seed, Sector::POWER, "CN-SX")?;
    let bank = space.member(seed + 1, Sector::FINANCE, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let cdir = dir.path().join("consumer");
    let provider = connector(&space, &grid, Backend::Memory).await?;
    let config = ConnectorConfig {
        sync_every: chunk,
        fetch_attempts,
        ..ConnectorConfig::default()
    };
    let consumer = connector_with(&space, &bank, Backend::Dir(&cdir), config, None).await?;
    let bytes = data(size, seed);
    let path = dir.path().join("asset.bin");
    std::fs::write(&path, &bytes)?;
    let manifest = manifest_for(&grid, &path, chunk, &AssetSpec::default())?;
    let mut source = ChunkSource::new(bytes, chunk);
    let bad = source.chunks() / 2;
    source = source.corrupting(bad, every);
    let source = Arc::new(source);
    let custom = Source::Custom {
        name: "bent".into(),
        source: source.clone(),
    };
    let (_, offer) = publish_source(&provider, &manifest, custom, OPEN).await?;
    // Publishing read the source to build the chunk tree from the correct bytes; from
    // now on the source bends what it serves.
    source.arm();
    let agreement = consumer
        .negotiate(provider.local_addr()?, &offer, None, "research".parse()?)
        .await?
        .id();
    Ok(Bad {
        provider,
        consumer,
        source,
        agreement,
        bad,
        out: cdir.join("fetched.bin"),
        _dir: dir,
    })
}

impl Bad {
    async fn fetch(
        &self,
        writes: &Arc<AtomicU64>,
    ) -> Result<tds_connector::Receipt, ConnectorError> {
        let w = writes.clone();
        let mut options = FetchOptions::new(
            self.out.clone(),
            "research"
                .parse()
                .map_err(|_| ConnectorError::Closed("purpose".into()))?,
        );
        options.progress = Some(Arc::new(move |_, _| {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        self.consumer
            .fetch(self.provider.local_addr()?, &self.agreement, options)
            .await
    }

    fn size(&self) -> u64 {
        self.source.bytes.len() as u64
    }

    /// The output file holds the correct bytes of every chunk the stored resume state
    /// marks verified and nothing (zeros, or not yet that long) anywhere else: no byte
    /// of an unverified chunk was written. Returns the verified chunks.
    fn only_verified_written(&self) -> Res<Vec<u64>> {
        let state = stored_state(&self.consumer, &self.agreement)?.ok_or("no resume state")?;
        let (_, verified) = verified_chunks(&state);
        let file = std::fs::read(&self.out)?;
        for i in 0..self.source.chunks() {
            let start = usize::try_from(i * self.source.chunk)?;
            let want = self.source.chunk_bytes(i);
            let have = file.get(start..).unwrap_or_default();
            let have = have.get(..want.len()).unwrap_or(have);
            if verified.contains(&i) {
                assert!(have == want, "verified chunk {i} is not the asset's bytes");
            } else {
                assert!(
                    have.iter().all(|b| *b == 0),
                    "chunk {i} was written without being verified (the asset's bytes: {}; verified: {verified:?})",
                    have == want
                );
            }
        }
        assert!(
            !verified.contains(&self.bad),
            "the corrupted chunk is marked verified"
        );
        Ok(verified)
    }
}

fn is_verify_code(code: &str) -> bool {
    code.starts_with("chunk.")
        || code.starts_with("merkle.")
        || code.starts_with("manifest.")
        || code == "transfer.wrong_chunk"
}

/// The violation alerts about `agreement` among the events received so far.
fn violations(
    events: &mut broadcast::Receiver<ConnectorEvent>,
    agreement: &Hash256,
) -> Vec<String> {
    let mut codes = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let ConnectorEvent::Alert(a) = e {
            if a.kind == AlertKind::Violation && a.agreement == Some(*agreement) {
                codes.push(a.code);
            }
        }
    }
    codes
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunk_is_refused_and_the_retry_resumes() -> Res {
    let b = bad_provider(21, false, 3).await?;
    let mut events = b.consumer.subscribe();
    let writes = Arc::new(AtomicU64::new(0));
    let receipt = b.fetch(&writes).await?;
    assert_eq!(std::fs::read(&b.out)?, b.source.bytes, "the fetched bytes");
    assert_eq!(receipt.size, b.size());
    assert_eq!(b.source.corrupted(), 1, "one corrupted chunk was served");
    assert_eq!(
        receipt.attempts, 2,
        "one refused transfer, one that completed"
    );
    assert_eq!(receipt.resumed, 0, "the first call started from nothing");
    assert_eq!(
        receipt.fetched + receipt.resumed,
        receipt.size,
        "the call's fetched bytes account for the whole asset"
    );
    // Each chunk was written once: the corrupted copy never, no verified chunk again.
    assert_eq!(writes.load(Ordering::SeqCst), b.source.chunks());
    let reads = b.source.reads();
    assert_eq!(reads.get(usize::try_from(b.bad)?), Some(&2));
    assert!(reads.iter().all(|r| (1..=2).contains(r)), "{reads:?}");
    // Read twice: the bad chunk and chunks whose replies were in flight when the
    // transfer ended (not verified: the state after the failure is exact).
    let window = tds_protocol::session::Config::default().chunk_window as u64;
    let again = reads.iter().filter(|r| **r == 2).count() as u64;
    assert!(again <= window, "{again} chunks read twice: {reads:?}");
    let alerts = violations(&mut events, &b.agreement);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts.iter().all(|c| is_verify_code(c)), "{alerts:?}");
    let kinds = event_kinds(&b.consumer, &b.agreement)?;
    assert_eq!(count(&kinds, "transfer_failed"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "transfer_completed"), 1, "{kinds:?}");
    let failed = kinds.iter().position(|k| k == "transfer_failed");
    let completed = kinds.iter().position(|k| k == "transfer_completed");
    assert!(failed < completed, "{kinds:?}");
    println!(
        "corrupt once: {} chunks, {again} read twice, {} bytes fetched, {} attempts",
        b.source.chunks(),
        receipt.fetched,
        receipt.attempts
    );
    b.consumer.log().verify()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_transfer_stores_the_exact_verified_set() -> Res {
    // One attempt per call: the refused transfer's resume state can be read between calls.
    let b = bad_provider(23, false, 1).await?;
    let mut events = b.consumer.subscribe();
    let writes = Arc::new(AtomicU64::new(0));
    let e = b
        .fetch(&writes)
        .await
        .err()
        .ok_or("a corrupted chunk was accepted")?;
    let code = e
        .refusal()
        .map_or_else(|| e.code().to_owned(), |r| r.code.clone());
    assert!(is_verify_code(&code), "{code}: {e}");
    let verified = b.only_verified_written()?;
    assert_eq!(writes.load(Ordering::SeqCst), verified.len() as u64);
    // Chunk `bad` was asked for once all but (window - 1) chunks before it verified.
    let window = tds_protocol::session::Config::default().chunk_window as u64;
    assert!(
        verified.len() as u64 >= b.bad.saturating_sub(window - 1),
        "{} of {} chunks before the bad one verified",
        verified.len(),
        b.bad
    );
    let alerts = violations(&mut events, &b.agreement);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts.first(), Some(&code));
    let kinds = event_kinds(&b.consumer, &b.agreement)?;
    assert_eq!(count(&kinds, "transfer_failed"), 1, "{kinds:?}");
    // The next call resumes: exactly the chunks not verified are asked for, once each.
    let before = b.source.reads();
    let state = stored_state(&b.consumer, &b.agreement)?.ok_or("no resume state")?;
    let (resumable, _) = verified_chunks(&state);
    let receipt = b.fetch(&writes).await?;
    assert_eq!(std::fs::read(&b.out)?, b.source.bytes, "the fetched bytes");
    assert_eq!(receipt.attempts, 1);
    assert_eq!(receipt.resumed, resumable);
    assert_eq!(receipt.fetched, b.size() - resumable);
    let after = b.source.reads();
    for i in 0..b.source.chunks() {
        let idx = usize::try_from(i)?;
        let asked = after.get(idx).copied().unwrap_or(0) - before.get(idx).copied().unwrap_or(0);
        let want = u64::from(!verified.contains(&i));
        assert_eq!(
            asked, want,
            "chunk {i} was read {asked} times by the resumed transfer"
        );
    }
    assert_eq!(writes.load(Ordering::SeqCst), b.source.chunks());
    println!(
        "refused then resumed: {} chunks, {} verified before the refusal ({resumable} bytes), {} fetched after",
        b.source.chunks(),
        verified.len(),
        b.source.chunks() - verified.len() as u64
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_corrupt_on_every_read_fails_after_the_attempts() -> Res {
    let attempts = 3;
    let b = bad_provider(25, true, attempts).await?;
    let mut events = b.consumer.subscribe();
    let writes = Arc::new(AtomicU64::new(0));
    let e = b
        .fetch(&writes)
        .await
        .err()
        .ok_or("a corrupted chunk was accepted")?;
    let code = e
        .refusal()
        .map_or_else(|| e.code().to_owned(), |r| r.code.clone());
    assert!(is_verify_code(&code), "{code}: {e}");
    assert!(
        e.to_string().contains(&code),
        "the error names its code: {e}"
    );
    assert_eq!(
        b.source.corrupted(),
        u64::from(attempts),
        "one bad chunk per transfer"
    );
    let reads = b.source.reads();
    assert_eq!(
        reads.get(usize::try_from(b.bad)?),
        Some(&u64::from(attempts))
    );
    assert!(reads.iter().all(|r| *r <= u64::from(attempts)), "{reads:?}");
    let verified = b.only_verified_written()?;
    assert_eq!(writes.load(Ordering::SeqCst), verified.len() as u64);
    let alerts = violations(&mut events, &b.agreement);
    assert_eq!(alerts.len(), attempts as usize, "{alerts:?}");
    let kinds = event_kinds(&b.consumer, &b.agreement)?;
    assert_eq!(
        count(&kinds, "transfer_failed"),
        attempts as usize,
        "{kinds:?}"
    );
    assert_eq!(count(&kinds, "transfer_completed"), 0, "{kinds:?}");
    // Both still serve: a fresh catalog query answers.
    let page = b
        .consumer
        .catalog(b.provider.local_addr()?, Default::default(), None)
        .await?;
    assert_eq!(
        page.items.len(),
        1,
        "the provider's catalog after the failures"
    );
    println!(
        "corrupt always: failed with {code} after {attempts} transfers; {} of {} chunks verified",
        verified.len(),
        b.source.chunks()
    );
    Ok(())
}
