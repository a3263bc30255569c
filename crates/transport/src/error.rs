//! Errors, close codes, and how refusals travel.

use std::fmt;

use tds_core::cbor::CborError;
use tds_core::cose::CoseError;
use tds_core::ErrorCode;
use tds_identity::{FieldError, IdentityError, ParticipantId};
use tds_protocol::{ProtocolError, Refusal};

/// Application close codes (QUIC `CONNECTION_CLOSE` of type 0x1d). The close reason is
/// `<reason code>: <words>`, so the side that is closed learns why in the same vocabulary
/// as everywhere else (`spec/reasons.md`).
pub mod close {
    /// A normal end: one side is done.
    pub const DONE: u32 = 0;
    /// The hello (or an admission request) was refused; the reason says why.
    pub const REFUSED: u32 = 1;
    /// The peer's credential stopped verifying during the session (revoked, expired, or
    /// its authority's revocation list went stale).
    pub const REVOKED: u32 = 2;
    /// The peer broke the transport's rules.
    pub const PROTOCOL: u32 = 3;
}

/// The close reason bytes for a refusal: `<code>: <reason>`, cut to fit a QUIC packet.
pub(crate) fn close_reason(refusal: &Refusal) -> Vec<u8> {
    let mut s = format!("{}: {}", refusal.code, refusal.reason);
    if s.len() > MAX_CLOSE_REASON {
        let mut end = MAX_CLOSE_REASON;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s.into_bytes()
}

/// Longest close reason sent (a CONNECTION_CLOSE frame must fit one packet).
const MAX_CLOSE_REASON: usize = 512;

/// A refusal read back from close reason bytes: the code before the first `": "` if it
/// has the shape of a code, else `transport.unknown` with the whole text as the reason.
pub(crate) fn parse_close_reason(bytes: &[u8]) -> Refusal {
    let text = String::from_utf8_lossy(bytes);
    match text.split_once(": ") {
        Some((code, reason)) if tds_core::code::is_well_formed(code) => Refusal::new(code, reason),
        _ => Refusal {
            code: "transport.unknown".into(),
            reason: text.into_owned(),
        },
    }
}

/// A refusal carrying `error`'s code and its whole message chain.
pub fn refusal_of<E: ErrorCode + std::error::Error + 'static>(error: &E) -> Refusal {
    Refusal::new(error.code(), tds_core::code::full_message(error))
}

/// Why the peer's hello (or its TLS key) did not pass our checks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelloError {
    /// The credential does not verify in the trust store.
    #[error("peer credential")]
    Credential(#[source] IdentityError),
    /// The credential is for another key than the one the peer proved in TLS.
    #[error("peer credential is for {credential}, but the connection's key is {tls}")]
    KeyMismatch {
        /// The id of the TLS key.
        tls: ParticipantId,
        /// The credential's subject.
        credential: ParticipantId,
    },
    /// The peer is not the participant we meant to reach.
    #[error("peer is {found}, expected {expected}")]
    UnexpectedPeer {
        /// Whom we meant to reach.
        expected: ParticipantId,
        /// Whom we reached.
        found: ParticipantId,
    },
    /// The first message was not a hello.
    #[error("expected a hello, got {0:?}")]
    UnexpectedMessage(&'static str),
    /// The stream ended without a hello.
    #[error("no hello before the stream ended")]
    Missing,
    /// TLS gave no raw public key of the peer (a bug: the verifiers require one).
    #[error("the TLS handshake gave no raw public key of the peer")]
    NoPeerKey,
    /// The hello frame or message was refused, or no version is in common.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl ErrorCode for HelloError {
    fn code(&self) -> &'static str {
        match self {
            HelloError::Credential(e) => e.code(),
            HelloError::KeyMismatch { .. } => "transport.hello.key_mismatch",
            HelloError::UnexpectedPeer { .. } => "transport.hello.unexpected_peer",
            HelloError::UnexpectedMessage(_) => "transport.hello.unexpected_message",
            HelloError::Missing => "transport.hello.missing",
            HelloError::NoPeerKey => "transport.hello.no_peer_key",
            HelloError::Protocol(e) => e.code(),
        }
    }
}

