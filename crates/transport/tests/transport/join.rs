//! The admission path `tds-join/1`: one signed request per connection, nothing else,
//! size-capped and rate-limited.

use std::sync::{Arc, Mutex};

use crate::common::*;
use serde_bytes::ByteArray;
use tds_core::time::DAY_MS;
use tds_core::{ErrorCode as _, SigningKey};
use tds_identity::{Admission, Authority, Role, Sector};
use tds_protocol::frame::{self, FrameHeader, FrameType};
use tds_protocol::message::Hello;
use tds_protocol::Message;
use tds_transport::join::{AdmissionRequestMsg, JoinMessage, RateLimit};
use tds_transport::{AdmissionReply, AdmissionRequest, JoinConnection, JoinLimits, TransportError};

fn request(applicant: &SigningKey, time: u64) -> AdmissionRequest {
    AdmissionRequest {
        version: 1,
        applicant_key: applicant.public_key(),
        name: "Datong Wind Farm".into(),
        sectors: vec![Sector::POWER],
        roles: vec![Role::Provider],
        jurisdiction: "CN-SX".parse().unwrap(),
        not_before: t(T0),
        not_after: t(T0 + 365 * DAY_MS),
        time: t(time),
        nonce: ByteArray::new([5; 16]),
    }
}

/// An authority node serving tds-join/1: its handler admits every request it is given.
fn authority_node(world: &mut World, limits: JoinLimits) -> (Node, Arc<Mutex<Vec<String>>>) {
    let credential = world.admit(&key(2));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let issuing = Arc::new(Mutex::new(
        Authority::from_parts(key(100), world.authority.state().clone()).unwrap(),
    ));
    let handler = move |r: tds_transport::join::VerifiedAdmissionRequest| {
        log.lock().unwrap().push(r.request().name.clone());
        let q = r.request();
        let signed = issuing.lock().unwrap().admit(
            &Admission {
                subject_key: q.applicant_key,
                name: q.name.clone(),
                sectors: q.sectors.clone(),
                roles: q.roles.clone(),
                jurisdiction: q.jurisdiction.clone(),
                not_before: q.not_before,
                not_after: q.not_after,
            },
            q.time,
        );
        match signed {
            Ok(s) => AdmissionReply::Admitted(s.into_envelope()),
            Err(e) => AdmissionReply::Refused(tds_transport::error::refusal_of(&e)),
        }
    };
    let node = node_with(
        world.trust(),
        key(2),
        credential,
        Some(world.crl.clone()),
        move |b| b.admission(Arc::new(handler), limits),
    );
    (node, seen)
}

/// Connects applicant `n` (key seed) to the admission path.
async fn join(server: &Node, n: u8) -> JoinConnection {
    within(JoinConnection::connect(
        server.addr(),
        Arc::new(key(n)),
        &key(2).public_key(),
        &config(),
    ))
    .await
    .unwrap()
}

