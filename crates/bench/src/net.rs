//! Network benchmarks on loopback: TDS connection set-up against a raw quinn handshake
//! (`tds-bench handshake`), and bulk transfer over raw quinn with and without SHA-256 on
//! the receiving side next to the TDS verified transfer (`tds-bench transfer`).
//!
//! Both sides of every comparison use the same keys, the same TLS configurations
//! (`tds_transport::tls`) and the same QUIC transport parameters
//! ([`TransportConfig::quinn`]), so what differs is what TDS adds.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tds_core::hash::Hash256;
use tds_core::rand::SystemRandom;
use tds_core::time::{SystemClock, DAY_MS};
use tds_core::Timestamp;
use tds_core::{Clock, SigningKey};
use tds_identity::{Admission, Authority, Jurisdiction, Role, Sector, TrustStore};
use tds_manifest::content::ChunkTree;
use tds_policy::contract::{create_offer, Offer};
use tds_policy::Purpose;
use tds_protocol::session::{Asset, Config, Event, PlacedChunk, Session};
use tds_protocol::sim::MemoryHost;
use tds_protocol::Refusal;
use tds_transport::{
    tls, Driver, Endpoint, LocalIdentity, SessionApp, TransportConfig, TransportError,
};

/// Why a network benchmark failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetBenchError {
    /// The transport refused or failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Setting up identities failed.
    #[error(transparent)]
    Identity(#[from] tds_identity::IdentityError),
    /// The bench's data space could not be set up.
    #[error("setup: {0}")]
    Setup(String),
    /// A raw quinn step failed.
    #[error("raw quinn: {0}")]
    Quinn(String),
    /// The bytes received are not the bytes sent.
    #[error("transfer check: {0}")]
    Mismatch(String),
    /// A connector call failed.
    #[error(transparent)]
    Connector(#[from] tds_connector::ConnectorError),
    /// A temporary file or directory.
    #[error("files: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn quinn_err(e: impl std::fmt::Display) -> NetBenchError {
    NetBenchError::Quinn(e.to_string())
}

/// A member of the bench's data space.
pub(crate) struct Member {
    pub(crate) key: Arc<SigningKey>,
    pub(crate) credential: Vec<u8>,
}

/// Two members of one data space (the client and the server) and a trust store with a
/// fresh revocation list.
pub(crate) struct Space {
    pub(crate) client: Member,
    pub(crate) server: Member,
    pub(crate) crl: Vec<u8>,
    pub(crate) trust: Arc<RwLock<TrustStore>>,
}

pub(crate) fn space() -> Result<Space, NetBenchError> {
    let now = SystemClock.now();
    let mut authority = Authority::new("Bench Authority", SigningKey::from_seed(&[200; 32]))?;
    let jurisdiction: Jurisdiction = "CN-SX"
        .parse()
        .map_err(|e| NetBenchError::Setup(format!("jurisdiction: {e}")))?;
    let mut member = |seed: u8| -> Result<Member, NetBenchError> {
        let key = Arc::new(SigningKey::from_seed(&[seed; 32]));
        let credential = authority
            .admit(
                &Admission {
                    subject_key: key.public_key(),
                    name: "Bench Member".into(),
                    sectors: vec![Sector::POWER],
                    roles: vec![Role::Provider, Role::Consumer],
                    jurisdiction: jurisdiction.clone(),
                    not_before: now,
                    not_after: now.saturating_add_millis(DAY_MS),
                },
                now,
            )?
            .into_envelope();
        Ok(Member { key, credential })
    };
    let (client, server) = (member(201)?, member(202)?);
    let crl = authority
        .revocation_list(now, now.saturating_add_millis(DAY_MS))?
        .into_envelope();
    let mut trust = TrustStore::new();
    trust.add_authority(authority.public_key());
    trust.add_revocation_list(&crl, now)?;
    Ok(Space {
        client,
        server,
        crl,
        trust: Arc::new(RwLock::new(trust)),
    })
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Raw quinn endpoints with the TDS TLS configurations and transport parameters (no
/// hello, no credential).
pub(crate) fn raw_endpoints(
    space: &Space,
    config: &TransportConfig,
) -> Result<(quinn::Endpoint, quinn::Endpoint, quinn::ClientConfig), NetBenchError> {
    let transport = config.quinn()?;
    let server_tls =
        tls::server_config(space.server.key.clone(), &[tls::ALPN]).map_err(quinn_err)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).map_err(quinn_err)?,
    ));
    server.transport_config(transport.clone());
    let client_tls = tls::client_config(space.client.key.clone(), tls::ALPN).map_err(quinn_err)?;
    let mut client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).map_err(quinn_err)?,
    ));
    client.transport_config(transport);
    let server_ep = quinn::Endpoint::server(server, loopback()).map_err(quinn_err)?;
    let client_ep = quinn::Endpoint::client(loopback()).map_err(quinn_err)?;
    Ok((server_ep, client_ep, client))
}

