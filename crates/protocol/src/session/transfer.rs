//! Transfers: the DSP transfer states, chunks requested by the consumer and verified
//! before they are accepted, a provider that re-checks the agreement at every start.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_core::Timestamp;
use tds_manifest::content::{ChunkVerifier, VerifierState};
use tds_manifest::VerifiedManifest;
use tds_policy::contract::VerifiedAgreement;
use tds_policy::{Action, Effect, Purpose, Region, RuleKind, Text};

use super::{
    call, process_ack, refusal_of, Asset, CallError, Event, InId, Mode, OutId, Purpose as Why,
    Replies, Session, Transmit,
};
use crate::frame::{self, ChunkHeader};
use crate::message::{
    Ack, ChunkRequestMsg, Message, Pid, Refusal, TransferCompletionMsg, TransferRequestMsg,
    TransferResumeMsg, TransferStartMsg, TransferStopMsg,
};
use crate::signed::{self, TransferReceipt, VerifiedTransferReceipt};
use crate::state::{transfer_next, Role, TransferState, TransferStep};
use tds_core::merkle::HashedLeaf;

/// Most chunk requests of the peer waiting for the application's data at once.
const MAX_PENDING_CHUNKS: usize = 256;

/// Longest reason text kept from a peer's stop message.
const MAX_STOP_REASON: usize = 1024;

/// The code of a peer's stop message whose own code is not a well-formed code.
fn unnamed_stop(suspension: bool) -> &'static str {
    match suspension {
        true => "transfer.suspended",
        false => "transfer.terminated",
    }
}

/// A peer's stop code and reason, checked: a well-formed code (else a generic one) and a
/// reason cut to [`MAX_STOP_REASON`] bytes.
fn stop_reason(code: &str, reason: Option<&str>, suspension: bool) -> (String, String) {
    let code = if tds_core::code::is_well_formed(code) {
        code.to_owned()
    } else {
        unnamed_stop(suspension).to_owned()
    };
    let mut reason = reason.unwrap_or_default().to_owned();
    if reason.len() > MAX_STOP_REASON {
        let mut cut = MAX_STOP_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    (code, reason)
}

/// What the consumer says about a transfer's use, for the provider's policy check: where
/// the data will be processed and the references it presents. Sent in the transfer
/// request; the provider evaluates the agreement with it at the request and at every
/// (re)start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferContext {
    /// Where the consumer will process the data (the policy's `spatial` operand); a
    /// policy that constrains the location refuses a transfer without one.
    pub location: Option<Region>,
    /// A consent reference (the `consentRef` operand, `obtain-consent` duties).
    pub consent_ref: Option<Text>,
    /// An export-assessment reference (the `exportAssessmentRef` operand).
    pub export_assessment_ref: Option<Text>,
}

/// A transfer as one side sees it.
#[derive(Debug)]
pub(super) struct Transfer {
    role: Role,
    own: Pid,
    peer_pid: Option<Pid>,
    state: TransferState,
    /// Last state change or verified chunk.
    progress: Timestamp,
    idle_ms: u64,
    suspended_ms: u64,
    agreement: Arc<VerifiedAgreement>,
    purpose: Purpose,
    /// What the consumer said about the use (the provider re-checks with it).
    context: TransferContext,
    /// Consumer: the manifest named at the first start, and the verifier.
    manifest: Option<Arc<VerifiedManifest>>,
    verifier: Option<ChunkVerifier>,
    /// Consumer: a verified set from an earlier transfer of the same asset.
    resume: Option<VerifierState>,
    /// Consumer: chunks asked for and not yet answered.
    in_flight: HashSet<u64>,
    /// Consumer: chunks whose request failed, to ask again first.
    again: BTreeSet<u64>,
    /// Consumer: where the scan for missing chunks goes on.
    cursor: u64,
    /// Consumer: chunk requests sent, in all.
    chunk_requests: u64,
    /// Bytes verified (consumer) or served (provider).
    bytes: u64,
    /// Provider: the asset.
    asset: Option<Asset>,
    /// Provider: chunks served at least once.
    served: BTreeSet<u64>,
    /// Provider: chunk requests for a chunk already served (lost replies), in all.
    served_again: u64,
    /// Replies given to the peer's messages.
    seen: Replies<TransferState>,
}

/// What the application may read of a transfer.
#[derive(Clone, Debug)]
pub struct TransferView {
    /// This side's role.
    pub role: Role,
    /// This side's process id.
    pub pid: Pid,
    /// The peer's process id, once known.
    pub peer_pid: Option<Pid>,
    /// The state.
    pub state: TransferState,
    /// The agreement.
    pub agreement: Hash256,
    /// Bytes verified (consumer) or served (provider).
    pub bytes: u64,
    /// Consumer: chunks verified.
    pub verified_chunks: u64,
    /// Consumer: chunk requests sent in all (each chunk is asked for until it verifies,
    /// never after).
    pub chunk_requests: u64,
}

/// Where a chunk that verified against the manifest goes (its bytes are the caller's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacedChunk {
    /// The transfer.
    pub pid: Pid,
    /// The chunk index.
    pub index: u64,
    /// Its byte offset in the asset.
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

/// A chunk that verified against the manifest: store it.
#[derive(Debug, PartialEq, Eq)]
pub struct ReceivedChunk<'a> {
    /// The transfer.
    pub pid: Pid,
    /// The chunk index.
    pub index: u64,
    /// Its byte offset in the asset.
    pub offset: u64,
    /// The bytes.
    pub data: &'a [u8],
}

impl Transfer {
    pub(super) fn state(&self) -> TransferState {
        self.state
    }

    /// When an ended transfer is forgotten.
    pub(super) fn forget_at(&self, linger_ms: u64) -> Option<Timestamp> {
        self.state
            .is_final()
            .then(|| self.progress.saturating_add_millis(linger_ms))
    }

    pub(super) fn peer_pid(&self) -> Option<Pid> {
        self.peer_pid
    }

