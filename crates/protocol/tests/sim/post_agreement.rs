//! What follows an agreement: its termination by either party, the consumer's usage
//! reports and deletion receipts. Each message: accepted with its event on the receiver
//! and `Delivered` on the sender; refused for a wrong signer, an unknown agreement, a
//! participant who is not a party or not in the role; a duplicate is acknowledged again
//! without a second event; a lost message is sent again; an undeliverable one is reported
//! `Undelivered`.

use std::sync::Arc;

use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_core::{SigningKey, Timestamp};
use tds_identity::Role as MemberRole;
use tds_policy::contract::{self, Termination, VerifiedAgreement};
use tds_protocol::message::{AgreementTerminationMsg, DeletionReceiptMsg, UsageReportMsg};
use tds_protocol::session::{Event, Host as _, Mode, OutId};
use tds_protocol::signed::{self, ActionUses, DeletionReceipt, UsageReport};
use tds_protocol::sim::{NetConfig, Sim};
use tds_protocol::{Message, Role, TransferState};

use super::common::*;

fn auto_sim(w: &World, net: NetConfig, seed: u64) -> Sim {
    sim(w, config(Mode::Auto), config(Mode::Auto), net, seed)
}

/// An agreement on the world's offer between the provider and `consumer` (admitted by
/// the world's authority), made without the protocol.
fn agreement_with(w: &mut World, consumer: &SigningKey, nonce: u8) -> Arc<VerifiedAgreement> {
    let cred = admit(&mut w.authority, consumer, MemberRole::Consumer);
    let verified = verified(w, &cred);
    let offer = contract::verify_offer(&w.offer).unwrap();
    let request = contract::create_request(
        consumer,
        &contract::ContractRequest {
            offer: offer.id(),
            consumer: consumer.id(),
            consumer_key: consumer.public_key(),
            policy: contract::narrow_to_purpose(&offer.offer().policy, &purpose()),
            purpose: purpose(),
            nonce: serde_bytes::ByteArray::new([nonce; 16]),
            time: NOW,
        },
    )
    .unwrap();
    let nonces = contract::MemoryNonceStore::new();
    let vr = contract::verify_request(&request, &offer, &verified, NOW, &nonces).unwrap();
    let half = contract::accept(&w.provider, &offer, &vr, NOW).unwrap();
    let full = contract::countersign(consumer, &half.envelope).unwrap();
    Arc::new(contract::verify_agreement(&full).unwrap())
}

fn report_of(key: &SigningKey, agreement: Hash256, now: Timestamp) -> UsageReport {
    UsageReport {
        agreement,
        consumer: key.id(),
        consumer_key: key.public_key(),
        from: NOW,
        to: now,
        uses: 2,
        bytes: 128 * 1024,
        actions: vec![
            ActionUses {
                action: tds_policy::Action::Analyze,
                uses: 1,
            },
            ActionUses {
                action: tds_policy::Action::Read,
                uses: 2,
            },
        ],
        time: now,
    }
}

fn signed_report(key: &SigningKey, agreement: Hash256, now: Timestamp) -> Vec<u8> {
    signed::sign_usage_report(key, &report_of(key, agreement, now)).unwrap()
}

fn receipt_of(w: &World, key: &SigningKey, agreement: Hash256, now: Timestamp) -> DeletionReceipt {
    DeletionReceipt {
        agreement,
        asset: *w.asset.verified.id().as_hash(),
        consumer: key.id(),
        consumer_key: key.public_key(),
        chunks: 2,
        bytes: w.asset.commitment().size,
        time: now,
    }
}

fn signed_receipt(w: &World, key: &SigningKey, agreement: Hash256, now: Timestamp) -> Vec<u8> {
    signed::sign_deletion_receipt(key, &receipt_of(w, key, agreement, now)).unwrap()
}

/// A termination of `agreement` signed by `key`, naming `party` (raw: no party check).
fn raw_termination(key: &SigningKey, agreement: Hash256, party: &SigningKey) -> Vec<u8> {
    tds_core::cose::sign(
        key,
        &Termination {
            agreement,
            party: party.id(),
            party_key: party.public_key(),
            time: NOW,
            reason: None,
        },
    )
    .unwrap()
}