#[tokio::test]
async fn a_signed_request_gets_the_handlers_reply_and_a_second_is_refused() {
    let mut world = World::new();
    let (server, seen) = authority_node(&mut world, JoinLimits::default());
    let applicant = key(50);
    let conn = join(&server, 50).await;
    let signed = request(&applicant, T0).sign(&applicant).unwrap();
    let reply = within(conn.request(&signed)).await.unwrap();
    let AdmissionReply::Admitted(credential) = reply else {
        panic!("expected a credential, got {reply:?}");
    };
    // The credential the handler signed verifies for the applicant's key.
    let verified = world
        .trust()
        .read()
        .unwrap()
        .verify(&credential, t(T0))
        .unwrap();
    assert_eq!(verified.subject_key(), &applicant.public_key());
    assert_eq!(seen.lock().unwrap().as_slice(), ["Datong Wind Farm"]);

    // One request per connection.
    let e = within(conn.request(&signed)).await.unwrap_err();
    assert_eq!(e.peer_code(), Some("transport.join.one_request"), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn other_messages_are_refused() {
    let mut world = World::new();
    let (server, seen) = authority_node(&mut world, JoinLimits::default());
    let applicant = key(50);
    // A connector-protocol hello.
    let conn = join(&server, 50).await;
    let hello = frame::encode_control(&Message::Hello(Hello {
        versions: vec![1],
        credential: vec![1, 2, 3].into(),
        crl: None,
        agent: "x".into(),
    }))
    .unwrap();
    let reply = within(conn.exchange(&hello)).await.unwrap();
    match JoinMessage::decode_frame(&reply).unwrap() {
        JoinMessage::Error(r) => {
            assert_eq!(r.code, "transport.join.unexpected_message");
            assert!(r.reason.contains("hello"), "{}", r.reason);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A join message that is not a request.
    let conn = join(&server, 50).await;
    let admitted = JoinMessage::Admitted(tds_transport::join::AdmittedMsg {
        credential: vec![1].into(),
    })
    .encode_frame()
    .unwrap();
    let reply = within(conn.exchange(&admitted)).await.unwrap();
    assert!(matches!(
        JoinMessage::decode_frame(&reply).unwrap(),
        JoinMessage::Error(r) if r.code == "transport.join.unexpected_message"
    ));
    // A request signed by another key than the TLS key.
    let conn = join(&server, 50).await;
    let other = key(51);
    let signed = request(&other, T0).sign(&other).unwrap();
    let e = within(conn.request(&signed)).await.unwrap_err();
    assert_eq!(e.peer_code(), Some("transport.join.key_mismatch"));
    // A request from an hour ago.
    let conn = join(&server, 50).await;
    let old = request(&applicant, T0 - 3_600_000)
        .sign(&applicant)
        .unwrap();
    let e = within(conn.request(&old)).await.unwrap_err();
    assert_eq!(e.peer_code(), Some("transport.join.stale_request"));
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(
        server.first_refusal_code().await,
        "transport.join.unexpected_message"
    );
}

#[tokio::test]
async fn an_oversize_request_is_refused_on_its_header() {
    let mut world = World::new();
    let (server, seen) = authority_node(&mut world, JoinLimits::default());
    let applicant = key(50);
    let conn = join(&server, 50).await;
    let mut big = request(&applicant, T0);
    big.name = "x".repeat(100);
    let signed = big.sign(&applicant).unwrap();
    let mut frame = JoinMessage::AdmissionRequest(AdmissionRequestMsg {
        request: signed.into(),
    })
    .encode_frame()
    .unwrap();
    // Declare 16 KiB + 1 and send that many bytes.
    frame.resize(5 + 16 * 1024 + 1, 0);
    frame[..5].copy_from_slice(
        &FrameHeader {
            kind: FrameType::Control,
            len: 16 * 1024 + 1,
        }
        .to_bytes(),
    );
    let e = within(conn.exchange(&frame)).await;
    let code = match e {
        Ok(reply) => match JoinMessage::decode_frame(&reply).unwrap() {
            JoinMessage::Error(r) => r.code,
            other => panic!("expected a refusal, got {other:?}"),
        },
        Err(e) => e.peer_code().unwrap().to_owned(),
    };
    assert_eq!(code, "protocol.frame_too_large");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_rate_limit_refuses_the_request_after_the_burst() {
    let mut world = World::new();
    let limits = JoinLimits {
        per_source: RateLimit {
            burst: 3,
            per_minute: 1,
        },
        ..JoinLimits::default()
    };
    let (server, seen) = authority_node(&mut world, limits);
    for n in 60..63 {
        let a = key(n);
        let conn = join(&server, n).await;
        let signed = request(&a, T0).sign(&a).unwrap();
        assert!(within(conn.request(&signed)).await.is_ok());
    }
    let a = key(63);
    let conn = join(&server, 63).await;
    let signed = request(&a, T0).sign(&a).unwrap();
    let e = within(conn.request(&signed)).await.unwrap_err();
    assert_eq!(e.peer_code(), Some("transport.join.rate_limited"), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 3);
    // A minute later one more token is there.
    server.clock.advance(60_000);
    let conn = join(&server, 63).await;
    assert!(within(conn.request(&signed)).await.is_ok());
}

#[tokio::test]
async fn an_endpoint_without_an_admission_handler_does_not_offer_tds_join() {
    let mut world = World::new();
    let server = world.member(2);
    let e = tokio::time::timeout(
        STEP,
        JoinConnection::connect(
            server.addr(),
            Arc::new(key(50)),
            &key(2).public_key(),
            &config(),
        ),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(e, TransportError::Lost(_)),
        "TLS refuses the unknown ALPN: {e} ({})",
        e.code()
    );
}
