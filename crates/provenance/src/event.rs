//! Provenance events: what the log records, in canonical CBOR.
//!
//! An [`Event`] carries a format version, the time, the acting participant and a typed
//! [`EventBody`]. Events hold ids and hashes only: the log can never forget, so nothing
//! erasable (names, phone numbers, free text from data) may enter it. The only text is a
//! short operator annotation and machine reason codes ([`Code`]).
//!
//! Signed objects an event refers to (an agreement, a manifest, a receipt) can be embedded
//! as opaque bytes with their kind and id ([`SignedObject`]), so this crate does not depend
//! on the crates that define them.

use serde::{Deserialize, Serialize};
use tds_core::cbor::{self, CborError, Limits};
use tds_core::hash::Hash256;
use tds_core::merkle;
use tds_core::Timestamp;

/// The event format version this crate writes and accepts.
pub const EVENT_VERSION: u64 = 1;
/// Largest encoded event in bytes.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Largest embedded signed object in bytes.
pub const MAX_OBJECT_BYTES: usize = 48 * 1024;
/// Longest operator annotation in bytes.
pub const MAX_ANNOTATION_BYTES: usize = 280;
/// Longest reason code or object kind in bytes.
pub const MAX_CODE_BYTES: usize = 64;
/// Most reason codes in one event.
pub const MAX_CODES: usize = 16;

/// Why an event was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The bytes are not a canonical CBOR event.
    #[error("event")]
    Cbor(#[from] CborError),
    /// A format version this crate does not know.
    #[error("event: field v: unsupported version {0} (expected {EVENT_VERSION})")]
    Version(u64),
    /// A field out of bounds or of the wrong form.
    #[error("event: field {field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl tds_core::ErrorCode for EventError {
    fn code(&self) -> &'static str {
        match self {
            EventError::Cbor(e) => e.code(),
            EventError::Version(_) => "event.version",
            EventError::Field { .. } => "event.field",
        }
    }
}

fn field(field: &'static str, reason: impl Into<String>) -> EventError {
    EventError::Field {
        field,
        reason: reason.into(),
    }
}

/// A machine reason code: 1 to 64 bytes of `a-z 0-9 _ - . /`. Codes name reasons
/// (`price-mismatch`, `policy/purpose`); they cannot carry free text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Code(String);

impl Code {
    /// Checks and wraps a code.
    pub fn new(text: &str) -> Result<Self, EventError> {
        let c = Code(text.to_owned());
        c.check("code")?;
        Ok(c)
    }

    /// The code text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(&self, name: &'static str) -> Result<(), EventError> {
        if self.0.is_empty() || self.0.len() > MAX_CODE_BYTES {
            return Err(field(name, format!("must be 1 to {MAX_CODE_BYTES} bytes")));
        }
        if !self.0.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'/')
        }) {
            return Err(field(
                name,
                "only a-z, 0-9, '_', '-', '.' and '/' are allowed",
            ));
        }
        Ok(())
    }
}

/// Operator annotation text: at most [`MAX_ANNOTATION_BYTES`] bytes, no control
/// characters. Annotations are public and permanent: never put personal information in one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Annotation(String);

impl Annotation {
    /// Checks and wraps annotation text.
    pub fn new(text: &str) -> Result<Self, EventError> {
        let a = Annotation(text.to_owned());
        a.check()?;
        Ok(a)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(&self) -> Result<(), EventError> {
        if self.0.is_empty() || self.0.len() > MAX_ANNOTATION_BYTES {
            return Err(field(
                "text",
                format!("must be 1 to {MAX_ANNOTATION_BYTES} bytes"),
            ));
        }
        if self.0.chars().any(char::is_control) {
            return Err(field("text", "control characters are not allowed"));
        }
        Ok(())
    }
}

/// A signed object (agreement, manifest, receipt...) kept as opaque bytes with its kind
/// and id. The log does not interpret the bytes; an evidence verifier that knows the
/// kind does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedObject {
    /// The kind, e.g. `agreement`, `manifest`, `receipt` (a [`Code`]).
    pub kind: Code,
    /// The object's id (`sha256:...` of its canonical bytes under its domain).
    pub id: Hash256,
    /// The signed bytes (a COSE_Sign1 envelope, say).
    #[serde(with = "b64bytes")]
    pub bytes: Vec<u8>,
}

