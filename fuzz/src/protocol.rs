//! The `session` target's world and interpreter: a provider and a consumer (credentials
//! from one authority, an asset of three 64 KiB chunks, two offers, a ready agreement)
//! and a script language whose bytes the fuzzer writes. A script is a header (modes,
//! network, seed) and a sequence of [`Op`]s: honest API calls of either side, messages
//! built from fuzzer-chosen fields with the real process ids, offers, requests,
//! agreements, notices and manifest (so they get past the first checks), raw frames, and
//! clock and network steps. [`run`] plays a script in a [`Sim`] and checks the protocol's
//! invariants after every step (see [`Checker`]).
//!
//! The fixtures follow `crates/protocol/tests/sim/common.rs`.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};

use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_core::time::DAY_MS;
use tds_core::{SigningKey, Timestamp};
use tds_identity::{Admission, Authority, Sector, TrustStore, VerifiedCredential};
use tds_manifest::content::{ChunkTree, ContentBuilder};
use tds_manifest::{ChunkSize, Classification, Manifest, PersonalInfo, MANIFEST_VERSION};
use tds_policy::contract::{
    self, create_offer, ContractRequest, Offer, Termination, VerifiedAgreement,
};
use tds_policy::{Policy, Purpose, Region, Text};
use tds_protocol::frame::{self, Frame};
use tds_protocol::message::{
    AcceptedMsg, Ack, AgreementMsg, AgreementTerminationMsg, CatalogFilter, CatalogItem,
    CatalogPageMsg, CatalogRequestMsg, CheckpointMsg, CheckpointRequestMsg, ChunkRequestMsg,
    ContractOfferMsg, ContractRequestMsg, DeletionReceiptMsg, Hello, NoticeMsg,
    RevocationNoticeMsg, TransferCompletionMsg, TransferRequestMsg, TransferResumeMsg,
    TransferStartMsg, TransferStopMsg, UsageReportMsg, VerificationMsg,
};
use tds_protocol::session::{Asset, Config, Event, Mode, OutId, Session, TransferContext};
use tds_protocol::signed::{
    self, ActionUses, DeletionReceipt, Notice, NoticeKind, TransferReceipt, UsageReport,
};
use tds_protocol::sim::{MemoryHost, NetConfig, Side, Sim, SimRandom};
use tds_protocol::state::{
    negotiation_next, transfer_next, NegotiationState, NegotiationStep, TransferState, TransferStep,
};
use tds_protocol::{Message, Pid, Refusal, Role};

/// The simulation's start time.
pub const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
/// Side 0 of the simulation.
pub const CONSUMER: usize = 0;
/// Side 1 of the simulation.
pub const PROVIDER: usize = 1;
/// Chunks of the asset (the last one 1000 bytes short).
pub const CHUNKS: u64 = 3;
/// Most operations of one script.
pub const MAX_OPS: usize = 64;
/// Most requests delivered (to both sides together) in one script: a script stops once
/// it reaches this. `run` steps may ask for up to ~55 minutes of simulated time each, and
/// a transfer whose chunks are withheld keeps re-asking within it; without a bound, one
/// input could run for seconds under the sanitizer (the campaign's first `session`
/// timeout, `seeds/session/regression-slow-retries`: 337 ms in a release build, over 10 s
/// with ASan) without reaching anything new.
pub const MAX_REQUESTS: u64 = 5_000;

fn requests(sim: &Sim) -> u64 {
    sim.sides.iter().map(|s| s.journal.requests_in).sum()
}

const PROVIDER_SEED: [u8; 32] = [1; 32];
const CONSUMER_SEED: [u8; 32] = [2; 32];
const OTHER_SEED: [u8; 32] = [9; 32];
const POLICY: &str = "policy set;\n\npermit use\n  when purpose isA grid;\n";
const POLICY2: &str = "policy set;\n\npermit use\n  when purpose isA grid/planning;\n";
const PURPOSES: [&str; 4] = ["grid/planning", "grid", "marketing", "grid/planning/daily"];
const CODES: [&str; 6] = [
    "transfer.suspended",
    "negotiation.terminated",
    "protocol.invalid",
    "policy.denied",
    "x",
    "",
];

/// Everything the target needs that does not change between inputs.
pub struct World {
    /// The provider's key.
    pub provider: SigningKey,
    /// The consumer's key.
    pub consumer: SigningKey,
    /// A member of no side (and of no authority's trust).
    pub other: SigningKey,
    /// Credentials: provider, consumer.
    pub provider_cred: Vec<u8>,
    /// The consumer's credential.
    pub consumer_cred: Vec<u8>,
    /// The authority's revocation list.
    pub crl: Vec<u8>,
    /// The trust store both sides use.
    pub trust: TrustStore,
    /// The provider's credential, verified.
    pub provider_verified: VerifiedCredential,
    /// The consumer's credential, verified.
    pub consumer_verified: VerifiedCredential,
    /// The signed manifest of the asset.
    pub manifest: Vec<u8>,
    /// The asset the provider serves.
    pub asset: Asset,
    /// Its bytes.
    pub data: Arc<Vec<u8>>,
    /// Its chunk tree.
    pub tree: Arc<ChunkTree>,
    /// Signed offers: the provider's two offers for the asset, and one signed by
    /// `other` for the same asset.
    pub offers: Vec<Vec<u8>>,
    /// Policies a request or a counter-request may ask for.
    pub policies: Vec<Policy>,
    /// Purposes.
    pub purposes: Vec<Purpose>,
    /// Provider-signed agreements (first signature only) over consumer requests made
    /// here, for offer 0 and offer 1.
    pub halves: Vec<Vec<u8>>,
    /// The same, countersigned by the consumer.
    pub fulls: Vec<Vec<u8>>,
    /// `fulls[0]`, verified.
    pub agreement: Arc<VerifiedAgreement>,
}

fn admit(authority: &mut Authority, key: &SigningKey, role: tds_identity::Role) -> Vec<u8> {
    authority
        .admit(
            &Admission {
                subject_key: key.public_key(),
                name: format!("member {role:?}"),
                sectors: vec![Sector::POWER],
                roles: vec![role],
                jurisdiction: "CN-SX".parse().expect("a region"),
                not_before: NOW,
                not_after: NOW.saturating_add_millis(30 * DAY_MS),
            },
            NOW,
        )
        .expect("admission")
        .into_envelope()
}

fn make_offer(provider: &SigningKey, signer: &SigningKey, asset: &str, policy: &str) -> Vec<u8> {
    create_offer(
        signer,
        &Offer {
            asset: asset.parse().expect("an asset id"),
            provider: provider.id(),
            provider_key: provider.public_key(),
            policy: tds_policy::parse("offer", policy).expect("a policy"),
            price: None,
            not_before: NOW,
            not_after: NOW.saturating_add_millis(30 * DAY_MS),
            licence: None,
        },
    )
    .unwrap_or_default()
}

