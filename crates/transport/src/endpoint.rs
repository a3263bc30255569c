//! The endpoint: one UDP socket, server and client at once, the hello on every
//! connection, and the registry of live connections that revocation acts on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use quinn::VarInt;
use tds_core::cose;
use tds_core::time::SystemClock;
use tds_core::{Clock, PublicKey, Signer, Timestamp};
use tds_identity::{Credential, ParticipantId, RevocationList, TrustStore, VerifiedCredential};
use tds_protocol::frame::{self, Frame, MAX_CONTROL};
use tds_protocol::message::{Hello, VERSIONS};
use tds_protocol::{Message, ProtocolError, Refusal};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::config::TransportConfig;
use crate::connection::{ConnState, Connection};
use crate::error::{close, close_reason, refusal_of, HelloError, TransportError};
use crate::join::{AdmissionHandler, JoinLimits, JoinServer};
use crate::tls::{self, ALPN, ALPN_JOIN};
use crate::wire::{read_frame, Accept};

/// A trust store shared by the endpoint and the rest of the node: the endpoint reads it
/// for every hello and writes it when a newer revocation list arrives.
pub type SharedTrust = Arc<RwLock<TrustStore>>;

/// Called with the remote address and the error each time an incoming connection is
/// refused (its hello or admission request failed, or it timed out), for logs and
/// `access_denied` events. [`Endpoint::accept`] only yields connections that passed.
pub type RefusalObserver = Arc<dyn Fn(SocketAddr, &TransportError) + Send + Sync>;

/// This participant: the key TLS proves and the membership credential the hello presents
/// (with the newest revocation list of its authority we hold, if any).
#[derive(Clone)]
pub struct LocalIdentity {
    pub(crate) signer: Arc<dyn Signer>,
    pub(crate) credential: Vec<u8>,
    issuer: ParticipantId,
    pub(crate) crl: Option<Vec<u8>>,
}

impl std::fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("key", &self.signer.public_key())
            .field("issuer", &self.issuer)
            .field("credential_len", &self.credential.len())
            .field("crl_len", &self.crl.as_ref().map(Vec::len))
            .finish()
    }
}

impl LocalIdentity {
    /// `signer`'s identity with `credential` (COSE bytes) and optionally the newest
    /// revocation list of the credential's authority. Refused when the credential does
    /// not parse or is for another key (its signature is checked by peers, not here).
    pub fn new(
        signer: impl Into<Arc<dyn Signer>>,
        credential: Vec<u8>,
        crl: Option<Vec<u8>>,
    ) -> Result<Self, TransportError> {
        let signer = signer.into();
        let parsed = cose::open::<Credential>(&credential)
            .map_err(|e| TransportError::Config(format!("local credential: {e}")))?;
        let c = parsed.value();
        if *c.subject_key() != signer.public_key() {
            return Err(TransportError::Config(format!(
                "local credential is for {}, not for the endpoint's key {}",
                c.subject(),
                ParticipantId::of(&signer.public_key())
            )));
        }
        Ok(LocalIdentity {
            issuer: c.issuer(),
            signer,
            credential,
            crl,
        })
    }

    /// The public key TLS presents.
    pub fn public_key(&self) -> PublicKey {
        self.signer.public_key()
    }

    /// The participant id (the hash of the public key).
    pub fn id(&self) -> ParticipantId {
        ParticipantId::of(&self.signer.public_key())
    }
}

/// What [`Endpoint::apply_revocation_list`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationOutcome {
    /// The list's authority (its signing key's id).
    pub issuer: ParticipantId,
    /// The list's sequence number.
    pub sequence: u64,
    /// Connections closed because their peer's credential no longer verifies.
    pub closed: usize,
}

/// One live connection, for revocation sweeps.
struct Live {
    conn: quinn::Connection,
    peer: Arc<VerifiedCredential>,
    state: Arc<ConnState>,
}