/// Why an admission request on `tds-join/1` was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// Too many requests from this source address, or from everyone.
    #[error("too many admission requests ({0}); try again later")]
    RateLimited(&'static str),
    /// Something other than one admission request.
    #[error("only one admission request is accepted on tds-join/1, got {0}")]
    UnexpectedMessage(String),
    /// A second request on one connection.
    #[error("one admission request per connection")]
    OneRequest,
    /// The request's signer is not the key the applicant proved in TLS.
    #[error("admission request signed by {signer}, but the connection's key is {tls}")]
    KeyMismatch {
        /// The id of the TLS key.
        tls: ParticipantId,
        /// The id of the signing key.
        signer: ParticipantId,
    },
    /// The request's time is too far from ours (a replayed or badly clocked request).
    #[error("admission request made at {time}, {skew_ms} ms from our clock")]
    Stale {
        /// The request's time.
        time: tds_core::Timestamp,
        /// The distance to our clock.
        skew_ms: u64,
    },
    /// A field breaks a rule.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The COSE envelope was refused.
    #[error(transparent)]
    Envelope(#[from] CoseError),
    /// Not canonical CBOR of the expected type.
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// The frame was refused (too large for the admission path, say).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl ErrorCode for JoinError {
    fn code(&self) -> &'static str {
        match self {
            JoinError::RateLimited(_) => "transport.join.rate_limited",
            JoinError::UnexpectedMessage(_) => "transport.join.unexpected_message",
            JoinError::OneRequest => "transport.join.one_request",
            JoinError::KeyMismatch { .. } => "transport.join.key_mismatch",
            JoinError::Stale { .. } => "transport.join.stale_request",
            JoinError::Field(e) => e.reason.code(),
            JoinError::Envelope(e) => e.code(),
            JoinError::Cbor(e) => e.code(),
            JoinError::Protocol(e) => e.code(),
        }
    }
}

/// Who ended a connection, in [`TransportError::Closed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closer {
    /// This side.
    Local,
    /// The peer.
    Peer,
}

