//! `tds-bench negotiate`: contract negotiations through the connector API, against raw
//! primitives measured in the same run.
//!
//! One provider and one consumer [`tds_connector::Connector`] in this process, each with
//! its redb store and provenance log in its own data directory (durable: an agreement is
//! acknowledged only once stored and logged, by the provider before it sends FINALIZED
//! and by the consumer before `negotiate` returns). The provider publishes one small
//! asset under one open offer; the consumer reads the catalog (which opens the one
//! connection every negotiation then uses), makes `warmup` negotiations that are not
//! timed, then `count` negotiations from `concurrency` tokio tasks, each timing its
//! `negotiate` call.
//!
//! The baselines, on the same loopback with the same keys, TLS configuration and QUIC
//! transport parameters, with the same concurrency: a raw quinn request/response on one
//! open connection (a new bidirectional stream per request, a 1 KiB request and reply:
//! `raw_rtt_ms`), the same with an Ed25519 signature made and checked on each side
//! (`raw_signed_rtt_ms`), and one durable redb commit of one put on a file in the same
//! directory (`raw_commit_ms`). A negotiation is two round trips of signed messages and
//! two durable commits one after the other (the provider's, then the consumer's), so
//! `floor_ms` = 2 × `raw_signed_rtt_ms` + 2 × `raw_commit_ms` is what this design cannot
//! go below at concurrency 1.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tds_connector::store::{Store, Table};
use tds_core::SigningKey;
use tds_policy::Purpose;
use tds_transport::TransportConfig;

use crate::net::{
    cpu_seconds, cpu_since, json_line, load_1m, quinn_err, raw_endpoints, setup, NetBenchError,
    Space, TransferBench,
};
use crate::pair::Pair;

/// What `tds-bench negotiate` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NegotiateBench {
    /// Negotiations timed.
    pub count: u64,
    /// Negotiations in flight.
    pub concurrency: u64,
    /// Negotiations made first, one at a time, not timed.
    pub warmup: u64,
    /// Raw round trips of each kind (at most `count`).
    pub raw: u64,
}

/// The size of each raw request and reply (a contract request is about this big).
const RAW_MESSAGE: usize = 1024;

/// Raw durable commits timed for `raw_commit_ms`.
const RAW_COMMITS: u64 = 200;

/// Runs `count` calls of `op` from `concurrency` tasks; returns each call's time, each
/// call's output and the wall time of the whole.
pub(crate) async fn concurrent<T, F, Fut>(
    count: u64,
    concurrency: u64,
    op: F,
) -> Result<(Vec<Duration>, Vec<T>, Duration), NetBenchError>
where
    T: Send + 'static,
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, NetBenchError>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut outs = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let t = Instant::now();
                    outs.push(op().await?);
                    times.push(t.elapsed());
                }
                Ok::<_, NetBenchError>((times, outs))
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut outs = Vec::new();
    for t in tasks {
        let (tt, oo) = t
            .await
            .map_err(|e| NetBenchError::Setup(format!("a bench task failed: {e}")))??;
        times.extend(tt);
        outs.extend(oo);
    }
    Ok((times, outs, started.elapsed()))
}

/// Quantiles in milliseconds of sorted samples.
pub(crate) struct Quantiles(Vec<Duration>);

impl Quantiles {
    pub(crate) fn new(mut samples: Vec<Duration>) -> Quantiles {
        samples.sort_unstable();
        Quantiles(samples)
    }

