//! A hostile peer: bad signatures, a wrong chunk, a replayed request, a stale request,
//! an oversize frame, unknown process ids, garbage and out-of-state messages. Each gets
//! a clean refusal with its reason code, and the honest side goes on as before: it still
//! completes an honest negotiation afterwards.

use serde_bytes::ByteBuf;
use tds_protocol::message::{ChunkRequestMsg, ContractRequestMsg, NoticeMsg, TransferRequestMsg};
use tds_protocol::session::{Event, Mode};
use tds_protocol::sim::NetConfig;
use tds_protocol::{Message, NegotiationState, Pid, TransferState};

use super::common::*;

fn request(w: &World, consumer_pid: [u8; 16], request: Vec<u8>) -> Message {
    Message::ContractRequest(ContractRequestMsg {
        consumer_pid: Pid::from_bytes(consumer_pid),
        provider_pid: None,
        offer: ByteBuf::from(w.offer.clone()),
        request: ByteBuf::from(request),
    })
}

/// The provider still negotiates honestly after the abuse.
fn still_honest(sim: &mut tds_protocol::sim::Sim, w: &World) {
    let now = sim.now;
    let pid = sim.sides[CONSUMER]
        .session
        .request_contract(now, &w.offer, None, purpose())
        .unwrap();
    assert!(sim.run_until(60_000, |s| s.sides[CONSUMER]
        .session
        .negotiation(pid)
        .is_some_and(|n| n.state == NegotiationState::Finalized)));
}

