//! Catalog, negotiate, fetch, and what both sides record.

use std::sync::Arc;

use tds_connector::{ConnectorEvent, FetchOptions};
use tds_core::Signer;
use tds_identity::Sector;
use tds_protocol::message::CatalogFilter;

use crate::common::*;

const OPEN: &str = "policy set;\n\npermit use\n  when purpose isA research;\n";

async fn happy_path(dir: &std::path::Path, durable: bool) -> Res {
    let mut space = Space::new()?;
    let grid = space.member(1, Sector::POWER, "CN-SX")?;
    let bank = space.member(2, Sector::FINANCE, "CN-SX")?;
    let (pdir, cdir) = (dir.join("provider"), dir.join("consumer"));
    std::fs::create_dir_all(&pdir)?;
    std::fs::create_dir_all(&cdir)?;
    let (pb, cb) = if durable {
        (Backend::Dir(&pdir), Backend::Dir(&cdir))
    } else {
        (Backend::Memory, Backend::Memory)
    };
    let provider = connector(&space, &grid, pb).await?;
    let consumer = connector(&space, &bank, cb).await?;
    let size = if full() { 256 << 20 } else { 8 << 20 };
    let bytes = data(size, 7);
    let (asset, _) = publish(
        &provider,
        &grid,
        dir,
        "asset.bin",
        &bytes,
        1 << 20,
        &AssetSpec::default(),
        OPEN,
    )
    .await?;
    let addr = provider.local_addr()?;
    let found = consumer.catalog_all(addr, CatalogFilter::default()).await?;
    assert_eq!(found.len(), 1);
    let entry = found.first().ok_or("empty catalog")?;
    assert_eq!(entry.manifest.id().to_string(), asset);
    let agreement = consumer
        .negotiate(addr, &entry.offer_bytes, None, "research".parse()?)
        .await?;
    let out = cdir.join("fetched.bin");
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s = seen.clone();
    let receipt = consumer
        .fetch(
            addr,
            &agreement.id(),
            FetchOptions {
                out: out.clone(),
                purpose: "research".parse()?,
                progress: Some(Arc::new(move |b, _| {
                    s.store(b, std::sync::atomic::Ordering::Relaxed);
                })),
                context: Default::default(),
                sink: None,
            },
        )
        .await?;
    assert_eq!(
        std::fs::read(&out)?,
        bytes,
        "the fetched bytes are the asset's"
    );
    assert_eq!(receipt.size, size as u64);
    assert_eq!(receipt.fetched, size as u64);
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), size as u64);
    // Both logs hold the receipt (the provider's is written as the transfer ends).
    let wait = std::time::Instant::now();
    loop {
        let kinds = |c: &tds_connector::Connector| -> Res<Vec<String>> {
            let log = c.log();
            let mut v = Vec::new();
            for i in log.events_for(&agreement.id())? {
                v.push(log.event(i)?.kind().to_owned());
            }
            Ok(v)
        };
        let (p, c) = (kinds(&provider)?, kinds(&consumer)?);
        if p.contains(&"transfer_completed".to_owned()) || wait.elapsed().as_secs() > 20 {
            assert!(p.contains(&"agreement_concluded".to_owned()), "{p:?}");
            assert!(p.contains(&"transfer_started".to_owned()), "{p:?}");
            assert!(p.contains(&"transfer_completed".to_owned()), "{p:?}");
            assert!(c.contains(&"agreement_concluded".to_owned()), "{c:?}");
            assert!(c.contains(&"transfer_completed".to_owned()), "{c:?}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    provider.log().verify()?;
    consumer.log().verify()?;
    assert_eq!(provider.served(&agreement.id()).transfers, 1);
    // The evidence bundle verifies offline against the authority alone, once the
    // authority's witness cosigned a checkpoint of each log.
    let witness_key = tds_core::SigningKey::from_seed(&[90; 32]);
    let memory = tds_provenance::witness::MemoryWitnessMemory::default();
    let members = space.trust()?;
    let witness = tds_provenance::Witness::new(&witness_key, &members, &memory);
    for (side, m) in [(&provider, &grid), (&consumer, &bank)] {
        let note = side.checkpoint()?;
        let vk = side.log().verifier_key()?;
        let c = witness.cosign(
            &vk,
            note.as_bytes(),
            None,
            &m.credential,
            tds_core::Timestamp::now(),
        )?;
        side.accept_cosigned(c.note.as_bytes(), &witness_key.public_key())?;
    }
    for side in [&provider, &consumer] {
        let bundle = side.evidence(&agreement.id())?;
        let trust = space.trust()?;
        let v = tds_provenance::evidence::verify(
            &bundle,
            &trust,
            &tds_objects::StandardVerifier::with_trust(&trust),
        )?;
        drop(v);
    }
    provider.shutdown().await;
    consumer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_in_memory() -> Res {
    let dir = tempfile::tempdir()?;
    happy_path(dir.path(), false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_on_redb() -> Res {
    let dir = tempfile::tempdir()?;
    happy_path(dir.path(), true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_the_agreement() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(3, Sector::POWER, "CN-SX")?;
    let bank = space.member(4, Sector::FINANCE, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let provider = connector(&space, &grid, Backend::Memory).await?;
    let consumer = connector(&space, &bank, Backend::Memory).await?;
    let mut events = provider.subscribe();
    let (_, offer) = publish(
        &provider,
        &grid,
        dir.path(),
        "a",
        &data(100_000, 1),
        65536,
        &AssetSpec::default(),
        OPEN,
    )
    .await?;
    let a = consumer
        .negotiate(provider.local_addr()?, &offer, None, "research".parse()?)
        .await?;
    let found = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(ConnectorEvent::AgreementConcluded { agreement, .. }) => return Some(agreement),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    })
    .await?;
    assert_eq!(found, Some(a.id()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_guard_and_overdue_duty() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(5, Sector::POWER, "CN-SX")?;
    let bank = space.member(6, Sector::FINANCE, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(tds_core::time::ManualClock::new(tds_core::Timestamp::now()));
    let build = |m: &Member| -> Res<tds_connector::ConnectorBuilder> {
        Ok(
            tds_connector::Connector::builder(m.key.clone(), m.credential.clone(), space.trust()?)
                .revocation_list(space.crl.clone())
                .clock(clock.clone())
                .memory(),
        )
    };
    let provider = build(&grid)?.start().await?;
    let consumer = build(&bank)?.start().await?;
    let mut events = consumer.subscribe();
    let policy = "policy set;\n\npermit use\n  when purpose isA research and count lteq 100\n  duty delete(within 1d);\n";
    let content = data(300_000, 2);
    let sink = Arc::new(MemSink::default());
    let (_, offer) = publish(
        &provider,
        &grid,
        dir.path(),
        "a",
        &content,
        65536,
        &AssetSpec::default(),
        policy,
    )
    .await?;
    let addr = provider.local_addr()?;
    let a = consumer
        .negotiate(addr, &offer, None, "research".parse()?)
        .await?;
    consumer
        .fetch(
            addr,
            &a.id(),
            // The integrator's own store instead of a file.
            FetchOptions::new(dir.path().join("out"), "research".parse()?).with_sink(sink.clone()),
        )
        .await?;
    assert!(
        sink.0.lock().map_err(|_| "poisoned")?.as_slice() == content.as_slice(),
        "the sink holds the asset"
    );
    assert!(!dir.path().join("out").exists(), "no file was written");
    // Usage control after the data arrived: exactly 100 uses.
    let guard = consumer.guard();
    for n in 1..=100u64 {
        let g = guard.check_use(&a.id(), tds_policy::Action::Use, &"research".parse()?)?;
        assert_eq!(g.use_number, n);
    }
    let e = guard
        .check_use(&a.id(), tds_policy::Action::Use, &"research".parse()?)
        .err()
        .ok_or("the 101st use was granted")?;
    assert_eq!(tds_core::ErrorCode::code(&e), "guard.denied", "{e}");
    // The delete duty: pending now, overdue after 25 h, with an alert.
    let pending = consumer.duties()?;
    assert!(
        pending
            .iter()
            .any(|d| d.duty.name() == "delete"
                && d.state == tds_connector::usage::DutyState::Pending),
        "{pending:?}"
    );
    clock.advance(25 * 3600 * 1000);
    let later = consumer.duties()?;
    assert!(
        later
            .iter()
            .any(|d| d.duty.name() == "delete"
                && d.state == tds_connector::usage::DutyState::Overdue),
        "{later:?}"
    );
    let alert = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(ConnectorEvent::Alert(a)) if a.kind == tds_connector::AlertKind::DutyOverdue => {
                    return Some(a)
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    })
    .await?
    .ok_or("no overdue alert")?;
    assert_eq!(alert.agreement, Some(a.id()));
    // Deleting the copy: uses stop, and the provider verifies and logs the receipt.
    let receipt = consumer.delete(addr, &a.id()).await?;
    assert!(!dir.path().join("out").exists());
    let e = guard
        .check_use(&a.id(), tds_policy::Action::Use, &"research".parse()?)
        .err()
        .ok_or("a use after deletion was granted")?;
    assert_eq!(tds_core::ErrorCode::code(&e), "guard.deleted");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let logged = loop {
        let log = provider.log();
        let mut hit = false;
        for i in log.events_for(&a.id())? {
            if let tds_provenance::EventBody::DutyFulfilled {
                receipt: Some(o), ..
            } = log.event(i)?.body
            {
                hit |= o.id == receipt;
            }
        }
        if hit || std::time::Instant::now() > deadline {
            break hit;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(logged, "the provider logged the deletion receipt");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_reaches_the_consumer() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(7, Sector::POWER, "CN-SX")?;
    let bank = space.member(8, Sector::FINANCE, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let provider = connector(&space, &grid, Backend::Memory).await?;
    let consumer = connector(&space, &bank, Backend::Memory).await?;
    let (_, offer) = publish(
        &provider,
        &grid,
        dir.path(),
        "a",
        &data(70_000, 4),
        65536,
        &AssetSpec::default(),
        OPEN,
    )
    .await?;
    let a = consumer
        .negotiate(provider.local_addr()?, &offer, None, "research".parse()?)
        .await?;
    assert!(
        provider.terminate(&a.id(), "breach").await?,
        "the consumer was told"
    );
    let e = consumer
        .guard()
        .check_use(&a.id(), tds_policy::Action::Use, &"research".parse()?)
        .err()
        .ok_or("a use under a terminated agreement was granted")?;
    assert_eq!(tds_core::ErrorCode::code(&e), "guard.terminated");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reports_follow_the_schedule() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(9, Sector::POWER, "CN-SX")?;
    let bank = space.member(10, Sector::FINANCE, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(tds_core::time::ManualClock::new(tds_core::Timestamp::now()));
    let build = |m: &Member| -> Res<tds_connector::ConnectorBuilder> {
        Ok(
            tds_connector::Connector::builder(m.key.clone(), m.credential.clone(), space.trust()?)
                .revocation_list(space.crl.clone())
                .clock(clock.clone())
                .memory(),
        )
    };
    let provider = build(&grid)?.start().await?;
    let consumer = build(&bank)?.start().await?;
    let policy =
        "policy set;\n\npermit use\n  when purpose isA research\n  duty report-usage(every 1h);\n";
    let (_, offer) = publish(
        &provider,
        &grid,
        dir.path(),
        "a",
        &data(100_000, 9),
        65536,
        &AssetSpec::default(),
        policy,
    )
    .await?;
    let addr = provider.local_addr()?;
    let a = consumer
        .negotiate(addr, &offer, None, "research".parse()?)
        .await?;
    consumer
        .fetch(
            addr,
            &a.id(),
            FetchOptions::new(dir.path().join("out"), "research".parse()?),
        )
        .await?;
    for _ in 0..3 {
        consumer
            .guard()
            .check_use(&a.id(), tds_policy::Action::Use, &"research".parse()?)?;
    }
    // An hour and a bit later the report is due: the watcher sends it by itself.
    clock.advance(61 * 60 * 1000);
    let _ = consumer.duties()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let report = loop {
        let log = provider.log();
        let mut found = None;
        for i in log.events_for(&a.id())? {
            if let tds_provenance::EventBody::UsageReported {
                object: Some(o), ..
            } = log.event(i)?.body
            {
                let v =
                    tds_protocol::signed::verify_usage_report(&o.bytes, &bank.key.public_key())?;
                found = Some(v.report().clone());
            }
        }
        if found.is_some() || std::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let report = report.ok_or("the provider logged no usage report")?;
    assert_eq!(report.uses, 3, "{report:?}");
    // The duty is fulfilled: the next deadline is on the schedule (two hours after the
    // agreement), still ahead, so the duty is no longer overdue.
    let duties = consumer.duties()?;
    let d = duties
        .iter()
        .find(|d| d.duty.name() == "report-usage")
        .ok_or("no report duty")?;
    assert_ne!(d.state, tds_connector::usage::DutyState::Overdue, "{d:?}");
    assert!(d.fulfilled.is_some(), "{d:?}");
    let now = tds_core::Clock::now(&*clock);
    assert!(d.due.is_some_and(|due| due > now), "{d:?}");
    Ok(())
}

/// A sink holding the fetched bytes in memory.
#[derive(Default)]
struct MemSink(std::sync::Mutex<Vec<u8>>);

impl tds_connector::DataSink for MemSink {
    fn write_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        let mut v = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let end = start + bytes.len();
        if v.len() < end {
            v.resize(end, 0);
        }
        v.get_mut(start..end)
            .ok_or_else(|| std::io::Error::other("range"))?
            .copy_from_slice(bytes);
        Ok(())
    }

    fn sync(&self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priced_agreements_are_metered_by_both_sides_in_signed_records() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(14, Sector::POWER, "CN-SX")?;
    let bank = space.member(15, Sector::FINANCE, "CN-SX")?;
    let provider = connector(&space, &grid, Backend::Memory).await?;
    let consumer = connector(&space, &bank, Backend::Memory).await?;
    let dir = tempfile::tempdir()?;
    let content = data(200_000, 7);
    let path = dir.path().join("priced");
    std::fs::write(&path, &content)?;
    let manifest = manifest_for(&grid, &path, 65536, &AssetSpec::default())?;
    let mut t = terms("policy set;\n\npermit use\n  when purpose isA research;\n")?;
    t.price = Some(tds_policy::contract::Price {
        amount: "125000".parse()?,
        currency: "CNY".parse()?,
    });
    let published = provider
        .publish(&manifest, tds_connector::Source::File(path), vec![t])
        .await?;
    let offer_id = published.offers.first().copied().ok_or("no offer")?;
    let offer = provider.offer(&offer_id)?.ok_or("no offer bytes")?;
    let addr = provider.local_addr()?;
    let a = consumer
        .negotiate(addr, &offer, None, "research".parse()?)
        .await?;
    consumer
        .fetch(
            addr,
            &a.id(),
            FetchOptions::new(dir.path().join("out"), "research".parse()?),
        )
        .await?;
    // Each side meters the transfer once it ended; the provider's may land a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for (side, who) in [(&provider, &grid), (&consumer, &bank)] {
        let exported = loop {
            let e = side.export_usage(Some(&a.id()))?;
            if !e.is_empty() || std::time::Instant::now() > deadline {
                break e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let line: serde_json::Value =
            serde_json::from_str(exported.lines().next().ok_or("no usage exported")?)?;
        assert_eq!(line["bytes"], 200_000, "{line}");
        assert_eq!(line["currency"], "CNY", "{line}");
        assert_eq!(line["uses"], 1, "{line}");
        // The signed record verifies under the recorder's key and says the same.
        let signed = hex::decode(line["usage_record"].as_str().ok_or("no record")?)?;
        let v = tds_protocol::signed::verify_usage_record(&signed, &who.key.public_key())?;
        let r = v.record();
        assert_eq!((r.bytes, r.uses, r.agreement), (200_000, 1, a.id()));
        assert_eq!(r.amount.0.to_string(), line["amount"].to_string());
        // The log event at log_index carries the same bytes.
        let index = line["log_index"].as_u64().ok_or("no log index")?;
        match side.log().event(index)?.body {
            tds_provenance::EventBody::UsageReported {
                object: Some(o), ..
            } => assert_eq!(o.bytes, signed),
            other => return Err(format!("log event {index} is {other:?}").into()),
        }
    }
    Ok(())
}