fn tds_endpoints(
    space: &Space,
    config: &TransportConfig,
) -> Result<(Endpoint, Endpoint), NetBenchError> {
    let make = |m: &Member| -> Result<Endpoint, NetBenchError> {
        let key: Arc<dyn tds_core::Signer> = m.key.clone();
        let identity = LocalIdentity::new(key, m.credential.clone(), Some(space.crl.clone()))?;
        Ok(Endpoint::builder(identity, space.trust.clone())
            .config(config.clone())
            .bind(loopback())?)
    };
    Ok((make(&space.server)?, make(&space.client)?))
}

/// One JSON object on one line with the keys in the order given (scripts read it as
/// JSON; people read the order).
pub(crate) fn json_line(pairs: &[(&str, serde_json::Value)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}: {v}", serde_json::Value::from(*k)))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

/// Median and 90th percentile of `samples` in milliseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len().saturating_sub(1)) as f64 * q).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    (at(0.5), at(0.9))
}

/// `tds-bench handshake`: `connections` fresh connections each way, alternating, and one
/// JSON line.
pub async fn handshake(connections: usize) -> Result<String, NetBenchError> {
    let space = space()?;
    let config = TransportConfig::default();
    let (server, client) = tds_endpoints(&space, &config)?;
    let server_addr = server.local_addr()?;
    // The server accepts and holds each connection until the client closes it.
    let accepting = tokio::spawn(async move {
        while let Ok(c) = server.accept().await {
            tokio::spawn(async move { c.closed().await });
        }
    });

    let (raw_server, raw_client, raw_config) = raw_endpoints(&space, &config)?;
    let raw_addr = raw_server.local_addr().map_err(quinn_err)?;
    let raw_accepting = tokio::spawn(async move {
        while let Some(incoming) = raw_server.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                // The echo variant: one stream round trip of hello size.
                if let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    if let Ok(bytes) = recv.read_to_end(1 << 20).await {
                        let _ = send.write_all(&bytes).await;
                        let _ = send.finish();
                    }
                }
                conn.closed().await;
            });
        }
    });
    let hello_size = space.client.credential.len() + space.crl.len() + 64;
    let echo = vec![7u8; hello_size];

    let (mut tds, mut raw, mut raw_echo) = (Vec::new(), Vec::new(), Vec::new());
    // A few unmeasured rounds warm the caches and the runtime.
    for round in 0..connections + 5 {
        let t = Instant::now();
        let conn = client.connect(server_addr).await?;
        let tds_time = t.elapsed();
        conn.close(0, tds_protocol::Refusal::new("transport.shutdown", "bench"));

        let t = Instant::now();
        let c = raw_client
            .connect_with(raw_config.clone(), raw_addr, "tds")
            .map_err(quinn_err)?
            .await
            .map_err(quinn_err)?;
        let raw_time = t.elapsed();
        let (mut send, mut recv) = c.open_bi().await.map_err(quinn_err)?;
        send.write_all(&echo).await.map_err(quinn_err)?;
        send.finish().map_err(quinn_err)?;
        recv.read_to_end(1 << 20).await.map_err(quinn_err)?;
        let echo_time = t.elapsed();
        c.close(0u32.into(), b"");
        if round >= 5 {
            tds.push(tds_time);
            raw.push(raw_time);
            raw_echo.push(echo_time);
        }
    }
    accepting.abort();
    raw_accepting.abort();
    let (tds_median, tds_p90) = percentiles(&mut tds);
    let (raw_median, raw_p90) = percentiles(&mut raw);
    let (echo_median, echo_p90) = percentiles(&mut raw_echo);
    let ratio = |a: f64, b: f64| if b > 0.0 { Some(a / b) } else { None };
    Ok(json_line(&[
        ("connections", connections.into()),
        ("tds_median_ms", tds_median.into()),
        ("tds_p90_ms", tds_p90.into()),
        ("raw_quinn_median_ms", raw_median.into()),
        ("raw_quinn_p90_ms", raw_p90.into()),
        ("raw_quinn_echo_median_ms", echo_median.into()),
        ("raw_quinn_echo_p90_ms", echo_p90.into()),
        ("ratio", ratio(tds_median, raw_median).into()),
        ("ratio_vs_echo", ratio(tds_median, echo_median).into()),
    ]))
}