fn termination_msg(agreement: Hash256, termination: Vec<u8>) -> Message {
    Message::AgreementTermination(AgreementTerminationMsg {
        agreement,
        termination: ByteBuf::from(termination),
    })
}

fn report_msg(report: Vec<u8>) -> Message {
    Message::UsageReport(UsageReportMsg {
        report: ByteBuf::from(report),
    })
}

fn receipt_msg(receipt: Vec<u8>) -> Message {
    Message::DeletionReceipt(DeletionReceiptMsg {
        receipt: ByteBuf::from(receipt),
    })
}

/// The post-agreement events of side `side`: terminations, reports, receipts.
fn received(sim: &Sim, side: usize) -> Vec<&Event> {
    sim.sides[side]
        .journal
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::AgreementTerminated { .. }
                    | Event::UsageReport { .. }
                    | Event::DeletionReceipt { .. }
            )
        })
        .collect()
}

/// The outcomes side `side` learned for its post-agreement messages: (id, message,
/// refusal code if undelivered).
fn outcomes(sim: &Sim, side: usize) -> Vec<(OutId, &'static str, Option<String>)> {
    sim.sides[side]
        .journal
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Delivered { id, message } => Some((*id, *message, None)),
            Event::Undelivered {
                id,
                message,
                refusal,
            } => Some((*id, *message, Some(refusal.code.clone()))),
            _ => None,
        })
        .collect()
}

fn no_refused_event(sim: &Sim, side: usize) {
    assert!(
        !sim.sides[side]
            .journal
            .events
            .iter()
            .any(|e| matches!(e, Event::Refused { .. })),
        "side {side} reported a Refused event"
    );
}

// ---- agreement termination ----

#[test]
fn the_consumer_terminates_an_agreement() {
    let w = world(2);
    let mut sim = auto_sim(&w, NetConfig::default(), 81);
    let a = agreed(&mut sim, &w);
    let now = sim.now;
    let t = contract::terminate(
        &w.consumer,
        &a,
        now,
        Some("no longer needed".parse().unwrap()),
    )
    .unwrap();
    let id = sim.sides[CONSUMER]
        .session
        .terminate_agreement(now, &a, t.clone())
        .unwrap();
    sim.run_for(1000);
    // The provider reports it once, by the consumer, with the signed notice.
    let got = received(&sim, PROVIDER);
    assert_eq!(got.len(), 1, "{got:?}");
    let Event::AgreementTerminated {
        agreement,
        by,
        termination,
    } = got[0]
    else {
        panic!("{got:?}")
    };
    assert_eq!(*agreement, a.id());
    assert_eq!(*by, Role::Consumer);
    assert_eq!(termination.envelope(), &t[..]);
    assert_eq!(termination.party(), w.consumer.id());
    assert!(sim.sides[PROVIDER].host.is_terminated(&a.id()));
    // The consumer reported its own termination and learned it was delivered.
    assert!(matches!(
        received(&sim, CONSUMER)[..],
        [Event::AgreementTerminated {
            by: Role::Consumer,
            ..
        }]
    ));
    assert_eq!(
        outcomes(&sim, CONSUMER),
        vec![(id, "agreement_termination", None)]
    );
    // A transfer under it is refused now.
    let now = sim.now;
    let x = sim.sides[CONSUMER]
        .session
        .request_transfer(now, a, purpose(), None, Default::default())
        .unwrap();
    sim.run_for(1000);
    assert_eq!(
        sim.sides[CONSUMER].session.transfer(x).unwrap().state,
        TransferState::Terminated
    );
    let code = sim.sides[CONSUMER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::Refused { refusal, .. } => Some(refusal.code.clone()),
            _ => None,
        });
    assert_eq!(code.as_deref(), Some("transfer.agreement_terminated"));
}

