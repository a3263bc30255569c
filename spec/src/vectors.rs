//! The JSON test vectors in `spec/vectors/tds/`: their schema, how to run a case, and the
//! generator of the envelope vectors.
//!
//! Every file is one JSON array of objects; an object with a field not listed here is an
//! error (`deny_unknown_fields`), so a misspelt field cannot silently disable a check.

use serde::{Deserialize, Serialize};
use tds_core::cbor::{self, CborError, Limits, Major, Value};
use tds_core::cose::{
    self, alg, label, CoseSign, CoseSign1, CoseSignature, HeaderMap, SignedObject,
};
use tds_core::hash::Hash256;
use tds_core::key::{PublicKey, SigningKey};
use tds_core::time::Timestamp;

use crate::example::{key_a, key_b, Example, Tiny};
use crate::{variant_name, SpecError};

/// One case of `canonical-cbor.json`: bytes for `tds_core::cbor::validate`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CborCase {
    /// A unique kebab-case name; the spec's table lists the same names.
    pub name: String,
    /// The input, lowercase hex (may be empty).
    pub hex: String,
    /// Limits other than the defaults (depth 32, 16 MiB, no floats), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<CaseLimits>,
    /// Whether `validate` accepts the input.
    pub valid: bool,
    /// The `CborError` variant `validate` returns, `null` when valid.
    pub error: Option<String>,
    /// What `tds_core::cbor::canonicalize` returns for the input under the same limits, as
    /// hex, or `null` when it refuses the input. Equal to `hex` for every valid case.
    pub canonical: Option<String>,
}

/// Limits that differ from [`Limits::DEFAULT`]; a missing field keeps the default.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct CaseLimits {
    /// Deepest allowed nesting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<usize>,
    /// Largest accepted size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<usize>,
    /// Whether floats are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_floats: Option<bool>,
}

impl CaseLimits {
    /// The limits a case runs under.
    pub fn limits(limits: Option<&CaseLimits>) -> Limits {
        let d = Limits::DEFAULT;
        match limits {
            None => d,
            Some(l) => Limits {
                max_depth: l.max_depth.unwrap_or(d.max_depth),
                max_size: l.max_size.unwrap_or(d.max_size),
                allow_floats: l.allow_floats.unwrap_or(d.allow_floats),
            },
        }
    }

    /// How the spec's table writes the limits: `default`, or the changes separated by
    /// commas (`floats`, `depth 1`, `size 3`).
    pub fn describe(limits: Option<&CaseLimits>) -> String {
        let Some(l) = limits else {
            return "default".into();
        };
        let mut parts = Vec::new();
        if l.allow_floats == Some(true) {
            parts.push("floats".to_owned());
        }
        if let Some(d) = l.max_depth {
            parts.push(format!("depth {d}"));
        }
        if let Some(s) = l.max_size {
            parts.push(format!("size {s}"));
        }
        if parts.is_empty() {
            "default".into()
        } else {
            parts.join(", ")
        }
    }
}

/// One case of `typed-decode.json`: canonical bytes decoded as a type with
/// `tds_core::cbor::decode`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TypedCase {
    /// A unique kebab-case name.
    pub name: String,
    /// The target type: `Tiny`, `Example`, `PublicKey`, `Hash256` or `Timestamp`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The input, lowercase hex; always accepted by `validate`.
    pub hex: String,
    /// Whether `decode` accepts it.
    pub valid: bool,
    /// The `CborError` variant `decode` returns, `null` when valid.
    pub error: Option<String>,
}

/// Decodes `bytes` as the type named `type_name` (see [`TypedCase::type_name`]).
pub fn decode_as(type_name: &str, bytes: &[u8]) -> Result<Result<(), CborError>, SpecError> {
    Ok(match type_name {
        "Tiny" => cbor::decode::<Tiny>(bytes).map(drop),
        "Example" => cbor::decode::<Example>(bytes).map(drop),
        "PublicKey" => cbor::decode::<PublicKey>(bytes).map(drop),
        "Hash256" => cbor::decode::<Hash256>(bytes).map(drop),
        "Timestamp" => cbor::decode::<Timestamp>(bytes).map(drop),
        other => return Err(SpecError::Other(format!("unknown type {other:?}"))),
    })
}

