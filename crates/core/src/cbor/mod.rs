//! Canonical CBOR: the RFC 8949 §4.2.1 core deterministic encoding, strictly.
//!
//! Every signed or hashed TDS object has exactly one encoding. [`encode`] produces it and
//! [`decode`] accepts nothing else:
//!
//! - integers, lengths and tags in their shortest form;
//! - definite lengths only;
//! - map keys sorted bytewise by their encoded bytes, with no duplicates;
//! - exactly one data item, no trailing bytes;
//! - simple values `false`, `true` and `null` only (no `undefined`, no other simple value);
//! - no tags;
//! - no floating-point numbers unless [`Limits::allow_floats`] is set, and then only in their
//!   shortest exact form (half, single or double precision, NaN as `0xf97e00`);
//! - text strings in valid UTF-8;
//! - bounded nesting depth and total size ([`Limits`]).
//!
//! On top of the byte-level rules, [`decode`] re-encodes the decoded value and refuses the
//! input unless the bytes are identical, so `encode(decode(b)) == b` for every accepted `b`
//! (unknown struct fields, for one, are refused instead of silently dropped).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Reading {
//!     meter: String,
//!     kwh: u64,
//! }
//!
//! let bytes = tds_core::cbor::encode(&Reading { meter: "m-1".into(), kwh: 42 })?;
//! // "kwh" sorts before "meter": shorter encoded keys come first.
//! assert_eq!(bytes, [0xa2, 0x63, b'k', b'w', b'h', 0x18, 42, 0x65, b'm', b'e', b't', b'e', b'r', 0x63, b'm', b'-', b'1']);
//! let back: Reading = tds_core::cbor::decode(&bytes)?;
//! assert_eq!(back.kwh, 42);
//! # Ok::<(), tds_core::cbor::CborError>(())
//! ```

mod canon;
mod read;
mod ser;
mod value;

use serde::{de::DeserializeOwned, Serialize};

pub use read::{Header, Major, Reader};
pub use value::Value;

/// Bounds applied while encoding and decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest allowed nesting of arrays and maps (a scalar at top level has depth 0).
    pub max_depth: usize,
    /// Largest accepted encoded size in bytes.
    pub max_size: usize,
    /// Whether floating-point values are allowed (in shortest form only).
    pub allow_floats: bool,
}

impl Limits {
    /// The defaults: depth 32, 16 MiB, no floats.
    pub const DEFAULT: Limits = Limits {
        max_depth: 32,
        max_size: 16 * 1024 * 1024,
        allow_floats: false,
    };

