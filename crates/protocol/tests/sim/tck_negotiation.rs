//! The Eclipse DSP TCK (dsp-tck, DSP 2025-1) contract negotiation cases as simulation
//! tests: CN (the connector under test is the provider) and CN_C (it is the consumer).
//! Both sides are TDS sessions in manual mode; the TCK's side is scripted through the
//! session API, and the messages the TCK sends out of state are injected as the TCK
//! would send them. `spec/protocol.md` §9 maps each case to its test.

use serde_bytes::ByteBuf;
use tds_core::SigningKey;
use tds_protocol::message::{
    AgreementMsg, ContractOfferMsg, ContractRequestMsg, NoticeMsg, VerificationMsg,
};
use tds_protocol::session::{Event, Mode};
use tds_protocol::signed::{sign_notice, Notice, NoticeKind};
use tds_protocol::sim::{NetConfig, Sim};
use tds_protocol::{Message, NegotiationState as S, Pid};

use super::common::*;

struct T {
    w: World,
    sim: Sim,
    /// The consumer's process id.
    c: Pid,
    /// The provider's process id.
    p: Pid,
}

/// Consumer requests; the provider (manual) holds the verified request.
fn requested() -> T {
    let w = world(2);
    let mut sim = sim(
        &w,
        config(Mode::Manual),
        config(Mode::Manual),
        NetConfig::default(),
        7,
    );
    let c = sim.sides[CONSUMER]
        .session
        .request_contract(NOW, &w.offer, None, purpose())
        .unwrap();
    sim.run_for(1000);
    let p = sim.sides[PROVIDER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::RequestReceived { pid } => Some(*pid),
            _ => None,
        })
        .expect("the provider received the request");
    let t = T { w, sim, c, p };
    assert_eq!(states(&t), (S::Requested, S::Requested));
    t
}

/// (consumer state, provider state)
fn states(t: &T) -> (S, S) {
    (
        t.sim.sides[CONSUMER]
            .session
            .negotiation(t.c)
            .unwrap()
            .state,
        t.sim.sides[PROVIDER]
            .session
            .negotiation(t.p)
            .unwrap()
            .state,
    )
}

fn settle(t: &mut T) {
    t.sim.run_for(1000);
}

fn offer(t: &mut T) {
    let now = t.sim.now;
    let o = t.w.offer2.clone();
    t.sim.sides[PROVIDER].session.offer(now, t.p, &o).unwrap();
    settle(t);
    assert_eq!(states(t), (S::Offered, S::Offered));
}

fn accept(t: &mut T) {
    let now = t.sim.now;
    t.sim.sides[CONSUMER]
        .session
        .accept_offer(now, t.c)
        .unwrap();
    settle(t);
    assert_eq!(states(t), (S::Accepted, S::Accepted));
}

fn counter(t: &mut T) {
    let now = t.sim.now;
    let policy = tds_policy::parse("c", POLICY2).unwrap();
    t.sim.sides[CONSUMER]
        .session
        .counter_request(now, t.c, policy)
        .unwrap();
    settle(t);
    assert_eq!(states(t), (S::Requested, S::Requested));
}

fn agree(t: &mut T) {
    let now = t.sim.now;
    t.sim.sides[PROVIDER].session.agree(now, t.p).unwrap();
    settle(t);
    assert_eq!(states(t), (S::Agreed, S::Agreed));
}

fn verify(t: &mut T) {
    let now = t.sim.now;
    t.sim.sides[CONSUMER]
        .session
        .verify_agreement(now, t.c)
        .unwrap();
    settle(t);
    assert_eq!(states(t), (S::Verified, S::Verified));
}

fn finalize(t: &mut T) {
    let now = t.sim.now;
    t.sim.sides[PROVIDER].session.finalize(now, t.p).unwrap();
    settle(t);
    assert_eq!(states(t), (S::Finalized, S::Finalized));
    // Both sides hold the same agreement, with both signatures checked.
    let id = |side: usize| {
        t.sim.sides[side]
            .journal
            .events
            .iter()
            .find_map(|e| match e {
                Event::Finalized { agreement, .. } => Some(agreement.id()),
                _ => None,
            })
    };
    assert!(id(CONSUMER).is_some());
    assert_eq!(id(CONSUMER), id(PROVIDER));
}

fn terminate(t: &mut T, side: usize) {
    let now = t.sim.now;
    let pid = if side == CONSUMER { t.c } else { t.p };
    t.sim.sides[side]
        .session
        .terminate_negotiation(now, pid, "negotiation.declined", "the TCK ends it")
        .unwrap();
    settle(t);
    assert_eq!(states(t), (S::Terminated, S::Terminated));
    // The other side learned who ended it and why, from a signed notice.
    let other = 1 - side;
    let seen = t.sim.sides[other].journal.events.iter().any(|e| {
        matches!(e, Event::NegotiationTerminated { code, notice: Some(_), .. } if code == "negotiation.declined")
    });
    assert!(seen, "the other side saw the signed termination");
}

