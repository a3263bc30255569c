//! Every protocol message. A control frame carries one [`Message`] as canonical CBOR,
//! externally tagged: a map with one key, the message's snake-case name, whose value is
//! the message's fields as a map. Unknown message names and unknown fields are refused
//! (`protocol.unknown_message`, `protocol.unknown_field`), as is anything non-canonical.
//!
//! Signed objects (offers, requests, agreements, notices, receipts, terminations, usage
//! reports, credentials, revocation lists, checkpoints) travel as their COSE bytes
//! (`bstr`), so what a peer signed is kept byte for byte and can be logged and shown to a
//! third party.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_bytes::{ByteArray, ByteBuf};
use tds_core::cbor::{self, CborError};
use tds_core::hash::Hash256;
use tds_core::rand::{random_array, RandomSource};
use tds_policy::{Purpose, Region, Text};

use crate::error::ProtocolError;
use crate::frame::CONTROL_LIMITS;

/// The protocol versions this crate speaks, newest last.
pub const VERSIONS: &[u64] = &[1];

/// Most entries in one catalog page.
pub const MAX_PAGE: u64 = 256;

/// A process id (DSP `consumerPid` / `providerPid`): 16 random bytes chosen by the side
/// that owns the process. In the DSP binding it is written `urn:uuid:` and the bytes as
/// a UUID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pid(ByteArray<16>);

impl Pid {
    /// A pid from its bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Pid {
        Pid(ByteArray::new(bytes))
    }

    /// A fresh random pid.
    pub fn random(source: &dyn RandomSource) -> Result<Pid, ProtocolError> {
        random_array::<16>(source)
            .map(Pid::from_bytes)
            .map_err(|_| ProtocolError::NoRandomness)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The DSP form: `urn:uuid:` and the bytes as a UUID (8-4-4-4-12 lowercase hex).
    pub fn to_urn(&self) -> String {
        let h: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        let (a, rest) = h.split_at(8);
        let (b, rest) = rest.split_at(4);
        let (c, rest) = rest.split_at(4);
        let (d, e) = rest.split_at(4);
        format!("urn:uuid:{a}-{b}-{c}-{d}-{e}")
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h: String = self.0.iter().take(4).map(|b| format!("{b:02x}")).collect();
        write!(f, "Pid({h}..)")
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_urn())
    }
}

/// Bytes of a signed object, carried as a CBOR byte string.
pub type Signed = ByteBuf;

/// A refusal: the reason code (see `spec/reasons.md`) and words for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// The machine-readable reason code.
    pub code: String,
    /// Why, in words.
    pub reason: String,
}

impl Refusal {
    /// A refusal with `code` and `reason`.
    pub fn new(code: impl Into<String>, reason: impl Into<String>) -> Refusal {
        Refusal {
            code: code.into(),
            reason: reason.into(),
        }
    }
}

/// The first message each side sends on a connection: the versions it speaks and its
/// membership credential (and the newest revocation list of its authority it holds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Protocol versions spoken, ascending.
    pub versions: Vec<u64>,
    /// The sender's membership credential (COSE_Sign1).
    pub credential: Signed,
    /// The newest revocation list of the sender's authority the sender holds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<Signed>,
    /// Software name and version, for logs.
    pub agent: String,
}

/// Accepted; the process (if the message concerned one) and its state afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The replying side's process id, when the message concerned a process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<Pid>,
    /// The process state after the message, as DSP names it (`REQUESTED`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// DSP `ContractRequestMessage`: the consumer asks for an offer's terms (initial request,
/// `provider_pid` absent) or answers the provider's offer with a counter-request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractRequestMsg {
    /// The consumer's process id.
    pub consumer_pid: Pid,
    /// The provider's process id, absent on an initial request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_pid: Option<Pid>,
    /// The provider-signed offer the request answers.
    pub offer: Signed,
    /// The consumer-signed contract request.
    pub request: Signed,
}

/// DSP `ContractOfferMessage`: the provider offers (counter-offers) terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractOfferMsg {
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The consumer's process id (absent when the provider starts the negotiation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_pid: Option<Pid>,
    /// The provider-signed offer.
    pub offer: Signed,
}

