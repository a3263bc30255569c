//! The admission path (`tds-join/1`): how a participant without a credential asks the
//! authority for one.
//!
//! TLS is the same raw-public-key TLS 1.3 as on `tds/1`, with the applicant's key; no
//! credential is asked for. The applicant opens one stream and sends one control frame
//! (at most [`JoinLimits::max_request`] bytes of payload) holding a [`JoinMessage`]
//! `admission_request` with a signed [`AdmissionRequest`]; the server answers with one
//! frame (`admitted`, `pending` or `error`) and closes the connection. Nothing else is
//! served on this ALPN. Requests are rate-limited per source address and globally.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quinn::VarInt;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tds_core::cbor;
use tds_core::cose;
use tds_core::{Clock, PublicKey, Signer, Timestamp};
use tds_identity::ParticipantId;
use tds_protocol::frame::{FrameHeader, FrameType, CONTROL_LIMITS, HEADER_LEN, MAX_CONTROL};
use tds_protocol::{Message, ProtocolError, Refusal};

use crate::config::TransportConfig;
use crate::endpoint::{refuse, tls_peer_key};
use crate::error::{close, close_reason, refusal_of, JoinError, TransportError};
use crate::tls::{self, ALPN_JOIN};
use crate::wire::{read_frame, refuse_rest, Accept};

pub use tds_protocol::join::{AdmissionRequest, ADMISSION_REQUEST_VERSION};

/// An admission request whose signature, fields, freshness and binding to the TLS key
/// were checked. Only the admission path makes one.
#[derive(Clone, Debug)]
pub struct VerifiedAdmissionRequest {
    request: AdmissionRequest,
    envelope: Vec<u8>,
    source: SocketAddr,
}

impl VerifiedAdmissionRequest {
    /// The request.
    pub fn request(&self) -> &AdmissionRequest {
        &self.request
    }

    /// The signed envelope as received (to keep as evidence).
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The applicant's address.
    pub fn source(&self) -> SocketAddr {
        self.source
    }

    /// The applicant's participant id.
    pub fn applicant(&self) -> ParticipantId {
        ParticipantId::of(&self.request.applicant_key)
    }
}

/// Checks a signed admission request: the envelope, the signature by `applicant_key`,
/// that key equal to the TLS key, the fields, and `time` within `max_skew` of `now`.
pub fn verify_request(
    envelope: &[u8],
    tls_key: &PublicKey,
    now: Timestamp,
    max_skew: Duration,
    source: SocketAddr,
) -> Result<VerifiedAdmissionRequest, JoinError> {
    let unverified = cose::open::<AdmissionRequest>(envelope)?;
    let key = unverified.value().applicant_key;
    if key != *tls_key {
        return Err(JoinError::KeyMismatch {
            tls: ParticipantId::of(tls_key),
            signer: ParticipantId::of(&key),
        });
    }
    let request = unverified.verify(&key)?.into_value();
    request.check()?;
    let skew_ms = if request.time > now {
        request.time.millis_since(now)
    } else {
        now.millis_since(request.time)
    };
    if u128::from(skew_ms) > max_skew.as_millis() {
        return Err(JoinError::Stale {
            time: request.time,
            skew_ms,
        });
    }
    Ok(VerifiedAdmissionRequest {
        request,
        envelope: envelope.to_vec(),
        source,
    })
}

/// The messages of `tds-join/1`, carried in control frames: canonical CBOR, externally
/// tagged like the connector protocol's messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum JoinMessage {
    /// Applicant → authority: the signed [`AdmissionRequest`].
    AdmissionRequest(AdmissionRequestMsg),
    /// Authority → applicant: the credential.
    Admitted(AdmittedMsg),
    /// Authority → applicant: received, to be decided later.
    Pending(PendingMsg),
    /// Authority → applicant: refused.
    Error(Refusal),
}

/// `admission_request`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionRequestMsg {
    /// The COSE_Sign1 of the [`AdmissionRequest`].
    pub request: ByteBuf,
}

/// `admitted`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmittedMsg {
    /// The signed membership credential.
    pub credential: ByteBuf,
}

/// `pending`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingMsg {
    /// Words for the applicant (what happens next).
    pub note: String,
}

