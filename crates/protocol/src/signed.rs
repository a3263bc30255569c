//! The protocol's own signed objects: negotiation notices (FINALIZED, TERMINATED),
//! transfer receipts, and what follows an agreement: the consumer's usage reports and
//! deletion receipts, and usage (metering) records either side signs for its own log.
//! Offers, requests, agreements and terminations are the policy crate's.

use serde::{Deserialize, Serialize};
use tds_core::cbor::{self, CborError};
use tds_core::cose::{self, CoseError, SignedObject};
use tds_core::hash::{Domain, Hash256};
use tds_core::{PublicKey, Signer, Timestamp};
use tds_policy::{Action, Amount, Currency};

use crate::message::Pid;

/// Most bytes of the envelope of a notice, receipt, report or record.
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

/// Why a notice, receipt, report or record was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignedError {
    /// The envelope or signature.
    #[error(transparent)]
    Cose(#[from] CoseError),
    /// The object cannot be encoded (for its id).
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// A field breaks the object's rules.
    #[error("{what}: {problem}")]
    Invalid {
        /// What.
        what: &'static str,
        /// The rule broken.
        problem: &'static str,
    },
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
            SignedError::Cbor(e) => e.code(),
            SignedError::Invalid { .. } => "protocol.signed_invalid",
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

/// Most entries in a usage report's `actions`.
pub const MAX_REPORT_ACTIONS: usize = 64;

/// How often one action was used in a usage report's period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionUses {
    /// The action.
    pub action: Action,
    /// Uses of it in the period.
    pub uses: u64,
}

/// The consumer's report of what it did with the data of an agreement over a period (the
/// `report-usage` duty), signed by the consumer and sent to the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    /// The agreement.
    pub agreement: Hash256,
    /// The consumer's participant id.
    pub consumer: Hash256,
    /// The consumer's public key (`consumer` is its id).
    pub consumer_key: PublicKey,
    /// Start of the period.
    pub from: Timestamp,
    /// End of the period (not before `from`).
    pub to: Timestamp,
    /// Uses in the period, in all.
    pub uses: u64,
    /// Bytes used in the period.
    pub bytes: u64,
    /// Uses per action, at most [`MAX_REPORT_ACTIONS`], each action once, in bytewise
    /// order of the action words.
    pub actions: Vec<ActionUses>,
    /// When it was signed.
    pub time: Timestamp,
}

impl SignedObject for UsageReport {
    const CONTENT_TYPE: &'static str = "application/tds.usage-report+cbor";
}

impl UsageReport {
    /// Its id: the `tds/usage-report/v1` hash of its canonical CBOR (the signed payload).
    pub fn id(&self) -> Result<Hash256, SignedError> {
        Ok(Domain::USAGE_REPORT.hash(&cbor::encode(self)?))
    }

    fn check(&self) -> Result<(), SignedError> {
        const WHAT: &str = "usage report";
        if self.from > self.to {
            return Err(SignedError::Invalid {
                what: WHAT,
                problem: "the period ends before it starts",
            });
        }
        if self.actions.len() > MAX_REPORT_ACTIONS {
            return Err(SignedError::Invalid {
                what: WHAT,
                problem: "more than 64 actions",
            });
        }
        let ordered = self
            .actions
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.action.as_str() < b.action.as_str()));
        if !ordered {
            return Err(SignedError::Invalid {
                what: WHAT,
                problem: "actions not in order or named twice",
            });
        }
        Ok(())
    }
}

/// The consumer's statement that it deleted what it held of an agreement's asset (the
/// `delete` duty), signed by the consumer and sent to the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionReceipt {
    /// The agreement.
    pub agreement: Hash256,
    /// The asset (its manifest id; the agreement's asset).
    pub asset: Hash256,
    /// The consumer's participant id.
    pub consumer: Hash256,
    /// The consumer's public key (`consumer` is its id).
    pub consumer_key: PublicKey,
    /// Chunks held and deleted.
    pub chunks: u64,
    /// Bytes held and deleted.
    pub bytes: u64,
    /// When the data was deleted.
    pub time: Timestamp,
}

