//! COSE signed envelopes (RFC 9052): COSE_Sign1 (tag 18) and COSE_Sign (tag 98).
//!
//! Two layers:
//!
//! - The **raw layer** ([`CoseSign1`], [`CoseSign`]) parses and writes the standard
//!   structures with header parameters in either bucket (protected or unprotected), tagged
//!   or untagged, and payloads of any bytes, as the cose-wg examples do, and verifies
//!   Ed25519 signatures over the RFC 9052 `Sig_structure`. Its CBOR must still be in
//!   canonical form (definite, shortest lengths; header maps in canonical key order): it
//!   is the parser peers' bytes reach, and it refuses rather than normalizes.
//! - The **typed layer** ([`sign`], [`open`], [`Verified`]; [`sign_multi`],
//!   [`add_signature`], [`open_multi`], [`VerifiedMulti`]) adds the TDS rules: algorithm
//!   EdDSA (-8) with an Ed25519 key, `kid` (the 32-byte key id) and the content type in the
//!   protected header, an empty unprotected header, and a payload that is the canonical
//!   CBOR of a [`SignedObject`] (no tags, no floats).
//!
//! Only [`Unverified::verify`] and [`UnverifiedMulti::verify`] make a [`Verified`] or a
//! [`VerifiedMulti`]; code that takes one knows the signature was checked.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tds_core::cose::{self, SignedObject};
//! use tds_core::key::SigningKey;
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Note { text: String }
//! impl SignedObject for Note { const CONTENT_TYPE: &'static str = "application/tds.note+cbor"; }
//!
//! let key = SigningKey::from_seed(&[7; 32]);
//! let bytes = cose::sign(&key, &Note { text: "hello".into() })?;
//! let opened = cose::open::<Note>(&bytes)?;
//! assert_eq!(opened.kid(), key.id());
//! let verified = opened.verify(&key.public_key())?;
//! assert_eq!(verified.text, "hello");
//! # Ok::<(), tds_core::cose::CoseError>(())
//! ```

use std::ops::Deref;

use serde::{de::DeserializeOwned, Serialize};

use crate::cbor::{self, CborError, Limits, Major, Reader, Value};
use crate::hash::Hash256;
use crate::key::{PublicKey, SignError, Signer, SIGNATURE_LEN};

/// CBOR tag of COSE_Sign1.
pub const TAG_SIGN1: u64 = 18;
/// CBOR tag of COSE_Sign.
pub const TAG_SIGN: u64 = 98;

/// Header labels (RFC 9052 §3.1).
pub mod label {
    /// Algorithm.
    pub const ALG: i128 = 1;
    /// Critical headers.
    pub const CRIT: i128 = 2;
    /// Content type.
    pub const CONTENT_TYPE: i128 = 3;
    /// Key id.
    pub const KID: i128 = 4;
}

/// Algorithm ids.
pub mod alg {
    /// EdDSA (RFC 9053), polymorphic over curves; TDS signs with it, Ed25519 keys only.
    pub const EDDSA: i128 = -8;
    /// Ed25519, fully specified (RFC 9864); accepted on verification.
    pub const ED25519: i128 = -19;
}

/// Largest envelope accepted by default (16 MiB).
pub const MAX_ENVELOPE: usize = 16 * 1024 * 1024;

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoseError {
    /// Bytes that are not canonical CBOR.
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// The outer tag is missing or not the one expected.
    #[error("cose: expected tag {expected}, found {}", found.map_or("no tag".to_string(), |t| format!("tag {t}")))]
    WrongTag {
        /// The tag for this structure.
        expected: u64,
        /// The tag found.
        found: Option<u64>,
    },
    /// The CBOR shape is not the COSE structure.
    #[error("cose: malformed structure: {0}")]
    Structure(&'static str),
    /// An algorithm other than Ed25519.
    #[error("cose: unsupported algorithm: {0}")]
    UnsupportedAlgorithm(Algorithm),
    /// A header that breaks a rule.
    #[error("cose: header: {0}")]
    Header(HeaderProblem),
    /// A TDS envelope of another kind of object.
    #[error("cose: content type is {found:?}, expected {expected:?}")]
    WrongContentType {
        /// What the caller asked for.
        expected: &'static str,
        /// What the envelope says.
        found: String,
    },
    /// The envelope's payload is not there (detached).
    #[error("cose: payload is detached (nil); TDS envelopes carry their payload")]
    DetachedPayload,
    /// The key offered for verification is not the one that `kid` names.
    #[error("cose: signed by key {kid}, not by {key}")]
    KidMismatch {
        /// The key id in the envelope.
        kid: Hash256,
        /// The id of the key offered.
        key: Hash256,
    },
    /// The signature does not verify.
    #[error("cose: signature does not verify")]
    BadSignature,
    /// The set of signers of a COSE_Sign is not the expected one.
    #[error("cose: signers: {0}")]
    Signers(SignerProblem),
    /// The signer could not sign.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// A message said to extend an earlier one (more signatures on the same payload)
    /// does not: [`UnverifiedMulti::verify_extending`].
    #[error(
        "cose: the message does not extend the earlier one (headers, payload or signatures differ)"
    )]
    NotExtending,
    /// Larger than [`MAX_ENVELOPE`].
    #[error("cose: envelope of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl crate::ErrorCode for CoseError {
    fn code(&self) -> &'static str {
        match self {
            CoseError::Cbor(e) => e.code(),
            CoseError::WrongTag { .. } => "cose.wrong_tag",
            CoseError::Structure(_) => "cose.structure",
            CoseError::UnsupportedAlgorithm(_) => "cose.unsupported_algorithm",
            CoseError::Header(h) => h.code(),
            CoseError::WrongContentType { .. } => "cose.wrong_content_type",
            CoseError::DetachedPayload => "cose.detached_payload",
            CoseError::KidMismatch { .. } => "cose.kid_mismatch",
            CoseError::BadSignature => "cose.bad_signature",
            CoseError::Signers(p) => p.code(),
            CoseError::Sign(_) => "cose.sign",
            CoseError::TooLarge { .. } => "cose.too_large",
            CoseError::NotExtending => "cose.not_extending",
        }
    }
}