/// Serde helper: byte strings in CBOR, base64 text in JSON.
pub(crate) mod b64bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
        } else {
            serde_bytes::serialize(v, s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(serde::de::Error::custom)
        } else {
            serde_bytes::deserialize(d)
        }
    }
}

/// What happened. Each variant names the ids it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum EventBody {
    /// A data asset's manifest was published.
    AssetPublished {
        /// The manifest id.
        asset: Hash256,
        /// The signed manifest, if embedded.
        object: Option<SignedObject>,
    },
    /// An offer for an asset was published.
    OfferPublished {
        /// The offer id.
        offer: Hash256,
        /// The asset offered.
        asset: Hash256,
        /// The signed offer, if embedded.
        object: Option<SignedObject>,
    },
    /// A consumer asked to negotiate an offer.
    NegotiationRequested {
        /// The negotiation id.
        negotiation: Hash256,
        /// The offer.
        offer: Hash256,
        /// The consumer's participant id.
        consumer: Hash256,
    },
    /// Both parties signed an agreement.
    AgreementConcluded {
        /// The agreement id.
        agreement: Hash256,
        /// The negotiation that led to it.
        negotiation: Hash256,
        /// The provider's participant id.
        provider: Hash256,
        /// The consumer's participant id.
        consumer: Hash256,
        /// The two-party signed agreement, if embedded (else only its id is logged).
        object: Option<SignedObject>,
    },
    /// A negotiation ended without agreement.
    NegotiationTerminated {
        /// The negotiation id.
        negotiation: Hash256,
        /// Why.
        reason: Code,
    },
    /// A transfer under an agreement began.
    TransferStarted {
        /// The transfer id.
        transfer: Hash256,
        /// The agreement.
        agreement: Hash256,
        /// The manifest of the asset sent.
        asset: Hash256,
    },
    /// A transfer finished and the consumer signed a receipt.
    TransferCompleted {
        /// The transfer id.
        transfer: Hash256,
        /// The agreement.
        agreement: Hash256,
        /// The content root received.
        root: Hash256,
        /// Bytes received.
        bytes: u64,
        /// The consumer's signed receipt of root and byte count, if embedded.
        receipt: Option<SignedObject>,
    },
    /// A transfer failed.
    TransferFailed {
        /// The transfer id.
        transfer: Hash256,
        /// The agreement.
        agreement: Hash256,
        /// Why.
        reason: Code,
    },
    /// A request was refused by policy.
    AccessDenied {
        /// The requesting participant.
        requester: Hash256,
        /// The asset or offer asked for.
        target: Hash256,
        /// The agreement invoked, if any.
        agreement: Option<Hash256>,
        /// The decision's reasons.
        reasons: Vec<Code>,
    },
    /// A consumer reported usage under an agreement.
    UsageReported {
        /// The agreement.
        agreement: Hash256,
        /// The hash of the usage report.
        report: Hash256,
        /// The signed report, if embedded.
        object: Option<SignedObject>,
    },
    /// A duty of an agreement was fulfilled (a deletion, a notification...).
    DutyFulfilled {
        /// The agreement.
        agreement: Hash256,
        /// Which duty.
        duty: Code,
        /// The signed receipt (e.g. of deletion), if embedded.
        receipt: Option<SignedObject>,
    },
    /// An agreement was terminated before its end.
    AgreementTerminated {
        /// The agreement.
        agreement: Hash256,
        /// Why.
        reason: Code,
    },
    /// An agreement reached its end.
    AgreementExpired {
        /// The agreement.
        agreement: Hash256,
    },
    /// A membership credential was revoked.
    CredentialRevoked {
        /// The credential id.
        credential: Hash256,
        /// The revocation list that revoked it.
        crl: Hash256,
    },
    /// A witness cosigned one of this log's checkpoints.
    CheckpointWitnessed {
        /// The witness's participant id.
        witness: Hash256,
        /// The tree size cosigned.
        size: u64,
        /// The root hash cosigned.
        root: Hash256,
    },
    /// A witness refused a checkpoint (a forked or rewritten log): an alert.
    CheckpointRefused {
        /// SHA-256 of the log's origin line.
        log: Hash256,
        /// The tree size offered.
        size: u64,
        /// The root hash offered.
        root: Hash256,
        /// Why.
        reason: Code,
    },
    /// An operator's note.
    Annotation {
        /// The text (short, public, permanent).
        text: Annotation,
    },
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Format version, [`EVENT_VERSION`].
    pub v: u64,
    /// When (milliseconds since the Unix epoch on the wire).
    pub time: Timestamp,
    /// The participant id of whoever acted.
    pub actor: Hash256,
    /// What happened.
    pub body: EventBody,
}

