//! The [`Connector`]: one participant of a data space.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tds_core::hash::Hash256;
use tds_core::rand::{RandomSource, SystemRandom};
use tds_core::time::SystemClock;
use tds_core::{Clock, Signer, Timestamp};
use tds_identity::TrustStore;
use tds_manifest::content::{
    ChunkTree, ChunkTreeFile, ChunkTreeWriter, ContentBuilder, VerifierState,
};
use tds_policy::contract::{Offer, Price, VerifiedAgreement};
use tds_policy::{Policy, Purpose, Text};
use tds_protocol::message::CatalogFilter;
use tds_protocol::session::{Config as SessionConfig, Mode, Session};
use tds_protocol::Refusal;
use tds_provenance::event::{EventBody, SignedObject};
use tds_provenance::store::LogStore;
use tds_provenance::Log;
use tds_transport::{Connection, Driver, Endpoint, LocalIdentity, SharedTrust, TransportConfig};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::app::{App, CatalogPage, Fetch, FetchEnd, ProgressFn, Waiters};
use crate::core::{code, lock, ConnectorLog, Core, Served, SessionHost, Tree};
use crate::error::ConnectorError;
use crate::events::{AlertKind, ConnectorEvent};
use crate::records::{
    self, AssetRecord, FetchRecord, MeterRecord, OfferRecord, SourceRecord, TerminationRecord,
};
use crate::source::{DataSource, Source};
use crate::store::{Batch, MemoryStore, RedbStore, Store, Table};

/// Limits and timers of a connector.
#[derive(Clone, Debug)]
pub struct ConnectorConfig {
    /// The protocol session's timers and limits (the provider's decisions are always
    /// the connector's: its mode is set to manual).
    pub session: SessionConfig,
    /// The QUIC transport's limits.
    pub transport: TransportConfig,
    /// How long to wait for a peer to answer a connection attempt.
    pub connect_timeout: Duration,
    /// How many bytes a fetch verifies between two syncs of its output file and its
    /// resume state (what a crash can make it fetch again).
    pub sync_every: u64,
    /// How many transfers a fetch tries before it gives up (each resumes the last).
    pub fetch_attempts: u32,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        ConnectorConfig {
            session: SessionConfig::default(),
            transport: TransportConfig::default(),
            connect_timeout: Duration::from_secs(5),
            sync_every: 32 << 20,
            fetch_attempts: 3,
        }
    }
}

/// Where a connector keeps its state.
#[derive(Clone, Debug)]
enum Storage {
    Dir(PathBuf),
    Memory,
}

/// Builds a [`Connector`].
pub struct ConnectorBuilder {
    signer: Arc<dyn Signer>,
    credential: Vec<u8>,
    crl: Option<Vec<u8>>,
    trust: TrustStore,
    storage: Storage,
    store: Option<Arc<dyn Store>>,
    log_store: Option<Box<dyn LogStore>>,
    listen: SocketAddr,
    config: ConnectorConfig,
    clock: Arc<dyn Clock>,
}

impl ConnectorBuilder {
    /// Keeps state in `dir`: `connector.redb`, the provenance log in `log/`, chunk trees
    /// in `trees/` (created as needed).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.storage = Storage::Dir(dir.into());
        self
    }

    /// Keeps state in memory (tests): nothing survives the process.
    pub fn memory(mut self) -> Self {
        self.storage = Storage::Memory;
        self
    }

    /// Uses `store` instead of the default store of the storage chosen (the log and
    /// trees still follow [`data_dir`](Self::data_dir) or [`memory`](Self::memory)).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Test seam: keeps the provenance log in `log` instead of the storage's log (tests
    /// that make log appends fail). Not for integrators: the log must live and persist
    /// with the store, as [`data_dir`](Self::data_dir) keeps them.
    #[doc(hidden)]
    pub fn log_store(mut self, log: Box<dyn LogStore>) -> Self {
        self.log_store = Some(log);
        self
    }

    /// The UDP address to listen on (port 0: any).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Limits and timers.
    pub fn config(mut self, config: ConnectorConfig) -> Self {
        self.config = config;
        self
    }

    /// The clock (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The newest revocation list of this participant's authority, presented in hellos.
    pub fn revocation_list(mut self, crl: Vec<u8>) -> Self {
        self.crl = Some(crl);
        self
    }

    /// Opens the storage, binds the endpoint and starts accepting peers. Nothing is
    /// scanned: records are read when first needed.
    pub async fn start(self) -> Result<Connector, ConnectorError> {
        let identity = LocalIdentity::new(self.signer.clone(), self.credential.clone(), self.crl)?;
        let log_store = self.log_store;
        let (store, log, data_dir): (Arc<dyn Store>, ConnectorLog, Option<PathBuf>) =
            match &self.storage {
                Storage::Dir(dir) => {
                    std::fs::create_dir_all(dir).map_err(|e| ConnectorError::io(dir, e))?;
                    let store: Arc<dyn Store> = match self.store {
                        Some(s) => s,
                        None => Arc::new(RedbStore::open(dir)?),
                    };
                    let boxed: Box<dyn LogStore> = match log_store {
                        Some(l) => l,
                        None => {
                            let log_dir = dir.join("log");
                            std::fs::create_dir_all(&log_dir)
                                .map_err(|e| ConnectorError::io(&log_dir, e))?;
                            Box::new(
                                tds_provenance::store::FileStore::open(
                                    Arc::new(tds_provenance::storage::DirStorage::new(&log_dir)),
                                    tds_provenance::store::OpenOptions::writer(),
                                )
                                .map_err(tds_provenance::LogError::from)?,
                            )
                        }
                    };
                    (
                        store,
                        Log::new(boxed, self.signer.clone()),
                        Some(dir.clone()),
                    )
                }
                Storage::Memory => {
                    let store: Arc<dyn Store> = match self.store {
                        Some(s) => s,
                        None => Arc::new(MemoryStore::new()),
                    };
                    let boxed: Box<dyn LogStore> = log_store
                        .unwrap_or_else(|| Box::new(tds_provenance::store::MemoryStore::new()));
                    (store, Log::new(boxed, self.signer.clone()), None)
                }
            };
        records::check_version(store.as_ref())?;
        let trust: SharedTrust = Arc::new(std::sync::RwLock::new(self.trust));
        // Refused incoming connections become alerts (not log events: a refusal comes
        // before the peer is authenticated, and anyone could fill the log with them).
        // Every failed credential check is one: a revoked serial, and any other reason
        // the credential did not verify (expired, foreign, tampered: `identity.*` and
        // `cose.*`) or was another key's. Hellos that never got to a credential (a
        // timeout, a malformed frame) are not: scanners would raise them by the score.
        let alerts: Arc<OnceLock<std::sync::Weak<Core>>> = Arc::new(OnceLock::new());
        let observer = {
            let alerts = alerts.clone();
            Arc::new(
                move |remote: SocketAddr, e: &tds_transport::TransportError| {
                    let Some(core) = alerts.get().and_then(std::sync::Weak::upgrade) else {
                        return;
                    };
                    let code = tds_core::ErrorCode::code(e);
                    let credential = matches!(
                        e,
                        tds_transport::TransportError::Hello(
                            tds_transport::HelloError::Credential(_)
                                | tds_transport::HelloError::KeyMismatch { .. }
                        )
                    );
                    let kind = if code == "identity.revoked" {
                        AlertKind::PeerRevoked
                    } else if credential || code.starts_with("identity.") {
                        AlertKind::Denial
                    } else {
                        return;
                    };
                    core.alert(
                        kind,
                        code,
                        format!("refused a connection from {remote}: {e}"),
                        None,
                        None,
                    );
                },
            )
        };
        let endpoint = Endpoint::builder(identity, trust.clone())
            .config(self.config.transport.clone())
            .clock(self.clock.clone())
            .on_refusal(observer)
            .bind(self.listen)?;
        let (events, _) = broadcast::channel(4096);
        let core = Arc::new(Core::new(
            self.signer,
            self.credential,
            trust,
            store,
            Arc::new(log),
            self.clock,
            data_dir,
            events,
        ));
        let _ = alerts.set(Arc::downgrade(&core));
        // Complete what a crash left half-written before anything is served.
        let repairing = core.clone();
        let repaired = tokio::task::spawn_blocking(move || crate::recover::agreements(&repairing))
            .await
            .map_err(|e| ConnectorError::Closed(e.to_string()))??;
        if repaired != crate::recover::Repaired::default() {
            tracing::warn!(
                events = repaired.events,
                records = repaired.records,
                termination_events = repaired.termination_events,
                termination_records = repaired.termination_records,
                publication_events = repaired.publication_events,
                "completed agreements, terminations and publications a crash or a failed write left half-written"
            );
        }
        let facts = tds_core::cose::open::<tds_identity::Credential>(&core.credential)
            .map(|c| crate::usage::ConsumerFacts::from_credential(c.value()))
            .unwrap_or_else(|_| crate::usage::ConsumerFacts::new(core.me));
        let guard = crate::usage::UsageGuard::new(
            core.store.clone(),
            Arc::new(crate::core::CoreAgreements(Arc::downgrade(&core))),
            core.clock.clone(),
            facts,
        );
        let _ = core.guard.set(guard.clone());
        let peers = Arc::new(Mutex::new(Peers::default()));
        let inner = Arc::new(Inner {
            core,
            endpoint,
            peers,
            config: self.config,
            next_session: AtomicU64::new(1),
            rng: Arc::new(SystemRandom),
        });
        // Duties: sleep until the next deadline (or a new duty), raise what is overdue,
        // send the usage reports that are due.
        let duty_watch = {
            let inner = inner.clone();
            let guard = guard.clone();
            tokio::spawn(async move {
                loop {
                    // Reports first (a report sent in time is no alert), then alerts
                    // for what is still overdue.
                    if let Ok(all) = guard.duties(inner.core.now()) {
                        send_due_reports(&inner, &guard, &all).await;
                    }
                    let _ = inner.core.check_duties();
                    let core = &inner.core;
                    let now = core.now();
                    let next = guard.next_deadline_after(now).ok().flatten();
                    let wait = next.map_or(Duration::from_secs(3600), |t| {
                        Duration::from_millis(t.millis_since(now).clamp(1, 3_600_000))
                    });
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = core.duty_wake.notified() => {}
                    }
                }
            })
        };
        let accept = {
            let inner = inner.clone();
            tokio::spawn(async move {
                loop {
                    match inner.endpoint.accept().await {
                        Ok(conn) => {
                            inner.attach(conn, false);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "stopped accepting");
                            return;
                        }
                    }
                }
            })
        };
        Ok(Connector {
            inner,
            accept: Arc::new(Mutex::new(Some(accept))),
            duty_watch: Arc::new(Mutex::new(Some(duty_watch))),
            guard,
        })
    }
}

