//! Network faults on real QUIC: a consumer negotiates and fetches from a provider through
//! a UDP relay that drops 10% of the datagrams, delays each up to 1 ms, reorders,
//! duplicates and corrupts some, and cuts the path three times during the transfer (the
//! last cut outlasts the idle timeout, so the connection dies and the fetch resumes on
//! a new one). The fetch completes with the asset's bytes, the provider's log holds the
//! transfer, and nothing corrupted reached the application: QUIC's AEAD discarded every
//! flipped datagram (a flipped byte that got through would have failed a chunk's Merkle
//! check, a frame's decoding or a signature, or changed the output).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tds_connector::{AlertKind, ConnectorConfig, ConnectorEvent, FetchOptions};
use tds_core::hash::Hash256;
use tds_identity::Sector;
use tokio::sync::broadcast;

use crate::common::*;
use crate::relay::{Faults, Relay};

const OPEN: &str = "policy set;\n\npermit use\n  when purpose isA research;\n";

/// Idle timeout of both sides: cuts shorter than this are bridged by QUIC itself.
const IDLE: Duration = Duration::from_secs(4);

/// The three cuts: when (share of the asset verified) and for how long. The last one
/// outlasts [`IDLE`].
const CUTS: [(f64, Duration); 3] = [
    (0.2, Duration::from_millis(800)),
    (0.45, Duration::from_millis(1_600)),
    (0.7, Duration::from_millis(5_000)),
];

fn config() -> ConnectorConfig {
    ConnectorConfig {
        transport: tds_transport::TransportConfig {
            idle_timeout: IDLE,
            keep_alive: Duration::from_millis(500),
            ..tds_transport::TransportConfig::default()
        },
        // A dial made during a cut waits for the path to come back.
        connect_timeout: Duration::from_secs(15),
        // Each transfer a cut ends is resumed by the next.
        fetch_attempts: 10,
        sync_every: 4 << 20,
        ..ConnectorConfig::default()
    }
}