fn live_negotiations(sim: &tds_protocol::sim::Sim) -> usize {
    sim.sides[PROVIDER]
        .journal
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::NegotiationState {
                    state: NegotiationState::Requested,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn hostile_messages_get_clean_refusals_and_change_nothing() {
    let w = world(4);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        31,
    );

    // A bad signature: the request's last byte flipped.
    let mut bad = signed_request(&w, &w.offer, 1);
    if let Some(b) = bad.last_mut() {
        *b ^= 1;
    }
    assert_eq!(
        inject(&mut sim, PROVIDER, request(&w, [1; 16], bad)).as_deref(),
        Some("cose.bad_signature")
    );

    // A request signed by someone else than the connection's peer.
    let other = tds_core::SigningKey::from_seed(&[9; 32]);
    let o = tds_policy::contract::verify_offer(&w.offer).unwrap();
    let forged = tds_policy::contract::create_request(
        &other,
        &tds_policy::contract::ContractRequest {
            offer: o.id(),
            consumer: other.id(),
            consumer_key: other.public_key(),
            policy: o.offer().policy.clone(),
            purpose: purpose(),
            nonce: serde_bytes::ByteArray::new([2; 16]),
            time: NOW,
        },
    )
    .unwrap();
    assert_eq!(
        inject(&mut sim, PROVIDER, request(&w, [2; 16], forged)).as_deref(),
        Some("contract.credential_mismatch")
    );

    // A genuine request is accepted once; the same signed request under a new process
    // id is a replay.
    let genuine = signed_request(&w, &w.offer, 3);
    assert_eq!(
        inject(&mut sim, PROVIDER, request(&w, [3; 16], genuine.clone())),
        None
    );
    assert_eq!(
        inject(&mut sim, PROVIDER, request(&w, [4; 16], genuine)).as_deref(),
        Some("contract.nonce_reused")
    );

    // A stale request: signed an hour before the provider's clock.
    sim.now = NOW.saturating_add_millis(3_600_000);
    assert_eq!(
        inject(
            &mut sim,
            PROVIDER,
            request(&w, [5; 16], signed_request(&w, &w.offer, 5))
        )
        .as_deref(),
        Some("contract.stale_request")
    );

    // An oversize frame is refused on its header.
    let mut huge = vec![0u8, 0x00, 0x20, 0x00, 0x00];
    huge.extend(std::iter::repeat_n(0u8, 16));
    assert_eq!(
        inject_frame(&mut sim, PROVIDER, &huge).as_deref(),
        Some("protocol.frame_too_large")
    );
    // Garbage, a truncated frame, an unknown message.
    assert_eq!(
        inject_frame(&mut sim, PROVIDER, &[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]).as_deref(),
        Some("protocol.malformed")
    );
    assert_eq!(
        inject_frame(&mut sim, PROVIDER, &[0, 0, 0, 1, 0]).as_deref(),
        Some("protocol.truncated")
    );
    let mut unknown = vec![0u8, 0, 0, 0, 7, 0xa1, 0x64];
    unknown.extend_from_slice(b"boom");
    unknown.push(0xa0);
    assert_eq!(
        inject_frame(&mut sim, PROVIDER, &unknown).as_deref(),
        Some("protocol.unknown_message")
    );
    // A reply sent as a request.
    assert_eq!(
        inject(
            &mut sim,
            PROVIDER,
            Message::Ack(tds_protocol::message::Ack {
                pid: None,
                state: None
            })
        )
        .as_deref(),
        Some("protocol.unexpected_message")
    );

    // Unknown process ids.
    let ghost = Pid::from_bytes([0xee; 16]);
    let m = Message::NegotiationTermination(NoticeMsg {
        consumer_pid: ghost,
        provider_pid: ghost,
        notice: ByteBuf::from(vec![0]),
    });
    assert_eq!(
        inject(&mut sim, PROVIDER, m).as_deref(),
        Some("negotiation.unknown_process")
    );
    let m = Message::ChunkRequest(ChunkRequestMsg {
        provider_pid: ghost,
        consumer_pid: ghost,
        index: 0,
    });
    assert_eq!(
        inject(&mut sim, PROVIDER, m).as_deref(),
        Some("transfer.unknown_process")
    );
    // A transfer under an agreement that does not exist.
    let m = Message::TransferRequest(TransferRequestMsg {
        consumer_pid: ghost,
        agreement: tds_core::Hash256::from_bytes([7; 32]),
        purpose: purpose(),
        location: None,
        consent_ref: None,
        export_assessment_ref: None,
    });
    assert_eq!(
        inject(&mut sim, PROVIDER, m).as_deref(),
        Some("transfer.unknown_agreement")
    );

    // Only the one genuine request made a negotiation.
    assert_eq!(live_negotiations(&sim), 1);
    still_honest(&mut sim, &w);
    // The provider key stays the one its credential names.
    assert_eq!(
        sim.sides[CONSUMER].session.peer().subject_key(),
        &w.provider.public_key()
    );
}

#[test]
fn a_wrong_chunk_is_never_accepted_and_ends_the_transfer() {
    let w = world(8);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        33,
    );
    let agreement = agreed(&mut sim, &w);
    sim.sides[PROVIDER].corrupt = true;
    let now = sim.now;
    let t = sim.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), None, Default::default())
        .unwrap();
    sim.run_for(5000);
    assert!(
        sim.sides[CONSUMER].journal.chunks.is_empty(),
        "no corrupt chunk was accepted"
    );
    assert_eq!(
        sim.sides[CONSUMER].session.transfer(t).unwrap().state,
        TransferState::Terminated
    );
    let code = sim.sides[PROVIDER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::TransferTerminated { code, .. } => Some(code.clone()),
            _ => None,
        });
    assert_eq!(code.as_deref(), Some("manifest.chunk.mismatch"));
}

// ---- from the review of session 4 (findings H1, H2, H3, M1) ----

fn inject_reply(sim: &mut tds_protocol::sim::Sim, to: usize, m: &Message) -> Message {
    let f = tds_protocol::frame::encode_control(m).unwrap();
    let r = sim.inject(to, &f).unwrap();
    match tds_protocol::frame::decode(&r).unwrap() {
        tds_protocol::frame::Frame::Control(m) => m,
        other => panic!("{other:?}"),
    }
}