/// What `tds-bench transfer` moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferBench {
    /// Bytes to move (a multiple of `chunk` is not required).
    pub size: u64,
    /// The size of the repeated source buffer and of each write (1 MiB).
    pub chunk: usize,
}

/// The receiving side of a raw transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sink {
    /// SHA-256 over every byte (ring).
    Hash,
    /// Bytes are counted and dropped.
    Discard,
    /// SHA-256 over every byte, and the bytes written to a file (in writes of one chunk,
    /// synced once at the end): what the connector's consumer does besides verifying.
    HashWrite,
}

/// What one timed transfer measured.
#[derive(Clone, Debug, Default)]
struct Phase {
    /// Gbit/s.
    gbps: f64,
    /// CPU seconds this process spent while it ran (every thread, both sides).
    cpu_s: Option<f64>,
    /// The SHA-256 of what arrived (hashing sinks).
    digest: Option<Vec<u8>>,
}

/// CPU seconds this process has used (user + system, every thread) from
/// `/proc/self/stat` (in ticks of 1/100 s), where there is one.
pub(crate) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    // utime and stime are fields 14 and 15 of the line: 12th and 13th after the name.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds used since `start` (a [`cpu_seconds`] reading).
pub(crate) fn cpu_since(start: Option<f64>) -> Option<f64> {
    Some(((cpu_seconds()? - start?) * 100.0).round() / 100.0)
}

/// The 1-minute load average of the machine (other work beside the bench).
pub(crate) fn load_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One raw quinn transfer: the client asks on one stream, the server writes `size` bytes
/// from a repeated in-memory buffer (handed to quinn without copying), the client reads
/// them into `sink` (a file in a temporary directory under `out_dir` for
/// [`Sink::HashWrite`]). Timed from the request to the last byte read (and, when
/// writing, the file synced).
async fn raw_transfer(
    space: &Space,
    config: &TransportConfig,
    bench: TransferBench,
    sink: Sink,
    out_dir: &std::path::Path,
) -> Result<Phase, NetBenchError> {
    let (server, client, client_config) = raw_endpoints(space, config)?;
    let addr = server.local_addr().map_err(quinn_err)?;
    let source = Bytes::from(vec![0x5au8; bench.chunk]);
    let server_config = config.clone();
    let serving = tokio::spawn(async move {
        let incoming = server
            .accept()
            .await
            .ok_or_else(|| quinn_err("no connection"))?;
        let conn = incoming.await.map_err(quinn_err)?;
        server_config.open_up(&conn);
        let (mut send, mut recv) = conn.accept_bi().await.map_err(quinn_err)?;
        let mut ask = [0u8; 8];
        recv.read_exact(&mut ask).await.map_err(quinn_err)?;
        let mut left = u64::from_be_bytes(ask);
        while left > 0 {
            let n = left.min(source.len() as u64);
            send.write_chunk(source.slice(..n as usize))
                .await
                .map_err(quinn_err)?;
            left -= n;
        }
        send.finish().map_err(quinn_err)?;
        conn.closed().await;
        Ok::<(), NetBenchError>(())
    });
    let conn = client
        .connect_with(client_config, addr, "tds")
        .map_err(quinn_err)?
        .await
        .map_err(quinn_err)?;
    // The windows a TDS connection has once its hello passed.
    config.open_up(&conn);
    let out_tmp = match sink {
        Sink::HashWrite => Some(
            tempfile::Builder::new()
                .prefix("tds-bench-raw-")
                .tempdir_in(out_dir)?,
        ),
        Sink::Hash | Sink::Discard => None,
    };
    let mut file = match &out_tmp {
        Some(d) => Some(std::fs::File::create(d.path().join("raw.bin"))?),
        None => None,
    };
    let mut pending: Vec<u8> = Vec::with_capacity(if file.is_some() { bench.chunk } else { 0 });
    let cpu = cpu_seconds();
    let start = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await.map_err(quinn_err)?;
    send.write_all(&bench.size.to_be_bytes())
        .await
        .map_err(quinn_err)?;
    send.finish().map_err(quinn_err)?;
    let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
    let mut received = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.map_err(quinn_err)? {
        received += chunk.bytes.len() as u64;
        if sink != Sink::Discard {
            hasher.update(&chunk.bytes);
        }
        if let Some(f) = file.as_mut() {
            pending.extend_from_slice(&chunk.bytes);
            if pending.len() >= bench.chunk {
                std::io::Write::write_all(f, &pending)?;
                pending.clear();
            }
        }
    }
    if let Some(f) = file.as_mut() {
        std::io::Write::write_all(f, &pending)?;
        f.sync_data()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_s = cpu_since(cpu);
    conn.close(0u32.into(), b"");
    serving
        .await
        .map_err(|e| NetBenchError::Quinn(e.to_string()))??;
    if received != bench.size {
        return Err(NetBenchError::Mismatch(format!(
            "received {received} of {} bytes",
            bench.size
        )));
    }
    let digest = (sink != Sink::Discard).then(|| hasher.finish().as_ref().to_vec());
    Ok(Phase {
        gbps: gbps(bench.size, seconds),
        cpu_s,
        digest,
    })
}

pub(crate) fn gbps(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 * 8.0 / seconds / 1e9
    } else {
        0.0
    }
}