    pub(super) fn deadline(&self) -> Option<Timestamp> {
        match self.state {
            TransferState::Requested | TransferState::Started => {
                Some(self.progress.saturating_add_millis(self.idle_ms))
            }
            TransferState::Suspended => {
                Some(self.progress.saturating_add_millis(self.suspended_ms))
            }
            TransferState::Completed | TransferState::Terminated => None,
        }
    }

    pub(super) fn verifier_state(&self) -> Option<VerifierState> {
        self.verifier.as_ref().map(ChunkVerifier::state)
    }

    /// Both process ids, once the provider's is known.
    fn known_pids(&self) -> Result<(Pid, Pid), CallError> {
        match self.pids() {
            (c, Some(p)) => Ok((c, p)),
            (_, None) => Err(CallError::new(
                "transfer.no_peer_pid",
                "the provider's process id is not known yet",
            )),
        }
    }

    fn pids(&self) -> (Pid, Option<Pid>) {
        match self.role {
            Role::Consumer => (self.own, self.peer_pid),
            Role::Provider => (self.peer_pid.unwrap_or(self.own), Some(self.own)),
        }
    }

    fn seen(&self, digest: &Hash256) -> Option<Message> {
        self.seen.get(digest, self.state)
    }

    fn ack(&self) -> Message {
        process_ack(self.own, self.state.as_str())
    }
}

fn invalid(e: crate::state::InvalidTransition) -> Refusal {
    Refusal::new("transfer.invalid_transition", e.to_string())
}

fn unknown(pid: Pid) -> Refusal {
    Refusal::new(
        "transfer.unknown_process",
        format!("no transfer {pid} with this peer"),
    )
}

impl Session {
    /// What this side knows of transfer `pid`.
    pub fn transfer(&self, pid: Pid) -> Option<TransferView> {
        self.transfers.get(&pid).map(|t| TransferView {
            role: t.role,
            pid: t.own,
            peer_pid: t.peer_pid,
            state: t.state,
            agreement: t.agreement.id(),
            bytes: t.bytes,
            verified_chunks: t.verifier.as_ref().map_or(0, ChunkVerifier::verified_count),
            chunk_requests: t.chunk_requests,
        })
    }

    fn set_transfer_state(&mut self, now: Timestamp, pid: Pid, to: TransferState) {
        if let Some(t) = self.transfers.get_mut(&pid) {
            t.state = to;
            t.progress = now;
            let role = t.role;
            self.events.push_back(Event::TransferState {
                pid,
                role,
                state: to,
            });
        }
    }

    fn transfer_for(&self, own: Pid, peer_pid: Pid, role: Role) -> Result<&Transfer, Refusal> {
        let t = self.transfers.get(&own).ok_or_else(|| unknown(own))?;
        if t.role != role || t.peer_pid.is_some_and(|p| p != peer_pid) {
            return Err(unknown(own));
        }
        Ok(t)
    }

    fn transfer_answer(&mut self, pid: Pid, digest: Hash256) -> Message {
        match self.transfers.get_mut(&pid) {
            Some(t) => {
                let a = t.ack();
                t.seen.remember(digest, &a, t.state);
                a
            }
            None => Message::Error(unknown(pid)),
        }
    }

    /// This side's transfer `pid` and the state `step`, sent by this side, moves it to.
    fn own_transfer_step(
        &self,
        pid: Pid,
        step: TransferStep,
    ) -> Result<(&Transfer, TransferState), CallError> {
        let t = self
            .transfers
            .get(&pid)
            .ok_or_else(|| CallError::from(unknown(pid)))?;
        let to =
            transfer_next(Some(t.state), step, t.role).map_err(|e| CallError::from(invalid(e)))?;
        Ok((t, to))
    }

    // ---- consumer calls ----

    /// Consumer: asks for the asset of `agreement` (concluded with the peer) for
    /// `purpose`. `resume` is the verified set of an earlier transfer of the same asset
    /// ([`Session::verifier_state`]): its chunks are not asked for again. `context` is
    /// where the data will be processed and the references presented: the provider
    /// decides on them.
    pub fn request_transfer(
        &mut self,
        now: Timestamp,
        agreement: Arc<VerifiedAgreement>,
        purpose: Purpose,
        resume: Option<VerifierState>,
        context: TransferContext,
    ) -> Result<Pid, CallError> {
        self.check_capacity(now)?;
        let t = agreement.terms();
        if t.consumer != self.me || t.provider != *self.peer.subject().as_hash() {
            return Err(CallError::new(
                "transfer.not_party",
                "the agreement is not between this consumer and the peer",
            ));
        }
        let own = self.new_pid()?;
        let m = Message::TransferRequest(TransferRequestMsg {
            consumer_pid: own,
            agreement: agreement.id(),
            purpose: purpose.clone(),
            location: context.location.clone(),
            consent_ref: context.consent_ref.clone(),
            export_assessment_ref: context.export_assessment_ref.clone(),
        });
        self.transfers.insert(
            own,
            Transfer {
                role: Role::Consumer,
                own,
                peer_pid: None,
                state: TransferState::Requested,
                progress: now,
                idle_ms: self.config.transfer_idle_timeout_ms,
                suspended_ms: self.config.suspended_timeout_ms,
                agreement,
                purpose,
                context,
                manifest: None,
                verifier: None,
                resume,
                in_flight: HashSet::new(),
                again: BTreeSet::new(),
                cursor: 0,
                chunk_requests: 0,
                bytes: 0,
                asset: None,
                served: BTreeSet::new(),
                served_again: 0,
                seen: Replies::new(),
            },
        );
        self.send(now, Why::Transfer(own), &m, false)?;
        self.events.push_back(Event::TransferState {
            pid: own,
            role: Role::Consumer,
            state: TransferState::Requested,
        });
        Ok(own)
    }