fn build_world() -> World {
    let mut authority =
        Authority::new("Shanxi Energy", SigningKey::from_seed(&[0x42; 32])).expect("authority");
    let provider = SigningKey::from_seed(&PROVIDER_SEED);
    let consumer = SigningKey::from_seed(&CONSUMER_SEED);
    let other = SigningKey::from_seed(&OTHER_SEED);
    let provider_cred = admit(&mut authority, &provider, tds_identity::Role::Provider);
    let consumer_cred = admit(&mut authority, &consumer, tds_identity::Role::Consumer);
    let crl = authority
        .revocation_list(NOW, NOW.saturating_add_millis(30 * DAY_MS))
        .expect("a revocation list")
        .into_envelope();
    let mut trust = TrustStore::new();
    trust.add_authority(authority.public_key());
    trust.add_revocation_list(&crl, NOW).expect("the list");
    let provider_verified = trust
        .verify(&provider_cred, NOW)
        .expect("provider credential");
    let consumer_verified = trust
        .verify(&consumer_cred, NOW)
        .expect("consumer credential");

    let chunk = ChunkSize::MIN;
    let len = (CHUNKS * chunk.get()).saturating_sub(1000) as usize;
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let builder = ContentBuilder::new(chunk, NonZeroUsize::MIN);
    let (content, tree) = ChunkTree::build(&builder, &data[..]).expect("a chunk tree");
    let m = Manifest {
        version: MANIFEST_VERSION,
        title: "Load curves, Taiyuan".into(),
        description: "15-minute feeder load".into(),
        sector: Sector::POWER,
        media_type: "text/csv".into(),
        schema: None,
        keywords: vec!["load".into(), "grid".into()],
        owner: tds_identity::ParticipantId::of(&provider.public_key()),
        owner_key: provider.public_key(),
        created: NOW,
        classification: Classification::General,
        personal: PersonalInfo::None,
        residency: None,
        content,
        lineage: vec![],
        supersedes: None,
        quality: None,
    };
    let manifest = m.sign(&provider).expect("a manifest");
    let verified = tds_manifest::open(&manifest)
        .expect("opens")
        .verify(&provider.public_key())
        .expect("verifies");
    let asset_id = verified.id().to_string();
    let offers = vec![
        make_offer(&provider, &provider, &asset_id, POLICY),
        make_offer(&provider, &provider, &asset_id, POLICY2),
        make_offer(&other, &other, &asset_id, POLICY),
    ];
    let policies = vec![
        tds_policy::parse("offer", POLICY).expect("policy"),
        tds_policy::parse("offer2", POLICY2).expect("policy"),
    ];
    let purposes: Vec<Purpose> = PURPOSES
        .iter()
        .map(|p| p.parse().expect("a purpose"))
        .collect();
    let mut halves = Vec::new();
    let mut fulls = Vec::new();
    let nonces = contract::MemoryNonceStore::new();
    for (i, offer) in offers.iter().take(2).enumerate() {
        let o = contract::verify_offer(offer).expect("offer");
        let purpose = purposes[0].clone();
        let req = contract::create_request(
            &consumer,
            &ContractRequest {
                offer: o.id(),
                consumer: consumer.id(),
                consumer_key: consumer.public_key(),
                policy: contract::narrow_to_purpose(&o.offer().policy, &purpose),
                purpose,
                nonce: serde_bytes::ByteArray::new([0xa0 + i as u8; 16]),
                time: NOW,
            },
        )
        .expect("request");
        let vr = contract::verify_request(&req, &o, &consumer_verified, NOW, &nonces)
            .expect("request verifies");
        let half = contract::accept(&provider, &o, &vr, NOW).expect("accept");
        let full = contract::countersign(&consumer, &half.envelope).expect("countersign");
        halves.push(half.envelope);
        fulls.push(full);
    }
    let agreement = Arc::new(contract::verify_agreement(&fulls[0]).expect("agreement"));
    World {
        provider,
        consumer,
        other,
        provider_cred,
        consumer_cred,
        crl,
        trust,
        provider_verified,
        consumer_verified,
        manifest: manifest.clone(),
        asset: Asset {
            manifest,
            verified: Arc::new(verified),
        },
        data: Arc::new(data),
        tree: Arc::new(tree),
        offers,
        policies,
        purposes,
        halves,
        fulls,
        agreement,
    }
}

/// The world, built once.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(build_world)
}

// ---- the script language ----

/// Picks a process id: `0x00..=0x7f` the `n mod len`-th known one (if any are known),
/// `0xff` the 16 raw bytes that follow, anything else `[b; 16]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidSel {
    /// A known pid by index (ids in order of first appearance in either side's events).
    Known(u8),
    /// Any 16 bytes.
    Raw([u8; 16]),
    /// `[b; 16]`.
    Fill(u8),
}

/// Fields of a message the fuzzer builds: which message (`kind`, in
/// [`tds_protocol::message::MESSAGE_NAMES`] order) and choices its fields are made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgSpec {
    /// Which message (mod 25).
    pub kind: u8,
    /// The first pid field.
    pub a: PidSel,
    /// The second pid field.
    pub b: PidSel,
    /// Choices of signed content (see [`build_message`]).
    pub c: u8,
    /// An index, nonce, code or count.
    pub d: u8,
    /// 0: none; otherwise flip bit `flip >> 13` of the frame byte `flip & 0x1fff` (mod
    /// the frame's length).
    pub flip: u16,
}

/// An honest call of the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Consumer: `request_contract(offers[x % 3], policy y&1 (or default when y&2),
    /// purposes[y>>2 % 4])`.
    RequestContract,
    /// Consumer: `accept_offer`.
    AcceptOffer,
    /// Consumer: `counter_request` with policies[x % 2].
    CounterRequest,
    /// Consumer: `verify_agreement`.
    VerifyAgreement,
    /// Provider: `agree`.
    Agree,
    /// Provider: `offer(offers[x % 3])`.
    Offer,
    /// Provider: `finalize`.
    Finalize,
    /// Either (side x&1): `terminate_negotiation` with CODES[y % 6].
    TerminateNegotiation,
    /// Consumer: `request_transfer(agreement x, purposes[y % 4], resume from the
    /// transfer `pid` when y & 0x80)`.
    RequestTransfer,
    /// Provider: `start_transfer`.
    StartTransfer,
    /// Either (x&1): `suspend_transfer`.
    SuspendTransfer,
    /// Either (x&1): `resume_transfer`.
    ResumeTransfer,
    /// Either (x&1): `complete_transfer`.
    CompleteTransfer,
    /// Either (x&1): `terminate_transfer`, CODES[y % 6].
    TerminateTransfer,
    /// Consumer (x&1 = 0) or provider: `query_catalog`, limit y.
    QueryCatalog,
    /// Either (x&1): `terminate_agreement(agreement y)` with a notice this side signed.
    TerminateAgreement,
    /// Either (x&1): `send_usage_report` for agreement y, signed by the calling side as
    /// the consumer it names.
    SendUsageReport,
    /// Either (x&1): `send_deletion_receipt` for agreement y (another asset when
    /// y & 0x40), signed by the calling side.
    SendDeletionReceipt,
}

const CALLS: [Call; 18] = [
    Call::RequestContract,
    Call::AcceptOffer,
    Call::CounterRequest,
    Call::VerifyAgreement,
    Call::Agree,
    Call::Offer,
    Call::Finalize,
    Call::TerminateNegotiation,
    Call::RequestTransfer,
    Call::StartTransfer,
    Call::SuspendTransfer,
    Call::ResumeTransfer,
    Call::CompleteTransfer,
    Call::TerminateTransfer,
    Call::QueryCatalog,
    Call::TerminateAgreement,
    Call::SendUsageReport,
    Call::SendDeletionReceipt,
];

/// One step of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Runs the simulation for `ms` (×100 when the top bit is set).
    Run(u16),
    /// An honest call. `pid` picks among the calling side's own processes (negotiations
    /// or transfers, as the call needs).
    Call {
        /// The call.
        call: Call,
        /// The process.
        pid: u8,
        /// Choice.
        x: u8,
        /// Choice.
        y: u8,
    },
    /// A built message delivered to side `to & 1` as a request of the other side.
    Send {
        /// The receiving side.
        to: u8,
        /// The message.
        spec: MsgSpec,
    },
    /// Raw bytes delivered to side `to & 1` as a request.
    Inject {
        /// The receiving side.
        to: u8,
        /// The frame.
        frame: Vec<u8>,
    },
    /// Network behaviour: loss and duplication in 1/256ths (at most 1/2), extra latency
    /// spread in ms.
    Net {
        /// Loss.
        loss: u8,
        /// Duplication.
        dup: u8,
        /// Latency spread.
        spread: u8,
    },
    /// Cuts the connection.
    Cut,
    /// Heals it.
    Heal,
    /// The provider's application: corrupt served chunks (bit 0), stop serving (bit 1).
    Hostile(u8),
    /// Delivers again the `n mod len`-th frame an earlier [`Op::Send`] delivered, to the
    /// same side (a replayed or late duplicate message).
    Replay(u8),
}

