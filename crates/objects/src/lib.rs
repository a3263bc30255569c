#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod record;

use tds_core::cose::{self, CoseError, SignedObject as _};
use tds_core::hash::{Domain, Hash256};
use tds_core::{ErrorCode, PublicKey};
use tds_identity::{Credential, KeyRollover, RevocationList, TrustStore};
use tds_manifest::{Manifest, Receipt};
use tds_policy::contract::{AgreementTerms, ContractRequest, Offer, Termination};
use tds_policy::licence::Licence;
use tds_protocol::join::AdmissionRequest;
use tds_protocol::signed::{DeletionReceipt, Notice, TransferReceipt, UsageRecord, UsageReport};
use tds_provenance::event::SignedObject;
use tds_provenance::evidence::{CheckedObject, ObjectError, ObjectVerifier};

/// The COSE structure an object travels in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Envelope {
    /// COSE_Sign1 (tag 18): one signer.
    Sign1,
    /// COSE_Sign (tag 98): several signers (the two parties of an agreement).
    Sign,
}

/// Every kind of TDS signed object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A membership credential (tds-identity).
    Credential,
    /// A revocation list (tds-identity).
    RevocationList,
    /// An authority key rollover statement (tds-identity).
    KeyRollover,
    /// A data-asset manifest (tds-manifest).
    Manifest,
    /// A registration receipt (tds-manifest).
    Receipt,
    /// An offer (tds-policy).
    Offer,
    /// A contract request (tds-policy).
    Request,
    /// An agreement signed by both parties (tds-policy).
    Agreement,
    /// A termination notice (tds-policy).
    Termination,
    /// A negotiation notice, FINALIZED or TERMINATED (tds-protocol).
    Notice,
    /// A consumer's transfer receipt (tds-protocol).
    TransferReceipt,
    /// An applicant's admission request (tds-protocol, sent on `tds-join/1`).
    AdmissionRequest,
    /// A consumer's usage report (tds-protocol).
    UsageReport,
    /// A consumer's deletion receipt (tds-protocol).
    DeletionReceipt,
    /// A usage (metering) record of either party (tds-protocol).
    UsageRecord,
    /// A public-data licence signed by the authority (tds-policy).
    Licence,
}

impl Kind {
    /// Every kind, in this order.
    pub const ALL: [Kind; 16] = [
        Kind::Credential,
        Kind::RevocationList,
        Kind::KeyRollover,
        Kind::Manifest,
        Kind::Receipt,
        Kind::Offer,
        Kind::Request,
        Kind::Agreement,
        Kind::Termination,
        Kind::Notice,
        Kind::TransferReceipt,
        Kind::AdmissionRequest,
        Kind::UsageReport,
        Kind::DeletionReceipt,
        Kind::UsageRecord,
        Kind::Licence,
    ];

