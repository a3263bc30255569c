use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::*;
use crate::key::SigningKey;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[derive(Deserialize)]
struct Example {
    input: ExampleInput,
    intermediates: Intermediates,
    output: ExampleOutput,
}

#[derive(Deserialize)]
struct ExampleInput {
    plaintext: String,
    sign0: Sign0,
}

#[derive(Deserialize)]
struct Sign0 {
    key: serde_json::Value,
}

#[derive(Deserialize)]
struct Intermediates {
    #[serde(rename = "ToBeSign_hex")]
    to_be_sign_hex: String,
}

#[derive(Deserialize)]
struct ExampleOutput {
    cbor: String,
}

fn example(text: &str) -> Example {
    serde_json::from_str(text).unwrap()
}

const EDDSA_01: &str =
    include_str!("../../../../spec/vectors/cose/eddsa-examples/eddsa-sig-01.json");
const EDDSA_02: &str =
    include_str!("../../../../spec/vectors/cose/eddsa-examples/eddsa-sig-02.json");

#[test]
fn cose_wg_eddsa_01_verifies() {
    let ex = example(EDDSA_01);
    let msg = CoseSign1::from_slice(&h(&ex.output.cbor)).unwrap();
    assert!(msg.tagged);
    // The kid sits in the unprotected header in this example.
    assert_eq!(
        msg.unprotected.get(label::KID),
        Some(&Value::Bytes(b"11".to_vec()))
    );
    assert_eq!(
        msg.to_be_signed(&[], None).unwrap(),
        h(&ex.intermediates.to_be_sign_hex)
    );
    let x = ex.input.sign0.key["x_hex"].as_str().unwrap();
    let key = PublicKey::from_hex(x).unwrap();
    msg.verify_ed25519(&[], &key).unwrap();
    // Re-serializing gives the same bytes.
    assert_eq!(msg.to_vec().unwrap(), h(&ex.output.cbor));
}

#[test]
fn cose_wg_eddsa_01_re_signing_reproduces_the_bytes() {
    let ex = example(EDDSA_01);
    let d: [u8; 32] = h(ex.input.sign0.key["d_hex"].as_str().unwrap())
        .try_into()
        .unwrap();
    let key = SigningKey::from_seed(&d);
    // protected {alg: EdDSA, ctyp: 0}; unprotected {kid: "11"}.
    let protected = cbor::encode(&Value::Map(vec![
        (Value::Integer(label::ALG), Value::Integer(alg::EDDSA)),
        (Value::Integer(label::CONTENT_TYPE), Value::Integer(0)),
    ]))
    .unwrap();
    let mut msg = CoseSign1 {
        tagged: true,
        protected_header: decode_protected(&protected).unwrap(),
        protected,
        unprotected: HeaderMap(vec![(
            Value::Integer(label::KID),
            Value::Bytes(b"11".to_vec()),
        )]),
        payload: Some(ex.input.plaintext.into_bytes()),
        signature: Vec::new(),
    };
    let tbs = msg.to_be_signed(&[], None).unwrap();
    assert_eq!(tbs, h(&ex.intermediates.to_be_sign_hex));
    msg.signature = key.sign(&tbs).to_vec();
    assert_eq!(hex::encode_upper(msg.to_vec().unwrap()), ex.output.cbor);
}

#[test]
fn cose_wg_eddsa_02_ed448_is_unsupported() {
    let ex = example(EDDSA_02);
    let msg = CoseSign1::from_slice(&h(&ex.output.cbor)).unwrap();
    assert_eq!(msg.to_vec().unwrap(), h(&ex.output.cbor));
    // Its key is not an Ed25519 key at all.
    let x = ex.input.sign0.key["x_hex"].as_str().unwrap();
    assert!(PublicKey::from_slice(&h(x)).is_err());
    // And no Ed25519 key verifies it: the algorithm is refused, not mis-verified.
    let any = SigningKey::from_seed(&[9; 32]).public_key();
    let err = msg.verify_ed25519(&[], &any).unwrap_err();
    assert!(matches!(err, CoseError::UnsupportedAlgorithm(_)), "{err}");
    assert!(err.to_string().contains("Ed448"), "{err}");
}