/// One live session with a peer.
struct Peer {
    id: Hash256,
    driver: Driver,
    waiters: Arc<Mutex<Waiters>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Peers {
    /// Sessions this side dialled, by address.
    by_addr: HashMap<SocketAddr, Arc<Peer>>,
    /// Every live session, by number.
    all: HashMap<u64, Arc<Peer>>,
}

struct Inner {
    core: Arc<Core>,
    endpoint: Endpoint,
    peers: Arc<Mutex<Peers>>,
    config: ConnectorConfig,
    next_session: AtomicU64,
    rng: Arc<dyn RandomSource>,
}

impl Inner {
    /// Runs a protocol session on a new connection.
    fn attach(self: &Arc<Self>, conn: Connection, outgoing: bool) -> Arc<Peer> {
        let no = self.next_session.fetch_add(1, Ordering::Relaxed);
        let peer_id = *conn.peer().subject().as_hash();
        let host = Arc::new(SessionHost {
            core: self.core.clone(),
            session: no,
        });
        let mut config = self.config.session.clone();
        config.provider_mode = Mode::Manual;
        config.consumer_mode = Mode::Auto;
        let session = Session::new(
            config,
            self.core.signer.clone(),
            conn.peer().clone(),
            host,
            self.rng.clone(),
        );
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let cell = Arc::new(OnceLock::new());
        let app = App {
            core: self.core.clone(),
            no,
            peer: peer_id,
            waiters: waiters.clone(),
            driver: cell.clone(),
            endpoint: self.endpoint.clone(),
            sync_every: self.config.sync_every.max(1),
            addr: conn.remote_address(),
            violations: 0,
        };
        let addr = conn.remote_address();
        // The app has its driver before the first event (the peer may speak at once).
        let (driver, task) = Driver::spawn_with(
            conn,
            session,
            move |d| {
                let _ = cell.set(d);
                app
            },
            self.core.clock.clone(),
        );
        self.core.emit(ConnectorEvent::PeerConnected {
            peer: peer_id,
            outgoing,
        });
        let watcher = {
            let inner = self.clone();
            let waiters = waiters.clone();
            tokio::spawn(async move {
                let reason = match task.await {
                    Ok(e) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                {
                    let mut p = lock(&inner.peers);
                    p.all.remove(&no);
                    if p.by_addr
                        .get(&addr)
                        .is_some_and(|x| Arc::ptr_eq(&x.waiters, &waiters))
                    {
                        p.by_addr.remove(&addr);
                    }
                }
                // Everyone still waiting learns the session is gone.
                let mut w = lock(&waiters);
                w.negotiations.clear();
                w.catalogs.clear();
                w.deliveries.clear();
                for (_, mut f) in w.fetches.drain() {
                    if let Some(done) = f.done.take() {
                        let _ = done.send(FetchEnd::Terminated {
                            code: "transport.closed".into(),
                            reason: reason.clone(),
                            bytes: f.bytes,
                        });
                    }
                }
                drop(w);
                inner.core.emit(ConnectorEvent::PeerClosed {
                    peer: peer_id,
                    reason,
                });
            })
        };
        let peer = Arc::new(Peer {
            id: peer_id,
            driver,
            waiters,
            task: watcher,
        });
        let mut p = lock(&self.peers);
        p.all.insert(no, peer.clone());
        if outgoing {
            p.by_addr.insert(addr, peer.clone());
        }
        peer
    }

    /// The session with the peer at `addr`: the live one this side dialled, else a new
    /// connection (within the connect timeout).
    async fn peer(self: &Arc<Self>, addr: SocketAddr) -> Result<Arc<Peer>, ConnectorError> {
        if let Some(p) = lock(&self.peers).by_addr.get(&addr) {
            if !p.task.is_finished() {
                return Ok(p.clone());
            }
        }
        let timeout = self.config.connect_timeout;
        let conn = tokio::time::timeout(timeout, self.endpoint.connect(addr))
            .await
            .map_err(|_| ConnectorError::Timeout {
                what: "connecting to the peer",
                ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })??;
        Ok(self.attach(conn, true))
    }

    /// Runs the call `make` builds (with what its caller awaits afterwards) on the
    /// session with `addr`. When that session stopped before running it (the peer closed
    /// it as the call was made), the call never ran, so it is made once more on a fresh
    /// connection.
    async fn call_fresh<T, C>(
        self: &Arc<Self>,
        addr: SocketAddr,
        make: impl Fn(&Peer) -> (C, T),
    ) -> Result<T, ConnectorError>
    where
        C: FnOnce(&mut Session, Timestamp) -> Result<(), tds_protocol::session::CallError>
            + Send
            + 'static,
    {
        let mut fresh = false;
        loop {
            let peer = self.peer(addr).await?;
            let (call, out) = make(&peer);
            match peer.driver.call(call).await {
                Err(_) if !fresh => {
                    self.forget(addr, &peer);
                    fresh = true;
                }
                r => {
                    r??;
                    return Ok(out);
                }
            }
        }
    }

    /// Drops the cached session with `addr` if it is `peer` (it stopped before it ran a
    /// call: the peer closed it as the call was made), so the next call dials afresh.
    fn forget(&self, addr: SocketAddr, peer: &Arc<Peer>) {
        let mut p = lock(&self.peers);
        if p.by_addr.get(&addr).is_some_and(|x| Arc::ptr_eq(x, peer)) {
            p.by_addr.remove(&addr);
        }
    }

    /// A live session with the participant `id` (either direction).
    fn peer_by_id(&self, id: &Hash256) -> Option<Arc<Peer>> {
        lock(&self.peers)
            .all
            .values()
            .find(|p| p.id == *id && !p.task.is_finished())
            .cloned()
    }
}

/// What [`Connector::publish`] published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The asset id text (`sha256:...` of the manifest).
    pub asset: String,
    /// The offers' ids, in the order given.
    pub offers: Vec<Hash256>,
}

/// The terms of an offer to publish; the connector signs it as the provider.
#[derive(Clone, Debug)]
pub struct OfferTerms {
    /// The usage policy.
    pub policy: Policy,
    /// The price, if any.
    pub price: Option<Price>,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until.
    pub not_after: Timestamp,
    /// The authority's signed licence this offer of public data is made under
    /// ([`tds_policy::licence`]): checked before the offer is signed (issued by a trusted
    /// authority to this participant, valid, not ending before the offer, containing the
    /// offer's policy) and embedded in the offer so consumers check the chain too.
    pub licence: Option<Vec<u8>>,
}

/// How to fetch.
#[derive(Clone)]
pub struct FetchOptions {
    /// The output file (created if missing; a partial file of an earlier fetch of the
    /// same agreement is resumed).
    pub out: PathBuf,
    /// The purpose of this use (within the agreement's).
    pub purpose: Purpose,
    /// Called as verified bytes are written: (bytes so far, total).
    pub progress: Option<ProgressFn>,
    /// Where the data will be processed, and the consent and export-assessment
    /// references the policy may ask for (the provider's re-check decides on them).
    pub context: tds_protocol::session::TransferContext,
    /// Where the verified bytes go instead of the file `out` (which then only names the
    /// fetch: its resume state is kept under the agreement, and a resumed fetch must be
    /// given a sink holding what the earlier one wrote; [`Connector::delete`] removes a
    /// file `out` but not what a sink holds).
    pub sink: Option<Arc<dyn crate::source::DataSink>>,
}

impl FetchOptions {
    /// Fetch into `out` for `purpose`, no progress callback, no context.
    pub fn new(out: impl Into<PathBuf>, purpose: Purpose) -> Self {
        FetchOptions {
            out: out.into(),
            purpose,
            progress: None,
            context: Default::default(),
            sink: None,
        }
    }