impl Event {
    /// A version-1 event.
    pub fn new(time: Timestamp, actor: Hash256, body: EventBody) -> Self {
        Event {
            v: EVENT_VERSION,
            time,
            actor,
            body,
        }
    }

    /// The canonical bytes (what the log stores and hashes).
    pub fn encode(&self) -> Result<Vec<u8>, EventError> {
        self.check()?;
        Ok(cbor::encode_with(self, &limits())?)
    }

    /// Decodes canonical bytes and checks every bound.
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(field(
                "event",
                format!("{} bytes is over the {MAX_EVENT_BYTES} limit", bytes.len()),
            ));
        }
        let e: Event = cbor::decode_with(bytes, &limits())?;
        e.check()?;
        Ok(e)
    }

    /// The RFC 9162 leaf hash of the canonical bytes.
    pub fn leaf_hash(&self) -> Result<Hash256, EventError> {
        Ok(merkle::leaf_hash(&self.encode()?))
    }

    /// The snake_case name of the event kind (`agreement_concluded`, ...).
    pub fn kind(&self) -> &'static str {
        match &self.body {
            EventBody::AssetPublished { .. } => "asset_published",
            EventBody::OfferPublished { .. } => "offer_published",
            EventBody::NegotiationRequested { .. } => "negotiation_requested",
            EventBody::AgreementConcluded { .. } => "agreement_concluded",
            EventBody::NegotiationTerminated { .. } => "negotiation_terminated",
            EventBody::TransferStarted { .. } => "transfer_started",
            EventBody::TransferCompleted { .. } => "transfer_completed",
            EventBody::TransferFailed { .. } => "transfer_failed",
            EventBody::AccessDenied { .. } => "access_denied",
            EventBody::UsageReported { .. } => "usage_reported",
            EventBody::DutyFulfilled { .. } => "duty_fulfilled",
            EventBody::AgreementTerminated { .. } => "agreement_terminated",
            EventBody::AgreementExpired { .. } => "agreement_expired",
            EventBody::CredentialRevoked { .. } => "credential_revoked",
            EventBody::CheckpointWitnessed { .. } => "checkpoint_witnessed",
            EventBody::CheckpointRefused { .. } => "checkpoint_refused",
            EventBody::Annotation { .. } => "annotation",
        }
    }

    /// The agreement this event belongs to, if any (what evidence export selects on).
    pub fn agreement(&self) -> Option<&Hash256> {
        match &self.body {
            EventBody::AgreementConcluded { agreement, .. }
            | EventBody::TransferStarted { agreement, .. }
            | EventBody::TransferCompleted { agreement, .. }
            | EventBody::TransferFailed { agreement, .. }
            | EventBody::UsageReported { agreement, .. }
            | EventBody::DutyFulfilled { agreement, .. }
            | EventBody::AgreementTerminated { agreement, .. }
            | EventBody::AgreementExpired { agreement } => Some(agreement),
            EventBody::AccessDenied { agreement, .. } => agreement.as_ref(),
            _ => None,
        }
    }

    /// The signed objects embedded in this event.
    pub fn objects(&self) -> Vec<&SignedObject> {
        let o = match &self.body {
            EventBody::AssetPublished { object, .. }
            | EventBody::OfferPublished { object, .. }
            | EventBody::AgreementConcluded { object, .. }
            | EventBody::UsageReported { object, .. } => object.as_ref(),
            EventBody::TransferCompleted { receipt, .. }
            | EventBody::DutyFulfilled { receipt, .. } => receipt.as_ref(),
            _ => None,
        };
        o.into_iter().collect()
    }

    /// Checks the bounds the types alone do not enforce.
    pub fn check(&self) -> Result<(), EventError> {
        if self.v != EVENT_VERSION {
            return Err(EventError::Version(self.v));
        }
        for o in self.objects() {
            o.kind.check("object.kind")?;
            if o.bytes.is_empty() || o.bytes.len() > MAX_OBJECT_BYTES {
                return Err(field(
                    "object.bytes",
                    format!("must be 1 to {MAX_OBJECT_BYTES} bytes"),
                ));
            }
        }
        match &self.body {
            EventBody::NegotiationTerminated { reason, .. }
            | EventBody::TransferFailed { reason, .. }
            | EventBody::AgreementTerminated { reason, .. }
            | EventBody::CheckpointRefused { reason, .. } => reason.check("reason"),
            EventBody::DutyFulfilled { duty, .. } => duty.check("duty"),
            EventBody::AccessDenied { reasons, .. } => {
                if reasons.len() > MAX_CODES {
                    return Err(field("reasons", format!("more than {MAX_CODES} codes")));
                }
                reasons.iter().try_for_each(|r| r.check("reasons"))
            }
            EventBody::Annotation { text } => text.check(),
            _ => Ok(()),
        }
    }
}

