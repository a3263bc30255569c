//! The service path (`tds-authority/1`): members ask a server that holds no membership
//! credential of its own (the data-space authority) for services.
//!
//! The connector protocol (`tds/1`) is symmetric: both sides present a credential in
//! their hello. The authority issues credentials and holds none, so it cannot answer a
//! `tds/1` hello; and members do not need it to: they know the authority by its key
//! (the key their trust store trusts), and TLS proves that key. So on `tds-authority/1`:
//!
//! 1. TLS 1.3 with raw public keys, exactly as on `tds/1`; the client requires the
//!    server's key to be the authority key it expects (checked before anything is sent).
//! 2. The client opens the first stream and sends a `hello` (the connector protocol's
//!    message: versions, its credential, optionally a revocation list). The server checks
//!    the version, that the credential verifies *as the service decides*
//!    ([`ServiceHandler::check_member`]: the authority asks its own records) and that it
//!    names the TLS key, then answers `ack` (or `error` and closes).
//! 3. Every later stream is one request: one control frame from the client (at most
//!    [`ServiceLimits::max_request`] bytes of payload), one control frame back, then the
//!    stream ends. The payloads are the service's business (canonical CBOR of its own
//!    messages); the transport checks the frame header before it allocates, checks the
//!    member again before each request (a member revoked while connected is closed with
//!    [`close::REVOKED`]) and runs the handler on a blocking thread.
//!
//! The same endpoint may also serve the admission path (`tds-join/1`) with an
//! [`AdmissionHandler`]. It never speaks `tds/1`.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::VarInt;
use tds_core::time::SystemClock;
use tds_core::{Clock, PublicKey, Signer, Timestamp};
use tds_identity::{IdentityError, ParticipantId, VerifiedCredential};
use tds_protocol::frame::{self, FrameHeader, FrameType, HEADER_LEN, MAX_CONTROL};
use tds_protocol::message::{Ack, Hello, VERSIONS};
use tds_protocol::{Message, ProtocolError, Refusal};
use tokio::sync::{watch, Semaphore};

use crate::config::TransportConfig;
use crate::endpoint::{
    negotiate, negotiated_alpn, read_hello, refuse, tls_peer_key, LocalIdentity,
};
use crate::error::{close, close_reason, refusal_of, HelloError, TransportError};
use crate::join::{connect_pinned, AdmissionHandler, JoinLimits, JoinServer};
use crate::tls::{self, ALPN_AUTHORITY, ALPN_JOIN};
use crate::wire::{read_frame, refuse_rest, Accept};
use crate::RefusalObserver;

/// Answers members' requests on `tds-authority/1`. Both methods are called on a blocking
/// thread, so they may take locks, read and write files.
pub trait ServiceHandler: Send + Sync + 'static {
    /// Verifies a member's credential envelope at `now`: at the hello, and again before
    /// every request (so a revocation takes effect on live connections).
    fn check_member(
        &self,
        credential: &[u8],
        now: Timestamp,
    ) -> Result<VerifiedCredential, IdentityError>;

    /// The reply payload to one request payload of `peer` (both canonical CBOR of the
    /// service's messages; a refusal is the service's own error message).
    fn handle(&self, peer: &VerifiedCredential, request: &[u8]) -> Vec<u8>;
}

/// Limits of the service path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Largest request frame payload. Default 1 MiB (the control-frame maximum).
    pub max_request: u32,
    /// Requests of one connection handled at once; further streams wait. Default 8.
    pub max_concurrent: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_request: MAX_CONTROL,
            max_concurrent: 8,
        }
    }
}

struct ServiceShared {
    config: TransportConfig,
    clock: Arc<dyn Clock>,
    join: Option<JoinServer>,
    service: Option<(Arc<dyn ServiceHandler>, ServiceLimits)>,
    observer: Option<RefusalObserver>,
}

impl ServiceShared {
    fn observe(&self, remote: SocketAddr, error: &TransportError) {
        if let Some(o) = &self.observer {
            o(remote, error);
        }
    }
}

/// Builds a [`ServiceEndpoint`].
pub struct ServiceEndpointBuilder {
    signer: Arc<dyn Signer>,
    config: TransportConfig,
    clock: Arc<dyn Clock>,
    join: Option<(Arc<dyn AdmissionHandler>, JoinLimits)>,
    service: Option<(Arc<dyn ServiceHandler>, ServiceLimits)>,
    observer: Option<RefusalObserver>,
}

impl ServiceEndpointBuilder {
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

    /// Serves the admission path (`tds-join/1`) with `handler`.
    pub fn admission(mut self, handler: Arc<dyn AdmissionHandler>, limits: JoinLimits) -> Self {
        self.join = Some((handler, limits));
        self
    }

