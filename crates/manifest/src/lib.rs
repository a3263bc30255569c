#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod catalog;
pub mod content;
mod envelope;
mod error;
mod json;
mod model;
mod receipt;

pub use catalog::{Catalog, CatalogEntry, OfferRef};
pub use content::{ChunkSize, Commitment, ContentAlg};
pub use envelope::{
    open, SelfSignedManifest, UnverifiedManifest, VerifiedManifest, MAX_MANIFEST_LEN,
};
pub use error::{ManifestError, ReceiptError};
pub use model::{
    AssetId, Classification, Lineage, Manifest, PersonalInfo, Quality, Relation, UpdateFrequency,
    MANIFEST_VERSION, MAX_DESCRIPTION_CHARS, MAX_KEYWORDS, MAX_KEYWORD_CHARS, MAX_LINEAGE,
    MAX_REFERENCE_LEN, MAX_TITLE_CHARS,
};
pub use receipt::{
    register, verify_receipt, Receipt, VerifiedReceipt, MAX_RECEIPT_LEN, RECEIPT_VERSION,
};