    fn stop_message(t: &Transfer, code: &str, reason: &str) -> Result<TransferStopMsg, CallError> {
        let (cpid, ppid) = t.known_pids()?;
        Ok(TransferStopMsg {
            provider_pid: ppid,
            consumer_pid: cpid,
            code: code.to_owned(),
            reason: Some(reason.chars().take(256).collect()),
        })
    }

    /// Either side: suspends a started transfer.
    pub fn suspend_transfer(
        &mut self,
        now: Timestamp,
        pid: Pid,
        code: &str,
        reason: &str,
    ) -> Result<(), CallError> {
        let (t, to) = self.own_transfer_step(pid, TransferStep::Suspension)?;
        let m = Message::TransferSuspension(Self::stop_message(t, code, reason)?);
        self.send(now, Why::Transfer(pid), &m, false)?;
        self.set_transfer_state(now, pid, to);
        Ok(())
    }

    /// Consumer: resumes a suspended transfer (DSP start by the consumer); the provider
    /// re-checks the agreement. Provider: use [`Session::start_transfer`].
    pub fn resume_transfer(&mut self, now: Timestamp, pid: Pid) -> Result<(), CallError> {
        let t = self
            .transfers
            .get(&pid)
            .ok_or_else(|| CallError::from(unknown(pid)))?;
        if t.role != Role::Consumer {
            return self.start_transfer(now, pid);
        }
        let to = transfer_next(Some(t.state), TransferStep::Start, t.role)
            .map_err(|e| CallError::from(invalid(e)))?;
        let (cpid, ppid) = t.known_pids()?;
        let m = Message::TransferResume(TransferResumeMsg {
            provider_pid: ppid,
            consumer_pid: cpid,
        });
        self.send(now, Why::Transfer(pid), &m, false)?;
        self.set_transfer_state(now, pid, to);
        Ok(())
    }

    /// Either side: completes a started transfer. The consumer signs a receipt of what it
    /// verified.
    pub fn complete_transfer(&mut self, now: Timestamp, pid: Pid) -> Result<(), CallError> {
        let (t, to) = self.own_transfer_step(pid, TransferStep::Completion)?;
        let (cpid, ppid) = t.known_pids()?;
        let role = t.role;
        let (receipt, verified, complete) = if role == Role::Consumer {
            let r = self.consumer_receipt(now, t, cpid, ppid)?;
            let complete = r.receipt().complete;
            (
                Some(ByteBuf::from(r.envelope().to_vec())),
                Some(r),
                complete,
            )
        } else {
            (None, None, false)
        };
        let bytes = t.bytes;
        let m = Message::TransferCompletion(TransferCompletionMsg {
            provider_pid: ppid,
            consumer_pid: cpid,
            receipt,
        });
        self.send(now, Why::Transfer(pid), &m, false)?;
        self.set_transfer_state(now, pid, to);
        self.events.push_back(Event::TransferCompleted {
            pid,
            role,
            complete,
            bytes,
            receipt: verified.map(Box::new),
        });
        Ok(())
    }

    fn consumer_receipt(
        &self,
        now: Timestamp,
        t: &Transfer,
        cpid: Pid,
        ppid: Pid,
    ) -> Result<VerifiedTransferReceipt, CallError> {
        let (root, size) = t
            .manifest
            .as_ref()
            .map(|m| (m.manifest().content.root, m.manifest().content.size))
            .unwrap_or_default();
        let (chunks, complete) = t
            .verifier
            .as_ref()
            .map_or((0, false), |v| (v.verified_count(), v.is_complete()));
        let receipt = TransferReceipt {
            consumer_pid: cpid,
            provider_pid: ppid,
            agreement: t.agreement.id(),
            root,
            size,
            bytes: t.bytes,
            chunks,
            complete,
            consumer: self.me,
            consumer_key: self.key.public_key(),
            time: now,
        };
        let bytes = signed::sign_receipt(&*self.key, &receipt).map_err(call)?;
        signed::verify_receipt(&bytes, &self.key.public_key(), cpid, ppid).map_err(call)
    }

    /// Either side: terminates a transfer.
    pub fn terminate_transfer(
        &mut self,
        now: Timestamp,
        pid: Pid,
        code: &str,
        reason: &str,
    ) -> Result<(), CallError> {
        if !tds_core::code::is_well_formed(code) {
            return Err(CallError::new(
                "protocol.invalid",
                format!("{code:?} is not a reason code"),
            ));
        }
        let (t, to) = self.own_transfer_step(pid, TransferStep::Termination)?;
        let role = t.role;
        let bytes = t.bytes;
        if let Ok(m) = Self::stop_message(t, code, reason) {
            self.send(now, Why::Notice, &Message::TransferTermination(m), false)?;
        }
        self.set_transfer_state(now, pid, to);
        self.events.push_back(Event::TransferTerminated {
            pid,
            by: role,
            code: code.to_owned(),
            reason: reason.to_owned(),
            bytes,
        });
        Ok(())
    }

    /// The connection under this session is gone: every transfer that has not ended is
    /// terminated here with `code` and `reason`. Each gives the
    /// [`Event::TransferTerminated`] that [`terminate_transfer`](Self::terminate_transfer)
    /// would, but nothing is sent (no peer is left to tell), so the application can
    /// record each end, count each use and keep each consumer's verified set
    /// ([`Session::verifier_state`] still answers). Transfers end in pid order.
    pub fn handle_closed(&mut self, now: Timestamp, code: &str, reason: &str) {
        let mut live: Vec<(Pid, TransferState)> = self
            .transfers
            .iter()
            .filter_map(|(pid, t)| {
                transfer_next(Some(t.state), TransferStep::Termination, t.role)
                    .ok()
                    .map(|to| (*pid, to))
            })
            .collect();
        live.sort_by_key(|(pid, _)| *pid);
        for (pid, to) in live {
            let Some((role, bytes)) = self.transfers.get(&pid).map(|t| (t.role, t.bytes)) else {
                continue;
            };
            self.set_transfer_state(now, pid, to);
            self.events.push_back(Event::TransferTerminated {
                pid,
                by: role,
                code: code.to_owned(),
                reason: reason.to_owned(),
                bytes,
            });
        }
    }