#[test]
fn the_provider_terminates_an_agreement() {
    let w = world(2);
    let mut sim = auto_sim(&w, NetConfig::default(), 82);
    let a = agreed(&mut sim, &w);
    let now = sim.now;
    let t = contract::terminate(&w.provider, &a, now, None).unwrap();
    let id = sim.sides[PROVIDER]
        .session
        .terminate_agreement(now, &a, t)
        .unwrap();
    sim.run_for(1000);
    assert!(matches!(
        received(&sim, CONSUMER)[..],
        [Event::AgreementTerminated {
            by: Role::Provider,
            ..
        }]
    ));
    assert_eq!(
        outcomes(&sim, PROVIDER),
        vec![(id, "agreement_termination", None)]
    );
}

#[test]
fn a_termination_must_be_the_peers_for_an_agreement_with_it() {
    let mut w = world(2);
    let third = SigningKey::from_seed(&[0x33; 32]);
    let elsewhere = agreement_with(&mut w, &third, 0x71);
    let mut sim = auto_sim(&w, NetConfig::default(), 83);
    let a = agreed(&mut sim, &w);
    sim.sides[PROVIDER].host.add_agreement(elsewhere.clone());
    let outsider = SigningKey::from_seed(&[0x44; 32]);
    let cases = [
        // Signed by the provider itself: a party, but not the peer.
        (
            termination_msg(
                a.id(),
                contract::terminate(&w.provider, &a, NOW, None).unwrap(),
            ),
            "protocol.wrong_party",
        ),
        // By someone who is no party.
        (
            termination_msg(a.id(), raw_termination(&outsider, a.id(), &outsider)),
            "contract.not_a_party",
        ),
        // Naming the consumer, signed by an outsider.
        (
            termination_msg(a.id(), raw_termination(&outsider, a.id(), &w.consumer)),
            "cose.kid_mismatch",
        ),
        // For another agreement than the message names.
        (
            termination_msg(
                a.id(),
                raw_termination(&w.consumer, Hash256::from_bytes([9; 32]), &w.consumer),
            ),
            "contract.other_agreement",
        ),
        // An agreement the provider does not hold.
        (
            termination_msg(
                Hash256::from_bytes([9; 32]),
                raw_termination(&w.consumer, Hash256::from_bytes([9; 32]), &w.consumer),
            ),
            "agreement.unknown",
        ),
        // The provider's agreement with someone else.
        (
            termination_msg(
                elsewhere.id(),
                raw_termination(&w.consumer, elsewhere.id(), &w.consumer),
            ),
            "agreement.not_party",
        ),
        // Not a termination at all.
        (termination_msg(a.id(), vec![0xa0]), "cose.structure"),
    ];
    for (m, code) in cases {
        assert_eq!(inject(&mut sim, PROVIDER, m).as_deref(), Some(code));
    }
    assert!(received(&sim, PROVIDER).is_empty());
    assert!(!sim.sides[PROVIDER].host.is_terminated(&a.id()));
}

#[test]
fn a_termination_call_is_checked_before_it_is_sent() {
    let mut w = world(2);
    let third = SigningKey::from_seed(&[0x33; 32]);
    let elsewhere = agreement_with(&mut w, &third, 0x72);
    let mut sim = auto_sim(&w, NetConfig::default(), 84);
    let a = agreed(&mut sim, &w);
    let now = sim.now;
    let s = &mut sim.sides[CONSUMER].session;
    // The peer's notice is not this side's to send.
    let theirs = contract::terminate(&w.provider, &a, now, None).unwrap();
    let e = s.terminate_agreement(now, &a, theirs).unwrap_err();
    assert_eq!(e.refusal.code, "protocol.wrong_party");
    // An agreement this side is not a party of.
    let t = contract::terminate(&w.provider, &elsewhere, now, None).unwrap();
    let e = s.terminate_agreement(now, &elsewhere, t).unwrap_err();
    assert_eq!(e.refusal.code, "agreement.not_party");
    // A notice of another agreement.
    let other = raw_termination(&w.consumer, Hash256::from_bytes([9; 32]), &w.consumer);
    let e = s.terminate_agreement(now, &a, other).unwrap_err();
    assert_eq!(e.refusal.code, "contract.other_agreement");
    assert!(sim.sides[CONSUMER].session.poll_transmit().is_none());
}