    /// Writes the verified bytes to `sink` instead of the file (see
    /// [`FetchOptions::sink`]).
    pub fn with_sink(mut self, sink: Arc<dyn crate::source::DataSink>) -> Self {
        self.sink = Some(sink);
        self
    }
}

impl std::fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchOptions")
            .field("out", &self.out)
            .field("purpose", &self.purpose)
            .finish()
    }
}

/// What a completed fetch proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The agreement.
    pub agreement: Hash256,
    /// The output file.
    pub out: PathBuf,
    /// The asset's size.
    pub size: u64,
    /// Bytes fetched by this call (the rest were verified by an earlier one).
    pub fetched: u64,
    /// Bytes found verified from an earlier, interrupted fetch.
    pub resumed: u64,
    /// Transfers this call made.
    pub attempts: u32,
    /// The consumer's signed transfer receipt (both sides logged it).
    pub receipt: Vec<u8>,
}

/// A participant of a data space: serves its published assets under the offers it
/// made, negotiates and fetches from peers, enforces agreements on both sides and logs
/// every step. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
    accept: Arc<Mutex<Option<JoinHandle<()>>>>,
    duty_watch: Arc<Mutex<Option<JoinHandle<()>>>>,
    guard: crate::UsageGuard,
}

impl Connector {
    /// The shared state (for the backup module).
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("id", &self.inner.core.me)
            .finish()
    }
}

impl Connector {
    /// A builder for the participant holding `signer`, with its membership `credential`
    /// (COSE bytes), trusting `trust`'s authorities. Default: memory storage, listening
    /// on 127.0.0.1 (any port).
    pub fn builder(
        signer: Arc<dyn Signer>,
        credential: Vec<u8>,
        trust: TrustStore,
    ) -> ConnectorBuilder {
        ConnectorBuilder {
            signer,
            credential,
            crl: None,
            trust,
            storage: Storage::Memory,
            store: None,
            log_store: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            config: ConnectorConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// This participant's id.
    pub fn id(&self) -> Hash256 {
        self.inner.core.me
    }

    /// The address peers reach this connector at.
    pub fn local_addr(&self) -> Result<SocketAddr, ConnectorError> {
        Ok(self.inner.endpoint.local_addr()?)
    }

    /// The events of this connector from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ConnectorEvent> {
        self.inner.core.events.subscribe()
    }

    /// The provenance log.
    pub fn log(&self) -> &Arc<ConnectorLog> {
        &self.inner.core.log
    }

    /// The durable store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.core.store
    }

    /// The trust store (shared with the transport).
    pub fn trust(&self) -> &SharedTrust {
        &self.inner.core.trust
    }

    /// Applies a revocation list: the trust store takes it (if it verifies), peers it
    /// revokes are disconnected and refused from now on.
    pub fn apply_revocation_list(&self, crl: &[u8]) -> Result<(), ConnectorError> {
        let outcome = self.inner.endpoint.apply_revocation_list(crl)?;
        self.inner
            .core
            .trust_generation
            .fetch_add(1, Ordering::AcqRel);
        if outcome.closed > 0 {
            self.inner.core.alert(
                AlertKind::PeerRevoked,
                "identity.revoked",
                format!(
                    "revocation list {} of {}: closed {} connection(s) of peers it revokes",
                    outcome.sequence, outcome.issuer, outcome.closed
                ),
                None,
                None,
            );
        }
        Ok(())
    }