    /// The defaults with floats allowed, for the rare type that asks for them.
    pub const fn with_floats(self) -> Limits {
        Limits {
            allow_floats: true,
            ..self
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why bytes were refused or a value could not be encoded.
///
/// Offsets count bytes from the start of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ended inside a data item.
    #[error("cbor: truncated input at byte {offset}")]
    Truncated {
        /// Where the missing bytes were expected.
        offset: usize,
    },
    /// Bytes follow the single top-level data item.
    #[error("cbor: {count} trailing byte(s) after the data item at byte {offset}")]
    TrailingBytes {
        /// Where the trailing bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
    },
    /// An integer, length or tag was not in its shortest form.
    #[error("cbor: non-minimal integer or length encoding at byte {offset}")]
    NonMinimal {
        /// The offending header.
        offset: usize,
    },
    /// An indefinite-length string, array or map.
    #[error("cbor: indefinite length at byte {offset}")]
    IndefiniteLength {
        /// The offending header.
        offset: usize,
    },
    /// Additional information 28, 29 or 30, or a stray break byte.
    #[error("cbor: malformed header byte 0x{byte:02x} at byte {offset}")]
    Malformed {
        /// The offending header.
        offset: usize,
        /// The header byte.
        byte: u8,
    },
    /// Map keys out of bytewise order of their encodings.
    #[error("cbor: map keys not in canonical order at byte {offset}")]
    UnsortedMapKeys {
        /// The key that sorts before its predecessor.
        offset: usize,
    },
    /// The same key twice in one map.
    #[error("cbor: duplicate map key at byte {offset}")]
    DuplicateMapKey {
        /// The repeated key.
        offset: usize,
    },
    /// A floating-point value where none is allowed.
    #[error("cbor: floating-point value at byte {offset} is not allowed")]
    FloatNotAllowed {
        /// The float.
        offset: usize,
    },
    /// A float that has a shorter exact encoding.
    #[error("cbor: floating-point value at byte {offset} is not in its shortest form")]
    NonMinimalFloat {
        /// The float.
        offset: usize,
    },
    /// A tag (TDS signed objects carry no tags).
    #[error("cbor: tag {tag} at byte {offset} is not allowed")]
    TagNotAllowed {
        /// Where the tag is.
        offset: usize,
        /// The tag number.
        tag: u64,
    },
    /// A simple value other than false, true and null (this includes undefined).
    #[error("cbor: simple value {value} at byte {offset} is not allowed")]
    SimpleNotAllowed {
        /// Where it is.
        offset: usize,
        /// The simple value (23 is undefined).
        value: u64,
    },
    /// A text string that is not UTF-8.
    #[error("cbor: invalid UTF-8 in text string at byte {offset}")]
    InvalidUtf8 {
        /// The string.
        offset: usize,
    },
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("cbor: nesting deeper than {limit} at byte {offset}")]
    TooDeep {
        /// Where the limit was passed.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// Input or output larger than [`Limits::max_size`].
    #[error("cbor: {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A length that cannot fit in the rest of the input.
    #[error("cbor: declared length {length} at byte {offset} exceeds the input")]
    LengthTooLarge {
        /// The header.
        offset: usize,
        /// The declared length.
        length: u64,
    },
    /// Canonical bytes that do not match the expected type.
    #[error("cbor: does not match the expected type: {0}")]
    Type(String),
    /// Canonical bytes of the right shape that the type would encode differently
    /// (an unknown field, say), so they would not survive a round trip.
    #[error("cbor: not the canonical encoding of this type (unknown field or alternative form)")]
    NotCanonicalForType,
    /// The value cannot be serialized.
    #[error("cbor: cannot encode: {0}")]
    Encode(String),
    /// An internal invariant of the codec does not hold (a bug, reported instead of
    /// producing wrong bytes).
    #[error("cbor: internal invariant broken: {0}")]
    Invariant(&'static str),
}

impl crate::ErrorCode for CborError {
    fn code(&self) -> &'static str {
        match self {
            CborError::Truncated { .. } => "cbor.truncated",
            CborError::TrailingBytes { .. } => "cbor.trailing_bytes",
            CborError::NonMinimal { .. } => "cbor.non_minimal",
            CborError::IndefiniteLength { .. } => "cbor.indefinite_length",
            CborError::Malformed { .. } => "cbor.malformed",
            CborError::UnsortedMapKeys { .. } => "cbor.unsorted_map_keys",
            CborError::DuplicateMapKey { .. } => "cbor.duplicate_map_key",
            CborError::FloatNotAllowed { .. } => "cbor.float_not_allowed",
            CborError::NonMinimalFloat { .. } => "cbor.non_minimal_float",
            CborError::TagNotAllowed { .. } => "cbor.tag_not_allowed",
            CborError::SimpleNotAllowed { .. } => "cbor.simple_not_allowed",
            CborError::InvalidUtf8 { .. } => "cbor.invalid_utf8",
            CborError::TooDeep { .. } => "cbor.too_deep",
            CborError::TooLarge { .. } => "cbor.too_large",
            CborError::LengthTooLarge { .. } => "cbor.length_too_large",
            CborError::Type(_) => "cbor.type",
            CborError::NotCanonicalForType => "cbor.not_canonical_for_type",
            CborError::Encode(_) => "cbor.encode",
            CborError::Invariant(_) => "cbor.invariant",
        }
    }
}

/// Encodes `value` in canonical CBOR with the default [`Limits`].
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CborError> {
    encode_with(value, &Limits::DEFAULT)
}

/// Encodes `value` in canonical CBOR within `limits`.
pub fn encode_with<T: Serialize + ?Sized>(
    value: &T,
    limits: &Limits,
) -> Result<Vec<u8>, CborError> {
    ser::to_canonical_vec(value, limits)
}

/// The reference encoder: cbor4ii's serializer, then the canonicalizing pass. It gives
/// the same bytes as [`encode_with`] (a property test checks that); kept for tests and
/// benchmarks.
#[doc(hidden)]
pub fn encode_via_canonicalize<T: Serialize + ?Sized>(
    value: &T,
    limits: &Limits,
) -> Result<Vec<u8>, CborError> {
    let plain = cbor4ii::serde::to_vec(Vec::with_capacity(128), &value).map_err(|e| {
        CborError::Encode(match e {
            cbor4ii::serde::EncodeError::Custom(msg) => msg.to_string(),
            other => format!("{other:?}"),
        })
    })?;
    canon::canonicalize(&plain, limits)
}

/// Decodes canonical CBOR with the default [`Limits`]; anything non-canonical is refused.
///
/// `T` must also be `Serialize`: the decoded value is encoded again and must give back the
/// input bytes exactly, which is what makes `encode(decode(b)) == b` a guarantee.
pub fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, CborError> {
    decode_with(bytes, &Limits::DEFAULT)
}

/// Decodes canonical CBOR within `limits`; anything non-canonical is refused.
pub fn decode_with<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    limits: &Limits,
) -> Result<T, CborError> {
    if bytes.len() > limits.max_size {
        return Err(CborError::TooLarge {
            size: bytes.len(),
            limit: limits.max_size,
        });
    }
    // Accepting: a value that encodes back to exactly these bytes proves them canonical
    // (the encoder writes nothing else), so the strict checks would only repeat that. Only
    // the bounds come first: no declared length beyond the bytes left, no deep nesting,
    // before the decoder allocates anything.
    if canon::bounded_structure(bytes, limits.max_depth) {
        if let Ok(value) = cbor4ii::serde::from_slice::<T>(bytes) {
            if encode_with(&value, limits).is_ok_and(|again| again == bytes) {
                return Ok(value);
            }
        }
    }
    // Refusing: the strict checks in order, so the error names the first violation.
    validate(bytes, limits)?;
    let value: T =
        cbor4ii::serde::from_slice(bytes).map_err(|e| CborError::Type(type_message(&e)))?;
    let again = encode_with(&value, limits)?;
    if again != bytes {
        return Err(CborError::NotCanonicalForType);
    }
    Ok(value)
}

/// Checks that `bytes` are exactly one data item in canonical form within `limits`.
pub fn validate(bytes: &[u8], limits: &Limits) -> Result<(), CborError> {
    if bytes.len() > limits.max_size {
        return Err(CborError::TooLarge {
            size: bytes.len(),
            limit: limits.max_size,
        });
    }
    let mut reader = Reader::new(bytes);
    canon::validate_item(&mut reader, limits, 0)?;
    reader.finish()
}

/// Reads one canonical data item at the reader's position and returns its bytes.
pub fn read_item<'a>(reader: &mut Reader<'a>, limits: &Limits) -> Result<&'a [u8], CborError> {
    let start = reader.position();
    canon::validate_item(reader, limits, 0)?;
    reader
        .input()
        .get(start..reader.position())
        .ok_or(CborError::Truncated { offset: start })
}

/// Appends a CBOR header with the shortest encoding of `arg` to `out`.
pub fn write_header(out: &mut Vec<u8>, major: Major, arg: u64) {
    read::write_header(out, major, arg)
}

/// Re-encodes any well-formed CBOR item (definite or indefinite lengths, unsorted maps,
/// long-form integers, wide floats) in canonical form. Tags, undefined and other simple
/// values are still refused, and floats unless `limits` allow them.
pub fn canonicalize(bytes: &[u8], limits: &Limits) -> Result<Vec<u8>, CborError> {
    canon::canonicalize(bytes, limits)
}

fn type_message(e: &cbor4ii::serde::DecodeError<std::convert::Infallible>) -> String {
    // Custom messages come from serde and the types' own checks ("missing field `name`",
    // "credential serial: ..."); show them as they are. Core errors print as Debug.
    let text = match e {
        cbor4ii::serde::DecodeError::Custom(msg) => msg.to_string(),
        other => format!("{other:?}"),
    };
    // Keep it short for one-line CLI errors.
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests;
