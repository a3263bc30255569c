//! `tds-bench load --tds PATH --clients N`: one reference node (`tds serve`, its own
//! process, durable state) and N consumer connectors in this process, each with its own
//! identity (admitted by the node's authority) and its own QUIC endpoint.
//!
//! 1. **Idle connections.** Every client connects (a catalog query) and stays connected;
//!    the node's resident memory before and after gives the memory per idle peer
//!    connection. Connection attempts beyond the node's handshake limit
//!    (`max_pending_handshakes`, 128) are refused at once by the node and retried by the
//!    client after a short pause: the number of such retries shows the limit holding.
//! 2. **Load.** Every client at once negotiates an agreement for the node's asset and
//!    fetches it (verified, written to a file): throughput, latency percentiles, errors
//!    and the node's peak resident memory (`VmHWM`).
//! 3. **One greedy peer.** One client runs 4 × `max_concurrent_streams` catalog queries at
//!    once on its one connection: the node lets 64 be open at a time (QUIC stream limit:
//!    the rest wait for credit) and every query is answered.
//! 4. **The raw primitive.** The same number of raw quinn connections (TDS TLS and
//!    transport parameters, one 1 KiB round trip each, as the hello) to a raw echo server
//!    in its own process: its memory per idle connection, and the node's as a ratio of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tds_connector::{Connector, FetchOptions};
use tds_core::time::{SystemClock, DAY_MS};
use tds_core::{Clock, SigningKey};
use tds_identity::{Admission, AuthorityStore, Role, TrustStore};
use tds_protocol::message::CatalogFilter;

use crate::net::json_line;
use crate::node::{hwm_kib, path, rss_kib, setup_node, tds, text, NodeBenchError, NodeProcess};

/// Options of the load benchmark.
#[derive(Clone, Debug)]
pub struct LoadBench {
    /// Client connections (each its own identity and endpoint).
    pub clients: usize,
    /// Size of the asset every client fetches.
    pub size: u64,
    /// Attempts per client call before it counts as an error.
    pub attempts: u32,
}