/// An algorithm a TDS verifier does not support.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// An integer algorithm id other than -8 and -19.
    Id(i128),
    /// A text algorithm name.
    Name(String),
    /// No algorithm header at all (the typed layer).
    Missing,
    /// An algorithm header that is neither an integer nor text (the typed layer).
    WrongType,
    /// An EdDSA signature of another length than Ed25519's 64 bytes.
    SignatureLength(usize),
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const ONLY: &str = "only EdDSA (-8) and Ed25519 (-19) are supported";
        match self {
            Algorithm::Id(a) => write!(f, "{a}{}; {ONLY}", alg_name(*a)),
            Algorithm::Name(t) => write!(f, "{t:?}; {ONLY}"),
            Algorithm::Missing => write!(f, "no alg; {ONLY}"),
            Algorithm::WrongType => write!(f, "alg of the wrong type; {ONLY}"),
            Algorithm::SignatureLength(n) => write!(
                f,
                "EdDSA signature of {n} bytes: only Ed25519 (64-byte signatures) is supported{}",
                if *n == 114 { ", not Ed448" } else { "" }
            ),
        }
    }
}

/// A header rule an envelope breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderProblem {
    /// A label that is neither an integer nor text.
    #[error("labels must be integers or text")]
    LabelType,
    /// A label in both the protected and the unprotected map.
    #[error("a label appears in both the protected and the unprotected header")]
    BothBuckets,
    /// Critical headers, which TDS does not understand.
    #[error("critical headers (label 2) are not understood")]
    Critical,
    /// No alg header (raw layer).
    #[error("no alg header")]
    NoAlg,
    /// An alg header of the wrong CBOR type (raw layer).
    #[error("alg must be an integer or text")]
    AlgType,
    /// A TDS signer header that holds other labels than alg, content type and kid.
    #[error("the protected header must hold exactly alg, content type and kid")]
    NotAlgContentTypeKid,
    /// A TDS COSE_Sign signer header that holds other labels than alg and kid.
    #[error("the protected header must hold exactly alg, kid")]
    NotAlgKid,
    /// A TDS COSE_Sign body header that holds other labels than the content type.
    #[error("the body protected header must hold exactly the content type")]
    NotContentTypeOnly,
    /// No text content type in the protected header.
    #[error("the protected header must hold a text content type")]
    NoContentType,
    /// A kid that is not 32 bytes.
    #[error("kid must be 32 bytes")]
    KidLength,
    /// No kid byte string in the protected header.
    #[error("kid must be a byte string in the protected header")]
    NoKid,
    /// A TDS envelope with unprotected header entries.
    #[error("the unprotected header of a TDS envelope must be empty")]
    UnprotectedNotEmpty,
    /// A TDS COSE_Sign signer with unprotected header entries.
    #[error("a signer's unprotected header must be empty")]
    SignerUnprotectedNotEmpty,
}

impl crate::ErrorCode for HeaderProblem {
    fn code(&self) -> &'static str {
        match self {
            HeaderProblem::LabelType => "cose.header.label_type",
            HeaderProblem::BothBuckets => "cose.header.both_buckets",
            HeaderProblem::Critical => "cose.header.critical",
            HeaderProblem::NoAlg => "cose.header.no_alg",
            HeaderProblem::AlgType => "cose.header.alg_type",
            HeaderProblem::NotAlgContentTypeKid => "cose.header.not_alg_content_type_kid",
            HeaderProblem::NotAlgKid => "cose.header.not_alg_kid",
            HeaderProblem::NotContentTypeOnly => "cose.header.not_content_type_only",
            HeaderProblem::NoContentType => "cose.header.no_content_type",
            HeaderProblem::KidLength => "cose.header.kid_length",
            HeaderProblem::NoKid => "cose.header.no_kid",
            HeaderProblem::UnprotectedNotEmpty => "cose.header.unprotected_not_empty",
            HeaderProblem::SignerUnprotectedNotEmpty => "cose.header.signer_unprotected_not_empty",
        }
    }
}

/// Why the signers of a COSE_Sign are not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerProblem {
    /// More signatures than [`MAX_SIGNERS`].
    #[error("{count} signatures exceeds the limit of {MAX_SIGNERS}")]
    TooMany {
        /// How many.
        count: u64,
    },
    /// Signing with no key or more than [`MAX_SIGNERS`].
    #[error("between 1 and {MAX_SIGNERS} signers, not {count}")]
    Count {
        /// How many keys were given.
        count: usize,
    },
    /// The same key signs twice.
    #[error("{0} signs twice")]
    Twice(Hash256),
    /// A countersigner that has already signed.
    #[error("{0} has already signed")]
    AlreadySigned(Hash256),
    /// Another number of signers than expected.
    #[error("expected {expected} signers, found {found}")]
    Number {
        /// Expected.
        expected: usize,
        /// Found.
        found: usize,
    },
    /// A signer the verifier did not expect.
    #[error("unexpected signer {0}")]
    Unexpected(Hash256),
    /// A signer in another position than expected (the order is part of the contract).
    #[error("signature {index} is by {found}, expected {expected}")]
    Order {
        /// The position.
        index: usize,
        /// The key id expected there.
        expected: Hash256,
        /// The key id found there.
        found: Hash256,
    },
    /// No signature at this index.
    #[error("no signature {0}")]
    Missing(usize),
}

