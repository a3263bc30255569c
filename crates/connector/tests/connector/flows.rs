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
    let (_, offer) = publish(
        &provider,
        &grid,
        dir.path(),
        "a",
        &data(300_000, 2),
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
            FetchOptions {
                out: dir.path().join("out"),
                purpose: "research".parse()?,
                progress: None,
                context: Default::default(),
            },
        )
        .await?;
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
