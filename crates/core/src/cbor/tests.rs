use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::*;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn check(s: &str) -> Result<(), CborError> {
    validate(&h(s), &Limits::DEFAULT)
}

// ---- One test per rejection rule -------------------------------------------------------

#[test]
fn rejects_non_minimal_integer() {
    // 23 encoded with a one-byte argument.
    assert_eq!(check("1817"), Err(CborError::NonMinimal { offset: 0 }));
    // 255 with a two-byte argument; -1 with a one-byte argument.
    assert_eq!(check("1900ff"), Err(CborError::NonMinimal { offset: 0 }));
    assert_eq!(check("3800"), Err(CborError::NonMinimal { offset: 0 }));
    // 2^32 - 1 with an eight-byte argument.
    assert_eq!(
        check("1b00000000ffffffff"),
        Err(CborError::NonMinimal { offset: 0 })
    );
}

#[test]
fn rejects_non_minimal_length() {
    // A one-byte string with a one-byte length argument; an empty array likewise.
    assert_eq!(check("580161"), Err(CborError::NonMinimal { offset: 0 }));
    assert_eq!(check("9800"), Err(CborError::NonMinimal { offset: 0 }));
    assert_eq!(check("b800"), Err(CborError::NonMinimal { offset: 0 }));
    assert_eq!(check("780161"), Err(CborError::NonMinimal { offset: 0 }));
}

#[test]
fn rejects_indefinite_lengths() {
    for s in ["5f4101ff", "7f6161ff", "9f01ff", "bf0102ff"] {
        assert_eq!(
            check(s),
            Err(CborError::IndefiniteLength { offset: 0 }),
            "{s}"
        );
    }
}

#[test]
fn rejects_unsorted_map_keys() {
    // {2: 0, 1: 0}
    assert_eq!(
        check("a202000100"),
        Err(CborError::UnsortedMapKeys { offset: 3 })
    );
    // Length first: "bb" (62 6262) sorts before "aaa" (63 616161) in encoded order.
    assert_eq!(check("a26262620063616161f6"), Ok(()));
    assert_eq!(
        check("a263616161f6626262f6"),
        Err(CborError::UnsortedMapKeys { offset: 6 })
    );
    // Integers before text: 0x0a < 0x61.
    assert_eq!(
        check("a2616100 0a00".replace(' ', "").as_str()),
        Err(CborError::UnsortedMapKeys { offset: 4 })
    );
}

#[test]
fn rejects_duplicate_map_keys() {
    assert_eq!(
        check("a201000100"),
        Err(CborError::DuplicateMapKey { offset: 3 })
    );
}

#[test]
fn rejects_trailing_bytes() {
    assert_eq!(
        check("0000"),
        Err(CborError::TrailingBytes {
            offset: 1,
            count: 1
        })
    );
}

#[test]
fn rejects_truncated_input() {
    for s in ["", "18", "19ff", "820118", "a10119"] {
        assert!(
            matches!(check(s), Err(CborError::Truncated { .. })),
            "{s}: {:?}",
            check(s)
        );
    }
}

#[test]
fn rejects_lengths_beyond_the_input_before_reading() {
    assert_eq!(
        check("62ff"),
        Err(CborError::LengthTooLarge {
            offset: 0,
            length: 2
        })
    );
    assert!(matches!(
        check("5bffffffffffffffff"),
        Err(CborError::LengthTooLarge { .. })
    ));
    assert!(matches!(
        check("9bffffffffffffffff"),
        Err(CborError::LengthTooLarge { .. })
    ));
    assert!(matches!(
        check("bbffffffffffffffff"),
        Err(CborError::LengthTooLarge { .. })
    ));
}

#[test]
fn rejects_floats_unless_allowed() {
    assert_eq!(
        check("f93c00"),
        Err(CborError::FloatNotAllowed { offset: 0 })
    );
    let floats = Limits::DEFAULT.with_floats();
    assert_eq!(validate(&h("f93c00"), &floats), Ok(()));
}

#[test]
fn rejects_non_shortest_floats_even_when_allowed() {
    let floats = Limits::DEFAULT.with_floats();
    // 1.0 as single and double precision.
    assert_eq!(
        validate(&h("fa3f800000"), &floats),
        Err(CborError::NonMinimalFloat { offset: 0 })
    );
    assert_eq!(
        validate(&h("fb3ff0000000000000"), &floats),
        Err(CborError::NonMinimalFloat { offset: 0 })
    );
    // A NaN with a payload, and a NaN in single precision.
    assert_eq!(
        validate(&h("f97e01"), &floats),
        Err(CborError::NonMinimalFloat { offset: 0 })
    );
    assert_eq!(
        validate(&h("fa7fc00000"), &floats),
        Err(CborError::NonMinimalFloat { offset: 0 })
    );
}