impl crate::ErrorCode for SignerProblem {
    fn code(&self) -> &'static str {
        match self {
            SignerProblem::TooMany { .. } => "cose.signers.too_many",
            SignerProblem::Count { .. } => "cose.signers.count",
            SignerProblem::Twice(_) => "cose.signers.twice",
            SignerProblem::AlreadySigned(_) => "cose.signers.already_signed",
            SignerProblem::Number { .. } => "cose.signers.number",
            SignerProblem::Unexpected(_) => "cose.signers.unexpected",
            SignerProblem::Order { .. } => "cose.signers.order",
            SignerProblem::Missing(_) => "cose.signers.missing",
        }
    }
}

/// A decoded header map (protected or unprotected), entries in their encoded order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderMap(pub Vec<(Value, Value)>);

impl HeaderMap {
    /// The value under an integer label.
    pub fn get(&self, label: i128) -> Option<&Value> {
        self.0
            .iter()
            .find_map(|(k, v)| (k == &Value::Integer(label)).then_some(v))
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn from_value(v: Value) -> Result<Self, CoseError> {
        match v {
            Value::Map(entries) => {
                for (k, _) in &entries {
                    if !matches!(k, Value::Integer(_) | Value::Text(_)) {
                        return Err(CoseError::Header(HeaderProblem::LabelType));
                    }
                }
                Ok(HeaderMap(entries))
            }
            _ => Err(CoseError::Structure("a header must be a map")),
        }
    }

    fn encode(&self) -> Result<Vec<u8>, CoseError> {
        Ok(cbor::encode(&Value::Map(self.0.clone()))?)
    }
}

fn decode_protected(bytes: &[u8]) -> Result<HeaderMap, CoseError> {
    if bytes.is_empty() {
        return Ok(HeaderMap::default());
    }
    HeaderMap::from_value(cbor::decode::<Value>(bytes)?)
}

fn read_tag(r: &mut Reader<'_>, expected: u64) -> Result<bool, CoseError> {
    match r.peek() {
        Some(b) if b >> 5 == 6 => {
            let h = r.strict_header()?;
            if h.arg != expected {
                return Err(CoseError::WrongTag {
                    expected,
                    found: Some(h.arg),
                });
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn read_array(r: &mut Reader<'_>, len: u64, what: &'static str) -> Result<(), CoseError> {
    let h = r.strict_header()?;
    if h.major != Major::Array || h.arg != len {
        return Err(CoseError::Structure(what));
    }
    Ok(())
}

fn read_bstr<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], CoseError> {
    let h = r.strict_header()?;
    if h.major != Major::Bytes {
        return Err(CoseError::Structure(what));
    }
    Ok(r.take(h.arg)?)
}

fn read_map(r: &mut Reader<'_>) -> Result<HeaderMap, CoseError> {
    let item = cbor::read_item(r, &Limits::DEFAULT)?;
    HeaderMap::from_value(cbor::decode::<Value>(item)?)
}

fn read_payload(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, CoseError> {
    if r.peek() == Some(0xf6) {
        r.take(1)?;
        return Ok(None);
    }
    Ok(Some(
        read_bstr(r, "payload must be a byte string or nil")?.to_vec(),
    ))
}

fn write_bstr(out: &mut Vec<u8>, b: &[u8]) {
    cbor::write_header(out, Major::Bytes, b.len() as u64);
    out.extend_from_slice(b);
}

fn check_size(bytes: &[u8]) -> Result<(), CoseError> {
    if bytes.len() > MAX_ENVELOPE {
        return Err(CoseError::TooLarge {
            size: bytes.len(),
            limit: MAX_ENVELOPE,
        });
    }
    Ok(())
}

/// No header label may appear in both the protected and the unprotected map.
fn check_disjoint(protected: &HeaderMap, unprotected: &HeaderMap) -> Result<(), CoseError> {
    if protected
        .0
        .iter()
        .any(|(k, _)| unprotected.0.iter().any(|(k2, _)| k == k2))
    {
        return Err(CoseError::Header(HeaderProblem::BothBuckets));
    }
    Ok(())
}

/// Checks the algorithm and the signature length for an Ed25519 verification.
fn check_ed25519(
    alg: Option<&Value>,
    crit: Option<&Value>,
    signature: &[u8],
) -> Result<(), CoseError> {
    if crit.is_some() {
        return Err(CoseError::Header(HeaderProblem::Critical));
    }
    match alg {
        Some(Value::Integer(a)) if *a == alg::EDDSA || *a == alg::ED25519 => {}
        Some(Value::Integer(a)) => return Err(CoseError::UnsupportedAlgorithm(Algorithm::Id(*a))),
        Some(Value::Text(t)) => {
            return Err(CoseError::UnsupportedAlgorithm(Algorithm::Name(t.clone())))
        }
        Some(_) => return Err(CoseError::Header(HeaderProblem::AlgType)),
        None => return Err(CoseError::Header(HeaderProblem::NoAlg)),
    }
    if signature.len() != SIGNATURE_LEN {
        return Err(CoseError::UnsupportedAlgorithm(Algorithm::SignatureLength(
            signature.len(),
        )));
    }
    Ok(())
}

fn alg_name(a: i128) -> &'static str {
    match a {
        -7 => " (ES256)",
        -35 => " (ES384)",
        -36 => " (ES512)",
        -37 => " (PS256)",
        -257 => " (RS256)",
        -53 => " (Ed448)",
        _ => "",
    }
}

/// Builds the `Sig_structure` for COSE_Sign1.
pub fn sig_structure1(protected: &[u8], external_aad: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + protected.len() + external_aad.len() + payload.len());
    cbor::write_header(&mut out, Major::Array, 4);
    write_bstr_text(&mut out, "Signature1");
    write_bstr(&mut out, protected);
    write_bstr(&mut out, external_aad);
    write_bstr(&mut out, payload);
    out
}

/// Builds the `Sig_structure` for one signature of a COSE_Sign.
pub fn sig_structure(
    body_protected: &[u8],
    sign_protected: &[u8],
    external_aad: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        24 + body_protected.len() + sign_protected.len() + external_aad.len() + payload.len(),
    );
    cbor::write_header(&mut out, Major::Array, 5);
    write_bstr_text(&mut out, "Signature");
    write_bstr(&mut out, body_protected);
    write_bstr(&mut out, sign_protected);
    write_bstr(&mut out, external_aad);
    write_bstr(&mut out, payload);
    out
}

fn write_bstr_text(out: &mut Vec<u8>, t: &str) {
    cbor::write_header(out, Major::Text, t.len() as u64);
    out.extend_from_slice(t.as_bytes());
}

/// A COSE_Sign1 message, raw: any headers, any payload bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct CoseSign1 {
    /// Whether the message carried tag 18.
    pub tagged: bool,
    /// The serialized protected header (the exact bytes the signature covers).
    pub protected: Vec<u8>,
    /// The protected header, decoded.
    pub protected_header: HeaderMap,
    /// The unprotected header.
    pub unprotected: HeaderMap,
    /// The payload, or `None` when detached.
    pub payload: Option<Vec<u8>>,
    /// The signature.
    pub signature: Vec<u8>,
}

impl CoseSign1 {
    /// Parses a COSE_Sign1, tagged (18) or untagged. Any other tag is refused.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CoseError> {
        check_size(bytes)?;
        let mut r = Reader::new(bytes);
        let tagged = read_tag(&mut r, TAG_SIGN1)?;
        read_array(&mut r, 4, "COSE_Sign1 must be an array of 4 items")?;
        let protected = read_bstr(&mut r, "protected header must be a byte string")?.to_vec();
        let protected_header = decode_protected(&protected)?;
        let unprotected = read_map(&mut r)?;
        let payload = read_payload(&mut r)?;
        let signature = read_bstr(&mut r, "signature must be a byte string")?.to_vec();
        r.finish()?;
        check_disjoint(&protected_header, &unprotected)?;
        Ok(CoseSign1 {
            tagged,
            protected,
            protected_header,
            unprotected,
            payload,
            signature,
        })
    }