/// What the endpoint's tasks and connections share.
pub(crate) struct Shared {
    pub(crate) identity: LocalIdentity,
    /// The revocation list our hello carries (updated when a newer one is applied).
    crl: RwLock<Option<Vec<u8>>>,
    pub(crate) trust: SharedTrust,
    pub(crate) config: TransportConfig,
    pub(crate) clock: Arc<dyn Clock>,
    client_config: quinn::ClientConfig,
    live: Mutex<HashMap<usize, Live>>,
    pub(crate) join: Option<JoinServer>,
    observer: Option<RefusalObserver>,
}

impl Shared {
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn our_hello(&self) -> Message {
        Message::Hello(Hello {
            versions: VERSIONS.to_vec(),
            credential: self.identity.credential.clone().into(),
            crl: self
                .crl
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .map(Into::into),
            agent: concat!("tds-transport/", env!("CARGO_PKG_VERSION")).to_owned(),
        })
    }

    pub(crate) fn observe(&self, remote: SocketAddr, error: &TransportError) {
        if let Some(o) = &self.observer {
            o(remote, error);
        }
    }

    /// Applies a revocation list the peer's hello carried, if it is newer than the one
    /// held. A list that does not verify is ignored: the credential check below decides
    /// with the lists we hold, so a bad list can only fail to help.
    fn offer_crl(&self, bytes: &[u8]) {
        let Ok(unverified) = cose::open::<RevocationList>(bytes) else {
            return;
        };
        let (issuer, sequence) = (unverified.value().issuer(), unverified.value().sequence());
        let newer = self
            .trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .revocation_list(&issuer)
            .is_none_or(|held| held.sequence() < sequence);
        if newer {
            let _ = self.apply_crl(bytes);
        }
    }

    /// Verifies and holds a revocation list, updates the list our hello carries if it is
    /// our authority's, and closes connections whose peer no longer verifies.
    fn apply_crl(&self, bytes: &[u8]) -> Result<RevocationOutcome, TransportError> {
        let now = self.now();
        let (issuer, sequence, ours) = {
            let mut trust = self.trust.write().unwrap_or_else(PoisonError::into_inner);
            let list = trust
                .add_revocation_list(bytes, now)
                .map_err(|e| TransportError::Hello(HelloError::Credential(e)))?;
            let (issuer, sequence) = (list.issuer(), list.sequence());
            (
                issuer,
                sequence,
                trust.same_authority(&issuer, &self.identity.issuer),
            )
        };
        if ours {
            *self.crl.write().unwrap_or_else(PoisonError::into_inner) = Some(bytes.to_vec());
        }
        let closed = self.recheck();
        Ok(RevocationOutcome {
            issuer,
            sequence,
            closed,
        })
    }

    /// Verifies every live peer's credential again at the current time and closes the
    /// connections of those that fail, with the failure's reason code.
    fn recheck(&self) -> usize {
        let now = self.now();
        let trust = self.trust.read().unwrap_or_else(PoisonError::into_inner);
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let mut closed = 0;
        for entry in live.values() {
            if let Err(e) = trust.verify(entry.peer.envelope(), now) {
                let refusal = refusal_of(&e);
                entry.state.close(&entry.conn, close::REVOKED, refusal);
                closed += 1;
            }
        }
        closed
    }

