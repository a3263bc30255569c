//! Key files encrypted with a passphrase: round trip, wrong passphrase, altered files,
//! bounded costs, and plain files still read.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use proptest::prelude::*;
use tds_core::cbor::Value;
use tds_core::key::{KdfCost, KeyError, Passphrase};
use tds_core::{ErrorCode, SigningKey};

/// Cheap costs for tests (the file records them; readers accept any within bounds).
const CHEAP: KdfCost = KdfCost {
    m_kib: 64,
    t: 1,
    p: 1,
};

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Rewrites one field of an encrypted key file's CBOR map.
fn with_field(pem: &str, name: &str, value: Value) -> String {
    let (label, body) = pem_rfc7468::decode_vec(pem.as_bytes()).unwrap();
    let Value::Map(mut entries) = tds_core::cbor::decode::<Value>(&body).unwrap() else {
        panic!("not a map");
    };
    for (k, v) in &mut entries {
        if *k == Value::Text(name.into()) {
            *v = value.clone();
        }
    }
    let body = tds_core::cbor::encode(&Value::Map(entries)).unwrap();
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, &body).unwrap()
}

#[test]
fn an_encrypted_key_opens_only_with_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let key = SigningKey::generate().unwrap();
    let pass = Passphrase::new("correct horse battery staple");
    key.write_encrypted_file(&path, &pass, false).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("-----BEGIN TDS ENCRYPTED PRIVATE KEY-----"),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(SigningKey::is_encrypted_file(&path).unwrap());
    // The public key is readable without the passphrase.
    assert_eq!(
        SigningKey::read_public_key(&path).unwrap(),
        key.public_key()
    );
    let back = SigningKey::read_file_with(&path, Some(&pass)).unwrap();
    assert_eq!(back.public_key(), key.public_key());
    // No passphrase, a wrong one.
    let e = SigningKey::read_file(&path).unwrap_err();
    assert!(matches!(e, KeyError::PassphraseNeeded { .. }), "{e}");
    assert_eq!(e.code(), "key.passphrase_needed");
    let e = SigningKey::read_file_with(&path, Some(&Passphrase::new("wrong"))).unwrap_err();
    assert_eq!(e.code(), "key.wrong_passphrase", "{e}");
    // Writing again refuses an existing file unless asked to replace it.
    let e = key.write_encrypted_file(&path, &pass, false).unwrap_err();
    assert_eq!(e.code(), "key.exists");
    key.write_encrypted_file(&path, &Passphrase::new("new one"), true)
        .unwrap();
    let back = SigningKey::read_file_with(&path, Some(&Passphrase::new("new one"))).unwrap();
    assert_eq!(back.public_key(), key.public_key());
    // A plain key file reads as before, with or without a passphrase.
    let plain = dir.path().join("plain.key");
    key.write_file(&plain).unwrap();
    assert!(!SigningKey::is_encrypted_file(&plain).unwrap());
    let a = SigningKey::read_file_with(&plain, Some(&pass)).unwrap();
    assert_eq!(a.public_key(), key.public_key());
    // An empty passphrase is refused.
    let e = key
        .to_encrypted_pem(&Passphrase::new(""), CHEAP)
        .unwrap_err();
    assert_eq!(e.code(), "key.format", "{e}");
}