fn notice(t: &T, kind: NoticeKind, key_seed: [u8; 32]) -> ByteBuf {
    let key = SigningKey::from_seed(&key_seed);
    ByteBuf::from(
        sign_notice(
            &key,
            &Notice {
                kind,
                consumer_pid: t.c,
                provider_pid: t.p,
                agreement: None,
                party: key.id(),
                party_key: key.public_key(),
                code: Some("negotiation.declined".into()),
                reason: None,
                time: NOW,
            },
        )
        .unwrap(),
    )
}

/// The TCK sends `m` to side `to` out of state: it must be refused as an invalid
/// transition, and the state must not change.
fn refused(t: &mut T, to: usize, m: Message) {
    let before = states(t);
    let code = inject(&mut t.sim, to, m);
    assert_eq!(code.as_deref(), Some("negotiation.invalid_transition"));
    settle(t);
    assert_eq!(states(t), before);
}

// ---- CN: the connector under test is the provider ----

#[test]
fn cn_01_01_request_offer_consumer_terminates() {
    let mut t = requested();
    offer(&mut t);
    terminate(&mut t, CONSUMER);
}

#[test]
fn cn_01_02_request_offer_counter_request_provider_terminates() {
    let mut t = requested();
    offer(&mut t);
    counter(&mut t);
    terminate(&mut t, PROVIDER);
}

#[test]
fn cn_01_03_request_offer_accepted_agreement_verified_finalized() {
    let mut t = requested();
    offer(&mut t);
    accept(&mut t);
    agree(&mut t);
    verify(&mut t);
    finalize(&mut t);
}

#[test]
fn cn_01_04_request_agreement_verified_finalized() {
    let mut t = requested();
    agree(&mut t);
    verify(&mut t);
    finalize(&mut t);
}

#[test]
fn cn_02_01_request_provider_terminates() {
    let mut t = requested();
    terminate(&mut t, PROVIDER);
}

#[test]
fn cn_02_02_request_consumer_terminates() {
    let mut t = requested();
    terminate(&mut t, CONSUMER);
}

#[test]
fn cn_02_03_request_agreement_consumer_terminates() {
    let mut t = requested();
    agree(&mut t);
    terminate(&mut t, CONSUMER);
}

#[test]
fn cn_02_04_request_offer_consumer_terminates() {
    let mut t = requested();
    offer(&mut t);
    terminate(&mut t, CONSUMER);
}

#[test]
fn cn_02_05_request_offer_provider_terminates() {
    let mut t = requested();
    offer(&mut t);
    terminate(&mut t, PROVIDER);
}

#[test]
fn cn_02_06_request_offer_accepted_provider_terminates() {
    let mut t = requested();
    offer(&mut t);
    accept(&mut t);
    terminate(&mut t, PROVIDER);
}

#[test]
fn cn_02_07_request_agreement_verified_provider_terminates() {
    let mut t = requested();
    agree(&mut t);
    verify(&mut t);
    terminate(&mut t, PROVIDER);
}

#[test]
fn cn_03_01_termination_after_finalized_is_refused() {
    let mut t = requested();
    agree(&mut t);
    verify(&mut t);
    finalize(&mut t);
    let n = notice(&t, NoticeKind::Terminated, CONSUMER_SEED);
    let m = Message::NegotiationTermination(NoticeMsg {
        consumer_pid: t.c,
        provider_pid: t.p,
        notice: n,
    });
    refused(&mut t, PROVIDER, m);
}

fn verification(t: &T) -> Message {
    Message::AgreementVerification(VerificationMsg {
        consumer_pid: t.c,
        provider_pid: t.p,
        agreement: ByteBuf::from(b"not reached: the state check comes first".to_vec()),
    })
}

#[test]
fn cn_03_02_verification_while_offered_is_refused() {
    let mut t = requested();
    offer(&mut t);
    let m = verification(&t);
    refused(&mut t, PROVIDER, m);
}

#[test]
fn cn_03_03_verification_while_accepted_is_refused() {
    let mut t = requested();
    offer(&mut t);
    accept(&mut t);
    let m = verification(&t);
    refused(&mut t, PROVIDER, m);
    // The provider did not agree on its own.
    assert!(!t.sim.sides[CONSUMER]
        .journal
        .events
        .iter()
        .any(|e| matches!(e, Event::AgreementReceived { .. })));
}

