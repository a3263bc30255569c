//! Peers that cannot show a good membership: an expired, revoked, foreign or tampered
//! credential, one that is another key's, a provider whose revocation list went stale.
//! The hello is refused with the failed check's code, the provider raises an alert
//! (`peer_revoked` for a revoked serial, `denial` otherwise; not logged: the peer is not
//! authenticated), and it goes on serving members in good standing.

use std::sync::Arc;

use tds_connector::AlertKind;
use tds_core::time::{ManualClock, DAY_MS};
use tds_core::{Clock, SigningKey};
use tds_identity::Sector;
use tds_protocol::frame::{self, Frame};
use tds_protocol::message::{Hello, VERSIONS};
use tds_protocol::Message;
use tds_transport::tls;

use crate::common::*;

/// A hello with `credential` over TLS with `key`, hand-made (a real endpoint refuses to
/// present a credential that is not its key's); the provider's answer.
async fn raw_hello(
    addr: std::net::SocketAddr,
    key: SigningKey,
    credential: Vec<u8>,
) -> Res<Message> {
    let tls = tls::client_config(Arc::new(key), tls::ALPN)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let conn = within(
        "the TLS handshake",
        ep.connect_with(quinn::ClientConfig::new(Arc::new(quic)), addr, "tds")?,
    )
    .await??;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = Message::Hello(Hello {
        versions: VERSIONS.to_vec(),
        credential: credential.into(),
        crl: None,
        agent: "attacker".into(),
    });
    send.write_all(&frame::encode_control(&hello)?).await?;
    send.finish()?;
    let reply = within("the hello's answer", recv.read_to_end(1 << 20)).await??;
    match frame::decode(&reply)? {
        Frame::Control(m) => Ok(m),
        Frame::Data(..) => Err("a data frame in answer to a hello".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused_at_the_hello_and_raised_as_alerts() -> Res {
    let mut s = Scene::new(RESEARCH).await?;
    let addr = s.addr()?;
    let now = s.space.now;
    // Expired yesterday.
    let expired = s.space.member_valid(
        30,
        Sector::FINANCE,
        "CN-SX",
        tds_core::Timestamp::from_millis(now.as_millis() - 10 * DAY_MS),
        tds_core::Timestamp::from_millis(now.as_millis() - DAY_MS),
    )?;
    // Revoked, and the provider holds the list that says so.
    let revoked = s.space.member(31, Sector::FINANCE, "CN-SX")?;
    let crl = s.space.revoke(revoked.serial)?;
    s.provider.apply_revocation_list(&crl)?;
    // Admitted by an authority the provider does not trust.
    let mut elsewhere = Space::with_authority_seed(91)?;
    let foreign = elsewhere.member(32, Sector::FINANCE, "CN-SX")?;
    // The bank's credential with its sector changed to weather: claims another sector.
    let claimed = {
        let mut c = s.bank.credential.clone();
        let at = c
            .windows(7)
            .position(|w| w == b"finance")
            .ok_or("no sector in the credential")?;
        c[at..at + 7].copy_from_slice(b"weather");
        c
    };
    // (what, TLS key seed, credential, code, alert). Seed 33 holds no credential: it
    // presents the bank's genuine one.
    let cases = vec![
        (
            "expired",
            30,
            expired.credential.clone(),
            "identity.expired",
            AlertKind::Denial,
        ),
        (
            "revoked",
            31,
            revoked.credential.clone(),
            "identity.revoked",
            AlertKind::PeerRevoked,
        ),
        (
            "unknown authority",
            32,
            foreign.credential.clone(),
            "identity.untrusted_signer",
            AlertKind::Denial,
        ),
        (
            "another key's",
            33,
            s.bank.credential.clone(),
            "transport.hello.key_mismatch",
            AlertKind::Denial,
        ),
        (
            "another sector claimed",
            12,
            claimed,
            "cose.bad_signature",
            AlertKind::Denial,
        ),
    ];
    for (what, seed, credential, want, kind) in cases {
        let reply = raw_hello(addr, SigningKey::from_seed(&[seed; 32]), credential).await?;
        assert_eq!(code(&reply), want, "{what}: {reply:?}");
        let alert = s.events.alert(kind, want).await?;
        assert!(
            alert.message.contains("refused a connection"),
            "{what}: {alert:?}"
        );
    }
    // Refused hellos are not logged: nobody authenticated could be named.
    assert!(
        denials(&s.provider)?.is_empty(),
        "{:?}",
        denials(&s.provider)?
    );
    s.still_serves().await
}

/// The provider's own revocation list of the authority went stale (its clock passed the
/// list's next update): it refuses every peer, fail-closed, with the reason; once the
/// operator applies a fresh list it serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_revocation_list_refuses_every_peer_until_a_fresh_one_is_applied() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(11, Sector::POWER, "CN-SX")?;
    let bank = space.member(12, Sector::FINANCE, "CN-SX")?;
    // A minute past the list's next update.
    let later = space.now.saturating_add_millis(DAY_MS + 60_000);
    let clock = Arc::new(ManualClock::new(later));
    let provider = connector_with(
        &space,
        &grid,
        None,
        config(),
        Some(clock.clone() as Arc<dyn Clock>),
    )
    .await?;
    let mut events = Events(provider.subscribe());
    // The consumer's clock is as late (its list as stale: the provider's hello brings
    // it the fresh one later).
    let consumer = connector_with(
        &space,
        &bank,
        None,
        config(),
        Some(clock.clone() as Arc<dyn Clock>),
    )
    .await?;
    let dir = tempfile::tempdir()?;
    // An offer still valid at the provider's later clock.
    let path = dir.path().join("a.bin");
    std::fs::write(&path, data(100_000, 1))?;
    let manifest = manifest_for(&grid, &path, "Load curves", 65536)?;
    let mut t = terms(RESEARCH)?;
    t.not_after = later.saturating_add_millis(DAY_MS);
    let p = provider
        .publish(&manifest, tds_connector::Source::File(path), vec![t])
        .await?;
    let offer_id = p.offers.first().copied().ok_or("no offer")?;
    let published = Published {
        offer_id,
        offer: provider.offer(&offer_id)?.ok_or("no offer")?,
        manifest,
    };
    let addr = provider.local_addr()?;
    let e = consumer
        .negotiate(addr, &published.offer, None, "research".parse()?)
        .await
        .err()
        .ok_or("negotiated with a stale list")?;
    assert!(
        e.to_string().contains("identity.stale_revocation_list"),
        "{e}"
    );
    events
        .alert(AlertKind::Denial, "identity.stale_revocation_list")
        .await?;
    let fresh = space
        .authority
        .revocation_list(later, later.saturating_add_millis(DAY_MS))?
        .into_envelope();
    provider.apply_revocation_list(&fresh)?;
    let a = within(
        "a negotiation after the fresh list",
        consumer.negotiate(addr, &published.offer, None, "research".parse()?),
    )
    .await??;
    assert_eq!(a.terms().offer, published.offer_id);
    Ok(())
}