    /// Raises an alert found outside the connector, for example by a witnessing schedule
    /// the embedding application runs (a witness refusing this node's checkpoint, or
    /// holding another history of its log): subscribers see it like the connector's own
    /// alerts, and it is logged at `warn`.
    pub fn raise_alert(&self, alert: crate::events::Alert) {
        self.inner.core.alert(
            alert.kind,
            &alert.code,
            alert.message,
            alert.agreement,
            alert.peer,
        );
    }

    /// Peer sessions open now (either direction).
    pub fn peer_count(&self) -> usize {
        lock(&self.inner.peers).all.len()
    }

    /// Registers an integrator's data source under `name` (after a restart, before the
    /// assets published from it are served).
    pub fn register_source(&self, name: &str, source: Arc<dyn DataSource>) {
        lock(&self.inner.core.custom).insert(name.to_owned(), source);
    }

    /// The consumer-side usage guard: call
    /// [`check_use`](crate::UsageGuard::check_use) before each use of fetched data.
    pub fn guard(&self) -> &crate::UsageGuard {
        &self.guard
    }

    /// Every duty this consumer holds and its state now; raises a
    /// [`AlertKind::DutyOverdue`](crate::AlertKind::DutyOverdue) alert (once) for each
    /// overdue one. A background task does the same at each deadline.
    pub fn duties(&self) -> Result<Vec<crate::usage::DutyStatus>, crate::usage::GuardError> {
        let all = self.inner.core.check_duties();
        // The watcher looks again too (it sends the usage reports that are due).
        self.inner.core.duty_wake.notify_one();
        all
    }

    // ---- provider ----

    /// Publishes an asset: `manifest` (signed by this participant) whose content is
    /// `source`'s bytes (checked: the chunk tree is built from the source and its root
    /// must be the manifest's), and one offer per `offers` entry, signed here. The asset,
    /// its offers and their `asset_published` / `offer_published` events are durable
    /// when this returns.
    pub async fn publish(
        &self,
        manifest: &[u8],
        source: Source,
        offers: Vec<OfferTerms>,
    ) -> Result<Published, ConnectorError> {
        let core = self.inner.core.clone();
        let verified = tds_manifest::open(manifest)
            .and_then(|m| m.verify(&core.signer.public_key()))
            .map_err(|e| ConnectorError::invalid("manifest", &e))?;
        let asset = verified.id().to_string();
        let (record, data): (SourceRecord, Arc<dyn DataSource>) = match source {
            Source::File(p) => {
                let path = absolute(&p)?;
                let rec = SourceRecord::File {
                    path: path.display().to_string(),
                };
                (
                    rec.clone(),
                    core.open_source(&rec).map_err(|m| io_msg(&path, m))?,
                )
            }
            Source::Dir(p) => {
                let path = absolute(&p)?;
                let rec = SourceRecord::Dir {
                    path: path.display().to_string(),
                };
                (
                    rec.clone(),
                    core.open_source(&rec).map_err(|m| io_msg(&path, m))?,
                )
            }
            Source::Custom { name, source } => {
                lock(&core.custom).insert(name.clone(), source.clone());
                (SourceRecord::Custom { name }, source)
            }
        };
        let content = verified.manifest().content;
        if data.len() != content.size {
            return Err(ConnectorError::Invalid {
                what: "data source",
                message: format!(
                    "the source holds {} bytes and the manifest commits to {}",
                    data.len(),
                    content.size
                ),
                code: "connector.source_mismatch",
            });
        }
        // The tree: hashed from the source off the async threads.
        let tree_path = core.data_dir.as_ref().map(|d| {
            d.join("trees")
                .join(format!("{}.tree", verified.id().as_hash().to_hex()))
        });
        let (tree, tree_path) = {
            let data = data.clone();
            tokio::task::spawn_blocking(move || build_tree(data.as_ref(), &content, tree_path))
                .await
                .map_err(|e| ConnectorError::Closed(e.to_string()))??
        };
        let now = core.now();
        let mut batch = Batch::new();
        batch.put(
            Table::Assets,
            asset.as_bytes().to_vec(),
            records::encode(
                Table::Assets,
                &AssetRecord {
                    manifest: manifest.to_vec(),
                    source: record,
                    tree: tree_path.map(|p| p.display().to_string()),
                    published: now,
                },
            )?,
        );
        let mut events =
            vec![
                tds_objects::record::asset_published(verified.as_self_signed(), core.me, now)
                    .map_err(|e| ConnectorError::invalid("asset event", &e))?,
            ];
        let mut ids = Vec::new();
        let mut entries = Vec::new();
        for o in offers {
            let offer = Offer {
                asset: asset
                    .parse::<Text>()
                    .map_err(|e| ConnectorError::invalid("asset id", &e))?,
                provider: core.me,
                provider_key: core.signer.public_key(),
                policy: o.policy,
                price: o.price,
                not_before: o.not_before,
                not_after: o.not_after,
                licence: o.licence,
            };
            if let Some(licence) = &offer.licence {
                core.check_licence(&offer, licence)?;
            }
            let signed = tds_policy::contract::create_offer(core.signer.as_ref(), &offer)
                .map_err(|e| ConnectorError::invalid("offer", &e))?;
            let v = tds_policy::contract::verify_offer(&signed)
                .map_err(|e| ConnectorError::invalid("offer", &e))?;
            let id = v.id();
            batch.put(
                Table::Offers,
                id.as_bytes().to_vec(),
                records::encode(
                    Table::Offers,
                    &OfferRecord {
                        offer: signed.clone(),
                        asset: asset.clone(),
                        withdrawn: false,
                    },
                )?,
            );
            entries.push((
                id,
                crate::catalog::Entry {
                    asset: asset.clone(),
                    keys: tds_protocol::catalog::CatalogKeys::new(v.offer(), verified.manifest()),
                },
            ));
            events.push(tds_provenance::event::Event::new(
                now,
                core.me,
                EventBody::OfferPublished {
                    offer: id,
                    asset: *verified.id().as_hash(),
                    object: Some(SignedObject {
                        kind: code("offer"),
                        id,
                        bytes: signed,
                    }),
                },
            ));
            ids.push(id);
        }
        crate::catalog::count_change(&mut batch);
        // The records and their events: a backup holds both or neither.
        let paired = core.paired.read().await;
        core.store.commit_async(batch).await?;
        core.catalog_changed(entries, &[]);
        core.forget_served(&asset);
        core.cache_served(
            asset.clone(),
            Arc::new(Served {
                asset: tds_protocol::session::Asset {
                    manifest: manifest.to_vec(),
                    verified: Arc::new(verified),
                },
                source: data,
                tree,
            }),
        );
        for e in &events {
            core.log.append_async(e).await?;
        }
        drop(paired);
        Ok(Published { asset, offers: ids })
    }

    /// The signed bytes of an offer this connector made (what consumers negotiate).
    pub fn offer(&self, id: &Hash256) -> Result<Option<Vec<u8>>, ConnectorError> {
        Ok(records::get::<OfferRecord>(
            self.inner.core.store.as_ref(),
            Table::Offers,
            id.as_bytes(),
        )?
        .map(|r| r.offer))
    }

