//! The Eclipse DSP TCK (dsp-tck, DSP 2025-1) transfer process cases as simulation
//! tests: TP (the connector under test is the provider) and TP_C (it is the consumer),
//! including 02-04, which the TCK ships disabled. `spec/protocol.md` §9 maps them.

use serde_bytes::ByteBuf;
use tds_protocol::message::{
    TransferCompletionMsg, TransferResumeMsg, TransferStartMsg, TransferStopMsg,
};
use tds_protocol::session::{Event, Mode};
use tds_protocol::sim::{NetConfig, Sim};
use tds_protocol::{Message, Pid, Role, TransferState as S};

use super::common::*;

struct X {
    w: World,
    sim: Sim,
    /// The consumer's process id.
    c: Pid,
    /// The provider's process id.
    p: Pid,
}

/// An agreement (negotiated in auto mode), then a transfer request the provider (now in
/// manual mode) holds.
fn requested() -> X {
    let w = world(8);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        11,
    );
    let agreement = agreed(&mut sim, &w);
    for side in [CONSUMER, PROVIDER] {
        let mut c = sim.sides[side].session.config().clone();
        c.provider_mode = Mode::Manual;
        c.consumer_mode = Mode::Manual;
        sim.sides[side].session.set_config(c);
    }
    let now = sim.now;
    let c = sim.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), None, Default::default())
        .unwrap();
    sim.run_for(1000);
    let p = sim.sides[PROVIDER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::TransferRequested { pid, .. } => Some(*pid),
            _ => None,
        })
        .expect("the provider holds the request");
    let x = X { w, sim, c, p };
    assert_eq!(states(&x), (S::Requested, S::Requested));
    x
}

fn states(x: &X) -> (S, S) {
    (
        x.sim.sides[CONSUMER].session.transfer(x.c).unwrap().state,
        x.sim.sides[PROVIDER].session.transfer(x.p).unwrap().state,
    )
}

fn settle(x: &mut X) {
    x.sim.run_for(1000);
}

fn pid(x: &X, side: usize) -> Pid {
    if side == CONSUMER {
        x.c
    } else {
        x.p
    }
}

fn start(x: &mut X) {
    let now = x.sim.now;
    x.sim.sides[PROVIDER]
        .session
        .start_transfer(now, x.p)
        .unwrap();
    settle(x);
    assert_eq!(states(x), (S::Started, S::Started));
}

fn suspend(x: &mut X, side: usize) {
    let now = x.sim.now;
    let p = pid(x, side);
    x.sim.sides[side]
        .session
        .suspend_transfer(now, p, "transfer.paused", "the TCK pauses")
        .unwrap();
    settle(x);
    assert_eq!(states(x), (S::Suspended, S::Suspended));
}

fn restart(x: &mut X, side: usize) {
    let now = x.sim.now;
    let p = pid(x, side);
    x.sim.sides[side].session.resume_transfer(now, p).unwrap();
    settle(x);
    assert_eq!(states(x), (S::Started, S::Started));
}

fn complete(x: &mut X, side: usize) {
    let now = x.sim.now;
    let p = pid(x, side);
    x.sim.sides[side].session.complete_transfer(now, p).unwrap();
    settle(x);
    assert_eq!(states(x), (S::Completed, S::Completed));
    if side == CONSUMER {
        // The provider holds the consumer's signed receipt.
        let receipt = x.sim.sides[PROVIDER].journal.events.iter().any(|e| {
            matches!(
                e,
                Event::TransferCompleted {
                    role: Role::Provider,
                    receipt: Some(_),
                    ..
                }
            )
        });
        assert!(receipt);
    }
}

fn terminate(x: &mut X, side: usize) {
    let now = x.sim.now;
    let p = pid(x, side);
    x.sim.sides[side]
        .session
        .terminate_transfer(now, p, "transfer.cancelled", "the TCK ends it")
        .unwrap();
    settle(x);
    assert_eq!(states(x), (S::Terminated, S::Terminated));
    let other = 1 - side;
    assert!(x.sim.sides[other].journal.events.iter().any(|e| {
        matches!(e, Event::TransferTerminated { code, .. } if code == "transfer.cancelled")
    }));
}