    /// Consumer: the application could not store `chunk` (the one
    /// [`handle_chunk`](Self::handle_chunk) just placed; a full disk, say). The chunk is
    /// no longer counted verified, so [`Session::verifier_state`] never claims bytes that
    /// are not stored and a resume asks for it again; then the transfer is terminated
    /// with `code` and `reason` as [`terminate_transfer`](Self::terminate_transfer) does.
    pub fn chunk_not_stored(
        &mut self,
        now: Timestamp,
        chunk: &PlacedChunk,
        code: &str,
        reason: &str,
    ) {
        if let Some(t) = self.transfers.get_mut(&chunk.pid) {
            if t.verifier.as_mut().is_some_and(|v| v.forget(chunk.index)) {
                t.bytes = t.bytes.saturating_sub(chunk.len);
            }
        }
        self.terminate_or_fail(now, chunk.pid, Refusal::new(code, reason));
    }

    // ---- provider calls ----

    /// Provider: starts a requested transfer (manual mode) or restarts a suspended one,
    /// re-checking the agreement first.
    pub fn start_transfer(&mut self, now: Timestamp, pid: Pid) -> Result<(), CallError> {
        let (t, to) = self.own_transfer_step(pid, TransferStep::Start)?;
        if t.role != Role::Provider {
            return Err(CallError::new(
                "transfer.not_provider",
                "only the provider sends the asset's manifest",
            ));
        }
        let (cpid, _) = t.pids();
        let (agreement, purpose, context) =
            (t.agreement.id(), t.purpose.clone(), t.context.clone());
        let (_, asset) = self.recheck(now, &agreement, &purpose, &context, Some(pid))?;
        let m = Message::TransferStart(TransferStartMsg {
            provider_pid: pid,
            consumer_pid: cpid,
            manifest: ByteBuf::from(asset.manifest.clone()),
        });
        self.send(now, Why::Transfer(pid), &m, false)?;
        if let Some(t) = self.transfers.get_mut(&pid) {
            t.asset = Some(asset);
        }
        self.set_transfer_state(now, pid, to);
        Ok(())
    }

    /// Provider: answers [`Event::ChunkWanted`] `reply` with the chunk's bytes and its
    /// inclusion path (from the asset's chunk tree).
    pub fn send_chunk(
        &mut self,
        now: Timestamp,
        reply: InId,
        data: &[u8],
        path: Vec<Hash256>,
    ) -> Result<(), CallError> {
        let mut frame = self.chunk_head(now, reply, data.len() as u64, path)?;
        frame.extend_from_slice(data);
        self.transmits
            .push_back(Transmit::Reply { to: reply, frame });
        Ok(())
    }

    /// Provider: like [`Session::send_chunk`], but returns the head of the data frame for
    /// the caller to write followed by the chunk's `len` bytes, without copying them.
    pub fn chunk_head(
        &mut self,
        now: Timestamp,
        reply: InId,
        len: u64,
        path: Vec<Hash256>,
    ) -> Result<Vec<u8>, CallError> {
        let header = self.chunk_header(now, reply, len, path)?;
        let len = usize::try_from(len)
            .map_err(|_| CallError::new("transfer.chunk_length", "chunk too large"))?;
        frame::encode_data_head(&header, len).map_err(call)
    }

    /// Provider: the header of the data frame answering [`Event::ChunkWanted`] `reply`
    /// with a chunk of `len` bytes and its inclusion path, for a transport that writes
    /// the head and the chunk itself (`tds-transport`'s `Responder::send_data`). The
    /// bytes are counted as served.
    pub fn chunk_header(
        &mut self,
        now: Timestamp,
        reply: InId,
        len: u64,
        path: Vec<Hash256>,
    ) -> Result<ChunkHeader, CallError> {
        let (pid, index) = *self.chunk_replies.get(&reply).ok_or_else(|| {
            CallError::new(
                "transfer.no_chunk_request",
                "no chunk request waits for that reply",
            )
        })?;
        let t = self
            .transfers
            .get_mut(&pid)
            .ok_or_else(|| CallError::from(unknown(pid)))?;
        let (cpid, _) = t.pids();
        let expected = t
            .asset
            .as_ref()
            .and_then(|a| a.commitment().chunk_len(index));
        if expected != Some(len) {
            return Err(CallError::new(
                "transfer.chunk_length",
                format!("chunk {index} must be {expected:?} bytes, not {len}"),
            ));
        }
        if path.len() > tds_manifest::content::MAX_PROOF_LEN {
            return Err(CallError::new(
                "protocol.invalid",
                "inclusion path longer than 64 hashes",
            ));
        }
        // Bytes delivered count each chunk once (a chunk served again after a lost reply
        // is the same delivery).
        if t.served.insert(index) {
            t.bytes = t.bytes.saturating_add(len);
        }
        t.progress = now;
        self.chunk_replies.remove(&reply);
        Ok(ChunkHeader {
            transfer: cpid,
            index,
            path,
        })
    }

    /// Provider: cannot serve the chunk [`Event::ChunkWanted`] asked for.
    pub fn refuse_chunk(&mut self, reply: InId, refusal: Refusal) {
        if self.chunk_replies.remove(&reply).is_some() {
            self.reply(reply, &Message::Error(refusal));
        }
    }