    /// Withdraws an offer: no longer listed, no new negotiations. Agreements already
    /// made under it stay in force.
    pub async fn withdraw(&self, offer: &Hash256) -> Result<(), ConnectorError> {
        let core = &self.inner.core;
        let mut rec: OfferRecord =
            records::get(core.store.as_ref(), Table::Offers, offer.as_bytes())?.ok_or_else(
                || ConnectorError::NotFound {
                    what: "offer",
                    id: offer.to_string(),
                },
            )?;
        rec.withdrawn = true;
        let mut b = Batch::new();
        b.put(
            Table::Offers,
            offer.as_bytes().to_vec(),
            records::encode(Table::Offers, &rec)?,
        );
        crate::catalog::count_change(&mut b);
        core.store.commit_async(b).await?;
        core.catalog_changed(Vec::new(), &[*offer]);
        Ok(())
    }

    /// Terminates an agreement this participant is a party of: signs a termination,
    /// stores and logs it (transfers under it are refused from now on) and sends it to
    /// the peer when a session with it is open. Returns whether the peer was told.
    pub async fn terminate(
        &self,
        agreement: &Hash256,
        reason: &str,
    ) -> Result<bool, ConnectorError> {
        let core = self.inner.core.clone();
        let a = core
            .agreement(agreement)
            .ok_or_else(|| ConnectorError::NotFound {
                what: "agreement",
                id: agreement.to_string(),
            })?;
        let now = core.now();
        let text = reason
            .chars()
            .take(256)
            .collect::<String>()
            .parse::<Text>()
            .ok();
        let signed = tds_policy::contract::terminate(core.signer.as_ref(), &a, now, text)
            .map_err(|e| ConnectorError::invalid("termination", &e))?;
        let rec = TerminationRecord {
            by: core.me,
            code: "terminated".into(),
            termination: signed.clone(),
            time: now,
        };
        let mut b = Batch::new();
        b.put(
            Table::Terminations,
            agreement.as_bytes().to_vec(),
            records::encode(Table::Terminations, &rec)?,
        );
        core.mark_terminated(*agreement);
        let paired = core.paired.read().await;
        let stored = core.store.commit_async(b);
        let logged = core.record(EventBody::AgreementTerminated {
            agreement: *agreement,
            reason: code("terminated"),
        });
        let (s, l) = tokio::join!(stored, logged);
        drop(paired);
        s?;
        l?;
        core.emit(ConnectorEvent::AgreementTerminated {
            agreement: *agreement,
            by: core.me,
        });
        let t = a.terms();
        let other = if t.provider == core.me {
            t.consumer
        } else {
            t.provider
        };
        let Some(peer) = self.inner.peer_by_id(&other) else {
            return Ok(false);
        };
        let delivered = deliver(&peer, move |s, now| s.terminate_agreement(now, &a, signed)).await;
        Ok(delivered.is_ok())
    }