/// How a script starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bit 0: consumer manual; bit 1: provider manual.
    pub modes: u8,
    /// Seed of the simulation.
    pub seed: u8,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn pid(&mut self) -> Option<PidSel> {
        Some(match self.u8()? {
            b @ 0..=0x7f => PidSel::Known(b),
            0xff => {
                let raw = self.bytes(16);
                let mut p = [0u8; 16];
                p[..raw.len()].copy_from_slice(raw);
                PidSel::Raw(p)
            }
            b => PidSel::Fill(b),
        })
    }
}

fn put_pid(out: &mut Vec<u8>, p: PidSel) {
    match p {
        PidSel::Known(b) => out.push(b & 0x7f),
        PidSel::Raw(r) => {
            out.push(0xff);
            out.extend_from_slice(&r);
        }
        PidSel::Fill(b) => out.push(if b < 0x80 || b == 0xff { 0x80 } else { b }),
    }
}

impl Op {
    fn read(r: &mut Reader<'_>) -> Option<Op> {
        Some(match r.u8()? % 9 {
            0 => Op::Run(r.u16()?),
            1 => Op::Call {
                call: CALLS[usize::from(r.u8()?) % CALLS.len()],
                pid: r.u8()?,
                x: r.u8()?,
                y: r.u8()?,
            },
            2 => Op::Send {
                to: r.u8()?,
                spec: MsgSpec {
                    kind: r.u8()?,
                    a: r.pid()?,
                    b: r.pid()?,
                    c: r.u8()?,
                    d: r.u8()?,
                    flip: r.u16()?,
                },
            },
            3 => {
                let to = r.u8()?;
                let len = r.u16()?;
                Op::Inject {
                    to,
                    frame: r.bytes(usize::from(len)).to_vec(),
                }
            }
            4 => Op::Net {
                loss: r.u8()?,
                dup: r.u8()?,
                spread: r.u8()?,
            },
            5 => Op::Cut,
            6 => Op::Heal,
            7 => Op::Hostile(r.u8()?),
            _ => Op::Replay(r.u8()?),
        })
    }

    /// Appends the op's bytes (what [`Op::read`] reads back).
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Op::Run(ms) => {
                out.push(0);
                out.extend_from_slice(&ms.to_be_bytes());
            }
            Op::Call { call, pid, x, y } => {
                let i = CALLS.iter().position(|c| c == call).unwrap_or(0) as u8;
                out.extend_from_slice(&[1, i, *pid, *x, *y]);
            }
            Op::Send { to, spec } => {
                out.extend_from_slice(&[2, *to, spec.kind]);
                put_pid(out, spec.a);
                put_pid(out, spec.b);
                out.extend_from_slice(&[spec.c, spec.d]);
                out.extend_from_slice(&spec.flip.to_be_bytes());
            }
            Op::Inject { to, frame } => {
                out.extend_from_slice(&[3, *to]);
                let len = frame.len().min(usize::from(u16::MAX));
                out.extend_from_slice(&(len as u16).to_be_bytes());
                out.extend_from_slice(&frame[..len]);
            }
            Op::Net { loss, dup, spread } => out.extend_from_slice(&[4, *loss, *dup, *spread]),
            Op::Cut => out.push(5),
            Op::Heal => out.push(6),
            Op::Hostile(b) => out.extend_from_slice(&[7, *b]),
            Op::Replay(n) => out.extend_from_slice(&[8, *n]),
        }
    }
}

/// A script's bytes.
pub fn script(header: Header, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![header.modes, header.seed];
    for op in ops {
        op.write(&mut out);
    }
    out
}

// ---- the simulation and its checks ----

/// What the checker saw, for seeds that must reach somewhere.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Negotiation states reached, per side.
    pub negotiations: [Vec<NegotiationState>; 2],
    /// Transfer states reached, per side.
    pub transfers: [Vec<TransferState>; 2],
    /// Chunks the consumer holds.
    pub chunks: usize,
    /// Finalized agreements the two sides agree on.
    pub agreed: usize,
    /// Post-agreement messages either side learned were delivered.
    pub delivered: usize,
}

/// Tracks every process from its events and checks the invariants.
#[derive(Default)]
pub struct Checker {
    seen: [usize; 2],
    neg: [BTreeMap<Pid, NegotiationState>; 2],
    xfer: [BTreeMap<Pid, TransferState>; 2],
    finalized: [BTreeMap<Pid, Hash256>; 2],
    /// Every pid in order of first appearance.
    pids: Vec<Pid>,
    /// Each side's own negotiations and transfers, in order of appearance.
    own_neg: [Vec<Pid>; 2],
    own_xfer: [Vec<Pid>; 2],
    /// Agreements either side holds (countersigned or finalized), in order of appearance.
    agreements: Vec<Arc<VerifiedAgreement>>,
    agreed: usize,
    /// The post-agreement messages each side learned the outcome of.
    outcomes: [BTreeMap<OutId, bool>; 2],
    /// The consumer's pid of each negotiation the provider finalized, kept once seen (the
    /// session forgets ended processes after a while).
    peer_of: BTreeMap<Pid, Pid>,
}

fn side_name(side: usize) -> &'static str {
    if side == CONSUMER {
        "consumer"
    } else {
        "provider"
    }
}

const NSTEPS: [NegotiationStep; 7] = [
    NegotiationStep::Request,
    NegotiationStep::Offer,
    NegotiationStep::Accepted,
    NegotiationStep::Agreement,
    NegotiationStep::Verification,
    NegotiationStep::Finalized,
    NegotiationStep::Termination,
];
const TSTEPS: [TransferStep; 5] = [
    TransferStep::Request,
    TransferStep::Start,
    TransferStep::Suspension,
    TransferStep::Completion,
    TransferStep::Termination,
];

fn negotiation_arrow(from: NegotiationState, to: NegotiationState) -> bool {
    NSTEPS.iter().any(|s| {
        [Role::Consumer, Role::Provider]
            .iter()
            .any(|r| negotiation_next(Some(from), *s, *r) == Ok(to))
    })
}

fn transfer_arrow(from: TransferState, to: TransferState) -> bool {
    TSTEPS.iter().any(|s| {
        [Role::Consumer, Role::Provider]
            .iter()
            .any(|r| transfer_next(Some(from), *s, *r) == Ok(to))
    })
}

impl Checker {
    fn learn(&mut self, pid: Pid) {
        if !self.pids.contains(&pid) {
            self.pids.push(pid);
        }
    }