#[test]
fn cn_03_04_second_counter_request_is_refused() {
    let mut t = requested();
    offer(&mut t);
    counter(&mut t);
    let m = Message::ContractRequest(ContractRequestMsg {
        consumer_pid: t.c,
        provider_pid: Some(t.p),
        offer: ByteBuf::from(t.w.offer2.clone()),
        request: ByteBuf::from(signed_request(&t.w, &t.w.offer2, 0x77)),
    });
    refused(&mut t, PROVIDER, m);
}

// ---- CN_C: the connector under test is the consumer ----

fn finalized_notice(t: &T) -> Message {
    Message::ContractFinalized(NoticeMsg {
        consumer_pid: t.c,
        provider_pid: t.p,
        notice: notice(t, NoticeKind::Finalized, PROVIDER_SEED),
    })
}

#[test]
fn cn_c_01_01_request_offer_accepted_agreement_verified_finalized() {
    let mut t = requested();
    offer(&mut t);
    accept(&mut t);
    agree(&mut t);
    verify(&mut t);
    finalize(&mut t);
}

#[test]
fn cn_c_01_02_request_offer_counter_request_provider_terminates() {
    let mut t = requested();
    offer(&mut t);
    counter(&mut t);
    terminate(&mut t, PROVIDER);
}

#[test]
fn cn_c_01_03_request_offer_consumer_terminates() {
    let mut t = requested();
    offer(&mut t);
    terminate(&mut t, CONSUMER);
}

#[test]
fn cn_c_01_04_request_agreement_verified_finalized() {
    let mut t = requested();
    agree(&mut t);
    verify(&mut t);
    finalize(&mut t);
}

#[test]
fn cn_c_02_01_request_provider_terminates() {
    let mut t = requested();
    terminate(&mut t, PROVIDER);
}

#[test]
fn cn_c_02_02_request_consumer_terminates() {
    let mut t = requested();
    terminate(&mut t, CONSUMER);
}

#[test]
fn cn_c_02_03_request_agreement_consumer_terminates() {
    let mut t = requested();
    agree(&mut t);
    terminate(&mut t, CONSUMER);
}

#[test]
fn cn_c_02_04_request_offer_provider_terminates() {
    let mut t = requested();
    offer(&mut t);
    // The consumer neither accepts nor counters on its own.
    settle(&mut t);
    assert_eq!(states(&t), (S::Offered, S::Offered));
    terminate(&mut t, PROVIDER);
}

#[test]
fn cn_c_02_05_request_offer_accepted_provider_terminates() {
    let mut t = requested();
    offer(&mut t);
    accept(&mut t);
    terminate(&mut t, PROVIDER);
}

#[test]
fn cn_c_02_06_request_agreement_verified_provider_terminates() {
    let mut t = requested();
    agree(&mut t);
    verify(&mut t);
    terminate(&mut t, PROVIDER);
}

#[test]
fn cn_c_03_01_finalized_while_requested_is_refused() {
    let mut t = requested();
    let m = finalized_notice(&t);
    refused(&mut t, CONSUMER, m);
}

#[test]
fn cn_c_03_02_agreement_while_offered_is_refused() {
    let mut t = requested();
    offer(&mut t);
    let m = Message::ContractAgreement(AgreementMsg {
        provider_pid: t.p,
        consumer_pid: t.c,
        agreement: ByteBuf::from(b"not reached".to_vec()),
    });
    refused(&mut t, CONSUMER, m);
}

#[test]
fn cn_c_03_03_finalized_while_offered_is_refused() {
    let mut t = requested();
    offer(&mut t);
    let m = finalized_notice(&t);
    refused(&mut t, CONSUMER, m);
}

#[test]
fn cn_c_03_04_finalized_while_accepted_is_refused() {
    let mut t = requested();
    offer(&mut t);
    accept(&mut t);
    let m = finalized_notice(&t);
    refused(&mut t, CONSUMER, m);
}

#[test]
fn cn_c_03_05_offer_while_accepted_is_refused() {
    let mut t = requested();
    offer(&mut t);
    accept(&mut t);
    let m = Message::ContractOffer(ContractOfferMsg {
        provider_pid: t.p,
        consumer_pid: Some(t.c),
        offer: ByteBuf::from(t.w.offer2.clone()),
    });
    refused(&mut t, CONSUMER, m);
}

#[test]
fn cn_c_03_06_finalized_while_agreed_is_refused() {
    let mut t = requested();
    offer(&mut t);
    accept(&mut t);
    agree(&mut t);
    // The consumer (manual) has not verified on its own.
    let m = finalized_notice(&t);
    refused(&mut t, CONSUMER, m);
}