impl SignedObject for DeletionReceipt {
    const CONTENT_TYPE: &'static str = "application/tds.deletion-receipt+cbor";
}

impl DeletionReceipt {
    /// Its id: the `tds/deletion-receipt/v1` hash of its canonical CBOR.
    pub fn id(&self) -> Result<Hash256, SignedError> {
        Ok(Domain::DELETION_RECEIPT.hash(&cbor::encode(self)?))
    }
}

/// A metering record: uses, bytes and the amount due under an agreement, signed by the
/// side that records it (each side logs its own; the two can be compared).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRecord {
    /// The agreement.
    pub agreement: Hash256,
    /// The agreement's provider.
    pub provider: Hash256,
    /// The agreement's consumer.
    pub consumer: Hash256,
    /// The transfer it meters ([`transfer_id`]), if it meters one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Hash256>,
    /// Uses.
    pub uses: u64,
    /// Bytes.
    pub bytes: u64,
    /// The amount due, in ten-thousandths of `currency`.
    pub amount: Amount,
    /// The currency.
    pub currency: Currency,
    /// When it was recorded.
    pub time: Timestamp,
    /// Who recorded it: `provider` or `consumer`.
    pub recorder: Hash256,
    /// The recorder's public key (`recorder` is its id).
    pub recorder_key: PublicKey,
}

impl SignedObject for UsageRecord {
    const CONTENT_TYPE: &'static str = "application/tds.usage-record+cbor";
}

impl UsageRecord {
    /// Its id: the `tds/usage-record/v1` hash of its canonical CBOR.
    pub fn id(&self) -> Result<Hash256, SignedError> {
        Ok(Domain::USAGE_RECORD.hash(&cbor::encode(self)?))
    }

    fn check(&self) -> Result<(), SignedError> {
        const WHAT: &str = "usage record";
        if self.provider == self.consumer {
            return Err(SignedError::Invalid {
                what: WHAT,
                problem: "provider and consumer are one participant",
            });
        }
        if self.recorder != self.provider && self.recorder != self.consumer {
            return Err(SignedError::Invalid {
                what: WHAT,
                problem: "recorded by neither the provider nor the consumer",
            });
        }
        Ok(())
    }
}

/// A verified object: its value, id and envelope; only this module's `verify_*`
/// functions make one.
macro_rules! verified {
    ($(#[$m:meta])* $name:ident, $t:ty, $get:ident, $id_doc:literal) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name {
            value: $t,
            id: Hash256,
            envelope: Vec<u8>,
        }

        impl $name {
            /// The object.
            pub fn $get(&self) -> &$t {
                &self.value
            }

            #[doc = $id_doc]
            pub fn id(&self) -> Hash256 {
                self.id
            }

            /// The signed envelope.
            pub fn envelope(&self) -> &[u8] {
                &self.envelope
            }
        }
    };
}

verified!(
    /// A usage report whose consumer signature has been checked.
    VerifiedUsageReport,
    UsageReport,
    report,
    "Its id: the `tds/usage-report/v1` hash of its canonical payload."
);

verified!(
    /// A deletion receipt whose consumer signature has been checked.
    VerifiedDeletionReceipt,
    DeletionReceipt,
    receipt,
    "Its id: the `tds/deletion-receipt/v1` hash of its canonical payload."
);

verified!(
    /// A usage record whose recorder signature has been checked.
    VerifiedUsageRecord,
    UsageRecord,
    record,
    "Its id: the `tds/usage-record/v1` hash of its canonical payload."
);

/// Signs `value` with `key`, which must be the party it names (`named`, `named_key`).
fn sign_as<T: SignedObject>(
    key: &dyn Signer,
    what: &'static str,
    value: &T,
    named: Hash256,
    named_key: &PublicKey,
) -> Result<Vec<u8>, SignedError> {
    if named != key.key_id() || *named_key != key.public_key() {
        return Err(SignedError::WrongParty {
            what,
            named,
            peer: key.key_id(),
        });
    }
    Ok(cose::sign(key, value)?)
}

