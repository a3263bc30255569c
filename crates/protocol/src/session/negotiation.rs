//! Contract negotiation: the DSP states with every step signed through the policy
//! crate's contract API.

use std::sync::Arc;

use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_core::Timestamp;
use tds_policy::contract::{
    self, Accepted, ContractRequest, VerifiedAgreement, VerifiedOffer, VerifiedRequest,
};
use tds_policy::{Policy, Purpose};

use super::{
    call, process_ack, refusal_of, CallError, Event, Mode, Purpose as Why, Replies, Session,
};
use crate::message::{
    AcceptedMsg, Ack, AgreementMsg, ContractOfferMsg, ContractRequestMsg, Message, NoticeMsg, Pid,
    Refusal, VerificationMsg,
};
use crate::signed::{self, Notice, NoticeKind, MAX_REASON_LEN};
use crate::state::{negotiation_next, NegotiationState, NegotiationStep, Role};

/// A negotiation as one side sees it.
#[derive(Debug)]
pub(super) struct Negotiation {
    role: Role,
    own: Pid,
    peer_pid: Option<Pid>,
    state: NegotiationState,
    since: Timestamp,
    timeout_ms: u64,
    /// The offer in play (the last one made).
    offer: Arc<VerifiedOffer>,
    offer_bytes: Vec<u8>,
    /// The consumer's declared purpose.
    purpose: Purpose,
    /// Consumer: the policy last asked for.
    asked: Option<Policy>,
    /// The last request (consumer: sent; provider: verified).
    request: Option<VerifiedRequest>,
    request_id: Option<Hash256>,
    /// Provider: the terms signed.
    accepted: Option<Accepted>,
    /// Consumer: the provider-signed agreement, waiting to be countersigned.
    half: Option<Vec<u8>>,
    agreement: Option<Arc<VerifiedAgreement>>,
    /// Replies given to the peer's messages.
    seen: Replies<NegotiationState>,
}

/// What the application may read of a negotiation.
#[derive(Clone, Debug)]
pub struct NegotiationView {
    /// This side's role.
    pub role: Role,
    /// This side's process id.
    pub pid: Pid,
    /// The peer's process id, once known.
    pub peer_pid: Option<Pid>,
    /// The state.
    pub state: NegotiationState,
    /// The offer in play.
    pub offer: Arc<VerifiedOffer>,
    /// The agreement, once both signatures are checked.
    pub agreement: Option<Arc<VerifiedAgreement>>,
}

impl Negotiation {
    pub(super) fn state(&self) -> NegotiationState {
        self.state
    }

    /// When an ended negotiation is forgotten.
    pub(super) fn forget_at(&self, linger_ms: u64) -> Option<Timestamp> {
        self.state
            .is_final()
            .then(|| self.since.saturating_add_millis(linger_ms))
    }

    pub(super) fn peer_pid(&self) -> Option<Pid> {
        self.peer_pid
    }

    pub(super) fn deadline(&self) -> Option<Timestamp> {
        (!self.state.is_final()).then(|| self.since.saturating_add_millis(self.timeout_ms))
    }

