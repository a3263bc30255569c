//! One protocol session: everything two connected participants say to each other, as a
//! deterministic state machine. See the crate documentation for the order of calls.

mod catalog;
mod negotiation;
mod post;
mod transfer;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use tds_core::hash::{Domain, Hash256};
use tds_core::rand::RandomSource;
use tds_core::{ErrorCode, Signer, Timestamp};
use tds_identity::VerifiedCredential;
use tds_manifest::content::VerifierState;
use tds_manifest::Commitment;
use tds_policy::contract::{
    Freshness, NonceStore, VerifiedAgreement, VerifiedOffer, VerifiedTermination,
};

use crate::frame::{self, Frame};
use crate::message::{Ack, CatalogFilter, CatalogPageMsg, CheckpointMsg, Message, Pid, Refusal};
use crate::signed::{VerifiedDeletionReceipt, VerifiedTransferReceipt, VerifiedUsageReport};
use crate::state::{NegotiationState, Role, TransferState};

pub use catalog::{CatalogResult, CheckpointSeen};
pub use negotiation::NegotiationView;
pub use transfer::{PlacedChunk, ReceivedChunk, TransferContext, TransferView};

use negotiation::Negotiation;
use transfer::Transfer;

/// Whether a side acts by itself or waits for the application at each decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Decide by the rules: a provider agrees to every request that passes its checks and
    /// starts every transfer that passes its re-check; a consumer accepts offers within
    /// what it asked, countersigns agreements for its requests and completes verified
    /// transfers.
    Auto,
    /// Report each decision as an [`Event`] and wait for the application's call.
    Manual,
}

/// Timers, limits and modes of a session.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long to wait for the reply to a request before sending it again.
    pub request_timeout_ms: u64,
    /// How often a request is sent before the process it belongs to is given up.
    pub max_attempts: u32,
    /// How long a negotiation may stay in one non-final state before it is terminated.
    pub negotiation_timeout_ms: u64,
    /// How long a transfer may make no progress (REQUESTED, or STARTED without a chunk)
    /// before it is terminated.
    pub transfer_idle_timeout_ms: u64,
    /// How long a transfer may stay SUSPENDED before it is terminated.
    pub suspended_timeout_ms: u64,
    /// How long to wait for a chunk (a whole data frame) before asking again.
    pub chunk_timeout_ms: u64,
    /// How far a contract request's time may lie from this side's clock.
    pub freshness: Freshness,
    /// The provider's decisions.
    pub provider_mode: Mode,
    /// The consumer's decisions.
    pub consumer_mode: Mode,
    /// Chunk requests a consumer keeps in flight per transfer.
    pub chunk_window: usize,
    /// Most processes (negotiations and transfers, live or ended and not yet
    /// forgotten) a session holds; ended ones are forgotten first to make room.
    pub max_processes: usize,
    /// How long an ended process is kept (to answer the peer's late retries alike)
    /// before it is forgotten.
    pub linger_ms: u64,
}

impl Config {
    /// The configuration with every value raised to a workable minimum (timers of at
    /// least 100 ms, at least one attempt, one chunk in flight, one process), so no
    /// setting can make a timer fire in a loop.
    pub fn sanitized(mut self) -> Config {
        for t in [
            &mut self.request_timeout_ms,
            &mut self.negotiation_timeout_ms,
            &mut self.transfer_idle_timeout_ms,
            &mut self.suspended_timeout_ms,
            &mut self.chunk_timeout_ms,
        ] {
            *t = (*t).max(100);
        }
        self.max_attempts = self.max_attempts.max(1);
        self.chunk_window = self.chunk_window.max(1);
        self.max_processes = self.max_processes.max(1);
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            request_timeout_ms: 10_000,
            max_attempts: 6,
            negotiation_timeout_ms: 5 * 60 * 1000,
            transfer_idle_timeout_ms: 2 * 60 * 1000,
            suspended_timeout_ms: 60 * 60 * 1000,
            chunk_timeout_ms: 60 * 1000,
            freshness: Freshness::leeway(5 * 60 * 1000),
            provider_mode: Mode::Auto,
            consumer_mode: Mode::Auto,
            chunk_window: 8,
            max_processes: 1024,
            linger_ms: 5 * 60 * 1000,
        }
    }
}

/// Uses and bytes delivered so far under an agreement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Transfers started.
    pub transfers: u64,
    /// Bytes delivered.
    pub bytes: u64,
}

/// An asset this side serves: its owner-signed manifest and the commitment chunks prove
/// against.
#[derive(Clone, Debug)]
pub struct Asset {
    /// The signed manifest.
    pub manifest: Vec<u8>,
    /// The verified manifest.
    pub verified: Arc<tds_manifest::VerifiedManifest>,
}

impl Asset {
    /// The content commitment.
    pub fn commitment(&self) -> &Commitment {
        &self.verified.manifest().content
    }
}

/// What the session asks of the application that hosts it: state that outlives one
/// session (agreements, usage, assets, nonces) and answers the protocol cannot compute
/// (catalog pages, checkpoints). Lookups only: the session never writes through it; it
/// reports what happened as [`Event`]s and the host records them.
pub trait Host: Send + Sync {
    /// Where contract request nonces are remembered.
    fn nonces(&self) -> &dyn NonceStore;