    /// The sample at quantile `q` (nearest rank), in milliseconds.
    pub(crate) fn ms(&self, q: f64) -> f64 {
        let n = self.0.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((n as f64) * q).ceil().max(1.0) as usize;
        self.0
            .get(rank.min(n) - 1)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

fn per_sec(n: u64, wall: Duration) -> f64 {
    let s = wall.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Rounded to 3 decimals (the JSON stays readable).
pub(crate) fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Rows of `table` (paged scans).
fn rows(store: &Arc<dyn Store>, table: Table) -> Result<u64, NetBenchError> {
    let mut n = 0u64;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .scan_prefix_after(table, b"", after.as_deref(), 1024)
            .map_err(setup("scanning the store"))?;
        let Some((last, _)) = page.last() else {
            return Ok(n);
        };
        after = Some(last.clone());
        n += page.len() as u64;
    }
}

/// The raw round trips: `count` requests from `concurrency` tasks on one raw quinn
/// connection, a new bidirectional stream each; with `signed`, each side signs what it
/// sends (Ed25519, the last 64 bytes) and checks what it gets.
async fn raw_round_trips(
    space: &Space,
    count: u64,
    concurrency: u64,
    signed: bool,
) -> Result<Timed, NetBenchError> {
    raw_exchanges(space, count, concurrency, signed, RAW_MESSAGE).await
}

/// As [`raw_round_trips`], with unsigned replies of `reply_len` bytes (a signed reply is
/// always [`RAW_MESSAGE`] long).
pub(crate) async fn raw_exchanges(
    space: &Space,
    count: u64,
    concurrency: u64,
    signed: bool,
    reply_len: usize,
) -> Result<Timed, NetBenchError> {
    let reply_len = if signed { RAW_MESSAGE } else { reply_len };
    let read_max = reply_len.max(RAW_MESSAGE).saturating_add(1);
    let config = TransportConfig::default();
    let (server, client, client_config) = raw_endpoints(space, &config)?;
    let addr = server.local_addr().map_err(quinn_err)?;
    let server_key = Arc::new(SigningKey::from_seed(&[203; 32]));
    let client_key = Arc::new(SigningKey::from_seed(&[204; 32]));
    let (server_pub, client_pub) = (server_key.public_key(), client_key.public_key());
    let serving = {
        let config = config.clone();
        tokio::spawn(async move {
            let Some(incoming) = server.accept().await else {
                return;
            };
            let Ok(conn) = incoming.await else { return };
            config.open_up(&conn);
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let key = server_key.clone();
                tokio::spawn(async move {
                    let Ok(request) = recv.read_to_end(1 << 16).await else {
                        return;
                    };
                    let reply = if signed {
                        if !verify_tail(&client_pub, &request) {
                            return;
                        }
                        signed_message(&key)
                    } else {
                        vec![0x5a; reply_len]
                    };
                    if send.write_all(&reply).await.is_ok() {
                        let _ = send.finish();
                    }
                });
            }
        })
    };
    let conn = client
        .connect_with(client_config, addr, "tds")
        .map_err(quinn_err)?
        .await
        .map_err(quinn_err)?;
    config.open_up(&conn);
    let op = {
        let conn = conn.clone();
        move || {
            let (conn, key) = (conn.clone(), client_key.clone());
            async move {
                let (mut send, mut recv) = conn.open_bi().await.map_err(quinn_err)?;
                let request = if signed {
                    signed_message(&key)
                } else {
                    vec![0x5a; RAW_MESSAGE]
                };
                send.write_all(&request).await.map_err(quinn_err)?;
                send.finish().map_err(quinn_err)?;
                let reply = recv.read_to_end(read_max).await.map_err(quinn_err)?;
                if reply.len() != reply_len || (signed && !verify_tail(&server_pub, &reply)) {
                    return Err(NetBenchError::Quinn("a bad raw reply".into()));
                }
                Ok(())
            }
        }
    };
    // A few round trips warm the connection and the runtime.
    concurrent(concurrency.clamp(1, 32), concurrency, op.clone()).await?;
    let cpu = cpu_seconds();
    let (times, _, wall) = concurrent(count, concurrency, op).await?;
    let cpu_s = cpu_since(cpu);
    conn.close(0u32.into(), b"");
    client.close(0u32.into(), b"");
    serving.abort();
    Ok(Timed {
        times: Quantiles::new(times),
        per_sec: per_sec(count, wall),
        cpu_ms_per_op: cpu_per_op(cpu_s, count),
    })
}

/// What a timed run of operations measured.
pub(crate) struct Timed {
    pub(crate) times: Quantiles,
    pub(crate) per_sec: f64,
    /// Process CPU milliseconds per operation (every thread, both sides).
    pub(crate) cpu_ms_per_op: Option<f64>,
}

fn cpu_per_op(cpu_s: Option<f64>, count: u64) -> Option<f64> {
    cpu_s.map(|s| r3(s * 1e3 / count.max(1) as f64))
}

/// `RAW_MESSAGE` bytes: a payload and its Ed25519 signature at the end.
fn signed_message(key: &SigningKey) -> Vec<u8> {
    let mut m = vec![0x5a; RAW_MESSAGE - 64];
    let sig = key.sign(&m);
    m.extend_from_slice(&sig);
    m
}

fn verify_tail(key: &tds_core::PublicKey, m: &[u8]) -> bool {
    let Some(split) = m.len().checked_sub(64) else {
        return false;
    };
    let (payload, sig) = m.split_at(split);
    key.verify(payload, sig).is_ok()
}

/// Durable redb commits of one put each on a fresh file in `dir`, one at a time.
fn raw_commits(dir: &Path, count: u64) -> Result<Quantiles, NetBenchError> {
    fn err(e: impl std::fmt::Display) -> NetBenchError {
        NetBenchError::Setup(format!("raw redb: {e}"))
    }
    let db = redb::Database::create(dir.join("raw.redb")).map_err(err)?;
    let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("agreements");
    let mut times = Vec::new();
    for n in 0..count {
        let t = Instant::now();
        let mut txn = db.begin_write().map_err(err)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(err)?;
        {
            let mut table = txn.open_table(def).map_err(err)?;
            table
                .insert(&n.to_be_bytes()[..], &[0u8; 1024][..])
                .map_err(err)?;
        }
        txn.commit().map_err(err)?;
        times.push(t.elapsed());
    }
    Ok(Quantiles::new(times))
}

/// `tds-bench negotiate`: the run described in the module docs, with the connectors'
/// data directories (and the raw redb file) under `dir`. One JSON line.
pub async fn negotiate(bench: NegotiateBench, dir: &Path) -> Result<String, NetBenchError> {
    let space = crate::net::space()?;
    let load = load_1m();
    let pair = Pair::start(&space, dir).await?;
    let measured = run_negotiations(&pair, &space, bench).await;
    let counted = match &measured {
        Ok(_) => Some((
            rows(pair.provider.store(), Table::Agreements)?,
            rows(pair.consumer.store(), Table::Agreements)?,
            pair.provider.log().size(),
            pair.consumer.log().size(),
        )),
        Err(_) => None,
    };
    pair.shutdown().await;
    let (negotiations, distinct) = measured?;
    let (provider_stored, consumer_stored, provider_log, consumer_log) =
        counted.unwrap_or_default();

    let raw_n = bench.raw.min(bench.count).max(1);
    let plain = raw_round_trips(&space, raw_n, bench.concurrency, false).await?;
    let signed = raw_round_trips(&space, raw_n, bench.concurrency, true).await?;
    let commit = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || raw_commits(&dir, RAW_COMMITS))
            .await
            .map_err(|e| NetBenchError::Setup(format!("raw commits: {e}")))??
    };

    let q = &negotiations.times;
    let rate = negotiations.per_sec;
    let p50 = q.ms(0.5);
    let (rtt, signed_rtt) = (&plain.times, &signed.times);
    let floor = 2.0 * signed_rtt.ms(0.5) + 2.0 * commit.ms(0.5);
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| r3(a / b));
    Ok(json_line(&[
        ("count", bench.count.into()),
        ("concurrency", bench.concurrency.into()),
        ("warmup", bench.warmup.into()),
        ("p50_ms", r3(p50).into()),
        ("p90_ms", r3(q.ms(0.9)).into()),
        ("p99_ms", r3(q.ms(0.99)).into()),
        ("max_ms", r3(q.ms(1.0)).into()),
        ("per_sec", rate.round().into()),
        ("cpu_ms_per_negotiation", negotiations.cpu_ms_per_op.into()),
        ("agreements", distinct.into()),
        ("provider_stored", provider_stored.into()),
        ("consumer_stored", consumer_stored.into()),
        ("provider_log_events", provider_log.into()),
        ("consumer_log_events", consumer_log.into()),
        ("raw_rtt_ms", r3(rtt.ms(0.5)).into()),
        ("raw_rtt_p99_ms", r3(rtt.ms(0.99)).into()),
        ("raw_per_sec", plain.per_sec.round().into()),
        ("raw_signed_rtt_ms", r3(signed_rtt.ms(0.5)).into()),
        ("raw_signed_per_sec", signed.per_sec.round().into()),
        ("raw_signed_cpu_ms", signed.cpu_ms_per_op.into()),
        ("raw_commit_ms", r3(commit.ms(0.5)).into()),
        ("floor_ms", r3(floor).into()),
        ("ratio_vs_rtt", ratio(p50, rtt.ms(0.5)).into()),
        ("ratio_vs_floor", ratio(p50, floor).into()),
        ("ratio_vs_raw_per_sec", ratio(rate, signed.per_sec).into()),
        ("dir", dir.display().to_string().into()),
        ("load_1m", load.into()),
    ]))
}