impl JoinMessage {
    fn name(&self) -> &'static str {
        match self {
            JoinMessage::AdmissionRequest(_) => "admission_request",
            JoinMessage::Admitted(_) => "admitted",
            JoinMessage::Pending(_) => "pending",
            JoinMessage::Error(_) => "error",
        }
    }

    /// The whole control frame.
    pub fn encode_frame(&self) -> Result<Vec<u8>, TransportError> {
        let payload = cbor::encode_with(self, &CONTROL_LIMITS)
            .map_err(|e| TransportError::Frame(e.into()))?;
        let len = u32::try_from(payload.len()).map_err(|_| ProtocolError::FrameTooLarge {
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
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Decodes a whole control frame: the header must say control and give exactly the
    /// payload's length (found by the `join` fuzz target: the header was not checked).
    pub fn decode_frame(frame: &[u8]) -> Result<JoinMessage, JoinError> {
        let (head, payload) = frame
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(ProtocolError::Truncated)?;
        let header = FrameHeader::parse(head)?;
        if header.kind != FrameType::Control {
            return Err(JoinError::UnexpectedMessage(
                "a data frame on the admission path".into(),
            ));
        }
        let len = header.len as usize;
        if payload.len() < len {
            return Err(ProtocolError::Truncated.into());
        }
        if payload.len() > len {
            return Err(ProtocolError::TrailingBytes(payload.len() - len).into());
        }
        cbor::decode_with::<JoinMessage>(payload, &CONTROL_LIMITS).map_err(|e| {
            // Name what it was, if it is a message of the connector protocol.
            match Message::decode(payload) {
                Ok(m) => JoinError::UnexpectedMessage(format!("{:?} message", m.name())),
                Err(_) => {
                    JoinError::UnexpectedMessage(format!("a frame that is no join message ({e})"))
                }
            }
        })
    }
}

/// What the [`AdmissionHandler`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdmissionReply {
    /// Admitted: the signed credential.
    Admitted(Vec<u8>),
    /// Received; the authority decides later.
    Pending(String),
    /// Refused, with a reason code.
    Refused(Refusal),
}

/// Decides (or records) admission requests. Called on a blocking thread, so it may take
/// locks or write files.
pub trait AdmissionHandler: Send + Sync + 'static {
    /// The reply to a verified request.
    fn handle(&self, request: VerifiedAdmissionRequest) -> AdmissionReply;
}

impl<F> AdmissionHandler for F
where
    F: Fn(VerifiedAdmissionRequest) -> AdmissionReply + Send + Sync + 'static,
{
    fn handle(&self, request: VerifiedAdmissionRequest) -> AdmissionReply {
        self(request)
    }
}

/// A token bucket's shape: `burst` requests at once, refilled at `per_minute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Bucket size.
    pub burst: u32,
    /// Tokens added per minute.
    pub per_minute: u32,
}

/// Limits of the admission path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinLimits {
    /// Largest request frame payload. Default 16 KiB.
    pub max_request: u32,
    /// Per source IP address. Default 4 at once, 2 per minute.
    pub per_source: RateLimit,
    /// Over all sources. Default 64 at once, 600 per minute.
    pub global: RateLimit,
    /// Source addresses tracked at once; beyond that, new sources are refused until
    /// buckets refill. Default 4096.
    pub max_sources: usize,
    /// Largest distance between a request's `time` and our clock. Default 5 minutes.
    pub max_skew: Duration,
}

impl Default for JoinLimits {
    fn default() -> Self {
        JoinLimits {
            max_request: 16 * 1024,
            per_source: RateLimit {
                burst: 4,
                per_minute: 2,
            },
            global: RateLimit {
                burst: 64,
                per_minute: 600,
            },
            max_sources: 4096,
            max_skew: Duration::from_secs(300),
        }
    }
}

/// One token costs this many units; a bucket gains `per_minute` units per millisecond.
const TOKEN: u64 = 60_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    units: u64,
    last: Timestamp,
}

impl Bucket {
    fn full(limit: RateLimit, now: Timestamp) -> Bucket {
        Bucket {
            units: u64::from(limit.burst) * TOKEN,
            last: now,
        }
    }