/// One case of `envelope.json`: a TDS envelope opened as an [`Example`] and verified.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeCase {
    /// A unique kebab-case name.
    pub name: String,
    /// The rule the case exercises, in words.
    pub rule: String,
    /// `COSE_Sign1` (opened with `open`, verified with the one key) or `COSE_Sign`
    /// (opened with `open_multi`, verified against exactly these keys).
    pub structure: String,
    /// The envelope, lowercase hex.
    pub hex: String,
    /// The public keys (hex) the verifier expects.
    pub verify_with: Vec<String>,
    /// Whether the envelope opens and verifies.
    pub valid: bool,
    /// `open` or `verify`: the step that refuses it; `null` when valid.
    pub stage: Option<String>,
    /// The `CoseError` variant (with the `CborError` inside `Cbor`), `null` when valid.
    pub error: Option<String>,
}

/// The step that refused an envelope and the error variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `open` or `verify`.
    pub stage: &'static str,
    /// The variant name, as [`variant_name`] gives it.
    pub error: String,
}

/// Opens and verifies `case` as the spec says; `Ok(Err(..))` is a refusal by `tds-core`.
pub fn run_envelope(case: &EnvelopeCase) -> Result<Result<(), Refusal>, SpecError> {
    let bytes = hex::decode(&case.hex).map_err(|e| SpecError::Hex(e.to_string()))?;
    let keys = case
        .verify_with
        .iter()
        .map(|k| PublicKey::from_hex(k))
        .collect::<Result<Vec<_>, _>>()?;
    let refuse = |stage, e: cose::CoseError| Refusal {
        stage,
        error: variant_name(&format!("{e:?}")),
    };
    Ok(match case.structure.as_str() {
        "COSE_Sign1" => {
            let [key] = keys.as_slice() else {
                return Err(SpecError::Other(format!(
                    "{}: a COSE_Sign1 case names exactly one key",
                    case.name
                )));
            };
            match cose::open::<Example>(&bytes) {
                Err(e) => Err(refuse("open", e)),
                Ok(u) => u.verify(key).map(drop).map_err(|e| refuse("verify", e)),
            }
        }
        "COSE_Sign" => match cose::open_multi::<Example>(&bytes) {
            Err(e) => Err(refuse("open", e)),
            Ok(u) => u.verify(&keys).map(drop).map_err(|e| refuse("verify", e)),
        },
        other => return Err(SpecError::Other(format!("unknown structure {other:?}"))),
    })
}

// ---------------------------------------------------------------------------------------
// The envelope generator.
// ---------------------------------------------------------------------------------------

fn int(i: i128) -> Value {
    Value::Integer(i)
}

fn text(t: &str) -> Value {
    Value::Text(t.to_owned())
}

fn kid(key: &SigningKey) -> Value {
    Value::Bytes(key.id().as_bytes().to_vec())
}

/// One map entry as its encoded key and encoded value.
type RawEntry = (Vec<u8>, Vec<u8>);

