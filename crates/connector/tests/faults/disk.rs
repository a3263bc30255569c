//! Full disks. Two shapes:
//!
//! - a store shim that fails every write while "full" (always runs): refusals carry
//!   codes, nothing is acknowledged that is not stored, the provider keeps serving
//!   catalogs and transfers of agreements it holds, keeps counting the uses it could not
//!   store, and takes writes again when space returns;
//! - a real 64 MiB tmpfs under the provider's data directory and the consumer's output
//!   (runs where `mount -t tmpfs` works, i.e. as root; says so and passes otherwise): the
//!   same promises with redb's and the log's real `ENOSPC`, recovery after space returns
//!   (with a restart where the log refuses further appends), and a fetch that hit the
//!   full disk resuming once there is room.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Instant;

use tds_connector::store::{RedbStore, Table};
use tds_connector::{AlertKind, ConnectorError, ConnectorEvent, FetchOptions};
use tds_core::hash::Hash256;
use tds_core::ErrorCode;
use tds_identity::Sector;
use tokio::sync::broadcast;

use crate::common::*;
use crate::full_store::FullStore;

const OPEN: &str = "policy set;\n\npermit use\n  when purpose isA research;\n";
const ONCE: &str = "policy set;\n\npermit use\n  when purpose isA research and count lteq 1;\n";

/// The code a refusal carries, else the error's own.
fn code_of(e: &ConnectorError) -> String {
    e.refusal()
        .map_or_else(|| e.code().to_owned(), |r| r.code.clone())
}