    /// Provider: the agreement still allows a transfer to this consumer, now.
    fn recheck(
        &self,
        now: Timestamp,
        id: &Hash256,
        purpose: &Purpose,
        context: &TransferContext,
        this: Option<Pid>,
    ) -> Result<(Arc<VerifiedAgreement>, Asset), Refusal> {
        self.host.check_peer(&self.peer, now)?;
        let a = self.host.agreement(id).ok_or_else(|| {
            Refusal::new(
                "transfer.unknown_agreement",
                format!("no agreement {id} with this provider"),
            )
        })?;
        let t = a.terms();
        if t.provider != self.me || t.consumer != *self.peer.subject().as_hash() {
            return Err(Refusal::new(
                "transfer.not_party",
                "the agreement is not between this provider and the peer",
            ));
        }
        if self.host.is_terminated(id) {
            return Err(Refusal::new(
                "transfer.agreement_terminated",
                format!("agreement {id} was terminated"),
            ));
        }
        let asset = self.host.asset(t.asset.as_str()).ok_or_else(|| {
            Refusal::new(
                "transfer.unknown_asset",
                format!("asset {} is not served here", t.asset.as_str()),
            )
        })?;
        // Ended transfers are the host's count; those in progress in this session (other
        // than this one) are reserved here: a use each, and the whole asset's bytes.
        let mut usage = self.host.usage(id);
        for t in self.transfers.values() {
            if t.role == Role::Provider
                && !t.state.is_final()
                && Some(t.own) != this
                && t.agreement.id() == *id
            {
                usage.transfers = usage.transfers.saturating_add(1);
                usage.bytes = usage
                    .bytes
                    .saturating_add(t.asset.as_ref().map_or(0, |a| a.commitment().size));
            }
        }
        let m = asset.verified.manifest();
        let mut req = tds_policy::Request::new(Action::Use);
        req.target = Some(t.asset.clone());
        req.purpose = Some(purpose.clone());
        req.time = Some(now);
        req.elapsed = Some(now.millis_since(t.agreed_at));
        req.recipient = Some(t.consumer);
        req.sector = self.peer.sector().and_then(|s| s.as_str().parse().ok());
        req.roles = self
            .peer
            .roles()
            .iter()
            .filter_map(|r| r.as_str().parse().ok())
            .collect();
        req.jurisdiction = self.peer.jurisdiction().as_str().parse().ok();
        req.location = context.location.clone();
        req.consent_ref = context.consent_ref.clone();
        req.export_assessment_ref = context.export_assessment_ref.clone();
        req.uses = Some(usage.transfers);
        req.volume = Some(usage.bytes.saturating_add(m.content.size));
        req.classification = tds_policy::Classification::from_word(m.classification.as_str());
        req.personal_info = tds_policy::PersonalInfo::from_word(m.personal.as_str());
        // The transfer is allowed when the agreement permits some use now: each action
        // its permissions name is tried.
        let mut actions: Vec<Action> = a
            .terms()
            .policy
            .rules
            .iter()
            .filter(|r| r.kind == RuleKind::Permission)
            .map(|r| r.action)
            .collect();
        actions.dedup();
        let mut first = None;
        for action in actions {
            req.action = action;
            if a.decide(&req).effect == Effect::Permit {
                return Ok((a.clone(), asset));
            }
            if first.is_none() {
                first = Some(a.explain(&req));
            }
        }
        let (code, reason) = match first {
            Some(d) => {
                let code = cause_code(&d).unwrap_or_else(|| {
                    d.reasons
                        .iter()
                        .rev()
                        .map(|r| r.code.as_str())
                        .next()
                        .unwrap_or("policy.deny")
                        .to_owned()
                });
                let text: Vec<String> = d.reasons.iter().map(|r| r.to_string()).collect();
                (code, text.join("; "))
            }
            None => (
                "transfer.nothing_permitted".to_owned(),
                "the agreement permits no use".to_owned(),
            ),
        };
        Err(Refusal::new(code, reason))
    }

    // ---- the peer's messages ----

    pub(super) fn on_transfer_request(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: TransferRequestMsg,
    ) -> Result<Message, Refusal> {
        if self.was_forgotten(&r.consumer_pid) || self.is_own_pid(&r.consumer_pid) {
            return Err(Refusal::new(
                "transfer.pid_in_use",
                format!(
                    "consumer process id {} was used by an ended transfer",
                    r.consumer_pid
                ),
            ));
        }
        if let Some(own) = self.transfer_by_peer.get(&r.consumer_pid) {
            return match self.transfers.get(own).and_then(|t| t.seen(&digest)) {
                Some(reply) => Ok(reply),
                None => Err(Refusal::new(
                    "transfer.pid_in_use",
                    format!("consumer process id {} is already in use", r.consumer_pid),
                )),
            };
        }
        self.check_capacity(now)?;
        transfer_next(None, TransferStep::Request, Role::Consumer).map_err(invalid)?;
        let context = TransferContext {
            location: r.location,
            consent_ref: r.consent_ref,
            export_assessment_ref: r.export_assessment_ref,
        };
        let (agreement, asset) = self.recheck(now, &r.agreement, &r.purpose, &context, None)?;
        let own = self.new_pid()?;
        self.transfers.insert(
            own,
            Transfer {
                role: Role::Provider,
                own,
                peer_pid: Some(r.consumer_pid),
                state: TransferState::Requested,
                progress: now,
                idle_ms: self.config.transfer_idle_timeout_ms,
                suspended_ms: self.config.suspended_timeout_ms,
                agreement,
                purpose: r.purpose,
                context,
                manifest: None,
                verifier: None,
                resume: None,
                in_flight: HashSet::new(),
                again: BTreeSet::new(),
                cursor: 0,
                chunk_requests: 0,
                bytes: 0,
                asset: Some(asset),
                served: BTreeSet::new(),
                served_again: 0,
                seen: Replies::new(),
            },
        );
        self.transfer_by_peer.insert(r.consumer_pid, own);
        self.events.push_back(Event::TransferState {
            pid: own,
            role: Role::Provider,
            state: TransferState::Requested,
        });
        let reply = self.transfer_answer(own, digest);
        match self.config.provider_mode {
            Mode::Manual => self.events.push_back(Event::TransferRequested {
                pid: own,
                agreement: r.agreement,
            }),
            Mode::Auto => {
                if let Err(e) = self.start_transfer(now, own) {
                    let _ = self.terminate_transfer(now, own, &e.refusal.code, &e.refusal.reason);
                }
            }
        }
        Ok(reply)
    }