/// A map written with its entries in the order given (for non-canonical inputs).
fn raw_map(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    cbor::write_header(&mut out, Major::Map, entries.len() as u64);
    for (k, v) in entries {
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    out
}

fn bstr(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    cbor::write_header(&mut out, Major::Bytes, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

fn canonical_map(entries: Vec<(Value, Value)>) -> Result<Vec<u8>, SpecError> {
    Ok(cbor::encode(&Value::Map(entries))?)
}

/// The standard TDS protected header of a COSE_Sign1 by `key`.
fn std_protected(key: &SigningKey) -> Result<Vec<u8>, SpecError> {
    canonical_map(vec![
        (int(label::ALG), int(alg::EDDSA)),
        (int(label::CONTENT_TYPE), text(Example::CONTENT_TYPE)),
        (int(label::KID), kid(key)),
    ])
}

/// The canonical map entries of the example payload, each as (key bytes, value bytes).
fn payload_entries(payload: &[u8]) -> Result<Vec<RawEntry>, SpecError> {
    match cbor::decode::<Value>(payload)? {
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| Ok((cbor::encode(k)?, cbor::encode(v)?)))
            .collect(),
        _ => Err(SpecError::Other("the payload is not a map".into())),
    }
}

/// What goes into one generated COSE_Sign1.
struct Sign1 {
    tagged: bool,
    protected: Vec<u8>,
    unprotected: Vec<(Value, Value)>,
    /// The payload carried (`None`: detached).
    payload: Option<Vec<u8>>,
    /// The payload the signature covers.
    signed_payload: Vec<u8>,
    external_aad: Vec<u8>,
}

impl Sign1 {
    fn standard(key: &SigningKey, payload: Vec<u8>) -> Result<Self, SpecError> {
        Ok(Sign1 {
            tagged: true,
            protected: std_protected(key)?,
            unprotected: Vec::new(),
            payload: Some(payload.clone()),
            signed_payload: payload,
            external_aad: Vec::new(),
        })
    }

    fn sign(self, key: &SigningKey) -> Result<Vec<u8>, SpecError> {
        let tbs = cose::sig_structure1(&self.protected, &self.external_aad, &self.signed_payload);
        let msg = CoseSign1 {
            tagged: self.tagged,
            protected: self.protected,
            protected_header: HeaderMap::default(),
            unprotected: HeaderMap(self.unprotected),
            payload: self.payload,
            signature: key.sign(&tbs).to_vec(),
        };
        Ok(msg.to_vec()?)
    }
}

/// One signer of a generated COSE_Sign.
struct Signer<'k> {
    key: &'k SigningKey,
    protected: Vec<u8>,
    unprotected: Vec<(Value, Value)>,
}

impl<'k> Signer<'k> {
    fn standard(key: &'k SigningKey) -> Result<Self, SpecError> {
        Ok(Signer {
            key,
            protected: canonical_map(vec![
                (int(label::ALG), int(alg::EDDSA)),
                (int(label::KID), kid(key)),
            ])?,
            unprotected: Vec::new(),
        })
    }
}

fn sign_multi(body_protected: Vec<u8>, payload: &[u8], signers: Vec<Signer<'_>>) -> CoseSign {
    let signatures = signers
        .into_iter()
        .map(|s| {
            let tbs = cose::sig_structure(&body_protected, &s.protected, &[], payload);
            CoseSignature {
                protected: s.protected,
                protected_header: HeaderMap::default(),
                unprotected: HeaderMap(s.unprotected),
                signature: s.key.sign(&tbs).to_vec(),
            }
        })
        .collect();
    CoseSign {
        tagged: true,
        protected: body_protected,
        protected_header: HeaderMap::default(),
        unprotected: HeaderMap::default(),
        payload: Some(payload.to_vec()),
        signatures,
    }
}

fn body_protected() -> Result<Vec<u8>, SpecError> {
    canonical_map(vec![(
        int(label::CONTENT_TYPE),
        text(Example::CONTENT_TYPE),
    )])
}

/// The group order L of edwards25519, little-endian.
const ORDER_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// `S + L` in place of `S` (the second half of a signature): the same signature in a
/// malleable, non-canonical form that `verify_strict` must refuse.
fn malleate(signature: &mut [u8]) {
    let mut carry = 0u16;
    for (s, l) in signature.iter_mut().skip(32).zip(ORDER_L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
}

/// Replaces the signature (the last 64 bytes) of a COSE_Sign1 with `f(signature)`.
fn with_signature(mut envelope: Vec<u8>, f: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let start = envelope.len().saturating_sub(64);
    if let Some(sig) = envelope.get_mut(start..) {
        f(sig);
    }
    envelope
}

struct Expect {
    name: &'static str,
    rule: &'static str,
    structure: &'static str,
    bytes: Vec<u8>,
    verify_with: Vec<PublicKey>,
    refusal: Option<(&'static str, &'static str)>,
}

/// Every case of `envelope.json`, generated from the worked example.
pub fn envelope_cases() -> Result<Vec<EnvelopeCase>, SpecError> {
    let a = key_a();
    let b = key_b();
    let c = SigningKey::from_seed(&[0x03; 32]);
    let ka = a.public_key();
    let kb = b.public_key();
    let example = Example::worked();
    let payload = cbor::encode(&example)?;
    let entries = payload_entries(&payload)?;
    let valid = cose::sign(&a, &example)?;
    let untagged = valid.get(1..).unwrap_or_default().to_vec();
    let prefixed = |prefix: &[u8]| [prefix, untagged.as_slice()].concat();
    let sign1 = |name, rule, bytes, refusal| Expect {
        name,
        rule,
        structure: "COSE_Sign1",
        bytes,
        verify_with: vec![ka],
        refusal,
    };
    let open = |e: &'static str| Some(("open", e));
    let verify = |e: &'static str| Some(("verify", e));

    let mut out = vec![
        sign1("sign1-valid", "the worked example: tag 18, protected {1: -8, 3: content type, 4: kid}, empty unprotected, canonical payload", valid.clone(), None),
        sign1(
            "sign1-alg-ed25519",
            "alg -19 (fully-specified Ed25519, RFC 9864) is accepted like -8",
            Sign1 {
                protected: canonical_map(vec![
                    (int(label::ALG), int(alg::ED25519)),
                    (int(label::CONTENT_TYPE), text(Example::CONTENT_TYPE)),
                    (int(label::KID), kid(&a)),
                ])?,
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            None,
        ),
        sign1("sign1-untagged", "tag 18 is required", untagged.clone(), open("WrongTag")),
        sign1("sign1-tag-98", "a COSE_Sign tag on a COSE_Sign1 body", prefixed(&[0xd8, 0x62]), open("WrongTag")),
        sign1("sign1-tag-non-minimal", "tag 18 written in two bytes", prefixed(&[0xd8, 0x12]), open("Cbor(NonMinimal)")),
        sign1("sign1-trailing-byte", "nothing may follow the envelope", [valid.as_slice(), &[0x00]].concat(), open("Cbor(TrailingBytes)")),
        sign1(
            "sign1-array-of-3",
            "COSE_Sign1 is an array of exactly 4",
            {
                let mut v = valid.clone();
                if let Some(x) = v.get_mut(1) {
                    *x = 0x83;
                }
                v
            },
            open("Structure"),
        ),
        sign1(
            "sign1-payload-length-non-minimal",
            "every length in the envelope is minimal (payload length in 3 bytes instead of 2)",
            {
                let prefix = [&[0xd2, 0x84][..], &bstr(&std_protected(&a)?), &[0xa0]].concat();
                let mut head = Vec::new();
                head.extend_from_slice(&prefix);
                head.push(0x59);
                head.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                let rest = valid.get(prefix.len() + bstr(&payload).len() - payload.len()..).unwrap_or_default();
                [head.as_slice(), rest].concat()
            },
            open("Cbor(NonMinimal)"),
        ),
        sign1(
            "sign1-protected-unsorted",
            "the protected header is canonical CBOR (here kid before alg)",
            Sign1 {
                protected: raw_map(&[
                    (cbor::encode(&int(label::KID))?, cbor::encode(&kid(&a))?),
                    (cbor::encode(&int(label::ALG))?, cbor::encode(&int(alg::EDDSA))?),
                    (cbor::encode(&int(label::CONTENT_TYPE))?, cbor::encode(&text(Example::CONTENT_TYPE))?),
                ]),
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            open("Cbor(UnsortedMapKeys)"),
        ),
        sign1(
            "sign1-protected-empty",
            "the protected header holds exactly alg, content type and kid (here it is h'')",
            Sign1 { protected: Vec::new(), ..Sign1::standard(&a, payload.clone())? }.sign(&a)?,
            open("Header(NotAlgContentTypeKid)"),
        ),
        sign1(
            "sign1-alg-es256",
            "alg must be -8 or -19",
            Sign1 {
                protected: canonical_map(vec![
                    (int(label::ALG), int(-7)),
                    (int(label::CONTENT_TYPE), text(Example::CONTENT_TYPE)),
                    (int(label::KID), kid(&a)),
                ])?,
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            open("UnsupportedAlgorithm(Id)"),
        ),
        sign1(
            "sign1-alg-text",
            "alg is an integer (\"EdDSA\" as text is not accepted)",
            Sign1 {
                protected: canonical_map(vec![
                    (int(label::ALG), text("EdDSA")),
                    (int(label::CONTENT_TYPE), text(Example::CONTENT_TYPE)),
                    (int(label::KID), kid(&a)),
                ])?,
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            open("UnsupportedAlgorithm(Name)"),
        ),
        sign1(
            "sign1-no-alg",
            "alg is required in the protected header",
            Sign1 {
                protected: canonical_map(vec![
                    (int(label::CONTENT_TYPE), text(Example::CONTENT_TYPE)),
                    (int(label::KID), kid(&a)),
                ])?,
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            open("Header(NotAlgContentTypeKid)"),
        ),
        sign1(
            "sign1-crit",
            "no header beyond alg, content type and kid (here crit [4])",
            Sign1 {
                protected: canonical_map(vec![
                    (int(label::ALG), int(alg::EDDSA)),
                    (int(label::CRIT), Value::Array(vec![int(label::KID)])),
                    (int(label::CONTENT_TYPE), text(Example::CONTENT_TYPE)),
                    (int(label::KID), kid(&a)),
                ])?,
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            open("Header(NotAlgContentTypeKid)"),
        ),
        sign1(
            "sign1-kid-unprotected",
            "kid is protected (here it is in the unprotected header)",
            Sign1 {
                protected: canonical_map(vec![
                    (int(label::ALG), int(alg::EDDSA)),
                    (int(label::CONTENT_TYPE), text(Example::CONTENT_TYPE)),
                ])?,
                unprotected: vec![(int(label::KID), kid(&a))],
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            open("Header(NotAlgContentTypeKid)"),
        ),
        sign1(
            "sign1-kid-31-bytes",
            "kid is the 32-byte key id",
            Sign1 {
                protected: canonical_map(vec![
                    (int(label::ALG), int(alg::EDDSA)),
                    (int(label::CONTENT_TYPE), text(Example::CONTENT_TYPE)),
                    (int(label::KID), Value::Bytes(a.id().as_bytes().get(..31).unwrap_or_default().to_vec())),
                ])?,
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            open("Header(KidLength)"),
        ),
        sign1(
            "sign1-kid-text",
            "kid is a byte string (here the printed id as text)",
            Sign1 {
                protected: canonical_map(vec![
                    (int(label::ALG), int(alg::EDDSA)),
                    (int(label::CONTENT_TYPE), text(Example::CONTENT_TYPE)),
                    (int(label::KID), text(&a.id().to_string())),
                ])?,
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            open("Header(NoKid)"),
        ),
        sign1(
            "sign1-content-type-uint",
            "the content type is text (here CoAP format 60, application/cbor)",
            Sign1 {
                protected: canonical_map(vec![
                    (int(label::ALG), int(alg::EDDSA)),
                    (int(label::CONTENT_TYPE), int(60)),
                    (int(label::KID), kid(&a)),
                ])?,
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            open("Header(NoContentType)"),
        ),
        sign1(
            "sign1-content-type-other",
            "the content type is the one of the expected kind",
            Sign1 {
                protected: canonical_map(vec![
                    (int(label::ALG), int(alg::EDDSA)),
                    (int(label::CONTENT_TYPE), text("application/tds.note+cbor")),
                    (int(label::KID), kid(&a)),
                ])?,
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            open("WrongContentType"),
        ),
        sign1(
            "sign1-unprotected-not-empty",
            "the unprotected header is empty (here {5: h''})",
            Sign1 {
                unprotected: vec![(int(5), Value::Bytes(Vec::new()))],
                ..Sign1::standard(&a, payload.clone())?
            }
            .sign(&a)?,
            open("Header(UnprotectedNotEmpty)"),
        ),
        sign1(
            "sign1-signature-63-bytes",
            "the signature is 64 bytes",
            {
                let mut raw = CoseSign1::from_slice(&valid)?;
                raw.signature.truncate(63);
                raw.to_vec()?
            },
            open("UnsupportedAlgorithm(SignatureLength)"),
        ),
        sign1(
            "sign1-payload-detached",
            "the payload is attached (here nil, with a signature over the real payload)",
            Sign1 { payload: None, ..Sign1::standard(&a, payload.clone())? }.sign(&a)?,
            open("DetachedPayload"),
        ),
        sign1(
            "sign1-payload-unsorted",
            "the payload is canonical CBOR (here \"at\" before \"n\"), even when correctly signed",
            {
                let mut e = entries.clone();
                e.swap(0, 1);
                let p = raw_map(&e);
                Sign1::standard(&a, p)?.sign(&a)?
            },
            open("Cbor(UnsortedMapKeys)"),
        ),
        sign1(
            "sign1-payload-unknown-field",
            "the payload is the canonical encoding of the type (here an extra field \"zzzzzz\": 0)",
            {
                let mut e = entries.clone();
                e.push((cbor::encode(&text("zzzzzz"))?, vec![0x00]));
                Sign1::standard(&a, raw_map(&e))?.sign(&a)?
            },
            open("Cbor(NotCanonicalForType)"),
        ),
        sign1(
            "sign1-payload-float",
            "no floats in a signed payload (here an extra field \"x\": 1.5)",
            {
                let mut e = entries.clone();
                e.insert(1, (cbor::encode(&text("x"))?, vec![0xf9, 0x3e, 0x00]));
                Sign1::standard(&a, raw_map(&e))?.sign(&a)?
            },
            open("Cbor(FloatNotAllowed)"),
        ),
        sign1(
            "sign1-payload-tag",
            "no tags in a signed payload (here \"at\" as tag 1, epoch seconds)",
            {
                let mut e = entries.clone();
                if let Some(at) = e.get_mut(1) {
                    at.1 = vec![0xc1, 0x1a, 0x65, 0x53, 0xf1, 0x00];
                }
                Sign1::standard(&a, raw_map(&e))?.sign(&a)?
            },
            open("Cbor(TagNotAllowed)"),
        ),
        sign1(
            "sign1-kid-other-key",
            "kid must name the key offered (here key B signed, A is offered)",
            cose::sign(&b, &example)?,
            verify("KidMismatch"),
        ),
        sign1(
            "sign1-signed-by-other-key",
            "the signature is by the key kid names (here kid A, signed by B)",
            Sign1::standard(&a, payload.clone())?.sign(&b)?,
            verify("BadSignature"),
        ),
        sign1(
            "sign1-signature-bit-flip",
            "a signature with one bit changed",
            with_signature(valid.clone(), |s| {
                if let Some(x) = s.first_mut() {
                    *x ^= 0x01;
                }
            }),
            verify("BadSignature"),
        ),
        sign1(
            "sign1-signature-s-plus-l",
            "verify_strict: S + L (a malleated copy of a valid signature) is refused",
            with_signature(valid.clone(), malleate),
            verify("BadSignature"),
        ),
        sign1(
            "sign1-payload-changed",
            "the signature covers the payload (here n = 2 under the signature of n = 1)",
            {
                let changed = cbor::encode(&Example { n: 2, ..example.clone() })?;
                Sign1 { payload: Some(changed), ..Sign1::standard(&a, payload.clone())? }.sign(&a)?
            },
            verify("BadSignature"),
        ),
        sign1(
            "sign1-external-aad",
            "external_aad is empty (here signed with external_aad \"tds\")",
            Sign1 { external_aad: b"tds".to_vec(), ..Sign1::standard(&a, payload.clone())? }.sign(&a)?,
            verify("BadSignature"),
        ),
    ];

    let multi = cose::sign_multi(&[&a, &b], &example)?;
    let sign = |name, rule, bytes, verify_with, refusal| Expect {
        name,
        rule,
        structure: "COSE_Sign",
        bytes,
        verify_with,
        refusal,
    };
    let many: Vec<SigningKey> = (1u8..=17)
        .map(|i| SigningKey::from_seed(&[i; 32]))
        .collect();
    out.extend([
        sign(
            "sign-valid",
            "the COSE_Sign of the worked example: signers A then B",
            multi.clone(),
            vec![ka, kb],
            None,
        ),
        sign(
            "sign-valid-any-order",
            "the expected signers are a set: B, A verifies too",
            multi.clone(),
            vec![kb, ka],
            None,
        ),
        sign(
            "sign-fewer-expected",
            "the signers are exactly the expected set (here only A is expected)",
            multi.clone(),
            vec![ka],
            verify("Signers(Number)"),
        ),
        sign(
            "sign-other-expected",
            "the signers are exactly the expected set (here A and C are expected)",
            multi.clone(),
            vec![ka, c.public_key()],
            verify("Signers(Unexpected)"),
        ),
        sign(
            "sign-untagged",
            "tag 98 is required",
            multi.get(2..).unwrap_or_default().to_vec(),
            vec![ka, kb],
            open("WrongTag"),
        ),
        sign(
            "sign-same-key-twice",
            "no key signs twice",
            sign_multi(
                body_protected()?,
                &payload,
                vec![Signer::standard(&a)?, Signer::standard(&a)?],
            )
            .to_vec()?,
            vec![ka, ka],
            open("Signers(Twice)"),
        ),
        sign(
            "sign-17-signers",
            "at most 16 signers",
            sign_multi(
                body_protected()?,
                &payload,
                many.iter()
                    .map(Signer::standard)
                    .collect::<Result<_, _>>()?,
            )
            .to_vec()?,
            many.iter().map(SigningKey::public_key).collect(),
            open("Signers(TooMany)"),
        ),
        sign(
            "sign-no-signatures",
            "at least one signer",
            sign_multi(body_protected()?, &payload, Vec::new()).to_vec()?,
            Vec::new(),
            open("Structure"),
        ),
        sign(
            "sign-body-alg",
            "the body protected header holds exactly the content type (here alg too)",
            sign_multi(
                canonical_map(vec![
                    (int(label::ALG), int(alg::EDDSA)),
                    (int(label::CONTENT_TYPE), text(Example::CONTENT_TYPE)),
                ])?,
                &payload,
                vec![Signer::standard(&a)?, Signer::standard(&b)?],
            )
            .to_vec()?,
            vec![ka, kb],
            open("Header(NotContentTypeOnly)"),
        ),
        sign(
            "sign-signer-content-type",
            "a signer's protected header holds exactly alg and kid (here the content type too)",
            sign_multi(
                body_protected()?,
                &payload,
                vec![
                    Signer {
                        protected: canonical_map(vec![
                            (int(label::ALG), int(alg::EDDSA)),
                            (int(label::CONTENT_TYPE), text(Example::CONTENT_TYPE)),
                            (int(label::KID), kid(&a)),
                        ])?,
                        ..Signer::standard(&a)?
                    },
                    Signer::standard(&b)?,
                ],
            )
            .to_vec()?,
            vec![ka, kb],
            open("Header(NotAlgKid)"),
        ),
        sign(
            "sign-signer-alg-es256",
            "a signer's alg is -8 or -19",
            sign_multi(
                body_protected()?,
                &payload,
                vec![
                    Signer {
                        protected: canonical_map(vec![
                            (int(label::ALG), int(-7)),
                            (int(label::KID), kid(&a)),
                        ])?,
                        ..Signer::standard(&a)?
                    },
                    Signer::standard(&b)?,
                ],
            )
            .to_vec()?,
            vec![ka, kb],
            open("UnsupportedAlgorithm(Id)"),
        ),
        sign(
            "sign-signer-unprotected",
            "a signer's unprotected header is empty (here {5: h''})",
            sign_multi(
                body_protected()?,
                &payload,
                vec![
                    Signer {
                        unprotected: vec![(int(5), Value::Bytes(Vec::new()))],
                        ..Signer::standard(&a)?
                    },
                    Signer::standard(&b)?,
                ],
            )
            .to_vec()?,
            vec![ka, kb],
            open("Header(SignerUnprotectedNotEmpty)"),
        ),
        sign(
            "sign-second-signature-bad",
            "every signature verifies (here B's has one bit changed)",
            with_signature(multi.clone(), |s| {
                if let Some(x) = s.first_mut() {
                    *x ^= 0x01;
                }
            }),
            vec![ka, kb],
            verify("BadSignature"),
        ),
    ]);

    Ok(out
        .into_iter()
        .map(|e| EnvelopeCase {
            name: e.name.to_owned(),
            rule: e.rule.to_owned(),
            structure: e.structure.to_owned(),
            hex: hex::encode(&e.bytes),
            verify_with: e.verify_with.iter().map(PublicKey::to_hex).collect(),
            valid: e.refusal.is_none(),
            stage: e.refusal.map(|r| r.0.to_owned()),
            error: e.refusal.map(|r| r.1.to_owned()),
        })
        .collect())
}