    /// The content type in the envelope's protected header.
    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Credential => Credential::CONTENT_TYPE,
            Kind::RevocationList => RevocationList::CONTENT_TYPE,
            Kind::KeyRollover => KeyRollover::CONTENT_TYPE,
            Kind::Manifest => Manifest::CONTENT_TYPE,
            Kind::Receipt => Receipt::CONTENT_TYPE,
            Kind::Offer => Offer::CONTENT_TYPE,
            Kind::Request => ContractRequest::CONTENT_TYPE,
            Kind::Agreement => AgreementTerms::CONTENT_TYPE,
            Kind::Termination => Termination::CONTENT_TYPE,
            Kind::Notice => Notice::CONTENT_TYPE,
            Kind::TransferReceipt => TransferReceipt::CONTENT_TYPE,
            Kind::AdmissionRequest => AdmissionRequest::CONTENT_TYPE,
            Kind::UsageReport => UsageReport::CONTENT_TYPE,
            Kind::DeletionReceipt => DeletionReceipt::CONTENT_TYPE,
            Kind::UsageRecord => UsageRecord::CONTENT_TYPE,
            Kind::Licence => Licence::CONTENT_TYPE,
        }
    }

    /// The name the provenance log files an embedded object of this kind under
    /// (`tds_provenance::event::SignedObject::kind`), and the name tools print.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Credential => "credential",
            Kind::RevocationList => "crl",
            Kind::KeyRollover => "key-rollover",
            Kind::Manifest => "manifest",
            Kind::Receipt => "receipt",
            Kind::Offer => "offer",
            Kind::Request => "request",
            Kind::Agreement => "agreement",
            Kind::Termination => "termination",
            Kind::Notice => "notice",
            Kind::TransferReceipt => "transfer-receipt",
            Kind::AdmissionRequest => "admission-request",
            Kind::UsageReport => "usage-report",
            Kind::DeletionReceipt => "deletion-receipt",
            Kind::UsageRecord => "usage-record",
            Kind::Licence => "licence",
        }
    }

    /// The domain its id is hashed under: `id = H(domain, signed payload)`.
    pub fn domain(self) -> Domain {
        match self {
            Kind::Credential => Domain::CREDENTIAL,
            Kind::RevocationList => Domain::CRL,
            Kind::KeyRollover => Domain::ROLLOVER,
            Kind::Manifest => Domain::MANIFEST,
            Kind::Receipt => Domain::RECEIPT,
            Kind::Offer => Domain::OFFER,
            Kind::Request => Domain::REQUEST,
            Kind::Agreement => Domain::AGREEMENT,
            Kind::Termination => Domain::TERMINATION,
            Kind::Notice => Domain::NOTICE,
            Kind::TransferReceipt => Domain::TRANSFER_RECEIPT,
            Kind::AdmissionRequest => Domain::ADMISSION_REQUEST,
            Kind::UsageReport => Domain::USAGE_REPORT,
            Kind::DeletionReceipt => Domain::DELETION_RECEIPT,
            Kind::UsageRecord => Domain::USAGE_RECORD,
            Kind::Licence => Domain::LICENCE,
        }
    }

    /// The envelope it travels in.
    pub fn envelope(self) -> Envelope {
        match self {
            Kind::Agreement => Envelope::Sign,
            _ => Envelope::Sign1,
        }
    }

    /// The kind with this content type.
    pub fn from_content_type(content_type: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.content_type() == content_type)
    }

    /// The kind with this log name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes could not be decoded as a TDS object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a TDS envelope (or a malformed one).
    #[error(transparent)]
    Envelope(#[from] CoseError),
    /// A TDS envelope of a content type this build does not know.
    #[error("unknown content type {0:?}")]
    UnknownContentType(String),
    /// A known kind whose fields break its rules.
    #[error("{kind}")]
    Invalid {
        /// The kind.
        kind: Kind,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ErrorCode for DecodeError {
    fn code(&self) -> &'static str {
        match self {
            DecodeError::Envelope(e) => e.code(),
            DecodeError::UnknownContentType(_) => "objects.unknown_content_type",
            DecodeError::Invalid { .. } => "objects.invalid",
        }
    }
}

/// The typed value of a decoded object.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Value {
    /// A membership credential.
    Credential(Box<Credential>),
    /// A revocation list.
    RevocationList(RevocationList),
    /// A key rollover statement.
    KeyRollover(KeyRollover),
    /// A manifest.
    Manifest(Box<Manifest>),
    /// A registration receipt.
    Receipt(Receipt),
    /// An offer.
    Offer(Box<Offer>),
    /// A contract request.
    Request(Box<ContractRequest>),
    /// Agreement terms.
    Agreement(Box<AgreementTerms>),
    /// A termination notice.
    Termination(Termination),
    /// A negotiation notice.
    Notice(Box<Notice>),
    /// A transfer receipt.
    TransferReceipt(Box<TransferReceipt>),
    /// An admission request.
    AdmissionRequest(Box<AdmissionRequest>),
    /// A usage report.
    UsageReport(Box<UsageReport>),
    /// A deletion receipt.
    DeletionReceipt(Box<DeletionReceipt>),
    /// A usage record.
    UsageRecord(Box<UsageRecord>),
    /// A public-data licence.
    Licence(Box<Licence>),
}