fn stop(x: &X) -> TransferStopMsg {
    TransferStopMsg {
        provider_pid: x.p,
        consumer_pid: x.c,
        code: "transfer.paused".into(),
        reason: None,
    }
}

fn completion(x: &X) -> Message {
    Message::TransferCompletion(TransferCompletionMsg {
        provider_pid: x.p,
        consumer_pid: x.c,
        receipt: None,
    })
}

fn refused(x: &mut X, to: usize, m: Message) {
    let before = states(x);
    let code = inject(&mut x.sim, to, m);
    assert_eq!(code.as_deref(), Some("transfer.invalid_transition"));
    settle(x);
    assert_eq!(states(x), before);
}

// ---- TP: the connector under test is the provider ----

#[test]
fn tp_01_01_started_provider_terminates() {
    let mut x = requested();
    start(&mut x);
    terminate(&mut x, PROVIDER);
}

#[test]
fn tp_01_02_started_provider_completes() {
    let mut x = requested();
    start(&mut x);
    complete(&mut x, PROVIDER);
}

#[test]
fn tp_01_03_started_provider_suspends_then_terminates() {
    let mut x = requested();
    start(&mut x);
    suspend(&mut x, PROVIDER);
    terminate(&mut x, PROVIDER);
}

#[test]
fn tp_01_04_started_suspended_restarted_completed_by_provider() {
    let mut x = requested();
    start(&mut x);
    suspend(&mut x, PROVIDER);
    restart(&mut x, PROVIDER);
    complete(&mut x, PROVIDER);
}

#[test]
fn tp_01_05_requested_provider_terminates() {
    let mut x = requested();
    terminate(&mut x, PROVIDER);
}

#[test]
fn tp_02_01_started_consumer_terminates() {
    let mut x = requested();
    start(&mut x);
    terminate(&mut x, CONSUMER);
}

#[test]
fn tp_02_02_started_consumer_completes() {
    let mut x = requested();
    start(&mut x);
    complete(&mut x, CONSUMER);
}

#[test]
fn tp_02_03_started_consumer_suspends_then_terminates() {
    let mut x = requested();
    start(&mut x);
    suspend(&mut x, CONSUMER);
    terminate(&mut x, CONSUMER);
}

#[test]
fn tp_02_04_started_consumer_suspends_restarts_completes() {
    let mut x = requested();
    start(&mut x);
    suspend(&mut x, CONSUMER);
    restart(&mut x, CONSUMER);
    complete(&mut x, CONSUMER);
}

#[test]
fn tp_02_05_requested_consumer_terminates() {
    let mut x = requested();
    settle(&mut x);
    // The provider (manual) did not start on its own.
    assert_eq!(states(&x), (S::Requested, S::Requested));
    terminate(&mut x, CONSUMER);
}

#[test]
fn tp_03_01_completion_while_requested_is_refused() {
    let mut x = requested();
    let m = completion(&x);
    refused(&mut x, PROVIDER, m);
}

#[test]
fn tp_03_02_suspension_while_requested_is_refused() {
    let mut x = requested();
    let m = Message::TransferSuspension(stop(&x));
    refused(&mut x, PROVIDER, m);
}

#[test]
fn tp_03_03_completion_while_suspended_is_refused() {
    let mut x = requested();
    start(&mut x);
    suspend(&mut x, CONSUMER);
    let m = completion(&x);
    refused(&mut x, PROVIDER, m);
}

#[test]
fn tp_03_04_start_after_terminated_is_refused() {
    let mut x = requested();
    start(&mut x);
    terminate(&mut x, CONSUMER);
    let m = Message::TransferResume(TransferResumeMsg {
        provider_pid: x.p,
        consumer_pid: x.c,
    });
    refused(&mut x, PROVIDER, m);
}

#[test]
fn tp_03_05_suspension_after_terminated_is_refused() {
    let mut x = requested();
    start(&mut x);
    terminate(&mut x, CONSUMER);
    let m = Message::TransferSuspension(stop(&x));
    refused(&mut x, PROVIDER, m);
}

