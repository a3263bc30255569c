//! Types shared by the fuzz targets and the seed generator.
//!
//! The targets themselves are in `fuzz_targets/`; `examples/gen_seeds.rs` writes the seed
//! corpora in `seeds/` from these same types, so the seeds open as the targets expect.

use serde::{Deserialize, Serialize};
use tds_core::cbor::Value;
use tds_core::cose::SignedObject;
use tds_core::key::SigningKey;

/// The content type every fuzzed TDS envelope claims.
pub const CONTENT_TYPE: &str = "application/tds.fuzz+cbor";

/// Seed of the key that signs the seed envelopes and that the targets verify with, so a
/// seed (and any mutant that keeps its signature intact) reaches the success path.
pub const KEY_SEED: [u8; 32] = [0x42; 32];

/// Seed of a second signer for COSE_Sign seeds.
pub const OTHER_KEY_SEED: [u8; 32] = [0x43; 32];

/// The fixed verification key.
pub fn key() -> SigningKey {
    SigningKey::from_seed(&KEY_SEED)
}

/// A typed payload with the field kinds TDS objects use: unknown fields, wrong types and
/// non-canonical forms must all be refused by `open`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// Text.
    pub text: String,
    /// A time or counter.
    pub at: u64,
    /// A 32-byte digest.
    pub hash: tds_core::Hash256,
    /// A byte string.
    #[serde(with = "serde_bytes")]
    pub blob: Vec<u8>,
    /// A list.
    pub tags: Vec<String>,
    /// An optional field.
    pub parent: Option<tds_core::Hash256>,
}

impl SignedObject for Note {
    const CONTENT_TYPE: &'static str = CONTENT_TYPE;
}

/// Any canonical payload at all, so the fuzzer also reaches the envelope checks that come
/// after payload decoding without having to build a valid `Note`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AnyPayload(pub Value);

impl SignedObject for AnyPayload {
    const CONTENT_TYPE: &'static str = CONTENT_TYPE;
}

/// A sample `Note` for seeds.
pub fn sample_note() -> Note {
    Note {
        text: "meter reading 2025-06".into(),
        at: 1_750_000_000_000,
        hash: tds_core::Domain::MANIFEST.hash(b"asset"),
        blob: (0u8..48).collect(),
        tags: vec!["energy".into(), "hourly".into()],
        parent: None,
    }
}

/// Chunk size of the fixed asset the `chunk_proof` target checks chunks against.
pub const ASSET_CHUNK_SIZE: u32 = 64;

/// The fixed asset of the `chunk_proof` target: 330 bytes (five 64-byte chunks and a
/// 10-byte sixth), byte `i` = `i mod 251`.
pub fn chunk_asset() -> Vec<u8> {
    (0..330u32).map(|i| (i % 251) as u8).collect()
}

pub mod identity;
pub mod licence;
pub mod protocol;