/// Opens `bytes` as a `T` signed by `key`, which must be the party the object names (its
/// id and its key, as `party` reads them): the size limit, the binding of the party to
/// the key, then the signature. The object's own rules are the caller's.
fn open_signed<T: SignedObject>(
    bytes: &[u8],
    what: &'static str,
    key: &PublicKey,
    party: impl Fn(&T) -> (Hash256, PublicKey),
    domain: Domain,
) -> Result<(T, Hash256, Vec<u8>), SignedError> {
    if bytes.len() > MAX_SIGNED_LEN {
        return Err(SignedError::TooLarge {
            what,
            len: bytes.len(),
        });
    }
    let opened = cose::open::<T>(bytes)?;
    let (named, named_key) = party(opened.value());
    if named != key.id() || named_key != *key {
        return Err(SignedError::WrongParty {
            what,
            named,
            peer: key.id(),
        });
    }
    let v = opened.verify(key)?;
    let id = domain.hash(v.payload());
    let envelope = v.envelope().to_vec();
    Ok((v.into_value(), id, envelope))
}

/// Signs a usage report; `key` must be the consumer it names, and the report must keep
/// its rules (period, actions).
pub fn sign_usage_report(key: &dyn Signer, report: &UsageReport) -> Result<Vec<u8>, SignedError> {
    report.check()?;
    sign_as(
        key,
        "usage report",
        report,
        report.consumer,
        &report.consumer_key,
    )
}

/// Verifies a usage report signed by `consumer_key`, the consumer it names.
pub fn verify_usage_report(
    bytes: &[u8],
    consumer_key: &PublicKey,
) -> Result<VerifiedUsageReport, SignedError> {
    let (value, id, envelope) = open_signed::<UsageReport>(
        bytes,
        "usage report",
        consumer_key,
        |r| (r.consumer, r.consumer_key),
        Domain::USAGE_REPORT,
    )?;
    value.check()?;
    Ok(VerifiedUsageReport {
        value,
        id,
        envelope,
    })
}

/// Signs a deletion receipt; `key` must be the consumer it names.
pub fn sign_deletion_receipt(
    key: &dyn Signer,
    receipt: &DeletionReceipt,
) -> Result<Vec<u8>, SignedError> {
    sign_as(
        key,
        "deletion receipt",
        receipt,
        receipt.consumer,
        &receipt.consumer_key,
    )
}

/// Verifies a deletion receipt signed by `consumer_key`, the consumer it names.
pub fn verify_deletion_receipt(
    bytes: &[u8],
    consumer_key: &PublicKey,
) -> Result<VerifiedDeletionReceipt, SignedError> {
    let (value, id, envelope) = open_signed::<DeletionReceipt>(
        bytes,
        "deletion receipt",
        consumer_key,
        |r| (r.consumer, r.consumer_key),
        Domain::DELETION_RECEIPT,
    )?;
    Ok(VerifiedDeletionReceipt {
        value,
        id,
        envelope,
    })
}

/// Signs a usage record; `key` must be the recorder it names, which must be its provider
/// or its consumer.
pub fn sign_usage_record(key: &dyn Signer, record: &UsageRecord) -> Result<Vec<u8>, SignedError> {
    record.check()?;
    sign_as(
        key,
        "usage record",
        record,
        record.recorder,
        &record.recorder_key,
    )
}

/// Verifies a usage record signed by `recorder_key`, the recorder it names (its provider
/// or its consumer).
pub fn verify_usage_record(
    bytes: &[u8],
    recorder_key: &PublicKey,
) -> Result<VerifiedUsageRecord, SignedError> {
    let (value, id, envelope) = open_signed::<UsageRecord>(
        bytes,
        "usage record",
        recorder_key,
        |r| (r.recorder, r.recorder_key),
        Domain::USAGE_RECORD,
    )?;
    value.check()?;
    Ok(VerifiedUsageRecord {
        value,
        id,
        envelope,
    })
}