    /// Reads the events both sides reported since the last check and checks them, then
    /// the state of the sessions. `chunks`: also check the consumer's stored chunks.
    pub fn check(&mut self, sim: &Sim, chunks: bool) {
        let w = world();
        for side in 0..2 {
            let events = &sim.sides[side].journal.events;
            let new = events.get(self.seen[side]..).unwrap_or_default();
            self.seen[side] = events.len();
            let who = side_name(side);
            let expected_role = if side == CONSUMER {
                Role::Consumer
            } else {
                Role::Provider
            };
            for e in new {
                match e {
                    Event::NegotiationState { pid, role, state } => {
                        assert_eq!(*role, expected_role, "{who}: negotiation role");
                        match self.neg[side].get(pid) {
                            None => {
                                assert_eq!(
                                    *state,
                                    NegotiationState::Requested,
                                    "{who}: negotiation {pid:?} starts in {state}"
                                );
                                self.own_neg[side].push(*pid);
                            }
                            Some(prev) => {
                                assert!(
                                    !prev.is_final(),
                                    "{who}: negotiation {pid:?} left final state {prev} for {state}"
                                );
                                assert!(
                                    negotiation_arrow(*prev, *state),
                                    "{who}: negotiation {pid:?} moved {prev} -> {state}"
                                );
                            }
                        }
                        self.neg[side].insert(*pid, *state);
                        self.learn(*pid);
                    }
                    Event::TransferState { pid, role, state } => {
                        assert_eq!(*role, expected_role, "{who}: transfer role");
                        match self.xfer[side].get(pid) {
                            None => {
                                assert_eq!(
                                    *state,
                                    TransferState::Requested,
                                    "{who}: transfer {pid:?} starts in {state}"
                                );
                                self.own_xfer[side].push(*pid);
                            }
                            Some(prev) => {
                                assert!(
                                    !prev.is_final(),
                                    "{who}: transfer {pid:?} left final state {prev} for {state}"
                                );
                                assert!(
                                    transfer_arrow(*prev, *state),
                                    "{who}: transfer {pid:?} moved {prev} -> {state}"
                                );
                            }
                        }
                        self.xfer[side].insert(*pid, *state);
                        self.learn(*pid);
                    }
                    Event::Finalized { pid, agreement, .. } => {
                        assert_eq!(
                            self.neg[side].get(pid),
                            Some(&NegotiationState::Finalized),
                            "{who}: Finalized event for {pid:?} not in FINALIZED"
                        );
                        let t = agreement.terms();
                        assert_eq!(t.provider, w.provider.id(), "{who}: agreement's provider");
                        assert_eq!(t.consumer, w.consumer.id(), "{who}: agreement's consumer");
                        let old = self.finalized[side].insert(*pid, agreement.id());
                        assert!(old.is_none(), "{who}: {pid:?} finalized twice");
                        if !self.agreements.iter().any(|a| a.id() == agreement.id()) {
                            self.agreements.push(agreement.clone());
                        }
                    }
                    Event::AgreementTerminated {
                        agreement,
                        by,
                        termination,
                    } => {
                        assert_eq!(termination.agreement(), *agreement, "{who}: termination");
                        let party = if *by == Role::Provider {
                            w.provider.id()
                        } else {
                            w.consumer.id()
                        };
                        assert_eq!(termination.party(), party, "{who}: terminated by {by:?}");
                    }
                    Event::UsageReport { report } => {
                        assert_eq!(side, PROVIDER, "{who} got a usage report");
                        assert_eq!(report.report().consumer, w.consumer.id(), "report");
                    }
                    Event::DeletionReceipt { receipt } => {
                        assert_eq!(side, PROVIDER, "{who} got a deletion receipt");
                        let r = receipt.receipt();
                        assert_eq!(r.consumer, w.consumer.id(), "receipt's consumer");
                        assert_eq!(&r.asset, w.asset.verified.id().as_hash(), "receipt's asset");
                    }
                    Event::Delivered { id, .. } | Event::Undelivered { id, .. } => {
                        let delivered = matches!(e, Event::Delivered { .. });
                        let old = self.outcomes[side].insert(*id, delivered);
                        assert!(old.is_none(), "{who}: two outcomes for {id:?}");
                    }
                    _ => {}
                }
            }
        }
        // The sessions' states are the last reported ones.
        for side in 0..2 {
            let s = &sim.sides[side].session;
            for (pid, state) in &self.neg[side] {
                if let Some(v) = s.negotiation(*pid) {
                    // Agreements held before FINALIZED too, for messages that name them.
                    if let Some(a) = &v.agreement {
                        if !self.agreements.iter().any(|k| k.id() == a.id()) {
                            self.agreements.push(a.clone());
                        }
                    }
                    assert_eq!(
                        v.state,
                        *state,
                        "{}: negotiation {pid:?} is {} but {state} was reported last",
                        side_name(side),
                        v.state
                    );
                    if v.state == NegotiationState::Finalized {
                        let id = v.agreement.as_ref().map(|a| a.id());
                        assert_eq!(
                            id.as_ref(),
                            self.finalized[side].get(pid),
                            "{}: finalized {pid:?} holds another agreement than it reported",
                            side_name(side)
                        );
                    }
                }
            }
            for (pid, state) in &self.xfer[side] {
                if let Some(v) = s.transfer(*pid) {
                    assert_eq!(
                        v.state,
                        *state,
                        "{}: transfer {pid:?} is {} but {state} was reported last",
                        side_name(side),
                        v.state
                    );
                }
            }
        }
        // Both sides agree on what they finalized together.
        let mut agreed = 0;
        for (ppid, pid_agreement) in &self.finalized[PROVIDER] {
            if let Some(cpid) = sim.sides[PROVIDER]
                .session
                .negotiation(*ppid)
                .and_then(|v| v.peer_pid)
            {
                self.peer_of.insert(*ppid, cpid);
            }
            let Some(cpid) = self.peer_of.get(ppid).copied() else {
                continue;
            };
            if let Some(cid) = self.finalized[CONSUMER].get(&cpid) {
                assert_eq!(
                    cid, pid_agreement,
                    "provider {ppid:?} and consumer {cpid:?} finalized different agreements"
                );
                agreed += 1;
            }
        }
        self.agreed = agreed;
        if chunks {
            check_chunks(sim);
        }
    }

    fn outcome(&self, sim: &Sim) -> Outcome {
        let mut o = Outcome {
            chunks: sim.sides[CONSUMER].journal.chunks.len(),
            agreed: self.agreed,
            delivered: self
                .outcomes
                .iter()
                .flat_map(|m| m.values())
                .filter(|d| **d)
                .count(),
            ..Outcome::default()
        };
        for side in 0..2 {
            o.negotiations[side] = self.neg[side].values().copied().collect();
            o.transfers[side] = self.xfer[side].values().copied().collect();
        }
        o
    }
}

/// Nothing accepted unverified: every stored chunk is the asset's, and no chunk was
/// asked for again after it verified.
fn check_chunks(sim: &Sim) {
    let w = world();
    let size = ChunkSize::MIN.get();
    for side in 0..2 {
        let j = &sim.sides[side].journal;
        for ((pid, index), bytes) in &j.chunks {
            let start = index.saturating_mul(size);
            let end = start.saturating_add(size).min(w.data.len() as u64);
            let expected = usize::try_from(start)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(s, e)| w.data.get(s..e));
            assert!(
                expected == Some(&bytes[..]),
                "{} stored chunk {index} of {pid:?} ({} bytes) that is not the asset's",
                side_name(side),
                bytes.len()
            );
        }
        assert_eq!(
            j.requested_after_verified,
            0,
            "{} asked for a chunk it had verified",
            side_name(side)
        );
    }
}

fn new_sim(h: Header) -> Sim {
    let w = world();
    let mode = |manual: bool| if manual { Mode::Manual } else { Mode::Auto };
    let cmode = mode(h.modes & 1 != 0);
    let pmode = mode(h.modes & 2 != 0);
    let config = Config {
        provider_mode: pmode,
        consumer_mode: cmode,
        ..Config::default()
    };
    let seed = u64::from(h.seed);
    let chost = Arc::new(MemoryHost::new(w.trust.clone()));
    let phost = Arc::new(MemoryHost::new(w.trust.clone()));
    phost.add_asset(w.asset.clone());
    if let Some(o) = w.offers.first() {
        phost.add_catalog_entry(o.clone(), w.manifest.clone());
    }
    let c = Session::new(
        config.clone(),
        Arc::new(SigningKey::from_seed(&CONSUMER_SEED)),
        w.provider_verified.clone(),
        chost.clone(),
        Arc::new(SimRandom::new(seed ^ 0xc0)),
    );
    let p = Session::new(
        config,
        Arc::new(SigningKey::from_seed(&PROVIDER_SEED)),
        w.consumer_verified.clone(),
        phost.clone(),
        Arc::new(SimRandom::new(seed ^ 0x9e)),
    );
    let mut pside = Side::new(p, phost);
    pside.contents.insert(
        w.asset.verified.id().to_string(),
        (w.data.clone(), w.tree.clone()),
    );
    Sim::new(NOW, NetConfig::default(), seed, Side::new(c, chost), pside)
}

fn pick<T: Copy>(list: &[T], i: u8) -> Option<T> {
    if list.is_empty() {
        None
    } else {
        list.get(usize::from(i) % list.len()).copied()
    }
}

