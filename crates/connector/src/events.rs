//! What a connector reports as it works: typed events for logs, metrics and the operator,
//! and alerts among them for what needs a person.

use tds_core::hash::Hash256;

use crate::records::Side;

/// Something a connector did or saw.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectorEvent {
    /// A connection with a peer was set up (its credential checked).
    PeerConnected {
        /// The peer's participant id.
        peer: Hash256,
        /// Whether this side dialled.
        outgoing: bool,
    },
    /// A connection ended.
    PeerClosed {
        /// The peer.
        peer: Hash256,
        /// Why.
        reason: String,
    },
    /// An agreement came into force, stored and logged.
    AgreementConcluded {
        /// The agreement.
        agreement: Hash256,
        /// This side.
        side: Side,
        /// The other party.
        peer: Hash256,
    },
    /// A negotiation ended without an agreement.
    NegotiationFailed {
        /// The peer.
        peer: Hash256,
        /// The reason code.
        code: String,
        /// Why.
        reason: String,
    },
    /// Provider: a transfer passed the re-check and started.
    TransferStarted {
        /// The agreement.
        agreement: Hash256,
        /// The transfer id.
        transfer: Hash256,
    },
    /// A consumer's fetch made progress.
    Progress {
        /// The agreement.
        agreement: Hash256,
        /// Bytes verified and written so far (resumed ones included).
        bytes: u64,
        /// The asset's size.
        total: u64,
    },
    /// A transfer completed (both sides).
    TransferCompleted {
        /// The agreement.
        agreement: Hash256,
        /// The transfer id.
        transfer: Hash256,
        /// This side.
        side: Side,
        /// Bytes moved in this transfer.
        bytes: u64,
    },
    /// A transfer ended early.
    TransferFailed {
        /// The agreement.
        agreement: Hash256,
        /// This side.
        side: Side,
        /// The reason code.
        code: String,
        /// Why.
        reason: String,
    },
    /// Provider: a request was refused (see also the alert).
    Denied {
        /// The peer.
        peer: Hash256,
        /// The agreement invoked, if any.
        agreement: Option<Hash256>,
        /// The reason code.
        code: String,
        /// Why.
        reason: String,
    },
    /// An agreement was terminated (by either side).
    AgreementTerminated {
        /// The agreement.
        agreement: Hash256,
        /// Who ended it.
        by: Hash256,
    },
    /// A consumer's usage report arrived and verified (provider).
    UsageReported {
        /// The agreement.
        agreement: Hash256,
        /// The report id.
        report: Hash256,
    },
    /// A consumer's deletion receipt arrived and verified (provider), or this consumer
    /// deleted its copy.
    Deleted {
        /// The agreement.
        agreement: Hash256,
        /// The receipt id.
        receipt: Hash256,
    },
    /// Something needs attention.
    Alert(Alert),
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlertKind {
    /// A request was denied (a peer asked for what it may not have).
    Denial,
    /// Data arrived that does not verify, or a peer broke the protocol.
    Violation,
    /// A duty is past its deadline.
    DutyOverdue,
    /// A peer's credential is revoked (or no longer checks).
    PeerRevoked,
    /// A witness refused one of this node's checkpoints.
    WitnessRefused,
    /// A peer's log showed two views.
    SplitView,
    /// Durable storage or the log failed: what was being recorded was not acknowledged.
    Storage,
}

impl AlertKind {
    /// The kind as a word (metrics labels).
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertKind::Denial => "denial",
            AlertKind::Violation => "violation",
            AlertKind::DutyOverdue => "duty_overdue",
            AlertKind::PeerRevoked => "peer_revoked",
            AlertKind::WitnessRefused => "witness_refused",
            AlertKind::SplitView => "split_view",
            AlertKind::Storage => "storage",
        }
    }
}

/// An alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// What it is about.
    pub kind: AlertKind,
    /// A reason code.
    pub code: String,
    /// What happened, in words.
    pub message: String,
    /// The agreement it concerns.
    pub agreement: Option<Hash256>,
    /// The peer it concerns.
    pub peer: Option<Hash256>,
}
