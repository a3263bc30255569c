//! The hello: who passes, who is refused and with which reason code, and revocation
//! during a session.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use tds_core::time::DAY_MS;
use tds_core::ErrorCode as _;
use tds_identity::ParticipantId;
use tds_protocol::frame::{self, Frame};
use tds_protocol::message::{Hello, VERSIONS};
use tds_protocol::Message;
use tds_transport::{close, tls, Closer, TransportError};

#[tokio::test]
async fn valid_credentials_pass_and_both_sides_see_each_other() {
    let mut world = World::new();
    let (a, b) = (key(1), key(2));
    let (ca, cb) = (world.admit(&a), world.admit(&b));
    let server = node(&world, b, cb);
    let client = node(&world, a, ca);
    let (c, s) = pair(&client, &server).await;
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.peer_id(), ParticipantId::of(&key(2).public_key()));
    assert_eq!(s.peer_id(), ParticipantId::of(&key(1).public_key()));
    assert_eq!(c.peer().name(), "Test Member");
    assert!(c.peer().revocation_checked() && s.peer().revocation_checked());
    assert_eq!(c.version(), *VERSIONS.last().unwrap());
    assert_eq!(s.version(), c.version());
    assert_eq!(server.endpoint.live_connections(), 1);
    assert_eq!(client.endpoint.live_connections(), 1);
    assert!(server.refused().is_empty());
}

/// Connects and returns the code the client was refused with and the code the server
/// observed.
async fn refused_codes(client: &Node, server: &Node) -> (String, String) {
    let e = within(client.endpoint.connect(server.addr()))
        .await
        .unwrap_err();
    let accepted = tokio::time::timeout(Duration::from_millis(100), server.endpoint.accept()).await;
    assert!(
        accepted.is_err(),
        "a refused connection must not be accepted"
    );
    let told = e
        .peer_code()
        .unwrap_or_else(|| panic!("no refusal from the server: {e}"))
        .to_owned();
    (told, server.first_refusal_code().await)
}

#[tokio::test]
async fn unknown_authority_is_refused() {
    let mut world = World::new();
    let mut other = World::with_key(key(101));
    let server = world.member(2);
    let client = node(&world, key(1), other.admit(&key(1)));
    let (told, seen) = refused_codes(&client, &server).await;
    assert_eq!(told, "identity.untrusted_signer");
    assert_eq!(seen, "identity.untrusted_signer");
}

#[tokio::test]
async fn expired_credential_is_refused() {
    let mut world = World::new();
    let server = world.member(2);
    // Valid for one day from T0 - 1 day: ends exactly at T0, the clocks' time.
    let short = world.admit_for(&key(1), 1);
    let client = node(&world, key(1), short);
    let (told, seen) = refused_codes(&client, &server).await;
    assert_eq!(told, "identity.expired");
    assert_eq!(seen, "identity.expired");
}

#[tokio::test]
async fn revoked_credential_is_refused() {
    let mut world = World::new();
    let server_cred = world.admit(&key(2));
    let client_cred = world.admit(&key(1)); // serial 2
    world.revoke(2, T0);
    let server = node(&world, key(2), server_cred);
    let client = node(&world, key(1), client_cred);
    let (told, seen) = refused_codes(&client, &server).await;
    assert_eq!(told, "identity.revoked");
    assert_eq!(seen, "identity.revoked");
}

#[tokio::test]
async fn stale_revocation_list_is_refused() {
    let mut world = World::new();
    let server = world.member(2);
    let client = world.member(1);
    // The server's clock is past the list's next_update; nobody has a newer list.
    server.clock.advance(DAY_MS + 1);
    let (told, seen) = refused_codes(&client, &server).await;
    assert_eq!(told, "identity.stale_revocation_list");
    assert_eq!(seen, "identity.stale_revocation_list");
}

#[tokio::test]
async fn a_client_refuses_a_server_it_cannot_verify() {
    let mut world = World::new();
    let mut other = World::with_key(key(101));
    let server = node(&world, key(2), other.admit(&key(2)));
    let client = world.member(1);
    let e = within(client.endpoint.connect(server.addr()))
        .await
        .unwrap_err();
    assert!(matches!(e, TransportError::Hello(_)), "{e}");
    assert_eq!(e.code(), "identity.untrusted_signer");
}