    /// Checks the peer's credential again at `now` (validity and revocation with a fresh
    /// list). Called before every decision that grants something.
    fn check_peer(&self, peer: &VerifiedCredential, now: Timestamp) -> Result<(), Refusal>;

    /// An agreement this side is a party of, by id.
    fn agreement(&self, id: &Hash256) -> Option<Arc<VerifiedAgreement>> {
        let _ = id;
        None
    }

    /// Whether an agreement was terminated: record each [`Event::AgreementTerminated`]
    /// (by either side; the same termination may be reported again in a later session,
    /// so record it by its id).
    fn is_terminated(&self, id: &Hash256) -> bool {
        let _ = id;
        false
    }

    /// Uses and bytes delivered under an agreement by transfers that ended (provider):
    /// record each `TransferCompleted` / `TransferTerminated` of the provider role (one
    /// use, its `bytes`). The session adds the transfers in progress.
    fn usage(&self, id: &Hash256) -> Usage {
        let _ = id;
        Usage::default()
    }

    /// An asset this side serves, by the agreement's asset text (its manifest id).
    fn asset(&self, asset: &str) -> Option<Asset> {
        let _ = asset;
        None
    }

    /// Whether an offer this side made is still offered.
    fn offers(&self, offer: &VerifiedOffer) -> bool {
        let _ = offer;
        true
    }

    /// A page of this side's catalog.
    fn catalog(
        &self,
        filter: &CatalogFilter,
        cursor: Option<&[u8]>,
        limit: u64,
    ) -> Result<CatalogPageMsg, Refusal> {
        let _ = (filter, cursor, limit);
        Err(Refusal::new(
            "catalog.unavailable",
            "this participant has no catalog",
        ))
    }

    /// This side's latest cosigned checkpoint and a consistency proof from `since`.
    fn checkpoint(&self, since: Option<u64>) -> Result<CheckpointMsg, Refusal> {
        let _ = since;
        Err(Refusal::new(
            "checkpoint.unavailable",
            "this participant publishes no checkpoints",
        ))
    }
}

/// The id of a request this side sent (the transport maps it to its stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutId(pub u64);

/// The id the transport gave a request the peer sent (its stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InId(pub u64);

/// Bytes for the transport to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A new request: open a stream, write the frame, finish, and hand the reply to
    /// [`Session::handle_reply`] (or the failure to [`Session::handle_failure`]).
    Request {
        /// Its id.
        id: OutId,
        /// The frame.
        frame: Vec<u8>,
        /// Whether the reply is chunk data (a transfer stream).
        data: bool,
    },
    /// The reply to a request of the peer: write it on that request's stream and finish.
    Reply {
        /// The request it answers.
        to: InId,
        /// The frame.
        frame: Vec<u8>,
    },
}

/// Whether refusing `message` with `code` means the peer broke the protocol (see
/// [`Event::PeerViolation`]): requests the peer may make and be denied or refused for
/// this side's own reasons (contract, transfer, catalog, checkpoint and chunk requests)
/// are not, nor are the refusals an honest race produces (a message that crossed a state
/// change, a process already forgotten or ended by a timer).
fn is_violation(message: &str, code: &str) -> bool {
    let requests = matches!(
        message,
        "contract_request"
            | "transfer_request"
            | "catalog_request"
            | "checkpoint_request"
            | "chunk_request"
    );
    let race = code.ends_with(".invalid_transition")
        || code.ends_with(".unknown_process")
        || code.ends_with(".timeout");
    !requests && !race
}

/// This side's process a peer's message names (the pid field of the side it is sent
/// to), for the messages whose receiver is known from their kind.
fn own_pid(m: &Message) -> Option<Pid> {
    match m {
        Message::ContractOffer(r) => r.consumer_pid,
        Message::ContractAgreement(r) => Some(r.consumer_pid),
        Message::ContractFinalized(r) => Some(r.consumer_pid),
        Message::ContractAccepted(r) => Some(r.provider_pid),
        Message::AgreementVerification(r) => Some(r.provider_pid),
        _ => None,
    }
}