fn pick_ref<T>(list: &[T], i: u8) -> Option<&T> {
    list.get(usize::from(i) % list.len().max(1))
}

impl Checker {
    fn pid(&self, p: PidSel) -> Pid {
        match p {
            PidSel::Known(i) => pick(&self.pids, i).unwrap_or(Pid::from_bytes([i; 16])),
            PidSel::Raw(r) => Pid::from_bytes(r),
            PidSel::Fill(b) => Pid::from_bytes([b; 16]),
        }
    }

    /// Agreements to choose from: the fixture's and every one either side holds.
    fn agreement(&self, i: u8) -> Arc<VerifiedAgreement> {
        let w = world();
        match usize::from(i) % (self.agreements.len() + 1) {
            0 => w.agreement.clone(),
            n => self
                .agreements
                .get(n - 1)
                .cloned()
                .unwrap_or_else(|| w.agreement.clone()),
        }
    }

    fn agreement_id(&self, i: u8) -> Option<Hash256> {
        match i % 4 {
            0 => None,
            1 => Some(self.agreement(i >> 2).id()),
            2 => Some(Hash256::from_bytes([i; 32])),
            _ => self.agreements.last().map(|a| a.id()),
        }
    }
}

/// A processing location: none, inside the policies' region, outside it, the country.
fn region(choice: u8) -> Option<Region> {
    match choice % 4 {
        0 => None,
        1 => "CN-SX".parse().ok(),
        2 => "US".parse().ok(),
        _ => "CN".parse().ok(),
    }
}

/// A consent or export-assessment reference.
fn reference(text: &str) -> Text {
    text.parse().expect("a reference")
}

/// The key that signs: the receiver's peer (0), the receiver itself (1), or an outsider.
fn signer(w: &World, to: usize, choice: u8) -> &SigningKey {
    let (peer, own) = if to == PROVIDER {
        (&w.consumer, &w.provider)
    } else {
        (&w.provider, &w.consumer)
    };
    match choice % 4 {
        0 | 3 => peer,
        1 => own,
        _ => &w.other,
    }
}

fn request_bytes(
    w: &World,
    now: Timestamp,
    signer: &SigningKey,
    offer: &[u8],
    c: u8,
    d: u8,
) -> Vec<u8> {
    let Ok(o) = contract::verify_offer(offer) else {
        return offer.to_vec();
    };
    let purpose = w.purposes[usize::from(c >> 4) % w.purposes.len()].clone();
    let policy = match (c >> 6) % 3 {
        0 => contract::narrow_to_purpose(&o.offer().policy, &purpose),
        1 => o.offer().policy.clone(),
        _ => w.policies[1].clone(),
    };
    let time = if d & 0x80 != 0 {
        now.saturating_add_millis(3_600_000)
    } else {
        now
    };
    contract::create_request(
        signer,
        &ContractRequest {
            offer: o.id(),
            consumer: signer.id(),
            consumer_key: signer.public_key(),
            policy,
            purpose,
            nonce: serde_bytes::ByteArray::new([d; 16]),
            time,
        },
    )
    .unwrap_or_default()
}

/// Builds the message a [`MsgSpec`] describes, for side `to`.
pub fn build_message(ck: &Checker, sim: &Sim, to: usize, s: &MsgSpec) -> Message {
    let w = world();
    let now = sim.now;
    let (a, b, c, d) = (ck.pid(s.a), ck.pid(s.b), s.c, s.d);
    let offer = |i: u8| ByteBuf::from(w.offers[usize::from(i) % w.offers.len()].clone());
    let key = signer(w, to, c >> 2);
    let code = CODES[usize::from(d) % CODES.len()].to_owned();
    match s.kind % 25 {
        0 => Message::Hello(Hello {
            versions: vec![u64::from(d % 3)],
            credential: ByteBuf::from(if c & 1 == 0 {
                w.consumer_cred.clone()
            } else {
                w.provider_cred.clone()
            }),
            crl: (c & 2 != 0).then(|| ByteBuf::from(w.crl.clone())),
            agent: "fuzz".into(),
        }),
        1 => Message::Ack(Ack {
            pid: (c & 1 != 0).then_some(a),
            state: (c & 2 != 0).then(|| "REQUESTED".into()),
        }),
        2 => Message::Error(Refusal::new(code, "fuzz")),
        3 => {
            let o = offer(c);
            Message::ContractRequest(ContractRequestMsg {
                consumer_pid: a,
                provider_pid: (c & 0x80 != 0).then_some(b),
                request: ByteBuf::from(request_bytes(w, now, key, &o, c, d)),
                offer: o,
            })
        }
        4 => Message::ContractOffer(ContractOfferMsg {
            provider_pid: a,
            consumer_pid: (d & 0x80 == 0).then_some(b),
            offer: offer(c),
        }),
        5 => {
            let o = offer(d);
            Message::ContractAccepted(AcceptedMsg {
                consumer_pid: a,
                provider_pid: b,
                request: ByteBuf::from(request_bytes(w, now, key, &o, c, d)),
            })
        }
        6 => Message::ContractAgreement(AgreementMsg {
            provider_pid: a,
            consumer_pid: b,
            agreement: ByteBuf::from(match c % 4 {
                0 | 1 => w.halves[usize::from(c % 2)].clone(),
                2 => w.fulls[0].clone(),
                _ => ck.agreement(d).envelope().to_vec(),
            }),
        }),
        7 => Message::AgreementVerification(VerificationMsg {
            consumer_pid: a,
            provider_pid: b,
            agreement: ByteBuf::from(match c % 4 {
                0 | 1 => w.fulls[usize::from(c % 2)].clone(),
                2 => w.halves[0].clone(),
                _ => ck.agreement(d).envelope().to_vec(),
            }),
        }),
        k @ (8 | 9) => {
            let finalized = k == 8;
            let notice = signed::sign_notice(
                key,
                &Notice {
                    kind: if finalized {
                        NoticeKind::Finalized
                    } else {
                        NoticeKind::Terminated
                    },
                    consumer_pid: if c & 0x40 == 0 { a } else { b },
                    provider_pid: if c & 0x40 == 0 { b } else { a },
                    agreement: ck.agreement_id(d),
                    party: key.id(),
                    party_key: key.public_key(),
                    code: (!finalized).then(|| code.clone()),
                    reason: (!finalized && c & 0x80 != 0).then(|| "fuzz".into()),
                    time: now,
                },
            )
            .unwrap_or_default();
            let m = NoticeMsg {
                consumer_pid: a,
                provider_pid: b,
                notice: ByteBuf::from(notice),
            };
            if finalized {
                Message::ContractFinalized(m)
            } else {
                Message::NegotiationTermination(m)
            }
        }
        10 => Message::TransferRequest(TransferRequestMsg {
            consumer_pid: a,
            agreement: match c % 3 {
                0 => ck.agreement(d).id(),
                1 => w.agreement.id(),
                _ => Hash256::from_bytes([d; 32]),
            },
            purpose: w.purposes[usize::from(c >> 2) % w.purposes.len()].clone(),
            location: region(d),
            consent_ref: (d & 4 != 0).then(|| reference("consent:fuzz")),
            export_assessment_ref: (d & 8 != 0).then(|| reference("export:fuzz")),
        }),
        11 => Message::TransferStart(TransferStartMsg {
            provider_pid: a,
            consumer_pid: b,
            manifest: ByteBuf::from(match c % 3 {
                0 | 1 => w.manifest.clone(),
                _ => w.offers[0].clone(),
            }),
        }),
        12 => Message::TransferResume(TransferResumeMsg {
            provider_pid: a,
            consumer_pid: b,
        }),
        k @ (13 | 15) => {
            let m = TransferStopMsg {
                provider_pid: a,
                consumer_pid: b,
                code,
                reason: (c & 1 != 0).then(|| "fuzz".into()),
            };
            if k == 13 {
                Message::TransferSuspension(m)
            } else {
                Message::TransferTermination(m)
            }
        }
        14 => {
            let receipt = (c & 1 != 0).then(|| {
                let content = &w.asset.verified.manifest().content;
                let r = TransferReceipt {
                    consumer_pid: if c & 0x40 == 0 { b } else { a },
                    provider_pid: if c & 0x40 == 0 { a } else { b },
                    agreement: ck.agreement(d).id(),
                    root: content.root,
                    size: content.size,
                    bytes: if c & 2 != 0 {
                        content.size
                    } else {
                        u64::from(d)
                    },
                    chunks: u64::from(d % 5),
                    complete: c & 2 != 0,
                    consumer: key.id(),
                    consumer_key: key.public_key(),
                    time: now,
                };
                ByteBuf::from(signed::sign_receipt(key, &r).unwrap_or_default())
            });
            Message::TransferCompletion(TransferCompletionMsg {
                provider_pid: a,
                consumer_pid: b,
                receipt,
            })
        }
        16 => Message::ChunkRequest(ChunkRequestMsg {
            provider_pid: a,
            consumer_pid: b,
            index: match d {
                0xff => u64::MAX,
                0xfe => 1 << 40,
                i => u64::from(i % 8),
            },
        }),
        17 => Message::CatalogRequest(CatalogRequestMsg {
            filter: CatalogFilter {
                sector: (c & 1 != 0).then(|| "power".into()),
                keyword: (c & 2 != 0).then(|| "grid".into()),
                classification: (c & 4 != 0).then(|| "general".into()),
                provider: (c & 8 != 0).then(|| w.provider.id()),
            },
            cursor: (c & 16 != 0).then(|| ByteBuf::from(vec![d; 4])),
            limit: u64::from(d),
        }),
        18 => Message::CatalogPage(CatalogPageMsg {
            items: vec![
                CatalogItem {
                    offer: offer(c),
                    manifest: ByteBuf::from(w.manifest.clone()),
                };
                usize::from(d % 3)
            ],
            next: None,
        }),
        19 => Message::RevocationNotice(RevocationNoticeMsg {
            crl: ByteBuf::from(w.crl.clone()),
        }),
        20 => Message::CheckpointRequest(CheckpointRequestMsg {
            since: (c & 1 != 0).then_some(u64::from(d)),
        }),
        21 => Message::Checkpoint(CheckpointMsg {
            checkpoint: ByteBuf::from(b"fuzz\n1\nAAAA\n".to_vec()),
            consistency: vec![Hash256::from_bytes([d; 32]); usize::from(c % 3)],
        }),
        22 => {
            let a = ck.agreement(d);
            let named = if c & 0x40 != 0 {
                Hash256::from_bytes([d; 32])
            } else {
                a.id()
            };
            let termination = tds_core::cose::sign(
                key,
                &Termination {
                    agreement: named,
                    party: key.id(),
                    party_key: key.public_key(),
                    time: now,
                    reason: (c & 0x80 != 0).then(|| reference("fuzz")),
                },
            )
            .unwrap_or_default();
            Message::AgreementTermination(AgreementTerminationMsg {
                agreement: if c & 0x20 != 0 { named } else { a.id() },
                termination: ByteBuf::from(termination),
            })
        }
        23 => {
            let report = usage_report(ck, key, now, c, d);
            Message::UsageReport(UsageReportMsg {
                report: ByteBuf::from(tds_core::cose::sign(key, &report).unwrap_or_default()),
            })
        }
        _ => {
            let receipt = deletion_receipt(ck, key, now, c, d);
            Message::DeletionReceipt(DeletionReceiptMsg {
                receipt: ByteBuf::from(tds_core::cose::sign(key, &receipt).unwrap_or_default()),
            })
        }
    }
}