#[test]
fn rejects_tags() {
    assert_eq!(
        check("c11a514b67b0"),
        Err(CborError::TagNotAllowed { offset: 0, tag: 1 })
    );
    assert_eq!(
        check("d8184100"),
        Err(CborError::TagNotAllowed { offset: 0, tag: 24 })
    );
}

#[test]
fn rejects_undefined() {
    assert_eq!(
        check("f7"),
        Err(CborError::SimpleNotAllowed {
            offset: 0,
            value: 23
        })
    );
}

#[test]
fn rejects_other_simple_values() {
    assert_eq!(
        check("f0"),
        Err(CborError::SimpleNotAllowed {
            offset: 0,
            value: 16
        })
    );
    assert_eq!(
        check("f8ff"),
        Err(CborError::SimpleNotAllowed {
            offset: 0,
            value: 255
        })
    );
    // Two-byte simple values below 32 are not well-formed at all.
    assert!(matches!(check("f818"), Err(CborError::Malformed { .. })));
}

#[test]
fn accepts_false_true_null() {
    for s in ["f4", "f5", "f6"] {
        assert_eq!(check(s), Ok(()), "{s}");
    }
}

#[test]
fn rejects_invalid_utf8() {
    assert_eq!(check("62c328"), Err(CborError::InvalidUtf8 { offset: 0 }));
}

#[test]
fn rejects_reserved_additional_information_and_stray_break() {
    for s in ["1c", "3d", "5e", "ff"] {
        assert!(matches!(check(s), Err(CborError::Malformed { .. })), "{s}");
    }
}

#[test]
fn rejects_deep_nesting_with_an_error_not_a_stack_overflow() {
    let limits = Limits {
        max_depth: 4,
        ..Limits::DEFAULT
    };
    let ok = h("8181818100");
    assert_eq!(validate(&ok, &limits), Ok(()));
    let deep = h("818181818100");
    assert_eq!(
        validate(&deep, &limits),
        Err(CborError::TooDeep {
            offset: 4,
            limit: 4
        })
    );
    // A million nested arrays against the default limit.
    let mut huge = vec![0x81u8; 1_000_000];
    huge.push(0);
    assert!(matches!(
        validate(&huge, &Limits::DEFAULT),
        Err(CborError::TooDeep { .. })
    ));
    assert!(matches!(
        canonicalize(&huge, &Limits::DEFAULT),
        Err(CborError::TooDeep { .. })
    ));
}

#[test]
fn rejects_oversized_input() {
    let limits = Limits {
        max_size: 4,
        ..Limits::DEFAULT
    };
    assert_eq!(
        validate(&h("4401020304"), &limits),
        Err(CborError::TooLarge { size: 5, limit: 4 })
    );
    assert!(matches!(
        encode_with(&serde_bytes::ByteBuf::from(vec![0u8; 10]), &limits),
        Err(CborError::TooLarge { .. })
    ));
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Small {
    a: u64,
    b: String,
}

#[test]
fn rejects_unknown_fields_for_the_type() {
    // {"a": 1, "b": "x", "c": 0} is canonical CBOR but not a canonical `Small`.
    let bytes = h("a3616101616261786163 00".replace(' ', "").as_str());
    assert_eq!(validate(&bytes, &Limits::DEFAULT), Ok(()));
    assert_eq!(decode::<Small>(&bytes), Err(CborError::NotCanonicalForType));
}

#[test]
fn wrong_type_is_a_type_error() {
    assert!(matches!(decode::<Small>(&h("01")), Err(CborError::Type(_))));
    assert!(matches!(
        decode::<u8>(&h("190100")),
        Err(CborError::Type(_))
    ));
}

#[test]
fn byte_strings_are_byte_strings_not_arrays() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct B {
        #[serde(with = "serde_bytes")]
        d: Vec<u8>,
    }
    let bytes = encode(&B { d: vec![1, 2, 3] }).unwrap();
    assert_eq!(bytes, h("a161644301 0203".replace(' ', "").as_str()));
}