    fn register(
        self: &Arc<Self>,
        conn: &quinn::Connection,
        peer: Arc<VerifiedCredential>,
    ) -> Arc<ConnState> {
        let state = Arc::new(ConnState::default());
        let id = conn.stable_id();
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                Live {
                    conn: conn.clone(),
                    peer,
                    state: state.clone(),
                },
            );
        let shared = self.clone();
        let watched = conn.clone();
        tokio::spawn(async move {
            watched.closed().await;
            shared
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
        state
    }

    /// Checks a peer's hello: a version in common, the credential verifies now (after
    /// applying a newer revocation list the hello carries), and it is for the TLS key.
    fn check_hello(
        &self,
        hello: &Hello,
        tls_key: &PublicKey,
    ) -> Result<(VerifiedCredential, u64), HelloError> {
        let version = negotiate(&hello.versions)?;
        if let Some(crl) = &hello.crl {
            self.offer_crl(crl);
        }
        let now = self.now();
        let verified = self
            .trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .verify(&hello.credential, now)
            .map_err(HelloError::Credential)?;
        if verified.subject_key() != tls_key {
            return Err(HelloError::KeyMismatch {
                tls: ParticipantId::of(tls_key),
                credential: verified.subject(),
            });
        }
        Ok((verified, version))
    }
}

/// The highest version both sides speak.
pub(crate) fn negotiate(theirs: &[u64]) -> Result<u64, ProtocolError> {
    VERSIONS
        .iter()
        .rev()
        .find(|v| theirs.contains(v))
        .copied()
        .ok_or_else(|| ProtocolError::NoCommonVersion {
            ours: VERSIONS.to_vec(),
            theirs: theirs.iter().take(16).copied().collect(),
        })
}

/// The peer's raw public key, as TLS proved it.
pub(crate) fn tls_peer_key(conn: &quinn::Connection) -> Result<PublicKey, HelloError> {
    let identity = conn.peer_identity().ok_or(HelloError::NoPeerKey)?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .map_err(|_| HelloError::NoPeerKey)?;
    match certs.as_slice() {
        [spki] => tls::parse_ed25519_spki(spki.as_ref()).ok_or(HelloError::NoPeerKey),
        _ => Err(HelloError::NoPeerKey),
    }
}

/// The ALPN protocol TLS agreed on.
pub(crate) fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// Sends `refusal` as an `error` message on `send`, waits (up to `linger`) for the peer
/// to acknowledge it, then closes the connection with `code` and the same reason.
pub(crate) async fn refuse(
    conn: &quinn::Connection,
    send: Option<quinn::SendStream>,
    code: u32,
    refusal: Refusal,
    linger: std::time::Duration,
) {
    if let Some(mut send) = send {
        if let Ok(bytes) = frame::encode_control(&Message::Error(refusal.clone())) {
            let sent = async {
                send.write_all(&bytes).await.ok()?;
                send.finish().ok()?;
                send.stopped().await.ok()
            };
            let _ = tokio::time::timeout(linger, sent).await;
        }
    }
    conn.close(VarInt::from_u32(code), &close_reason(&refusal));
}

/// Reads the hello frame from `recv`: one control frame holding a `hello`.
pub(crate) async fn read_hello(
    recv: &mut quinn::RecvStream,
) -> Result<Result<Hello, HelloError>, TransportError> {
    let frame = match read_frame(recv, Accept::Control, MAX_CONTROL).await {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(Err(HelloError::Missing)),
        Err(TransportError::Frame(e)) => return Ok(Err(HelloError::Protocol(e))),
        Err(e) => return Err(e),
    };
    Ok(match frame::decode(&frame) {
        Ok(Frame::Control(Message::Hello(h))) => Ok(h),
        Ok(Frame::Control(Message::Error(r))) => return Err(TransportError::Refused(r)),
        Ok(Frame::Control(other)) => Err(HelloError::UnexpectedMessage(other.name())),
        Ok(Frame::Data(..)) => Err(HelloError::UnexpectedMessage("data frame")),
        Err(e) => Err(HelloError::Protocol(e)),
    })
}

/// Server side of one incoming connection: TLS, then the admission path or the hello,
/// all before `deadline` (a connection still in its hello then is closed with
/// `transport.timeout`).
async fn serve_incoming(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    deadline: tokio::time::Instant,
) -> Option<Result<Connection, TransportError>> {
    let timeout = || TransportError::Timeout("the handshake and hello");
    let conn = match incoming.accept() {
        Ok(connecting) => match tokio::time::timeout_at(deadline, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Some(Err(e.into())),
            Err(_) => return Some(Err(timeout())),
        },
        Err(e) => return Some(Err(e.into())),
    };
    let work = async {
        if negotiated_alpn(&conn).as_deref() == Some(ALPN_JOIN) {
            return match &shared.join {
                Some(join) => join
                    .serve(shared.config.refusal_linger, &*shared.clock, conn.clone())
                    .await
                    .err()
                    .map(Err),
                None => {
                    conn.close(VarInt::from_u32(close::PROTOCOL), b"");
                    None
                }
            };
        }
        Some(server_hello(&shared, conn.clone()).await)
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let e = timeout();
            conn.close(
                VarInt::from_u32(close::REFUSED),
                &close_reason(&refusal_of(&e)),
            );
            Some(Err(e))
        }
    }
}