/// The SHA-256 of what the source sends: the repeated buffer, cut at `size`.
fn expected_digest(bench: TransferBench) -> Vec<u8> {
    let block = vec![0x5au8; bench.chunk];
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    let mut left = bench.size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        h.update(block.get(..n).unwrap_or_default());
        left -= n as u64;
    }
    h.finish().as_ref().to_vec()
}

// ---------------------------------------------------------------------------------------
// (c) The TDS verified transfer: the same two members, the same loopback and transport
// parameters, the same repeated source buffer. The provider serves it as an asset whose
// manifest commits to its Merkle root; the consumer negotiates an agreement (not timed,
// as the raw handshake is not), then asks for the asset chunk by chunk and verifies
// every chunk against the root before it counts it. Timed from the transfer request to
// the last verified chunk, as `raw_transfer` is from its request to its last byte.
// ---------------------------------------------------------------------------------------

/// What the consumer does with verified chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Count them (the bench: memory stays flat).
    Count,
    /// Keep every byte in order (tests compare them with the source).
    All,
}

/// The provider's side: the repeated buffer as an asset, with its chunk tree.
struct ServeRepeated {
    block: Bytes,
    tree: Arc<ChunkTree>,
    host: Arc<MemoryHost>,
}

impl SessionApp for ServeRepeated {
    fn event(&mut self, _: &mut Session, _: Timestamp, event: Event) {
        if let Event::Finalized { agreement, .. } = event {
            self.host.add_agreement(agreement);
        }
    }

    fn chunk(&mut self, _: &PlacedChunk, _: &[Bytes]) -> Result<(), Refusal> {
        Ok(())
    }

    fn read_chunk(
        &mut self,
        _asset: &str,
        index: u64,
        _offset: u64,
        len: u64,
    ) -> Result<(Bytes, Vec<Hash256>), Refusal> {
        let proof = self
            .tree
            .proof(index)
            .map_err(|e| Refusal::new("transfer.chunk_unavailable", e.to_string()))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= self.block.len())
            .ok_or_else(|| Refusal::new("transfer.chunk_unavailable", "chunk too long"))?;
        Ok((self.block.slice(..len), proof.path))
    }
}

/// The consumer's side: forwards events, keeps or counts verified chunks.
struct Collect {
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    kept: Arc<std::sync::Mutex<Vec<u8>>>,
    keep: Keep,
}

impl SessionApp for Collect {
    fn event(&mut self, _: &mut Session, _: Timestamp, event: Event) {
        let _ = self.events.send(event);
    }

    fn chunk(&mut self, place: &PlacedChunk, pieces: &[Bytes]) -> Result<(), Refusal> {
        if self.keep == Keep::All {
            let mut kept = self
                .kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut at = usize::try_from(place.offset)
                .map_err(|_| Refusal::new("transfer.chunk_unavailable", "offset"))?;
            for piece in pieces {
                let end = at.saturating_add(piece.len());
                if kept.len() < end {
                    kept.resize(end, 0);
                }
                if let Some(dst) = kept.get_mut(at..end) {
                    dst.copy_from_slice(piece);
                }
                at = end;
            }
        }
        Ok(())
    }

    fn read_chunk(
        &mut self,
        _: &str,
        _: u64,
        _: u64,
        _: u64,
    ) -> Result<(Bytes, Vec<Hash256>), Refusal> {
        Err(Refusal::new(
            "transfer.chunk_unavailable",
            "the consumer serves nothing",
        ))
    }
}