#[test]
fn tp_03_06_completion_after_terminated_is_refused() {
    let mut x = requested();
    start(&mut x);
    terminate(&mut x, CONSUMER);
    let m = completion(&x);
    refused(&mut x, PROVIDER, m);
}

// ---- TP_C: the connector under test is the consumer ----

#[test]
fn tp_c_01_01_started_provider_terminates() {
    let mut x = requested();
    start(&mut x);
    terminate(&mut x, PROVIDER);
}

#[test]
fn tp_c_01_02_started_provider_completes() {
    let mut x = requested();
    start(&mut x);
    complete(&mut x, PROVIDER);
}

#[test]
fn tp_c_01_03_started_provider_suspends_then_terminates() {
    let mut x = requested();
    start(&mut x);
    suspend(&mut x, PROVIDER);
    terminate(&mut x, PROVIDER);
}

#[test]
fn tp_c_01_04_started_suspended_restarted_completed_by_provider() {
    let mut x = requested();
    start(&mut x);
    suspend(&mut x, PROVIDER);
    restart(&mut x, PROVIDER);
    complete(&mut x, PROVIDER);
}

#[test]
fn tp_c_01_05_requested_provider_terminates() {
    let mut x = requested();
    terminate(&mut x, PROVIDER);
}

#[test]
fn tp_c_02_01_started_consumer_terminates() {
    let mut x = requested();
    start(&mut x);
    terminate(&mut x, CONSUMER);
}

#[test]
fn tp_c_02_02_started_consumer_completes() {
    let mut x = requested();
    start(&mut x);
    complete(&mut x, CONSUMER);
}

#[test]
fn tp_c_02_03_started_consumer_suspends_then_terminates() {
    let mut x = requested();
    start(&mut x);
    suspend(&mut x, CONSUMER);
    terminate(&mut x, CONSUMER);
}

#[test]
fn tp_c_02_04_started_consumer_suspends_restarts_completes() {
    let mut x = requested();
    start(&mut x);
    suspend(&mut x, CONSUMER);
    restart(&mut x, CONSUMER);
    complete(&mut x, CONSUMER);
}

#[test]
fn tp_c_02_05_requested_consumer_terminates() {
    let mut x = requested();
    terminate(&mut x, CONSUMER);
}

#[test]
fn tp_c_03_01_completion_while_requested_is_refused() {
    let mut x = requested();
    let m = completion(&x);
    refused(&mut x, CONSUMER, m);
}

#[test]
fn tp_c_03_02_suspension_while_requested_is_refused() {
    let mut x = requested();
    let m = Message::TransferSuspension(stop(&x));
    refused(&mut x, CONSUMER, m);
}

#[test]
fn tp_c_03_03_completion_while_suspended_is_refused() {
    let mut x = requested();
    start(&mut x);
    suspend(&mut x, PROVIDER);
    let m = completion(&x);
    refused(&mut x, CONSUMER, m);
}

fn start_message(x: &X) -> Message {
    Message::TransferStart(TransferStartMsg {
        provider_pid: x.p,
        consumer_pid: x.c,
        manifest: ByteBuf::from(x.w.manifest.clone()),
    })
}

#[test]
fn tp_c_03_04_start_after_terminated_is_refused() {
    let mut x = requested();
    start(&mut x);
    terminate(&mut x, PROVIDER);
    let m = start_message(&x);
    refused(&mut x, CONSUMER, m);
}

#[test]
fn tp_c_03_05_suspension_after_terminated_is_refused() {
    let mut x = requested();
    start(&mut x);
    terminate(&mut x, PROVIDER);
    let m = Message::TransferSuspension(stop(&x));
    refused(&mut x, CONSUMER, m);
}

#[test]
fn tp_c_03_06_completion_after_terminated_is_refused() {
    let mut x = requested();
    start(&mut x);
    terminate(&mut x, PROVIDER);
    let m = completion(&x);
    refused(&mut x, CONSUMER, m);
}
