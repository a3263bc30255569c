//! The protocol's own signed objects: negotiation notices (FINALIZED, TERMINATED) and
//! transfer receipts. Offers, requests and agreements are the policy crate's.

use serde::{Deserialize, Serialize};
use tds_core::cose::{self, CoseError, SignedObject};
use tds_core::hash::{Domain, Hash256};
use tds_core::{PublicKey, Signer, Timestamp};

use crate::message::Pid;

/// Most bytes of a notice's or receipt's envelope.
pub const MAX_SIGNED_LEN: usize = 8 * 1024;

/// Longest reason text in a notice.
pub const MAX_REASON_LEN: usize = 1024;

/// What a notice says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The provider finalizes the negotiation (DSP event FINALIZED).
    Finalized,
    /// The sender terminates the negotiation.
    Terminated,
}

/// A signed negotiation notice: the FINALIZED event or a termination, by one party.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    /// What it says.
    pub kind: NoticeKind,
    /// The consumer's process id.
    pub consumer_pid: Pid,
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The agreement it concerns, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<Hash256>,
    /// The sender's participant id.
    pub party: Hash256,
    /// The sender's public key (`party` is its id).
    pub party_key: PublicKey,
    /// A reason code (terminations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why, in words (terminations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When.
    pub time: Timestamp,
}

impl SignedObject for Notice {
    const CONTENT_TYPE: &'static str = "application/tds.notice+cbor";
}

/// What the consumer received in a transfer, signed by the consumer: both sides log it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferReceipt {
    /// The consumer's process id of the transfer.
    pub consumer_pid: Pid,
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The agreement the transfer was made under.
    pub agreement: Hash256,
    /// The content root of the asset (its manifest's commitment).
    pub root: Hash256,
    /// The asset's size in bytes.
    pub size: u64,
    /// Bytes of verified chunks the consumer holds.
    pub bytes: u64,
    /// Verified chunks the consumer holds.
    pub chunks: u64,
    /// Whether every chunk was received and verified.
    pub complete: bool,
    /// The consumer's participant id.
    pub consumer: Hash256,
    /// The consumer's public key (`consumer` is its id).
    pub consumer_key: PublicKey,
    /// When.
    pub time: Timestamp,
}

impl SignedObject for TransferReceipt {
    const CONTENT_TYPE: &'static str = "application/tds.transfer-receipt+cbor";
}

/// Why a notice or receipt was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignedError {
    /// The envelope or signature.
    #[error(transparent)]
    Cose(#[from] CoseError),
    /// Longer than [`MAX_SIGNED_LEN`].
    #[error("{what} of {len} bytes exceeds the limit of {MAX_SIGNED_LEN}")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// Signed by someone other than the peer of the connection.
    #[error("{what} names party {named}, not the peer {peer}")]
    WrongParty {
        /// What.
        what: &'static str,
        /// The party it names.
        named: Hash256,
        /// The peer.
        peer: Hash256,
    },
    /// For another process or agreement.
    #[error("{what} is for another {field}")]
    Mismatch {
        /// What.
        what: &'static str,
        /// The field that differs.
        field: &'static str,
    },
}

impl tds_core::ErrorCode for SignedError {
    fn code(&self) -> &'static str {
        match self {
            SignedError::Cose(e) => e.code(),
            SignedError::TooLarge { .. } => "protocol.signed_too_large",
            SignedError::WrongParty { .. } => "protocol.wrong_party",
            SignedError::Mismatch { .. } => "protocol.signed_mismatch",
        }
    }
}

/// The id of a transfer: the `tds/transfer/v1` hash of the agreement id and the
/// consumer's process id (what provenance events name the transfer by).
pub fn transfer_id(agreement: &Hash256, consumer_pid: &Pid) -> Hash256 {
    let mut h = Domain::TRANSFER.hasher();
    h.update(agreement.as_bytes());
    h.update(consumer_pid.as_bytes());
    h.finish()
}

/// Signs a notice.
pub fn sign_notice(key: &dyn Signer, notice: &Notice) -> Result<Vec<u8>, SignedError> {
    Ok(cose::sign(key, notice)?)
}

/// Verifies a notice signed by `peer_key`, for the processes `consumer_pid` and
/// `provider_pid`.
pub fn verify_notice(
    bytes: &[u8],
    peer_key: &PublicKey,
    consumer_pid: Pid,
    provider_pid: Pid,
) -> Result<Notice, SignedError> {
    const WHAT: &str = "notice";
    if bytes.len() > MAX_SIGNED_LEN {
        return Err(SignedError::TooLarge {
            what: WHAT,
            len: bytes.len(),
        });
    }
    let n = cose::open::<Notice>(bytes)?.verify(peer_key)?.into_value();
    if n.party != peer_key.id() || n.party_key != *peer_key {
        return Err(SignedError::WrongParty {
            what: WHAT,
            named: n.party,
            peer: peer_key.id(),
        });
    }
    if n.consumer_pid != consumer_pid || n.provider_pid != provider_pid {
        return Err(SignedError::Mismatch {
            what: WHAT,
            field: "process",
        });
    }
    if n.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_LEN)
        || n.code
            .as_ref()
            .is_some_and(|c| !tds_core::code::is_well_formed(c))
    {
        return Err(SignedError::Mismatch {
            what: WHAT,
            field: "code or reason",
        });
    }
    Ok(n)
}

/// Signs a transfer receipt.
pub fn sign_receipt(key: &dyn Signer, receipt: &TransferReceipt) -> Result<Vec<u8>, SignedError> {
    Ok(cose::sign(key, receipt)?)
}

/// A receipt whose consumer signature has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTransferReceipt {
    receipt: TransferReceipt,
    id: Hash256,
    envelope: Vec<u8>,
}

impl VerifiedTransferReceipt {
    /// The receipt.
    pub fn receipt(&self) -> &TransferReceipt {
        &self.receipt
    }

    /// Its id: the `tds/transfer-receipt/v1` hash of its canonical payload.
    pub fn id(&self) -> Hash256 {
        self.id
    }

    /// The signed envelope.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }
}

/// Verifies a receipt signed by `consumer_key` for the given processes.
pub fn verify_receipt(
    bytes: &[u8],
    consumer_key: &PublicKey,
    consumer_pid: Pid,
    provider_pid: Pid,
) -> Result<VerifiedTransferReceipt, SignedError> {
    const WHAT: &str = "transfer receipt";
    if bytes.len() > MAX_SIGNED_LEN {
        return Err(SignedError::TooLarge {
            what: WHAT,
            len: bytes.len(),
        });
    }
    let v = cose::open::<TransferReceipt>(bytes)?.verify(consumer_key)?;
    let id = Domain::TRANSFER_RECEIPT.hash(v.payload());
    let envelope = v.envelope().to_vec();
    let receipt = v.into_value();
    if receipt.consumer != consumer_key.id() || receipt.consumer_key != *consumer_key {
        return Err(SignedError::WrongParty {
            what: WHAT,
            named: receipt.consumer,
            peer: consumer_key.id(),
        });
    }
    if receipt.consumer_pid != consumer_pid || receipt.provider_pid != provider_pid {
        return Err(SignedError::Mismatch {
            what: WHAT,
            field: "process",
        });
    }
    Ok(VerifiedTransferReceipt {
        receipt,
        id,
        envelope,
    })
}
