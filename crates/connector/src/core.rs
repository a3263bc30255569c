//! The state every session of one connector shares: the store, the log, caches of what
//! the store holds, the transfers in progress across sessions, and the event stream.
//! Sessions see it through [`SessionHost`] (the protocol's [`Host`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use tds_core::hash::Hash256;
use tds_core::{Clock, ErrorCode, Signer, Timestamp};
use tds_identity::VerifiedCredential;
use tds_manifest::content::{ChunkTree, ChunkTreeFile};
use tds_policy::contract::{NonceStore, VerifiedAgreement, VerifiedOffer};
use tds_protocol::message::{CatalogFilter, CatalogPageMsg};
use tds_protocol::session::{Asset, Host, Usage};
use tds_protocol::Refusal;
use tds_provenance::event::{Code, Event, EventBody};
use tds_provenance::store::LogStore;
use tds_provenance::Log;
use tds_transport::SharedTrust;
use tokio::sync::broadcast;

use crate::events::{Alert, AlertKind, ConnectorEvent};
use crate::records::{self, AgreementRecord, AssetRecord, OfferRecord, SourceRecord};
use crate::source::{DataSource, DirSource, FileSource};
use crate::store::{Batch, Store, Table};

/// The log type of a connector (file-backed or in memory).
pub type ConnectorLog = Log<Box<dyn LogStore>>;

/// A chunk tree: in memory (small assets, memory connectors) or a tree file.
pub(crate) enum Tree {
    Memory(ChunkTree),
    File(Box<ChunkTreeFile<std::fs::File>>),
}

impl Tree {
    pub(crate) fn path(&self, index: u64) -> Result<Vec<Hash256>, String> {
        match self {
            Tree::Memory(t) => t.proof(index).map(|p| p.path).map_err(|e| e.to_string()),
            Tree::File(t) => t.proof(index).map(|p| p.path).map_err(|e| e.to_string()),
        }
    }
}

/// An asset this connector serves, ready to read.
pub(crate) struct Served {
    pub(crate) asset: Asset,
    pub(crate) source: Arc<dyn DataSource>,
    pub(crate) tree: Tree,
}

/// A provider transfer in progress (or ended and not yet counted durably).
#[derive(Clone, Copy, Debug)]
struct Live {
    agreement: Hash256,
    bytes: u64,
    ended: bool,
}

#[derive(Default)]
struct Caches {
    served: HashMap<String, Arc<Served>>,
    agreements: HashMap<Hash256, Arc<VerifiedAgreement>>,
    terminated: HashSet<Hash256>,
    /// (session, provider pid) → transfer.
    live: HashMap<(u64, tds_protocol::Pid), Live>,
    /// Verdicts on peer credentials: credential id → (trust generation, checked at).
    peers_ok: HashMap<Hash256, (u64, Timestamp)>,
}

/// What every session of a connector shares.
pub(crate) struct Core {
    pub(crate) me: Hash256,
    pub(crate) signer: Arc<dyn Signer>,
    pub(crate) credential: Vec<u8>,
    pub(crate) trust: SharedTrust,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) log: Arc<ConnectorLog>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) events: broadcast::Sender<ConnectorEvent>,
    pub(crate) nonces: StoreNonces,
    pub(crate) custom: Mutex<HashMap<String, Arc<dyn DataSource>>>,
    /// This log's checkpoints a witness cosigned.
    pub(crate) cosigned: Box<dyn tds_provenance::CosignedStore>,
    /// The consumer-side usage guard (set once at start).
    pub(crate) guard: std::sync::OnceLock<crate::usage::UsageGuard>,
    /// Duties already raised as overdue (agreement, duty index).
    pub(crate) overdue_raised: Mutex<HashSet<(Hash256, u32)>>,
    /// Wakes the duty watcher when a duty is registered.
    pub(crate) duty_wake: tokio::sync::Notify,
    /// Bumped whenever the trust store changes (a revocation list applied).
    pub(crate) trust_generation: std::sync::atomic::AtomicU64,
    /// Held shared by every operation that writes the store and the log in one step (an
    /// agreement stored and logged, a termination, a publication, a metering record),
    /// and exclusively by a backup while it takes its instant: a backup holds both
    /// halves of such a step or neither (`backup` module docs).
    pub(crate) paired: tokio::sync::RwLock<()>,
    /// The catalog in memory (`crate::catalog`).
    pub(crate) catalog: crate::catalog::CatalogIndex,
    caches: Mutex<Caches>,
}