pub(crate) fn setup<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> NetBenchError + '_ {
    move |e| NetBenchError::Setup(format!("{what}: {e}"))
}

/// Waits for the first event `pick` takes, failing after `limit`.
async fn wait_for<T>(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    limit: Duration,
    mut pick: impl FnMut(&Event) -> Option<Result<T, NetBenchError>>,
) -> Result<T, NetBenchError> {
    let found = tokio::time::timeout(limit, async {
        while let Some(e) = events.recv().await {
            if let Some(r) = pick(&e) {
                return r;
            }
        }
        Err(NetBenchError::Setup(
            "the consumer's session stopped".into(),
        ))
    })
    .await;
    found.map_err(|_| NetBenchError::Setup("timed out waiting for the consumer".into()))?
}

/// (c) One TDS verified transfer of `bench.size` bytes through the connector API (two
/// connectors with durable state in a temporary directory, the output file in another);
/// returns Gbit/s and, with [`Keep::All`], the bytes of the output file.
pub async fn tds_transfer(
    bench: TransferBench,
    keep: Keep,
) -> Result<(f64, Option<Vec<u8>>), NetBenchError> {
    let space = space()?;
    let (phase, bytes) =
        connector_transfer(&space, bench, keep, &std::env::temp_dir(), Into::File).await?;
    Ok((phase.gbps, bytes))
}

/// The bare-session variant of (c) (the figure `tds_session_gbps`): one `tds-protocol`
/// session per side over `tds-transport` with in-memory hosts, no store, no log, no
/// output file.
pub async fn tds_session_transfer(
    bench: TransferBench,
    keep: Keep,
) -> Result<(f64, Option<Vec<u8>>), NetBenchError> {
    let space = space()?;
    let config = TransportConfig::default();
    let (phase, bytes) = session_transfer(&space, &config, bench, keep).await?;
    Ok((phase.gbps, bytes))
}

/// (c) through the connector API: a provider and a consumer [`tds_connector::Connector`]
/// in this process, each with its redb store, provenance log and chunk trees in a
/// temporary data directory (so enforcement, durable state and logging are on). The
/// provider publishes the repeated block as a custom data source (read from memory, as
/// the raw baselines send it), the consumer finds the offer in its catalog and
/// negotiates an agreement (neither timed, as the raw handshake is not), then fetches
/// the asset: timed from the `fetch` call until it returns the receipt, so it includes
/// the durable transfer records and log events of both sides. With `Into::File` the
/// bytes go to a file in a temporary directory under `out_dir` (written, synced every
/// 32 MiB and at the end: what the `raw_quinn_written` baseline does); with
/// `Into::Counter`, to a [`tds_connector::DataSink`] that counts and drops them (what
/// the hashing baseline's receiver does once it has hashed them; the consumer verified
/// every chunk before the sink sees it).
async fn connector_transfer(
    space: &Space,
    bench: TransferBench,
    keep: Keep,
    out_dir: &std::path::Path,
    into: Into,
) -> Result<(Phase, Option<Vec<u8>>), NetBenchError> {
    let state = tempfile::Builder::new()
        .prefix("tds-bench-state-")
        .tempdir()?;
    let pair = crate::pair::Pair::start(space, state.path()).await?;
    let result = async {
        let offer = pair.publish_repeated(space, bench).await?;
        let purpose: Purpose = "research".parse().map_err(setup("purpose"))?;
        let agreement = pair
            .consumer
            .negotiate(pair.addr, &offer, None, purpose.clone())
            .await?;
        let out_tmp = tempfile::Builder::new()
            .prefix("tds-bench-out-")
            .tempdir_in(out_dir)?;
        let out = out_tmp.path().join("asset.bin");
        let counter = Arc::new(Counter::default());
        let options = tds_connector::FetchOptions::new(out.clone(), purpose);
        let options = match into {
            Into::File => options,
            Into::Counter => options.with_sink(counter.clone()),
        };
        let cpu = cpu_seconds();
        let start = Instant::now();
        let receipt = pair
            .consumer
            .fetch(pair.addr, &agreement.id(), options)
            .await?;
        let seconds = start.elapsed().as_secs_f64();
        let cpu_s = cpu_since(cpu);
        if receipt.size != bench.size || receipt.fetched != bench.size {
            return Err(NetBenchError::Mismatch(format!(
                "the receipt says {} of {} bytes fetched; {} were sent",
                receipt.fetched, receipt.size, bench.size
            )));
        }
        let written = match into {
            Into::File => std::fs::metadata(&out)?.len(),
            Into::Counter => counter.0.load(std::sync::atomic::Ordering::Relaxed),
        };
        if written != bench.size {
            return Err(NetBenchError::Mismatch(format!(
                "the sink holds {written} of {} bytes",
                bench.size
            )));
        }
        let bytes = match (keep, into) {
            (Keep::All, Into::File) => Some(std::fs::read(&out)?),
            _ => None,
        };
        let phase = Phase {
            gbps: gbps(bench.size, seconds),
            cpu_s,
            digest: None,
        };
        Ok((phase, bytes))
    }
    .await;
    pair.shutdown().await;
    result
}