fn err(e: impl std::fmt::Display) -> NodeBenchError {
    NodeBenchError::Tds(e.to_string())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

/// Runs `call` up to `attempts` times, pausing 20-200 ms between tries; counts retries.
async fn with_retries<T, F, Fut>(
    attempts: u32,
    retries: &AtomicU64,
    mut call: F,
) -> Result<T, tds_connector::ConnectorError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tds_connector::ConnectorError>>,
{
    let mut n = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if n + 1 < attempts => {
                n += 1;
                retries.fetch_add(1, Ordering::Relaxed);
                let pause = 20 * u64::from(n.min(10));
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let _ = e;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs the benchmark with the `tds` binary at `bin`; one JSON line.
pub async fn run(bin: &Path, bench: LoadBench) -> Result<String, NodeBenchError> {
    let dir = tempfile::Builder::new()
        .prefix("tds-bench-load-")
        .tempdir()?;
    let (auth, home, authority_hex) = setup_node(bin, dir.path())?;

    // The node, serving.
    let node = NodeProcess::spawn(bin, &home, "error")?;
    let pid = node.id();
    let ready = &node.ready;
    let addr: SocketAddr = text(ready, "listen")?.parse().map_err(err)?;

    // Its asset (through its admin API).
    let file = dir.path().join("asset.bin");
    let block: Vec<u8> = (0..bench.size).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &block)?;
    let policy = dir.path().join("p.tdsp");
    std::fs::write(
        &policy,
        "policy set;\n\npermit use\n  when purpose isA research;\n",
    )?;
    tds(
        bin,
        &[
            "asset",
            "add",
            "--home",
            path(&home)?,
            path(&file)?,
            "--title",
            "Load test asset",
            "--classification",
            "general",
            "--policy",
            path(&policy)?,
        ],
    )?;

    // The clients' identities, admitted by the node's authority (its home, in process).
    let now = SystemClock.now();
    let (credentials, crl) = {
        let store =
            tds_identity::store::DirAuthorityStore::open(&auth, &mut |_| {}).map_err(err)?;
        let mut authority = store.load().map_err(err)?;
        let mut out = Vec::with_capacity(bench.clients);
        for i in 0..bench.clients {
            let key = Arc::new(SigningKey::generate().map_err(err)?);
            let issued = authority
                .admit(
                    &Admission {
                        subject_key: key.public_key(),
                        name: format!("client {i}"),
                        sectors: vec![tds_identity::Sector::POWER],
                        roles: vec![Role::Consumer],
                        jurisdiction: "CN".parse().map_err(|_| err("region"))?,
                        not_before: now,
                        not_after: now.saturating_add_millis(DAY_MS),
                    },
                    now,
                )
                .map_err(err)?;
            out.push((key, issued.into_envelope()));
        }
        let crl = authority
            .revocation_list(now, now.saturating_add_millis(DAY_MS))
            .map_err(err)?
            .into_envelope();
        store.save(authority.state()).map_err(err)?;
        (out, crl)
    };
    let authority_key = tds_core::PublicKey::from_hex(&authority_hex).map_err(err)?;
    let mut clients = Vec::with_capacity(bench.clients);
    for (key, credential) in credentials {
        let mut trust = TrustStore::new();
        trust.add_authority(authority_key);
        trust.add_revocation_list(&crl, now).map_err(err)?;
        let signer: Arc<dyn tds_core::Signer> = key;
        let c = Connector::builder(signer, credential, trust)
            .memory()
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .revocation_list(crl.clone())
            .start()
            .await
            .map_err(err)?;
        clients.push(Arc::new(c));
    }

    // 1. Idle connections.
    eprintln!("load: {} clients started; connecting", clients.len());
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_kib(pid).unwrap_or(0);
    let connect_retries = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in &clients {
        let (c, retries, attempts) = (c.clone(), connect_retries.clone(), bench.attempts);
        tasks.push(tokio::spawn(async move {
            with_retries(attempts, &retries, || {
                c.catalog_all(addr, CatalogFilter::default())
            })
            .await
        }));
    }
    let mut offer = None;
    let mut connect_errors = 0u64;
    for task in tasks {
        match task.await.map_err(err)? {
            Ok(items) => {
                if offer.is_none() {
                    offer = items.into_iter().next().map(|i| i.offer_bytes);
                }
            }
            Err(_) => connect_errors += 1,
        }
    }
    let connect_s = t.elapsed().as_secs_f64();
    let offer = offer.ok_or_else(|| err("no client found the node's offer"))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_kib(pid).unwrap_or(0);
    let per_idle_kib = rss_idle.saturating_sub(rss_before) as f64 / bench.clients.max(1) as f64;

    eprintln!(
        "load: connected in {connect_s:.1} s ({connect_errors} errors); negotiating and fetching"
    );
    // 2. Load: every client negotiates and fetches at once.
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir)?;
    let load_retries = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let (c, retries, attempts) = (c.clone(), load_retries.clone(), bench.attempts);
        let offer = offer.clone();
        let out: PathBuf = out_dir.join(format!("{i}.bin"));
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let purpose: tds_policy::Purpose = "research"
                .parse()
                .map_err(|_| tds_connector::ConnectorError::Closed("purpose".into()))?;
            let agreement = with_retries(attempts, &retries, || {
                c.negotiate(addr, &offer, None, purpose.clone())
            })
            .await?;
            let id = agreement.id();
            let receipt = with_retries(attempts, &retries, || {
                c.fetch(addr, &id, FetchOptions::new(out.clone(), purpose.clone()))
            })
            .await?;
            Ok::<_, tds_connector::ConnectorError>((
                start.elapsed().as_secs_f64() * 1000.0,
                receipt.size,
            ))
        }));
    }
    let mut lat = Vec::new();
    let (mut errors, mut bytes) = (0u64, 0u64);
    let mut first_error = None;
    for task in tasks {
        match task.await.map_err(err)? {
            Ok((ms, b)) => {
                lat.push(ms);
                bytes += b;
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let load_s = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let peak_kib = hwm_kib(pid).unwrap_or(0);

    eprintln!(
        "load: {} done, {errors} errors in {load_s:.1} s; one greedy peer",
        lat.len()
    );
    // 3. One greedy peer: 256 catalog queries at once on one connection.
    let greedy = clients.first().cloned().ok_or_else(|| err("no clients"))?;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..256 {
        let g = greedy.clone();
        tasks.push(tokio::spawn(async move {
            g.catalog(addr, CatalogFilter::default(), None).await
        }));
    }
    // Bounded: a query not answered within 30 s counts as not answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (mut greedy_ok, mut greedy_unanswered) = (0u64, 0u64);
    for task in tasks {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(done) => {
                if done.map_err(err)?.is_ok() {
                    greedy_ok += 1;
                }
            }
            Err(_) => greedy_unanswered += 1,
        }
    }
    let greedy_ms = t.elapsed().as_secs_f64() * 1000.0;
    let rss_end = rss_kib(pid).unwrap_or(0);

    // All clients at once: each `shutdown` may wait up to 5 s for its endpoint to go
    // idle, so one after another 1,000 of them could take over an hour.
    eprintln!("load: shutting {} clients down", clients.len());
    let t = Instant::now();
    let mut closing = tokio::task::JoinSet::new();
    for c in clients.drain(..) {
        closing.spawn(async move { c.shutdown().await });
    }
    let all_closed = tokio::time::timeout(Duration::from_secs(30), async {
        while closing.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !all_closed {
        eprintln!(
            "load: {} clients not shut down after 30 s; going on",
            closing.len()
        );
        closing.abort_all();
    }
    let clients_shutdown_s = t.elapsed().as_secs_f64();
    eprintln!("load: stopping the node");
    drop(node);
    // 4. The raw primitive: as many raw quinn connections (same TLS and transport
    //    parameters, one hello-sized round trip each) to a raw echo server.
    eprintln!(
        "load: raw quinn baseline, {} idle connections",
        bench.clients
    );
    let exe = std::env::current_exe()?;
    let raw_per_idle_kib = crate::net::raw_idle_kib(&exe, bench.clients)
        .await
        .map_err(err)?;
    let ok = lat.len() as f64;
    Ok(json_line(&[
        ("bench", "load".into()),
        ("clients", (bench.clients as u64).into()),
        ("asset_bytes", bench.size.into()),
        ("connect_s", connect_s.into()),
        (
            "connect_retries",
            connect_retries.load(Ordering::Relaxed).into(),
        ),
        ("connect_errors", connect_errors.into()),
        ("node_rss_before_mib", (rss_before as f64 / 1024.0).into()),
        ("node_rss_idle_mib", (rss_idle as f64 / 1024.0).into()),
        ("rss_per_idle_connection_kib", per_idle_kib.into()),
        (
            "raw_quinn_rss_per_idle_connection_kib",
            raw_per_idle_kib.into(),
        ),
        (
            "rss_per_idle_vs_raw_quinn",
            (per_idle_kib / raw_per_idle_kib.max(1e-9)).into(),
        ),
        ("load_s", load_s.into()),
        ("clients_shutdown_s", clients_shutdown_s.into()),
        (
            "agreements_and_fetches_per_s",
            (ok / load_s.max(1e-9)).into(),
        ),
        ("latency_p50_ms", percentile(&lat, 0.5).into()),
        ("latency_p99_ms", percentile(&lat, 0.99).into()),
        ("latency_max_ms", percentile(&lat, 1.0).into()),
        ("load_retries", load_retries.load(Ordering::Relaxed).into()),
        ("errors", errors.into()),
        (
            "first_error",
            first_error.map_or(serde_json::Value::Null, Into::into),
        ),
        ("bytes_fetched", bytes.into()),
        ("node_peak_rss_mib", (peak_kib as f64 / 1024.0).into()),
        ("greedy_queries_ok", greedy_ok.into()),
        ("greedy_queries_unanswered_30s", greedy_unanswered.into()),
        ("greedy_ms", greedy_ms.into()),
        ("node_rss_end_mib", (rss_end as f64 / 1024.0).into()),
        (
            "load_1m",
            crate::net::load_1m().map_or(serde_json::Value::Null, Into::into),
        ),
    ]))
}