#[test]
fn a_duplicated_termination_is_acknowledged_and_reported_once() {
    let w = world(2);
    let mut sim = auto_sim(&w, NetConfig::default(), 85);
    let a = agreed(&mut sim, &w);
    let m = termination_msg(
        a.id(),
        contract::terminate(&w.consumer, &a, NOW, None).unwrap(),
    );
    assert_eq!(inject(&mut sim, PROVIDER, m.clone()), None);
    assert_eq!(inject(&mut sim, PROVIDER, m.clone()), None);
    assert_eq!(received(&sim, PROVIDER).len(), 1);
    // Over a network that delivers every request twice.
    let mut sim = auto_sim(
        &w,
        NetConfig {
            duplicate: 1.0,
            ..NetConfig::default()
        },
        86,
    );
    let a = agreed(&mut sim, &w);
    let now = sim.now;
    let t = contract::terminate(&w.consumer, &a, now, None).unwrap();
    let id = sim.sides[CONSUMER]
        .session
        .terminate_agreement(now, &a, t)
        .unwrap();
    sim.run_for(1000);
    assert!(sim.duplicated > 0);
    assert_eq!(received(&sim, PROVIDER).len(), 1);
    assert_eq!(
        outcomes(&sim, CONSUMER),
        vec![(id, "agreement_termination", None)]
    );
}

/// Sends with `send` over a lossy network for each of several seeds: the receiver
/// reports the message once and the sender learns it was delivered; at least one seed
/// needed a retry.
fn survives_loss(
    message: &'static str,
    receiver: usize,
    send: impl Fn(&World, &mut Sim, Arc<VerifiedAgreement>) -> OutId,
) {
    let w = world(2);
    let mut retried = false;
    for seed in 0..12u64 {
        let mut sim = auto_sim(&w, NetConfig::default(), 90 + seed);
        let a = agreed(&mut sim, &w);
        let before = sim.sides[receiver].journal.requests_in;
        sim.net.loss = 0.4;
        let id = send(&w, &mut sim, a);
        sim.run_for(600_000);
        let got = received(&sim, receiver).len();
        let sender = 1 - receiver;
        let outcome = outcomes(&sim, sender);
        // Six attempts at 40% loss each way may all fail: then it is reported so (and the
        // receiver may or may not have it, once).
        match outcome[..] {
            [(i, m, None)] => {
                assert_eq!((i, m), (id, message), "seed {seed}");
                assert_eq!(got, 1, "seed {seed}");
            }
            [(i, m, Some(ref code))] => {
                assert_eq!((i, m, code.as_str()), (id, message, "protocol.timeout"));
                assert!(got <= 1, "seed {seed}");
            }
            _ => panic!("seed {seed}: {outcome:?}"),
        }
        retried |= sim.sides[receiver].journal.requests_in - before > 1;
    }
    assert!(retried, "no seed made a retry");
}

#[test]
fn a_lost_termination_is_sent_again() {
    survives_loss("agreement_termination", PROVIDER, |w, sim, a| {
        let now = sim.now;
        let t = contract::terminate(&w.consumer, &a, now, None).unwrap();
        sim.sides[CONSUMER]
            .session
            .terminate_agreement(now, &a, t)
            .unwrap()
    });
}

// ---- usage reports ----

#[test]
fn the_consumer_reports_usage() {
    let w = world(2);
    let mut sim = auto_sim(&w, NetConfig::default(), 101);
    let a = agreed(&mut sim, &w);
    let now = sim.now;
    let bytes = signed_report(&w.consumer, a.id(), now);
    let id = sim.sides[CONSUMER]
        .session
        .send_usage_report(now, bytes.clone())
        .unwrap();
    sim.run_for(1000);
    let got = received(&sim, PROVIDER);
    let [Event::UsageReport { report }] = got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(report.envelope(), &bytes[..]);
    assert_eq!(report.report(), &report_of(&w.consumer, a.id(), now));
    assert_eq!(outcomes(&sim, CONSUMER), vec![(id, "usage_report", None)]);
    assert!(received(&sim, CONSUMER).is_empty());
}