/// Where the connector transfer puts the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Into {
    /// A file.
    File,
    /// A sink that counts them.
    Counter,
}

/// A [`tds_connector::DataSink`] that counts the bytes and drops them.
#[derive(Debug, Default)]
struct Counter(std::sync::atomic::AtomicU64);

impl tds_connector::DataSink for Counter {
    fn write_at(&self, bytes: &[u8], _offset: u64) -> std::io::Result<()> {
        self.0
            .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn sync(&self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn session_transfer(
    space: &Space,
    config: &TransportConfig,
    bench: TransferBench,
    keep: Keep,
) -> Result<(Phase, Option<Vec<u8>>), NetBenchError> {
    let now = SystemClock.now();
    let provider = &space.server;
    let (block, signed, tree) = crate::pair::repeated_asset(provider, bench)?;
    let tree = Arc::new(tree);
    let verified = tds_manifest::open(&signed)
        .and_then(|m| m.verify(&provider.key.public_key()))
        .map_err(setup("manifest"))?;
    let asset_id = verified.id().to_string();
    let offer = create_offer(
        provider.key.as_ref(),
        &Offer {
            asset: asset_id.parse().map_err(setup("asset id"))?,
            provider: provider.key.id(),
            provider_key: provider.key.public_key(),
            policy: tds_policy::parse(
                "bench",
                "policy set;\n\npermit use\n  when purpose isA research;\n",
            )
            .map_err(setup("policy"))?,
            price: None,
            not_before: now,
            not_after: now.saturating_add_millis(DAY_MS),
            licence: None,
        },
    )
    .map_err(setup("offer"))?;

    let (server, client) = tds_endpoints(space, config)?;
    let addr = server.local_addr()?;
    let (client_conn, server_conn) = tokio::join!(client.connect(addr), server.accept());
    let (client_conn, server_conn) = (client_conn?, server_conn?);
    let trust = || -> TrustStore {
        space
            .trust
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    let provider_host = Arc::new(MemoryHost::new(trust()));
    provider_host.add_asset(Asset {
        manifest: signed,
        verified: Arc::new(verified),
    });
    let consumer_host = Arc::new(MemoryHost::new(trust()));
    let provider_session = Session::new(
        Config::default(),
        provider.key.clone(),
        server_conn.peer().clone(),
        provider_host.clone(),
        Arc::new(SystemRandom),
    );
    let consumer_session = Session::new(
        Config::default(),
        space.client.key.clone(),
        client_conn.peer().clone(),
        consumer_host,
        Arc::new(SystemRandom),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (_provider, provider_task) = Driver::spawn(
        server_conn,
        provider_session,
        ServeRepeated {
            block,
            tree,
            host: provider_host,
        },
        clock.clone(),
    );
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (consumer, consumer_task) = Driver::spawn(
        client_conn.clone(),
        consumer_session,
        Collect {
            events: events_tx,
            kept: kept.clone(),
            keep,
        },
        clock,
    );
    let purpose: Purpose = "research".parse().map_err(setup("purpose"))?;
    let p = purpose.clone();
    consumer
        .call(move |s, now| s.request_contract(now, &offer, None, p))
        .await?
        .map_err(setup("contract request"))?;
    let limit = Duration::from_secs(600);
    let agreement = wait_for(&mut events, limit, |e| match e {
        Event::Finalized { agreement, .. } => Some(Ok(agreement.clone())),
        Event::NegotiationTerminated { code, reason, .. } => Some(Err(NetBenchError::Setup(
            format!("negotiation ended: {code}: {reason}"),
        ))),
        _ => None,
    })
    .await?;

    let cpu = cpu_seconds();
    let start = Instant::now();
    consumer
        .call(move |s, now| s.request_transfer(now, agreement, purpose, None, Default::default()))
        .await?
        .map_err(setup("transfer request"))?;
    let received = wait_for(&mut events, limit, |e| match e {
        Event::TransferCompleted {
            bytes,
            complete: true,
            ..
        } => Some(Ok(*bytes)),
        Event::TransferTerminated { code, reason, .. } => Some(Err(NetBenchError::Setup(format!(
            "transfer ended: {code}: {reason}"
        )))),
        _ => None,
    })
    .await?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_s = cpu_since(cpu);
    client_conn.close(0, Refusal::new("transport.closed", "bench done"));
    provider_task.abort();
    consumer_task.abort();
    server.close();
    client.close();
    if received != bench.size {
        return Err(NetBenchError::Mismatch(format!(
            "verified {received} of {} bytes",
            bench.size
        )));
    }
    let bytes = (keep == Keep::All).then(|| {
        std::mem::take(
            &mut *kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    });
    let phase = Phase {
        gbps: gbps(bench.size, seconds),
        cpu_s,
        digest: None,
    };
    Ok((phase, bytes))
}

/// The SHA-256 the source's bytes have (for tests of [`tds_transfer`]).
pub fn source_digest(bench: TransferBench) -> Vec<u8> {
    expected_digest(bench)
}

/// Peak resident set size of this process (`VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `tds-bench transfer`: (a) raw quinn with SHA-256 on the receiver, (b) raw quinn
/// without, (a') raw quinn with SHA-256 writing what it receives to a file in `out_dir`
/// (default: the system's temporary directory), (c) the TDS verified transfer through
/// the connector API, its output file in `out_dir` too, (d) the same transfer through
/// bare protocol sessions with nothing written (`tds_session_gbps`), and one JSON line.
pub async fn transfer(
    bench: TransferBench,
    out_dir: Option<&std::path::Path>,
) -> Result<String, NetBenchError> {
    let space = space()?;
    let config = TransportConfig::default();
    let load = load_1m();
    let out_dir = out_dir.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    let expected = expected_digest(bench);
    let hashed = raw_transfer(&space, &config, bench, Sink::Hash, &out_dir).await?;
    let plain = raw_transfer(&space, &config, bench, Sink::Discard, &out_dir).await?;
    let written = raw_transfer(&space, &config, bench, Sink::HashWrite, &out_dir).await?;
    for p in [&hashed, &written] {
        if p.digest.as_deref() != Some(expected.as_slice()) {
            return Err(NetBenchError::Mismatch(
                "SHA-256 differs from the source's".into(),
            ));
        }
    }
    let (tds, _) = connector_transfer(&space, bench, Keep::Count, &out_dir, Into::Counter).await?;
    let (file, _) = connector_transfer(&space, bench, Keep::Count, &out_dir, Into::File).await?;
    let (session, _) = session_transfer(&space, &config, bench, Keep::Count).await?;
    let ratio = |t: f64, base: f64| (base > 0.0).then(|| t / base);
    Ok(json_line(&[
        ("size_bytes", bench.size.into()),
        ("raw_quinn_hashed_gbps", hashed.gbps.into()),
        ("raw_quinn_gbps", plain.gbps.into()),
        ("tds_gbps", tds.gbps.into()),
        ("ratio", ratio(tds.gbps, hashed.gbps).into()),
        ("ratio_vs_unhashed", ratio(tds.gbps, plain.gbps).into()),
        ("raw_quinn_written_gbps", written.gbps.into()),
        ("tds_file_gbps", file.gbps.into()),
        ("ratio_vs_written", ratio(file.gbps, written.gbps).into()),
        ("tds_session_gbps", session.gbps.into()),
        ("ratio_session", ratio(session.gbps, hashed.gbps).into()),
        ("raw_quinn_hashed_cpu_s", hashed.cpu_s.into()),
        ("raw_quinn_cpu_s", plain.cpu_s.into()),
        ("raw_quinn_written_cpu_s", written.cpu_s.into()),
        ("tds_cpu_s", tds.cpu_s.into()),
        ("tds_file_cpu_s", file.cpu_s.into()),
        ("tds_session_cpu_s", session.cpu_s.into()),
        ("out_dir", out_dir.display().to_string().into()),
        ("load_1m", load.into()),
        ("peak_rss_mib", peak_rss_mib().into()),
    ]))
}

/// Parses a size such as `1GiB`, `64MiB`, `512KiB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 1GiB, 64MiB or 1048576"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} (B, KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a positive size that fits 64 bits"))
}

/// The raw-quinn baseline of `tds-bench load` (`tds-bench raw-echo-server`, its own
/// process so that its memory is measured alone): a quinn server with the TDS TLS
/// configuration and transport parameters that answers every bidirectional stream with
/// the bytes it received (up to 64 KiB) and keeps every connection open. Prints
/// `{"listen": "ADDR"}` on one line and serves until its standard input closes.
pub async fn raw_echo_server() -> Result<(), NetBenchError> {
    let space = space()?;
    let transport = TransportConfig::default().quinn()?;
    let server_tls =
        tls::server_config(space.server.key.clone(), &[tls::ALPN]).map_err(quinn_err)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).map_err(quinn_err)?,
    ));
    server.transport_config(transport);
    let ep = quinn::Endpoint::server(server, loopback()).map_err(quinn_err)?;
    println!(
        "{}",
        json_line(&[("listen", ep.local_addr()?.to_string().into())])
    );
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    let serve = async {
        while let Some(incoming) = ep.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        if let Ok(bytes) = recv.read_to_end(64 * 1024).await {
                            let _ = send.write_all(&bytes).await;
                            let _ = send.finish();
                            let _ = send.stopped().await;
                        }
                    });
                }
            });
        }
    };
    tokio::select! {
        _ = stdin_closed => {}
        () = serve => {}
    }
    Ok(())
}

