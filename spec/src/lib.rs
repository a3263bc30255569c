//! The executable side of the TDS byte-level specifications in `spec/`.
//!
//! `spec/encoding.md` is written for a reviewer who will build a second implementation
//! from it, so every byte it shows must be the byte `tds-core` produces. This crate holds
//! what the tests in `spec/tests/` use to keep it that way:
//!
//! - [`markdown`] finds the marked fenced blocks (```` ```hex worked-example:NAME ````) and
//!   the marked tables (`<!-- begin:NAME -->` … `<!-- end:NAME -->`) of a document;
//! - [`annotate`] prints CBOR as annotated hex, the form the worked examples take;
//! - [`example`] defines the types the spec uses (`Example`, `Tiny`) and computes every
//!   worked-example value with `tds-core`;
//! - [`vectors`] gives the schema of the JSON vectors in `spec/vectors/tds/` and generates
//!   the envelope vectors;
//! - [`policy`] gives the schema of the policy decision and containment vectors in
//!   `spec/vectors/policy/`, runs them against `tds-policy` and generates their answers.
//!
//! The tests recompute each marked block and each vector and fail on any difference, so
//! the spec cannot drift from the code. After an intended change to the encoding, run
//! `TDS_SPEC_BLESS=1 cargo test -p tds-spec` to rewrite the generated parts, and review the
//! diff like any other change to a wire format.

pub mod annotate;
pub mod example;
pub mod markdown;
pub mod policy;
pub mod vectors;

use tds_core::cbor::CborError;
use tds_core::cose::CoseError;
use tds_core::key::KeyError;

/// Why a spec document or vector could not be read or recomputed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A document that does not follow the conventions [`markdown`] reads.
    #[error("line {line}: {reason}")]
    Markdown {
        /// 1-based line number.
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// Text that should be hex and is not.
    #[error("bad hex: {0}")]
    Hex(String),
    /// CBOR that `tds-core` refused.
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// An envelope that `tds-core` refused.
    #[error(transparent)]
    Cose(#[from] CoseError),
    /// A key that `tds-core` refused.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// The name of the enum variant at the start of an error's `Debug` form: `TooDeep` for
/// `TooDeep { offset: 32, limit: 32 }`. A variant that wraps another error keeps the inner
/// name too, so `Cbor(UnsortedMapKeys { offset: 3 })` gives `Cbor(UnsortedMapKeys)`.
pub fn variant_name(debug: &str) -> String {
    let head: String = debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    match debug
        .get(head.len()..)
        .and_then(|rest| rest.strip_prefix('('))
    {
        Some(inner) if inner.starts_with(|c: char| c.is_ascii_uppercase()) => {
            format!("{head}({})", variant_name(inner))
        }
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names() {
        assert_eq!(variant_name("TooDeep { offset: 32, limit: 32 }"), "TooDeep");
        assert_eq!(variant_name("NotCanonicalForType"), "NotCanonicalForType");
        assert_eq!(
            variant_name("NonMinimalFloat { offset: 0 }"),
            "NonMinimalFloat"
        );
        assert_eq!(
            variant_name("Cbor(UnsortedMapKeys { offset: 3 })"),
            "Cbor(UnsortedMapKeys)"
        );
        assert_eq!(variant_name("Type(\"bad\")"), "Type");
        assert_eq!(variant_name("Structure(\"x\")"), "Structure");
    }
}