#[test]
fn a_usage_report_must_be_the_consumers_for_an_agreement_with_the_provider() {
    let mut w = world(2);
    let third = SigningKey::from_seed(&[0x33; 32]);
    let elsewhere = agreement_with(&mut w, &third, 0x73);
    let mut sim = auto_sim(&w, NetConfig::default(), 102);
    let a = agreed(&mut sim, &w);
    sim.sides[PROVIDER].host.add_agreement(elsewhere.clone());
    let outsider = SigningKey::from_seed(&[0x44; 32]);
    let now = sim.now;
    let named_consumer_signed_by_outsider =
        tds_core::cose::sign(&outsider, &report_of(&w.consumer, a.id(), now)).unwrap();
    let mut backwards = report_of(&w.consumer, a.id(), now);
    backwards.from = now.saturating_add_millis(1);
    let cases = [
        (
            report_msg(signed_report(&outsider, a.id(), now)),
            "protocol.wrong_party",
        ),
        (
            report_msg(named_consumer_signed_by_outsider),
            "cose.kid_mismatch",
        ),
        (
            report_msg(signed_report(
                &w.consumer,
                Hash256::from_bytes([9; 32]),
                now,
            )),
            "agreement.unknown",
        ),
        (
            report_msg(signed_report(&w.consumer, elsewhere.id(), now)),
            "agreement.not_party",
        ),
        (
            report_msg(tds_core::cose::sign(&w.consumer, &backwards).unwrap()),
            "protocol.signed_invalid",
        ),
        (report_msg(vec![0; 9000]), "protocol.signed_too_large"),
    ];
    for (m, code) in cases {
        assert_eq!(inject(&mut sim, PROVIDER, m).as_deref(), Some(code));
    }
    // The provider sending as the consumer: the consumer refuses.
    let m = report_msg(signed_report(&w.provider, a.id(), now));
    assert_eq!(
        inject(&mut sim, CONSUMER, m).as_deref(),
        Some("agreement.wrong_role")
    );
    assert!(received(&sim, PROVIDER).is_empty());
    assert!(received(&sim, CONSUMER).is_empty());
    // The calls check the same before anything is sent.
    let s = &mut sim.sides[PROVIDER].session;
    let e = s
        .send_usage_report(now, signed_report(&w.provider, a.id(), now))
        .unwrap_err();
    assert_eq!(e.refusal.code, "agreement.wrong_role");
    let e = s
        .send_usage_report(now, signed_report(&w.consumer, a.id(), now))
        .unwrap_err();
    assert_eq!(e.refusal.code, "protocol.wrong_party");
    let s = &mut sim.sides[CONSUMER].session;
    let e = s
        .send_usage_report(
            now,
            signed_report(&w.consumer, Hash256::from_bytes([9; 32]), now),
        )
        .unwrap_err();
    assert_eq!(e.refusal.code, "agreement.unknown");
    assert!(sim.sides[CONSUMER].session.poll_transmit().is_none());
    assert!(sim.sides[PROVIDER].session.poll_transmit().is_none());
}

#[test]
fn a_duplicated_usage_report_is_acknowledged_and_reported_once() {
    let w = world(2);
    let mut sim = auto_sim(
        &w,
        NetConfig {
            duplicate: 1.0,
            ..NetConfig::default()
        },
        103,
    );
    let a = agreed(&mut sim, &w);
    let now = sim.now;
    let bytes = signed_report(&w.consumer, a.id(), now);
    let id = sim.sides[CONSUMER]
        .session
        .send_usage_report(now, bytes.clone())
        .unwrap();
    sim.run_for(1000);
    assert_eq!(received(&sim, PROVIDER).len(), 1);
    assert_eq!(outcomes(&sim, CONSUMER), vec![(id, "usage_report", None)]);
    // Injected again (a late copy): the same ack, no second event.
    assert_eq!(inject(&mut sim, PROVIDER, report_msg(bytes)), None);
    assert_eq!(received(&sim, PROVIDER).len(), 1);
}