    /// Consumer: deletes the local copy of `agreement`'s asset, stops its uses (the
    /// guard refuses them), fulfils its delete duty, and sends the provider at `addr` a
    /// signed deletion receipt, which it verifies and logs. Logged here as
    /// `duty_fulfilled` with the receipt.
    pub async fn delete(
        &self,
        addr: SocketAddr,
        agreement: &Hash256,
    ) -> Result<Hash256, ConnectorError> {
        let core = self.inner.core.clone();
        let a = core
            .agreement(agreement)
            .ok_or_else(|| ConnectorError::NotFound {
                what: "agreement",
                id: agreement.to_string(),
            })?;
        let mut rec: FetchRecord =
            records::get(core.store.as_ref(), Table::Transfers, agreement.as_bytes())?.ok_or_else(
                || ConnectorError::NotFound {
                    what: "fetched copy of agreement",
                    id: agreement.to_string(),
                },
            )?;
        let state = if rec.verified.is_empty() {
            None
        } else {
            VerifierState::from_bytes(&rec.verified).ok()
        };
        let (chunks, bytes) = state.as_ref().map_or((0, 0), |s| {
            (
                s.verified.iter().map(|b| u64::from(b.count_ones())).sum(),
                verified_bytes(s),
            )
        });
        match std::fs::remove_file(&rec.out) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ConnectorError::io(Path::new(&rec.out), e)),
        }
        self.guard
            .mark_deleted(agreement)
            .map_err(|e| ConnectorError::invalid("usage guard", &e))?;
        rec.deleted = true;
        let mut b = Batch::new();
        b.put(
            Table::Transfers,
            agreement.as_bytes().to_vec(),
            records::encode(Table::Transfers, &rec)?,
        );
        core.store.commit_async(b).await?;
        let asset = a
            .terms()
            .asset
            .as_str()
            .parse::<tds_manifest::AssetId>()
            .map(|x| *x.as_hash())
            .map_err(|e| ConnectorError::Invalid {
                what: "agreement asset",
                message: e.to_string(),
                code: "connector.agreement",
            })?;
        let receipt = tds_protocol::signed::DeletionReceipt {
            agreement: *agreement,
            asset,
            consumer: core.me,
            consumer_key: core.signer.public_key(),
            chunks,
            bytes,
            time: core.now(),
        };
        let signed = tds_protocol::signed::sign_deletion_receipt(core.signer.as_ref(), &receipt)
            .map_err(|e| ConnectorError::invalid("deletion receipt", &e))?;
        let v = tds_protocol::signed::verify_deletion_receipt(&signed, &core.signer.public_key())
            .map_err(|e| ConnectorError::invalid("deletion receipt", &e))?;
        core.record(EventBody::DutyFulfilled {
            agreement: *agreement,
            duty: code("delete"),
            receipt: Some(SignedObject {
                kind: code("deletion-receipt"),
                id: v.id(),
                bytes: signed.clone(),
            }),
        })
        .await?;
        let peer = self.inner.peer(addr).await?;
        deliver(&peer, move |s, now| s.send_deletion_receipt(now, signed)).await?;
        Ok(v.id())
    }

    /// Consumer: signs a usage report of `agreement` for the period since the last one
    /// (uses counted by the guard), logs it, sends it to the provider at `addr` (which
    /// verifies and logs it), and fulfils the due `report-usage` duties. Sent by itself
    /// when such a duty falls due and the provider's address is known.
    pub async fn report_usage(
        &self,
        addr: SocketAddr,
        agreement: &Hash256,
    ) -> Result<Hash256, ConnectorError> {
        report_usage(&self.inner, &self.guard, addr, agreement).await
    }

    /// Provider: the uses and bytes served under an agreement by transfers that ended.
    pub fn served(&self, agreement: &Hash256) -> tds_protocol::session::Usage {
        self.inner.core.served(agreement)
    }

    // ---- consumer ----

    /// One page of the catalog of the peer at `addr`.
    pub async fn catalog(
        &self,
        addr: SocketAddr,
        filter: CatalogFilter,
        cursor: Option<Vec<u8>>,
    ) -> Result<CatalogPage, ConnectorError> {
        let rx = self
            .inner
            .call_fresh(addr, |peer| {
                let (tx, rx) = oneshot::channel();
                let waiters = peer.waiters.clone();
                let (filter, cursor) = (filter.clone(), cursor.clone());
                let call = move |s: &mut Session, now| {
                    let id =
                        s.query_catalog(now, filter, cursor, tds_protocol::message::MAX_PAGE)?;
                    lock(&waiters).catalogs.insert(id, tx);
                    Ok(())
                };
                (call, rx)
            })
            .await?;
        rx.await
            .map_err(|_| ConnectorError::Closed("the session ended".into()))?
    }

    /// Every catalog entry of the peer at `addr` matching `filter` (all pages).
    pub async fn catalog_all(
        &self,
        addr: SocketAddr,
        filter: CatalogFilter,
    ) -> Result<Vec<tds_protocol::session::CatalogResult>, ConnectorError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.catalog(addr, filter.clone(), cursor).await?;
            out.extend(page.items);
            match page.next {
                Some(n) if out.len() < 1_000_000 => cursor = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// Negotiates `offer` (the provider-signed bytes, from a catalog) with the peer at
    /// `addr` for `purpose`, asking for `policy` (default: the offer's narrowed to the
    /// purpose). Returns the agreement once it is signed by both, stored and logged here.
    /// A refusal carries the provider's code and reason.
    pub async fn negotiate(
        &self,
        addr: SocketAddr,
        offer: &[u8],
        policy: Option<Policy>,
        purpose: Purpose,
    ) -> Result<Arc<VerifiedAgreement>, ConnectorError> {
        // An offer of public data under a licence: the chain must hold before asking.
        let opened = tds_core::cose::open::<Offer>(offer)
            .map_err(|e| ConnectorError::invalid("offer", &e))?;
        if let Some(licence) = &opened.value().licence {
            self.inner.core.check_licence(opened.value(), licence)?;
        }
        let rx = self
            .inner
            .call_fresh(addr, |peer| {
                let (tx, rx) = oneshot::channel();
                let waiters = peer.waiters.clone();
                let (offer, policy, purpose) = (offer.to_vec(), policy.clone(), purpose.clone());
                let call = move |s: &mut Session, now| {
                    let pid = s.request_contract(now, &offer, policy, purpose)?;
                    lock(&waiters).negotiations.insert(pid, tx);
                    Ok(())
                };
                (call, rx)
            })
            .await?;
        rx.await
            .map_err(|_| ConnectorError::Closed("the session ended".into()))?
    }

    /// Fetches the asset of `agreement` from the provider at `addr` into `options.out`:
    /// every chunk verified before it is written, the file and its resume state synced
    /// every [`ConnectorConfig::sync_every`] bytes, a fetch interrupted (by a refused
    /// chunk, a lost connection or a crash) resumed without asking for a verified chunk
    /// again, up to [`ConnectorConfig::fetch_attempts`] transfers.
    pub async fn fetch(
        &self,
        addr: SocketAddr,
        agreement: &Hash256,
        options: FetchOptions,
    ) -> Result<Receipt, ConnectorError> {
        let core = self.inner.core.clone();
        let a = core
            .agreement(agreement)
            .ok_or_else(|| ConnectorError::NotFound {
                what: "agreement",
                id: agreement.to_string(),
            })?;
        if a.terms().consumer != core.me {
            return Err(ConnectorError::Agreement {
                agreement: *agreement,
                message: "this participant is not its consumer".into(),
            });
        }
        let out = absolute(&options.out)?;
        let mut attempts = 0u32;
        let mut fetched = 0u64;
        let mut first_resumed = None;
        let saves = Arc::new(tokio::sync::Mutex::new(()));
        loop {
            // What an earlier fetch verified and synced into this file.
            let prior: Option<FetchRecord> =
                records::get(core.store.as_ref(), Table::Transfers, agreement.as_bytes())?;
            let resume = match &prior {
                Some(r) if Path::new(&r.out) == out && !r.deleted && !r.verified.is_empty() => {
                    Some(
                        VerifierState::from_bytes(&r.verified)
                            .map_err(|e| ConnectorError::invalid("resume state", &e))?,
                    )
                }
                _ => None,
            };
            if let Some(r) = &prior {
                if r.complete && Path::new(&r.out) == out && !r.deleted && out.exists() {
                    return Ok(Receipt {
                        agreement: *agreement,
                        out,
                        size: resume.as_ref().map_or(0, |s| s.size),
                        fetched,
                        resumed: first_resumed.unwrap_or(0),
                        attempts,
                        receipt: r.receipt.clone(),
                    });
                }
            }
            let resumed = resume.as_ref().map_or(0, verified_bytes);
            first_resumed.get_or_insert(resumed);
            let total = resume.as_ref().map_or(0, |s| s.size);
            let file: Arc<dyn crate::source::DataSink> = match &options.sink {
                Some(sink) => sink.clone(),
                None => Arc::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .read(true)
                        .open(&out)
                        .map_err(|e| ConnectorError::io(&out, e))?,
                ),
            };
            let peer = self.inner.peer(addr).await?;
            attempts += 1;
            let (tx, rx) = oneshot::channel();
            let fetch = Fetch {
                agreement: a.clone(),
                out: out.clone(),
                file,
                done: Some(tx),
                progress: options.progress.clone(),
                resumed,
                bytes: 0,
                total,
                since_sync: 0,
                syncing: false,
                saves: saves.clone(),
            };
            let waiters = peer.waiters.clone();
            let purpose = options.purpose.clone();
            let context = options.context.clone();
            let agreement_arc = a.clone();
            // A record of the fetch exists before the first byte lands.
            if prior.is_none() {
                let rec = FetchRecord {
                    out: out.display().to_string(),
                    manifest: Vec::new(),
                    verified: Vec::new(),
                    complete: false,
                    receipt: Vec::new(),
                    deleted: false,
                };
                let mut b = Batch::new();
                b.put(
                    Table::Transfers,
                    agreement.as_bytes().to_vec(),
                    records::encode(Table::Transfers, &rec)?,
                );
                core.store.commit_async(b).await?;
            }
            let called = peer
                .driver
                .call(move |s, now| {
                    let pid = s.request_transfer(now, agreement_arc, purpose, resume, context)?;
                    lock(&waiters).fetches.insert(pid, fetch);
                    Ok::<_, tds_protocol::session::CallError>(())
                })
                .await;
            match called {
                // The call never ran (the session stopped as it was made): dial afresh.
                Err(_) if attempts < self.inner.config.fetch_attempts => {
                    self.inner.forget(addr, &peer);
                    continue;
                }
                r => r??,
            }
            let end = rx
                .await
                .map_err(|_| ConnectorError::Closed("the session ended".into()))?;
            match end {
                FetchEnd::Completed {
                    bytes,
                    complete: true,
                    receipt: Some(r),
                } => {
                    fetched = fetched.saturating_add(bytes);
                    return Ok(Receipt {
                        agreement: *agreement,
                        out,
                        size: r.receipt().size,
                        fetched,
                        resumed: first_resumed.unwrap_or(0),
                        attempts,
                        receipt: r.envelope().to_vec(),
                    });
                }
                FetchEnd::Completed { bytes, .. } => {
                    fetched = fetched.saturating_add(bytes);
                    if attempts >= self.inner.config.fetch_attempts {
                        return Err(ConnectorError::Refused {
                            what: "transfer",
                            refusal: Refusal::new(
                                "transfer.incomplete",
                                "the provider completed the transfer before every chunk arrived",
                            ),
                        });
                    }
                }
                FetchEnd::Terminated {
                    code: c,
                    reason,
                    bytes,
                } => {
                    fetched = fetched.saturating_add(bytes);
                    let retry = attempts < self.inner.config.fetch_attempts && retryable(&c);
                    if !retry {
                        return Err(ConnectorError::Refused {
                            what: "transfer",
                            refusal: Refusal::new(&c, &reason),
                        });
                    }
                    tracing::info!(code = %c, %reason, attempts, "transfer ended; resuming");
                }
            }
        }
    }

    /// The metering records of `agreement` (or of every agreement), oldest key first,
    /// as JSON lines: `{"agreement", "transfer", "provider", "consumer", "uses", "bytes",
    /// "amount", "currency", "time", "log_index", "usage_record"}` (the last: the signed
    /// usage record in hex, `application/tds.usage-record+cbor` signed by this side; the
    /// log event at `log_index` carries the same bytes).
    pub fn export_usage(&self, agreement: Option<&Hash256>) -> Result<String, ConnectorError> {
        let core = &self.inner.core;
        let prefix = records::meter_prefix(agreement);
        let mut out = String::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows =
                core.store
                    .scan_prefix_after(Table::Usage, &prefix, after.as_deref(), 512)?;
            let Some((last, _)) = rows.last() else {
                return Ok(out);
            };
            let last = last.clone();
            for (k, v) in rows {
                let r: MeterRecord = records::decode(Table::Usage, &k, &v)?;
                let line = serde_json::json!({
                    "agreement": r.agreement.to_string(),
                    "transfer": r.transfer.to_string(),
                    "provider": r.provider.to_string(),
                    "consumer": r.consumer.to_string(),
                    "uses": r.uses,
                    "bytes": r.bytes,
                    "amount": r.amount,
                    "currency": r.currency,
                    "time": r.time.as_millis(),
                    "log_index": r.log_index,
                    "usage_record": hex::encode(&r.signed),
                });
                out.push_str(&line.to_string());
                out.push('\n');
            }
            after = Some(last);
        }
    }

    /// Signs a checkpoint of the log as it is now (the note a witness cosigns).
    pub fn checkpoint(&self) -> Result<String, ConnectorError> {
        Ok(self.inner.core.log.checkpoint()?)
    }

    /// Accepts a checkpoint of this log cosigned by the witness of the authority with
    /// key `authority`: kept (evidence proves into the newest kept one) and logged as
    /// `checkpoint_witnessed`.
    pub fn accept_cosigned(
        &self,
        note: &[u8],
        authority: &tds_core::PublicKey,
    ) -> Result<tds_provenance::witnessed::AcceptedCheckpoint, ConnectorError> {
        let core = &self.inner.core;
        Ok(core
            .log
            .accept_cosigned(note, authority, core.cosigned.as_ref(), core.now())?)
    }

    /// An evidence bundle for `agreement`: every logged event naming it (found through
    /// the log's index, not a scan) up to the newest witnessed checkpoint, with inclusion
    /// proofs into it and this participant's credential, encoded. Needs a cosigned
    /// checkpoint ([`accept_cosigned`](Self::accept_cosigned)) taken after the events.
    pub fn evidence(&self, agreement: &Hash256) -> Result<Vec<u8>, ConnectorError> {
        let core = &self.inner.core;
        let log = &core.log;
        let kept = core
            .cosigned
            .all()
            .map_err(tds_provenance::LogError::from)?;
        let (_, note) = kept.last().ok_or_else(|| ConnectorError::NotFound {
            what: "witnessed checkpoint",
            id: "(none accepted yet)".into(),
        })?;
        let checkpoint = String::from_utf8(note.clone()).map_err(|_| ConnectorError::Invalid {
            what: "witnessed checkpoint",
            message: "not UTF-8".into(),
            code: "connector.corrupt_checkpoint",
        })?;
        let assets: Vec<Hash256> = core
            .agreement(agreement)
            .and_then(|a| {
                a.terms()
                    .asset
                    .as_str()
                    .parse::<tds_manifest::AssetId>()
                    .ok()
            })
            .map(|a| vec![*a.as_hash()])
            .unwrap_or_default();
        let bundle = tds_provenance::evidence::export_with_assets(
            log,
            agreement,
            &assets,
            &checkpoint,
            vec![core.credential.clone()],
        )?;
        bundle
            .encode()
            .map_err(|e| ConnectorError::invalid("evidence bundle", &e))
    }

    /// Stops accepting, saves the resume state of every fetch in progress, closes every
    /// connection and waits (up to 5 s) for the peers to be told.
    pub async fn shutdown(&self) {
        if let Some(a) = lock(&self.accept).take() {
            a.abort();
        }
        if let Some(d) = lock(&self.duty_watch).take() {
            d.abort();
        }
        let peers: Vec<Arc<Peer>> = lock(&self.inner.peers).all.values().cloned().collect();
        for p in peers {
            let waiters = p.waiters.clone();
            let states = p
                .driver
                .call(move |s, _| {
                    let pids: Vec<_> = lock(&waiters).fetches.keys().copied().collect();
                    pids.into_iter()
                        .filter_map(|pid| Some((pid, s.verifier_state(pid)?)))
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
            for (pid, state) in states {
                let fetch = lock(&p.waiters).fetches.remove(&pid);
                if let Some(f) = fetch {
                    let _saving = f.saves.lock().await;
                    if f.file.sync().is_ok() {
                        let _ = save_state(&self.inner.core, &f, &state).await;
                    }
                }
            }
        }
        self.inner.endpoint.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.endpoint.wait_idle()).await;
    }
}

