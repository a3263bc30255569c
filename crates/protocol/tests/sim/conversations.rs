//! Whole conversations in the simulation: negotiation and transfer on a clean network,
//! under loss, reordering and duplication, across cuts, and against a hostile peer.

use super::common::*;
use tds_protocol::session::{Event, Mode};
use tds_protocol::sim::NetConfig;
use tds_protocol::{NegotiationState, Role, TransferState};

/// Negotiates to FINALIZED and returns the consumer's agreement.
fn negotiate(
    sim: &mut tds_protocol::sim::Sim,
    w: &World,
) -> std::sync::Arc<tds_policy::contract::VerifiedAgreement> {
    let now = sim.now;
    let pid = sim.sides[CONSUMER]
        .session
        .request_contract(now, &w.offer, None, purpose())
        .unwrap();
    let ok = sim.run_until(600_000, |s| {
        s.sides[CONSUMER]
            .session
            .negotiation(pid)
            .is_some_and(|n| n.state == NegotiationState::Finalized)
            && s.sides[PROVIDER]
                .journal
                .events
                .iter()
                .any(|e| matches!(e, Event::Finalized { .. }))
    });
    assert!(
        ok,
        "negotiation did not finish: {:?}",
        sim.sides[CONSUMER].journal.events
    );
    sim.sides[CONSUMER]
        .session
        .negotiation(pid)
        .unwrap()
        .agreement
        .unwrap()
}

#[test]
fn negotiation_and_transfer_on_a_clean_network() {
    let w = world(4);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        1,
    );
    let agreement = negotiate(&mut sim, &w);
    let now = sim.now;
    let t = sim.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), None, Default::default())
        .unwrap();
    let ok = sim.run_until(600_000, |s| {
        s.sides[PROVIDER]
            .journal
            .events
            .iter()
            .any(|e| matches!(e, Event::TransferCompleted { .. }))
    });
    assert!(ok, "{:?}", sim.sides[CONSUMER].journal.events);
    let v = sim.sides[CONSUMER].session.transfer(t).unwrap();
    assert_eq!(v.state, TransferState::Completed);
    let mut got = Vec::new();
    for ((_, _), data) in &sim.sides[CONSUMER].journal.chunks {
        got.extend_from_slice(data);
    }
    assert_eq!(got, *w.data);
    let receipt = sim.sides[PROVIDER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::TransferCompleted {
                receipt: Some(r),
                role: Role::Provider,
                ..
            } => Some(r.clone()),
            _ => None,
        });
    let r = receipt.expect("the provider holds the consumer's receipt");
    assert!(r.receipt().complete);
    assert_eq!(r.receipt().bytes, w.data.len() as u64);
}

fn concat(sim: &tds_protocol::sim::Sim, pid: tds_protocol::Pid) -> Vec<u8> {
    let mut got = Vec::new();
    for ((p, _), data) in &sim.sides[CONSUMER].journal.chunks {
        if *p == pid {
            got.extend_from_slice(data);
        }
    }
    got
}

fn completed(sim: &tds_protocol::sim::Sim, pid: tds_protocol::Pid) -> bool {
    sim.sides[CONSUMER]
        .session
        .transfer(pid)
        .is_some_and(|t| t.state == TransferState::Completed)
        && sim.sides[PROVIDER].journal.events.iter().any(|e| {
            matches!(
                e,
                Event::TransferCompleted {
                    role: Role::Provider,
                    complete: true,
                    ..
                }
            )
        })
}

#[test]
fn negotiation_and_64_chunk_transfer_under_loss_reordering_and_duplication() {
    let w = world(64);
    let net = NetConfig {
        min_latency_ms: 1,
        max_latency_ms: 40,
        loss: 0.10,
        duplicate: 0.10,
    };
    for seed in [3, 4, 5] {
        let mut cfg = config(Mode::Auto);
        cfg.max_attempts = 12;
        cfg.request_timeout_ms = 2000;
        let mut sim = sim(&w, cfg.clone(), cfg, net.clone(), seed);
        let agreement = negotiate(&mut sim, &w);
        let now = sim.now;
        let t = sim.sides[CONSUMER]
            .session
            .request_transfer(now, agreement, purpose(), None, Default::default())
            .unwrap();
        assert!(sim.run_until(3_600_000, |s| completed(s, t)), "seed {seed}");
        assert_eq!(concat(&sim, t), *w.data, "seed {seed}");
        // The network did lose, reorder and duplicate.
        assert!(
            sim.dropped > 5 && sim.duplicated > 5,
            "seed {seed}: {} {}",
            sim.dropped,
            sim.duplicated
        );
        assert_eq!(sim.sides[CONSUMER].journal.requested_after_verified, 0);
        // Both sides agree on what was delivered, signed by the consumer.
        let r = sim.sides[PROVIDER]
            .journal
            .events
            .iter()
            .find_map(|e| match e {
                Event::TransferCompleted {
                    receipt: Some(r), ..
                } => Some(r.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(r.receipt().chunks, 64);
        assert_eq!(r.receipt().root, w.asset.verified.manifest().content.root);
    }
}

#[test]
fn transfer_cut_three_times_completes_without_sending_a_verified_chunk_again() {
    let w = world(64);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig {
            min_latency_ms: 1,
            max_latency_ms: 5,
            ..NetConfig::default()
        },
        9,
    );
    let agreement = negotiate(&mut sim, &w);
    let now = sim.now;
    let t = sim.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), None, Default::default())
        .unwrap();
    for cut in 1..=3u64 {
        let target = cut * 14;
        assert!(sim.run_until(600_000, |s| s.sides[CONSUMER]
            .session
            .transfer(t)
            .unwrap()
            .verified_chunks
            >= target));
        sim.cut();
        sim.run_for(1500);
        sim.heal();
    }
    assert!(sim.run_until(600_000, |s| completed(s, t)));
    assert_eq!(concat(&sim, t), *w.data);
    let c = &sim.sides[CONSUMER].journal;
    let p = &sim.sides[PROVIDER].journal;
    assert_eq!(
        c.requested_after_verified, 0,
        "a verified chunk was asked for again"
    );
    assert_eq!(
        p.served_after_verified, 0,
        "a verified chunk was sent again"
    );
    // Chunks lost in the cuts were sent again, the others once.
    let served: u32 = p.served.values().sum();
    assert!(served >= 64);
    assert_eq!(p.served.len(), 64);
}