#[test]
fn a_lost_usage_report_is_sent_again() {
    survives_loss("usage_report", PROVIDER, |w, sim, a| {
        let now = sim.now;
        let bytes = signed_report(&w.consumer, a.id(), now);
        sim.sides[CONSUMER]
            .session
            .send_usage_report(now, bytes)
            .unwrap()
    });
}

#[test]
fn an_undeliverable_report_is_reported_with_the_peers_reason() {
    let mut w = world(2);
    // An agreement with the provider only the consumer's host holds.
    let consumer = SigningKey::from_seed(&CONSUMER_SEED);
    let only_mine = agreement_with(&mut w, &consumer, 0x74);
    let mut sim = auto_sim(&w, NetConfig::default(), 104);
    sim.sides[CONSUMER].host.add_agreement(only_mine.clone());
    let now = sim.now;
    let id = sim.sides[CONSUMER]
        .session
        .send_usage_report(now, signed_report(&w.consumer, only_mine.id(), now))
        .unwrap();
    sim.run_for(1000);
    assert_eq!(
        outcomes(&sim, CONSUMER),
        vec![(id, "usage_report", Some("agreement.unknown".to_owned()))]
    );
    no_refused_event(&sim, CONSUMER);
    // Nothing gets through: given up after the configured attempts.
    let a = agreed(&mut sim, &w);
    sim.net.loss = 1.0;
    let now = sim.now;
    let id = sim.sides[CONSUMER]
        .session
        .send_usage_report(now, signed_report(&w.consumer, a.id(), now))
        .unwrap();
    sim.run_for(600_000);
    assert_eq!(
        outcomes(&sim, CONSUMER).last(),
        Some(&(id, "usage_report", Some("protocol.timeout".to_owned())))
    );
    assert!(received(&sim, PROVIDER).is_empty());
}

// ---- deletion receipts ----

#[test]
fn the_consumer_reports_a_deletion() {
    let w = world(2);
    let mut sim = auto_sim(&w, NetConfig::default(), 111);
    let a = agreed(&mut sim, &w);
    let now = sim.now;
    let bytes = signed_receipt(&w, &w.consumer, a.id(), now);
    let id = sim.sides[CONSUMER]
        .session
        .send_deletion_receipt(now, bytes.clone())
        .unwrap();
    sim.run_for(1000);
    let got = received(&sim, PROVIDER);
    let [Event::DeletionReceipt { receipt }] = got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(receipt.envelope(), &bytes[..]);
    assert_eq!(receipt.receipt(), &receipt_of(&w, &w.consumer, a.id(), now));
    assert_eq!(
        outcomes(&sim, CONSUMER),
        vec![(id, "deletion_receipt", None)]
    );
}