    /// Serializes the message.
    pub fn to_vec(&self) -> Result<Vec<u8>, CoseError> {
        let mut out = Vec::with_capacity(
            16 + self.protected.len()
                + self.payload.as_ref().map_or(0, Vec::len)
                + self.signature.len(),
        );
        if self.tagged {
            cbor::write_header(&mut out, Major::Tag, TAG_SIGN1);
        }
        cbor::write_header(&mut out, Major::Array, 4);
        write_bstr(&mut out, &self.protected);
        out.extend_from_slice(&self.unprotected.encode()?);
        match &self.payload {
            Some(p) => write_bstr(&mut out, p),
            None => out.push(0xf6),
        }
        write_bstr(&mut out, &self.signature);
        Ok(out)
    }

    /// A header value, protected first, then unprotected.
    pub fn header(&self, label: i128) -> Option<&Value> {
        self.protected_header
            .get(label)
            .or_else(|| self.unprotected.get(label))
    }

    /// The bytes the signature covers; `detached` stands in for a nil payload.
    pub fn to_be_signed(
        &self,
        external_aad: &[u8],
        detached: Option<&[u8]>,
    ) -> Result<Vec<u8>, CoseError> {
        let payload = match (&self.payload, detached) {
            (Some(p), _) => p.as_slice(),
            (None, Some(d)) => d,
            (None, None) => return Err(CoseError::DetachedPayload),
        };
        Ok(sig_structure1(&self.protected, external_aad, payload))
    }

    /// Verifies the signature with an Ed25519 key (alg -8 or -19, wherever the header
    /// places it). Other algorithms are refused as unsupported, never ignored.
    pub fn verify_ed25519(&self, external_aad: &[u8], key: &PublicKey) -> Result<(), CoseError> {
        check_ed25519(
            self.header(label::ALG),
            self.header(label::CRIT),
            &self.signature,
        )?;
        let tbs = self.to_be_signed(external_aad, None)?;
        key.verify(&tbs, &self.signature)
            .map_err(|_| CoseError::BadSignature)
    }
}

/// One signature of a COSE_Sign.
#[derive(Clone, Debug, PartialEq)]
pub struct CoseSignature {
    /// The serialized protected header of this signer.
    pub protected: Vec<u8>,
    /// That header, decoded.
    pub protected_header: HeaderMap,
    /// The unprotected header of this signer.
    pub unprotected: HeaderMap,
    /// The signature.
    pub signature: Vec<u8>,
}