    pub(super) fn on_transfer_start(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: TransferStartMsg,
    ) -> Result<Message, Refusal> {
        let own = r.consumer_pid;
        let t = self.transfer_for(own, r.provider_pid, Role::Consumer)?;
        if let Some(reply) = t.seen(&digest) {
            return Ok(reply);
        }
        let to =
            transfer_next(Some(t.state), TransferStep::Start, Role::Provider).map_err(invalid)?;
        let (manifest, verifier) = match self.start_manifest(t, &r.manifest) {
            Ok(checked) => checked,
            Err(refusal) => {
                // A provider that starts the transfer with a manifest that does not
                // verify, or is not the agreement's asset, cannot deliver what was
                // agreed: the transfer ends here with the reason, as it ends at a chunk
                // that fails verification, instead of waiting for its idle timer.
                self.terminate_or_fail(now, own, refusal.clone());
                return Err(refusal);
            }
        };
        if let Some(t) = self.transfers.get_mut(&own) {
            t.peer_pid = Some(r.provider_pid);
            if t.manifest.is_none() {
                t.manifest = Some(Arc::new(manifest));
            }
            if let Some(v) = verifier {
                t.verifier = Some(v);
                t.resume = None;
            }
        }
        self.set_transfer_state(now, own, to);
        Ok(self.transfer_answer(own, digest))
    }

    /// The manifest of a `transfer_start` for `t`: signed by the peer, the agreement's
    /// asset, the same asset as before on a restart; and the verifier to start with.
    fn start_manifest(
        &self,
        t: &Transfer,
        bytes: &[u8],
    ) -> Result<(VerifiedManifest, Option<ChunkVerifier>), Refusal> {
        let manifest = tds_manifest::open(bytes)
            .and_then(|m| m.verify(self.peer.subject_key()))
            .map_err(|e| refusal_of(&e))?;
        if manifest.id().to_string() != t.agreement.terms().asset.as_str() {
            return Err(Refusal::new(
                "transfer.wrong_asset",
                "the manifest is not the agreement's asset",
            ));
        }
        if let Some(m) = &t.manifest {
            if m.id() != manifest.id() {
                return Err(Refusal::new(
                    "transfer.wrong_asset",
                    "a restart must name the same asset",
                ));
            }
        }
        let verifier = match (&t.verifier, &t.resume) {
            (Some(_), _) => None,
            (None, Some(state)) => Some(
                ChunkVerifier::resume(&manifest.manifest().content, state)
                    .or_else(|_| ChunkVerifier::new(&manifest.manifest().content))
                    .map_err(|e| refusal_of(&e))?,
            ),
            (None, None) => {
                Some(ChunkVerifier::new(&manifest.manifest().content).map_err(|e| refusal_of(&e))?)
            }
        };
        Ok((manifest, verifier))
    }

    pub(super) fn on_transfer_resume(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: TransferResumeMsg,
    ) -> Result<Message, Refusal> {
        let own = r.provider_pid;
        let t = self.transfer_for(own, r.consumer_pid, Role::Provider)?;
        if let Some(reply) = t.seen(&digest) {
            return Ok(reply);
        }
        let to =
            transfer_next(Some(t.state), TransferStep::Start, Role::Consumer).map_err(invalid)?;
        let (agreement, purpose, context) =
            (t.agreement.id(), t.purpose.clone(), t.context.clone());
        self.recheck(now, &agreement, &purpose, &context, Some(own))?;
        self.set_transfer_state(now, own, to);
        Ok(self.transfer_answer(own, digest))
    }

    /// The process a stop message names, from this side's role in it.
    fn stopped(&self, r: &TransferStopMsg) -> (Pid, Pid, Role) {
        if self
            .transfers
            .get(&r.provider_pid)
            .is_some_and(|t| t.role == Role::Provider)
        {
            (r.provider_pid, r.consumer_pid, Role::Provider)
        } else {
            (r.consumer_pid, r.provider_pid, Role::Consumer)
        }
    }

    pub(super) fn on_transfer_suspension(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: TransferStopMsg,
    ) -> Result<Message, Refusal> {
        let (own, peer, role) = self.stopped(&r);
        let t = self.transfer_for(own, peer, role)?;
        if let Some(reply) = t.seen(&digest) {
            return Ok(reply);
        }
        let to = transfer_next(Some(t.state), TransferStep::Suspension, role.other())
            .map_err(invalid)?;
        self.set_transfer_state(now, own, to);
        Ok(self.transfer_answer(own, digest))
    }

    pub(super) fn on_transfer_completion(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: TransferCompletionMsg,
    ) -> Result<Message, Refusal> {
        let own_is_provider = self
            .transfers
            .get(&r.provider_pid)
            .is_some_and(|t| t.role == Role::Provider);
        let (own, peer, role) = if own_is_provider {
            (r.provider_pid, r.consumer_pid, Role::Provider)
        } else {
            (r.consumer_pid, r.provider_pid, Role::Consumer)
        };
        let t = self.transfer_for(own, peer, role)?;
        if let Some(reply) = t.seen(&digest) {
            return Ok(reply);
        }
        let to = transfer_next(Some(t.state), TransferStep::Completion, role.other())
            .map_err(invalid)?;
        let (receipt, complete) = match role {
            Role::Provider => {
                let bytes = r.receipt.as_ref().ok_or_else(|| {
                    Refusal::new(
                        "transfer.receipt_missing",
                        "a consumer completes a transfer with its signed receipt",
                    )
                })?;
                let v = signed::verify_receipt(
                    bytes,
                    self.peer.subject_key(),
                    r.consumer_pid,
                    r.provider_pid,
                )
                .map_err(|e| refusal_of(&e))?;
                let root = t.asset.as_ref().map(|a| a.commitment().root);
                let rc = v.receipt();
                if rc.agreement != t.agreement.id() || Some(rc.root) != root {
                    return Err(Refusal::new(
                        "transfer.receipt_mismatch",
                        "the receipt is for another agreement or asset",
                    ));
                }
                let complete = rc.complete;
                (Some(Box::new(v)), complete)
            }
            Role::Consumer => (
                None,
                t.verifier.as_ref().is_some_and(ChunkVerifier::is_complete),
            ),
        };
        let bytes = t.bytes;
        self.set_transfer_state(now, own, to);
        self.events.push_back(Event::TransferCompleted {
            pid: own,
            role,
            complete,
            bytes,
            receipt,
        });
        Ok(self.transfer_answer(own, digest))
    }