fn alerts(rx: &mut broadcast::Receiver<ConnectorEvent>) -> Vec<(AlertKind, String)> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let ConnectorEvent::Alert(a) = e {
            v.push((a.kind, a.code));
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_with_codes_keeps_serving_and_recovers() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(71, Sector::POWER, "CN-SX")?;
    let bank = space.member(72, Sector::FINANCE, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let pdir = dir.path().join("provider");
    let shim = Arc::new(FullStore::new(Arc::new(RedbStore::open(&pdir)?)));
    let provider = connector_with(
        &space,
        &grid,
        Backend::Dir(&pdir),
        tds_connector::ConnectorConfig::default(),
        Some(shim.clone()),
    )
    .await?;
    let mut provider_events = provider.subscribe();
    let bytes = data(1 << 20, 71);
    let (_, open) = publish(
        &provider,
        &grid,
        dir.path(),
        "open.bin",
        &bytes,
        256 << 10,
        &AssetSpec::default(),
        OPEN,
    )
    .await?;
    let (_, once) = publish(
        &provider,
        &grid,
        dir.path(),
        "once.bin",
        &bytes,
        256 << 10,
        &AssetSpec::default(),
        ONCE,
    )
    .await?;
    let consumer = connector(&space, &bank, Backend::Memory).await?;
    let addr = provider.local_addr()?;
    let research = || "research".parse::<tds_policy::Purpose>();
    let mut acked = vec![
        consumer
            .negotiate(addr, &open, None, research()?)
            .await?
            .id(),
        consumer
            .negotiate(addr, &once, None, research()?)
            .await?
            .id(),
    ];
    let (held, limited) = (acked[0], acked[1]);

    // The disk fills.
    shim.set_full(true);
    let e = consumer
        .negotiate(addr, &open, None, research()?)
        .await
        .err()
        .ok_or("a negotiation succeeded on a full store")?;
    assert_eq!(code_of(&e), "kv.io", "{e}");
    assert!(e.to_string().contains("kv.io"), "{e}");
    // Reads go on: the catalog, and transfers of agreements already held.
    let page = consumer.catalog(addr, Default::default(), None).await?;
    assert_eq!(page.items.len(), 2);
    let out = dir.path().join("open.out");
    consumer
        .fetch(addr, &held, FetchOptions::new(out.clone(), research()?))
        .await?;
    assert_eq!(std::fs::read(&out)?, bytes);
    // A use the provider could not store still counts: the second is refused.
    let out = dir.path().join("once.out");
    consumer
        .fetch(addr, &limited, FetchOptions::new(out.clone(), research()?))
        .await?;
    let again = consumer
        .fetch(
            addr,
            &limited,
            FetchOptions::new(dir.path().join("once-again.out"), research()?),
        )
        .await
        .err()
        .ok_or("a second use of a count-1 agreement was served")?;
    assert_eq!(code_of(&again), "policy.unmet.count", "{again}");
    let raised = alerts(&mut provider_events);
    assert!(
        raised
            .iter()
            .any(|(k, c)| *k == AlertKind::Storage && c == "kv.io"),
        "{raised:?}"
    );

    // Space returns: writes are taken again, without a restart.
    shim.set_full(false);
    acked.push(
        consumer
            .negotiate(addr, &open, None, research()?)
            .await?
            .id(),
    );
    let refused = shim.refused();

    // Restarted, the provider holds every agreement it acknowledged, and its log
    // verifies.
    provider.shutdown().await;
    drop(provider);
    drop(shim);
    let provider = connector(&space, &grid, Backend::Dir(&pdir)).await?;
    provider.log().verify()?;
    for a in &acked {
        assert!(
            provider
                .store()
                .get(Table::Agreements, a.as_bytes())?
                .is_some(),
            "acknowledged agreement {a} lost"
        );
        assert!(
            event_kinds(&provider, a)?
                .iter()
                .any(|k| k == "agreement_concluded"),
            "acknowledged agreement {a} not logged"
        );
    }
    println!(
        "full store: {refused} writes refused with kv.io; {} agreements acknowledged and \
         kept; a count-1 agreement's unstored use still counted",
        acked.len()
    );
    consumer.shutdown().await;
    provider.shutdown().await;
    Ok(())
}

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `path` (a new file) until it refuses; returns its size.
fn fill(path: &Path) -> std::io::Result<u64> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let block = vec![0xa5u8; 64 << 10];
    let mut written = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => return Err(e),
        }
    }
    let _ = f.sync_all();
    Ok(written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_file_system_refuses_with_codes_and_recovers_when_space_returns() -> Res {
    let dir = tempfile::tempdir()?;
    let mnt = dir.path().join("mnt");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "64m") else {
        println!("full file system: skipped (mounting a tmpfs needs root)");
        return Ok(());
    };
    let started = Instant::now();
    let mut space = Space::new()?;
    let grid = space.member(73, Sector::POWER, "CN-SX")?;
    let bank = space.member(74, Sector::FINANCE, "CN-SX")?;
    let pdir = mnt.join("provider");
    let provider = connector(&space, &grid, Backend::Dir(&pdir)).await?;
    let mut provider_events = provider.subscribe();
    let bytes = data(2 << 20, 73);
    let (_, offer) = publish(
        &provider,
        &grid,
        dir.path(),
        "asset.bin",
        &bytes,
        256 << 10,
        &AssetSpec::default(),
        OPEN,
    )
    .await?;
    let consumer = connector(&space, &bank, Backend::Memory).await?;
    let addr = provider.local_addr()?;
    let research = || "research".parse::<tds_policy::Purpose>();
    let mut acked = vec![consumer
        .negotiate(addr, &offer, None, research()?)
        .await?
        .id()];
    let fetched_before = acked[0];

    // Fill the file system, then negotiate until the provider refuses.
    let filler = mnt.join("filler");
    let filled = fill(&filler)?;
    let mut codes = Vec::new();
    let mut tries = 0;
    while codes.len() < 3 && tries < 200 {
        tries += 1;
        match consumer.negotiate(addr, &offer, None, research()?).await {
            Ok(a) => acked.push(a.id()),
            Err(e) => codes.push((code_of(&e), e.to_string())),
        }
    }
    assert!(
        !codes.is_empty(),
        "{tries} negotiations on a full disk all succeeded"
    );
    for (code, message) in &codes {
        assert!(
            ["kv.io", "store.io", "store.failed"].contains(&code.as_str()),
            "{code}: {message}"
        );
    }
    // Reads go on: the catalog.
    let page = consumer.catalog(addr, Default::default(), None).await?;
    assert_eq!(page.items.len(), 1);
    // A fetch into the full file system fails with its code, nothing unverified kept.
    let out = mnt.join("fetched.bin");
    let e = consumer
        .fetch(
            addr,
            &fetched_before,
            FetchOptions::new(out.clone(), research()?),
        )
        .await
        .err()
        .ok_or("a fetch into a full file system succeeded")?;
    let fetch_code = code_of(&e);
    assert!(
        ["connector.write_failed", "connector.io"].contains(&fetch_code.as_str())
            || e.to_string().contains("No space left"),
        "{fetch_code}: {e}"
    );
    let raised = alerts(&mut provider_events);

    // Space returns.
    std::fs::remove_file(&filler)?;
    let restarted = match consumer.negotiate(addr, &offer, None, research()?).await {
        Ok(a) => {
            acked.push(a.id());
            None
        }
        Err(e) => Some(code_of(&e)),
    };
    // The provider restarted (the log takes no appends after a failed write until it is
    // reopened), and every agreement it acknowledged is there.
    provider.shutdown().await;
    drop(provider);
    let provider = connector(&space, &grid, Backend::Dir(&pdir)).await?;
    let addr = provider.local_addr()?;
    provider.log().verify()?;
    acked.push(
        consumer
            .negotiate(addr, &offer, None, research()?)
            .await?
            .id(),
    );
    for a in &acked {
        assert!(
            provider
                .store()
                .get(Table::Agreements, a.as_bytes())?
                .is_some(),
            "acknowledged agreement {a} lost"
        );
        assert!(
            event_kinds(&provider, a)?
                .iter()
                .any(|k| k == "agreement_concluded"),
            "acknowledged agreement {a} not logged"
        );
    }
    // Negotiations refused while full whose event the preallocated log took, but not
    // their record: the start completed them (the provider holds them; their consumer,
    // told `kv.io`, does not).
    let held = provider
        .store()
        .scan_prefix(Table::Agreements, b"", 10_000)?
        .len();
    // The interrupted fetch resumes into the file system with room again.
    let r = consumer
        .fetch(
            addr,
            &fetched_before,
            FetchOptions::new(out.clone(), research()?),
        )
        .await?;
    assert_eq!(
        Hash256::sha256(&std::fs::read(&out)?),
        Hash256::sha256(&bytes)
    );
    println!(
        "full file system (64 MiB tmpfs, {} KiB filler): {} negotiations acknowledged and \
         kept, refusals {:?}; fetch into the full disk: {fetch_code}; provider alerts \
         {raised:?}; after space returned, before a restart: {}; the provider holds {held} \
         agreements after its restart; the resumed fetch fetched {} B, resumed {} B; \
         {:.1} s",
        filled >> 10,
        acked.len(),
        codes.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        restarted
            .as_deref()
            .map_or("negotiations succeed".to_owned(), |c| format!(
                "still refused ({c})"
            )),
        r.fetched,
        r.resumed,
        started.elapsed().as_secs_f64(),
    );
    consumer.shutdown().await;
    provider.shutdown().await;
    Ok(())
}