#[test]
fn altered_files_and_unbounded_costs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_seed(&[5; 32]);
    let pass = Passphrase::new("pw");
    let pem = key.to_encrypted_pem(&pass, CHEAP).unwrap();
    let path = dir.path().join("k");
    let check = |text: &str| {
        write_private(&path, text);
        SigningKey::read_file_with(&path, Some(&pass))
            .unwrap_err()
            .code()
    };
    // The costs, salt and nonce are bound by the tag: changing one fails like a wrong
    // passphrase (the parameters are authenticated, not just used).
    assert_eq!(
        check(&with_field(&pem, "t", Value::Integer(2))),
        "key.wrong_passphrase"
    );
    assert_eq!(
        check(&with_field(
            &pem,
            "pk",
            Value::Bytes(
                SigningKey::from_seed(&[9; 32])
                    .public_key()
                    .as_bytes()
                    .to_vec()
            )
        )),
        "key.wrong_passphrase"
    );
    assert_eq!(
        check(&with_field(&pem, "salt", Value::Bytes(vec![0; 16]))),
        "key.wrong_passphrase"
    );
    assert_eq!(
        check(&with_field(&pem, "nonce", Value::Bytes(vec![1; 12]))),
        "key.wrong_passphrase"
    );
    // Costs beyond the bounds are refused before the KDF allocates anything.
    assert_eq!(
        check(&with_field(&pem, "m", Value::Integer(4 * 1024 * 1024))),
        "key.format"
    );
    assert_eq!(
        check(&with_field(&pem, "t", Value::Integer(0))),
        "key.format"
    );
    assert_eq!(
        check(&with_field(&pem, "p", Value::Integer(64))),
        "key.format"
    );
    // Another version, another algorithm, a short ciphertext, an unknown field.
    assert_eq!(
        check(&with_field(&pem, "v", Value::Integer(2))),
        "key.format"
    );
    assert_eq!(
        check(&with_field(&pem, "kdf", Value::Text("scrypt".into()))),
        "key.format"
    );
    assert_eq!(
        check(&with_field(&pem, "ct", Value::Bytes(vec![0; 40]))),
        "key.format"
    );
    let (label, body) = pem_rfc7468::decode_vec(pem.as_bytes()).unwrap();
    let Value::Map(mut entries) = tds_core::cbor::decode::<Value>(&body).unwrap() else {
        panic!("not a map");
    };
    entries.push((Value::Text("zz".into()), Value::Integer(1)));
    let body = tds_core::cbor::encode(&Value::Map(entries)).unwrap();
    let extra = pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, &body).unwrap();
    assert_eq!(check(&extra), "key.format");
    // Not base64, not CBOR.
    assert_eq!(
        check("-----BEGIN TDS ENCRYPTED PRIVATE KEY-----\n!!!!\n-----END TDS ENCRYPTED PRIVATE KEY-----\n"),
        "key.format"
    );
    // A world-readable encrypted key file is refused like a plain one.
    write_private(&path, &pem);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        SigningKey::read_file_with(&path, Some(&pass))
            .unwrap_err()
            .code(),
        "key.permissions"
    );
}

#[test]
fn a_passphrase_file_loses_one_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_seed(&[6; 32]);
    let pem = key
        .to_encrypted_pem(&Passphrase::new("secret words"), CHEAP)
        .unwrap();
    let path = dir.path().join("k");
    write_private(&path, &pem);
    let pass_file = dir.path().join("pass");
    std::fs::write(&pass_file, "secret words\n").unwrap();
    let pass = Passphrase::from_file(&pass_file).unwrap();
    let back = SigningKey::read_file_with(&path, Some(&pass)).unwrap();
    assert_eq!(back.public_key(), key.public_key());
    std::fs::write(&pass_file, "secret words\n\n").unwrap();
    let pass = Passphrase::from_file(&pass_file).unwrap();
    assert_eq!(
        SigningKey::read_file_with(&path, Some(&pass))
            .unwrap_err()
            .code(),
        "key.wrong_passphrase"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any seed sealed under any non-empty passphrase opens to the same key.
    #[test]
    fn sealed_keys_round_trip(seed in any::<[u8; 32]>(), pass in proptest::collection::vec(any::<u8>(), 1..64)) {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_seed(&seed);
        let pass = Passphrase::new(pass);
        let pem = key.to_encrypted_pem(&pass, CHEAP).unwrap();
        let path = dir.path().join("k");
        write_private(&path, &pem);
        let back = SigningKey::read_file_with(&path, Some(&pass)).unwrap();
        prop_assert_eq!(back.public_key(), key.public_key());
    }
}