/// Sends the usage reports of every `report-usage` duty whose deadline has come and
/// whose provider address is known.
async fn send_due_reports(
    inner: &Arc<Inner>,
    guard: &crate::UsageGuard,
    all: &[crate::usage::DutyStatus],
) {
    use crate::usage::DutyState;
    let mut sent = std::collections::HashSet::new();
    for d in all {
        if !matches!(d.duty, tds_policy::Duty::ReportUsage { .. })
            || d.state != DutyState::Overdue
            || !sent.insert(d.agreement)
        {
            continue;
        }
        let addr = match records::get::<crate::records::AgreementRecord>(
            inner.core.store.as_ref(),
            Table::Agreements,
            d.agreement.as_bytes(),
        ) {
            Ok(Some(r)) => r.peer_addr.and_then(|a| a.parse::<SocketAddr>().ok()),
            _ => None,
        };
        let Some(addr) = addr else { continue };
        if let Err(e) = report_usage(inner, guard, addr, &d.agreement).await {
            tracing::warn!(error = %e, agreement = %d.agreement, "a due usage report was not sent");
        }
    }
}

async fn report_usage(
    inner: &Arc<Inner>,
    guard: &crate::UsageGuard,
    addr: SocketAddr,
    agreement: &Hash256,
) -> Result<Hash256, ConnectorError> {
    let core = inner.core.clone();
    let a = core
        .agreement(agreement)
        .ok_or_else(|| ConnectorError::NotFound {
            what: "agreement",
            id: agreement.to_string(),
        })?;
    let now = core.now();
    let uses = guard.uses(agreement)?;
    let key = records::report_key(agreement);
    let last: Option<crate::records::ReportRecord> =
        records::get(core.store.as_ref(), Table::Usage, &key)?;
    let (from, before) = last
        .as_ref()
        .map_or((a.terms().agreed_at, 0), |l| (l.to, l.uses));
    let period = uses.saturating_sub(before);
    let report = tds_protocol::signed::UsageReport {
        agreement: *agreement,
        consumer: core.me,
        consumer_key: core.signer.public_key(),
        from: from.min(now),
        to: now,
        uses: period,
        bytes: 0,
        actions: if period == 0 {
            Vec::new()
        } else {
            vec![tds_protocol::signed::ActionUses {
                action: tds_policy::Action::Use,
                uses: period,
            }]
        },
        time: now,
    };
    let signed = tds_protocol::signed::sign_usage_report(core.signer.as_ref(), &report)
        .map_err(|e| ConnectorError::invalid("usage report", &e))?;
    let v = tds_protocol::signed::verify_usage_report(&signed, &core.signer.public_key())
        .map_err(|e| ConnectorError::invalid("usage report", &e))?;
    core.record(EventBody::UsageReported {
        agreement: *agreement,
        report: v.id(),
        object: Some(SignedObject {
            kind: code("usage-report"),
            id: v.id(),
            bytes: signed.clone(),
        }),
    })
    .await?;
    let peer = inner.peer(addr).await?;
    deliver(&peer, move |s, now| s.send_usage_report(now, signed)).await?;
    let mut b = Batch::new();
    b.put(
        Table::Usage,
        key,
        records::encode(
            Table::Usage,
            &crate::records::ReportRecord {
                to: now,
                uses,
                report: v.id(),
            },
        )?,
    );
    core.store.commit_async(b).await?;
    for d in guard
        .duties_of(agreement, now)
        .map_err(|e| ConnectorError::invalid("usage guard", &e))?
    {
        if matches!(d.duty, tds_policy::Duty::ReportUsage { .. })
            && matches!(
                d.state,
                crate::usage::DutyState::Due | crate::usage::DutyState::Overdue
            )
        {
            guard
                .fulfil(agreement, d.index, now)
                .map_err(|e| ConnectorError::invalid("usage guard", &e))?;
        }
    }
    Ok(v.id())
}