#[test]
fn encoder_sorts_struct_fields_by_encoded_key() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Fields {
        zebra: u8,
        ab: u8,
        b: u8,
        aaa: u8,
    }
    let v = Fields {
        zebra: 1,
        ab: 2,
        b: 3,
        aaa: 4,
    };
    let bytes = encode(&v).unwrap();
    // b (61 62), ab (62 6162), aaa (63 616161), zebra (65 7a65627261).
    assert_eq!(
        hex::encode(&bytes),
        concat!(
            "a4",
            "6162",
            "03",
            "626162",
            "02",
            "63616161",
            "04",
            "657a65627261",
            "01"
        )
    );
    assert_eq!(decode::<Fields>(&bytes).unwrap(), v);
}

#[test]
fn encoder_rejects_duplicate_keys_and_floats() {
    // Two distinct Rust keys that serialize to the same CBOR key are refused.
    let map: Vec<(Value, Value)> = vec![
        (Value::Integer(1), Value::Null),
        (Value::Integer(1), Value::Null),
    ];
    assert!(matches!(
        encode(&Value::Map(map)),
        Err(CborError::DuplicateMapKey { .. })
    ));
    assert!(matches!(
        encode(&1.5f64),
        Err(CborError::FloatNotAllowed { .. })
    ));
    assert_eq!(
        encode_with(&1.5f64, &Limits::DEFAULT.with_floats()).unwrap(),
        h("f93e00")
    );
}

#[test]
fn canonicalize_rewrites_indefinite_and_unsorted_forms() {
    let cases = [
        ("9f018202039f0405ffff", "8301820203820405"),
        ("bf61610161629f0203ffff", "a26161016162820203"),
        ("5f42010243030405ff", "450102030405"),
        ("7f657374726561646d696e67ff", "6973747265616d696e67"),
        ("bf6346756ef563416d7421ff", "a263416d74216346756ef5"),
        ("a202000100", "a201000200"),
        ("1817", "17"),
        ("fb3ff0000000000000", "f93c00"),
    ];
    for (input, want) in cases {
        let got = canonicalize(&h(input), &Limits::DEFAULT.with_floats()).unwrap();
        assert_eq!(hex::encode(&got), want, "{input}");
        assert_eq!(validate(&got, &Limits::DEFAULT.with_floats()), Ok(()));
    }
}

// ---- RFC 8949 Appendix A -----------------------------------------------------------------

#[derive(Deserialize)]
struct Vector {
    hex: String,
    roundtrip: bool,
}

fn appendix_a() -> Vec<Vector> {
    let text = include_str!("../../../../spec/vectors/cbor/appendix_a.json");
    serde_json::from_str(text).unwrap()
}

/// An item the profile admits: definite-length major types 0-5 (no tags), or false, true,
/// null; and the example itself in preferred serialization.
fn admitted_by_profile(bytes: &[u8], roundtrip: bool) -> bool {
    let first = bytes[0];
    let major = first >> 5;
    let info = first & 0x1f;
    let definite_data = major <= 5 && info != 31;
    (definite_data || matches!(first, 0xf4..=0xf6)) && roundtrip
}

#[test]
fn appendix_a_admitted_values_round_trip_exactly() {
    let mut admitted = 0;
    for v in appendix_a() {
        let bytes = h(&v.hex);
        let expect = admitted_by_profile(&bytes, v.roundtrip);
        let got = validate(&bytes, &Limits::DEFAULT);
        assert_eq!(got.is_ok(), expect, "{}: {got:?}", v.hex);
        if expect {
            admitted += 1;
            let value: Value = decode(&bytes).unwrap();
            assert_eq!(encode(&value).unwrap(), bytes, "{}", v.hex);
        }
    }
    // Counted from the file: 11 unsigned (up to 2^64-1), 5 negative (down to -2^64),
    // false/true/null, 2 byte strings, 7 text strings, 4 arrays, 3 maps, 2 mixed.
    assert_eq!(admitted, 37);
}

#[test]
fn appendix_a_floats_in_shortest_form_are_admitted_when_allowed() {
    let floats = Limits::DEFAULT.with_floats();
    let mut seen = 0;
    for v in appendix_a() {
        let bytes = h(&v.hex);
        if !matches!(bytes[0], 0xf9..=0xfb) {
            continue;
        }
        seen += 1;
        let got = validate(&bytes, &floats);
        assert_eq!(got.is_ok(), v.roundtrip, "{}: {got:?}", v.hex);
        if v.roundtrip {
            let value: Value = decode_with(&bytes, &floats).unwrap();
            assert_eq!(encode_with(&value, &floats).unwrap(), bytes, "{}", v.hex);
        } else {
            assert_eq!(got, Err(CborError::NonMinimalFloat { offset: 0 }));
        }
    }
    assert_eq!(seen, 22);
}