#[test]
fn transfer_resumes_in_a_new_session_from_the_verified_set() {
    let w = world(32);
    let mut first = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        21,
    );
    let agreement = negotiate(&mut first, &w);
    let now = first.now;
    let t = first.sides[CONSUMER]
        .session
        .request_transfer(now, agreement.clone(), purpose(), None, Default::default())
        .unwrap();
    assert!(first.run_until(600_000, |s| s.sides[CONSUMER]
        .session
        .transfer(t)
        .unwrap()
        .verified_chunks
        >= 20));
    // The connection dies for good; the consumer keeps its verified set and chunks.
    first.cut();
    let state = first.sides[CONSUMER].session.verifier_state(t).unwrap();
    let before = first.sides[CONSUMER]
        .session
        .transfer(t)
        .unwrap()
        .verified_chunks;
    let kept = first.sides[CONSUMER].journal.chunks.len();
    assert!((20..32).contains(&before));

    let mut second = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        22,
    );
    second.now = first.now;
    second.sides[PROVIDER].host.add_agreement(agreement.clone());
    let now = second.now;
    let t2 = second.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), Some(state), Default::default())
        .unwrap();
    assert!(second.run_until(600_000, |s| completed(s, t2)));
    let served: u32 = second.sides[PROVIDER].journal.served.values().sum();
    assert_eq!(
        u64::from(served),
        32 - before,
        "only the missing chunks travel"
    );
    let v = second.sides[CONSUMER].session.transfer(t2).unwrap();
    assert_eq!(v.chunk_requests, 32 - before);
    assert_eq!(kept + second.sides[CONSUMER].journal.chunks.len(), 32);
}

#[test]
fn a_closed_connection_ends_each_live_transfer_on_both_sides_once() {
    let w = world(32);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        23,
    );
    let agreement = negotiate(&mut sim, &w);
    let now = sim.now;
    let t = sim.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), None, Default::default())
        .unwrap();
    assert!(sim.run_until(600_000, |s| s.sides[CONSUMER]
        .session
        .transfer(t)
        .unwrap()
        .verified_chunks
        >= 10));
    sim.cut();
    let (provider_pid, _) = *sim.sides[PROVIDER].journal.served.keys().next().unwrap();
    let verified = sim.sides[CONSUMER]
        .session
        .transfer(t)
        .unwrap()
        .verified_chunks;
    let now = sim.now;
    for (side, pid, role) in [
        (CONSUMER, t, Role::Consumer),
        (PROVIDER, provider_pid, Role::Provider),
    ] {
        let s = &mut sim.sides[side].session;
        while s.poll_event().is_some() {}
        s.handle_closed(now, "transport.timeout", "the idle connection");
        let ended: Vec<Event> = std::iter::from_fn(|| s.poll_event())
            .filter(|e| matches!(e, Event::TransferTerminated { .. }))
            .collect();
        assert_eq!(ended.len(), 1, "{ended:?}");
        let Some(Event::TransferTerminated {
            pid: p, by, code, ..
        }) = ended.first()
        else {
            unreachable!()
        };
        assert_eq!((*p, *by, code.as_str()), (pid, role, "transport.timeout"));
        assert_eq!(s.transfer(pid).unwrap().state, TransferState::Terminated);
        // Nothing is sent on a connection that is gone.
        assert!(s.poll_transmit().is_none());
        // An ended transfer is not ended again.
        s.handle_closed(now, "transport.timeout", "again");
        assert!(std::iter::from_fn(|| s.poll_event())
            .all(|e| !matches!(e, Event::TransferTerminated { .. })));
    }
    // The consumer's verified set survives the end (what the next transfer resumes).
    let state = sim.sides[CONSUMER].session.verifier_state(t).unwrap();
    let marked: u32 = state.verified.iter().map(|b| b.count_ones()).sum();
    assert_eq!(u64::from(marked), verified);
}