    pub(super) fn on_transfer_termination(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: TransferStopMsg,
    ) -> Result<Message, Refusal> {
        let (own, peer, role) = self.stopped(&r);
        let t = self.transfer_for(own, peer, role)?;
        if let Some(reply) = t.seen(&digest) {
            return Ok(reply);
        }
        let to = transfer_next(Some(t.state), TransferStep::Termination, role.other())
            .map_err(invalid)?;
        let bytes = t.bytes;
        if let Some(t) = self.transfers.get_mut(&own) {
            t.peer_pid = Some(peer);
        }
        self.set_transfer_state(now, own, to);
        let (code, reason) = stop_reason(&r.code, r.reason.as_deref(), false);
        self.events.push_back(Event::TransferTerminated {
            pid: own,
            by: role.other(),
            code,
            reason,
            bytes,
        });
        Ok(self.transfer_answer(own, digest))
    }

    pub(super) fn on_chunk_request(
        &mut self,
        now: Timestamp,
        id: InId,
        r: ChunkRequestMsg,
    ) -> Result<Option<Message>, Refusal> {
        let t = self.transfer_for(r.provider_pid, r.consumer_pid, Role::Provider)?;
        if t.state != TransferState::Started {
            return Err(Refusal::new(
                "transfer.not_started",
                format!(
                    "transfer is {}, chunks are served only while STARTED",
                    t.state
                ),
            ));
        }
        let asset = t
            .asset
            .as_ref()
            .ok_or_else(|| Refusal::new("transfer.not_started", "no asset"))?;
        let c = asset.commitment();
        let len = c.chunk_len(r.index).ok_or_else(|| {
            Refusal::new(
                "manifest.chunk.index_out_of_range",
                format!(
                    "chunk {} does not exist: the asset has {} chunk(s)",
                    r.index, c.chunks
                ),
            )
        })?;
        let offset = c.chunk_offset(r.index);
        let name = t.agreement.terms().asset.as_str().to_owned();
        // A chunk is asked again only when its reply was lost; a consumer that asks for
        // served chunks over and over is refused (it cannot multiply the volume).
        let again = t.served.contains(&r.index);
        let allowance = (c.chunks / 4).max(64);
        if again && t.served_again >= allowance {
            return Err(Refusal::new(
                "transfer.chunk_limit",
                format!(
                    "{} chunks were asked for again in this transfer; no more",
                    t.served_again
                ),
            ));
        }
        if self.chunk_replies.len() >= MAX_PENDING_CHUNKS {
            return Err(Refusal::new(
                "transfer.chunk_limit",
                "too many chunk requests wait for their data",
            ));
        }
        let _ = now;
        if again {
            if let Some(t) = self.transfers.get_mut(&r.provider_pid) {
                t.served_again = t.served_again.saturating_add(1);
            }
        }
        self.chunk_replies.insert(id, (r.provider_pid, r.index));
        self.events.push_back(Event::ChunkWanted {
            reply: id,
            pid: r.provider_pid,
            asset: name,
            index: r.index,
            offset,
            len,
        });
        Ok(None)
    }

    // ---- the consumer's chunk loop ----

    pub(super) fn pump_transfers(&mut self, now: Timestamp) {
        let mut wanted: Vec<(Pid, Pid, u64)> = Vec::new();
        let mut done: Vec<Pid> = Vec::new();
        let window = self.config.chunk_window.max(1);
        for (pid, t) in self.transfers.iter_mut() {
            if t.role != Role::Consumer || t.state != TransferState::Started {
                continue;
            }
            let (Some(v), Some(ppid)) = (t.verifier.as_ref(), t.peer_pid) else {
                continue;
            };
            while t.in_flight.len() < window {
                let next = match t.again.pop_first() {
                    Some(i) => Some(i),
                    None => {
                        let mut found = None;
                        while let Some(i) = v.next_missing(t.cursor) {
                            t.cursor = i.saturating_add(1);
                            if !t.in_flight.contains(&i) {
                                found = Some(i);
                                break;
                            }
                        }
                        found
                    }
                };
                let Some(i) = next else { break };
                if v.is_verified(i) || t.in_flight.contains(&i) {
                    continue;
                }
                t.in_flight.insert(i);
                t.chunk_requests = t.chunk_requests.saturating_add(1);
                wanted.push((*pid, ppid, i));
            }
            if v.is_complete() && t.in_flight.is_empty() {
                done.push(*pid);
            }
        }
        for (pid, ppid, index) in wanted {
            let m = Message::ChunkRequest(ChunkRequestMsg {
                provider_pid: ppid,
                consumer_pid: pid,
                index,
            });
            if let Err(e) = self.send(now, Why::Chunk { pid, index }, &m, true) {
                self.transfer_failed(now, pid, e.refusal);
            }
        }
        if self.config.consumer_mode == Mode::Auto {
            for pid in done {
                if let Err(e) = self.complete_transfer(now, pid) {
                    self.transfer_failed(now, pid, e.refusal);
                }
            }
        }
    }