#[test]
fn extreme_integers_round_trip_through_value() {
    for (s, want) in [
        ("1bffffffffffffffff", (1i128 << 64) - 1),
        ("3bffffffffffffffff", -(1i128 << 64)),
        ("3b7fffffffffffffff", i128::from(i64::MIN)),
        ("3b8000000000000000", i128::from(i64::MIN) - 1),
    ] {
        let v: Value = decode(&h(s)).unwrap();
        assert_eq!(v, Value::Integer(want), "{s}");
        assert_eq!(hex::encode(encode(&v).unwrap()), s);
    }
}

// ---- Property tests ----------------------------------------------------------------------

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| Value::Integer(i128::from(i))),
        any::<u64>().prop_map(|i| Value::Integer(i128::from(i))),
        (0u64..=u64::MAX).prop_map(|i| Value::Integer(-1 - i128::from(i))),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        ".{0,20}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,6}", inner.clone(), 0..8).prop_map(
                |m| Value::Map(m.into_iter().map(|(k, v)| (Value::Text(k), v)).collect())
            ),
            proptest::collection::btree_map(any::<i32>(), inner, 0..8).prop_map(|m| Value::Map(
                m.into_iter()
                    .map(|(k, v)| (Value::Integer(i128::from(k)), v))
                    .collect()
            )),
        ]
    })
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Record {
    title: String,
    size: u64,
    delta: i32,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
    tags: Vec<String>,
    parent: Option<crate::hash::Hash256>,
    attrs: BTreeMap<String, u32>,
    flag: bool,
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        ".{0,30}",
        any::<u64>(),
        any::<i32>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec("[a-z]{0,8}", 0..5),
        proptest::option::of(any::<[u8; 32]>().prop_map(crate::hash::Hash256::from_bytes)),
        proptest::collection::btree_map("[a-z]{1,8}", any::<u32>(), 0..5),
        any::<bool>(),
    )
        .prop_map(
            |(title, size, delta, blob, tags, parent, attrs, flag)| Record {
                title,
                size,
                delta,
                blob,
                tags,
                parent,
                attrs,
                flag,
            },
        )
}

proptest! {
    #[test]
    fn value_round_trips(v in arb_value()) {
        let bytes = encode(&v).unwrap();
        prop_assert_eq!(validate(&bytes, &Limits::DEFAULT), Ok(()));
        let back: Value = decode(&bytes).unwrap();
        prop_assert_eq!(encode(&back).unwrap(), bytes);
    }

    #[test]
    fn record_round_trips(r in arb_record()) {
        let bytes = encode(&r).unwrap();
        let back: Record = decode(&bytes).unwrap();
        prop_assert_eq!(&back, &r);
        prop_assert_eq!(encode(&back).unwrap(), bytes);
    }

    #[test]
    fn accepted_bytes_re_encode_identically(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if validate(&bytes, &Limits::DEFAULT).is_ok() {
            let v: Value = decode(&bytes).unwrap();
            prop_assert_eq!(encode(&v).unwrap(), bytes);
        } else {
            prop_assert!(decode::<Value>(&bytes).is_err());
        }
    }

    #[test]
    fn canonicalize_is_idempotent_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(c) = canonicalize(&bytes, &Limits::DEFAULT) {
            prop_assert_eq!(validate(&c, &Limits::DEFAULT), Ok(()));
            prop_assert_eq!(canonicalize(&c, &Limits::DEFAULT).unwrap(), c);
        }
    }

    #[test]
    fn shuffled_map_canonicalizes_to_the_sorted_one(
        m in proptest::collection::btree_map(any::<i64>(), any::<u64>(), 1..12),
        seed in any::<u64>(),
    ) {
        let entries: Vec<(Value, Value)> = m
            .iter()
            .map(|(k, v)| (Value::Integer(i128::from(*k)), Value::Integer(i128::from(*v))))
            .collect();
        let canonical = encode(&Value::Map(entries.clone())).unwrap();
        // Write the entries in a scrambled order by hand, then canonicalize.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        let mut s = seed;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut raw = Vec::new();
        write_header(&mut raw, Major::Map, entries.len() as u64);
        for i in order {
            raw.extend(encode(&entries[i].0).unwrap());
            raw.extend(encode(&entries[i].1).unwrap());
        }
        prop_assert_eq!(canonicalize(&raw, &Limits::DEFAULT).unwrap(), canonical);
    }
}