/// The agreement a report or receipt names: one either side holds (c % 3 = 0), the
/// fixture's, or none.
fn named_agreement(ck: &Checker, c: u8, d: u8) -> Hash256 {
    match c % 3 {
        0 => ck.agreement(d).id(),
        1 => world().agreement.id(),
        _ => Hash256::from_bytes([d; 32]),
    }
}

/// A usage report signed as `key` (naming `key` as consumer, or the fixture's consumer
/// when c & 0x40), over a period that runs backwards when c & 0x10.
fn usage_report(ck: &Checker, key: &SigningKey, now: Timestamp, c: u8, d: u8) -> UsageReport {
    let w = world();
    let named = if c & 0x40 != 0 { &w.consumer } else { key };
    let actions = [tds_policy::Action::Analyze, tds_policy::Action::Read]
        .into_iter()
        .take(usize::from(d % 3))
        .map(|action| ActionUses {
            action,
            uses: u64::from(d),
        })
        .collect();
    UsageReport {
        agreement: named_agreement(ck, c, d),
        consumer: named.id(),
        consumer_key: named.public_key(),
        from: if c & 0x10 != 0 {
            now.saturating_add_millis(1)
        } else {
            NOW
        },
        to: now,
        uses: u64::from(d),
        bytes: u64::from(d) << 10,
        actions,
        time: now,
    }
}

/// A deletion receipt signed as `key` (as [`usage_report`]), of another asset when
/// c & 0x10.
fn deletion_receipt(
    ck: &Checker,
    key: &SigningKey,
    now: Timestamp,
    c: u8,
    d: u8,
) -> DeletionReceipt {
    let w = world();
    let named = if c & 0x40 != 0 { &w.consumer } else { key };
    DeletionReceipt {
        agreement: named_agreement(ck, c, d),
        asset: if c & 0x10 != 0 {
            Hash256::from_bytes([d; 32])
        } else {
            *w.asset.verified.id().as_hash()
        },
        consumer: named.id(),
        consumer_key: named.public_key(),
        chunks: u64::from(d % 4),
        bytes: u64::from(d) << 10,
        time: now,
    }
}