/// Something the application must know or decide.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A negotiation moved to another state.
    NegotiationState {
        /// This side's process id.
        pid: Pid,
        /// This side's role.
        role: Role,
        /// The new state.
        state: NegotiationState,
    },
    /// Provider, manual mode: a verified request (initial, counter-request or ACCEPTED)
    /// waits for [`Session::agree`], [`Session::offer`] or
    /// [`Session::terminate_negotiation`].
    RequestReceived {
        /// The negotiation.
        pid: Pid,
    },
    /// Consumer, manual mode: an offer waits for [`Session::accept_offer`],
    /// [`Session::counter_request`] or [`Session::terminate_negotiation`].
    OfferReceived {
        /// The negotiation.
        pid: Pid,
        /// The offer.
        offer: Arc<VerifiedOffer>,
    },
    /// Consumer, manual mode: a provider-signed agreement waits for
    /// [`Session::verify_agreement`].
    AgreementReceived {
        /// The negotiation.
        pid: Pid,
        /// The agreement id.
        agreement: Hash256,
        /// The terms (already checked to be exactly what this consumer asked for).
        terms: Box<tds_policy::contract::AgreementTerms>,
    },
    /// Provider, manual mode: the countersigned agreement waits for
    /// [`Session::finalize`].
    AgreementVerified {
        /// The negotiation.
        pid: Pid,
    },
    /// Both sides: the agreement is in force (record it: transfers look it up through
    /// [`Host::agreement`]).
    Finalized {
        /// The negotiation.
        pid: Pid,
        /// The agreement with both signatures checked.
        agreement: Arc<VerifiedAgreement>,
        /// The provider's signed FINALIZED notice.
        notice: Vec<u8>,
    },
    /// A negotiation ended without an agreement in force.
    NegotiationTerminated {
        /// The negotiation.
        pid: Pid,
        /// Who ended it.
        by: Role,
        /// The reason code.
        code: String,
        /// Why, in words.
        reason: String,
        /// The signed termination notice, when there is one.
        notice: Option<Vec<u8>>,
    },
    /// This side refused a contract request or a transfer request of the peer (its
    /// checks or its policy said no); the refusal went back to the peer. Log it: denials
    /// are evidence too.
    Denied {
        /// The message refused (`contract_request`, `transfer_request`).
        message: &'static str,
        /// The agreement a transfer request invoked.
        agreement: Option<Hash256>,
        /// The offer a contract request answered (the hash of its signed bytes under
        /// the offer domain, as `Offer::id` computes it), when it opened.
        offer: Option<Hash256>,
        /// The reason sent to the peer.
        refusal: Refusal,
    },
    /// This side refused a message of the peer that an honest peer does not send: a
    /// frame or message that does not decode, a signature, format or terms check that
    /// failed, a message kind out of place. Not a request the peer may make and be
    /// denied ([`Event::Denied`]), nor a message that crossed a state change or named a
    /// process already forgotten (`*.invalid_transition`, `*.unknown_process`: honest
    /// races). The refusal went back to the peer and nothing changed here; alert on it.
    PeerViolation {
        /// The message refused (its name; `frame` when it did not decode).
        message: &'static str,
        /// This side's process the message named, if it names one.
        pid: Option<Pid>,
        /// The reason sent to the peer.
        refusal: Refusal,
    },
    /// The peer refused a message of this side (the process it belongs to, if any, is
    /// terminated on this side). The post-agreement messages report
    /// [`Event::Undelivered`] instead.
    Refused {
        /// The message refused.
        message: &'static str,
        /// The peer's reason (for a catalog page or checkpoint this side refused: this
        /// side's reason).
        refusal: Refusal,
        /// For catalog and checkpoint queries: the id the query was sent under (as in
        /// [`Event::CatalogPage`]), so the application answers the right caller.
        query: Option<OutId>,
    },
    /// A transfer moved to another state.
    TransferState {
        /// This side's process id.
        pid: Pid,
        /// This side's role.
        role: Role,
        /// The new state.
        state: TransferState,
    },
    /// Provider, manual mode: a transfer request passed the re-check and waits for
    /// [`Session::start_transfer`] or [`Session::terminate_transfer`].
    TransferRequested {
        /// The transfer.
        pid: Pid,
        /// The agreement.
        agreement: Hash256,
    },
    /// Provider: the peer wants a chunk; answer with [`Session::send_chunk`] (or
    /// [`Session::chunk_head`]) or [`Session::refuse_chunk`].
    ChunkWanted {
        /// The request to answer.
        reply: InId,
        /// The transfer.
        pid: Pid,
        /// The asset (the agreement's asset text).
        asset: String,
        /// The chunk index.
        index: u64,
        /// Its byte offset in the asset.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A transfer completed. The consumer's receipt, checked, when the consumer completed
    /// it (both sides log it).
    TransferCompleted {
        /// The transfer.
        pid: Pid,
        /// This side's role.
        role: Role,
        /// Whether every chunk was verified (consumer) or the receipt says so
        /// (provider); `false` when the provider completed early.
        complete: bool,
        /// Bytes verified (consumer) or served in this transfer (provider).
        bytes: u64,
        /// The signed receipt.
        receipt: Option<Box<VerifiedTransferReceipt>>,
    },
    /// A transfer ended early.
    TransferTerminated {
        /// The transfer.
        pid: Pid,
        /// Who ended it.
        by: Role,
        /// The reason code.
        code: String,
        /// Why.
        reason: String,
        /// Bytes verified (consumer) or served (provider) before it ended.
        bytes: u64,
    },
    /// A catalog page arrived (every offer and manifest in it checked).
    CatalogPage {
        /// The query it answers.
        query: OutId,
        /// The results.
        items: Vec<CatalogResult>,
        /// The cursor for the next page.
        next: Option<Vec<u8>>,
    },
    /// The peer pushed a revocation list (not yet checked: apply it to the trust store,
    /// which verifies it).
    RevocationList {
        /// The signed list.
        crl: Vec<u8>,
    },
    /// The peer's checkpoint, verified and consistent with the last one seen.
    Checkpoint(CheckpointSeen),
    /// An agreement was terminated: by this side ([`Session::terminate_agreement`],
    /// reported when called) or by the peer (its notice checked). Record it (by the
    /// notice's id; the notice's `time` says when it takes effect): the provider refuses
    /// transfers under an agreement [`Host::is_terminated`] reports.
    AgreementTerminated {
        /// The agreement.
        agreement: Hash256,
        /// Who ended it.
        by: Role,
        /// The signed termination notice, checked against the agreement.
        termination: Arc<VerifiedTermination>,
    },
    /// Provider: the consumer reported its use of an agreement's data (the report
    /// checked: the peer signed it, and is the consumer of an agreement this side
    /// provides).
    UsageReport {
        /// The report.
        report: Box<VerifiedUsageReport>,
    },
    /// Provider: the consumer reported that it deleted an agreement's asset (checked as a
    /// usage report is, and for the agreement's asset).
    DeletionReceipt {
        /// The receipt.
        receipt: Box<VerifiedDeletionReceipt>,
    },
    /// The peer accepted a post-agreement message of this side
    /// ([`Session::terminate_agreement`], [`Session::send_usage_report`],
    /// [`Session::send_deletion_receipt`]).
    Delivered {
        /// The id the call returned.
        id: OutId,
        /// The message (`agreement_termination`, `usage_report`, `deletion_receipt`).
        message: &'static str,
    },
    /// A post-agreement message of this side was not delivered: the peer refused it, or
    /// it got no reply after the configured attempts (`protocol.timeout`).
    Undelivered {
        /// The id the call returned.
        id: OutId,
        /// The message.
        message: &'static str,
        /// Why.
        refusal: Refusal,
    },
    /// The peer's log showed two different views: a checkpoint that is not consistent
    /// with one it signed before. Raise it: this is evidence of a forked log.
    SplitView {
        /// The earlier checkpoint size.
        old_size: u64,
        /// Its root.
        old_root: Hash256,
        /// The new checkpoint's size.
        new_size: u64,
        /// Its root.
        new_root: Hash256,
        /// The new signed checkpoint note (evidence).
        note: Vec<u8>,
    },
}

