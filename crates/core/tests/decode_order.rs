//! `cbor::decode` tries its typed round trip before the strict checks (after a cheap bounds
//! scan). These tests hold it to the validate-first algorithm that `spec/encoding.md` §1.3
//! describes. Both must accept the same inputs and return the same error, for mutated
//! canonical encodings and for inputs that declare lengths they do not have.

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use tds_core::cbor::{self, CborError, Limits, Value};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Doc {
    name: String,
    tags: Vec<String>,
    n: u64,
    nested: Vec<Vec<u64>>,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
    opt: Option<i64>,
}

/// The algorithm of spec §1.3, step by step.
fn reference<T>(bytes: &[u8]) -> Result<T, CborError>
where
    T: serde::de::DeserializeOwned + Serialize,
{
    let limits = Limits::DEFAULT;
    cbor::validate(bytes, &limits)?;
    let value: T =
        cbor4ii::serde::from_slice(bytes).map_err(|e| CborError::Type(format!("{e:?}")))?;
    let again = cbor::encode_with(&value, &limits)?;
    if again != bytes {
        return Err(CborError::NotCanonicalForType);
    }
    Ok(value)
}

/// Same outcome: both accept with equal values, or both refuse with the same error kind
/// (the `Type` message text comes from serde either way and is not compared).
fn same<T>(bytes: &[u8]) -> Result<(), String>
where
    T: serde::de::DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let got = cbor::decode::<T>(bytes);
    let want = reference::<T>(bytes);
    match (&got, &want) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Err(CborError::Type(_)), Err(CborError::Type(_))) => Ok(()),
        (Err(a), Err(b)) if a == b => Ok(()),
        _ => Err(format!("{}: {got:?} vs {want:?}", hex(bytes))),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn doc() -> impl Strategy<Value = Doc> {
    (
        ".{0,30}",
        prop::collection::vec("[a-z]{0,8}", 0..5),
        any::<u64>(),
        prop::collection::vec(prop::collection::vec(any::<u64>(), 0..4), 0..4),
        prop::collection::vec(any::<u8>(), 0..40),
        any::<Option<i64>>(),
    )
        .prop_map(|(name, tags, n, nested, blob, opt)| Doc {
            name,
            tags,
            n,
            nested,
            blob,
            opt,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_documents_decode_as_the_spec_says(
        d in doc(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = cbor::encode(&d).unwrap();
        prop_assert_eq!(cbor::decode::<Doc>(&bytes).unwrap(), d);
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        same::<Doc>(&bytes).map_err(TestCaseError::fail)?;
        same::<Value>(&bytes).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn random_bytes_decode_as_the_spec_says(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        same::<Value>(&bytes).map_err(TestCaseError::fail)?;
        same::<Doc>(&bytes).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn declared_lengths_beyond_the_input_are_refused_as_such() {
    for bytes in [
        &[0x9a, 0xff, 0xff, 0xff, 0xff][..], // array of 2^32 - 1 items
        &[0x81, 0x81, 0x81, 0x9b, 0, 0, 0, 1, 0, 0, 0, 0], // nested, then 2^32 items
        &[0xbb, 0, 0, 0, 1, 0, 0, 0, 0],     // map of 2^32 entries
        &[0x5a, 0, 1, 0, 0, 1, 2],           // bytes of 65536
    ] {
        let e = cbor::decode::<Value>(bytes).unwrap_err();
        assert!(
            matches!(e, CborError::LengthTooLarge { .. }),
            "{}: {e:?}",
            hex(bytes)
        );
        same::<Value>(bytes).unwrap();
    }
}