#[tokio::test]
async fn connect_to_refuses_another_participant_before_showing_the_credential() {
    let mut world = World::new();
    let server = world.member(2);
    let client = world.member(1);
    let wrong = ParticipantId::of(&key(3).public_key());
    let e = within(client.endpoint.connect_to(server.addr(), wrong))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "transport.hello.unexpected_peer");
    // The server saw no hello: the connection closed before it.
    assert_eq!(server.first_refusal_code().await, "transport.closed");
    let right = ParticipantId::of(&key(2).public_key());
    let (c, s) = within(async {
        tokio::join!(
            client.endpoint.connect_to(server.addr(), right),
            server.endpoint.accept()
        )
    })
    .await;
    assert_eq!(c.unwrap().peer_id(), right);
    assert!(s.is_ok());
}

/// A client that speaks below the endpoint API: TLS with its own key, then whatever hello
/// it likes.
async fn raw_hello(server: &Node, tls_key: tds_core::SigningKey, hello: Message) -> Message {
    let tls = tls::client_config(Arc::new(tls_key), tls::ALPN).unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let ep = quinn::Endpoint::client(local()).unwrap();
    let conn = within(async {
        ep.connect_with(
            quinn::ClientConfig::new(Arc::new(quic)),
            server.addr(),
            "tds",
        )
        .unwrap()
        .await
    })
    .await
    .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame::encode_control(&hello).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    let reply = within(recv.read_to_end(1 << 20)).await.unwrap();
    match frame::decode(&reply).unwrap() {
        Frame::Control(m) => m,
        Frame::Data(..) => panic!("data frame in answer to a hello"),
    }
}

fn hello(credential: Vec<u8>, versions: Vec<u64>) -> Message {
    Message::Hello(Hello {
        versions,
        credential: credential.into(),
        crl: None,
        agent: "test".into(),
    })
}