fn call(ck: &Checker, sim: &mut Sim, call: Call, pid: u8, x: u8, y: u8) {
    let w = world();
    let now = sim.now;
    let either = usize::from(x & 1);
    let neg = |side: usize| pick(&ck.own_neg[side], pid).unwrap_or(Pid::from_bytes([pid; 16]));
    let xfer = |side: usize| pick(&ck.own_xfer[side], pid).unwrap_or(Pid::from_bytes([pid; 16]));
    let code = CODES[usize::from(y) % CODES.len()];
    let [c, p] = &mut sim.sides;
    let (c, p) = (&mut c.session, &mut p.session);
    let _ = match call {
        Call::RequestContract => {
            let offer = &w.offers[usize::from(x) % w.offers.len()];
            let policy = (y & 2 == 0).then(|| w.policies[usize::from(y & 1)].clone());
            let purpose = w.purposes[usize::from(y >> 2) % w.purposes.len()].clone();
            c.request_contract(now, offer, policy, purpose).map(|_| ())
        }
        Call::AcceptOffer => c.accept_offer(now, neg(CONSUMER)),
        Call::CounterRequest => {
            let policy = w.policies[usize::from(x) % w.policies.len()].clone();
            c.counter_request(now, neg(CONSUMER), policy)
        }
        Call::VerifyAgreement => c.verify_agreement(now, neg(CONSUMER)),
        Call::Agree => p.agree(now, neg(PROVIDER)),
        Call::Offer => p.offer(
            now,
            neg(PROVIDER),
            &w.offers[usize::from(x) % w.offers.len()],
        ),
        Call::Finalize => p.finalize(now, neg(PROVIDER)),
        Call::TerminateNegotiation => {
            let s = if either == CONSUMER { c } else { p };
            s.terminate_negotiation(now, neg(either), code, "fuzz")
        }
        Call::RequestTransfer => {
            let resume = (y & 0x80 != 0)
                .then(|| c.verifier_state(xfer(CONSUMER)))
                .flatten();
            let purpose = w.purposes[usize::from(y) % w.purposes.len()].clone();
            let context = TransferContext {
                location: region(y >> 2),
                consent_ref: (y & 0x10 != 0).then(|| reference("consent:fuzz")),
                export_assessment_ref: (y & 0x20 != 0).then(|| reference("export:fuzz")),
            };
            c.request_transfer(now, ck.agreement(x), purpose, resume, context)
                .map(|_| ())
        }
        Call::StartTransfer => p.start_transfer(now, xfer(PROVIDER)),
        Call::SuspendTransfer => {
            let s = if either == CONSUMER { c } else { p };
            s.suspend_transfer(now, xfer(either), code, "fuzz")
        }
        Call::ResumeTransfer => {
            let s = if either == CONSUMER { c } else { p };
            s.resume_transfer(now, xfer(either))
        }
        Call::CompleteTransfer => {
            let s = if either == CONSUMER { c } else { p };
            s.complete_transfer(now, xfer(either))
        }
        Call::TerminateTransfer => {
            let s = if either == CONSUMER { c } else { p };
            s.terminate_transfer(now, xfer(either), code, "fuzz")
        }
        Call::QueryCatalog => {
            let s = if either == CONSUMER { c } else { p };
            s.query_catalog(now, CatalogFilter::default(), None, u64::from(y))
                .map(|_| ())
        }
        Call::TerminateAgreement => {
            let (s, key) = if either == CONSUMER {
                (c, &w.consumer)
            } else {
                (p, &w.provider)
            };
            let a = ck.agreement(y);
            let t = contract::terminate(key, &a, now, None).unwrap_or_default();
            s.terminate_agreement(now, &a, t).map(|_| ())
        }
        Call::SendUsageReport => {
            let (s, key) = if either == CONSUMER {
                (c, &w.consumer)
            } else {
                (p, &w.provider)
            };
            let r = usage_report(ck, key, now, 0, y);
            let bytes = signed::sign_usage_report(key, &r).unwrap_or_default();
            s.send_usage_report(now, bytes).map(|_| ())
        }
        Call::SendDeletionReceipt => {
            let (s, key) = if either == CONSUMER {
                (c, &w.consumer)
            } else {
                (p, &w.provider)
            };
            let r = deletion_receipt(ck, key, now, (y >> 2) & 0x10, y);
            let bytes = signed::sign_deletion_receipt(key, &r).unwrap_or_default();
            s.send_deletion_receipt(now, bytes).map(|_| ())
        }
    };
}

/// Delivers `frame` to `to` and checks the reply is a well-formed frame.
fn inject(sim: &mut Sim, to: usize, frame: &[u8]) {
    if let Some(reply) = sim.inject(to, frame) {
        match frame::decode(&reply) {
            Ok(Frame::Control(_)) => {}
            Ok(Frame::Data(h, _)) => {
                // Only a chunk request is answered with data.
                assert!(
                    matches!(
                        frame::decode(frame),
                        Ok(Frame::Control(Message::ChunkRequest(_)))
                    ),
                    "data reply {h:?} to a request that is no chunk request"
                );
            }
            Err(e) => panic!("{} replied with a malformed frame: {e}", side_name(to)),
        }
    }
}

/// Plays a script and checks the invariants after every step. Returns what happened.
pub fn run(data: &[u8]) -> Outcome {
    let mut r = Reader(data);
    let header = Header {
        modes: r.u8().unwrap_or(0),
        seed: r.u8().unwrap_or(0),
    };
    let mut sim = new_sim(header);
    let mut ck = Checker::default();
    let mut sent: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut ops = 0;
    while let Some(op) = Op::read(&mut r) {
        ops += 1;
        if ops > MAX_OPS || requests(&sim) >= MAX_REQUESTS {
            break;
        }
        let mut ran = false;
        match op {
            Op::Run(ms) => {
                let ms = if ms & 0x8000 != 0 {
                    u64::from(ms & 0x7fff) * 100
                } else {
                    u64::from(ms)
                };
                sim.run_until(ms, |s| requests(s) >= MAX_REQUESTS);
                ran = true;
            }
            Op::Call { call: c, pid, x, y } => {
                call(&ck, &mut sim, c, pid, x, y);
                // Move the calls' output onto the network and into the journals.
                sim.run_for(0);
            }
            Op::Send { to, spec } => {
                let to = usize::from(to & 1);
                let m = build_message(&ck, &sim, to, &spec);
                if let Ok(mut f) = frame::encode_control(&m) {
                    if spec.flip != 0 && !f.is_empty() {
                        let at = usize::from(spec.flip & 0x1fff) % f.len();
                        f[at] ^= 1 << (spec.flip >> 13);
                    }
                    inject(&mut sim, to, &f);
                    if sent.len() < MAX_OPS {
                        sent.push((to, f));
                    }
                }
            }
            Op::Replay(n) => {
                if let Some((to, f)) = pick_ref(&sent, n) {
                    inject(&mut sim, *to, f);
                }
            }
            Op::Inject { to, frame } => inject(&mut sim, usize::from(to & 1), &frame),
            Op::Net { loss, dup, spread } => {
                sim.net = NetConfig {
                    min_latency_ms: 1,
                    max_latency_ms: 1 + u64::from(spread),
                    loss: f64::from(loss % 128) / 256.0,
                    duplicate: f64::from(dup % 128) / 256.0,
                };
            }
            Op::Cut => sim.cut(),
            Op::Heal => sim.heal(),
            Op::Hostile(b) => {
                sim.sides[PROVIDER].corrupt = b & 1 != 0;
                sim.sides[PROVIDER].serve = b & 2 == 0;
            }
        }
        ck.check(&sim, ran);
    }
    ck.check(&sim, true);
    ck.outcome(&sim)
}