    /// Serves members' requests (`tds-authority/1`) with `handler`.
    pub fn service(mut self, handler: Arc<dyn ServiceHandler>, limits: ServiceLimits) -> Self {
        self.service = Some((handler, limits));
        self
    }

    /// Called for every refused incoming connection.
    pub fn on_refusal(mut self, observer: RefusalObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Binds the UDP socket and starts accepting. Must run inside a tokio runtime.
    pub fn bind(self, addr: SocketAddr) -> Result<ServiceEndpoint, TransportError> {
        let mut alpn: Vec<&[u8]> = Vec::new();
        if self.service.is_some() {
            alpn.push(ALPN_AUTHORITY);
        }
        if self.join.is_some() {
            alpn.push(ALPN_JOIN);
        }
        if alpn.is_empty() {
            return Err(TransportError::Config(
                "a service endpoint needs a service or an admission handler".into(),
            ));
        }
        let transport = self.config.quinn()?;
        let server_tls = tls::server_config(self.signer.clone(), &alpn)
            .map_err(|e| TransportError::Config(format!("TLS: {e}")))?;
        let server_quic = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
            .map_err(|e| TransportError::Config(format!("QUIC TLS: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_quic));
        server.transport_config(transport);
        let quinn = quinn::Endpoint::server(server, addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        let shared = Arc::new(ServiceShared {
            config: self.config,
            clock: self.clock,
            join: self
                .join
                .map(|(handler, limits)| JoinServer::new(handler, limits)),
            service: self.service,
            observer: self.observer,
        });
        let (shutdown, stop) = watch::channel(false);
        tokio::spawn(accept_loop(quinn.clone(), shared, stop));
        Ok(ServiceEndpoint {
            inner: Arc::new(ServiceInner { quinn, shutdown }),
        })
    }
}

struct ServiceInner {
    quinn: quinn::Endpoint,
    shutdown: watch::Sender<bool>,
}

impl Drop for ServiceInner {
    fn drop(&mut self) {
        self.quinn.set_server_config(None);
        let _ = self.shutdown.send(true);
    }
}

/// A QUIC endpoint serving `tds-authority/1` and/or `tds-join/1` for a server without a
/// membership credential (see the [module docs](self)). Cheap to clone; dropping the last
/// clone stops accepting.
#[derive(Clone)]
pub struct ServiceEndpoint {
    inner: Arc<ServiceInner>,
}

impl std::fmt::Debug for ServiceEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceEndpoint")
            .field("local_addr", &self.inner.quinn.local_addr().ok())
            .finish()
    }
}

impl ServiceEndpoint {
    /// Starts building an endpoint whose TLS key is `signer`'s.
    pub fn builder(signer: Arc<dyn Signer>) -> ServiceEndpointBuilder {
        ServiceEndpointBuilder {
            signer,
            config: TransportConfig::default(),
            clock: Arc::new(SystemClock),
            join: None,
            service: None,
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

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        let refusal = Refusal::new("transport.shutdown", "the endpoint is shutting down");
        self.inner.quinn.set_server_config(None);
        let _ = self.inner.shutdown.send(true);
        self.inner
            .quinn
            .close(VarInt::from_u32(close::DONE), &close_reason(&refusal));
    }

    /// Waits until every connection has closed and its close was sent.
    pub async fn wait_idle(&self) {
        self.inner.quinn.wait_idle().await;
    }
}

async fn accept_loop(
    quinn: quinn::Endpoint,
    shared: Arc<ServiceShared>,
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
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let deadline = tokio::time::Instant::now() + shared.config.hello_timeout;
            match serve_incoming(&shared, incoming, deadline).await {
                Ok(Some((conn, peer))) => {
                    // The handshake slot is free once the hello passed.
                    drop(permit);
                    serve_requests(shared, conn, peer).await;
                }
                Ok(None) => {}
                Err(e) => shared.observe(remote, &e),
            }
        });
    }
}

/// TLS, then the admission path or the service hello, before `deadline`. `Ok(Some)` is a
/// member connection ready for requests; `Ok(None)` a connection already dealt with.
async fn serve_incoming(
    shared: &ServiceShared,
    incoming: quinn::Incoming,
    deadline: tokio::time::Instant,
) -> Result<Option<(quinn::Connection, Arc<VerifiedCredential>)>, TransportError> {
    let timeout = || TransportError::Timeout("the handshake and hello");
    let conn = match tokio::time::timeout_at(deadline, incoming.accept()?).await {
        Ok(c) => c?,
        Err(_) => return Err(timeout()),
    };
    let work = async {
        let alpn = negotiated_alpn(&conn);
        match (alpn.as_deref(), &shared.join, &shared.service) {
            (Some(ALPN_JOIN), Some(join), _) => join
                .serve(shared.config.refusal_linger, &*shared.clock, conn.clone())
                .await
                .map(|()| None),
            (Some(ALPN_AUTHORITY), _, Some((handler, _))) => {
                service_hello(shared, handler.as_ref(), &conn)
                    .await
                    .map(|peer| Some((conn.clone(), Arc::new(peer))))
            }
            _ => {
                conn.close(VarInt::from_u32(close::PROTOCOL), b"");
                Ok(None)
            }
        }
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let e = timeout();
            conn.close(
                VarInt::from_u32(close::REFUSED),
                &close_reason(&refusal_of(&e)),
            );
            Err(e)
        }
    }
}