async fn server_hello(
    shared: &Arc<Shared>,
    conn: quinn::Connection,
) -> Result<Connection, TransportError> {
    let linger = shared.config.refusal_linger;
    let tls_key = match tls_peer_key(&conn) {
        Ok(k) => k,
        Err(e) => {
            refuse(&conn, None, close::REFUSED, refusal_of(&e), linger).await;
            return Err(TransportError::Hello(e));
        }
    };
    // Nothing else on the connection is read before the hello passed: the first
    // bidirectional stream is the hello, later ones wait in quinn's (bounded) buffers.
    let (mut send, mut recv) = conn.accept_bi().await?;
    let checked = read_hello(&mut recv)
        .await?
        .and_then(|hello| shared.check_hello(&hello, &tls_key));
    let (peer, version) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            refuse(&conn, Some(send), close::REFUSED, refusal_of(&e), linger).await;
            return Err(TransportError::Hello(e));
        }
    };
    let reply = frame::encode_control(&shared.our_hello())?;
    shared.config.open_up(&conn);
    send.write_all(&reply).await?;
    send.finish()?;
    let peer = Arc::new(peer);
    let state = shared.register(&conn, peer.clone());
    Ok(Connection::new(conn, peer, version, state, shared.clone()))
}

/// Client side: TLS, the optional check of whom we reached, our hello, theirs.
async fn client_hello(
    shared: &Arc<Shared>,
    conn: quinn::Connection,
    expected: Option<ParticipantId>,
) -> Result<Connection, TransportError> {
    let linger = shared.config.refusal_linger;
    let tls_key = tls_peer_key(&conn).map_err(TransportError::Hello)?;
    if let Some(expected) = expected {
        let found = ParticipantId::of(&tls_key);
        if found != expected {
            // Our credential is not shown to a peer we did not mean to reach.
            let e = HelloError::UnexpectedPeer { expected, found };
            refuse(&conn, None, close::REFUSED, refusal_of(&e), linger).await;
            return Err(TransportError::Hello(e));
        }
    }
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&frame::encode_control(&shared.our_hello())?)
        .await?;
    send.finish()?;
    let checked = match read_hello(&mut recv).await {
        Ok(r) => r.and_then(|hello| shared.check_hello(&hello, &tls_key)),
        Err(e) => {
            conn.close(VarInt::from_u32(close::DONE), b"");
            return Err(e);
        }
    };
    match checked {
        Ok((peer, version)) => {
            shared.config.open_up(&conn);
            let peer = Arc::new(peer);
            let state = shared.register(&conn, peer.clone());
            Ok(Connection::new(conn, peer, version, state, shared.clone()))
        }
        Err(e) => {
            refuse(&conn, None, close::REFUSED, refusal_of(&e), linger).await;
            Err(TransportError::Hello(e))
        }
    }
}

/// Builds an [`Endpoint`].
pub struct EndpointBuilder {
    identity: LocalIdentity,
    trust: SharedTrust,
    config: TransportConfig,
    clock: Arc<dyn Clock>,
    join: Option<(Arc<dyn AdmissionHandler>, JoinLimits)>,
    observer: Option<RefusalObserver>,
}

impl EndpointBuilder {
    /// Timeouts and limits (default [`TransportConfig::default`]).
    pub fn config(mut self, config: TransportConfig) -> Self {
        self.config = config;
        self
    }