/// A TDS object parsed by [`decode_any`]. Nothing here is trusted: the signatures were
/// checked only against the keys the object itself names ([`Decoded::self_signed`]).
#[derive(Clone, Debug)]
pub struct Decoded {
    kind: Kind,
    id: Hash256,
    signers: Vec<Hash256>,
    self_signed: Option<bool>,
    value: Value,
    payload: Vec<u8>,
}

impl Decoded {
    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The object's id (`H(kind.domain(), payload)`).
    pub fn id(&self) -> Hash256 {
        self.id
    }

    /// The key ids that signed it (COSE `kid`s), in order.
    pub fn signers(&self) -> &[Hash256] {
        &self.signers
    }

    /// Whether every signature verifies with the key(s) the object names for its signers
    /// (`issuer_key`, `owner_key`, `provider_key` and `consumer_key`...), in the order it
    /// names them; `None` for a kind that does not name its signer's key (a receipt names
    /// only the authority's id). Self-consistency, not trust: anyone can make a key.
    pub fn self_signed(&self) -> Option<bool> {
        self.self_signed
    }

    /// The typed value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The canonical signed payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

fn invalid(kind: Kind) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> DecodeError {
    move |source| DecodeError::Invalid { kind, source }
}

fn sign1<T: cose::SignedObject + Clone>(
    bytes: &[u8],
    kind: Kind,
    named: impl Fn(&T) -> Option<PublicKey>,
    wrap: impl Fn(T) -> Value,
) -> Result<Decoded, DecodeError> {
    let opened = cose::open::<T>(bytes)?;
    let payload = opened.payload().to_vec();
    let signers = vec![opened.kid()];
    let value = opened.value().clone();
    let self_signed = named(&value).map(|k| opened.verify(&k).is_ok());
    Ok(Decoded {
        kind,
        id: kind.domain().hash(&payload),
        signers,
        self_signed,
        value: wrap(value),
        payload,
    })
}

/// Parses any TDS envelope: finds its kind from the content type and decodes the typed
/// value strictly (the object's own rules included), without trusting it.
pub fn decode_any(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let content_type = cose::peek_content_type(bytes)?;
    let kind = Kind::from_content_type(&content_type)
        .ok_or(DecodeError::UnknownContentType(content_type))?;
    match kind {
        Kind::Credential => {
            let d = sign1::<Credential>(
                bytes,
                kind,
                |c| Some(*c.issuer_key()),
                |c| Value::Credential(Box::new(c)),
            )?;
            Ok(d)
        }
        Kind::RevocationList => sign1::<RevocationList>(
            bytes,
            kind,
            |l| Some(*l.issuer_key()),
            Value::RevocationList,
        ),
        Kind::KeyRollover => {
            sign1::<KeyRollover>(bytes, kind, |r| Some(*r.old_key()), Value::KeyRollover)
        }
        Kind::Manifest => {
            let raw = cose::open::<Manifest>(bytes)?;
            let payload = raw.payload().to_vec();
            let signers = vec![raw.kid()];
            let opened = tds_manifest::open(bytes).map_err(|e| invalid(kind)(Box::new(e)))?;
            let manifest = opened.manifest().clone();
            let ok = opened.verify_self_signed().is_ok();
            Ok(Decoded {
                kind,
                id: kind.domain().hash(&payload),
                signers,
                self_signed: Some(ok),
                value: Value::Manifest(Box::new(manifest)),
                payload,
            })
        }
        Kind::Receipt => sign1::<Receipt>(bytes, kind, |_| None, Value::Receipt),
        Kind::Offer => sign1::<Offer>(
            bytes,
            kind,
            |o| Some(o.provider_key),
            |o| Value::Offer(Box::new(o)),
        ),
        Kind::Request => sign1::<ContractRequest>(
            bytes,
            kind,
            |r| Some(r.consumer_key),
            |r| Value::Request(Box::new(r)),
        ),
        Kind::Termination => {
            sign1::<Termination>(bytes, kind, |t| Some(t.party_key), Value::Termination)
        }
        Kind::Notice => sign1::<Notice>(
            bytes,
            kind,
            |n| Some(n.party_key),
            |n| Value::Notice(Box::new(n)),
        ),
        Kind::TransferReceipt => sign1::<TransferReceipt>(
            bytes,
            kind,
            |r| Some(r.consumer_key),
            |r| Value::TransferReceipt(Box::new(r)),
        ),
        Kind::AdmissionRequest => sign1::<AdmissionRequest>(
            bytes,
            kind,
            |r| Some(r.applicant_key),
            |r| Value::AdmissionRequest(Box::new(r)),
        ),
        Kind::UsageReport => sign1::<UsageReport>(
            bytes,
            kind,
            |r| Some(r.consumer_key),
            |r| Value::UsageReport(Box::new(r)),
        ),
        Kind::DeletionReceipt => sign1::<DeletionReceipt>(
            bytes,
            kind,
            |r| Some(r.consumer_key),
            |r| Value::DeletionReceipt(Box::new(r)),
        ),
        Kind::UsageRecord => sign1::<UsageRecord>(
            bytes,
            kind,
            |r| Some(r.recorder_key),
            |r| Value::UsageRecord(Box::new(r)),
        ),
        Kind::Licence => sign1::<Licence>(
            bytes,
            kind,
            |l| Some(l.authority_key),
            |l| Value::Licence(Box::new(l)),
        ),
        Kind::Agreement => {
            let opened = cose::open_multi::<AgreementTerms>(bytes)?;
            let payload = opened.payload().to_vec();
            let signers = opened.kids().to_vec();
            let terms = opened.value().clone();
            // Both parties, provider first: the order the contract flow signs in.
            let expected = [terms.provider_key.id(), terms.consumer_key.id()];
            let ok = signers.len() == 2
                && signers == expected
                && opened
                    .verify(&[terms.provider_key, terms.consumer_key])
                    .is_ok();
            Ok(Decoded {
                kind,
                id: kind.domain().hash(&payload),
                signers,
                self_signed: Some(ok),
                value: Value::Agreement(Box::new(terms)),
                payload,
            })
        }
    }
}

/// The [`ObjectVerifier`] of the standard TDS kinds, for evidence bundles:
///
/// - `agreement`: both parties' signatures, by the keys the terms name, in the contract
///   order (`tds_policy::contract::verify_agreement`); reports its parties and asset;
/// - `manifest`: the owner's signature against the owner key the manifest names (the
///   evidence is about what the log's owner published; who that owner is, the log's
///   membership credential says);
/// - `offer`: the provider's signature against the key the offer names;
/// - `receipt`: a registration receipt signed by an authority key `trust` holds;
/// - `transfer-receipt`: the consumer's signature against the consumer key it names;
/// - anything else, `termination` included (it needs its agreement), is refused: an
///   object the verifier cannot check must not pass as checked.
#[derive(Clone, Copy, Debug)]
pub struct StandardVerifier<'a> {
    trust: Option<&'a TrustStore>,
}