/// How long a peer's credential check is reused (unless the trust store changes): the
/// revocation list's freshness is checked again after it.
const PEER_CHECK_MS: u64 = 30_000;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    #[expect(
        clippy::too_many_arguments,
        reason = "built once, by the connector builder"
    )]
    pub(crate) fn new(
        signer: Arc<dyn Signer>,
        credential: Vec<u8>,
        trust: SharedTrust,
        store: Arc<dyn Store>,
        log: Arc<ConnectorLog>,
        clock: Arc<dyn Clock>,
        data_dir: Option<PathBuf>,
        events: broadcast::Sender<ConnectorEvent>,
    ) -> Core {
        let cosigned: Box<dyn tds_provenance::CosignedStore> = match &data_dir {
            Some(d) => Box::new(tds_provenance::DirCosignedStore::new(d.join("witnessed"))),
            None => Box::new(tds_provenance::witnessed::MemoryCosignedStore::default()),
        };
        Core {
            guard: std::sync::OnceLock::new(),
            overdue_raised: Mutex::new(HashSet::new()),
            duty_wake: tokio::sync::Notify::new(),
            cosigned,
            me: signer.key_id(),
            nonces: StoreNonces::new(store.clone()),
            signer,
            credential,
            trust,
            store,
            log,
            clock,
            data_dir,
            events,
            custom: Mutex::new(HashMap::new()),
            trust_generation: std::sync::atomic::AtomicU64::new(0),
            paired: tokio::sync::RwLock::new(()),
            catalog: crate::catalog::CatalogIndex::default(),
            caches: Mutex::new(Caches::default()),
        }
    }

    /// Raises an alert for every overdue duty not raised before; returns every duty's
    /// status at `now`.
    pub(crate) fn check_duties(
        &self,
    ) -> Result<Vec<crate::usage::DutyStatus>, crate::usage::GuardError> {
        let Some(guard) = self.guard.get() else {
            return Ok(Vec::new());
        };
        let now = self.now();
        let all = guard.duties(now)?;
        for d in &all {
            if d.state == crate::usage::DutyState::Overdue
                && lock(&self.overdue_raised).insert((d.agreement, d.index))
            {
                self.alert(
                    AlertKind::DutyOverdue,
                    "duty.overdue",
                    format!(
                        "duty {} of agreement {} was due at {}",
                        d.duty.name(),
                        d.agreement,
                        d.due.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
                    ),
                    Some(d.agreement),
                    None,
                );
            }
        }
        Ok(all)
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn emit(&self, e: ConnectorEvent) {
        // No receiver is fine: events are for whoever listens.
        let _ = self.events.send(e);
    }

    pub(crate) fn alert(
        &self,
        kind: AlertKind,
        code: &str,
        message: impl Into<String>,
        agreement: Option<Hash256>,
        peer: Option<Hash256>,
    ) {
        let message = message.into();
        tracing::warn!(kind = kind.as_str(), code, %message, "alert");
        self.emit(ConnectorEvent::Alert(Alert {
            kind,
            code: code.to_owned(),
            message,
            agreement,
            peer,
        }));
    }

    /// Checks the licence an offer (this provider's, or one a consumer is about to
    /// negotiate) is made under, against the trusted authorities, now.
    pub(crate) fn check_licence(
        &self,
        offer: &tds_policy::contract::Offer,
        licence: &[u8],
    ) -> Result<tds_policy::licence::VerifiedLicence, crate::ConnectorError> {
        let invalid = crate::ConnectorError::Licence;
        let verified = {
            let trust = self
                .trust
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tds_policy::licence::verify(licence, |key| {
                trust.key(&tds_identity::ParticipantId::of(key)) == Some(key)
            })
            .map_err(invalid)?
        };
        verified.check_offer(offer, self.now()).map_err(invalid)?;
        Ok(verified)
    }

    /// Appends an event acted by this connector; resolves once durable.
    pub(crate) async fn record(&self, body: EventBody) -> Result<u64, tds_provenance::LogError> {
        let e = Event::new(self.now(), self.me, body);
        self.log.append_async(&e).await
    }

    /// Records an event from a context that cannot wait; a failure raises a storage
    /// alert.
    pub(crate) fn record_detached(self: &Arc<Self>, body: EventBody) {
        let core = self.clone();
        tokio::spawn(async move {
            if let Err(e) = core.record(body).await {
                core.alert(AlertKind::Storage, e.code(), e.to_string(), None, None);
            }
        });
    }

    // ---- agreements ----

    /// An agreement by id: from the cache, else from the store (verified again).
    pub(crate) fn agreement(&self, id: &Hash256) -> Option<Arc<VerifiedAgreement>> {
        if let Some(a) = lock(&self.caches).agreements.get(id) {
            return Some(a.clone());
        }
        let rec: AgreementRecord =
            match records::get(self.store.as_ref(), Table::Agreements, id.as_bytes()) {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(error = %e, "reading an agreement");
                    return None;
                }
            };
        let a = match tds_policy::contract::verify_agreement(&rec.agreement) {
            Ok(a) => Arc::new(a),
            Err(e) => {
                tracing::error!(error = %e, agreement = %id, "a stored agreement does not verify");
                return None;
            }
        };
        let terminated = matches!(
            self.store.get(Table::Terminations, id.as_bytes()),
            Ok(Some(_))
        );
        let mut c = lock(&self.caches);
        if terminated {
            c.terminated.insert(*id);
        }
        c.agreements.insert(*id, a.clone());
        Some(a)
    }

    pub(crate) fn cache_agreement(&self, a: Arc<VerifiedAgreement>) {
        lock(&self.caches).agreements.insert(a.id(), a);
    }

    pub(crate) fn is_terminated(&self, id: &Hash256) -> bool {
        if lock(&self.caches).terminated.contains(id) {
            return true;
        }
        // Written by another replica (or before the cache knew the agreement).
        matches!(
            self.store.get(Table::Terminations, id.as_bytes()),
            Ok(Some(_))
        )
    }

    pub(crate) fn mark_terminated(&self, id: Hash256) {
        lock(&self.caches).terminated.insert(id);
    }

    // ---- provider usage ----

    fn durable_usage(&self, id: &Hash256) -> Usage {
        let read = |what| {
            self.store
                .counter(Table::Usage, &records::served_key(id, what))
                .unwrap_or(u64::MAX)
        };
        // A store that cannot answer counts as exhausted: refusing is safe.
        Usage {
            transfers: read("transfers"),
            bytes: read("bytes"),
        }
    }

    /// Starts counting a provider transfer of `session`.
    pub(crate) fn transfer_started(
        &self,
        session: u64,
        pid: tds_protocol::Pid,
        agreement: Hash256,
        bytes: u64,
    ) {
        lock(&self.caches).live.insert(
            (session, pid),
            Live {
                agreement,
                bytes,
                ended: false,
            },
        );
    }

    /// A provider transfer ended: it counts (for every session) until its use is durable.
    pub(crate) fn transfer_ended(&self, session: u64, pid: tds_protocol::Pid) -> Option<Hash256> {
        let mut c = lock(&self.caches);
        let l = c.live.get_mut(&(session, pid))?;
        l.ended = true;
        Some(l.agreement)
    }

    /// Its use is durable: stop counting it here.
    pub(crate) fn transfer_counted(&self, session: u64, pid: tds_protocol::Pid) {
        lock(&self.caches).live.remove(&(session, pid));
    }

    /// Uses and bytes of `id` as seen by `session`: the durable counters, plus every
    /// transfer of another session in progress (and every ended one not yet durable).
    pub(crate) fn usage_for(&self, session: u64, id: &Hash256) -> Usage {
        let mut u = self.durable_usage(id);
        for ((s, _), l) in &lock(&self.caches).live {
            if l.agreement == *id && (*s != session || l.ended) {
                u.transfers = u.transfers.saturating_add(1);
                u.bytes = u.bytes.saturating_add(l.bytes);
            }
        }
        u
    }

    /// Adds a provider use to the durable counters.
    pub(crate) fn count_use(&self, batch: &mut Batch, id: &Hash256, bytes: u64) {
        batch.add(Table::Usage, records::served_key(id, "transfers"), 1);
        batch.add(Table::Usage, records::served_key(id, "bytes"), bytes);
    }

    /// The provider's durable usage of an agreement (ended transfers).
    pub fn served(&self, id: &Hash256) -> Usage {
        self.durable_usage(id)
    }

    // ---- assets ----

    /// A served asset if it is open already.
    pub(crate) fn cached_served(&self, asset: &str) -> Option<Arc<Served>> {
        lock(&self.caches).served.get(asset).cloned()
    }

    pub(crate) fn served_asset(&self, asset: &str) -> Option<Arc<Served>> {
        if let Some(s) = self.cached_served(asset) {
            return Some(s);
        }
        let rec: AssetRecord =
            match records::get(self.store.as_ref(), Table::Assets, asset.as_bytes()) {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(error = %e, asset, "reading an asset record");
                    return None;
                }
            };
        match self.open_served(&rec) {
            Ok(s) => {
                let s = Arc::new(s);
                lock(&self.caches)
                    .served
                    .insert(asset.to_owned(), s.clone());
                Some(s)
            }
            Err(e) => {
                tracing::error!(error = %e, asset, "a published asset cannot be served");
                None
            }
        }
    }

    pub(crate) fn cache_served(&self, asset: String, s: Arc<Served>) {
        lock(&self.caches).served.insert(asset, s);
    }

    pub(crate) fn forget_served(&self, asset: &str) {
        lock(&self.caches).served.remove(asset);
    }

    /// Opens a stored asset: its manifest (owned by this connector), its source and its
    /// tree (the tree file, or rebuilt from the source when there is none).
    fn open_served(&self, rec: &AssetRecord) -> Result<Served, String> {
        let verified = tds_manifest::open(&rec.manifest)
            .and_then(|m| m.verify(&self.signer.public_key()))
            .map_err(|e| e.to_string())?;
        let source = self.open_source(&rec.source)?;
        let content = verified.manifest().content;
        // The tree in this data directory first: a record written before a restore into
        // another directory names the old one.
        let here = self.data_dir.as_ref().map(|d| {
            d.join("trees")
                .join(format!("{}.tree", verified.id().as_hash().to_hex()))
        });
        let path = match (&rec.tree, here) {
            (Some(_), Some(here)) if here.exists() => Some(here.display().to_string()),
            (recorded, _) => recorded.clone(),
        };
        let tree = match &path {
            Some(path) => {
                let f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
                Tree::File(Box::new(
                    ChunkTreeFile::open_for(f, &content).map_err(|e| e.to_string())?,
                ))
            }
            None => {
                let builder = tds_manifest::content::ContentBuilder::new(
                    content.chunk_size,
                    std::num::NonZeroUsize::MIN,
                );
                let (built, tree) = ChunkTree::build(
                    &builder,
                    crate::source::SourceReader {
                        source: source.as_ref(),
                        pos: 0,
                    },
                )
                .map_err(|e| e.to_string())?;
                if built != content {
                    return Err("the source no longer matches the manifest".into());
                }
                Tree::Memory(tree)
            }
        };
        Ok(Served {
            asset: Asset {
                manifest: rec.manifest.clone(),
                verified: Arc::new(verified),
            },
            source,
            tree,
        })
    }

    pub(crate) fn open_source(&self, rec: &SourceRecord) -> Result<Arc<dyn DataSource>, String> {
        Ok(match rec {
            SourceRecord::File { path } => Arc::new(
                FileSource::open(std::path::Path::new(path)).map_err(|e| format!("{path}: {e}"))?,
            ),
            SourceRecord::Dir { path } => Arc::new(
                DirSource::open(std::path::Path::new(path)).map_err(|e| format!("{path}: {e}"))?,
            ),
            SourceRecord::Custom { name } => lock(&self.custom)
                .get(name)
                .cloned()
                .ok_or_else(|| format!("custom source {name} is not registered"))?,
        })
    }

    // ---- offers ----

    pub(crate) fn offer_live(&self, offer: &VerifiedOffer) -> bool {
        match records::get::<OfferRecord>(self.store.as_ref(), Table::Offers, offer.id().as_bytes())
        {
            Ok(Some(r)) => !r.withdrawn,
            _ => false,
        }
    }

    // ---- peers ----

    /// The peer's credential still checks (validity, revocation), cached per trust
    /// generation.
    pub(crate) fn check_peer(
        &self,
        peer: &VerifiedCredential,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        let generation = self
            .trust_generation
            .load(std::sync::atomic::Ordering::Acquire);
        let id = peer.id();
        let expires = peer.credential().not_after();
        if now < expires
            && lock(&self.caches).peers_ok.get(&id).is_some_and(|(g, at)| {
                *g == generation && now.millis_since(*at) < PEER_CHECK_MS && *at <= now
            })
        {
            return Ok(());
        }
        let checked = self
            .trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .verify(peer.envelope(), now);
        match checked {
            Ok(_) => {
                lock(&self.caches).peers_ok.insert(id, (generation, now));
                Ok(())
            }
            Err(e) => {
                lock(&self.caches).peers_ok.remove(&id);
                Err(tds_protocol::session::refusal_of(&e))
            }
        }
    }
}

