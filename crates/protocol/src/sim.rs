//! A deterministic simulation of sessions talking over a network with latency, loss,
//! reordering, duplication and partitions, on a simulated clock. Every run with the
//! same seed is the same run. Tests of this crate and of the connector drive whole
//! conversations with it.
//!
//! The network models what the QUIC transport does with a request: it travels on its
//! own stream, arrives whole or not at all; a lost request or reply shows as no reply
//! (the requester's timer fires); a cut connection fails every stream in flight.

#![expect(
    clippy::indexing_slicing,
    reason = "the two sides are indexed 0 and 1 in fixed-size arrays, by this module only"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use tds_core::hash::Hash256;
use tds_core::rand::{RandError, RandomSource};
use tds_core::Timestamp;
use tds_identity::{TrustStore, VerifiedCredential};
use tds_manifest::content::ChunkTree;
use tds_policy::contract::{MemoryNonceStore, NonceStore, VerifiedAgreement};

use crate::message::{CatalogFilter, CatalogPageMsg, CheckpointMsg, Refusal};
use crate::session::{Asset, Event, Host, InId, OutId, ReceivedChunk, Session, Transmit, Usage};

/// A seeded generator (SplitMix64): deterministic randomness for sessions and the
/// network. Not for keys.
#[derive(Debug)]
pub struct SimRandom(Mutex<u64>);