/// Why a call of the application was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", refusal.code, refusal.reason)]
pub struct CallError {
    /// The code and reason.
    pub refusal: Refusal,
}

impl CallError {
    pub(crate) fn new(code: &str, reason: impl Into<String>) -> CallError {
        CallError {
            refusal: Refusal::new(code, reason),
        }
    }
}

impl From<Refusal> for CallError {
    fn from(refusal: Refusal) -> Self {
        CallError { refusal }
    }
}

/// Peer process ids of forgotten processes remembered per session.
const FORGOTTEN: usize = 4096;

/// Longest reason text kept from a peer's refusal.
const MAX_REFUSAL_REASON: usize = 1024;

/// A peer's refusal made safe to report: a malformed code is replaced, a long reason cut.
fn checked_refusal(r: Refusal) -> Refusal {
    let mut reason = r.reason;
    if reason.len() > MAX_REFUSAL_REASON {
        let mut cut = MAX_REFUSAL_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    if tds_core::code::is_well_formed(&r.code) {
        Refusal::new(r.code, reason)
    } else {
        Refusal::new("protocol.bad_refusal", reason)
    }
}

/// Most replies remembered per process, to answer duplicated messages alike.
const SEEN: usize = 16;

/// The replies given to the peer's messages about one process, by the message's digest,
/// with the state each left: a duplicate is answered alike while the state is still that
/// one (bounded, oldest forgotten first).
#[derive(Debug)]
pub(super) struct Replies<S> {
    seen: VecDeque<(Hash256, Message, S)>,
}

impl<S: Copy + PartialEq> Replies<S> {
    pub(super) fn new() -> Self {
        Replies {
            seen: VecDeque::new(),
        }
    }

    /// The reply given to the message with `digest`, if the process is still in the
    /// state that message left.
    pub(super) fn get(&self, digest: &Hash256, state: S) -> Option<Message> {
        self.seen
            .iter()
            .find(|(d, _, s)| d == digest && *s == state)
            .map(|(_, m, _)| m.clone())
    }

    pub(super) fn remember(&mut self, digest: Hash256, reply: &Message, state: S) {
        if self.seen.len() >= SEEN {
            self.seen.pop_front();
        }
        self.seen.push_back((digest, reply.clone(), state));
    }
}

/// The `ack` of a process: its id and DSP state.
pub(super) fn process_ack(pid: Pid, state: &str) -> Message {
    Message::Ack(Ack {
        pid: Some(pid),
        state: Some(state.to_owned()),
    })
}

/// A call refused by a library error.
pub(super) fn call<E: ErrorCode + std::error::Error + 'static>(e: E) -> CallError {
    CallError::from(refusal_of(&e))
}

/// A refusal from any TDS error: its code and its whole message (causes included).
pub fn refusal_of<E: ErrorCode + std::error::Error + 'static>(e: &E) -> Refusal {
    Refusal::new(e.code(), tds_core::code::full_message(e))
}

/// What an outstanding request is for, to route its reply (`Delivery`: a post-agreement
/// message whose outcome the sender learns).
#[derive(Clone, Debug)]
enum Purpose {
    Negotiation(Pid),
    Transfer(Pid),
    Chunk { pid: Pid, index: u64 },
    Catalog,
    Checkpoint { since: Option<(u64, Hash256)> },
    Notice,
    Delivery,
}

#[derive(Clone, Debug)]
struct Outstanding {
    /// The id it was first sent under (retries get new ids).
    first: Option<OutId>,
    purpose: Purpose,
    name: &'static str,
    frame: Vec<u8>,
    data: bool,
    attempts: u32,
    /// When to send it again (or give up) without a reply.
    deadline: Timestamp,
    /// Waiting for a retry after a failure (not on the wire).
    parked: bool,
}