/// A hostile provider signs terms that name the consumer's request and offer but change
/// the asset, policy, purpose and price: the consumer refuses them and signs nothing.
#[test]
fn substituted_terms_are_never_countersigned() {
    let w = world(4);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Manual),
        NetConfig::default(),
        61,
    );
    let now = sim.now;
    let pid = sim.sides[CONSUMER]
        .session
        .request_contract(now, &w.offer, None, purpose())
        .unwrap();
    let mut req = None;
    while let Some(t) = sim.sides[CONSUMER].session.poll_transmit() {
        if let tds_protocol::Transmit::Request { frame: f, .. } = t {
            if let Ok(tds_protocol::frame::Frame::Control(Message::ContractRequest(r))) =
                tds_protocol::frame::decode(&f)
            {
                req = Some(r.request.into_vec());
            }
        }
    }
    let req = tds_core::cose::open::<tds_policy::contract::ContractRequest>(&req.unwrap())
        .unwrap()
        .value()
        .clone();
    let offer = tds_policy::contract::verify_offer(&w.offer).unwrap();
    let honest = tds_policy::contract::AgreementTerms {
        offer: offer.id(),
        request: req.id().unwrap(),
        asset: offer.offer().asset.clone(),
        provider: w.provider.id(),
        provider_key: w.provider.public_key(),
        consumer: w.consumer.id(),
        consumer_key: w.consumer.public_key(),
        offer_policy: offer.offer().policy.clone(),
        policy: req.policy.clone(),
        purpose: req.purpose.clone(),
        price: None,
        agreed_at: NOW,
    };
    let evil = tds_policy::parse(
        "evil",
        "policy set;\n\npermit use\n  when purpose isA grid/planning\n  duty delete(within 1h);\n",
    )
    .unwrap();
    let mut variants = Vec::new();
    let mut t = honest.clone();
    t.asset = "some-other-asset".parse().unwrap();
    variants.push(t);
    let mut t = honest.clone();
    t.policy = evil.clone();
    variants.push(t);
    let mut t = honest.clone();
    t.offer_policy = evil;
    variants.push(t);
    let mut t = honest.clone();
    t.purpose = "grid".parse().unwrap();
    variants.push(t);
    let mut t = honest.clone();
    t.price = Some(tds_policy::contract::Price {
        amount: "1000000".parse().unwrap(),
        currency: "CNY".parse().unwrap(),
    });
    variants.push(t);
    let mut t = honest.clone();
    t.agreed_at = NOW.saturating_add_millis(86_400_000);
    variants.push(t);
    for (i, terms) in variants.into_iter().enumerate() {
        let half = tds_core::cose::sign_multi(&[&w.provider], &terms).unwrap();
        let m = Message::ContractAgreement(tds_protocol::message::AgreementMsg {
            provider_pid: Pid::from_bytes([7; 16]),
            consumer_pid: pid,
            agreement: ByteBuf::from(half),
        });
        match inject_reply(&mut sim, CONSUMER, &m) {
            Message::Error(r) => {
                assert_eq!(r.code, "negotiation.agreement_mismatch", "variant {i}")
            }
            other => panic!("variant {i} accepted: {other:?}"),
        }
        let n = sim.sides[CONSUMER].session.negotiation(pid).unwrap();
        assert_eq!(n.state, NegotiationState::Requested, "variant {i}");
        assert!(n.agreement.is_none());
        // Each refusal is reported as a violation of the peer naming this negotiation.
        let violations = sim.sides[CONSUMER]
            .journal
            .events
            .iter()
            .filter(|e| {
                matches!(e, Event::PeerViolation { message: "contract_agreement", pid: Some(p), refusal }
                    if *p == pid && refusal.code == "negotiation.agreement_mismatch")
            })
            .count();
        assert_eq!(violations, i + 1, "variant {i}");
    }
    // The honest terms are countersigned.
    let half = tds_core::cose::sign_multi(&[&w.provider], &honest).unwrap();
    let m = Message::ContractAgreement(tds_protocol::message::AgreementMsg {
        provider_pid: Pid::from_bytes([7; 16]),
        consumer_pid: pid,
        agreement: ByteBuf::from(half),
    });
    assert!(matches!(
        inject_reply(&mut sim, CONSUMER, &m),
        Message::Ack(_)
    ));
    assert_eq!(
        sim.sides[CONSUMER].session.negotiation(pid).unwrap().state,
        NegotiationState::Verified
    );
}