impl CoseSignature {
    /// A header value of this signer, protected first.
    pub fn header(&self, label: i128) -> Option<&Value> {
        self.protected_header
            .get(label)
            .or_else(|| self.unprotected.get(label))
    }
}

/// A COSE_Sign message (several signers over one payload), raw.
#[derive(Clone, Debug, PartialEq)]
pub struct CoseSign {
    /// Whether the message carried tag 98.
    pub tagged: bool,
    /// The serialized body protected header.
    pub protected: Vec<u8>,
    /// The body protected header, decoded.
    pub protected_header: HeaderMap,
    /// The body unprotected header.
    pub unprotected: HeaderMap,
    /// The payload, or `None` when detached.
    pub payload: Option<Vec<u8>>,
    /// The signatures, in order.
    pub signatures: Vec<CoseSignature>,
}

/// At most this many signatures in one COSE_Sign.
pub const MAX_SIGNERS: u64 = 16;

impl CoseSign {
    /// Parses a COSE_Sign, tagged (98) or untagged.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CoseError> {
        check_size(bytes)?;
        let mut r = Reader::new(bytes);
        let tagged = read_tag(&mut r, TAG_SIGN)?;
        read_array(&mut r, 4, "COSE_Sign must be an array of 4 items")?;
        let protected = read_bstr(&mut r, "protected header must be a byte string")?.to_vec();
        let protected_header = decode_protected(&protected)?;
        let unprotected = read_map(&mut r)?;
        check_disjoint(&protected_header, &unprotected)?;
        let payload = read_payload(&mut r)?;
        let h = r.strict_header()?;
        if h.major != Major::Array || h.arg == 0 {
            return Err(CoseError::Structure("signatures must be a non-empty array"));
        }
        if h.arg > MAX_SIGNERS {
            return Err(CoseError::Signers(SignerProblem::TooMany { count: h.arg }));
        }
        let mut signatures = Vec::new();
        for _ in 0..h.arg {
            read_array(&mut r, 3, "COSE_Signature must be an array of 3 items")?;
            let sp = read_bstr(&mut r, "signer protected header must be a byte string")?.to_vec();
            let sph = decode_protected(&sp)?;
            let su = read_map(&mut r)?;
            check_disjoint(&sph, &su)?;
            let sig = read_bstr(&mut r, "signature must be a byte string")?.to_vec();
            signatures.push(CoseSignature {
                protected: sp,
                protected_header: sph,
                unprotected: su,
                signature: sig,
            });
        }
        r.finish()?;
        Ok(CoseSign {
            tagged,
            protected,
            protected_header,
            unprotected,
            payload,
            signatures,
        })
    }

    /// Serializes the message.
    pub fn to_vec(&self) -> Result<Vec<u8>, CoseError> {
        let mut out = Vec::new();
        if self.tagged {
            cbor::write_header(&mut out, Major::Tag, TAG_SIGN);
        }
        cbor::write_header(&mut out, Major::Array, 4);
        write_bstr(&mut out, &self.protected);
        out.extend_from_slice(&self.unprotected.encode()?);
        match &self.payload {
            Some(p) => write_bstr(&mut out, p),
            None => out.push(0xf6),
        }
        cbor::write_header(&mut out, Major::Array, self.signatures.len() as u64);
        for s in &self.signatures {
            cbor::write_header(&mut out, Major::Array, 3);
            write_bstr(&mut out, &s.protected);
            out.extend_from_slice(&s.unprotected.encode()?);
            write_bstr(&mut out, &s.signature);
        }
        Ok(out)
    }

    /// Verifies signature `index` with an Ed25519 key.
    pub fn verify_ed25519(
        &self,
        index: usize,
        external_aad: &[u8],
        key: &PublicKey,
    ) -> Result<(), CoseError> {
        let s = self
            .signatures
            .get(index)
            .ok_or(CoseError::Signers(SignerProblem::Missing(index)))?;
        check_ed25519(s.header(label::ALG), s.header(label::CRIT), &s.signature)?;
        let payload = self.payload.as_deref().ok_or(CoseError::DetachedPayload)?;
        let tbs = sig_structure(&self.protected, &s.protected, external_aad, payload);
        key.verify(&tbs, &s.signature)
            .map_err(|_| CoseError::BadSignature)
    }
}

// ---------------------------------------------------------------------------------------
// The typed TDS layer.
// ---------------------------------------------------------------------------------------

/// An object TDS signs: canonical CBOR with no tags and no floats, one content type.
pub trait SignedObject: Serialize + DeserializeOwned {
    /// `application/tds.<kind>+cbor`.
    const CONTENT_TYPE: &'static str;
}

/// The TDS protected header `{1: -8, 3: content_type, 4: kid}`, written directly (it is
/// already in canonical key order).
fn sign1_protected(key: &dyn Signer, content_type: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + content_type.len());
    out.extend_from_slice(&[0xa3, 0x01, 0x27, 0x03]);
    cbor::write_header(&mut out, Major::Text, content_type.len() as u64);
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(&[0x04, 0x58, 0x20]);
    out.extend_from_slice(key.key_id().as_bytes());
    out
}