fn limits() -> Limits {
    Limits {
        max_depth: 8,
        max_size: MAX_EVENT_BYTES,
        ..Limits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> Hash256 {
        Hash256::from_bytes([b; 32])
    }

    #[test]
    fn round_trip_all_kinds() {
        let obj = SignedObject {
            kind: Code::new("agreement").unwrap(),
            id: h(9),
            bytes: vec![1, 2, 3],
        };
        let bodies = vec![
            EventBody::AssetPublished {
                asset: h(1),
                object: Some(obj.clone()),
            },
            EventBody::AgreementConcluded {
                agreement: h(2),
                negotiation: h(3),
                provider: h(4),
                consumer: h(5),
                object: Some(obj),
            },
            EventBody::AccessDenied {
                requester: h(1),
                target: h(2),
                agreement: None,
                reasons: vec![Code::new("purpose/marketing").unwrap()],
            },
            EventBody::AgreementExpired { agreement: h(7) },
            EventBody::Annotation {
                text: Annotation::new("maintenance window").unwrap(),
            },
        ];
        for b in bodies {
            let e = Event::new(Timestamp::from_millis(1_700_000_000_000), h(8), b);
            let bytes = e.encode().unwrap();
            assert_eq!(Event::decode(&bytes).unwrap(), e);
            let json = serde_json::to_string(&e).unwrap();
            let back: Event = serde_json::from_str(&json).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn bounds() {
        assert!(matches!(
            Annotation::new(&"x".repeat(MAX_ANNOTATION_BYTES + 1)),
            Err(EventError::Field { field: "text", .. })
        ));
        assert!(matches!(
            Annotation::new("a\u{7}"),
            Err(EventError::Field { field: "text", .. })
        ));
        assert!(matches!(
            Code::new("Free Text"),
            Err(EventError::Field { field: "code", .. })
        ));
        let mut e = Event::new(
            Timestamp::EPOCH,
            h(1),
            EventBody::AgreementExpired { agreement: h(2) },
        );
        e.v = 2;
        assert!(matches!(e.encode(), Err(EventError::Version(2))));
    }
}