/// The server side of the service hello: the member's hello in, `ack` or `error` out.
async fn service_hello(
    shared: &ServiceShared,
    handler: &dyn ServiceHandler,
    conn: &quinn::Connection,
) -> Result<VerifiedCredential, TransportError> {
    let linger = shared.config.refusal_linger;
    let tls_key = match tls_peer_key(conn) {
        Ok(k) => k,
        Err(e) => {
            refuse(conn, None, close::REFUSED, refusal_of(&e), linger).await;
            return Err(TransportError::Hello(e));
        }
    };
    let (mut send, mut recv) = conn.accept_bi().await?;
    let now = shared.clock.now();
    let checked = read_hello(&mut recv)
        .await?
        .and_then(|hello| check_hello(handler, &hello, &tls_key, now));
    let peer = match checked {
        Ok(peer) => peer,
        Err(e) => {
            refuse(conn, Some(send), close::REFUSED, refusal_of(&e), linger).await;
            return Err(TransportError::Hello(e));
        }
    };
    let reply = frame::encode_control(&Message::Ack(Ack {
        pid: None,
        state: None,
    }))?;
    shared.config.open_up(conn);
    send.write_all(&reply).await?;
    send.finish()?;
    Ok(peer)
}

fn check_hello(
    handler: &dyn ServiceHandler,
    hello: &Hello,
    tls_key: &PublicKey,
    now: Timestamp,
) -> Result<VerifiedCredential, HelloError> {
    negotiate(&hello.versions)?;
    // The service decides membership against its own records; a revocation list the
    // member carries is of no use to the authority that signed it.
    let verified = handler
        .check_member(&hello.credential, now)
        .map_err(HelloError::Credential)?;
    if verified.subject_key() != tls_key {
        return Err(HelloError::KeyMismatch {
            tls: ParticipantId::of(tls_key),
            credential: verified.subject(),
        });
    }
    Ok(verified)
}