/// A log reason code from a refusal code: lower case, characters outside the code
/// alphabet replaced by `_`, at most 64 bytes.
pub(crate) fn code(text: &str) -> Code {
    let s: String = text
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.' | '/') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    match Code::new(&s) {
        Ok(c) => c,
        Err(_) => unknown_code(),
    }
}

#[expect(clippy::expect_used, reason = "a constant code in the code alphabet")]
fn unknown_code() -> Code {
    Code::new("unknown").expect("`unknown` is a valid code")
}

/// The guard's view of the connector's agreements. Weak: the core holds the guard, so a
/// strong reference here would keep the core (and its store, locked) alive after the
/// connector is gone. Without its core the guard knows no agreement.
pub(crate) struct CoreAgreements(pub(crate) std::sync::Weak<Core>);

impl crate::usage::AgreementLookup for CoreAgreements {
    fn agreement(&self, id: &Hash256) -> Option<Arc<VerifiedAgreement>> {
        self.0.upgrade()?.agreement(id)
    }
    fn is_terminated(&self, id: &Hash256) -> bool {
        self.0.upgrade().is_none_or(|c| c.is_terminated(id))
    }
}

/// The protocol's view of a connector, for one session.
pub(crate) struct SessionHost {
    pub(crate) core: Arc<Core>,
    pub(crate) session: u64,
}

