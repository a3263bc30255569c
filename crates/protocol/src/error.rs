//! Why a frame, a message or a step was refused. Every variant has a reason code
//! ([`ErrorCode`]); a refusal sent to the peer carries the code and the message.

use tds_core::cbor::CborError;
use tds_core::ErrorCode;

/// A refused frame, message or step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame type other than control (0) or data (1).
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    /// A frame longer than its type allows.
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// The declared or actual length.
        len: u64,
        /// The limit.
        limit: u32,
    },
    /// The input ended inside a frame.
    #[error("truncated frame")]
    Truncated,
    /// Bytes after the frame.
    #[error("{0} byte(s) after the frame")]
    TrailingBytes(usize),
    /// A message name this version does not know.
    #[error("unknown message {0:?}")]
    UnknownMessage(String),
    /// A field this version does not know.
    #[error("unknown field: {0}")]
    UnknownField(String),
    /// Bytes that are not a canonical message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message whose fields do not fit together.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// What.
        what: &'static str,
        /// Why.
        why: &'static str,
    },
    /// No version in common.
    #[error("no protocol version in common (ours: {ours:?}, theirs: {theirs:?})")]
    NoCommonVersion {
        /// Ours.
        ours: Vec<u64>,
        /// Theirs.
        theirs: Vec<u64>,
    },
    /// The random source failed.
    #[error("the random source failed")]
    NoRandomness,
}

impl From<CborError> for ProtocolError {
    fn from(e: CborError) -> Self {
        match e {
            CborError::TooLarge { size, limit } => ProtocolError::FrameTooLarge {
                len: size as u64,
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
            },
            e => ProtocolError::Malformed(e.to_string()),
        }
    }
}

impl ErrorCode for ProtocolError {
    fn code(&self) -> &'static str {
        match self {
            ProtocolError::UnknownFrameType(_) => "protocol.unknown_frame_type",
            ProtocolError::FrameTooLarge { .. } => "protocol.frame_too_large",
            ProtocolError::Truncated => "protocol.truncated",
            ProtocolError::TrailingBytes(_) => "protocol.trailing_bytes",
            ProtocolError::UnknownMessage(_) => "protocol.unknown_message",
            ProtocolError::UnknownField(_) => "protocol.unknown_field",
            ProtocolError::Malformed(_) => "protocol.malformed",
            ProtocolError::Invalid { .. } => "protocol.invalid",
            ProtocolError::NoCommonVersion { .. } => "protocol.no_common_version",
            ProtocolError::NoRandomness => "protocol.no_randomness",
        }
    }
}