    /// Both process ids, once the provider's is known.
    fn known_pids(&self) -> Result<(Pid, Pid), CallError> {
        match self.pids() {
            (c, Some(p)) => Ok((c, p)),
            (_, None) => Err(CallError::new(
                "negotiation.no_peer_pid",
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

    fn remember(&mut self, digest: Hash256, reply: &Message) {
        self.seen.remember(digest, reply, self.state);
    }

    fn ack(&self) -> Message {
        process_ack(self.own, self.state.as_str())
    }
}

fn invalid(e: crate::state::InvalidTransition) -> Refusal {
    Refusal::new("negotiation.invalid_transition", e.to_string())
}

fn unknown(pid: Pid) -> Refusal {
    Refusal::new(
        "negotiation.unknown_process",
        format!("no negotiation {pid} with this peer"),
    )
}

impl Session {
    /// What this side knows of negotiation `pid`.
    pub fn negotiation(&self, pid: Pid) -> Option<NegotiationView> {
        self.negotiations.get(&pid).map(|n| NegotiationView {
            role: n.role,
            pid: n.own,
            peer_pid: n.peer_pid,
            state: n.state,
            offer: n.offer.clone(),
            agreement: n.agreement.clone(),
        })
    }

    fn set_state(&mut self, now: Timestamp, pid: Pid, to: NegotiationState) {
        if let Some(n) = self.negotiations.get_mut(&pid) {
            n.state = to;
            n.since = now;
            let role = n.role;
            self.events.push_back(Event::NegotiationState {
                pid,
                role,
                state: to,
            });
        }
    }

    /// Finds this side's negotiation `own` that the peer's message names, checking the
    /// peer's pid too.
    fn negotiation_for(
        &self,
        own: Pid,
        peer_pid: Pid,
        role: Role,
    ) -> Result<&Negotiation, Refusal> {
        let n = self.negotiations.get(&own).ok_or_else(|| unknown(own))?;
        if n.role != role || n.peer_pid.is_some_and(|p| p != peer_pid) {
            return Err(unknown(own));
        }
        Ok(n)
    }

    fn check_step(n: &Negotiation, step: NegotiationStep) -> Result<NegotiationState, Refusal> {
        negotiation_next(Some(n.state), step, n.role.other()).map_err(invalid)
    }

    fn answer(&mut self, pid: Pid, digest: Hash256) -> Message {
        match self.negotiations.get_mut(&pid) {
            Some(n) => {
                let a = n.ack();
                n.remember(digest, &a);
                a
            }
            None => Message::Error(unknown(pid)),
        }
    }

    /// This side's negotiation `pid` and the state `step`, sent by this side, moves it to.
    fn own_negotiation_step(
        &self,
        pid: Pid,
        step: NegotiationStep,
    ) -> Result<(&Negotiation, NegotiationState), CallError> {
        let n = self
            .negotiations
            .get(&pid)
            .ok_or_else(|| CallError::from(unknown(pid)))?;
        let to = negotiation_next(Some(n.state), step, n.role)
            .map_err(|e| CallError::from(invalid(e)))?;
        Ok((n, to))
    }

    // ---- consumer calls ----

    /// Consumer: asks for the terms of `offer` (the provider-signed offer bytes, from the
    /// catalog) for `purpose`, with `policy` (default: the offer's policy narrowed to the
    /// purpose). Returns this side's process id.
    pub fn request_contract(
        &mut self,
        now: Timestamp,
        offer: &[u8],
        policy: Option<Policy>,
        purpose: Purpose,
    ) -> Result<Pid, CallError> {
        self.check_capacity(now)?;
        let verified = self.offers.verify(offer).map_err(call)?;
        if verified.offer().provider != *self.peer.subject().as_hash() {
            return Err(CallError::new(
                "negotiation.not_peer_offer",
                "the offer is not the peer's",
            ));
        }
        let own = self.new_pid()?;
        let policy = policy
            .unwrap_or_else(|| contract::narrow_to_purpose(&verified.offer().policy, &purpose));
        let verified = Arc::new(verified);
        let (bytes, req_id) = self.sign_request(now, &verified, policy.clone(), purpose.clone())?;
        let n = Negotiation {
            role: Role::Consumer,
            own,
            peer_pid: None,
            state: NegotiationState::Requested,
            since: now,
            timeout_ms: self.config.negotiation_timeout_ms,
            offer: verified,
            offer_bytes: offer.to_vec(),
            purpose,
            asked: Some(policy),
            request: None,
            request_id: Some(req_id),
            accepted: None,
            half: None,
            agreement: None,
            seen: Replies::new(),
        };
        let m = Message::ContractRequest(ContractRequestMsg {
            consumer_pid: own,
            provider_pid: None,
            offer: ByteBuf::from(n.offer_bytes.clone()),
            request: ByteBuf::from(bytes),
        });
        self.negotiations.insert(own, n);
        self.send(now, Why::Negotiation(own), &m, false)?;
        self.events.push_back(Event::NegotiationState {
            pid: own,
            role: Role::Consumer,
            state: NegotiationState::Requested,
        });
        Ok(own)
    }

    fn sign_request(
        &self,
        now: Timestamp,
        offer: &VerifiedOffer,
        policy: Policy,
        purpose: Purpose,
    ) -> Result<(Vec<u8>, Hash256), CallError> {
        let nonce = contract::random_nonce(&*self.rng).map_err(call)?;
        let request = ContractRequest {
            offer: offer.id(),
            consumer: self.me,
            consumer_key: self.key.public_key(),
            policy,
            purpose,
            nonce: serde_bytes::ByteArray::new(nonce),
            time: now,
        };
        let id = request.id().map_err(call)?;
        let bytes = contract::create_request(&*self.key, &request).map_err(call)?;
        Ok((bytes, id))
    }

    /// Consumer: accepts the offer in play (DSP ACCEPTED), asking for exactly its terms
    /// narrowed to the declared purpose.
    pub fn accept_offer(&mut self, now: Timestamp, pid: Pid) -> Result<(), CallError> {
        let (n, to) = self.own_negotiation_step(pid, NegotiationStep::Accepted)?;
        let (cpid, ppid) = n.known_pids()?;
        let policy = contract::narrow_to_purpose(&n.offer.offer().policy, &n.purpose);
        let (offer, purpose) = (n.offer.clone(), n.purpose.clone());
        let (bytes, req_id) = self.sign_request(now, &offer, policy.clone(), purpose)?;
        let m = Message::ContractAccepted(AcceptedMsg {
            consumer_pid: cpid,
            provider_pid: ppid,
            request: ByteBuf::from(bytes),
        });
        self.send(now, Why::Negotiation(pid), &m, false)?;
        if let Some(n) = self.negotiations.get_mut(&pid) {
            n.asked = Some(policy);
            n.request_id = Some(req_id);
        }
        self.set_state(now, pid, to);
        Ok(())
    }

    /// Consumer: answers the offer in play with a counter-request for `policy`.
    pub fn counter_request(
        &mut self,
        now: Timestamp,
        pid: Pid,
        policy: Policy,
    ) -> Result<(), CallError> {
        let (n, to) = self.own_negotiation_step(pid, NegotiationStep::Request)?;
        let (cpid, ppid) = n.known_pids()?;
        let (offer, purpose, offer_bytes) =
            (n.offer.clone(), n.purpose.clone(), n.offer_bytes.clone());
        let (bytes, req_id) = self.sign_request(now, &offer, policy.clone(), purpose)?;
        let m = Message::ContractRequest(ContractRequestMsg {
            consumer_pid: cpid,
            provider_pid: Some(ppid),
            offer: ByteBuf::from(offer_bytes),
            request: ByteBuf::from(bytes),
        });
        self.send(now, Why::Negotiation(pid), &m, false)?;
        if let Some(n) = self.negotiations.get_mut(&pid) {
            n.asked = Some(policy);
            n.request_id = Some(req_id);
        }
        self.set_state(now, pid, to);
        Ok(())
    }

    /// Consumer: countersigns the provider-signed agreement and sends the verification.
    pub fn verify_agreement(&mut self, now: Timestamp, pid: Pid) -> Result<(), CallError> {
        let (n, to) = self.own_negotiation_step(pid, NegotiationStep::Verification)?;
        let (cpid, ppid) = n.known_pids()?;
        let half = n
            .half
            .clone()
            .ok_or_else(|| CallError::new("negotiation.no_agreement", "no agreement to verify"))?;
        let full = contract::countersign(&*self.key, &half).map_err(call)?;
        // Every signature of `full` is checked already: countersign verified the
        // provider's, and the other is this side's own, just made.
        let agreement = contract::verify_countersigned(&full, &full).map_err(call)?;
        let m = Message::AgreementVerification(VerificationMsg {
            consumer_pid: cpid,
            provider_pid: ppid,
            agreement: ByteBuf::from(full),
        });
        self.send(now, Why::Negotiation(pid), &m, false)?;
        if let Some(n) = self.negotiations.get_mut(&pid) {
            n.agreement = Some(Arc::new(agreement));
        }
        self.set_state(now, pid, to);
        Ok(())
    }

    // ---- provider calls ----

    /// Provider: agrees to the verified request in play: signs the terms (the first
    /// signature of the agreement) and sends them.
    pub fn agree(&mut self, now: Timestamp, pid: Pid) -> Result<(), CallError> {
        let (n, to) = self.own_negotiation_step(pid, NegotiationStep::Agreement)?;
        let request = n.request.clone().ok_or_else(|| {
            CallError::new("negotiation.no_request", "no verified request to agree to")
        })?;
        let (cpid, ppid) = n.pids();
        let ppid = ppid.unwrap_or(pid);
        self.host.check_peer(&self.peer, now)?;
        let accepted = contract::accept(&*self.key, &n.offer, &request, now).map_err(call)?;
        let m = Message::ContractAgreement(AgreementMsg {
            provider_pid: ppid,
            consumer_pid: cpid,
            agreement: ByteBuf::from(accepted.envelope.clone()),
        });
        self.send(now, Why::Negotiation(pid), &m, false)?;
        if let Some(n) = self.negotiations.get_mut(&pid) {
            n.accepted = Some(accepted);
        }
        self.set_state(now, pid, to);
        Ok(())
    }

    /// Provider: offers other terms (a counter-offer): `offer` is a new provider-signed
    /// offer for the same asset.
    pub fn offer(&mut self, now: Timestamp, pid: Pid, offer: &[u8]) -> Result<(), CallError> {
        let (n, to) = self.own_negotiation_step(pid, NegotiationStep::Offer)?;
        let verified = contract::verify_offer(offer).map_err(call)?;
        if verified.offer().provider != self.me || verified.offer().asset != n.offer.offer().asset {
            return Err(CallError::new(
                "negotiation.offer_mismatch",
                "a counter-offer must be this provider's, for the same asset",
            ));
        }
        let (cpid, _) = n.pids();
        let m = Message::ContractOffer(ContractOfferMsg {
            provider_pid: pid,
            consumer_pid: Some(cpid),
            offer: ByteBuf::from(offer.to_vec()),
        });
        self.send(now, Why::Negotiation(pid), &m, false)?;
        if let Some(n) = self.negotiations.get_mut(&pid) {
            n.offer = Arc::new(verified);
            n.offer_bytes = offer.to_vec();
            n.request = None;
        }
        self.set_state(now, pid, to);
        Ok(())
    }

    /// Provider: finalizes a verified agreement.
    pub fn finalize(&mut self, now: Timestamp, pid: Pid) -> Result<(), CallError> {
        let (n, to) = self.own_negotiation_step(pid, NegotiationStep::Finalized)?;
        let agreement = n
            .agreement
            .clone()
            .ok_or_else(|| CallError::new("negotiation.no_agreement", "no verified agreement"))?;
        let (cpid, ppid) = n.pids();
        let ppid = ppid.unwrap_or(pid);
        let notice = signed::sign_notice(
            &*self.key,
            &Notice {
                kind: NoticeKind::Finalized,
                consumer_pid: cpid,
                provider_pid: ppid,
                agreement: Some(agreement.id()),
                party: self.me,
                party_key: self.key.public_key(),
                code: None,
                reason: None,
                time: now,
            },
        )
        .map_err(call)?;
        let m = Message::ContractFinalized(NoticeMsg {
            consumer_pid: cpid,
            provider_pid: ppid,
            notice: ByteBuf::from(notice.clone()),
        });
        self.send(now, Why::Negotiation(pid), &m, false)?;
        self.set_state(now, pid, to);
        self.events.push_back(Event::Finalized {
            pid,
            agreement,
            notice,
        });
        Ok(())
    }

    // ---- either side ----

    /// Terminates negotiation `pid` with a reason code and words; the peer gets a signed
    /// notice (when its process id is known).
    pub fn terminate_negotiation(
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
        let (n, to) = self.own_negotiation_step(pid, NegotiationStep::Termination)?;
        let role = n.role;
        let reason: String = reason.chars().take(MAX_REASON_LEN / 4).collect();
        let mut sent = None;
        if let (cpid, Some(ppid)) = n.pids() {
            let notice = signed::sign_notice(
                &*self.key,
                &Notice {
                    kind: NoticeKind::Terminated,
                    consumer_pid: cpid,
                    provider_pid: ppid,
                    agreement: n
                        .accepted
                        .as_ref()
                        .map(|a| a.id)
                        .or(n.agreement.as_ref().map(|a| a.id())),
                    party: self.me,
                    party_key: self.key.public_key(),
                    code: Some(code.to_owned()),
                    reason: Some(reason.clone()),
                    time: now,
                },
            )
            .map_err(call)?;
            let m = Message::NegotiationTermination(NoticeMsg {
                consumer_pid: cpid,
                provider_pid: ppid,
                notice: ByteBuf::from(notice.clone()),
            });
            self.send(now, Why::Notice, &m, false)?;
            sent = Some(notice);
        }
        self.set_state(now, pid, to);
        self.events.push_back(Event::NegotiationTerminated {
            pid,
            by: role,
            code: code.to_owned(),
            reason,
            notice: sent,
        });
        Ok(())
    }

    // ---- the peer's messages ----

    pub(super) fn on_contract_request(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: ContractRequestMsg,
    ) -> Result<Message, Refusal> {
        let own = match r.provider_pid {
            None => {
                if self.was_forgotten(&r.consumer_pid) {
                    return Err(Refusal::new(
                        "negotiation.pid_in_use",
                        format!(
                            "consumer process id {} was used by an ended negotiation",
                            r.consumer_pid
                        ),
                    ));
                }
                if let Some(own) = self.by_peer_pid.get(&r.consumer_pid) {
                    return match self.negotiations.get(own).and_then(|n| n.seen(&digest)) {
                        Some(reply) => Ok(reply),
                        None => Err(Refusal::new(
                            "negotiation.pid_in_use",
                            format!("consumer process id {} is already in use", r.consumer_pid),
                        )),
                    };
                }
                self.check_capacity(now)?;
                negotiation_next(None, NegotiationStep::Request, Role::Consumer)
                    .map_err(invalid)?;
                let offer = self.own_offer(&r.offer)?;
                let request = self.check_request(now, &r.request, &offer)?;
                let own = self.new_pid()?;
                let purpose = request.request().purpose.clone();
                self.negotiations.insert(
                    own,
                    Negotiation {
                        role: Role::Provider,
                        own,
                        peer_pid: Some(r.consumer_pid),
                        state: NegotiationState::Requested,
                        since: now,
                        timeout_ms: self.config.negotiation_timeout_ms,
                        offer: Arc::new(offer),
                        offer_bytes: r.offer.into_vec(),
                        purpose,
                        asked: None,
                        request_id: Some(request.id()),
                        request: Some(request),
                        accepted: None,
                        half: None,
                        agreement: None,
                        seen: Replies::new(),
                    },
                );
                self.by_peer_pid.insert(r.consumer_pid, own);
                self.events.push_back(Event::NegotiationState {
                    pid: own,
                    role: Role::Provider,
                    state: NegotiationState::Requested,
                });
                own
            }
            Some(own) => {
                let n = self.negotiation_for(own, r.consumer_pid, Role::Provider)?;
                if let Some(reply) = n.seen(&digest) {
                    return Ok(reply);
                }
                let to = Self::check_step(n, NegotiationStep::Request)?;
                if r.offer.as_slice() != n.offer_bytes.as_slice() {
                    return Err(Refusal::new(
                        "negotiation.offer_mismatch",
                        "a counter-request must answer the offer in play",
                    ));
                }
                let offer = n.offer.clone();
                let request = self.check_request(now, &r.request, &offer)?;
                if let Some(n) = self.negotiations.get_mut(&own) {
                    n.request_id = Some(request.id());
                    n.request = Some(request);
                }
                self.set_state(now, own, to);
                own
            }
        };
        let reply = self.answer(own, digest);
        self.decide_request(now, own);
        Ok(reply)
    }

    /// The provider's offer in a request: signed by this side.
    fn own_offer(&mut self, bytes: &[u8]) -> Result<VerifiedOffer, Refusal> {
        let offer = self.offers.verify(bytes).map_err(|e| refusal_of(&e))?;
        if offer.offer().provider != self.me {
            return Err(Refusal::new(
                "negotiation.not_my_offer",
                "the offer is not this provider's",
            ));
        }
        if !self.host.offers(&offer) {
            return Err(Refusal::new(
                "negotiation.offer_withdrawn",
                "this provider no longer makes that offer",
            ));
        }
        Ok(offer)
    }

    fn check_request(
        &self,
        now: Timestamp,
        bytes: &[u8],
        offer: &VerifiedOffer,
    ) -> Result<VerifiedRequest, Refusal> {
        self.host.check_peer(&self.peer, now)?;
        contract::verify_request_with(
            bytes,
            offer,
            &self.peer,
            now,
            self.host.nonces(),
            &self.config.freshness,
        )
        .map_err(|e| refusal_of(&e))
    }

    /// Provider, after a verified request: agree at once (auto) or ask the application.
    fn decide_request(&mut self, now: Timestamp, pid: Pid) {
        match self.config.provider_mode {
            Mode::Manual => self.events.push_back(Event::RequestReceived { pid }),
            Mode::Auto => {
                if let Err(e) = self.agree(now, pid) {
                    let _ =
                        self.terminate_negotiation(now, pid, &e.refusal.code, &e.refusal.reason);
                }
            }
        }
    }

    pub(super) fn on_accepted(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: AcceptedMsg,
    ) -> Result<Message, Refusal> {
        let n = self.negotiation_for(r.provider_pid, r.consumer_pid, Role::Provider)?;
        if let Some(reply) = n.seen(&digest) {
            return Ok(reply);
        }
        let to = Self::check_step(n, NegotiationStep::Accepted)?;
        let offer = n.offer.clone();
        let request = self.check_request(now, &r.request, &offer)?;
        let q = request.request();
        if q.policy != contract::narrow_to_purpose(&offer.offer().policy, &q.purpose) {
            return Err(Refusal::new(
                "negotiation.not_the_offer",
                "an acceptance asks for exactly the offer's terms, narrowed to its purpose",
            ));
        }
        let own = r.provider_pid;
        if let Some(n) = self.negotiations.get_mut(&own) {
            n.request_id = Some(request.id());
            n.request = Some(request);
        }
        self.set_state(now, own, to);
        let reply = self.answer(own, digest);
        self.decide_request(now, own);
        Ok(reply)
    }

    pub(super) fn on_verification(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: VerificationMsg,
    ) -> Result<Message, Refusal> {
        let n = self.negotiation_for(r.provider_pid, r.consumer_pid, Role::Provider)?;
        if let Some(reply) = n.seen(&digest) {
            return Ok(reply);
        }
        let to = Self::check_step(n, NegotiationStep::Verification)?;
        let Some(accepted) = n.accepted.as_ref() else {
            return Err(Refusal::new(
                "negotiation.agreement_mismatch",
                "this provider signed no agreement in this negotiation",
            ));
        };
        let expected = Some(accepted.id);
        // The provider's own signature is the one in what it sent: only the consumer's
        // is verified here.
        let agreement = contract::verify_countersigned(&r.agreement, &accepted.envelope)
            .map_err(|e| refusal_of(&e))?;
        if Some(agreement.id()) != expected {
            return Err(Refusal::new(
                "negotiation.agreement_mismatch",
                "the countersigned agreement is not the one this provider signed",
            ));
        }
        let own = r.provider_pid;
        if let Some(n) = self.negotiations.get_mut(&own) {
            n.agreement = Some(Arc::new(agreement));
        }
        self.set_state(now, own, to);
        let reply = self.answer(own, digest);
        match self.config.provider_mode {
            Mode::Manual => self.events.push_back(Event::AgreementVerified { pid: own }),
            Mode::Auto => {
                if let Err(e) = self.finalize(now, own) {
                    let _ =
                        self.terminate_negotiation(now, own, &e.refusal.code, &e.refusal.reason);
                }
            }
        }
        Ok(reply)
    }

    pub(super) fn on_offer(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: ContractOfferMsg,
    ) -> Result<Message, Refusal> {
        let Some(own) = r.consumer_pid else {
            return Err(Refusal::new(
                "negotiation.unsupported",
                "negotiations started by the provider are not supported; send offers through the catalog",
            ));
        };
        let n = self.negotiation_for(own, r.provider_pid, Role::Consumer)?;
        if let Some(reply) = n.seen(&digest) {
            return Ok(reply);
        }
        let to = Self::check_step(n, NegotiationStep::Offer)?;
        let offer = contract::verify_offer(&r.offer).map_err(|e| refusal_of(&e))?;
        if offer.offer().provider != *self.peer.subject().as_hash()
            || offer.offer().asset != n.offer.offer().asset
        {
            return Err(Refusal::new(
                "negotiation.offer_mismatch",
                "a counter-offer must be the provider's, for the same asset",
            ));
        }
        offer.check_valid_at(now).map_err(|e| refusal_of(&e))?;
        let offer = Arc::new(offer);
        if let Some(n) = self.negotiations.get_mut(&own) {
            n.peer_pid = Some(r.provider_pid);
            n.offer = offer.clone();
            n.offer_bytes = r.offer.into_vec();
        }
        self.set_state(now, own, to);
        let reply = self.answer(own, digest);
        match self.config.consumer_mode {
            Mode::Manual => self
                .events
                .push_back(Event::OfferReceived { pid: own, offer }),
            Mode::Auto => self.auto_answer_offer(now, own),
        }
        Ok(reply)
    }

    /// Consumer, auto: accept an offer that grants nothing beyond what was asked
    /// (narrowed to the purpose), else terminate.
    fn auto_answer_offer(&mut self, now: Timestamp, pid: Pid) {
        let Some(n) = self.negotiations.get(&pid) else {
            return;
        };
        let narrowed = contract::narrow_to_purpose(&n.offer.offer().policy, &n.purpose);
        let within = match &n.asked {
            Some(asked) => matches!(
                tds_policy::contains(asked, &narrowed),
                Ok(tds_policy::Containment::Contained)
            ),
            None => false,
        };
        let result = if within {
            self.accept_offer(now, pid)
        } else {
            Err(CallError::new(
                "negotiation.offer_not_wanted",
                "the counter-offer grants more than was asked",
            ))
        };
        if let Err(e) = result {
            let _ = self.terminate_negotiation(now, pid, &e.refusal.code, &e.refusal.reason);
        }
    }

    pub(super) fn on_agreement(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: AgreementMsg,
    ) -> Result<Message, Refusal> {
        let own = r.consumer_pid;
        let n = self.negotiation_for(own, r.provider_pid, Role::Consumer)?;
        if let Some(reply) = n.seen(&digest) {
            return Ok(reply);
        }
        let to = Self::check_step(n, NegotiationStep::Agreement)?;
        // Cheap checks first: the terms must be exactly what this consumer asked for on
        // the offer in play (only the time of agreement is the provider's), then the
        // provider's signature, then the provider's credential.
        let opened =
            tds_core::cose::open_multi::<tds_policy::contract::AgreementTerms>(&r.agreement)
                .map_err(|e| refusal_of(&e))?;
        let terms = opened.value().clone();
        self.check_terms(n, &terms, now)?;
        opened
            .verify(&[terms.provider_key])
            .map_err(|e| refusal_of(&e))?;
        self.host.check_peer(&self.peer, now)?;
        let id = terms.id().map_err(|e| refusal_of(&e))?;
        if let Some(n) = self.negotiations.get_mut(&own) {
            n.peer_pid = Some(r.provider_pid);
            n.half = Some(r.agreement.into_vec());
        }
        self.set_state(now, own, to);
        let reply = self.answer(own, digest);
        match self.config.consumer_mode {
            Mode::Manual => self.events.push_back(Event::AgreementReceived {
                pid: own,
                agreement: id,
                terms: Box::new(terms),
            }),
            Mode::Auto => {
                if let Err(e) = self.verify_agreement(now, own) {
                    let _ =
                        self.terminate_negotiation(now, own, &e.refusal.code, &e.refusal.reason);
                }
            }
        }
        Ok(reply)
    }

    /// The terms a consumer countersigns: exactly its last request on the offer in play.
    fn check_terms(
        &self,
        n: &Negotiation,
        t: &tds_policy::contract::AgreementTerms,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        let o = n.offer.offer();
        let mismatch = |field: &str| {
            Err(Refusal::new(
                "negotiation.agreement_mismatch",
                format!("the agreement's {field} is not what this consumer asked for"),
            ))
        };
        if Some(t.request) != n.request_id || t.offer != n.offer.id() {
            return mismatch("request or offer");
        }
        if t.provider != *self.peer.subject().as_hash()
            || t.provider != o.provider
            || t.provider_key != o.provider_key
        {
            return mismatch("provider");
        }
        if t.consumer != self.me || t.consumer_key != self.key.public_key() {
            return mismatch("consumer");
        }
        if t.asset != o.asset {
            return mismatch("asset");
        }
        if t.offer_policy != o.policy || Some(&t.policy) != n.asked.as_ref() {
            return mismatch("policy");
        }
        if t.purpose != n.purpose {
            return mismatch("purpose");
        }
        if t.price != o.price {
            return mismatch("price");
        }
        if !self.config.freshness.is_fresh(t.agreed_at, now) {
            return mismatch("time of agreement");
        }
        Ok(())
    }

    pub(super) fn on_finalized(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: NoticeMsg,
    ) -> Result<Message, Refusal> {
        let own = r.consumer_pid;
        let n = self.negotiation_for(own, r.provider_pid, Role::Consumer)?;
        if let Some(reply) = n.seen(&digest) {
            return Ok(reply);
        }
        let to = Self::check_step(n, NegotiationStep::Finalized)?;
        let notice = signed::verify_notice(
            &r.notice,
            self.peer.subject_key(),
            r.consumer_pid,
            r.provider_pid,
        )
        .map_err(|e| refusal_of(&e))?;
        let agreement = n.agreement.clone();
        match (&agreement, notice.kind) {
            (Some(a), NoticeKind::Finalized) if notice.agreement == Some(a.id()) => {}
            _ => {
                return Err(Refusal::new(
                    "negotiation.notice_mismatch",
                    "the notice does not finalize this negotiation's agreement",
                ))
            }
        }
        self.set_state(now, own, to);
        let reply = self.answer(own, digest);
        if let Some(agreement) = agreement {
            self.events.push_back(Event::Finalized {
                pid: own,
                agreement,
                notice: r.notice.into_vec(),
            });
        }
        Ok(reply)
    }

    pub(super) fn on_negotiation_termination(
        &mut self,
        now: Timestamp,
        digest: Hash256,
        r: NoticeMsg,
    ) -> Result<Message, Refusal> {
        // The process is this side's: its pid is the one of this side's role.
        let (own, peer_pid, role) = if self
            .negotiations
            .get(&r.provider_pid)
            .is_some_and(|n| n.role == Role::Provider)
        {
            (r.provider_pid, r.consumer_pid, Role::Provider)
        } else {
            (r.consumer_pid, r.provider_pid, Role::Consumer)
        };
        let n = self.negotiation_for(own, peer_pid, role)?;
        if let Some(reply) = n.seen(&digest) {
            return Ok(reply);
        }
        let to = Self::check_step(n, NegotiationStep::Termination)?;
        let notice = signed::verify_notice(
            &r.notice,
            self.peer.subject_key(),
            r.consumer_pid,
            r.provider_pid,
        )
        .map_err(|e| refusal_of(&e))?;
        if notice.kind != NoticeKind::Terminated {
            return Err(Refusal::new(
                "negotiation.notice_mismatch",
                "a termination must carry a termination notice",
            ));
        }
        if let Some(n) = self.negotiations.get_mut(&own) {
            n.peer_pid = Some(peer_pid);
        }
        self.set_state(now, own, to);
        let reply = self.answer(own, digest);
        self.events.push_back(Event::NegotiationTerminated {
            pid: own,
            by: role.other(),
            code: notice
                .code
                .unwrap_or_else(|| "negotiation.terminated".to_owned()),
            reason: notice.reason.unwrap_or_default(),
            notice: Some(r.notice.into_vec()),
        });
        Ok(reply)
    }

    // ---- replies and failures ----

    pub(super) fn negotiation_acked(&mut self, _now: Timestamp, pid: Pid, a: Ack) {
        if let Some(n) = self.negotiations.get_mut(&pid) {
            if n.role == Role::Consumer && n.peer_pid.is_none() {
                n.peer_pid = a.pid;
            }
        }
    }

    /// A step of this side failed for good (refused, or no reply): the negotiation ends
    /// here without a notice (the peer either refused it or cannot be reached).
    pub(super) fn negotiation_failed(&mut self, now: Timestamp, pid: Pid, r: Refusal) {
        let Some(n) = self.negotiations.get(&pid) else {
            return;
        };
        if n.state == NegotiationState::Terminated {
            return;
        }
        let role = n.role;
        // A finalized agreement stays in force: only the failed step is reported.
        if n.state == NegotiationState::Finalized {
            return;
        }
        self.set_state(now, pid, NegotiationState::Terminated);
        self.events.push_back(Event::NegotiationTerminated {
            pid,
            by: role,
            code: r.code,
            reason: r.reason,
            notice: None,
        });
    }

    pub(super) fn negotiation_timed_out(&mut self, now: Timestamp, pid: Pid) {
        let reason = "no progress within the negotiation timeout";
        if self
            .terminate_negotiation(now, pid, "negotiation.timeout", reason)
            .is_err()
        {
            self.negotiation_failed(now, pid, Refusal::new("negotiation.timeout", reason));
        }
    }
}