impl Host for SessionHost {
    fn nonces(&self) -> &dyn NonceStore {
        &self.core.nonces
    }

    fn check_peer(&self, peer: &VerifiedCredential, now: Timestamp) -> Result<(), Refusal> {
        self.core.check_peer(peer, now)
    }

    fn agreement(&self, id: &Hash256) -> Option<Arc<VerifiedAgreement>> {
        self.core.agreement(id)
    }

    fn is_terminated(&self, id: &Hash256) -> bool {
        self.core.is_terminated(id)
    }

    fn usage(&self, id: &Hash256) -> Usage {
        self.core.usage_for(self.session, id)
    }

    fn asset(&self, asset: &str) -> Option<Asset> {
        self.core.served_asset(asset).map(|s| s.asset.clone())
    }

    fn offers(&self, offer: &VerifiedOffer) -> bool {
        self.core.offer_live(offer)
    }

    fn catalog(
        &self,
        filter: &CatalogFilter,
        cursor: Option<&[u8]>,
        limit: u64,
    ) -> Result<CatalogPageMsg, Refusal> {
        self.core.catalog_page(filter, cursor, limit)
    }
}

/// Contract-request nonces: in memory for the requests of the last minutes, each also
/// written to the store (not waited for: an agreement's own durable commit comes after
/// its nonce's in the same committer, so a stored agreement implies its stored nonce).
/// A nonce not in memory is looked up in the store, so a restart still refuses replays.
pub(crate) struct StoreNonces {
    store: Arc<dyn Store>,
    seen: Mutex<HashMap<(Hash256, [u8; 16]), Timestamp>>,
}