    fn refill(&mut self, limit: RateLimit, now: Timestamp) {
        let gained = now
            .millis_since(self.last)
            .saturating_mul(u64::from(limit.per_minute));
        self.units = self
            .units
            .saturating_add(gained)
            .min(u64::from(limit.burst) * TOKEN);
        self.last = self.last.max(now);
    }
}

/// Token buckets per source address and over all sources. Time comes from the caller.
#[derive(Debug)]
pub struct RateLimiter {
    per_source: RateLimit,
    global_limit: RateLimit,
    max_sources: usize,
    sources: HashMap<IpAddr, Bucket>,
    global: Option<Bucket>,
}

impl RateLimiter {
    /// A limiter with full buckets.
    pub fn new(limits: &JoinLimits) -> Self {
        RateLimiter {
            per_source: limits.per_source,
            global_limit: limits.global,
            max_sources: limits.max_sources,
            sources: HashMap::new(),
            global: None,
        }
    }

    /// Takes a token from `source`'s bucket and from the global one, or refuses (taking
    /// none) saying which is empty.
    pub fn check(&mut self, source: IpAddr, now: Timestamp) -> Result<(), JoinError> {
        let global_limit = self.global_limit;
        let global = self
            .global
            .get_or_insert_with(|| Bucket::full(global_limit, now));
        global.refill(global_limit, now);
        let global_ok = global.units >= TOKEN;
        if !self.sources.contains_key(&source) && self.sources.len() >= self.max_sources {
            // Forget sources whose buckets are full again: they are as good as new.
            let limit = self.per_source;
            self.sources.retain(|_, b| {
                b.refill(limit, now);
                b.units < u64::from(limit.burst) * TOKEN
            });
            if self.sources.len() >= self.max_sources {
                return Err(JoinError::RateLimited("too many sources"));
            }
        }
        let limit = self.per_source;
        let bucket = self
            .sources
            .entry(source)
            .or_insert_with(|| Bucket::full(limit, now));
        bucket.refill(limit, now);
        if bucket.units < TOKEN {
            return Err(JoinError::RateLimited("this source address"));
        }
        if !global_ok {
            return Err(JoinError::RateLimited("all sources"));
        }
        bucket.units -= TOKEN;
        if let Some(g) = self.global.as_mut() {
            g.units -= TOKEN;
        }
        Ok(())
    }
}

/// The server half of the admission path.
pub(crate) struct JoinServer {
    handler: Arc<dyn AdmissionHandler>,
    limits: JoinLimits,
    limiter: Mutex<RateLimiter>,
}

impl JoinServer {
    pub(crate) fn new(handler: Arc<dyn AdmissionHandler>, limits: JoinLimits) -> Self {
        JoinServer {
            limiter: Mutex::new(RateLimiter::new(&limits)),
            handler,
            limits,
        }
    }

    /// Serves one `tds-join/1` connection: at most one request, then the close.
    pub(crate) async fn serve(
        &self,
        linger: Duration,
        clock: &dyn Clock,
        conn: quinn::Connection,
    ) -> Result<(), TransportError> {
        let source = conn.remote_address();
        let refused = |e: JoinError| TransportError::Join(e);
        let tls_key = match tls_peer_key(&conn) {
            Ok(k) => k,
            Err(e) => {
                refuse(&conn, None, close::REFUSED, refusal_of(&e), linger).await;
                return Err(TransportError::Hello(e));
            }
        };
        let limited = self
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(source.ip(), clock.now());
        if let Err(e) = limited {
            refuse(&conn, None, close::REFUSED, refusal_of(&e), linger).await;
            return Err(refused(e));
        }
        let (mut send, mut recv) = conn.accept_bi().await?;
        let request = match read_frame(&mut recv, Accept::Control, self.limits.max_request).await {
            Ok(Some(frame)) => JoinMessage::decode_frame(&frame),
            Ok(None) => Err(JoinError::UnexpectedMessage("an empty stream".into())),
            Err(TransportError::Frame(e)) => {
                refuse_rest(&mut recv);
                Err(JoinError::Protocol(e))
            }
            Err(e) => return Err(e),
        };
        let verified = request.and_then(|m| match m {
            JoinMessage::AdmissionRequest(r) => verify_request(
                &r.request,
                &tls_key,
                clock.now(),
                self.limits.max_skew,
                source,
            ),
            other => Err(JoinError::UnexpectedMessage(format!("{:?}", other.name()))),
        });
        let verified = match verified {
            Ok(v) => v,
            Err(e) => {
                refuse(&conn, Some(send), close::REFUSED, refusal_of(&e), linger).await;
                return Err(refused(e));
            }
        };
        let handler = self.handler.clone();
        let reply = tokio::task::spawn_blocking(move || handler.handle(verified))
            .await
            .map_err(|e| TransportError::Task(e.to_string()))?;
        let message = match reply {
            AdmissionReply::Admitted(credential) => JoinMessage::Admitted(AdmittedMsg {
                credential: credential.into(),
            }),
            AdmissionReply::Pending(note) => JoinMessage::Pending(PendingMsg { note }),
            AdmissionReply::Refused(r) => JoinMessage::Error(r),
        };
        let bytes = message.encode_frame()?;
        let sent = async {
            send.write_all(&bytes).await.ok()?;
            send.finish().ok()?;
            send.stopped().await.ok()
        };
        let _ = tokio::time::timeout(linger, sent).await;
        let done = refusal_of(&JoinError::OneRequest);
        conn.close(VarInt::from_u32(close::DONE), &close_reason(&done));
        Ok(())
    }
}

