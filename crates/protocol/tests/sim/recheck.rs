//! The provider re-checks the agreement at every transfer start (termination, use count,
//! validity window), and timers end stalled processes.

use tds_core::time::DAY_MS;
use tds_protocol::session::{Event, Mode, Usage};
use tds_protocol::sim::{NetConfig, Sim};
use tds_protocol::{NegotiationState, TransferState};

use super::common::*;

/// A world whose offer carries `policy`, negotiated to an agreement; the transfer's
/// refusal code (or `None` if it started).
fn transfer_under(
    policy: &str,
    prepare: impl FnOnce(&mut Sim, tds_core::Hash256),
) -> Option<String> {
    let mut w = world(2);
    w.offer = tds_policy::contract::create_offer(
        &w.provider,
        &tds_policy::contract::Offer {
            asset: w.asset.verified.id().to_string().parse().unwrap(),
            provider: w.provider.id(),
            provider_key: w.provider.public_key(),
            policy: tds_policy::parse("o", policy).unwrap(),
            price: None,
            not_before: NOW,
            not_after: NOW.saturating_add_millis(30 * DAY_MS),
        },
    )
    .unwrap();
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        51,
    );
    let agreement = agreed(&mut sim, &w);
    prepare(&mut sim, agreement.id());
    let now = sim.now;
    let t = sim.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), None)
        .unwrap();
    sim.run_for(2000);
    let state = sim.sides[CONSUMER].session.transfer(t).unwrap().state;
    let refusal = sim.sides[CONSUMER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::Refused { refusal, .. } => Some(refusal.code.clone()),
            _ => None,
        });
    match refusal {
        Some(code) => {
            assert_eq!(state, TransferState::Terminated);
            Some(code)
        }
        None => {
            assert_eq!(state, TransferState::Completed);
            None
        }
    }
}

#[test]
fn a_live_agreement_transfers() {
    assert_eq!(transfer_under(POLICY, |_, _| {}), None);
}

#[test]
fn a_terminated_agreement_transfers_nothing() {
    let code = transfer_under(POLICY, |sim, id| sim.sides[PROVIDER].host.terminate(id));
    assert_eq!(code.as_deref(), Some("transfer.agreement_terminated"));
}

#[test]
fn the_use_count_is_enforced_at_the_start() {
    let policy = "policy set;\n\npermit use\n  when purpose isA grid\n    and count lt 3;\n";
    let ok = transfer_under(policy, |sim, id| {
        sim.sides[PROVIDER].host.set_usage(
            id,
            Usage {
                transfers: 1,
                bytes: 0,
            },
        )
    });
    // `count` is the number of this use: one use so far makes this the second.
    assert_eq!(ok, None);
    let code = transfer_under(policy, |sim, id| {
        sim.sides[PROVIDER].host.set_usage(
            id,
            Usage {
                transfers: 2,
                bytes: 0,
            },
        )
    });
    assert!(
        code.as_deref().is_some_and(|c| c.starts_with("policy.")),
        "{code:?}"
    );
}

#[test]
fn the_validity_window_is_enforced_at_the_start() {
    let policy =
        "policy set;\n\npermit use\n  when purpose isA grid\n    and dateTime lt 2027-01-20;\n";
    // NOW is 2027-01-15; ten days later the window has closed.
    assert_eq!(transfer_under(policy, |_, _| {}), None);
    let code = transfer_under(policy, |sim, _| {
        sim.now = sim.now.saturating_add_millis(10 * DAY_MS)
    });
    assert!(
        code.as_deref().is_some_and(|c| c.starts_with("policy.")),
        "{code:?}"
    );
}

#[test]
fn a_stalled_negotiation_is_terminated_by_its_timer() {
    let w = world(2);
    // The provider waits for a decision that never comes.
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Manual),
        NetConfig::default(),
        53,
    );
    let n = sim.sides[CONSUMER]
        .session
        .request_contract(NOW, &w.offer, None, purpose())
        .unwrap();
    let timeout = sim.sides[CONSUMER].session.config().negotiation_timeout_ms;
    sim.run_for(timeout + 60_000);
    assert_eq!(
        sim.sides[CONSUMER].session.negotiation(n).unwrap().state,
        NegotiationState::Terminated
    );
    for side in [CONSUMER, PROVIDER] {
        let code = sim.sides[side].journal.events.iter().find_map(|e| match e {
            Event::NegotiationTerminated { code, .. } => Some(code.clone()),
            _ => None,
        });
        assert_eq!(code.as_deref(), Some("negotiation.timeout"), "side {side}");
    }
}

#[test]
fn an_unanswered_request_is_given_up_after_its_attempts() {
    let w = world(2);
    let net = NetConfig {
        loss: 1.0,
        ..NetConfig::default()
    };
    let mut sim = sim(&w, config(Mode::Auto), config(Mode::Auto), net, 55);
    let n = sim.sides[CONSUMER]
        .session
        .request_contract(NOW, &w.offer, None, purpose())
        .unwrap();
    sim.run_for(120_000);
    assert_eq!(
        sim.sides[CONSUMER].session.negotiation(n).unwrap().state,
        NegotiationState::Terminated
    );
    let code = sim.sides[CONSUMER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::NegotiationTerminated { code, .. } => Some(code.clone()),
            _ => None,
        });
    assert_eq!(code.as_deref(), Some("protocol.timeout"));
    assert_eq!(sim.sides[PROVIDER].journal.requests_in, 0);
}

#[test]
fn a_transfer_left_suspended_is_terminated_by_its_timer() {
    let w = world(2);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        57,
    );
    sim.sides[PROVIDER].serve = false;
    let agreement = agreed(&mut sim, &w);
    let now = sim.now;
    let t = sim.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), None)
        .unwrap();
    sim.run_for(1000);
    let now = sim.now;
    sim.sides[CONSUMER]
        .session
        .suspend_transfer(now, t, "transfer.paused", "later")
        .unwrap();
    let limit = sim.sides[CONSUMER].session.config().suspended_timeout_ms;
    sim.run_for(limit / 2);
    assert_eq!(
        sim.sides[CONSUMER].session.transfer(t).unwrap().state,
        TransferState::Suspended
    );
    sim.run_for(limit / 2 + 60_000);
    assert_eq!(
        sim.sides[CONSUMER].session.transfer(t).unwrap().state,
        TransferState::Terminated
    );
    let code = sim.sides[CONSUMER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::TransferTerminated { code, .. } => Some(code.clone()),
            _ => None,
        });
    assert_eq!(code.as_deref(), Some("transfer.timeout"));
}