#[test]
fn cose_wg_sign1_tests_are_refused_as_unsupported_or_malformed() {
    let any = SigningKey::from_seed(&[9; 32]).public_key();
    let files = [
        (
            "sign-pass-01",
            include_str!("../../../../spec/vectors/cose/sign1-tests/sign-pass-01.json"),
        ),
        (
            "sign-pass-02",
            include_str!("../../../../spec/vectors/cose/sign1-tests/sign-pass-02.json"),
        ),
        (
            "sign-pass-03",
            include_str!("../../../../spec/vectors/cose/sign1-tests/sign-pass-03.json"),
        ),
        (
            "sign-fail-01",
            include_str!("../../../../spec/vectors/cose/sign1-tests/sign-fail-01.json"),
        ),
        (
            "sign-fail-02",
            include_str!("../../../../spec/vectors/cose/sign1-tests/sign-fail-02.json"),
        ),
        (
            "sign-fail-03",
            include_str!("../../../../spec/vectors/cose/sign1-tests/sign-fail-03.json"),
        ),
        (
            "sign-fail-04",
            include_str!("../../../../spec/vectors/cose/sign1-tests/sign-fail-04.json"),
        ),
        (
            "sign-fail-06",
            include_str!("../../../../spec/vectors/cose/sign1-tests/sign-fail-06.json"),
        ),
        (
            "sign-fail-07",
            include_str!("../../../../spec/vectors/cose/sign1-tests/sign-fail-07.json"),
        ),
    ];
    for (name, text) in files {
        let ex = example(text);
        let bytes = h(&ex.output.cbor);
        match CoseSign1::from_slice(&bytes) {
            Ok(msg) => {
                assert_eq!(msg.to_vec().unwrap(), bytes, "{name}");
                let err = msg.verify_ed25519(&[], &any).unwrap_err();
                assert!(
                    matches!(err, CoseError::UnsupportedAlgorithm(_)),
                    "{name}: {err}"
                );
            }
            Err(err) => {
                // Only the wrong-tag case may fail to parse.
                assert_eq!(name, "sign-fail-01");
                assert!(
                    matches!(
                        err,
                        CoseError::WrongTag {
                            expected: 18,
                            found: Some(998)
                        }
                    ),
                    "{err}"
                );
            }
        }
        // The typed layer refuses all of them before looking at any signature.
        assert!(open::<Note>(&bytes).is_err(), "{name}");
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Note {
    text: String,
    at: crate::time::Timestamp,
}

impl SignedObject for Note {
    const CONTENT_TYPE: &'static str = "application/tds.note+cbor";
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Other {
    text: String,
    at: crate::time::Timestamp,
}

impl SignedObject for Other {
    const CONTENT_TYPE: &'static str = "application/tds.other+cbor";
}

fn note() -> Note {
    Note {
        text: "load data for grid planning".into(),
        at: crate::time::Timestamp::from_millis(1_800_000_000_000),
    }
}

#[test]
fn typed_round_trip_and_layout() {
    let key = SigningKey::from_seed(&[1; 32]);
    let bytes = sign(&key, &note()).unwrap();
    assert_eq!(&bytes[..2], &[0xd2, 0x84], "tag 18, array of 4");
    let raw = CoseSign1::from_slice(&bytes).unwrap();
    assert_eq!(
        raw.protected_header.get(label::ALG),
        Some(&Value::Integer(-8))
    );
    assert_eq!(
        raw.protected_header.get(label::KID),
        Some(&Value::Bytes(key.id().as_bytes().to_vec()))
    );
    assert!(raw.unprotected.is_empty());
    // An independent raw verification agrees.
    raw.verify_ed25519(&[], &key.public_key()).unwrap();
    let opened = open::<Note>(&bytes).unwrap();
    assert_eq!(opened.kid(), key.id());
    let v = opened.verify(&key.public_key()).unwrap();
    assert_eq!(v.value(), &note());
    assert_eq!(v.signer(), &key.public_key());
    assert_eq!(v.envelope(), bytes.as_slice());
    assert_eq!(v.payload(), cbor::encode(&note()).unwrap().as_slice());
    assert_eq!(peek_content_type(&bytes).unwrap(), Note::CONTENT_TYPE);
}

#[test]
fn wrong_key_is_a_kid_mismatch() {
    let key = SigningKey::from_seed(&[1; 32]);
    let other = SigningKey::from_seed(&[2; 32]);
    let bytes = sign(&key, &note()).unwrap();
    let err = open::<Note>(&bytes)
        .unwrap()
        .verify(&other.public_key())
        .unwrap_err();
    assert!(matches!(err, CoseError::KidMismatch { .. }), "{err}");
}

#[test]
fn wrong_content_type_is_refused() {
    let key = SigningKey::from_seed(&[1; 32]);
    let bytes = sign(&key, &note()).unwrap();
    let err = open::<Other>(&bytes).unwrap_err();
    assert!(matches!(err, CoseError::WrongContentType { .. }), "{err}");
}

#[test]
fn forged_signature_with_right_kid_is_refused() {
    let key = SigningKey::from_seed(&[1; 32]);
    let bytes = sign(&key, &note()).unwrap();
    let mut raw = CoseSign1::from_slice(&bytes).unwrap();
    raw.signature = SigningKey::from_seed(&[2; 32])
        .sign(&raw.to_be_signed(&[], None).unwrap())
        .to_vec();
    let forged = raw.to_vec().unwrap();
    let err = open::<Note>(&forged)
        .unwrap()
        .verify(&key.public_key())
        .unwrap_err();
    assert!(matches!(err, CoseError::BadSignature), "{err}");
}

fn resign(key: &SigningKey, mut raw: CoseSign1) -> Vec<u8> {
    raw.signature = key.sign(&raw.to_be_signed(&[], None).unwrap()).to_vec();
    raw.to_vec().unwrap()
}

#[test]
fn typed_layer_rules() {
    let key = SigningKey::from_seed(&[1; 32]);
    let good = CoseSign1::from_slice(&sign(&key, &note()).unwrap()).unwrap();

    // Untagged.
    let mut m = good.clone();
    m.tagged = false;
    assert!(matches!(
        open::<Note>(&resign(&key, m)),
        Err(CoseError::WrongTag { .. })
    ));

    // Something in the unprotected header.
    let mut m = good.clone();
    m.unprotected = HeaderMap(vec![(Value::Integer(99), Value::Null)]);
    assert!(matches!(
        open::<Note>(&resign(&key, m)),
        Err(CoseError::Header(_))
    ));

    // Detached payload.
    let mut m = good.clone();
    m.payload = None;
    let mut bytes = m.to_vec().unwrap();
    assert!(matches!(
        open::<Note>(&bytes),
        Err(CoseError::DetachedPayload)
    ));

    // A payload with a float in it.
    let mut m = good.clone();
    m.payload = Some(h("a26161f93c006162f6"));
    assert!(open::<Note>(&resign(&key, m)).is_err());

    // Alg -7 (ES256) in an otherwise TDS-shaped header.
    let mut m = good.clone();
    m.protected = cbor::encode(&Value::Map(vec![
        (Value::Integer(1), Value::Integer(-7)),
        (Value::Integer(3), Value::Text(Note::CONTENT_TYPE.into())),
        (
            Value::Integer(4),
            Value::Bytes(key.id().as_bytes().to_vec()),
        ),
    ]))
    .unwrap();
    m.protected_header = decode_protected(&m.protected).unwrap();
    let err = open::<Note>(&resign(&key, m)).unwrap_err();
    assert!(matches!(err, CoseError::UnsupportedAlgorithm(_)), "{err}");

    // Alg -19 (fully specified Ed25519) is accepted.
    let mut m = good.clone();
    m.protected = cbor::encode(&Value::Map(vec![
        (Value::Integer(1), Value::Integer(-19)),
        (Value::Integer(3), Value::Text(Note::CONTENT_TYPE.into())),
        (
            Value::Integer(4),
            Value::Bytes(key.id().as_bytes().to_vec()),
        ),
    ]))
    .unwrap();
    m.protected_header = decode_protected(&m.protected).unwrap();
    let v = open::<Note>(&resign(&key, m))
        .unwrap()
        .verify(&key.public_key())
        .unwrap();
    assert_eq!(v.value(), &note());

    // Trailing bytes after the envelope.
    bytes = good.to_vec().unwrap();
    bytes.push(0);
    assert!(matches!(
        open::<Note>(&bytes),
        Err(CoseError::Cbor(CborError::TrailingBytes { .. }))
    ));
}

#[test]
fn every_single_bit_flip_is_refused() {
    let key = SigningKey::from_seed(&[3; 32]);
    let bytes = sign(&key, &note()).unwrap();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut m = bytes.clone();
            m[i] ^= 1 << bit;
            let ok = open::<Note>(&m).and_then(|u| u.verify(&key.public_key()));
            assert!(ok.is_err(), "flip of bit {bit} in byte {i} verified");
        }
    }
}

#[test]
fn cose_sign_two_parties() {
    let provider = SigningKey::from_seed(&[4; 32]);
    let consumer = SigningKey::from_seed(&[5; 32]);
    let third = SigningKey::from_seed(&[6; 32]);

    // Provider signs first, consumer countersigns.
    let half = sign_multi(&[&provider], &note()).unwrap();
    assert_eq!(&half[..2], &[0xd8, 0x62], "tag 98");
    let full = add_signature::<Note>(&half, &consumer).unwrap();
    assert!(matches!(
        add_signature::<Note>(&full, &consumer),
        Err(CoseError::Signers(_))
    ));

    let opened = open_multi::<Note>(&full).unwrap();
    assert_eq!(opened.kids(), &[provider.id(), consumer.id()]);
    let v = opened
        .verify(&[consumer.public_key(), provider.public_key()])
        .unwrap();
    assert_eq!(v.value(), &note());
    assert_eq!(v.signers(), &[provider.public_key(), consumer.public_key()]);

    // All at once gives the same bytes (Ed25519 is deterministic).
    assert_eq!(sign_multi(&[&provider, &consumer], &note()).unwrap(), full);

    // The wrong set of signers is refused, each for its reason.
    assert!(matches!(
        open_multi::<Note>(&full)
            .unwrap()
            .verify(&[provider.public_key()]),
        Err(CoseError::Signers(SignerProblem::Number {
            expected: 1,
            found: 2
        }))
    ));
    assert!(matches!(
        open_multi::<Note>(&full)
            .unwrap()
            .verify(&[provider.public_key(), third.public_key()]),
        Err(CoseError::Signers(SignerProblem::Unexpected(k))) if k == consumer.id()
    ));
    assert!(matches!(
        open_multi::<Note>(&half)
            .unwrap()
            .verify(&[provider.public_key(), consumer.public_key()]),
        Err(CoseError::Signers(SignerProblem::Number {
            expected: 2,
            found: 1
        }))
    ));
    assert!(matches!(
        sign_multi(&[&provider, &provider], &note()),
        Err(CoseError::Signers(SignerProblem::Twice(k))) if k == provider.id()
    ));

    // An independent raw verification of each signature agrees.
    let raw = CoseSign::from_slice(&full).unwrap();
    raw.verify_ed25519(0, &[], &provider.public_key()).unwrap();
    raw.verify_ed25519(1, &[], &consumer.public_key()).unwrap();
    assert!(matches!(
        raw.verify_ed25519(0, &[], &consumer.public_key()),
        Err(CoseError::BadSignature)
    ));
    assert_eq!(raw.to_vec().unwrap(), full);
    assert_eq!(peek_content_type(&full).unwrap(), Note::CONTENT_TYPE);
}

#[test]
fn cose_sign_single_bit_flips_are_refused() {
    let a = SigningKey::from_seed(&[4; 32]);
    let b = SigningKey::from_seed(&[5; 32]);
    let full = sign_multi(&[&a, &b], &note()).unwrap();
    let keys = [a.public_key(), b.public_key()];
    for i in 0..full.len() {
        let mut m = full.clone();
        m[i] ^= 0x01;
        let ok = open_multi::<Note>(&m).and_then(|u| u.verify(&keys));
        assert!(ok.is_err(), "flip in byte {i} verified");
    }
}

proptest! {
    #[test]
    fn random_mutations_never_verify(
        seed in any::<[u8; 32]>(),
        text in ".{0,40}",
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let key = SigningKey::from_seed(&seed);
        let n = Note { text, at: crate::time::Timestamp::from_millis(5) };
        let bytes = sign(&key, &n).unwrap();
        let mut m = bytes.clone();
        for (pos, val) in edits {
            let i = pos % m.len();
            m[i] = val;
        }
        let verified = open::<Note>(&m).and_then(|u| u.verify(&key.public_key()));
        if m == bytes {
            prop_assert!(verified.is_ok());
        } else {
            prop_assert!(verified.is_err());
        }
    }

    #[test]
    fn truncations_never_parse(cut in 0usize..200) {
        let key = SigningKey::from_seed(&[8; 32]);
        let bytes = sign(&key, &note()).unwrap();
        let cut = cut % bytes.len();
        prop_assert!(CoseSign1::from_slice(&bytes[..cut]).is_err());
    }
}

#[test]
fn verify_extending_checks_only_the_new_signatures_and_refuses_what_does_not_extend() {
    let provider = SigningKey::from_seed(&[4; 32]);
    let consumer = SigningKey::from_seed(&[5; 32]);
    let keys = [provider.public_key(), consumer.public_key()];
    let half = sign_multi(&[&provider], &note()).unwrap();
    let full = add_signature::<Note>(&half, &consumer).unwrap();
    let v = open_multi::<Note>(&full)
        .unwrap()
        .verify_extending(&keys, &half)
        .unwrap();
    assert_eq!(v.signers(), &keys);

    // Every bit flip of the countersigned message is refused: either it no longer
    // extends `half` or the new signature fails (or it does not parse).
    for i in 0..full.len() {
        for bit in 0..8 {
            let mut m = full.clone();
            m[i] ^= 1 << bit;
            let ok = open_multi::<Note>(&m).and_then(|u| u.verify_extending(&keys, &half));
            assert!(ok.is_err(), "flip of bit {bit} in byte {i} verified");
        }
    }

    // Another payload under the same first signer does not extend `half`.
    let other = Note {
        text: "other terms".into(),
        ..note()
    };
    let other_full = sign_multi(&[&provider, &consumer], &other).unwrap();
    assert!(matches!(
        open_multi::<Note>(&other_full)
            .unwrap()
            .verify_extending(&keys, &half),
        Err(CoseError::NotExtending)
    ));

    // The signer set is still checked in full.
    assert!(matches!(
        open_multi::<Note>(&full)
            .unwrap()
            .verify_extending(&[provider.public_key()], &half),
        Err(CoseError::Signers(_))
    ));

    // Vouching for a whole message covers those exact bytes only: a changed signature
    // does not extend it.
    let mut forged = full.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(open_multi::<Note>(&forged)
        .unwrap()
        .verify_extending(&keys, &full)
        .is_err());
}