/// One side of a protocol session with one peer.
pub struct Session {
    config: Config,
    key: Arc<dyn Signer>,
    me: Hash256,
    peer: VerifiedCredential,
    host: Arc<dyn Host>,
    rng: Arc<dyn RandomSource>,
    negotiations: HashMap<Pid, Negotiation>,
    /// The peer's process id → this side's, for processes the peer opened.
    by_peer_pid: HashMap<Pid, Pid>,
    /// The same for transfers.
    transfer_by_peer: HashMap<Pid, Pid>,
    /// Process ids of the peer's forgotten processes, oldest first (bounded): a late
    /// retry naming one is refused, never taken for a new process.
    forgotten: VecDeque<Pid>,
    forgotten_set: std::collections::HashSet<Pid>,
    transfers: HashMap<Pid, Transfer>,
    next_out: u64,
    outstanding: BTreeMap<OutId, Outstanding>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Chunk requests of the peer waiting for the application's data.
    chunk_replies: HashMap<InId, (Pid, u64)>,
    /// The last checkpoint of the peer's log this side verified.
    last_checkpoint: Option<(u64, Hash256)>,
    /// The key the peer signs its log checkpoints with, and the witnesses trusted.
    peer_log: Option<catalog::PeerLog>,
    /// Digests of the peer's post-agreement messages accepted last (bounded), so a
    /// retry is acknowledged without a second event.
    accepted: VecDeque<Hash256>,
    /// Offers this session verified.
    offers: OfferCache,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("me", &self.me)
            .field("peer", &self.peer.id())
            .field("negotiations", &self.negotiations.len())
            .field("transfers", &self.transfers.len())
            .field("outstanding", &self.outstanding.len())
            .finish()
    }
}

/// Offers a session verified, by the SHA-256 of their bytes: each side of a negotiation
/// verifies the offer it names, and the same few offers of a peer come again and again
/// (catalog pages, then requests). `verify_offer` depends on the bytes only (no time, no
/// trust store), so a cached result is the result. Bounded: emptied when full.
#[derive(Default)]
struct OfferCache {
    map: HashMap<Hash256, tds_policy::contract::VerifiedOffer>,
}

/// Offers a session keeps verified.
const OFFER_CACHE: usize = 64;

impl OfferCache {
    fn verify(
        &mut self,
        bytes: &[u8],
    ) -> Result<tds_policy::contract::VerifiedOffer, tds_policy::contract::ContractError> {
        let key = Hash256::sha256(bytes);
        if let Some(v) = self.map.get(&key) {
            return Ok(v.clone());
        }
        let v = tds_policy::contract::verify_offer(bytes)?;
        if self.map.len() >= OFFER_CACHE {
            self.map.clear();
        }
        self.map.insert(key, v.clone());
        Ok(v)
    }
}