/// A peer opens and ends far more negotiations than `max_processes`: ended ones are
/// forgotten to make room, the session never holds more than the limit, and a late retry
/// naming a forgotten process is refused rather than taken for a new one.
#[test]
fn ended_processes_are_forgotten_and_bounded() {
    let w = world(4);
    let mut pcfg = config(Mode::Manual);
    pcfg.max_processes = 2;
    let mut sim = sim(&w, config(Mode::Manual), pcfg, NetConfig::default(), 62);
    let mut first = None;
    for i in 0..50u8 {
        let cpid = Pid::from_bytes([i; 16]);
        let m = Message::ContractRequest(ContractRequestMsg {
            consumer_pid: cpid,
            provider_pid: None,
            offer: ByteBuf::from(w.offer.clone()),
            request: ByteBuf::from(signed_request(&w, &w.offer, i)),
        });
        if i == 0 {
            first = Some(m.clone());
        }
        let Message::Ack(a) = inject_reply(&mut sim, PROVIDER, &m) else {
            panic!("refused at {i}")
        };
        let ppid = a.pid.unwrap();
        let notice = tds_protocol::signed::sign_notice(
            &w.consumer,
            &tds_protocol::signed::Notice {
                kind: tds_protocol::signed::NoticeKind::Terminated,
                consumer_pid: cpid,
                provider_pid: ppid,
                agreement: None,
                party: w.consumer.id(),
                party_key: w.consumer.public_key(),
                code: Some("negotiation.cancelled".into()),
                reason: None,
                time: NOW,
            },
        )
        .unwrap();
        let t = Message::NegotiationTermination(NoticeMsg {
            consumer_pid: cpid,
            provider_pid: ppid,
            notice: ByteBuf::from(notice),
        });
        assert!(matches!(
            inject_reply(&mut sim, PROVIDER, &t),
            Message::Ack(_)
        ));
    }
    let held = sim.sides[PROVIDER]
        .journal
        .events
        .iter()
        .filter_map(|e| match e {
            Event::NegotiationState { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|p| sim.sides[PROVIDER].session.negotiation(*p).is_some())
        .count();
    assert!(held <= 2, "{held} negotiations held");
    // The first request again, long forgotten: refused, not a new negotiation.
    let before = live_negotiations(&sim);
    match inject_reply(&mut sim, PROVIDER, &first.unwrap()) {
        Message::Error(r) => assert_eq!(r.code, "negotiation.pid_in_use"),
        other => panic!("{other:?}"),
    }
    assert_eq!(live_negotiations(&sim), before);
    // A termination of a process already ended and forgotten is an honest race (two
    // terminations crossing), refused but not reported as a violation.
    let late = Message::NegotiationTermination(NoticeMsg {
        consumer_pid: Pid::from_bytes([0; 16]),
        provider_pid: Pid::from_bytes([0xee; 16]),
        notice: ByteBuf::from(vec![0xa0]),
    });
    match inject_reply(&mut sim, PROVIDER, &late) {
        Message::Error(r) => assert!(r.code.ends_with(".unknown_process"), "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert!(!sim.sides[PROVIDER]
        .journal
        .events
        .iter()
        .any(|e| matches!(e, Event::PeerViolation { .. })));
    // Ended processes are also forgotten by time.
    sim.run_for(10 * 60 * 1000);
    assert_eq!(
        sim.sides[PROVIDER]
            .session
            .negotiation(Pid::from_bytes([0; 16]))
            .map(|n| n.state),
        None
    );
}

/// A consumer that asks for the same chunk again and again is served a bounded number of
/// times, and delivered bytes count each chunk once.
#[test]
fn a_chunk_asked_again_and_again_is_refused_after_an_allowance() {
    let w = world(4);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        63,
    );
    let agreement = agreed(&mut sim, &w);
    let cpid = Pid::from_bytes([0xab; 16]);
    let m = Message::TransferRequest(TransferRequestMsg {
        consumer_pid: cpid,
        agreement: agreement.id(),
        purpose: purpose(),
        location: None,
        consent_ref: None,
        export_assessment_ref: None,
    });
    let Message::Ack(a) = inject_reply(&mut sim, PROVIDER, &m) else {
        panic!()
    };
    let ppid = a.pid.unwrap();
    let ask = Message::ChunkRequest(ChunkRequestMsg {
        provider_pid: ppid,
        consumer_pid: cpid,
        index: 0,
    });
    let mut served = 0;
    let mut refused = None;
    for _ in 0..200 {
        let f = tds_protocol::frame::encode_control(&ask).unwrap();
        let reply = sim.inject(PROVIDER, &f).unwrap();
        match tds_protocol::frame::decode(&reply).unwrap() {
            tds_protocol::frame::Frame::Data(..) => served += 1,
            tds_protocol::frame::Frame::Control(Message::Error(r)) => {
                refused = Some(r.code);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refused.as_deref(), Some("transfer.chunk_limit"));
    assert_eq!(served, 65, "the first serve and 64 more");
    let t = sim.sides[PROVIDER].session.transfer(ppid).unwrap();
    assert_eq!(t.bytes, 65_536, "chunk 0 counted once");
}

/// Two transfers under an agreement that allows one use: the second, started while the
/// first is in progress, is refused.
#[test]
fn concurrent_transfers_share_the_use_count() {
    let mut w = world(4);
    w.offer = tds_policy::contract::create_offer(
        &w.provider,
        &tds_policy::contract::Offer {
            asset: w.asset.verified.id().to_string().parse().unwrap(),
            provider: w.provider.id(),
            provider_key: w.provider.public_key(),
            policy: tds_policy::parse(
                "o",
                "policy set;\n\npermit use\n  when purpose isA grid\n    and count lteq 1;\n",
            )
            .unwrap(),
            price: None,
            not_before: NOW,
            not_after: NOW.saturating_add_millis(86_400_000),
            licence: None,
        },
    )
    .unwrap();
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        64,
    );
    sim.sides[PROVIDER].serve = false;
    let agreement = agreed(&mut sim, &w);
    let request = |pid: u8| {
        Message::TransferRequest(TransferRequestMsg {
            consumer_pid: Pid::from_bytes([pid; 16]),
            agreement: agreement.id(),
            purpose: purpose(),
            location: None,
            consent_ref: None,
            export_assessment_ref: None,
        })
    };
    assert!(matches!(
        inject_reply(&mut sim, PROVIDER, &request(1)),
        Message::Ack(_)
    ));
    match inject_reply(&mut sim, PROVIDER, &request(2)) {
        Message::Error(r) => assert!(r.code.starts_with("policy."), "{}", r.code),
        other => panic!("{other:?}"),
    }
}

/// An application that cannot build a chunk's answer (wrong length) can still refuse it:
/// the peer's request gets an `error`, never silence.
#[test]
fn a_chunk_the_application_cannot_answer_is_refused() {
    let w = world(4);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        65,
    );
    sim.sides[PROVIDER].serve = false;
    let agreement = agreed(&mut sim, &w);
    let now = sim.now;
    sim.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), None, Default::default())
        .unwrap();
    sim.run_for(500);
    let reply = sim.sides[PROVIDER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::ChunkWanted { reply, .. } => Some(*reply),
            _ => None,
        })
        .unwrap();
    let now = sim.now;
    let s = &mut sim.sides[PROVIDER].session;
    assert!(s.chunk_header(now, reply, 1, vec![]).is_err());
    s.refuse_chunk(
        reply,
        tds_protocol::Refusal::new("transfer.chunk_unavailable", "x"),
    );
    let mut answered = false;
    while let Some(t) = s.poll_transmit() {
        if matches!(t, tds_protocol::Transmit::Reply { to, .. } if to == reply) {
            answered = true;
        }
    }
    assert!(answered, "the request got its refusal");
}