#[tokio::test]
async fn a_credential_for_another_key_than_the_tls_key_is_refused() {
    let mut world = World::new();
    let server = world.member(2);
    // Key 3 holds a valid credential; key 1 presents it in its hello.
    let stolen = world.admit(&key(3));
    let reply = raw_hello(&server, key(1), hello(stolen, VERSIONS.to_vec())).await;
    match reply {
        Message::Error(r) => assert_eq!(r.code, "transport.hello.key_mismatch", "{r:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        server.first_refusal_code().await,
        "transport.hello.key_mismatch"
    );
}

#[tokio::test]
async fn no_common_version_and_other_first_messages_are_refused() {
    let mut world = World::new();
    let server = world.member(2);
    let cred = world.admit(&key(1));
    let reply = raw_hello(&server, key(1), hello(cred, vec![99])).await;
    assert!(
        matches!(&reply, Message::Error(r) if r.code == "protocol.no_common_version"),
        "{reply:?}"
    );
    let ack = Message::Ack(tds_protocol::message::Ack {
        pid: None,
        state: None,
    });
    let reply = raw_hello(&server, key(1), ack).await;
    assert!(
        matches!(&reply, Message::Error(r) if r.code == "transport.hello.unexpected_message"),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_newer_revocation_list_in_a_hello_is_applied() {
    let mut world = World::new();
    let server_cred = world.admit(&key(2));
    let client_cred = world.admit(&key(1));
    let server = node(&world, key(2), server_cred);
    world.revoke(1, T0); // serial 1 is the server's own credential
    let fresh = world.crl.clone();
    let client = node_with(world.trust(), key(1), client_cred, Some(fresh), |b| b);
    // The server learns the new list from the client's hello; then the client refuses
    // the server, whose credential that list revokes.
    let e = within(client.endpoint.connect(server.addr()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "identity.revoked");
    let issuer = world.authority.id();
    let seq = server
        .trust
        .read()
        .unwrap()
        .revocation_list(&issuer)
        .unwrap()
        .sequence();
    assert_eq!(seq, 2);
}

#[tokio::test]
async fn revocation_during_a_session_closes_the_connection_with_the_reason() {
    let mut world = World::new();
    let server_cred = world.admit(&key(2));
    let client_cred = world.admit(&key(1)); // serial 2
    let server = node(&world, key(2), server_cred);
    let client = node(&world, key(1), client_cred);
    let (c, s) = pair(&client, &server).await;
    let (c, s) = (c.unwrap(), s.unwrap());

    let crl = world.revoke(2, T0 + 1000);
    let outcome = server.endpoint.apply_revocation_list(&crl).unwrap();
    assert_eq!(outcome.closed, 1);
    assert_eq!(outcome.sequence, 2);

    match within(c.closed()).await {
        TransportError::Closed {
            by: Closer::Peer,
            close_code,
            refusal,
        } => {
            assert_eq!(close_code, u64::from(close::REVOKED));
            assert_eq!(refusal.code, "identity.revoked");
            assert!(refusal.reason.contains("serial 2"), "{}", refusal.reason);
        }
        other => panic!("expected a close by the peer, got {other}"),
    }
    match within(s.closed()).await {
        TransportError::Closed {
            by: Closer::Local,
            refusal,
            ..
        } => assert_eq!(refusal.code, "identity.revoked"),
        other => panic!("expected our own close, got {other}"),
    }
    // Requests on the closed connection fail with the same reason.
    let e = c
        .request(&Message::CheckpointRequest(
            tds_protocol::message::CheckpointRequestMsg { since: None },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.peer_code(), Some("identity.revoked"));
    within(async {
        while server.endpoint.live_connections() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_sends_no_hello_is_closed_at_the_hello_timeout() {
    let mut world = World::new();
    let credential = world.admit(&key(2));
    let server = node_with(
        world.trust(),
        key(2),
        credential,
        Some(world.crl.clone()),
        |b| {
            b.config(tds_transport::TransportConfig {
                hello_timeout: Duration::from_millis(300),
                ..config()
            })
        },
    );
    let tls = tls::client_config(Arc::new(key(1)), tls::ALPN).unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let ep = quinn::Endpoint::client(local()).unwrap();
    let conn = within(async {
        ep.connect_with(
            quinn::ClientConfig::new(Arc::new(quic)),
            server.addr(),
            "tds",
        )
        .unwrap()
        .await
    })
    .await
    .unwrap();
    let e = TransportError::from(within(conn.closed()).await);
    assert_eq!(e.peer_code(), Some("transport.timeout"), "{e}");
    assert_eq!(server.first_refusal_code().await, "transport.timeout");
}

/// The worked hello frame in spec/transport.md §4 is what the code encodes.
#[test]
fn the_spec_hello_example_is_what_the_code_sends() {
    let m = Message::Hello(Hello {
        versions: vec![1],
        credential: vec![0xc0, 0xde].into(),
        crl: Some(vec![0xc7, 0x1a].into()),
        agent: "tds-transport/0.1.0".into(),
    });
    let bytes = frame::encode_control(&m).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let spec = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/transport.md"
    ))
    .unwrap();
    let flat: String = spec.split_whitespace().collect();
    assert!(
        flat.contains(&hex),
        "spec/transport.md §4 should show {hex}"
    );
}

#[tokio::test]
async fn before_the_hello_a_peer_gets_one_stream() {
    let mut world = World::new();
    let server = world.member(2);
    let tls = tls::client_config(Arc::new(key(1)), tls::ALPN).unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let ep = quinn::Endpoint::client(local()).unwrap();
    let conn = within(async {
        ep.connect_with(
            quinn::ClientConfig::new(Arc::new(quic)),
            server.addr(),
            "tds",
        )
        .unwrap()
        .await
    })
    .await
    .unwrap();
    let (mut first, _) = conn.open_bi().await.unwrap();
    first.write_all(&[0]).await.unwrap(); // a frame begins; the hello is not complete
    let second = tokio::time::timeout(Duration::from_millis(200), conn.open_bi()).await;
    assert!(second.is_err(), "a second stream before the hello");
}