/// Serves the requests of one member connection until it closes.
async fn serve_requests(
    shared: Arc<ServiceShared>,
    conn: quinn::Connection,
    peer: Arc<VerifiedCredential>,
) {
    let Some((handler, limits)) = shared.service.clone() else {
        return;
    };
    let slots = Arc::new(Semaphore::new(limits.max_concurrent.max(1)));
    loop {
        let Ok((send, recv)) = conn.accept_bi().await else {
            break;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (shared, conn, peer, handler) =
            (shared.clone(), conn.clone(), peer.clone(), handler.clone());
        let max = limits.max_request;
        tokio::spawn(async move {
            let _slot = slot;
            let remote = conn.remote_address();
            if let Err(e) = serve_request(&shared, &conn, peer, handler, max, send, recv).await {
                shared.observe(remote, &e);
            }
        });
    }
}

async fn serve_request(
    shared: &ServiceShared,
    conn: &quinn::Connection,
    peer: Arc<VerifiedCredential>,
    handler: Arc<dyn ServiceHandler>,
    max_request: u32,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), TransportError> {
    // A request that does not arrive whole in time is refused like a bad frame, so a
    // slow sender cannot hold one of the connection's slots for ever.
    let read = tokio::time::timeout(
        shared.config.request_timeout,
        read_frame(&mut recv, Accept::Control, max_request),
    )
    .await
    .unwrap_or(Err(TransportError::Timeout("a request frame")));
    let frame = match read {
        Ok(Some(frame)) => frame,
        Ok(None) => return Ok(()),
        Err(e @ (TransportError::Frame(_) | TransportError::Timeout(_))) => {
            refuse_rest(&mut recv);
            let bytes = frame::encode_control(&Message::Error(refusal_of(&e)))?;
            send.write_all(&bytes).await?;
            send.finish()?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let now = shared.clock.now();
    let reply = tokio::task::spawn_blocking(move || {
        // Membership is checked again for every request: a member revoked (or expired)
        // since its hello is refused and its connection closed.
        match handler.check_member(peer.envelope(), now) {
            Ok(_) => Ok(handler.handle(&peer, frame.get(HEADER_LEN..).unwrap_or_default())),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|e| TransportError::Task(e.to_string()))?;
    match reply {
        Ok(payload) => {
            let bytes = control_frame(&payload)?;
            send.write_all(&bytes).await?;
            send.finish()?;
            Ok(())
        }
        Err(e) => {
            let e = HelloError::Credential(e);
            let refusal = refusal_of(&e);
            refuse(
                conn,
                Some(send),
                close::REVOKED,
                refusal,
                shared.config.refusal_linger,
            )
            .await;
            Err(TransportError::Hello(e))
        }
    }
}

/// A control frame around an already-encoded payload.
fn control_frame(payload: &[u8]) -> Result<Vec<u8>, TransportError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= FrameType::Control.max_len())
        .ok_or(ProtocolError::FrameTooLarge {
            len: payload.len() as u64,
            limit: FrameType::Control.max_len(),
        })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(
        &FrameHeader {
            kind: FrameType::Control,
            len,
        }
        .to_bytes(),
    );
    out.extend_from_slice(payload);
    Ok(out)
}

/// A member's connection to a service endpoint (`tds-authority/1`).
#[derive(Debug)]
pub struct ServiceConnection {
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl ServiceConnection {
    /// Connects to `addr` with `identity`'s key, requires the server's TLS key to be
    /// `server_key`, and passes the hello (our credential), all within
    /// `config.hello_timeout`.
    pub async fn connect(
        addr: SocketAddr,
        identity: &LocalIdentity,
        server_key: &PublicKey,
        config: &TransportConfig,
    ) -> Result<ServiceConnection, TransportError> {
        let started = tokio::time::Instant::now();
        let (endpoint, conn) = connect_pinned(
            addr,
            identity.signer.clone(),
            ALPN_AUTHORITY,
            server_key,
            config,
        )
        .await?;
        let hello = Message::Hello(Hello {
            versions: VERSIONS.to_vec(),
            credential: identity.credential.clone().into(),
            crl: identity.crl.clone().map(Into::into),
            agent: concat!("tds-transport/", env!("CARGO_PKG_VERSION")).to_owned(),
        });
        let go = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(&frame::encode_control(&hello)?).await?;
            send.finish()?;
            match read_frame(&mut recv, Accept::Control, MAX_CONTROL).await? {
                Some(reply) => match frame::decode(&reply)? {
                    frame::Frame::Control(Message::Ack(_)) => Ok(()),
                    frame::Frame::Control(Message::Error(r)) => Err(TransportError::Refused(r)),
                    frame::Frame::Control(other) => Err(TransportError::Hello(
                        HelloError::UnexpectedMessage(other.name()),
                    )),
                    frame::Frame::Data(..) => Err(TransportError::Hello(
                        HelloError::UnexpectedMessage("data frame"),
                    )),
                },
                None => Err(conn.closed().await.into()),
            }
        };
        let left = config.hello_timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, go).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                conn.close(VarInt::from_u32(close::DONE), b"");
                return Err(e);
            }
            Err(_) => {
                conn.close(VarInt::from_u32(close::DONE), b"");
                return Err(TransportError::Timeout("the handshake and hello"));
            }
        }
        config.open_up(&conn);
        Ok(ServiceConnection {
            conn,
            _endpoint: endpoint,
        })
    }

    /// Sends one request payload on a new stream and returns the reply payload (at most
    /// `max_reply` bytes, checked before it is read). A transport-level refusal of the
    /// request is an `error` message of the connector protocol, which the caller's
    /// decoder reads like its own error message (the same bytes).
    pub async fn request(&self, payload: &[u8], max_reply: u32) -> Result<Vec<u8>, TransportError> {
        let frame = control_frame(payload)?;
        let (mut send, mut recv) = self.conn.open_bi().await?;
        match send.write_all(&frame).await {
            Ok(()) | Err(quinn::WriteError::Stopped(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let _ = send.finish();
        match read_frame(&mut recv, Accept::Control, max_reply).await? {
            Some(mut reply) => Ok(reply.split_off(HEADER_LEN.min(reply.len()))),
            None => Err(self.conn.closed().await.into()),
        }
    }

    /// The server's key, as TLS proved it.
    pub fn server_key(&self) -> Result<PublicKey, TransportError> {
        tls_peer_key(&self.conn).map_err(TransportError::Hello)
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.conn.close(VarInt::from_u32(close::DONE), b"");
    }

    /// Whether the connection is closed, and why.
    pub fn close_reason(&self) -> Option<TransportError> {
        self.conn.close_reason().map(Into::into)
    }
}