/// Signs `value` as a TDS COSE_Sign1 envelope (tag 18, alg -8).
pub fn sign<T: SignedObject>(key: &dyn Signer, value: &T) -> Result<Vec<u8>, CoseError> {
    let payload = cbor::encode(value)?;
    sign_payload(key, T::CONTENT_TYPE, payload)
}

/// Signs already-canonical payload bytes under `content_type`.
fn sign_payload(
    key: &dyn Signer,
    content_type: &str,
    payload: Vec<u8>,
) -> Result<Vec<u8>, CoseError> {
    let protected = sign1_protected(key, content_type);
    let tbs = sig_structure1(&protected, &[], &payload);
    let signature = key.try_sign(&tbs)?;
    // Tag 18, an array of 4: protected, {} (empty unprotected), payload, signature.
    let mut out = Vec::with_capacity(16 + protected.len() + payload.len() + SIGNATURE_LEN);
    cbor::write_header(&mut out, Major::Tag, TAG_SIGN1);
    cbor::write_header(&mut out, Major::Array, 4);
    write_bstr(&mut out, &protected);
    out.push(0xa0);
    write_bstr(&mut out, &payload);
    write_bstr(&mut out, &signature);
    Ok(out)
}

/// The alg, content type and kid of a TDS protected header, which must hold exactly those.
fn typed_signer_header(
    h: &HeaderMap,
    want_content_type: bool,
) -> Result<(Option<String>, Hash256), CoseError> {
    let expected = if want_content_type { 3 } else { 2 };
    if h.0.len() != expected {
        return Err(CoseError::Header(if want_content_type {
            HeaderProblem::NotAlgContentTypeKid
        } else {
            HeaderProblem::NotAlgKid
        }));
    }
    match h.get(label::ALG) {
        Some(Value::Integer(a)) if *a == alg::EDDSA || *a == alg::ED25519 => {}
        Some(Value::Integer(a)) => return Err(CoseError::UnsupportedAlgorithm(Algorithm::Id(*a))),
        Some(Value::Text(t)) => {
            return Err(CoseError::UnsupportedAlgorithm(Algorithm::Name(t.clone())))
        }
        Some(_) => return Err(CoseError::UnsupportedAlgorithm(Algorithm::WrongType)),
        None => return Err(CoseError::UnsupportedAlgorithm(Algorithm::Missing)),
    }
    let content_type = if want_content_type {
        match h.get(label::CONTENT_TYPE) {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => return Err(CoseError::Header(HeaderProblem::NoContentType)),
        }
    } else {
        None
    };
    let kid = match h.get(label::KID) {
        Some(Value::Bytes(b)) => {
            Hash256::from_slice(b).ok_or(CoseError::Header(HeaderProblem::KidLength))?
        }
        _ => return Err(CoseError::Header(HeaderProblem::NoKid)),
    };
    Ok((content_type, kid))
}

/// The content type of a TDS envelope (COSE_Sign1 or COSE_Sign), without verifying it.
/// Tools use it to tell objects apart.
pub fn peek_content_type(bytes: &[u8]) -> Result<String, CoseError> {
    let tag = match bytes.first() {
        Some(0xd2) => TAG_SIGN1,
        Some(0xd8) if bytes.get(1) == Some(&0x62) => TAG_SIGN,
        _ => {
            return Err(CoseError::WrongTag {
                expected: TAG_SIGN1,
                found: None,
            })
        }
    };
    let header = if tag == TAG_SIGN1 {
        CoseSign1::from_slice(bytes)?.protected_header
    } else {
        CoseSign::from_slice(bytes)?.protected_header
    };
    match header.get(label::CONTENT_TYPE) {
        Some(Value::Text(t)) => Ok(t.clone()),
        _ => Err(CoseError::Header(HeaderProblem::NoContentType)),
    }
}

/// A parsed TDS COSE_Sign1 whose signature has not been checked yet.
///
/// The value can be looked at (to find out which key should have signed it), but only
/// [`Unverified::verify`] turns it into a [`Verified`].
#[derive(Debug)]
pub struct Unverified<T> {
    value: T,
    kid: Hash256,
    /// The message, its payload taken out into `payload`.
    message: CoseSign1,
    payload: Vec<u8>,
    bytes: Vec<u8>,
}

/// Parses a TDS COSE_Sign1 of type `T` and checks every rule except the signature.
pub fn open<T: SignedObject>(bytes: &[u8]) -> Result<Unverified<T>, CoseError> {
    let message = CoseSign1::from_slice(bytes)?;
    if !message.tagged {
        return Err(CoseError::WrongTag {
            expected: TAG_SIGN1,
            found: None,
        });
    }
    let (content_type, kid) = typed_signer_header(&message.protected_header, true)?;
    let content_type = content_type.ok_or(CoseError::Header(HeaderProblem::NoContentType))?;
    if content_type != T::CONTENT_TYPE {
        return Err(CoseError::WrongContentType {
            expected: T::CONTENT_TYPE,
            found: content_type,
        });
    }
    if !message.unprotected.is_empty() {
        return Err(CoseError::Header(HeaderProblem::UnprotectedNotEmpty));
    }
    if message.signature.len() != SIGNATURE_LEN {
        return Err(CoseError::UnsupportedAlgorithm(Algorithm::SignatureLength(
            message.signature.len(),
        )));
    }
    let mut message = message;
    let payload = message.payload.take().ok_or(CoseError::DetachedPayload)?;
    // The raw parser accepts only canonical framing and header maps, so the message
    // re-encodes to exactly these bytes (the `envelope` fuzz target asserts it).
    let value: T = cbor::decode(&payload)?;
    Ok(Unverified {
        value,
        kid,
        message,
        payload,
        bytes: bytes.to_vec(),
    })
}

