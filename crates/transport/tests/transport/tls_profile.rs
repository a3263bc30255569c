//! The TLS profile: TLS 1.3 only, Ed25519 only, raw public keys, no resumption, no 0-RTT
//! (checked on the configurations and on in-memory handshakes).

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::ServerName;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConnection, HandshakeKind, ProtocolVersion, ServerConnection, SignatureScheme};
use tds_core::SigningKey;
use tds_transport::tls;

fn key(n: u8) -> Arc<SigningKey> {
    Arc::new(SigningKey::from_seed(&[n; 32]))
}

#[test]
fn resumption_and_early_data_are_off() {
    let client = tls::client_config(key(1), tls::ALPN).unwrap();
    assert!(!client.enable_early_data);
    assert!(!client.enable_sni);
    assert!(
        format!("{:?}", client.resumption).contains("NoClientSessionStorage"),
        "{:?}",
        client.resumption
    );
    let server = tls::server_config(key(2), &[tls::ALPN, tls::ALPN_JOIN]).unwrap();
    assert_eq!(server.send_tls13_tickets, 0);
    assert_eq!(server.max_early_data_size, 0);
    assert!(!server.ticketer.enabled());
    assert!(format!("{:?}", server.session_storage).contains("NoServerSessionStorage"));
    assert_eq!(
        server.alpn_protocols,
        vec![b"tds/1".to_vec(), b"tds-join/1".to_vec()]
    );
}

#[test]
fn only_tls13_suites_and_ed25519_are_offered() {
    let client = tls::client_config(key(1), tls::ALPN).unwrap();
    let server = tls::server_config(key(2), &[tls::ALPN]).unwrap();
    for provider in [client.crypto_provider(), server.crypto_provider()] {
        assert!(!provider.cipher_suites.is_empty());
        for suite in &provider.cipher_suites {
            assert_eq!(
                suite.version().version,
                ProtocolVersion::TLSv1_3,
                "{suite:?}"
            );
        }
    }
    let v = tls::PeerKeyVerifier;
    assert_eq!(
        ServerCertVerifier::supported_verify_schemes(&v),
        vec![SignatureScheme::ED25519]
    );
    assert_eq!(
        ClientCertVerifier::supported_verify_schemes(&v),
        vec![SignatureScheme::ED25519]
    );
    assert!(ServerCertVerifier::requires_raw_public_keys(&v));
    assert!(ClientCertVerifier::requires_raw_public_keys(&v));
    assert!(ClientCertVerifier::client_auth_mandatory(&v));
}

/// Runs a handshake between two in-memory connections.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) {
    let mut buf = Vec::new();
    for _ in 0..20 {
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
        }
        server.process_new_packets().unwrap();
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
        }
        client.process_new_packets().unwrap();
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());
}

#[test]
fn handshakes_exchange_raw_keys_and_never_resume() {
    let client_config = Arc::new(tls::client_config(key(1), tls::ALPN).unwrap());
    let server_config = Arc::new(tls::server_config(key(2), &[tls::ALPN]).unwrap());
    for _ in 0..2 {
        let mut client =
            ClientConnection::new(client_config.clone(), ServerName::try_from("tds").unwrap())
                .unwrap();
        let mut server = ServerConnection::new(server_config.clone()).unwrap();
        handshake(&mut client, &mut server);
        assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_3));
        // The second handshake with the same configurations is a full one again.
        assert_eq!(client.handshake_kind(), Some(HandshakeKind::Full));
        assert_eq!(server.handshake_kind(), Some(HandshakeKind::Full));
        let server_seen = client.peer_certificates().unwrap();
        assert_eq!(server_seen.len(), 1);
        assert_eq!(
            tls::parse_ed25519_spki(server_seen[0].as_ref()),
            Some(key(2).public_key())
        );
        assert_eq!(server_seen[0].as_ref().len(), tls::ED25519_SPKI_LEN);
        let client_seen = server.peer_certificates().unwrap();
        assert_eq!(
            tls::parse_ed25519_spki(client_seen[0].as_ref()),
            Some(key(1).public_key())
        );
        assert_eq!(client.alpn_protocol(), Some(&b"tds/1"[..]));
    }
}

#[test]
fn tls12_is_not_even_compiled_in() {
    // rustls' `tls12` feature is off in the workspace: no TLS 1.2 code to downgrade to.
    // This fails if some other crate's features turn it on.
    let versions: Vec<_> = rustls::ALL_VERSIONS.iter().map(|v| v.version).collect();
    assert_eq!(versions, vec![ProtocolVersion::TLSv1_3]);
}