/// DSP `ContractNegotiationEventMessage` with `ACCEPTED`: the consumer accepts the last
/// offer. The signed step is a contract request for exactly the offer's terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedMsg {
    /// The consumer's process id.
    pub consumer_pid: Pid,
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The consumer-signed request for the offer's policy.
    pub request: Signed,
}

/// DSP `ContractAgreementMessage`: the provider-signed agreement (the first signature of
/// the two-party COSE_Sign).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementMsg {
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The consumer's process id.
    pub consumer_pid: Pid,
    /// The agreement with the provider's signature.
    pub agreement: Signed,
}

/// DSP `ContractAgreementVerificationMessage`: the agreement with both signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationMsg {
    /// The consumer's process id.
    pub consumer_pid: Pid,
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The agreement with the provider's and the consumer's signature.
    pub agreement: Signed,
}

/// DSP `ContractNegotiationEventMessage` with `FINALIZED`, or
/// `ContractNegotiationTerminationMessage`: a signed [`Notice`](crate::Notice).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeMsg {
    /// The consumer's process id.
    pub consumer_pid: Pid,
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The signed notice.
    pub notice: Signed,
}

/// DSP `TransferRequestMessage`: the consumer asks for the asset of an agreement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequestMsg {
    /// The consumer's process id.
    pub consumer_pid: Pid,
    /// The agreement id.
    pub agreement: Hash256,
    /// The declared purpose of this use (must be covered by the agreement's).
    pub purpose: Purpose,
    /// Where the consumer will process the data (the policy's `spatial` operand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Region>,
    /// A consent reference the consumer presents (the policy's `consentRef` operand and
    /// `obtain-consent` duties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_ref: Option<Text>,
    /// An export-assessment reference the consumer presents (the policy's
    /// `exportAssessmentRef` operand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_assessment_ref: Option<Text>,
}

/// DSP `TransferStartMessage`: the provider starts (or restarts) a transfer and names the
/// content the chunks will prove against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferStartMsg {
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The consumer's process id.
    pub consumer_pid: Pid,
    /// The owner-signed manifest of the asset (its id is the agreement's asset).
    pub manifest: Signed,
}

/// DSP `TransferSuspensionMessage` and `TransferTerminationMessage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferStopMsg {
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The consumer's process id.
    pub consumer_pid: Pid,
    /// A reason code.
    pub code: String,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// DSP `TransferStartMessage` sent by the consumer to resume a suspended transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferResumeMsg {
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The consumer's process id.
    pub consumer_pid: Pid,
}

/// DSP `TransferCompletionMessage`. From the consumer it carries the signed receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferCompletionMsg {
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The consumer's process id.
    pub consumer_pid: Pid,
    /// The consumer-signed transfer receipt (required from the consumer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Signed>,
}

/// The consumer asks for one chunk; the reply is a data frame or an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRequestMsg {
    /// The provider's process id.
    pub provider_pid: Pid,
    /// The consumer's process id.
    pub consumer_pid: Pid,
    /// The chunk index.
    pub index: u64,
}

/// Catalog filters; every given filter must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFilter {
    /// The asset's sector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector: Option<String>,
    /// A word in the title, description or keywords (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    /// The classification (`general`, `important`, `core`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// The provider's participant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Hash256>,
}

/// DSP `CatalogRequestMessage` with filters and a cursor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRequestMsg {
    /// The filters.
    pub filter: CatalogFilter,
    /// Where the previous page ended (opaque), absent for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<ByteBuf>,
    /// Most entries wanted, at most [`MAX_PAGE`].
    pub limit: u64,
}

/// One catalog result: a signed offer and the manifest of its asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogItem {
    /// The provider-signed offer.
    pub offer: Signed,
    /// The owner-signed manifest of the offered asset.
    pub manifest: Signed,
}

/// A page of catalog results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogPageMsg {
    /// The results.
    pub items: Vec<CatalogItem>,
    /// The cursor for the next page, absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<ByteBuf>,
}

/// A signed revocation list, pushed to peers when it changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationNoticeMsg {
    /// The authority-signed revocation list.
    pub crl: Signed,
}

/// Asks for the peer's latest cosigned checkpoint, with a consistency proof from the
/// tree size the asker saw last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRequestMsg {
    /// The size of the last checkpoint of the peer's log the asker verified, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