/// Regression (issue 13, adversarial list): a consumer that refused a `transfer_start`
/// whose manifest was another asset's (or did not verify) kept its transfer waiting in
/// REQUESTED for the idle timer, though the provider had ended its side on the refusal:
/// a fetch hung for minutes and then failed with `transfer.timeout` instead of the
/// reason. The transfer now ends at once with the refusal's code, as at a chunk that
/// fails verification, and the provider is told.
#[test]
fn a_transfer_started_with_a_wrong_manifest_ends_with_the_reason() {
    let w = world(4);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        71,
    );
    let agreement = agreed(&mut sim, &w);
    let now = sim.now;
    let t = sim.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), None, Default::default())
        .unwrap();
    // The request never reaches the provider; a hostile one answers in its place.
    while sim.sides[CONSUMER].session.poll_transmit().is_some() {}
    let mut other = tds_core::cose::open::<tds_manifest::Manifest>(&w.manifest)
        .unwrap()
        .value()
        .clone();
    other.title = "Another asset".into();
    let other = other.sign(&w.provider).unwrap();
    let m = Message::TransferStart(tds_protocol::message::TransferStartMsg {
        provider_pid: Pid::from_bytes([8; 16]),
        consumer_pid: t,
        manifest: ByteBuf::from(other),
    });
    assert_eq!(
        inject(&mut sim, CONSUMER, m).as_deref(),
        Some("transfer.wrong_asset")
    );
    assert_eq!(
        sim.sides[CONSUMER].session.transfer(t).unwrap().state,
        TransferState::Terminated
    );
    let ended = sim.sides[CONSUMER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::TransferTerminated { pid, code, .. } if *pid == t => Some(code.clone()),
            _ => None,
        });
    assert_eq!(ended.as_deref(), Some("transfer.wrong_asset"));
}