impl SimRandom {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SimRandom {
        SimRandom(Mutex::new(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Whether an event of probability `p` happens.
    pub fn chance(&self, p: f64) -> bool {
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        p > 0.0 && x < p
    }

    /// A number in `lo..=hi`.
    pub fn between(&self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
}

impl RandomSource for SimRandom {
    fn fill(&self, out: &mut [u8]) -> Result<(), RandError> {
        for chunk in out.chunks_mut(8) {
            let b = self.next_u64().to_le_bytes();
            for (o, i) in chunk.iter_mut().zip(b) {
                *o = i;
            }
        }
        Ok(())
    }
}

/// How the simulated network behaves.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Smallest one-way delay, ms.
    pub min_latency_ms: u64,
    /// Largest one-way delay, ms (a spread reorders messages).
    pub max_latency_ms: u64,
    /// Probability a request or a reply is lost.
    pub loss: f64,
    /// Probability a request is delivered twice.
    pub duplicate: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            min_latency_ms: 1,
            max_latency_ms: 1,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

#[derive(Debug)]
enum Packet {
    Request {
        to: usize,
        from: usize,
        out: OutId,
        frame: Vec<u8>,
    },
    Reply {
        to: usize,
        out: OutId,
        frame: Vec<u8>,
    },
    Failure {
        to: usize,
        out: OutId,
    },
}

/// What the simulated application of one side did with its session's output.
#[derive(Debug, Default)]
pub struct Journal {
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Chunks received and verified: (transfer, index) → bytes.
    pub chunks: BTreeMap<(crate::message::Pid, u64), Vec<u8>>,
    /// Chunks served: (transfer, index) → how often.
    pub served: BTreeMap<(crate::message::Pid, u64), u32>,
    /// Requests this side received (after the network).
    pub requests_in: u64,
    /// Chunk requests this side sent for a chunk it had already received and verified
    /// (the protocol promises none).
    pub requested_after_verified: u64,
    /// Chunks this side served that the peer had already verified when asked, counting
    /// requests the network duplicated.
    pub served_after_verified: u64,
}

/// One simulated participant: its session with the other side and its application.
pub struct Side {
    /// The session.
    pub session: Session,
    /// The host (shared with the session).
    pub host: Arc<MemoryHost>,
    /// What happened.
    pub journal: Journal,
    /// The contents of assets this side serves, by asset id text, with their trees.
    pub contents: HashMap<String, (Arc<Vec<u8>>, Arc<ChunkTree>)>,
    /// Serve chunks automatically on [`Event::ChunkWanted`].
    pub serve: bool,
    /// Corrupt every served chunk (a hostile provider).
    pub corrupt: bool,
}

/// Two sessions on a simulated network.
pub struct Sim {
    /// The simulated time.
    pub now: Timestamp,
    /// The network's behaviour.
    pub net: NetConfig,
    /// The two sides (0 and 1).
    pub sides: [Side; 2],
    rng: SimRandom,
    queue: BTreeMap<(Timestamp, u64), Packet>,
    seq: u64,
    next_in: u64,
    /// Inbound id → (requester side, its OutId).
    routes: HashMap<InId, (usize, OutId)>,
    /// Requests on the wire per side, to fail them on a cut.
    open: [HashSet<OutId>; 2],
    partitioned: bool,
    /// Packets dropped by loss or partition.
    pub dropped: u64,
    /// Requests delivered twice.
    pub duplicated: u64,
}

impl Sim {
    /// Two sides on a network, starting at `now`, with `seed`.
    pub fn new(now: Timestamp, net: NetConfig, seed: u64, a: Side, b: Side) -> Sim {
        Sim {
            now,
            net,
            sides: [a, b],
            rng: SimRandom::new(seed),
            queue: BTreeMap::new(),
            seq: 0,
            next_in: 0,
            routes: HashMap::new(),
            open: [HashSet::new(), HashSet::new()],
            partitioned: false,
            dropped: 0,
            duplicated: 0,
        }
    }

    fn push(&mut self, delay: u64, p: Packet) {
        self.seq += 1;
        self.queue
            .insert((self.now.saturating_add_millis(delay), self.seq), p);
    }

    fn latency(&self) -> u64 {
        self.rng
            .between(self.net.min_latency_ms, self.net.max_latency_ms)
    }

    /// Cuts the connection: every request in flight fails on both sides (as a QUIC
    /// connection loss does), and nothing passes until [`Sim::heal`].
    pub fn cut(&mut self) {
        self.partitioned = true;
        self.queue.clear();
        for side in 0..2 {
            let open: Vec<OutId> = self.open[side].drain().collect();
            for out in open {
                self.push(1, Packet::Failure { to: side, out });
            }
        }
    }

    /// Lets messages pass again.
    pub fn heal(&mut self) {
        self.partitioned = false;
    }

    /// Moves the output of both sessions onto the network and handles events.
    fn drain(&mut self) {
        for side in 0..2 {
            loop {
                let mut progressed = false;
                while let Some(e) = self.sides[side].session.poll_event() {
                    progressed = true;
                    self.app(side, e);
                }
                while let Some(t) = self.sides[side].session.poll_transmit() {
                    progressed = true;
                    self.transmit(side, t);
                }
                if !progressed {
                    break;
                }
            }
        }
    }

    fn transmit(&mut self, side: usize, t: Transmit) {
        let other = 1 - side;
        match t {
            Transmit::Request { id, frame, .. } => {
                self.open[side].insert(id);
                if let Ok(crate::frame::Frame::Control(crate::Message::ChunkRequest(r))) =
                    crate::frame::decode(&frame)
                {
                    if self.sides[side]
                        .journal
                        .chunks
                        .contains_key(&(r.consumer_pid, r.index))
                    {
                        self.sides[side].journal.requested_after_verified += 1;
                    }
                }
                if self.partitioned {
                    self.dropped += 1;
                    self.push(1, Packet::Failure { to: side, out: id });
                    return;
                }
                if self.rng.chance(self.net.loss) {
                    self.dropped += 1;
                    return;
                }
                if self.rng.chance(self.net.duplicate) {
                    self.duplicated += 1;
                    let d = self.latency() + self.rng.between(0, 5);
                    self.push(
                        d,
                        Packet::Request {
                            to: other,
                            from: side,
                            out: id,
                            frame: frame.clone(),
                        },
                    );
                }
                let d = self.latency();
                self.push(
                    d,
                    Packet::Request {
                        to: other,
                        from: side,
                        out: id,
                        frame,
                    },
                );
            }
            Transmit::Reply { to, frame } => {
                let Some((requester, out)) = self.routes.get(&to).copied() else {
                    return;
                };
                if self.partitioned || self.rng.chance(self.net.loss) {
                    self.dropped += 1;
                    return;
                }
                let d = self.latency();
                self.push(
                    d,
                    Packet::Reply {
                        to: requester,
                        out,
                        frame,
                    },
                );
            }
        }
    }

    /// The simulated application: records events, serves chunks, records agreements.
    fn app(&mut self, side: usize, e: Event) {
        if let Event::ChunkWanted { pid, index, .. } = &e {
            let consumer_pid = self.sides[side]
                .session
                .transfer(*pid)
                .and_then(|t| t.peer_pid);
            let other = &self.sides[1 - side].journal;
            if consumer_pid.is_some_and(|c| other.chunks.contains_key(&(c, *index))) {
                self.sides[side].journal.served_after_verified += 1;
            }
        }
        let s = &mut self.sides[side];
        match &e {
            Event::Finalized { agreement, .. } => {
                s.host.add_agreement(agreement.clone());
            }
            Event::AgreementTerminated { agreement, .. } => {
                s.host.terminate(*agreement);
            }
            Event::TransferCompleted {
                pid,
                role: crate::state::Role::Provider,
                bytes,
                ..
            }
            | Event::TransferTerminated { pid, bytes, .. } => {
                if let Some(t) = s.session.transfer(*pid) {
                    if t.role == crate::state::Role::Provider {
                        s.host.record_use(t.agreement, *bytes);
                    }
                }
            }
            Event::TransferState {
                state: crate::state::TransferState::Started,
                role: crate::state::Role::Provider,
                ..
            } => {}
            Event::ChunkWanted {
                reply,
                pid,
                asset,
                index,
                ..
            } if s.serve => {
                let served = s.contents.get(asset).and_then(|(data, tree)| {
                    let proof = tree.proof(*index).ok()?;
                    let size = s.session_chunk_size(asset)?;
                    let start = usize::try_from(index.checked_mul(size)?).ok()?;
                    let end = start
                        .saturating_add(usize::try_from(size).ok()?)
                        .min(data.len());
                    Some((data.get(start..end)?.to_vec(), proof.path))
                });
                match served {
                    Some((mut data, path)) => {
                        if s.corrupt {
                            if let Some(b) = data.first_mut() {
                                *b ^= 1;
                            }
                        }
                        *s.journal.served.entry((*pid, *index)).or_default() += 1;
                        let _ = s.session.send_chunk(self.now, *reply, &data, path);
                    }
                    None => s.session.refuse_chunk(
                        *reply,
                        Refusal::new("transfer.chunk_unavailable", "no such chunk"),
                    ),
                }
            }
            _ => {}
        }
        s.journal.events.push(e);
    }

    /// Runs until `done` holds or `limit` ms of simulated time passed; returns whether
    /// `done` held.
    pub fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now.saturating_add_millis(limit_ms);
        self.drain();
        loop {
            if done(self) {
                return true;
            }
            let next_packet = self.queue.keys().next().map(|(t, _)| *t);
            let next_timer = self
                .sides
                .iter()
                .filter_map(|s| s.session.poll_timeout())
                .min();
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return done(self),
            };
            if next > end {
                self.now = end;
                return done(self);
            }
            self.now = self.now.max(next);
            self.step();
        }
    }

    /// Runs `ms` of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(ms, |_| false);
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let p = entry.remove();
            self.deliver(p);
            self.drain();
        }
        for side in 0..2 {
            if self.sides[side]
                .session
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.sides[side].session.handle_timeout(now);
            }
        }
        self.drain();
    }

    fn deliver(&mut self, p: Packet) {
        let now = self.now;
        match p {
            Packet::Request {
                to,
                from,
                out,
                frame,
            } => {
                let id = InId(self.next_in);
                self.next_in += 1;
                self.routes.insert(id, (from, out));
                self.sides[to].journal.requests_in += 1;
                self.sides[to].session.handle_request(now, id, &frame);
            }
            Packet::Reply { to, out, frame } => {
                self.open[to].remove(&out);
                let side = &mut self.sides[to];
                if let Some(ReceivedChunk {
                    pid, index, data, ..
                }) = side.session.handle_reply(now, out, &frame)
                {
                    side.journal.chunks.insert((pid, index), data.to_vec());
                }
            }
            Packet::Failure { to, out } => {
                self.open[to].remove(&out);
                self.sides[to].session.handle_failure(now, out);
            }
        }
    }

    /// Delivers `frame` to side `to` as a request of the other side (a hostile peer's
    /// message); the reply is returned.
    pub fn inject(&mut self, to: usize, frame: &[u8]) -> Option<Vec<u8>> {
        let id = InId(u64::MAX - self.next_in);
        self.next_in += 1;
        self.sides[to].session.handle_request(self.now, id, frame);
        // The side's application handles what the request caused (a chunk to serve, a
        // decision), then its reply is picked out; everything else goes on the network.
        let mut reply = None;
        loop {
            let mut progressed = false;
            while let Some(e) = self.sides[to].session.poll_event() {
                progressed = true;
                self.app(to, e);
            }
            while let Some(t) = self.sides[to].session.poll_transmit() {
                progressed = true;
                match t {
                    Transmit::Reply { to: i, frame } if i == id => reply = Some(frame),
                    other => self.transmit(to, other),
                }
            }
            if !progressed {
                break;
            }
        }
        self.drain();
        reply
    }
}

