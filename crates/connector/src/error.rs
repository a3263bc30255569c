//! The connector's error type.

use tds_core::hash::Hash256;
use tds_core::ErrorCode;
use tds_protocol::Refusal;

use crate::store::StoreError;

/// Why a connector call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The durable store failed; nothing the call was doing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The provenance log failed; nothing the call was doing was acknowledged.
    #[error(transparent)]
    Log(#[from] tds_provenance::LogError),
    /// The network or the peer's connection.
    #[error(transparent)]
    Transport(#[from] tds_transport::TransportError),
    /// The peer refused (its code and reason), or the protocol ended the process.
    #[error("{what} refused: {}: {}", refusal.code, refusal.reason)]
    Refused {
        /// What was refused (`negotiation`, `transfer`, `catalog`, ...).
        what: &'static str,
        /// The peer's (or this side's) code and reason.
        refusal: Refusal,
    },
    /// This side could not make the call (its state, its arguments).
    #[error(transparent)]
    Call(#[from] tds_protocol::session::CallError),
    /// A signed object this side made or was given does not check.
    #[error("{what}: {message}")]
    Invalid {
        /// What.
        what: &'static str,
        /// Why.
        message: String,
        /// The code of the underlying error.
        code: &'static str,
    },
    /// A public-data licence does not cover the offer (or does not check): this
    /// operator may not publish it, or this consumer will not negotiate it. The message
    /// ends with the `licence.*` code.
    #[error("{0} ({code})", code = tds_core::ErrorCode::code(.0))]
    Licence(tds_policy::licence::LicenceError),
    /// Reading or writing a data file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// No such thing here.
    #[error("no {what} {id}")]
    NotFound {
        /// What.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The agreement does not allow it.
    #[error("agreement {agreement}: {message}")]
    Agreement {
        /// The agreement.
        agreement: Hash256,
        /// Why.
        message: String,
    },
    /// The peer did not answer in time.
    #[error("{what} timed out after {ms} ms")]
    Timeout {
        /// What.
        what: &'static str,
        /// How long was waited.
        ms: u64,
    },
    /// The connector is shutting down or the session ended.
    #[error("{0}")]
    Closed(String),
}

impl ConnectorError {
    pub(crate) fn invalid<E: ErrorCode + std::fmt::Display>(what: &'static str, e: &E) -> Self {
        ConnectorError::Invalid {
            what,
            message: e.to_string(),
            code: e.code(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ConnectorError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// The peer's refusal, when the peer refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ConnectorError::Refused { refusal, .. } => Some(refusal),
            ConnectorError::Call(c) => Some(&c.refusal),
            _ => None,
        }
    }
}

impl ErrorCode for ConnectorError {
    fn code(&self) -> &'static str {
        match self {
            ConnectorError::Store(e) => e.code(),
            ConnectorError::Log(e) => e.code(),
            ConnectorError::Transport(e) => e.code(),
            ConnectorError::Refused { .. } => "connector.refused",
            ConnectorError::Call(_) => "connector.call",
            ConnectorError::Invalid { code, .. } => code,
            ConnectorError::Licence(e) => e.code(),
            ConnectorError::Io { .. } => "connector.io",
            ConnectorError::NotFound { .. } => "connector.not_found",
            ConnectorError::Agreement { .. } => "connector.agreement",
            ConnectorError::Timeout { .. } => "connector.timeout",
            ConnectorError::Closed(_) => "connector.closed",
        }
    }
}
