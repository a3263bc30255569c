//! The types `spec/encoding.md` defines and every worked-example value, computed with
//! `tds-core`.

use serde::{Deserialize, Serialize};
use tds_core::cbor;
use tds_core::cose::{self, CoseSign, CoseSign1, SignedObject};
use tds_core::hash::Domain;
use tds_core::key::{PublicKey, SigningKey};
use tds_core::time::Timestamp;

use crate::annotate::{annotate, annotate_header, hex_lines};
use crate::SpecError;

/// The seed of key A: 32 bytes of 0x01.
pub const SEED_A: [u8; 32] = [0x01; 32];
/// The seed of key B: 32 bytes of 0x02.
pub const SEED_B: [u8; 32] = [0x02; 32];
/// The domain tag of `Example` ids.
pub const EXAMPLE_TAG: &str = "tds/example/v1";
/// The time in the worked example: 2023-11-14T22:13:20.000Z.
pub const EXAMPLE_AT_MS: u64 = 1_700_000_000_000;

/// The object of the worked example. Its fields are declared in an order that differs from
/// the canonical one on purpose.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Free text.
    pub kind: String,
    /// A counter.
    pub n: u64,
    /// When it happened.
    pub at: Timestamp,
    /// Opaque bytes (a CBOR byte string, through `serde_bytes`).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Optional text; `None` is encoded as `null`, never left out.
    pub note: Option<String>,
    /// The signer's public key.
    pub owner: PublicKey,
}

impl SignedObject for Example {
    const CONTENT_TYPE: &'static str = "application/tds.example+cbor";
}

impl Example {
    /// The value of the worked example, owned by key A.
    pub fn worked() -> Example {
        Example {
            kind: "example".into(),
            n: 1,
            at: Timestamp::from_millis(EXAMPLE_AT_MS),
            data: vec![0xca, 0xfe],
            note: None,
            owner: key_a().public_key(),
        }
    }
}

/// The smallest struct that shows the type-level decoding rules.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Tiny {
    /// A number.
    pub n: u64,
    /// Optional text.
    pub note: Option<String>,
}

/// Key A (seed 32 × 0x01).
pub fn key_a() -> SigningKey {
    SigningKey::from_seed(&SEED_A)
}

/// Key B (seed 32 × 0x02).
pub fn key_b() -> SigningKey {
    SigningKey::from_seed(&SEED_B)
}

/// The domain of `Example` ids.
pub fn example_domain() -> Result<Domain, SpecError> {
    Domain::new(EXAMPLE_TAG).ok_or_else(|| SpecError::Other(format!("bad tag {EXAMPLE_TAG}")))
}

/// A worked-example value and how the spec shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendered {
    /// CBOR bytes, shown as annotated hex.
    Cbor(Vec<u8>),
    /// A COSE header map, shown as annotated hex with its labels named.
    Header(Vec<u8>),
    /// Other bytes, shown as plain hex.
    Raw(Vec<u8>),
    /// Text, shown as is.
    Text(String),
}

impl Rendered {
    /// The block body the spec shows for this value.
    pub fn block_body(&self) -> Result<String, SpecError> {
        Ok(match self {
            Rendered::Cbor(b) => annotate(b)?,
            Rendered::Header(b) => annotate_header(b)?,
            Rendered::Raw(b) => hex_lines(b),
            Rendered::Text(t) => format!("{t}\n"),
        })
    }
}

/// Every worked-example value of `spec/encoding.md`, by block name, in document order.
pub fn worked_values() -> Result<Vec<(&'static str, Rendered)>, SpecError> {
    let a = key_a();
    let b = key_b();
    let example = Example::worked();
    let payload = cbor::encode(&example)?;
    let object_id = example_domain()?.hash(&payload);

    let sign1 = cose::sign(&a, &example)?;
    let parsed = CoseSign1::from_slice(&sign1)?;
    let sig_structure = parsed.to_be_signed(&[], None)?;
    // The envelope must open and verify, or it is no example.
    cose::open::<Example>(&sign1)?.verify(&a.public_key())?;

    let multi = cose::sign_multi(&[&a, &b], &example)?;
    let parsed_multi = CoseSign::from_slice(&multi)?;
    let first = parsed_multi
        .signatures
        .first()
        .ok_or_else(|| SpecError::Other("COSE_Sign without signatures".into()))?;
    let multi_sig_structure =
        cose::sig_structure(&parsed_multi.protected, &first.protected, &[], &payload);
    cose::open_multi::<Example>(&multi)?.verify(&[a.public_key(), b.public_key()])?;

    Ok(vec![
        ("canonical-cbor", Rendered::Cbor(payload.clone())),
        ("object-id", Rendered::Text(object_id.to_string())),
        (
            "public-key-a",
            Rendered::Raw(a.public_key().as_bytes().to_vec()),
        ),
        ("key-id-a", Rendered::Text(a.id().to_string())),
        (
            "key-file-a",
            Rendered::Text(a.to_pkcs8_pem()?.trim().to_owned()),
        ),
        (
            "protected-header",
            Rendered::Header(parsed.protected.clone()),
        ),
        ("sig-structure", Rendered::Cbor(sig_structure)),
        ("signature", Rendered::Raw(parsed.signature.clone())),
        ("cose-sign1", Rendered::Cbor(sign1.clone())),
        (
            "envelope-id",
            Rendered::Text(Domain::ENVELOPE.hash(&sign1).to_string()),
        ),
        (
            "public-key-b",
            Rendered::Raw(b.public_key().as_bytes().to_vec()),
        ),
        ("key-id-b", Rendered::Text(b.id().to_string())),
        (
            "sign-body-protected",
            Rendered::Header(parsed_multi.protected.clone()),
        ),
        (
            "sign-signer-protected-a",
            Rendered::Header(first.protected.clone()),
        ),
        ("sign-sig-structure-a", Rendered::Cbor(multi_sig_structure)),
        ("cose-sign", Rendered::Cbor(multi)),
    ])
}
