//! Canonical CBOR: the checker, the strict decoder, the encoder and the canonicalizer must
//! agree with each other on every input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::cbor::{self, Limits, Value};

fn check(data: &[u8], limits: &Limits) {
    let validated = cbor::validate(data, limits);
    let valid = validated.is_ok();
    let decoded = cbor::decode_with::<Value>(data, limits);
    if let (Err(v), Err(d)) = (&validated, &decoded) {
        // A refusal names the same first violation validate does (spec/encoding.md 1.3).
        assert_eq!(v, d, "decode and validate name different violations");
    }
    if valid {
        // Every canonical item is a Value, and encoding it gives the input back.
        let value = decoded.expect("canonical bytes must decode as a Value");
        let again = cbor::encode_with(&value, limits).expect("a decoded Value must encode");
        assert_eq!(again, data, "encode(decode(b)) != b");
    } else {
        assert!(
            decoded.is_err(),
            "decode accepted bytes that validate refuses"
        );
    }
    if let Ok(canonical) = cbor::canonicalize(data, limits) {
        cbor::validate(&canonical, limits).expect("canonicalize output must be canonical");
        let twice =
            cbor::canonicalize(&canonical, limits).expect("canonical input must canonicalize");
        assert_eq!(twice, canonical, "canonicalize is not idempotent");
        if valid {
            assert_eq!(canonical, data, "canonicalize changed canonical input");
        }
    } else {
        assert!(!valid, "canonicalize refused canonical input");
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, &Limits::DEFAULT);
    check(data, &Limits::DEFAULT.with_floats());
});