/// A sink over a file whose write at one offset fails once (the disk was full then).
struct FailingOnce {
    file: std::fs::File,
    at: u64,
    failed: AtomicBool,
}

impl tds_connector::DataSink for FailingOnce {
    fn write_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        if offset == self.at && !self.failed.swap(true, SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        std::os::unix::fs::FileExt::write_all_at(&self.file, bytes, offset)
    }

    fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_the_consumer_could_not_write_is_fetched_again() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(75, Sector::POWER, "CN-SX")?;
    let bank = space.member(76, Sector::FINANCE, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let provider = connector(&space, &grid, Backend::Memory).await?;
    let chunk = 256u64 << 10;
    let bytes = data(4 << 20, 75);
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
    let consumer = connector(&space, &bank, Backend::Dir(&dir.path().join("c"))).await?;
    let addr = provider.local_addr()?;
    let a = consumer
        .negotiate(addr, &offer, None, "research".parse()?)
        .await?
        .id();
    let out = dir.path().join("out.bin");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(&out)?;
    let sink = Arc::new(FailingOnce {
        file,
        at: 5 * chunk,
        failed: AtomicBool::new(false),
    });
    let mut options = FetchOptions::new(out.clone(), "research".parse()?);
    options.sink = Some(sink.clone());
    // The first transfer ends at the failed write; the fetch's next one resumes.
    let r = consumer.fetch(addr, &a, options).await?;
    assert!(sink.failed.load(SeqCst));
    assert_eq!(r.attempts, 2, "{r:?}");
    assert_eq!(r.fetched, bytes.len() as u64, "{r:?}");
    assert_eq!(
        std::fs::read(&out)?,
        bytes,
        "a chunk never written counted as held"
    );
    consumer.shutdown().await;
    provider.shutdown().await;
    Ok(())
}
