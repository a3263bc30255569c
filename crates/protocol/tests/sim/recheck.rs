//! The provider re-checks the agreement at every transfer start (termination, use count,
//! validity window), and timers end stalled processes.

use tds_core::time::DAY_MS;
use tds_manifest::PersonalInfo;
use tds_protocol::session::{Event, Mode, TransferContext, Usage};
use tds_protocol::sim::{NetConfig, Sim};
use tds_protocol::{NegotiationState, Refusal, TransferState};

use super::common::*;

/// A world whose offer carries `policy`, negotiated to an agreement; the transfer's
/// refusal code (or `None` if it started).
fn transfer_under(
    policy: &str,
    prepare: impl FnOnce(&mut Sim, tds_core::Hash256),
) -> Option<String> {
    transfer_in(world(2), policy, TransferContext::default(), prepare).map(|r| r.code)
}

/// The world's asset offered under `policy`.
fn offer_with(w: &World, policy: &str) -> Vec<u8> {
    tds_policy::contract::create_offer(
        &w.provider,
        &tds_policy::contract::Offer {
            asset: w.asset.verified.id().to_string().parse().unwrap(),
            provider: w.provider.id(),
            provider_key: w.provider.public_key(),
            policy: tds_policy::parse("o", policy).unwrap(),
            price: None,
            not_before: NOW,
            not_after: NOW.saturating_add_millis(30 * DAY_MS),
            licence: None,
        },
    )
    .unwrap()
}

/// [`transfer_under`] in world `w`, the consumer asking with `context`; the refusal.
fn transfer_in(
    mut w: World,
    policy: &str,
    context: TransferContext,
    prepare: impl FnOnce(&mut Sim, tds_core::Hash256),
) -> Option<Refusal> {
    w.offer = offer_with(&w, policy);
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
        .request_transfer(now, agreement, purpose(), None, context)
        .unwrap();
    sim.run_for(2000);
    let state = sim.sides[CONSUMER].session.transfer(t).unwrap().state;
    let refusal = sim.sides[CONSUMER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::Refused { refusal, .. } => Some(refusal.clone()),
            _ => None,
        });
    match refusal {
        Some(refusal) => {
            assert_eq!(state, TransferState::Terminated);
            Some(refusal)
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
        .request_transfer(now, agreement, purpose(), None, Default::default())
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

/// Processing inside China, or outside it with an export assessment (PIPL art. 38-40).
const INSIDE_CN_OR_ASSESSED: &str = "policy set;\n\npermit use\n  when purpose isA grid\n    and (spatial isPartOf CN or exportAssessmentRef eq present);\n";

fn context(location: Option<&str>, consent: Option<&str>, export: Option<&str>) -> TransferContext {
    TransferContext {
        location: location.map(|l| l.parse().unwrap()),
        consent_ref: consent.map(|c| c.parse().unwrap()),
        export_assessment_ref: export.map(|e| e.parse().unwrap()),
    }
}

#[test]
fn the_processing_location_is_checked_against_the_policy() {
    let run = |c| transfer_in(world(2), INSIDE_CN_OR_ASSESSED, c, |_, _| {});
    assert_eq!(run(context(Some("CN-SX"), None, None)), None);
    assert_eq!(run(context(Some("CN"), None, None)), None);
    // Outside the region without an export assessment: the permission is not granted,
    // and the reason names the location and the missing reference.
    let r = run(context(Some("US"), None, None)).expect("refused");
    assert_eq!(r.code, "policy.unmet.spatial", "{r:?}");
    assert!(r.reason.contains("spatial"), "{r:?}");
    assert!(r.reason.contains("US"), "{r:?}");
    assert!(r.reason.contains("exportAssessmentRef"), "{r:?}");
    // No location at all: the policy cannot tell, so no permission is granted.
    let r = run(context(None, None, None)).expect("refused");
    assert_eq!(r.code, "policy.unmet.spatial", "{r:?}");
    // Outside with an export assessment: permitted.
    assert_eq!(
        run(context(Some("US"), None, Some("pipl-assessment:2027/0007"))),
        None
    );
}

#[test]
fn personal_data_needs_a_consent_reference() {
    // Personal data only with consent; data without personal information needs none.
    let policy = "policy set;\n\npermit use\n  when purpose isA grid\n    and (personalInfo eq none or consentRef eq present);\n";
    let personal = || world_of(2, PersonalInfo::Personal);
    let r = transfer_in(personal(), policy, context(None, None, None), |_, _| {}).expect("refused");
    assert_eq!(r.code, "policy.unmet.personal_info", "{r:?}");
    assert!(r.reason.contains("personalInfo"), "{r:?}");
    assert!(r.reason.contains("consentRef"), "{r:?}");
    assert_eq!(
        transfer_in(
            personal(),
            policy,
            context(None, Some("consent:2027/0042"), None),
            |_, _| {}
        ),
        None
    );
    assert_eq!(
        transfer_in(world(2), policy, context(None, None, None), |_, _| {}),
        None
    );
}

#[test]
fn an_obtain_consent_duty_needs_a_consent_reference() {
    // The healthcare template's form: a duty the transfer can only meet with consent.
    let policy = "policy set;\n\npermit use\n  when purpose isA grid\n  duty obtain-consent(\"pipl-separate-consent\");\n";
    let personal = || world_of(2, PersonalInfo::Sensitive);
    let r = transfer_in(personal(), policy, context(None, None, None), |_, _| {}).expect("refused");
    assert_eq!(r.code, "policy.unmet.consent", "{r:?}");
    assert!(r.reason.contains("consent"), "{r:?}");
    assert_eq!(
        transfer_in(
            personal(),
            policy,
            context(None, Some("consent:2027/0042"), None),
            |_, _| {}
        ),
        None
    );
}

#[test]
fn the_context_is_kept_for_a_restart() {
    // A transfer permitted by its export assessment is suspended and resumed: the
    // provider re-checks at the restart with the context of the request.
    let mut w = world(2);
    w.offer = offer_with(&w, INSIDE_CN_OR_ASSESSED);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        59,
    );
    sim.sides[PROVIDER].serve = false;
    let agreement = agreed(&mut sim, &w);
    let now = sim.now;
    let t = sim.sides[CONSUMER]
        .session
        .request_transfer(
            now,
            agreement,
            purpose(),
            None,
            context(Some("US"), None, Some("pipl-assessment:2027/0007")),
        )
        .unwrap();
    sim.run_for(100);
    let now = sim.now;
    sim.sides[CONSUMER]
        .session
        .suspend_transfer(now, t, "transfer.paused", "later")
        .unwrap();
    sim.run_for(100);
    sim.sides[PROVIDER].serve = true;
    let now = sim.now;
    sim.sides[CONSUMER].session.resume_transfer(now, t).unwrap();
    sim.run_for(120_000);
    assert_eq!(
        sim.sides[CONSUMER].session.transfer(t).unwrap().state,
        TransferState::Completed
    );
}