// ---- The direct serializer agrees with the reference (cbor4ii + canonicalize) ----------

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Shape {
    Unit,
    Newtype(u32),
    Tuple(i8, String),
    Struct { zz: u8, a: Option<String> },
}

#[derive(Serialize, Debug, Clone)]
struct Everything {
    shape: Vec<Shape>,
    unit: (),
    ch: char,
    small: i8,
    big: i128,
    ubig: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    maybe: Option<u16>,
    nested: BTreeMap<String, Vec<BTreeMap<i64, bool>>>,
    #[serde(serialize_with = "unsized_seq")]
    unsized_list: Vec<u8>,
}

/// A sequence with no length hint: cbor4ii writes it with an indefinite length.
fn unsized_seq<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().filter(|_| true))
}

fn arb_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        any::<u32>().prop_map(Shape::Newtype),
        (any::<i8>(), ".{0,5}").prop_map(|(a, b)| Shape::Tuple(a, b)),
        (any::<u8>(), proptest::option::of(".{0,5}")).prop_map(|(zz, a)| Shape::Struct { zz, a }),
    ]
}

fn arb_everything() -> impl Strategy<Value = Everything> {
    (
        proptest::collection::vec(arb_shape(), 0..4),
        any::<char>(),
        any::<i8>(),
        (i128::from(i64::MIN) * 2)..(i128::from(u64::MAX)),
        0u128..(u128::from(u64::MAX)),
        proptest::option::of(any::<u16>()),
        proptest::collection::btree_map(
            "[a-z]{0,4}",
            proptest::collection::vec(
                proptest::collection::btree_map(any::<i64>(), any::<bool>(), 0..3),
                0..3,
            ),
            0..4,
        ),
        proptest::collection::vec(any::<u8>(), 0..30),
    )
        .prop_map(
            |(shape, ch, small, big, ubig, maybe, nested, unsized_list)| Everything {
                shape,
                unit: (),
                ch,
                small,
                big,
                ubig,
                maybe,
                nested,
                unsized_list,
            },
        )
}

proptest! {
    #[test]
    fn direct_serializer_matches_reference_on_values(v in arb_value()) {
        prop_assert_eq!(encode(&v), encode_via_canonicalize(&v, &Limits::DEFAULT));
    }

    #[test]
    fn direct_serializer_matches_reference_on_records(r in arb_record()) {
        prop_assert_eq!(encode(&r), encode_via_canonicalize(&r, &Limits::DEFAULT));
    }

    #[test]
    fn direct_serializer_matches_reference_on_the_whole_data_model(e in arb_everything()) {
        let direct = encode(&e);
        prop_assert_eq!(&direct, &encode_via_canonicalize(&e, &Limits::DEFAULT));
        let bytes = direct.unwrap();
        prop_assert_eq!(validate(&bytes, &Limits::DEFAULT), Ok(()));
    }

    #[test]
    fn direct_serializer_matches_reference_on_floats(f in any::<f64>(), g in any::<f32>()) {
        let limits = Limits::DEFAULT.with_floats();
        prop_assert_eq!(encode_with(&f, &limits), encode_via_canonicalize(&f, &limits));
        prop_assert_eq!(encode_with(&g, &limits), encode_via_canonicalize(&g, &limits));
        prop_assert_eq!(validate(&encode_with(&(f, g), &limits).unwrap(), &limits), Ok(()));
    }

    #[test]
    fn enums_round_trip(s in arb_shape()) {
        let bytes = encode(&s).unwrap();
        prop_assert_eq!(decode::<Shape>(&bytes).unwrap(), s);
    }
}

#[test]
fn direct_serializer_enforces_limits() {
    let deep = (((((1u8,),),),),);
    let limits = Limits {
        max_depth: 3,
        ..Limits::DEFAULT
    };
    assert!(matches!(
        encode_with(&deep, &limits),
        Err(CborError::TooDeep { .. })
    ));
    assert!(matches!(
        encode(&(u128::from(u64::MAX) + 1)),
        Err(CborError::Encode(_))
    ));
    assert!(matches!(
        encode(&(i128::from(i64::MIN) * 4)),
        Err(CborError::Encode(_))
    ));
    assert!(matches!(
        encode(&f32::NAN),
        Err(CborError::FloatNotAllowed { .. })
    ));
}