/// Alerts and failed transfers a connector reported (kind, code).
fn drain(rx: &mut broadcast::Receiver<ConnectorEvent>) -> Vec<(String, String)> {
    let mut v = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(ConnectorEvent::Alert(a)) => v.push((a.kind.as_str().to_owned(), a.code)),
            Ok(ConnectorEvent::TransferFailed { code, .. }) => {
                v.push(("transfer_failed".into(), code));
            }
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return v,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_survives_loss_reordering_duplication_corruption_and_cuts() -> Res {
    let size: usize = if full() { 256 << 20 } else { 32 << 20 };
    let chunk = 256u64 << 10;
    let seed = crate::relay::seed();
    let started = Instant::now();
    let mut space = Space::new()?;
    let grid = space.member(41, Sector::POWER, "CN-SX")?;
    let bank = space.member(42, Sector::FINANCE, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let provider = connector_with(
        &space,
        &grid,
        Backend::Dir(&dir.path().join("provider")),
        config(),
        None,
    )
    .await?;
    let consumer = connector_with(
        &space,
        &bank,
        Backend::Dir(&dir.path().join("consumer")),
        config(),
        None,
    )
    .await?;
    let mut consumer_events = consumer.subscribe();
    let bytes = data(size, 41);
    let want = Hash256::sha256(&bytes);
    let (_, offer) = publish(
        &provider,
        &grid,
        dir.path(),
        "asset.bin",
        &bytes,
        chunk,
        &AssetSpec::default(),
        OPEN,
    )
    .await?;
    drop(bytes);

    let relay = Relay::start(
        provider.local_addr()?,
        Faults {
            drop: 0.10,
            duplicate: 0.02,
            corrupt: 0.02,
            reorder: 0.02,
            // Every datagram delayed would make this a 1 ms path, where loss-based
            // congestion control under 10% loss moves a few MB/s at best.
            delay: 0.2,
            max_delay: Duration::from_millis(1),
        },
        seed,
    )?;
    relay.set_on(true);
    let via = relay.addr();
    let ctx = |what: &str| format!("{what} (relay seed {seed}; rerun with TDS_FAULT_SEED={seed})");

    let agreement = consumer
        .negotiate(via, &offer, None, "research".parse()?)
        .await
        .map_err(|e| ctx(&format!("negotiation through the relay failed: {e}")))?
        .id();

    // Cut the path as the fetch passes each mark.
    let cutter = relay.cutter();
    let next_cut = Arc::new(AtomicUsize::new(0));
    let progress: tds_connector::ProgressFn = {
        let next_cut = next_cut.clone();
        let total = size as f64;
        Arc::new(move |done, _| {
            let i = next_cut.load(SeqCst);
            if let Some((share, how_long)) = CUTS.get(i) {
                if done as f64 >= share * total
                    && next_cut.compare_exchange(i, i + 1, SeqCst, SeqCst).is_ok()
                {
                    cutter.cut(*how_long);
                }
            }
        })
    };
    let out = dir.path().join("fetched.bin");
    let mut options = FetchOptions::new(out.clone(), "research".parse()?);
    options.progress = Some(progress);
    let fetch_started = Instant::now();
    let limit = Duration::from_secs(if full() { 1_800 } else { 300 });
    let receipt = tokio::time::timeout(limit, consumer.fetch(via, &agreement, options))
        .await
        .map_err(|_| ctx("the fetch did not end"))?
        .map_err(|e| ctx(&format!("the fetch failed: {e}")))?;
    let fetch_time = fetch_started.elapsed();
    let counts = relay.counts();

    let reported = drain(&mut consumer_events);
    println!(
        "network faults (seed {seed}): {} MiB in {:.1} s ({} transfer(s), {} MiB fetched); \
         datagrams {} received, {} forwarded, {} dropped, {} duplicated, {} corrupted, \
         {} delayed, {} reordered; {} cuts ({} datagrams dropped in them); transfers ended early: {:?}; \
         test {:.1} s",
        size >> 20,
        fetch_time.as_secs_f64(),
        receipt.attempts,
        receipt.fetched >> 20,
        counts.received,
        counts.forwarded,
        counts.dropped,
        counts.duplicated,
        counts.corrupted,
        counts.delayed,
        counts.reordered,
        counts.cuts,
        counts.dropped_cut,
        reported,
        started.elapsed().as_secs_f64(),
    );
    // The bytes; each chunk fetched once (a transfer whose connection died stored its
    // verified set as it ended, and the next one asked only for the rest).
    let got = Hash256::sha256(&std::fs::read(&out)?);
    assert_eq!(got, want, "{}", ctx("the fetched bytes differ"));
    assert_eq!(receipt.size, size as u64, "{}", ctx("receipt size"));
    assert_eq!(
        receipt.fetched + receipt.resumed,
        size as u64,
        "{}",
        ctx("a chunk was fetched twice")
    );

    // The relay did what it was asked to.
    assert_eq!(counts.cuts, 3, "{}", ctx("cuts"));
    assert!(counts.dropped_cut > 0, "{}", ctx("no datagram met a cut"));
    for (what, n) in [
        ("dropped", counts.dropped),
        ("duplicated", counts.duplicated),
        ("corrupted", counts.corrupted),
        ("delayed", counts.delayed),
        ("reordered", counts.reordered),
    ] {
        assert!(n > 0, "{}", ctx(&format!("no datagram {what}")));
    }

    // Nothing corrupted reached the application: no chunk failed its check, no
    // violation was raised; the transfers that ended early ended for the network.
    for (kind, code) in &reported {
        assert_ne!(
            kind.as_str(),
            AlertKind::Violation.as_str(),
            "{}",
            ctx(&format!("a violation: {code}"))
        );
        assert!(
            !(code.starts_with("chunk.")
                || code.starts_with("merkle.")
                || code.starts_with("manifest.")
                || code.starts_with("protocol.")
                || code == "transfer.wrong_chunk"),
            "{}",
            ctx(&format!("a transfer ended on {code}: {reported:?}"))
        );
    }

    // The provider's log holds the transfer (and the negotiation); both logs verify.
    provider.log().verify()?;
    consumer.log().verify()?;
    // Every transfer the provider started has its end in the provider's log (the
    // completed one logged as its receipt arrived, those whose connection died once the
    // provider noticed: its idle timeout) and its use in the provider's counters.
    let deadline = Instant::now() + IDLE * 3;
    let (kinds, started, ended) = loop {
        let kinds = event_kinds(&provider, &agreement)?;
        let (started, ended) = transfers(&provider, &agreement)?;
        let done = kinds.iter().any(|k| k == "transfer_completed")
            && started.iter().all(|t| ended.contains(t));
        if done || Instant::now() > deadline {
            break (kinds, started, ended);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for k in [
        "agreement_concluded",
        "transfer_started",
        "transfer_completed",
    ] {
        assert!(
            kinds.iter().any(|x| x == k),
            "{}",
            ctx(&format!("provider log: no {k}: {kinds:?}"))
        );
    }
    let open: Vec<_> = started.iter().filter(|t| !ended.contains(t)).collect();
    assert!(
        open.is_empty(),
        "{}",
        ctx(&format!(
            "the provider's log never ended {} of its {} transfers",
            open.len(),
            started.len()
        ))
    );
    assert_eq!(
        provider.served(&agreement).transfers,
        started.len() as u64,
        "{}",
        ctx("the provider's use count")
    );
    let consumer_kinds = event_kinds(&consumer, &agreement)?;
    assert!(
        consumer_kinds.iter().any(|x| x == "transfer_completed"),
        "{}",
        ctx(&format!("consumer log: {consumer_kinds:?}"))
    );
    drop(relay);
    consumer.shutdown().await;
    provider.shutdown().await;
    Ok(())
}

/// The transfers of `agreement` that `c`'s log says started, and those it says ended.
fn transfers(
    c: &tds_connector::Connector,
    agreement: &Hash256,
) -> Res<(Vec<Hash256>, Vec<Hash256>)> {
    use tds_provenance::event::EventBody;
    let log = c.log();
    let (mut started, mut ended) = (Vec::new(), Vec::new());
    for i in log.events_for(agreement)? {
        match log.event(i)?.body {
            EventBody::TransferStarted { transfer, .. } => started.push(transfer),
            EventBody::TransferCompleted { transfer, .. }
            | EventBody::TransferFailed { transfer, .. } => ended.push(transfer),
            _ => {}
        }
    }
    Ok((started, ended))
}