impl<T> Unverified<T> {
    /// The claimed contents, not yet authenticated.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The key id named in the protected header.
    pub fn kid(&self) -> Hash256 {
        self.kid
    }

    /// The canonical payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Checks that `key` is the one `kid` names and that its signature verifies.
    pub fn verify(self, key: &PublicKey) -> Result<Verified<T>, CoseError> {
        if key.id() != self.kid {
            return Err(CoseError::KidMismatch {
                kid: self.kid,
                key: key.id(),
            });
        }
        let tbs = sig_structure1(&self.message.protected, &[], &self.payload);
        key.verify(&tbs, &self.message.signature)
            .map_err(|_| CoseError::BadSignature)?;
        Ok(Verified {
            value: self.value,
            signer: *key,
            payload: self.payload,
            bytes: self.bytes,
        })
    }
}

/// A value whose COSE_Sign1 signature has been checked. Only [`Unverified::verify`]
/// makes one.
#[derive(Clone, Debug)]
pub struct Verified<T> {
    value: T,
    signer: PublicKey,
    payload: Vec<u8>,
    bytes: Vec<u8>,
}

impl<T> Verified<T> {
    /// The verified value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The key that signed it.
    pub fn signer(&self) -> &PublicKey {
        &self.signer
    }

    /// The canonical payload bytes that were signed.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The whole envelope as received.
    pub fn envelope(&self) -> &[u8] {
        &self.bytes
    }

    /// The verified value, consuming the proof.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

fn multi_body_protected(content_type: &str) -> Result<Vec<u8>, CoseError> {
    Ok(cbor::encode(&Value::Map(vec![(
        Value::Integer(label::CONTENT_TYPE),
        Value::Text(content_type.to_owned()),
    )]))?)
}

fn multi_signer_protected(key: &dyn Signer) -> Result<Vec<u8>, CoseError> {
    Ok(cbor::encode(&Value::Map(vec![
        (Value::Integer(label::ALG), Value::Integer(alg::EDDSA)),
        (
            Value::Integer(label::KID),
            Value::Bytes(key.key_id().as_bytes().to_vec()),
        ),
    ]))?)
}

fn push_signature(msg: &mut CoseSign, key: &dyn Signer) -> Result<(), CoseError> {
    let sp = multi_signer_protected(key)?;
    let payload = msg.payload.as_deref().ok_or(CoseError::DetachedPayload)?;
    let tbs = sig_structure(&msg.protected, &sp, &[], payload);
    let signature = key.try_sign(&tbs)?.to_vec();
    msg.signatures.push(CoseSignature {
        protected_header: decode_protected(&sp)?,
        protected: sp,
        unprotected: HeaderMap::default(),
        signature,
    });
    Ok(())
}

/// Signs `value` by every key in `keys`, in order, as one COSE_Sign (tag 98).
pub fn sign_multi<T: SignedObject>(keys: &[&dyn Signer], value: &T) -> Result<Vec<u8>, CoseError> {
    if keys.is_empty() || keys.len() as u64 > MAX_SIGNERS {
        return Err(CoseError::Signers(SignerProblem::Count {
            count: keys.len(),
        }));
    }
    let protected = multi_body_protected(T::CONTENT_TYPE)?;
    let mut msg = CoseSign {
        tagged: true,
        protected_header: decode_protected(&protected)?,
        protected,
        unprotected: HeaderMap::default(),
        payload: Some(cbor::encode(value)?),
        signatures: Vec::new(),
    };
    for key in keys {
        if msg
            .signatures
            .iter()
            .any(|s| s.header(label::KID) == Some(&Value::Bytes(key.key_id().as_bytes().to_vec())))
        {
            return Err(CoseError::Signers(SignerProblem::Twice(key.key_id())));
        }
        push_signature(&mut msg, *key)?;
    }
    msg.to_vec()
}

/// Adds `key`'s signature to a TDS COSE_Sign of type `T` (a countersignature), after
/// checking that the message follows the TDS rules and that `key` has not signed it yet.
/// The existing signatures are not verified here; verify the result with
/// [`open_multi`].
pub fn add_signature<T: SignedObject>(
    bytes: &[u8],
    key: &dyn Signer,
) -> Result<Vec<u8>, CoseError> {
    let opened = open_multi::<T>(bytes)?;
    if opened.kids.contains(&key.key_id()) {
        return Err(CoseError::Signers(SignerProblem::AlreadySigned(
            key.key_id(),
        )));
    }
    if opened.kids.len() as u64 >= MAX_SIGNERS {
        return Err(CoseError::Signers(SignerProblem::TooMany {
            count: opened.kids.len() as u64 + 1,
        }));
    }
    let mut msg = opened.message;
    msg.payload = Some(opened.payload);
    push_signature(&mut msg, key)?;
    msg.to_vec()
}

/// A parsed TDS COSE_Sign whose signatures have not been checked yet.
#[derive(Debug)]
pub struct UnverifiedMulti<T> {
    value: T,
    kids: Vec<Hash256>,
    /// The message, its payload taken out into `payload`.
    message: CoseSign,
    payload: Vec<u8>,
    bytes: Vec<u8>,
}

/// Parses a TDS COSE_Sign of type `T` and checks every rule except the signatures.
pub fn open_multi<T: SignedObject>(bytes: &[u8]) -> Result<UnverifiedMulti<T>, CoseError> {
    let message = CoseSign::from_slice(bytes)?;
    if !message.tagged {
        return Err(CoseError::WrongTag {
            expected: TAG_SIGN,
            found: None,
        });
    }
    let h = &message.protected_header;
    let content_type = match (h.0.len(), h.get(label::CONTENT_TYPE)) {
        (1, Some(Value::Text(t))) => t.clone(),
        _ => return Err(CoseError::Header(HeaderProblem::NotContentTypeOnly)),
    };
    if content_type != T::CONTENT_TYPE {
        return Err(CoseError::WrongContentType {
            expected: T::CONTENT_TYPE,
            found: content_type,
        });
    }
    if !message.unprotected.is_empty() {
        return Err(CoseError::Header(HeaderProblem::UnprotectedNotEmpty));
    }
    let mut kids = Vec::with_capacity(message.signatures.len());
    for s in &message.signatures {
        let (_, kid) = typed_signer_header(&s.protected_header, false)?;
        if !s.unprotected.is_empty() {
            return Err(CoseError::Header(HeaderProblem::SignerUnprotectedNotEmpty));
        }
        if s.signature.len() != SIGNATURE_LEN {
            return Err(CoseError::UnsupportedAlgorithm(Algorithm::SignatureLength(
                s.signature.len(),
            )));
        }
        if kids.contains(&kid) {
            return Err(CoseError::Signers(SignerProblem::Twice(kid)));
        }
        kids.push(kid);
    }
    let mut message = message;
    let payload = message.payload.take().ok_or(CoseError::DetachedPayload)?;
    // The raw parser accepts only canonical framing and header maps, so the message
    // re-encodes to exactly these bytes (the `envelope` fuzz target asserts it).
    let value: T = cbor::decode(&payload)?;
    Ok(UnverifiedMulti {
        value,
        kids,
        message,
        payload,
        bytes: bytes.to_vec(),
    })
}

impl<T> UnverifiedMulti<T> {
    /// The claimed contents, not yet authenticated.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The key ids of the signers, in signing order.
    pub fn kids(&self) -> &[Hash256] {
        &self.kids
    }