#[test]
fn a_deletion_receipt_must_be_the_consumers_for_the_agreements_asset() {
    let mut w = world(2);
    let third = SigningKey::from_seed(&[0x33; 32]);
    let elsewhere = agreement_with(&mut w, &third, 0x75);
    let mut sim = auto_sim(&w, NetConfig::default(), 112);
    let a = agreed(&mut sim, &w);
    sim.sides[PROVIDER].host.add_agreement(elsewhere.clone());
    let outsider = SigningKey::from_seed(&[0x44; 32]);
    let now = sim.now;
    let mut other_asset = receipt_of(&w, &w.consumer, a.id(), now);
    other_asset.asset = Hash256::from_bytes([8; 32]);
    let cases = [
        (
            receipt_msg(signed_receipt(&w, &outsider, a.id(), now)),
            "protocol.wrong_party",
        ),
        (
            receipt_msg(
                tds_core::cose::sign(&outsider, &receipt_of(&w, &w.consumer, a.id(), now)).unwrap(),
            ),
            "cose.kid_mismatch",
        ),
        (
            receipt_msg(signed_receipt(
                &w,
                &w.consumer,
                Hash256::from_bytes([9; 32]),
                now,
            )),
            "agreement.unknown",
        ),
        (
            receipt_msg(signed_receipt(&w, &w.consumer, elsewhere.id(), now)),
            "agreement.not_party",
        ),
        (
            receipt_msg(signed::sign_deletion_receipt(&w.consumer, &other_asset).unwrap()),
            "protocol.signed_mismatch",
        ),
    ];
    for (m, code) in cases {
        assert_eq!(inject(&mut sim, PROVIDER, m).as_deref(), Some(code));
    }
    let m = receipt_msg(signed_receipt(&w, &w.provider, a.id(), now));
    assert_eq!(
        inject(&mut sim, CONSUMER, m).as_deref(),
        Some("agreement.wrong_role")
    );
    assert!(received(&sim, PROVIDER).is_empty());
    assert!(received(&sim, CONSUMER).is_empty());
    let s = &mut sim.sides[CONSUMER].session;
    let e = s
        .send_deletion_receipt(
            now,
            signed::sign_deletion_receipt(&w.consumer, &other_asset).unwrap(),
        )
        .unwrap_err();
    assert_eq!(e.refusal.code, "protocol.signed_mismatch");
    let s = &mut sim.sides[PROVIDER].session;
    let e = s
        .send_deletion_receipt(now, signed_receipt(&w, &w.provider, a.id(), now))
        .unwrap_err();
    assert_eq!(e.refusal.code, "agreement.wrong_role");
}

#[test]
fn a_duplicated_deletion_receipt_is_acknowledged_and_reported_once() {
    let w = world(2);
    let mut sim = auto_sim(&w, NetConfig::default(), 113);
    let a = agreed(&mut sim, &w);
    let m = receipt_msg(signed_receipt(&w, &w.consumer, a.id(), NOW));
    for _ in 0..3 {
        assert_eq!(inject(&mut sim, PROVIDER, m.clone()), None);
    }
    assert_eq!(received(&sim, PROVIDER).len(), 1);
}

#[test]
fn a_lost_deletion_receipt_is_sent_again() {
    survives_loss("deletion_receipt", PROVIDER, |w, sim, a| {
        let now = sim.now;
        let bytes = signed_receipt(w, &w.consumer, a.id(), now);
        sim.sides[CONSUMER]
            .session
            .send_deletion_receipt(now, bytes)
            .unwrap()
    });
}

#[test]
fn a_cut_connection_delays_a_report_without_losing_it() {
    let w = world(2);
    let mut sim = auto_sim(&w, NetConfig::default(), 114);
    let a = agreed(&mut sim, &w);
    sim.cut();
    let now = sim.now;
    let id = sim.sides[CONSUMER]
        .session
        .send_deletion_receipt(now, signed_receipt(&w, &w.consumer, a.id(), now))
        .unwrap();
    sim.run_for(50);
    assert!(received(&sim, PROVIDER).is_empty());
    sim.heal();
    sim.run_for(60_000);
    assert_eq!(received(&sim, PROVIDER).len(), 1);
    assert_eq!(
        outcomes(&sim, CONSUMER),
        vec![(id, "deletion_receipt", None)]
    );
}

#[test]
fn usage_records_are_signed_by_either_party() {
    let w = world(2);
    let mut sim = auto_sim(&w, NetConfig::default(), 115);
    let a = agreed(&mut sim, &w);
    for key in [&w.provider, &w.consumer] {
        let record = signed::UsageRecord {
            agreement: a.id(),
            provider: w.provider.id(),
            consumer: w.consumer.id(),
            transfer: Some(signed::transfer_id(
                &a.id(),
                &tds_protocol::Pid::from_bytes([1; 16]),
            )),
            uses: 1,
            bytes: w.asset.commitment().size,
            amount: tds_policy::Amount(125_000),
            currency: "CNY".parse().unwrap(),
            time: sim.now,
            recorder: key.id(),
            recorder_key: key.public_key(),
        };
        let bytes = signed::sign_usage_record(key, &record).unwrap();
        let v = signed::verify_usage_record(&bytes, &key.public_key()).unwrap();
        assert_eq!(v.record(), &record);
        assert_eq!(v.id(), record.id().unwrap());
    }
}
