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
    let now = sim.now;
    let n = sim.sides[CONSUMER]
        .session
        .request_contract(now, &w.offer, None, purpose())
        .unwrap();
    sim.run_for(2000);
    let agreement = sim.sides[CONSUMER]
        .session
        .negotiation(n)
        .unwrap()
        .agreement
        .unwrap();
    sim.sides[PROVIDER].corrupt = true;
    let now = sim.now;
    let t = sim.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), None)
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