impl fmt::Display for Closer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Closer::Local => "we",
            Closer::Peer => "the peer",
        })
    }
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The endpoint could not be set up (bad local identity, TLS configuration).
    #[error("transport configuration: {0}")]
    Config(String),
    /// Binding the UDP socket failed.
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A connection could not be started (bad address, endpoint stopping).
    #[error("cannot connect")]
    Connect(#[from] quinn::ConnectError),
    /// The peer's hello or TLS key did not pass our checks; the peer was told why and
    /// the connection closed.
    #[error("the peer's hello was refused")]
    Hello(#[source] HelloError),
    /// An admission request was refused (the applicant was told why).
    #[error("admission request refused")]
    Join(#[source] JoinError),
    /// The peer refused us: an `error` message in answer to our hello or admission
    /// request. [`TransportError::peer_refusal`] gives its code and reason.
    #[error("refused by the peer: {}: {}", .0.code, .0.reason)]
    Refused(Refusal),
    /// The connection was closed with an application close code and a reason.
    #[error("connection closed by {by} (close code {close_code}): {}: {}", .refusal.code, .refusal.reason)]
    Closed {
        /// Who closed it.
        by: Closer,
        /// The close code ([`close`]).
        close_code: u64,
        /// The reason, parsed.
        refusal: Refusal,
    },
    /// The peer refused the connection at once, before any handshake (QUIC
    /// `CONNECTION_REFUSED`): it has as many handshakes in progress as it takes. A
    /// later attempt may pass.
    #[error("the peer refused the connection: too many handshakes in progress there")]
    Busy,
    /// The connection was lost (idle timeout, reset, a QUIC protocol error).
    #[error("connection lost")]
    Lost(#[source] quinn::ConnectionError),
    /// A frame was refused (oversize, unknown type, malformed message).
    #[error(transparent)]
    Frame(#[from] ProtocolError),
    /// The peer reset the stream with an application code.
    #[error("stream reset by the peer (code {0})")]
    StreamReset(u64),
    /// The peer stopped reading our stream with an application code.
    #[error("stream stopped by the peer (code {0})")]
    StreamStopped(u64),
    /// A step took longer than allowed.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The endpoint is closed; no more connections.
    #[error("the endpoint is closed")]
    EndpointClosed,
    /// A background task failed (it panicked or was cancelled).
    #[error("a transport task failed: {0}")]
    Task(String),
}

impl TransportError {
    /// The refusal the peer sent or closed with, if that is what this error is.
    pub fn peer_refusal(&self) -> Option<&Refusal> {
        match self {
            TransportError::Refused(r) => Some(r),
            TransportError::Closed {
                by: Closer::Peer,
                refusal,
                ..
            } => Some(refusal),
            _ => None,
        }
    }

    /// The reason code the peer gave, if the peer refused or closed.
    pub fn peer_code(&self) -> Option<&str> {
        self.peer_refusal().map(|r| r.code.as_str())
    }
}

impl ErrorCode for TransportError {
    fn code(&self) -> &'static str {
        match self {
            TransportError::Config(_) => "transport.config",
            TransportError::Bind { .. } => "transport.bind",
            TransportError::Connect(_) => "transport.connect",
            TransportError::Hello(e) => e.code(),
            TransportError::Join(e) => e.code(),
            TransportError::Refused(_) => "transport.refused",
            TransportError::Closed { .. } => "transport.closed",
            TransportError::Busy => "transport.busy",
            TransportError::Lost(_) => "transport.lost",
            TransportError::Frame(e) => e.code(),
            TransportError::StreamReset(_) => "transport.stream_reset",
            TransportError::StreamStopped(_) => "transport.stream_stopped",
            TransportError::Timeout(_) => "transport.timeout",
            TransportError::EndpointClosed => "transport.endpoint_closed",
            TransportError::Task(_) => "transport.task",
        }
    }
}

impl From<quinn::ConnectionError> for TransportError {
    fn from(e: quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => TransportError::Closed {
                by: Closer::Peer,
                close_code: c.error_code.into_inner(),
                refusal: parse_close_reason(&c.reason),
            },
            quinn::ConnectionError::TimedOut => TransportError::Timeout("the idle connection"),
            quinn::ConnectionError::ConnectionClosed(c)
                if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
            {
                TransportError::Busy
            }
            other => TransportError::Lost(other),
        }
    }
}

impl From<quinn::WriteError> for TransportError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => c.into(),
            quinn::WriteError::Stopped(code) => TransportError::StreamStopped(code.into_inner()),
            quinn::WriteError::ClosedStream => {
                TransportError::Task("write on a closed stream".into())
            }
            quinn::WriteError::ZeroRttRejected => {
                TransportError::Task("0-RTT rejected (0-RTT is never used)".into())
            }
        }
    }
}

impl From<quinn::ClosedStream> for TransportError {
    fn from(_: quinn::ClosedStream) -> Self {
        TransportError::Task("the stream was already finished or reset".into())
    }
}

impl From<quinn::ReadError> for TransportError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => c.into(),
            quinn::ReadError::Reset(code) => TransportError::StreamReset(code.into_inner()),
            quinn::ReadError::ClosedStream => {
                TransportError::Task("read on a closed stream".into())
            }
            quinn::ReadError::IllegalOrderedRead => {
                TransportError::Task("ordered read after an unordered one".into())
            }
            quinn::ReadError::ZeroRttRejected => {
                TransportError::Task("0-RTT rejected (0-RTT is never used)".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_round_trip_and_fit() {
        let r = Refusal::new("identity.revoked", "credential: serial 3 is revoked");
        assert_eq!(parse_close_reason(&close_reason(&r)), r);
        let long = Refusal::new("transport.hello.missing", "é".repeat(1000));
        assert!(close_reason(&long).len() <= MAX_CLOSE_REASON);
        assert_eq!(
            parse_close_reason(b"no code here").code,
            "transport.unknown"
        );
    }
}