/// Nonces older than this are dropped from memory (requests that old are refused by
/// their freshness check anyway).
const NONCE_MEMORY_MS: u64 = 10 * 60 * 1000;

impl StoreNonces {
    fn new(store: Arc<dyn Store>) -> Self {
        StoreNonces {
            store,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn key(consumer: &Hash256, nonce: &[u8; 16]) -> Vec<u8> {
        let mut k = consumer.as_bytes().to_vec();
        k.extend_from_slice(nonce);
        k
    }
}

impl NonceStore for StoreNonces {
    fn insert(&self, consumer: &Hash256, nonce: &[u8; 16], time: Timestamp) -> bool {
        let mut seen = lock(&self.seen);
        if seen.contains_key(&(*consumer, *nonce)) {
            return false;
        }
        let key = Self::key(consumer, nonce);
        match self.store.get(Table::Nonces, &key) {
            Ok(None) => {}
            // Seen before, or the store cannot tell: refuse.
            Ok(Some(_)) | Err(_) => return false,
        }
        if seen.len() >= 4096 {
            let horizon = time.as_millis().saturating_sub(NONCE_MEMORY_MS);
            seen.retain(|_, t| t.as_millis() >= horizon);
        }
        seen.insert((*consumer, *nonce), time);
        let mut b = Batch::new();
        b.put(Table::Nonces, key, time.as_millis().to_be_bytes());
        // Queued now; durable with the next group commit.
        drop(self.store.commit_async(b));
        true
    }
}