impl Session {
    /// A session of the participant holding `key` with `peer`, whose credential the
    /// transport verified (and bound to the connection's key) at connection set-up.
    /// `rng` makes process ids and nonces.
    pub fn new(
        config: Config,
        key: Arc<dyn Signer>,
        peer: VerifiedCredential,
        host: Arc<dyn Host>,
        rng: Arc<dyn RandomSource>,
    ) -> Session {
        let me = key.key_id();
        Session {
            config: config.sanitized(),
            key,
            me,
            peer,
            host,
            rng,
            negotiations: HashMap::new(),
            by_peer_pid: HashMap::new(),
            transfer_by_peer: HashMap::new(),
            forgotten: VecDeque::new(),
            forgotten_set: std::collections::HashSet::new(),
            transfers: HashMap::new(),
            next_out: 0,
            outstanding: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            chunk_replies: HashMap::new(),
            last_checkpoint: None,
            peer_log: None,
            accepted: VecDeque::new(),
            offers: OfferCache::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the configuration (modes and timers may change between calls; the values
    /// are [sanitized](Config::sanitized)).
    pub fn set_config(&mut self, config: Config) {
        self.config = config.sanitized();
    }

    /// The peer's verified credential.
    pub fn peer(&self) -> &VerifiedCredential {
        &self.peer
    }

    /// This side's participant id.
    pub fn me(&self) -> Hash256 {
        self.me
    }

    /// The next bytes to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let requests = self.outstanding.values().map(|o| o.deadline);
        let linger = self.config.linger_ms;
        let negotiations = self
            .negotiations
            .values()
            .filter_map(move |n| n.deadline().or_else(|| n.forget_at(linger)));
        let transfers = self
            .transfers
            .values()
            .filter_map(move |t| t.deadline().or_else(|| t.forget_at(linger)));
        requests.chain(negotiations).chain(transfers).min()
    }

    /// Time passed: resend requests without a reply, give up on those sent too often,
    /// terminate stalled processes.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let due: Vec<OutId> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.retry(now, id);
        }
        let stalled: Vec<Pid> = self
            .negotiations
            .iter()
            .filter(|(_, n)| n.deadline().is_some_and(|d| d <= now))
            .map(|(p, _)| *p)
            .collect();
        for pid in stalled {
            self.negotiation_timed_out(now, pid);
        }
        let idle: Vec<Pid> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.deadline().is_some_and(|d| d <= now))
            .map(|(p, _)| *p)
            .collect();
        for pid in idle {
            self.transfer_timed_out(now, pid);
        }
        self.forget_ended(now, false);
        self.pump(now);
    }

    /// Forgets ended processes whose linger time passed (all ended ones with `all`).
    fn forget_ended(&mut self, now: Timestamp, all: bool) {
        let linger = self.config.linger_ms;
        let due = |at: Option<Timestamp>| at.is_some_and(|t| all || t <= now);
        let gone_n: Vec<Pid> = self
            .negotiations
            .iter()
            .filter(|(_, n)| due(n.forget_at(linger)))
            .map(|(p, _)| *p)
            .collect();
        for pid in gone_n {
            if let Some(n) = self.negotiations.remove(&pid) {
                if let Some(peer) = n.peer_pid() {
                    if self.by_peer_pid.get(&peer) == Some(&pid) {
                        self.by_peer_pid.remove(&peer);
                        self.remember_forgotten(peer);
                    }
                }
            }
        }
        let gone_t: Vec<Pid> = self
            .transfers
            .iter()
            .filter(|(_, t)| due(t.forget_at(linger)))
            .map(|(p, _)| *p)
            .collect();
        for pid in gone_t {
            if let Some(t) = self.transfers.remove(&pid) {
                if let Some(peer) = t.peer_pid() {
                    if self.transfer_by_peer.get(&peer) == Some(&pid) {
                        self.transfer_by_peer.remove(&peer);
                        self.remember_forgotten(peer);
                    }
                }
            }
        }
    }

    fn remember_forgotten(&mut self, peer: Pid) {
        if self.forgotten_set.insert(peer) {
            self.forgotten.push_back(peer);
        }
        while self.forgotten.len() > FORGOTTEN {
            if let Some(old) = self.forgotten.pop_front() {
                self.forgotten_set.remove(&old);
            }
        }
    }

    /// Whether `pid` is the id of one of this side's own processes (a peer may not take
    /// it for one of its own: a message would then name two processes).
    pub(crate) fn is_own_pid(&self, pid: &Pid) -> bool {
        self.negotiations.contains_key(pid) || self.transfers.contains_key(pid)
    }

    /// Whether a peer's process id belongs to a process this side has forgotten.
    pub(crate) fn was_forgotten(&self, peer: &Pid) -> bool {
        self.forgotten_set.contains(peer)
    }

    /// The request `id` of this side could not be delivered or its reply was lost (the
    /// stream or the connection failed): it is sent again after a pause, up to
    /// [`Config::max_attempts`] times in all.
    pub fn handle_failure(&mut self, now: Timestamp, id: OutId) {
        if let Some(o) = self.outstanding.get_mut(&id) {
            let backoff = 100u64.saturating_mul(1 << o.attempts.min(10));
            o.parked = true;
            o.deadline = now.saturating_add_millis(backoff.min(self.config.request_timeout_ms));
        }
    }

    /// A request of the peer arrived whole on the stream the transport calls `id`. The
    /// reply comes out of [`Session::poll_transmit`] (at once, or after the application
    /// answered a [`Event::ChunkWanted`]).
    pub fn handle_request(&mut self, now: Timestamp, id: InId, bytes: &[u8]) {
        let mut named: (&'static str, Option<Pid>) = ("frame", None);
        let reply = match frame::decode(bytes) {
            Err(e) => Err(refusal_of(&e)),
            Ok(Frame::Data(..)) => Err(Refusal::new(
                "protocol.unexpected_message",
                "a data frame is only a reply to a chunk request",
            )),
            Ok(Frame::Control(m)) => {
                named = (m.name(), own_pid(&m));
                let digest = Domain::ENVELOPE.hash(bytes);
                self.dispatch(now, id, digest, m)
            }
        };
        if let Err(refusal) = &reply {
            let (message, pid) = named;
            if is_violation(message, &refusal.code) {
                self.events.push_back(Event::PeerViolation {
                    message,
                    pid,
                    refusal: refusal.clone(),
                });
            }
        }
        match reply {
            Ok(Some(m)) => self.reply(id, &m),
            Ok(None) => {}
            Err(r) => self.reply(id, &Message::Error(r)),
        }
        self.pump(now);
    }

    /// The reply to request `id` of this side arrived whole. A verified chunk is returned
    /// for the application to store (borrowed from `bytes`); everything else the reply
    /// causes comes out as events and transmits.
    pub fn handle_reply<'a>(
        &mut self,
        now: Timestamp,
        id: OutId,
        bytes: &'a [u8],
    ) -> Option<ReceivedChunk<'a>> {
        let Some(o) = self.outstanding.remove(&id) else {
            // A late reply to a request given up on or already answered.
            return None;
        };
        let out = match frame::decode(bytes) {
            Err(e) => {
                self.peer_broke(now, &o, refusal_of(&e));
                None
            }
            Ok(Frame::Data(header, data)) => match o.purpose {
                Purpose::Chunk { pid, index } => self.chunk_arrived(now, pid, index, header, data),
                _ => {
                    self.peer_broke(
                        now,
                        &o,
                        Refusal::new("protocol.unexpected_message", "chunk data out of place"),
                    );
                    None
                }
            },
            Ok(Frame::Control(Message::Error(r))) => {
                self.refused(now, &o, r);
                None
            }
            Ok(Frame::Control(m)) => {
                self.replied(now, &o, m);
                None
            }
        };
        self.pump(now);
        out
    }

    fn dispatch(
        &mut self,
        now: Timestamp,
        id: InId,
        digest: Hash256,
        m: Message,
    ) -> Result<Option<Message>, Refusal> {
        match m {
            Message::ContractRequest(r) => {
                let offer = r.offer.clone();
                let answer = self.on_contract_request(now, digest, r);
                if let Err(refusal) = &answer {
                    self.events.push_back(Event::Denied {
                        message: "contract_request",
                        agreement: None,
                        offer: self.offers.verify(&offer).ok().map(|o| o.id()),
                        refusal: refusal.clone(),
                    });
                }
                answer.map(Some)
            }
            Message::ContractOffer(r) => self.on_offer(now, digest, r).map(Some),
            Message::ContractAccepted(r) => self.on_accepted(now, digest, r).map(Some),
            Message::ContractAgreement(r) => self.on_agreement(now, digest, r).map(Some),
            Message::AgreementVerification(r) => self.on_verification(now, digest, r).map(Some),
            Message::ContractFinalized(r) => self.on_finalized(now, digest, r).map(Some),
            Message::NegotiationTermination(r) => {
                self.on_negotiation_termination(now, digest, r).map(Some)
            }
            Message::TransferRequest(r) => {
                let agreement = r.agreement;
                let answer = self.on_transfer_request(now, digest, r);
                if let Err(refusal) = &answer {
                    self.events.push_back(Event::Denied {
                        message: "transfer_request",
                        agreement: Some(agreement),
                        offer: None,
                        refusal: refusal.clone(),
                    });
                }
                answer.map(Some)
            }
            Message::TransferStart(r) => self.on_transfer_start(now, digest, r).map(Some),
            Message::TransferResume(r) => self.on_transfer_resume(now, digest, r).map(Some),
            Message::TransferSuspension(r) => self.on_transfer_suspension(now, digest, r).map(Some),
            Message::TransferCompletion(r) => self.on_transfer_completion(now, digest, r).map(Some),
            Message::TransferTermination(r) => {
                self.on_transfer_termination(now, digest, r).map(Some)
            }
            Message::ChunkRequest(r) => self.on_chunk_request(now, id, r),
            Message::CatalogRequest(r) => self.on_catalog_request(now, r).map(Some),
            Message::RevocationNotice(r) => {
                self.events.push_back(Event::RevocationList {
                    crl: r.crl.into_vec(),
                });
                Ok(Some(Message::Ack(Ack {
                    pid: None,
                    state: None,
                })))
            }
            Message::CheckpointRequest(r) => self
                .host
                .checkpoint(r.since)
                .map(|c| Some(Message::Checkpoint(c))),
            Message::AgreementTermination(r) => self.on_agreement_termination(digest, r).map(Some),
            Message::UsageReport(r) => self.on_usage_report(digest, r).map(Some),
            Message::DeletionReceipt(r) => self.on_deletion_receipt(digest, r).map(Some),
            Message::Hello(_) => Err(Refusal::new(
                "protocol.unexpected_message",
                "hello is only the first message of a connection",
            )),
            other => Err(Refusal::new(
                "protocol.unexpected_message",
                format!("{} is a reply, not a request", other.name()),
            )),
        }
    }

    fn reply(&mut self, to: InId, m: &Message) {
        match frame::encode_control(m) {
            Ok(frame) => self.transmits.push_back(Transmit::Reply { to, frame }),
            Err(e) => {
                // Only an internal error can make a reply unencodable; answer with it.
                let r = Message::Error(refusal_of(&e));
                if let Ok(frame) = frame::encode_control(&r) {
                    self.transmits.push_back(Transmit::Reply { to, frame });
                }
            }
        }
    }

    /// Queues a request of this side.
    fn send(
        &mut self,
        now: Timestamp,
        purpose: Purpose,
        m: &Message,
        data: bool,
    ) -> Result<OutId, CallError> {
        let frame = frame::encode_control(m).map_err(|e| CallError::from(refusal_of(&e)))?;
        let id = OutId(self.next_out);
        self.next_out = self.next_out.wrapping_add(1);
        self.transmits.push_back(Transmit::Request {
            id,
            frame: frame.clone(),
            data,
        });
        self.outstanding.insert(
            id,
            Outstanding {
                first: Some(id),
                purpose,
                name: m.name(),
                frame,
                data,
                attempts: 1,
                deadline: now.saturating_add_millis(if data {
                    self.config.chunk_timeout_ms
                } else {
                    self.config.request_timeout_ms
                }),
                parked: false,
            },
        );
        Ok(id)
    }

    fn retry(&mut self, now: Timestamp, id: OutId) {
        let Some(mut o) = self.outstanding.remove(&id) else {
            return;
        };
        if o.attempts >= self.config.max_attempts {
            let r = Refusal::new(
                "protocol.timeout",
                format!("{} got no reply after {} attempts", o.name, o.attempts),
            );
            self.gave_up(now, &o, r);
            return;
        }
        o.attempts = o.attempts.saturating_add(1);
        o.parked = false;
        o.deadline = now.saturating_add_millis(if o.data {
            self.config.chunk_timeout_ms
        } else {
            self.config.request_timeout_ms
        });
        let new = OutId(self.next_out);
        self.next_out = self.next_out.wrapping_add(1);
        self.transmits.push_back(Transmit::Request {
            id: new,
            frame: o.frame.clone(),
            data: o.data,
        });
        self.outstanding.insert(new, o);
    }

    /// The peer answered a request with something that is not a valid reply.
    fn peer_broke(&mut self, now: Timestamp, o: &Outstanding, r: Refusal) {
        self.gave_up(now, o, r);
    }

    /// The peer refused a request.
    fn refused(&mut self, now: Timestamp, o: &Outstanding, r: Refusal) {
        let r = checked_refusal(r);
        // A request sent again after a lost reply may find the peer already past it (it
        // got the first copy and moved on): that refusal of the process's own kind says
        // nothing new. A chunk request is never treated so: its chunk is asked again.
        let area = match o.purpose {
            Purpose::Negotiation(_) => Some("negotiation."),
            Purpose::Transfer(_) => Some("transfer."),
            _ => None,
        };
        if o.attempts > 1
            && area.is_some_and(|a| r.code.starts_with(a))
            && (r.code.ends_with(".invalid_transition") || r.code.ends_with(".pid_in_use"))
        {
            return;
        }
        if !matches!(o.purpose, Purpose::Delivery) {
            self.events.push_back(Event::Refused {
                message: o.name,
                refusal: r.clone(),
                query: match o.purpose {
                    Purpose::Catalog | Purpose::Checkpoint { .. } => o.first,
                    _ => None,
                },
            });
        }
        self.gave_up(now, o, r);
    }

    /// A request failed for good: the process it belongs to ends on this side.
    fn gave_up(&mut self, now: Timestamp, o: &Outstanding, r: Refusal) {
        match o.purpose {
            Purpose::Negotiation(pid) => self.negotiation_failed(now, pid, r),
            Purpose::Transfer(pid) => self.transfer_failed(now, pid, r),
            Purpose::Chunk { pid, index } => {
                // A chunk refused because the transfer is (being) suspended is asked for
                // again after the restart; anything else ends the transfer.
                let suspended = self
                    .transfers
                    .get(&pid)
                    .is_some_and(|t| t.state() == TransferState::Suspended);
                if suspended || r.code == "transfer.not_started" {
                    self.chunk_gave_up(pid, index);
                } else {
                    self.transfer_failed(now, pid, r)
                }
            }
            Purpose::Delivery => self.events.push_back(Event::Undelivered {
                id: o.first.unwrap_or(OutId(u64::MAX)),
                message: o.name,
                refusal: r,
            }),
            Purpose::Catalog | Purpose::Checkpoint { .. } | Purpose::Notice => {}
        }
    }

    fn replied(&mut self, now: Timestamp, o: &Outstanding, m: Message) {
        match (&o.purpose, m) {
            (Purpose::Negotiation(pid), Message::Ack(a)) => self.negotiation_acked(now, *pid, a),
            (Purpose::Transfer(pid), Message::Ack(a)) => self.transfer_acked(now, *pid, a),
            (Purpose::Catalog, Message::CatalogPage(p)) => self.catalog_arrived(o, p),
            (Purpose::Checkpoint { since }, Message::Checkpoint(c)) => {
                self.checkpoint_arrived(*since, c)
            }
            (Purpose::Notice, Message::Ack(_)) => {}
            (Purpose::Delivery, Message::Ack(_)) => self.events.push_back(Event::Delivered {
                id: o.first.unwrap_or(OutId(u64::MAX)),
                message: o.name,
            }),
            (_, m) => self.peer_broke(
                now,
                o,
                Refusal::new(
                    "protocol.unexpected_message",
                    format!("{} is no reply to {}", m.name(), o.name),
                ),
            ),
        }
    }

    /// Fills the transmit queue with what the processes want to send now.
    fn pump(&mut self, now: Timestamp) {
        self.pump_transfers(now);
    }

    /// The random source, as a process id.
    fn new_pid(&self) -> Result<Pid, Refusal> {
        Pid::random(&*self.rng).map_err(|e| refusal_of(&e))
    }

    fn live_processes(&self) -> usize {
        self.negotiations
            .values()
            .filter(|n| !n.state().is_final())
            .count()
            + self
                .transfers
                .values()
                .filter(|t| !t.state().is_final())
                .count()
    }

    fn check_capacity(&mut self, now: Timestamp) -> Result<(), Refusal> {
        if self.negotiations.len() + self.transfers.len() >= self.config.max_processes {
            // Make room by forgetting ended processes early.
            self.forget_ended(now, true);
        }
        if self.negotiations.len() + self.transfers.len() >= self.config.max_processes {
            return Err(Refusal::new(
                "protocol.too_many_processes",
                format!(
                    "this session already has {} live processes",
                    self.live_processes()
                ),
            ));
        }
        Ok(())
    }

    /// Saves a transfer's verified set, to resume it in another session
    /// ([`Session::request_transfer`] with `resume`).
    pub fn verifier_state(&self, pid: Pid) -> Option<VerifierState> {
        self.transfers.get(&pid).and_then(|t| t.verifier_state())
    }
}