    /// The canonical payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Checks that the signers are exactly `keys` (same set, any order) and that every
    /// signature verifies.
    pub fn verify(self, keys: &[PublicKey]) -> Result<VerifiedMulti<T>, CoseError> {
        self.verify_after(keys, 0)
    }

    /// As [`UnverifiedMulti::verify`], without checking again the signatures of
    /// `checked`: an earlier state of this same message (same protected header and
    /// payload) whose signatures the caller verified or made itself, such as the
    /// provider-signed agreement a countersigned one extends. Each of its signatures must
    /// be here unchanged, in the same place; only the signatures after them are
    /// verified. The signer set is checked in full as by `verify`.
    pub fn verify_extending(
        self,
        keys: &[PublicKey],
        checked: &[u8],
    ) -> Result<VerifiedMulti<T>, CoseError> {
        let earlier = CoseSign::from_slice(checked)?;
        let same = earlier.tagged == self.message.tagged
            && earlier.protected == self.message.protected
            && earlier.unprotected == self.message.unprotected
            && earlier.payload.as_deref() == Some(self.payload.as_slice())
            && earlier.signatures.len() <= self.message.signatures.len()
            && earlier
                .signatures
                .iter()
                .zip(&self.message.signatures)
                .all(|(a, b)| {
                    a.protected == b.protected
                        && a.unprotected == b.unprotected
                        && a.signature == b.signature
                });
        if !same {
            return Err(CoseError::NotExtending);
        }
        self.verify_after(keys, earlier.signatures.len())
    }

    /// Checks the signer set, and the signatures from position `known` on.
    fn verify_after(self, keys: &[PublicKey], known: usize) -> Result<VerifiedMulti<T>, CoseError> {
        if keys.len() != self.kids.len() {
            return Err(CoseError::Signers(SignerProblem::Number {
                expected: keys.len(),
                found: self.kids.len(),
            }));
        }
        let payload = self.payload.as_slice();
        let mut signers = Vec::with_capacity(keys.len());
        for (i, (s, kid)) in self.message.signatures.iter().zip(&self.kids).enumerate() {
            let key = keys
                .iter()
                .find(|k| k.id() == *kid)
                .ok_or(CoseError::Signers(SignerProblem::Unexpected(*kid)))?;
            if i >= known {
                let tbs = sig_structure(&self.message.protected, &s.protected, &[], payload);
                key.verify(&tbs, &s.signature)
                    .map_err(|_| CoseError::BadSignature)?;
            }
            signers.push(*key);
        }
        Ok(VerifiedMulti {
            value: self.value,
            signers,
            payload: self.payload,
            bytes: self.bytes,
        })
    }
}

/// A value whose COSE_Sign signatures have all been checked against the expected
/// signers. Only [`UnverifiedMulti::verify`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedMulti<T> {
    value: T,
    signers: Vec<PublicKey>,
    payload: Vec<u8>,
    bytes: Vec<u8>,
}

impl<T> VerifiedMulti<T> {
    /// The verified value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The signers' keys, in signing order.
    pub fn signers(&self) -> &[PublicKey] {
        &self.signers
    }

    /// The canonical payload bytes that were signed.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The whole message as received.
    pub fn envelope(&self) -> &[u8] {
        &self.bytes
    }

    /// The verified value, consuming the proof.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> Deref for VerifiedMulti<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

#[cfg(test)]
mod tests;