    /// The clock credentials and rate limits are checked against (default the system
    /// clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Serves the admission path (`tds-join/1`) with `handler`: participants without a
    /// credential may send one signed admission request each. Without this the endpoint
    /// does not offer `tds-join/1` at all.
    pub fn admission(mut self, handler: Arc<dyn AdmissionHandler>, limits: JoinLimits) -> Self {
        self.join = Some((handler, limits));
        self
    }

    /// Called for every refused incoming connection.
    pub fn on_refusal(mut self, observer: RefusalObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Binds the UDP socket and starts accepting. Must run inside a tokio runtime.
    pub fn bind(self, addr: SocketAddr) -> Result<Endpoint, TransportError> {
        let transport = self.config.quinn()?;
        let config_err = |e: rustls::Error| TransportError::Config(format!("TLS: {e}"));
        let mut alpn: Vec<&[u8]> = vec![ALPN];
        if self.join.is_some() {
            alpn.push(ALPN_JOIN);
        }
        let server_tls =
            tls::server_config(self.identity.signer.clone(), &alpn).map_err(config_err)?;
        let server_quic = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
            .map_err(|e| TransportError::Config(format!("QUIC TLS: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_quic));
        server.transport_config(transport.clone());
        let client_tls =
            tls::client_config(self.identity.signer.clone(), ALPN).map_err(config_err)?;
        let client_quic = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls)
            .map_err(|e| TransportError::Config(format!("QUIC TLS: {e}")))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_quic));
        client.transport_config(transport);
        let quinn = quinn::Endpoint::server(server, addr)
            .map_err(|source| TransportError::Bind { addr, source })?;

        let shared = Arc::new(Shared {
            crl: RwLock::new(self.identity.crl.clone()),
            identity: self.identity,
            trust: self.trust,
            clock: self.clock,
            client_config: client,
            live: Mutex::new(HashMap::new()),
            join: self
                .join
                .map(|(handler, limits)| JoinServer::new(handler, limits)),
            observer: self.observer,
            config: self.config,
        });
        let (tx, rx) = mpsc::channel(shared.config.accept_queue);
        let (shutdown, stop) = watch::channel(false);
        tokio::spawn(accept_loop(quinn.clone(), shared.clone(), tx, stop));
        Ok(Endpoint {
            inner: Arc::new(EndpointInner {
                quinn,
                shared,
                accepted: tokio::sync::Mutex::new(rx),
                shutdown,
            }),
        })
    }
}

async fn accept_loop(
    quinn: quinn::Endpoint,
    shared: Arc<Shared>,
    accepted: mpsc::Sender<Connection>,
    mut stop: watch::Receiver<bool>,
) {
    let pending = Arc::new(Semaphore::new(shared.config.max_pending_handshakes));
    loop {
        let incoming = tokio::select! {
            i = quinn.accept() => i,
            _ = stop.changed() => None,
        };
        let Some(incoming) = incoming else { break };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let shared = shared.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let remote = incoming.remote_address();
            let deadline = tokio::time::Instant::now() + shared.config.hello_timeout;
            match serve_incoming(shared.clone(), incoming, deadline).await {
                Some(Ok(conn)) => {
                    // Waits while the application is not accepting: backpressure, with the
                    // number of such waits bounded by `max_pending_handshakes`.
                    let _ = accepted.send(conn).await;
                }
                Some(Err(e)) => shared.observe(remote, &e),
                None => {}
            }
        });
    }
}

struct EndpointInner {
    quinn: quinn::Endpoint,
    shared: Arc<Shared>,
    accepted: tokio::sync::Mutex<mpsc::Receiver<Connection>>,
    shutdown: watch::Sender<bool>,
}

impl Drop for EndpointInner {
    fn drop(&mut self) {
        // New connections are refused; live ones go on until they close.
        self.quinn.set_server_config(None);
        let _ = self.shutdown.send(true);
    }
}