/// The raw-quinn side of `tds-bench load`'s idle-connection figure: `clients` raw quinn
/// connections (each from its own endpoint, as each TDS client has its own) to a
/// `raw-echo-server` child of `exe`, each making one hello-sized round trip (1 KiB) and
/// then staying open. Returns the server's resident memory per idle connection, KiB.
pub async fn raw_idle_kib(exe: &std::path::Path, clients: usize) -> Result<f64, NetBenchError> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(exe)
        .arg("raw-echo-server")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let result = async {
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| NetBenchError::Setup("no stdout from raw-echo-server".into()))?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| NetBenchError::Setup(format!("raw-echo-server: {e}")))?;
        let addr: SocketAddr = v
            .get("listen")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .parse()
            .map_err(|e| NetBenchError::Setup(format!("raw-echo-server address: {e}")))?;
        let pid = child.id();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = crate::node::rss_kib(pid).unwrap_or(0);
        let space = space()?;
        let transport = TransportConfig::default().quinn()?;
        let client_tls =
            tls::client_config(space.client.key.clone(), tls::ALPN).map_err(quinn_err)?;
        let mut client = quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).map_err(quinn_err)?,
        ));
        client.transport_config(transport);
        let mut tasks = Vec::with_capacity(clients);
        for _ in 0..clients {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut last = None;
                for _ in 0..20 {
                    let attempt = async {
                        let ep = quinn::Endpoint::client(loopback()).map_err(quinn_err)?;
                        let conn = ep
                            .connect_with(client.clone(), addr, "tds")
                            .map_err(quinn_err)?
                            .await
                            .map_err(quinn_err)?;
                        let (mut send, mut recv) = conn.open_bi().await.map_err(quinn_err)?;
                        send.write_all(&[7u8; 1024]).await.map_err(quinn_err)?;
                        send.finish().map_err(quinn_err)?;
                        let echo = recv.read_to_end(64 * 1024).await.map_err(quinn_err)?;
                        if echo.len() != 1024 {
                            return Err(NetBenchError::Setup("short echo".into()));
                        }
                        Ok::<_, NetBenchError>((ep, conn))
                    };
                    match attempt.await {
                        Ok(held) => return Ok(held),
                        Err(e) => {
                            last = Some(e);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                Err(last.unwrap_or_else(|| NetBenchError::Setup("no attempt".into())))
            }));
        }
        let mut held = Vec::with_capacity(clients);
        for t in tasks {
            held.push(t.await.map_err(|e| NetBenchError::Setup(e.to_string()))??);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = crate::node::rss_kib(pid).unwrap_or(0);
        for (ep, conn) in &held {
            conn.close(0u32.into(), b"");
            ep.close(0u32.into(), b"");
        }
        Ok(idle.saturating_sub(before) as f64 / clients.max(1) as f64)
    }
    .await;
    drop(child.stdin.take());
    let _ = child.wait();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1GB").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn the_expected_digest_covers_a_partial_last_block() {
        let b = TransferBench { size: 10, chunk: 4 };
        let direct = ring::digest::digest(&ring::digest::SHA256, &[0x5a; 10]);
        assert_eq!(expected_digest(b), direct.as_ref());
    }
}