/// The latest cosigned checkpoint and a consistency proof from `since`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMsg {
    /// The checkpoint note with the log's signature and witness cosignatures.
    pub checkpoint: ByteBuf,
    /// The consistency proof from the asked size to this checkpoint's (empty if none was
    /// asked or the sizes are equal).
    pub consistency: Vec<Hash256>,
}

/// Either party ends an agreement in force: its signed termination notice
/// (`tds_policy::contract::Termination`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementTerminationMsg {
    /// The agreement id (the notice must name it).
    pub agreement: Hash256,
    /// The termination notice, signed by the sender.
    pub termination: Signed,
}

/// The consumer reports its use of an agreement's data to the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReportMsg {
    /// The consumer-signed [`UsageReport`](crate::signed::UsageReport).
    pub report: Signed,
}

/// The consumer tells the provider it deleted an agreement's asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionReceiptMsg {
    /// The consumer-signed [`DeletionReceipt`](crate::signed::DeletionReceipt).
    pub receipt: Signed,
}

/// A protocol message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Message {
    /// Version exchange and credential presentation; first on every connection.
    Hello(Hello),
    /// A request was accepted.
    Ack(Ack),
    /// A request was refused.
    Error(Refusal),
    /// Negotiation: consumer's request or counter-request.
    ContractRequest(ContractRequestMsg),
    /// Negotiation: provider's offer or counter-offer.
    ContractOffer(ContractOfferMsg),
    /// Negotiation: consumer accepts the offer.
    ContractAccepted(AcceptedMsg),
    /// Negotiation: provider-signed agreement.
    ContractAgreement(AgreementMsg),
    /// Negotiation: consumer's countersigned agreement.
    AgreementVerification(VerificationMsg),
    /// Negotiation: provider finalizes.
    ContractFinalized(NoticeMsg),
    /// Negotiation: either side terminates.
    NegotiationTermination(NoticeMsg),
    /// Transfer: consumer asks for an agreement's asset.
    TransferRequest(TransferRequestMsg),
    /// Transfer: provider starts or restarts.
    TransferStart(TransferStartMsg),
    /// Transfer: consumer asks to resume a suspended transfer.
    TransferResume(TransferResumeMsg),
    /// Transfer: either side suspends.
    TransferSuspension(TransferStopMsg),
    /// Transfer: either side completes (the consumer with its receipt).
    TransferCompletion(TransferCompletionMsg),
    /// Transfer: either side terminates.
    TransferTermination(TransferStopMsg),
    /// Transfer: consumer asks for chunks.
    ChunkRequest(ChunkRequestMsg),
    /// Catalog query.
    CatalogRequest(CatalogRequestMsg),
    /// Catalog results.
    CatalogPage(CatalogPageMsg),
    /// A new revocation list.
    RevocationNotice(RevocationNoticeMsg),
    /// Asks for the latest checkpoint.
    CheckpointRequest(CheckpointRequestMsg),
    /// The latest checkpoint.
    Checkpoint(CheckpointMsg),
    /// After an agreement: either party terminates it.
    AgreementTermination(AgreementTerminationMsg),
    /// After an agreement: the consumer reports usage.
    UsageReport(UsageReportMsg),
    /// After an agreement: the consumer reports a deletion.
    DeletionReceipt(DeletionReceiptMsg),
}

/// The message names, in declaration order (what `spec/protocol.md` lists).
pub const MESSAGE_NAMES: &[&str] = &[
    "hello",
    "ack",
    "error",
    "contract_request",
    "contract_offer",
    "contract_accepted",
    "contract_agreement",
    "agreement_verification",
    "contract_finalized",
    "negotiation_termination",
    "transfer_request",
    "transfer_start",
    "transfer_resume",
    "transfer_suspension",
    "transfer_completion",
    "transfer_termination",
    "chunk_request",
    "catalog_request",
    "catalog_page",
    "revocation_notice",
    "checkpoint_request",
    "checkpoint",
    "agreement_termination",
    "usage_report",
    "deletion_receipt",
];