/// Scripts for the seeds: honest conversations in each mode, and a few hostile ones.
pub fn seed_scripts() -> Vec<(String, Vec<u8>, Expect)> {
    let auto = Header { modes: 0, seed: 1 };
    let manual = Header { modes: 3, seed: 2 };
    let call = |call, pid, x, y| Op::Call { call, pid, x, y };
    let run = |ms: u16| Op::Run(ms);
    let long = Op::Run(0x8000 | 6000); // 600 s
                                       // Auto: request, negotiate, transfer everything.
    let mut out = vec![(
        "auto_negotiate_transfer".to_owned(),
        script(
            auto,
            &[
                call(Call::RequestContract, 0, 0, 2),
                run(5000),
                call(Call::RequestTransfer, 0, 1, 0),
                long.clone(),
            ],
        ),
        Expect::Completed,
    )];
    // Manual: every decision by a call.
    out.push((
        "manual_negotiate_transfer".to_owned(),
        script(
            manual,
            &[
                call(Call::RequestContract, 0, 0, 2),
                run(10),
                call(Call::Agree, 0, 0, 0),
                run(10),
                call(Call::VerifyAgreement, 0, 0, 0),
                run(10),
                call(Call::Finalize, 0, 0, 0),
                run(10),
                call(Call::RequestTransfer, 0, 1, 0),
                run(10),
                call(Call::StartTransfer, 0, 0, 0),
                run(1000),
                call(Call::CompleteTransfer, 0, 0, 0),
                run(1000),
            ],
        ),
        Expect::Completed,
    ));
    // Manual with a counter-offer, acceptance, suspension and resumption.
    out.push((
        "manual_counter_offer_suspend_resume".to_owned(),
        script(
            manual,
            &[
                call(Call::RequestContract, 0, 0, 2),
                run(10),
                call(Call::Offer, 0, 1, 0),
                run(10),
                call(Call::AcceptOffer, 0, 0, 0),
                run(10),
                call(Call::Agree, 0, 0, 0),
                run(10),
                call(Call::VerifyAgreement, 0, 0, 0),
                run(10),
                call(Call::Finalize, 0, 0, 0),
                run(10),
                call(Call::RequestTransfer, 0, 1, 0),
                run(10),
                call(Call::StartTransfer, 0, 0, 0),
                Op::Hostile(2),
                run(5),
                call(Call::SuspendTransfer, 0, 0, 0),
                run(10),
                Op::Hostile(0),
                call(Call::ResumeTransfer, 0, 0, 0),
                run(10),
                call(Call::StartTransfer, 0, 0, 0),
                // The chunks asked for while the provider did not serve are asked for
                // again after the chunk timeout (60 s).
                Op::Run(0x8000 | 900),
                call(Call::CompleteTransfer, 0, 0, 0),
                run(1000),
            ],
        ),
        Expect::Completed,
    ));
    // Terminations by either side.
    out.push((
        "manual_terminations".to_owned(),
        script(
            manual,
            &[
                call(Call::RequestContract, 0, 0, 2),
                call(Call::RequestContract, 1, 1, 2),
                run(10),
                call(Call::TerminateNegotiation, 0, 0, 1),
                call(Call::TerminateNegotiation, 1, 1, 1),
                run(10),
            ],
        ),
        Expect::Nothing,
    ));
    // Lossy, duplicating network with a cut and a heal.
    out.push((
        "auto_lossy_cut".to_owned(),
        script(
            Header { modes: 0, seed: 7 },
            &[
                Op::Net {
                    loss: 30,
                    dup: 30,
                    spread: 40,
                },
                call(Call::RequestContract, 0, 0, 2),
                run(200),
                Op::Cut,
                run(50),
                Op::Heal,
                Op::Run(0x8000 | 1200),
                call(Call::RequestTransfer, 0, 1, 0),
                long.clone(),
            ],
        ),
        Expect::Finalized,
    ));
    // A hostile provider corrupting chunks.
    out.push((
        "auto_corrupt_provider".to_owned(),
        script(
            auto,
            &[
                Op::Hostile(1),
                call(Call::RequestContract, 0, 0, 2),
                run(5000),
                call(Call::RequestTransfer, 0, 1, 0),
                long.clone(),
            ],
        ),
        Expect::Finalized,
    ));
    // Built messages of every kind into both sides, after a finalized negotiation and a
    // started transfer (so the known pids are real).
    let mut ops = vec![
        call(Call::RequestContract, 0, 0, 2),
        run(5000),
        Op::Hostile(2),
        call(Call::RequestTransfer, 0, 1, 0),
        run(100),
    ];
    for kind in 0..25u8 {
        for to in 0..2u8 {
            ops.push(Op::Send {
                to,
                spec: MsgSpec {
                    kind,
                    a: PidSel::Known(to),
                    b: PidSel::Known(1 - to),
                    c: 0,
                    d: kind,
                    flip: 0,
                },
            });
        }
    }
    out.push((
        "auto_every_message".to_owned(),
        script(auto, &ops[..MAX_OPS.min(ops.len())]),
        Expect::Finalized,
    ));
    // Injected steps of a hostile consumer against a manual provider.
    out.push((
        "manual_injected_consumer".to_owned(),
        script(
            manual,
            &[
                Op::Send {
                    to: PROVIDER as u8,
                    spec: MsgSpec {
                        kind: 3,
                        a: PidSel::Fill(0x90),
                        b: PidSel::Fill(0x91),
                        c: 0,
                        d: 7,
                        flip: 0,
                    },
                },
                call(Call::Agree, 0, 0, 0),
                run(10),
                Op::Send {
                    to: PROVIDER as u8,
                    spec: MsgSpec {
                        kind: 7,
                        a: PidSel::Fill(0x90),
                        b: PidSel::Known(0),
                        c: 0,
                        d: 0,
                        flip: 0,
                    },
                },
                run(10),
                Op::Replay(0),
                Op::Replay(1),
            ],
        ),
        Expect::Nothing,
    ));
    // After the agreement: the consumer reports usage and a deletion, then terminates;
    // the provider's termination of the same agreement crosses it.
    out.push((
        "auto_post_agreement".to_owned(),
        script(
            auto,
            &[
                call(Call::RequestContract, 0, 0, 2),
                run(5000),
                call(Call::SendUsageReport, 0, 0, 1),
                call(Call::SendDeletionReceipt, 0, 0, 1),
                run(100),
                call(Call::TerminateAgreement, 0, 0, 1),
                call(Call::TerminateAgreement, 0, 1, 1),
                run(100),
                call(Call::RequestTransfer, 0, 1, 0),
                run(1000),
            ],
        ),
        Expect::Delivered,
    ));
    // A hostile provider finalizes on the consumer (with the agreement the consumer
    // countersigned) before its own session does, then replays the notice.
    out.push((
        "manual_early_finalized_notice".to_owned(),
        script(
            manual,
            &[
                call(Call::RequestContract, 0, 0, 2),
                run(10),
                call(Call::Agree, 0, 0, 0),
                run(10),
                call(Call::VerifyAgreement, 0, 0, 0),
                run(10),
                Op::Send {
                    to: CONSUMER as u8,
                    spec: MsgSpec {
                        kind: 8,
                        a: PidSel::Known(0),
                        b: PidSel::Known(1),
                        c: 0,
                        d: 5,
                        flip: 0,
                    },
                },
                Op::Replay(0),
                call(Call::Finalize, 0, 0, 0),
                run(10),
            ],
        ),
        Expect::Finalized,
    ));
    out
}

/// What a seed script must reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Nothing in particular.
    Nothing,
    /// Both sides finalize the same agreement.
    Finalized,
    /// And a transfer completes on both sides with every chunk stored.
    Completed,
    /// Both sides finalize, and four post-agreement messages are delivered.
    Delivered,
}

impl Outcome {
    /// Whether the outcome meets `e`.
    pub fn meets(&self, e: Expect) -> bool {
        let fin = self.agreed >= 1;
        let done = self
            .transfers
            .iter()
            .all(|t| t.contains(&TransferState::Completed))
            && self.chunks as u64 == CHUNKS;
        match e {
            Expect::Nothing => true,
            Expect::Finalized => fin,
            Expect::Completed => fin && done,
            Expect::Delivered => fin && self.delivered >= 4,
        }
    }
}

/// Messages of every kind, built as [`Op::Send`] builds them after an honest
/// negotiation (real process ids, offers, requests, agreements, notices, receipts), in
/// a few variants each: the seeds of the `message` and `frame` targets.
pub fn sample_messages() -> Vec<Message> {
    let mut sim = new_sim(Header { modes: 0, seed: 1 });
    let mut ck = Checker::default();
    call(&ck, &mut sim, Call::RequestContract, 0, 0, 2);
    sim.run_for(5000);
    ck.check(&sim, true);
    let mut out = Vec::new();
    for kind in 0..25u8 {
        for (c, d) in [(0u8, 0u8), (0x83, 0x85), (0x4d, 0x12)] {
            let spec = MsgSpec {
                kind,
                a: PidSel::Known(0),
                b: PidSel::Known(1),
                c,
                d,
                flip: 0,
            };
            let m = build_message(&ck, &sim, PROVIDER, &spec);
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

/// Data frames: the first 64 bytes of each chunk of the asset with the chunk's inclusion
/// path (kept short: libFuzzer's input length follows the seeds'), and a made-up one.
pub fn sample_data_frames() -> Vec<Vec<u8>> {
    let w = world();
    let size = ChunkSize::MIN.get() as usize;
    let mut out = Vec::new();
    for index in 0..CHUNKS {
        let Ok(proof) = w.tree.proof(index) else {
            continue;
        };
        let start = index as usize * size;
        let end = (start + size).min(w.data.len()).min(start + 64);
        let header = frame::ChunkHeader {
            transfer: Pid::from_bytes([7; 16]),
            index,
            path: proof.path,
        };
        if let Ok(f) = frame::encode_data(&header, &w.data[start..end]) {
            out.push(f);
        }
    }
    let header = frame::ChunkHeader {
        transfer: Pid::from_bytes([1; 16]),
        index: 5,
        path: vec![Hash256::from_bytes([3; 32]); 2],
    };
    if let Ok(f) = frame::encode_data(&header, b"short chunk") {
        out.push(f);
    }
    out
}