/// The warm-up and the timed negotiations; returns what the timed ones measured and
/// the number of distinct agreements they made.
async fn run_negotiations(
    pair: &Pair,
    space: &Space,
    bench: NegotiateBench,
) -> Result<(Timed, u64), NetBenchError> {
    let offer = Arc::new(
        pair.publish_repeated(
            space,
            TransferBench {
                size: 64 * 1024,
                chunk: 64 * 1024,
            },
        )
        .await?,
    );
    let purpose: Purpose = "research".parse().map_err(setup("purpose"))?;
    let (consumer, addr) = (pair.consumer.clone(), pair.addr);
    for _ in 0..bench.warmup {
        consumer
            .negotiate(addr, &offer, None, purpose.clone())
            .await?;
    }
    let ids = Arc::new(Mutex::new(HashSet::new()));
    let op = {
        let ids = ids.clone();
        move || {
            let (consumer, offer, purpose, ids) = (
                consumer.clone(),
                offer.clone(),
                purpose.clone(),
                ids.clone(),
            );
            async move {
                let a = consumer.negotiate(addr, &offer, None, purpose).await?;
                ids.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(a.id());
                Ok(())
            }
        }
    };
    let cpu = cpu_seconds();
    let (times, _, wall) = concurrent(bench.count, bench.concurrency, op).await?;
    let cpu_s = cpu_since(cpu);
    let distinct = ids.lock().unwrap_or_else(PoisonError::into_inner).len() as u64;
    let timed = Timed {
        times: Quantiles::new(times),
        per_sec: per_sec(bench.count, wall),
        cpu_ms_per_op: cpu_per_op(cpu_s, bench.count),
    };
    Ok((timed, distinct))
}