/// A QUIC endpoint speaking the TDS connector protocol: accepts connections, makes them,
/// checks every peer's credential in the hello, and closes connections of peers revoked
/// while connected. Cheap to clone; dropping the last clone stops accepting.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<EndpointInner>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.inner.quinn.local_addr().ok())
            .field("identity", &self.inner.shared.identity)
            .finish()
    }
}

impl Endpoint {
    /// Starts building an endpoint for `identity` checking peers against `trust`.
    pub fn builder(identity: LocalIdentity, trust: SharedTrust) -> EndpointBuilder {
        EndpointBuilder {
            identity,
            trust,
            config: TransportConfig::default(),
            clock: Arc::new(SystemClock),
            join: None,
            observer: None,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.inner
            .quinn
            .local_addr()
            .map_err(|e| TransportError::Config(format!("local address: {e}")))
    }

    /// This endpoint's identity.
    pub fn identity(&self) -> &LocalIdentity {
        &self.inner.shared.identity
    }

    /// Connects to `addr`: TLS with raw public keys, then the hello exchange. The peer is
    /// whoever holds a credential that verifies; see [`Endpoint::connect_to`] to require
    /// a particular participant.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Connection, TransportError> {
        self.connect_inner(addr, None).await
    }

    /// Connects to `addr` and requires the peer to be `expected`; checked right after
    /// TLS, before our credential is sent.
    pub async fn connect_to(
        &self,
        addr: SocketAddr,
        expected: ParticipantId,
    ) -> Result<Connection, TransportError> {
        self.connect_inner(addr, Some(expected)).await
    }

    async fn connect_inner(
        &self,
        addr: SocketAddr,
        expected: Option<ParticipantId>,
    ) -> Result<Connection, TransportError> {
        let shared = &self.inner.shared;
        let connecting =
            self.inner
                .quinn
                .connect_with(shared.client_config.clone(), addr, "tds")?;
        let go = async {
            let conn = connecting.await?;
            client_hello(shared, conn, expected).await
        };
        tokio::time::timeout(shared.config.hello_timeout, go)
            .await
            .map_err(|_| TransportError::Timeout("the handshake and hello"))?
    }

    /// The next incoming connection whose hello passed. Refused connections are not
    /// returned (see [`EndpointBuilder::on_refusal`]). Fails only when the endpoint is
    /// closed.
    pub async fn accept(&self) -> Result<Connection, TransportError> {
        self.inner
            .accepted
            .lock()
            .await
            .recv()
            .await
            .ok_or(TransportError::EndpointClosed)
    }

    /// Verifies a revocation list, holds it in the trust store (and in our hello if it is
    /// our authority's), and closes every connection whose peer's credential no longer
    /// verifies, with close code [`close::REVOKED`] and the reason code
    /// (`identity.revoked` for a revoked serial).
    pub fn apply_revocation_list(&self, bytes: &[u8]) -> Result<RevocationOutcome, TransportError> {
        self.inner.shared.apply_crl(bytes)
    }

    /// Verifies every live peer's credential again now (after the clock moved, say) and
    /// closes the connections of those that fail. Returns how many were closed.
    pub fn recheck_peers(&self) -> usize {
        self.inner.shared.recheck()
    }

    /// Live connections (hello passed, not closed yet).
    pub fn live_connections(&self) -> usize {
        self.inner
            .shared
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        let refusal = Refusal {
            code: "transport.shutdown".into(),
            reason: "the endpoint is shutting down".into(),
        };
        let live = self
            .inner
            .shared
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for entry in live.values() {
            entry.state.close(&entry.conn, close::DONE, refusal.clone());
        }
        drop(live);
        self.inner
            .quinn
            .close(VarInt::from_u32(close::DONE), &close_reason(&refusal));
    }

    /// Waits until every connection has closed and its close was sent.
    pub async fn wait_idle(&self) {
        self.inner.quinn.wait_idle().await;
    }
}