/// An applicant's connection to the admission path.
#[derive(Debug)]
pub struct JoinConnection {
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl JoinConnection {
    /// Connects to the admission path at `addr` with the applicant's key, and requires
    /// the server's TLS key to be `server_key` (the authority's published join key).
    pub async fn connect(
        addr: SocketAddr,
        applicant: Arc<dyn Signer>,
        server_key: &PublicKey,
        config: &TransportConfig,
    ) -> Result<JoinConnection, TransportError> {
        let (endpoint, conn) =
            connect_pinned(addr, applicant, ALPN_JOIN, server_key, config).await?;
        Ok(JoinConnection {
            conn,
            _endpoint: endpoint,
        })
    }

    /// Sends a signed admission request and returns the authority's answer; a refusal
    /// (by the handler or by the admission path) is [`TransportError::Refused`] or
    /// [`TransportError::Closed`] with the reason code.
    pub async fn request(&self, signed: &[u8]) -> Result<AdmissionReply, TransportError> {
        let frame = JoinMessage::AdmissionRequest(AdmissionRequestMsg {
            request: signed.to_vec().into(),
        })
        .encode_frame()?;
        let reply = self.exchange(&frame).await?;
        match JoinMessage::decode_frame(&reply).map_err(TransportError::Join)? {
            JoinMessage::Admitted(a) => Ok(AdmissionReply::Admitted(a.credential.into_vec())),
            JoinMessage::Pending(p) => Ok(AdmissionReply::Pending(p.note)),
            JoinMessage::Error(r) => Err(TransportError::Refused(r)),
            JoinMessage::AdmissionRequest(_) => Err(TransportError::Join(
                JoinError::UnexpectedMessage("\"admission_request\" from the server".into()),
            )),
        }
    }

    /// Sends `frame` as it is on a new stream and returns the one reply frame: what
    /// [`JoinConnection::request`] does, open for clients that build frames themselves.
    pub async fn exchange(&self, frame: &[u8]) -> Result<Vec<u8>, TransportError> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        match send.write_all(frame).await {
            Ok(()) | Err(quinn::WriteError::Stopped(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let _ = send.finish();
        match read_frame(&mut recv, Accept::Control, MAX_CONTROL).await? {
            Some(reply) => Ok(reply),
            None => Err(self.conn.closed().await.into()),
        }
    }
}

/// Connects to `addr` with `signer`'s raw key and ALPN `alpn`, and requires the server's
/// TLS key to be `server_key` (checked right after TLS, before anything is sent), all
/// within `config.hello_timeout`. Shared by the admission path and the service path,
/// whose servers hold no membership credential and are known by key alone.
pub(crate) async fn connect_pinned(
    addr: SocketAddr,
    signer: Arc<dyn Signer>,
    alpn: &[u8],
    server_key: &PublicKey,
    config: &TransportConfig,
) -> Result<(quinn::Endpoint, quinn::Connection), TransportError> {
    let tls = tls::client_config(signer, alpn)
        .map_err(|e| TransportError::Config(format!("TLS: {e}")))?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError::Config(format!("QUIC TLS: {e}")))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(config.quinn()?);
    let bind: SocketAddr = match addr {
        SocketAddr::V4(a) if a.ip().is_loopback() => (std::net::Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(a) if a.ip().is_loopback() => (std::net::Ipv6Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let endpoint = quinn::Endpoint::client(bind)
        .map_err(|source| TransportError::Bind { addr: bind, source })?;
    let go = async {
        let conn = endpoint.connect_with(client, addr, "tds")?.await?;
        let found = tls_peer_key(&conn).map_err(TransportError::Hello)?;
        if found != *server_key {
            let e = crate::error::HelloError::UnexpectedPeer {
                expected: ParticipantId::of(server_key),
                found: ParticipantId::of(&found),
            };
            conn.close(
                VarInt::from_u32(close::REFUSED),
                &close_reason(&refusal_of(&e)),
            );
            return Err(TransportError::Hello(e));
        }
        Ok(conn)
    };
    let conn = tokio::time::timeout(config.hello_timeout, go)
        .await
        .map_err(|_| TransportError::Timeout("the handshake"))??;
    Ok((endpoint, conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(burst: u32, per_minute: u32, global_burst: u32) -> JoinLimits {
        JoinLimits {
            per_source: RateLimit { burst, per_minute },
            global: RateLimit {
                burst: global_burst,
                per_minute: 60,
            },
            max_sources: 2,
            ..JoinLimits::default()
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    /// Found by the `join` fuzz target (fuzz/seeds/join/regression-frame-header): a
    /// frame whose header said "data" or gave another length decoded as a message.
    #[test]
    fn regression_join_frame_header_is_checked() {
        let frame = JoinMessage::Pending(PendingMsg {
            note: "queued".into(),
        })
        .encode_frame()
        .unwrap();
        assert!(JoinMessage::decode_frame(&frame).is_ok());
        let mut data = frame.clone();
        data[0] = 1;
        assert!(JoinMessage::decode_frame(&data).is_err());
        let mut longer = frame.clone();
        longer.push(0);
        assert!(JoinMessage::decode_frame(&longer).is_err());
        let mut wrong_len = frame.clone();
        wrong_len[4] = wrong_len[4].wrapping_add(1);
        assert!(JoinMessage::decode_frame(&wrong_len).is_err());
        assert!(JoinMessage::decode_frame(&frame[..frame.len() - 1]).is_err());
        assert!(JoinMessage::decode_frame(&frame[..3]).is_err());
    }

    #[test]
    fn buckets_refuse_after_the_burst_and_refill_with_time() {
        let t0 = Timestamp::from_millis(1_000_000);
        let mut l = RateLimiter::new(&limits(2, 1, 100));
        assert!(l.check(ip(1), t0).is_ok());
        assert!(l.check(ip(1), t0).is_ok());
        let e = l.check(ip(1), t0).unwrap_err();
        assert_eq!(tds_core::ErrorCode::code(&e), "transport.join.rate_limited");
        // Another source has its own bucket.
        assert!(l.check(ip(2), t0).is_ok());
        // Half a minute: half a token, still refused; a minute: one.
        assert!(l.check(ip(1), t0.saturating_add_millis(30_000)).is_err());
        assert!(l.check(ip(1), t0.saturating_add_millis(60_000)).is_ok());
        assert!(l.check(ip(1), t0.saturating_add_millis(60_000)).is_err());
    }

    #[test]
    fn the_global_bucket_limits_all_sources_and_sources_are_bounded() {
        let t0 = Timestamp::from_millis(1_000_000);
        let mut l = RateLimiter::new(&limits(5, 60, 3));
        assert!(l.check(ip(1), t0).is_ok());
        assert!(l.check(ip(2), t0).is_ok());
        assert!(l.check(ip(1), t0).is_ok());
        assert!(matches!(
            l.check(ip(2), t0),
            Err(JoinError::RateLimited("all sources"))
        ));
        // A third source while two are tracked and neither is full again.
        assert!(matches!(
            l.check(ip(3), t0),
            Err(JoinError::RateLimited("too many sources"))
        ));
        // Once their buckets are full again they are forgotten.
        let later = t0.saturating_add_millis(10 * 60_000);
        assert!(l.check(ip(3), later).is_ok());
    }
}