impl<'a> StandardVerifier<'a> {
    /// A verifier without authority keys (receipts are refused).
    pub fn new() -> Self {
        StandardVerifier { trust: None }
    }

    /// A verifier that also checks registration receipts against `trust`'s authority keys.
    pub fn with_trust(trust: &'a TrustStore) -> Self {
        StandardVerifier { trust: Some(trust) }
    }
}

impl Default for StandardVerifier<'_> {
    fn default() -> Self {
        Self::new()
    }
}

fn object_error<E: std::error::Error + ErrorCode + 'static>(e: E) -> ObjectError {
    ObjectError::new(e.code(), &e)
}

impl ObjectVerifier for StandardVerifier<'_> {
    fn verify_object(&self, object: &SignedObject) -> Result<CheckedObject, ObjectError> {
        let kind = Kind::from_name(object.kind.as_str()).ok_or_else(|| ObjectError {
            code: "evidence.object.unknown_kind",
            message: format!(
                "objects of kind {:?} cannot be checked, so they are not accepted",
                object.kind.as_str()
            ),
        })?;
        match kind {
            Kind::Agreement => {
                let v =
                    tds_policy::contract::verify_agreement(&object.bytes).map_err(object_error)?;
                let t = v.terms();
                Ok(CheckedObject::new(
                    v.id(),
                    Some((t.provider, t.consumer)),
                    t.asset
                        .as_str()
                        .parse::<Hash256>()
                        .ok()
                        .into_iter()
                        .collect(),
                    "signatures of both parties verified",
                ))
            }
            Kind::Manifest => {
                let v = tds_manifest::open(&object.bytes)
                    .and_then(|u| u.verify_self_signed())
                    .map_err(object_error)?;
                let id = *v.id().as_hash();
                Ok(CheckedObject::new(
                    id,
                    None,
                    vec![id],
                    "owner signature verified against the owner key it names",
                )
                .signed_by(*v.owner.as_hash()))
            }
            Kind::Offer => {
                let v = tds_policy::contract::verify_offer(&object.bytes).map_err(object_error)?;
                Ok(CheckedObject::new(
                    v.id(),
                    None,
                    v.offer()
                        .asset
                        .as_str()
                        .parse::<Hash256>()
                        .ok()
                        .into_iter()
                        .collect(),
                    "provider signature verified",
                )
                .signed_by(v.offer().provider))
            }
            Kind::Receipt => {
                let trust = self.trust.ok_or_else(|| ObjectError {
                    code: "evidence.object.no_authority",
                    message: "a registration receipt needs the authority's key".into(),
                })?;
                let opened = cose::open::<Receipt>(&object.bytes).map_err(object_error)?;
                let key = trust
                    .key(&tds_identity::ParticipantId::from_hash(opened.kid()))
                    .copied()
                    .ok_or_else(|| ObjectError {
                        code: "evidence.object.untrusted_signer",
                        message: format!(
                            "receipt signed by {}, not a trusted authority",
                            opened.kid()
                        ),
                    })?;
                let v = tds_manifest::verify_receipt(&object.bytes, &key).map_err(object_error)?;
                Ok(CheckedObject::new(
                    Domain::RECEIPT.hash(v.as_verified().payload()),
                    None,
                    vec![*v.receipt().asset.as_hash()],
                    "authority signature verified",
                )
                .signed_by(key.id()))
            }
            Kind::TransferReceipt => {
                // Signed by the consumer key it names; the pids are the receipt's own (the
                // transfer id the event names is derived from the agreement and them).
                let opened = cose::open::<TransferReceipt>(&object.bytes).map_err(object_error)?;
                let r = opened.value();
                let v = tds_protocol::signed::verify_receipt(
                    &object.bytes,
                    &r.consumer_key,
                    r.consumer_pid,
                    r.provider_pid,
                )
                .map_err(object_error)?;
                Ok(CheckedObject::new(
                    v.id(),
                    None,
                    Vec::new(),
                    "consumer signature verified against the consumer key it names",
                )
                .signed_by(v.receipt().consumer))
            }
            // Post-agreement objects: each signed by the party key it names (the
            // consumer, or the recorder of a usage record), checked like a receipt.
            Kind::UsageReport => {
                let opened = cose::open::<UsageReport>(&object.bytes).map_err(object_error)?;
                let key = opened.value().consumer_key;
                let v = tds_protocol::signed::verify_usage_report(&object.bytes, &key)
                    .map_err(object_error)?;
                Ok(CheckedObject::new(
                    v.id(),
                    None,
                    Vec::new(),
                    "consumer signature verified against the consumer key it names",
                )
                .signed_by(v.report().consumer))
            }
            Kind::DeletionReceipt => {
                let opened = cose::open::<DeletionReceipt>(&object.bytes).map_err(object_error)?;
                let key = opened.value().consumer_key;
                let v = tds_protocol::signed::verify_deletion_receipt(&object.bytes, &key)
                    .map_err(object_error)?;
                Ok(CheckedObject::new(
                    v.id(),
                    None,
                    vec![v.receipt().asset],
                    "consumer signature verified against the consumer key it names",
                )
                .signed_by(v.receipt().consumer))
            }
            Kind::UsageRecord => {
                let opened = cose::open::<UsageRecord>(&object.bytes).map_err(object_error)?;
                let key = opened.value().recorder_key;
                let v = tds_protocol::signed::verify_usage_record(&object.bytes, &key)
                    .map_err(object_error)?;
                Ok(CheckedObject::new(
                    v.id(),
                    None,
                    Vec::new(),
                    "recorder signature verified against the recorder key it names",
                )
                .signed_by(v.record().recorder))
            }
            other => Err(ObjectError {
                code: "evidence.object.unsupported_kind",
                message: format!(
                    "objects of kind {other} are not checked in evidence, so they are not accepted"
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_any_gives_the_ids_the_libraries_give() {
        use tds_core::{SigningKey, Timestamp};
        use tds_identity::{Admission, Authority, Role, Sector};
        let now = Timestamp::from_secs(1_800_000_000);
        let mut authority = Authority::new("A", SigningKey::from_seed(&[1; 32])).unwrap();
        let cred = authority
            .admit(
                &Admission {
                    subject_key: SigningKey::from_seed(&[2; 32]).public_key(),
                    name: "M".into(),
                    sectors: vec![Sector::POWER],
                    roles: vec![Role::Consumer],
                    jurisdiction: "CN".parse().unwrap(),
                    not_before: now,
                    not_after: now.saturating_add_millis(1000),
                },
                now,
            )
            .unwrap();
        let crl = authority
            .revocation_list(now, now.saturating_add_millis(1000))
            .unwrap();
        let (roll, _) = authority
            .rollover(SigningKey::from_seed(&[3; 32]), now)
            .unwrap();
        for (bytes, id, kind) in [
            (
                cred.envelope(),
                cred.value().id().unwrap(),
                Kind::Credential,
            ),
            (
                crl.envelope(),
                crl.value().id().unwrap(),
                Kind::RevocationList,
            ),
            (
                roll.envelope(),
                roll.value().id().unwrap(),
                Kind::KeyRollover,
            ),
        ] {
            let d = decode_any(bytes).unwrap();
            assert_eq!(d.kind(), kind);
            assert_eq!(d.id(), id, "{kind}");
            assert_eq!(d.self_signed(), Some(true), "{kind}");
        }
    }

    #[test]
    fn protocol_notices_and_receipts_decode_with_their_ids() {
        use tds_core::{SigningKey, Timestamp};
        use tds_protocol::signed::{self, NoticeKind};
        use tds_protocol::Pid;
        let key = SigningKey::from_seed(&[5; 32]);
        let (c, p) = (Pid::from_bytes([1; 16]), Pid::from_bytes([2; 16]));
        let notice = signed::sign_notice(
            &key,
            &Notice {
                kind: NoticeKind::Terminated,
                consumer_pid: c,
                provider_pid: p,
                agreement: None,
                party: key.id(),
                party_key: key.public_key(),
                code: Some("negotiation.declined".into()),
                reason: None,
                time: Timestamp::from_secs(1),
            },
        )
        .unwrap();
        let d = decode_any(&notice).unwrap();
        assert_eq!(d.kind(), Kind::Notice);
        assert_eq!(d.self_signed(), Some(true));
        assert_eq!(d.id(), Domain::NOTICE.hash(d.payload()));
        let receipt = signed::sign_receipt(
            &key,
            &TransferReceipt {
                consumer_pid: c,
                provider_pid: p,
                agreement: Hash256::from_bytes([3; 32]),
                root: Hash256::from_bytes([4; 32]),
                size: 10,
                bytes: 10,
                chunks: 1,
                complete: true,
                consumer: key.id(),
                consumer_key: key.public_key(),
                time: Timestamp::from_secs(1),
            },
        )
        .unwrap();
        let d = decode_any(&receipt).unwrap();
        assert_eq!(d.kind(), Kind::TransferReceipt);
        assert_eq!(d.self_signed(), Some(true));
        let v = signed::verify_receipt(&receipt, &key.public_key(), c, p).unwrap();
        assert_eq!(d.id(), v.id());
        let admission = AdmissionRequest {
            version: tds_protocol::join::ADMISSION_REQUEST_VERSION,
            applicant_key: key.public_key(),
            name: "Applicant".into(),
            sectors: vec![tds_identity::Sector::POWER],
            roles: vec![tds_identity::Role::Consumer],
            jurisdiction: "CN".parse().unwrap(),
            not_before: Timestamp::from_secs(1),
            not_after: Timestamp::from_secs(2),
            time: Timestamp::from_secs(1),
            nonce: serde_bytes::ByteArray::new([7; 16]),
        }
        .sign(&key)
        .unwrap();
        let d = decode_any(&admission).unwrap();
        assert_eq!(d.kind(), Kind::AdmissionRequest);
        assert_eq!(d.self_signed(), Some(true));
    }

    #[test]
    fn post_agreement_objects_decode_with_their_ids() {
        use tds_core::{SigningKey, Timestamp};
        use tds_protocol::signed::{self, ActionUses};
        let consumer = SigningKey::from_seed(&[5; 32]);
        let provider = SigningKey::from_seed(&[6; 32]);
        let agreement = Hash256::from_bytes([3; 32]);
        let report = signed::sign_usage_report(
            &consumer,
            &UsageReport {
                agreement,
                consumer: consumer.id(),
                consumer_key: consumer.public_key(),
                from: Timestamp::from_secs(1),
                to: Timestamp::from_secs(2),
                uses: 3,
                bytes: 4096,
                actions: vec![
                    ActionUses {
                        action: tds_policy::Action::Analyze,
                        uses: 2,
                    },
                    ActionUses {
                        action: tds_policy::Action::Read,
                        uses: 1,
                    },
                ],
                time: Timestamp::from_secs(3),
            },
        )
        .unwrap();
        let d = decode_any(&report).unwrap();
        assert_eq!(d.kind(), Kind::UsageReport);
        assert_eq!(d.self_signed(), Some(true));
        let v = signed::verify_usage_report(&report, &consumer.public_key()).unwrap();
        assert_eq!(d.id(), v.id());
        assert_eq!(Some(v.id()), v.report().id().ok());
        let receipt = signed::sign_deletion_receipt(
            &consumer,
            &DeletionReceipt {
                agreement,
                asset: Hash256::from_bytes([4; 32]),
                consumer: consumer.id(),
                consumer_key: consumer.public_key(),
                chunks: 2,
                bytes: 100,
                time: Timestamp::from_secs(4),
            },
        )
        .unwrap();
        let d = decode_any(&receipt).unwrap();
        assert_eq!(d.kind(), Kind::DeletionReceipt);
        assert_eq!(d.self_signed(), Some(true));
        let v = signed::verify_deletion_receipt(&receipt, &consumer.public_key()).unwrap();
        assert_eq!(d.id(), v.id());
        let record = signed::sign_usage_record(
            &provider,
            &UsageRecord {
                agreement,
                provider: provider.id(),
                consumer: consumer.id(),
                transfer: Some(Hash256::from_bytes([7; 32])),
                uses: 1,
                bytes: 100,
                amount: tds_policy::Amount(125_000),
                currency: "CNY".parse().unwrap(),
                time: Timestamp::from_secs(5),
                recorder: provider.id(),
                recorder_key: provider.public_key(),
            },
        )
        .unwrap();
        let d = decode_any(&record).unwrap();
        assert_eq!(d.kind(), Kind::UsageRecord);
        assert_eq!(d.self_signed(), Some(true));
        let v = signed::verify_usage_record(&record, &provider.public_key()).unwrap();
        assert_eq!(d.id(), v.id());
        assert!(matches!(d.value(), Value::UsageRecord(r) if r.uses == 1));
    }

    #[test]
    fn registry_is_one_to_one() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_content_type(k.content_type()), Some(k));
            assert_eq!(Kind::from_name(k.name()), Some(k));
            assert!(k.content_type().starts_with("application/tds."));
            assert!(k.content_type().ends_with("+cbor"));
        }
        let mut domains: Vec<&str> = Kind::ALL.iter().map(|k| k.domain().as_str()).collect();
        domains.sort_unstable();
        domains.dedup();
        assert_eq!(domains.len(), Kind::ALL.len());
    }
}