impl Message {
    /// The message's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Ack(_) => "ack",
            Message::Error(_) => "error",
            Message::ContractRequest(_) => "contract_request",
            Message::ContractOffer(_) => "contract_offer",
            Message::ContractAccepted(_) => "contract_accepted",
            Message::ContractAgreement(_) => "contract_agreement",
            Message::AgreementVerification(_) => "agreement_verification",
            Message::ContractFinalized(_) => "contract_finalized",
            Message::NegotiationTermination(_) => "negotiation_termination",
            Message::TransferRequest(_) => "transfer_request",
            Message::TransferStart(_) => "transfer_start",
            Message::TransferResume(_) => "transfer_resume",
            Message::TransferSuspension(_) => "transfer_suspension",
            Message::TransferCompletion(_) => "transfer_completion",
            Message::TransferTermination(_) => "transfer_termination",
            Message::ChunkRequest(_) => "chunk_request",
            Message::CatalogRequest(_) => "catalog_request",
            Message::CatalogPage(_) => "catalog_page",
            Message::RevocationNotice(_) => "revocation_notice",
            Message::CheckpointRequest(_) => "checkpoint_request",
            Message::Checkpoint(_) => "checkpoint",
            Message::AgreementTermination(_) => "agreement_termination",
            Message::UsageReport(_) => "usage_report",
            Message::DeletionReceipt(_) => "deletion_receipt",
        }
    }

    /// The canonical CBOR encoding (a control frame's payload).
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        Ok(cbor::encode_with(self, &CONTROL_LIMITS)?)
    }

    /// Decodes a control frame payload strictly: canonical CBOR, a known message name,
    /// known fields only, within [`CONTROL_LIMITS`].
    pub fn decode(bytes: &[u8]) -> Result<Message, ProtocolError> {
        match cbor::decode_with::<Message>(bytes, &CONTROL_LIMITS) {
            Ok(m) => Ok(m),
            Err(CborError::Type(text)) => Err(classify(bytes, text)),
            Err(e) => Err(e.into()),
        }
    }
}

/// Names the first problem of a message that is canonical CBOR but not a known message.
fn classify(bytes: &[u8], text: String) -> ProtocolError {
    if let Ok(cbor::Value::Map(entries)) = cbor::decode_with::<cbor::Value>(bytes, &CONTROL_LIMITS)
    {
        if let [(cbor::Value::Text(name), _)] = entries.as_slice() {
            if !MESSAGE_NAMES.contains(&name.as_str()) {
                return ProtocolError::UnknownMessage(name.chars().take(64).collect());
            }
        }
    }
    if text.contains("unknown field") {
        return ProtocolError::UnknownField(text);
    }
    if text.contains("unknown variant") {
        return ProtocolError::UnknownMessage(text);
    }
    ProtocolError::Malformed(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_list() {
        let m = Message::Ack(Ack {
            pid: None,
            state: None,
        });
        assert_eq!(MESSAGE_NAMES.get(1), Some(&m.name()));
    }

    #[test]
    fn pid_urn_is_a_uuid() {
        let p = Pid::from_bytes([0xab; 16]);
        assert_eq!(p.to_urn(), "urn:uuid:abababab-abab-abab-abab-abababababab");
    }

    #[test]
    fn unknown_messages_and_fields_are_refused_with_their_codes() {
        use tds_core::ErrorCode as _;
        // {"launch_missiles": {}}
        let mut b = vec![0xa1, 0x6f];
        b.extend_from_slice(b"launch_missiles");
        b.push(0xa0);
        let e = Message::decode(&b).unwrap_err();
        assert_eq!(e.code(), "protocol.unknown_message", "{e}");
        // {"ack": {"x": 1}}
        let mut b = vec![0xa1, 0x63];
        b.extend_from_slice(b"ack");
        b.extend_from_slice(&[0xa1, 0x61, b'x', 0x01]);
        let e = Message::decode(&b).unwrap_err();
        assert_eq!(e.code(), "protocol.unknown_field", "{e}");
        // Non-canonical: {"ack": {}} with a two-byte length for the key.
        let b = [0xa1, 0x78, 0x03, b'a', b'c', b'k', 0xa0];
        let e = Message::decode(&b).unwrap_err();
        assert_eq!(e.code(), "protocol.malformed", "{e}");
        let ok = Message::Ack(Ack {
            pid: None,
            state: None,
        });
        assert_eq!(Message::decode(&ok.encode().unwrap()).unwrap(), ok);
    }
}