impl Side {
    /// A side with its session and host.
    pub fn new(session: Session, host: Arc<MemoryHost>) -> Side {
        Side {
            session,
            host,
            journal: Journal::default(),
            contents: HashMap::new(),
            serve: true,
            corrupt: false,
        }
    }

    fn session_chunk_size(&self, asset: &str) -> Option<u64> {
        self.host
            .asset(asset)
            .map(|a| a.commitment().chunk_size.get())
    }
}

#[derive(Default)]
struct HostState {
    agreements: HashMap<Hash256, Arc<VerifiedAgreement>>,
    terminated: HashSet<Hash256>,
    usage: HashMap<Hash256, Usage>,
    assets: HashMap<String, Asset>,
    catalog: Vec<(Vec<u8>, Vec<u8>)>,
    checkpoint: Option<CheckpointMsg>,
}

/// A host that keeps everything in memory: what the simulation's applications use, and
/// a model for real hosts.
pub struct MemoryHost {
    trust: Mutex<TrustStore>,
    nonces: MemoryNonceStore,
    state: Mutex<HostState>,
}

impl MemoryHost {
    /// A host checking peers with `trust`.
    pub fn new(trust: TrustStore) -> MemoryHost {
        MemoryHost {
            trust: Mutex::new(trust),
            nonces: MemoryNonceStore::new(),
            state: Mutex::new(HostState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The trust store (to apply a revocation list).
    pub fn trust(&self) -> std::sync::MutexGuard<'_, TrustStore> {
        self.trust.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a finalized agreement.
    pub fn add_agreement(&self, a: Arc<VerifiedAgreement>) {
        self.state().agreements.insert(a.id(), a);
    }

    /// Marks an agreement terminated.
    pub fn terminate(&self, id: Hash256) {
        self.state().terminated.insert(id);
    }

    /// Records one use of `bytes` under an agreement (a provider's transfer ended).
    pub fn record_use(&self, id: Hash256, bytes: u64) {
        let mut st = self.state();
        let u = st.usage.entry(id).or_default();
        u.transfers = u.transfers.saturating_add(1);
        u.bytes = u.bytes.saturating_add(bytes);
    }

    /// Records usage.
    pub fn set_usage(&self, id: Hash256, usage: Usage) {
        self.state().usage.insert(id, usage);
    }

    /// Serves an asset.
    pub fn add_asset(&self, asset: Asset) {
        let id = asset.verified.id().to_string();
        self.state().assets.insert(id, asset);
    }

    /// Adds a catalog entry (signed offer and manifest).
    pub fn add_catalog_entry(&self, offer: Vec<u8>, manifest: Vec<u8>) {
        self.state().catalog.push((offer, manifest));
    }

    /// Sets the checkpoint served to peers.
    pub fn set_checkpoint(&self, c: CheckpointMsg) {
        self.state().checkpoint = Some(c);
    }
}

impl Host for MemoryHost {
    fn nonces(&self) -> &dyn NonceStore {
        &self.nonces
    }

    fn check_peer(&self, peer: &VerifiedCredential, now: Timestamp) -> Result<(), Refusal> {
        self.trust()
            .verify(peer.envelope(), now)
            .map(|_| ())
            .map_err(|e| crate::session::refusal_of(&e))
    }

    fn agreement(&self, id: &Hash256) -> Option<Arc<VerifiedAgreement>> {
        self.state().agreements.get(id).cloned()
    }

    fn is_terminated(&self, id: &Hash256) -> bool {
        self.state().terminated.contains(id)
    }

    fn usage(&self, id: &Hash256) -> Usage {
        self.state().usage.get(id).copied().unwrap_or_default()
    }

    fn asset(&self, asset: &str) -> Option<Asset> {
        self.state().assets.get(asset).cloned()
    }

    fn catalog(
        &self,
        filter: &CatalogFilter,
        cursor: Option<&[u8]>,
        limit: u64,
    ) -> Result<CatalogPageMsg, Refusal> {
        crate::catalog::page(&self.state().catalog, filter, cursor, limit)
    }

    fn checkpoint(&self, _since: Option<u64>) -> Result<CheckpointMsg, Refusal> {
        self.state()
            .checkpoint
            .clone()
            .ok_or_else(|| Refusal::new("checkpoint.unavailable", "no checkpoint yet"))
    }
}