/// Sends a post-agreement message through `peer`'s session and waits for the peer's
/// answer.
async fn deliver(
    peer: &Peer,
    send: impl FnOnce(
            &mut Session,
            Timestamp,
        ) -> Result<tds_protocol::session::OutId, tds_protocol::session::CallError>
        + Send
        + 'static,
) -> Result<(), ConnectorError> {
    let (tx, rx) = oneshot::channel();
    let waiters = peer.waiters.clone();
    peer.driver
        .call(move |s, now| {
            let id = send(s, now)?;
            lock(&waiters).deliveries.insert(id, tx);
            Ok::<_, tds_protocol::session::CallError>(())
        })
        .await??;
    rx.await
        .map_err(|_| ConnectorError::Closed("the session ended".into()))?
}

async fn save_state(
    core: &Arc<Core>,
    f: &Fetch,
    state: &VerifierState,
) -> Result<(), ConnectorError> {
    let rec = FetchRecord {
        out: f.out.display().to_string(),
        manifest: Vec::new(),
        verified: state
            .to_bytes()
            .map_err(|e| ConnectorError::invalid("verifier state", &e))?,
        complete: false,
        receipt: Vec::new(),
        deleted: false,
    };
    let mut b = Batch::new();
    b.put(
        Table::Transfers,
        f.agreement.id().as_bytes().to_vec(),
        records::encode(Table::Transfers, &rec)?,
    );
    core.store.commit_async(b).await?;
    Ok(())
}

/// Whether a transfer that ended with `code` is worth another attempt (resuming): the
/// data did not verify, the connection or a timer failed. Policy refusals are final.
fn retryable(code: &str) -> bool {
    code.starts_with("chunk.")
        || code.starts_with("manifest.")
        || code.starts_with("merkle.")
        || code.starts_with("transport.")
        || matches!(
            code,
            "transfer.wrong_chunk"
                | "transfer.timeout"
                | "protocol.timeout"
                | "connector.write_failed"
        )
}

/// Bytes of the chunks a saved verifier state marks verified.
pub(crate) fn verified_bytes(s: &VerifierState) -> u64 {
    let chunks = s.size.div_ceil(s.chunk_size.max(1));
    let mut bytes = 0u64;
    for (i, byte) in s.verified.iter().enumerate() {
        for bit in 0..8u64 {
            let index = (i as u64) * 8 + bit;
            if index < chunks && byte & (1 << bit) != 0 {
                let start = index * s.chunk_size;
                bytes += s.chunk_size.min(s.size.saturating_sub(start));
            }
        }
    }
    bytes
}

fn absolute(p: &Path) -> Result<PathBuf, ConnectorError> {
    std::path::absolute(p).map_err(|e| ConnectorError::io(p, e))
}

fn io_msg(path: &Path, m: String) -> ConnectorError {
    ConnectorError::io(path, std::io::Error::other(m))
}

/// Builds the chunk tree of `source` and checks it against `content`: a tree file at
/// `path` when given (written to a temporary name, synced, renamed), else in memory.
fn build_tree(
    source: &dyn DataSource,
    content: &tds_manifest::Commitment,
    path: Option<PathBuf>,
) -> Result<(Tree, Option<PathBuf>), ConnectorError> {
    let builder = ContentBuilder::new(content.chunk_size, std::num::NonZeroUsize::MIN);
    let mismatch = || ConnectorError::Invalid {
        what: "data source",
        message: "the source's bytes do not match the manifest's content commitment".into(),
        code: "connector.source_mismatch",
    };
    let reader = crate::source::SourceReader { source, pos: 0 };
    match path {
        None => {
            let mut leaves = Vec::new();
            let c = builder
                .build_with_leaves(reader, |_, l| {
                    leaves.push(*l);
                    Ok(())
                })
                .map_err(|e| ConnectorError::invalid("data source", &e))?;
            if c != *content {
                return Err(mismatch());
            }
            Ok((Tree::Memory(ChunkTree::from_leaves(leaves)), None))
        }
        Some(path) => {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            std::fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
            let tmp = path.with_extension("tree.tmp");
            let file = std::fs::File::create(&tmp).map_err(|e| ConnectorError::io(&tmp, e))?;
            let mut w = ChunkTreeWriter::new(file, content.chunk_size, content.size)
                .map_err(|e| ConnectorError::invalid("chunk tree", &e))?;
            let mut failed = None;
            let c = builder
                .build_with_leaves(reader, |_, l| {
                    w.push(l).map_err(|e| {
                        let m = e.to_string();
                        failed = Some(e);
                        std::io::Error::other(m)
                    })
                })
                .map_err(|e| ConnectorError::invalid("data source", &e))?;
            if let Some(e) = failed {
                return Err(ConnectorError::invalid("chunk tree", &e));
            }
            if c != *content {
                return Err(mismatch());
            }
            let (file, _) = w
                .finish()
                .map_err(|e| ConnectorError::invalid("chunk tree", &e))?;
            file.sync_all().map_err(|e| ConnectorError::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| ConnectorError::io(&path, e))?;
            let f = std::fs::File::open(&path).map_err(|e| ConnectorError::io(&path, e))?;
            let t = ChunkTreeFile::open_for(f, content)
                .map_err(|e| ConnectorError::invalid("chunk tree", &e))?;
            Ok((Tree::File(Box::new(t)), Some(path)))
        }
    }
}