    pub(super) fn chunk_arrived<'a>(
        &mut self,
        now: Timestamp,
        pid: Pid,
        index: u64,
        header: ChunkHeader,
        data: &'a [u8],
    ) -> Option<ReceivedChunk<'a>> {
        let placed = self.chunk_hashed(now, pid, index, header, &HashedLeaf::of(data))?;
        Some(ReceivedChunk {
            pid,
            index,
            offset: placed.offset,
            data,
        })
    }

    /// Checks a chunk (its leaf hash) against the transfer's manifest; `None` if it was
    /// refused (the transfer then ends) or is already held.
    fn chunk_hashed(
        &mut self,
        now: Timestamp,
        pid: Pid,
        index: u64,
        header: ChunkHeader,
        chunk: &HashedLeaf,
    ) -> Option<PlacedChunk> {
        let t = self.transfers.get_mut(&pid)?;
        t.in_flight.remove(&index);
        if t.state.is_final() {
            return None;
        }
        if header.transfer != pid || header.index != index {
            let r = Refusal::new(
                "transfer.wrong_chunk",
                format!(
                    "asked for chunk {index}, got chunk {} of another or this transfer",
                    header.index
                ),
            );
            self.terminate_or_fail(now, pid, r);
            return None;
        }
        let v = t.verifier.as_mut()?;
        if v.is_verified(index) {
            return None;
        }
        match v.verify_hashed(chunk, &header.proof()) {
            Ok(offset) => {
                t.bytes = t.bytes.saturating_add(chunk.len());
                t.progress = now;
                Some(PlacedChunk {
                    pid,
                    index,
                    offset,
                    len: chunk.len(),
                })
            }
            Err(e) => {
                self.terminate_or_fail(now, pid, refusal_of(&e));
                None
            }
        }
    }

    /// The reply to chunk request `id` arrived as a data frame whose chunk the transport
    /// hashed as it read it ([`tds_core::merkle::LeafHasher`]), without holding it in one
    /// buffer. Returns where the verified chunk goes; the caller stores the bytes it
    /// hashed. `None`: refused (the transfer ends, see the events), a duplicate, or no
    /// chunk request of that id.
    pub fn handle_chunk(
        &mut self,
        now: Timestamp,
        id: OutId,
        header: ChunkHeader,
        chunk: &HashedLeaf,
    ) -> Option<PlacedChunk> {
        let out = match self.outstanding.remove(&id) {
            Some(o) => match o.purpose {
                Why::Chunk { pid, index } => self.chunk_hashed(now, pid, index, header, chunk),
                _ => {
                    self.peer_broke(
                        now,
                        &o,
                        Refusal::new("protocol.unexpected_message", "chunk data out of place"),
                    );
                    None
                }
            },
            None => None,
        };
        self.pump(now);
        out
    }

    /// The peer sent something this side cannot accept: terminate (telling the peer why).
    fn terminate_or_fail(&mut self, now: Timestamp, pid: Pid, r: Refusal) {
        if self
            .terminate_transfer(now, pid, &r.code, &r.reason)
            .is_err()
        {
            self.transfer_failed(now, pid, r);
        }
    }

    pub(super) fn transfer_acked(&mut self, _now: Timestamp, pid: Pid, a: Ack) {
        if let Some(t) = self.transfers.get_mut(&pid) {
            if t.role == Role::Consumer && t.peer_pid.is_none() {
                t.peer_pid = a.pid;
            }
        }
    }

    /// A request of this side failed for good: the transfer ends here (a chunk request
    /// that failed is asked for again first, unless the transfer gave up).
    pub(super) fn transfer_failed(&mut self, now: Timestamp, pid: Pid, r: Refusal) {
        let Some(t) = self.transfers.get(&pid) else {
            return;
        };
        if t.state.is_final() {
            return;
        }
        let (role, bytes) = (t.role, t.bytes);
        self.set_transfer_state(now, pid, TransferState::Terminated);
        self.events.push_back(Event::TransferTerminated {
            pid,
            by: role,
            code: r.code,
            reason: r.reason,
            bytes,
        });
    }

    pub(super) fn transfer_timed_out(&mut self, now: Timestamp, pid: Pid) {
        let reason = "no progress within the transfer idle timeout";
        if self
            .terminate_transfer(now, pid, "transfer.timeout", reason)
            .is_err()
        {
            self.transfer_failed(now, pid, Refusal::new("transfer.timeout", reason));
        }
    }

    /// Chunk requests in flight for `pid` that were re-sent after a failure are still
    /// in flight: nothing to do. When a chunk request is given up on, its chunk is asked
    /// for again unless the transfer ended.
    pub(super) fn chunk_gave_up(&mut self, pid: Pid, index: u64) {
        if let Some(t) = self.transfers.get_mut(&pid) {
            t.in_flight.remove(&index);
            if !t.state.is_final() && t.verifier.as_ref().is_some_and(|v| !v.is_verified(index)) {
                t.again.insert(index);
            }
        }
    }
}

impl Session {
    /// Consumer: whether any verified chunk was asked for again (never, by
    /// construction; tests count it).
    pub fn chunk_requests(&self, pid: Pid) -> u64 {
        self.transfers.get(&pid).map_or(0, |t| t.chunk_requests)
    }
}

/// The code of a denial that names its cause: `policy.unmet.<operand>` (snake case) for
/// the first constraint that did not hold, `policy.unmet.<duty>` for a duty the request
/// cannot meet; `None` when the explanation names neither.
fn cause_code(d: &tds_policy::Decision) -> Option<String> {
    d.reasons.iter().find_map(|r| {
        let unmet = r.unmet.as_ref()?;
        if let tds_policy::eval::Unmet::Duty(duty) = unmet {
            let name = match duty {
                tds_policy::eval::DutyUnmet::NoConsent { .. } => "consent",
                _ => "duty",
            };
            return Some(format!("policy.unmet.{name}"));
        }
        match unmet.constraint()? {
            tds_policy::Constraint::Atom { operand, .. } => {
                let mut code = String::from("policy.unmet.");
                for c in operand.as_str().chars() {
                    if c.is_ascii_uppercase() {
                        code.push('_');
                        code.push(c.to_ascii_lowercase());
                    } else {
                        code.push(c);
                    }
                }
                Some(code)
            }
            _ => None,
        }
    })
}
