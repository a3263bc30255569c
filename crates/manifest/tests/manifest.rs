//! Manifests: signing, asset ids, verification, field rules, registration receipts and
//! the DCAT export.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

mod common;

use common::*;
use tds_core::cbor;
use tds_core::cose::{self, CoseError};
use tds_core::hash::{Domain, Hash256};
use tds_core::{ErrorCode, SigningKey, Timestamp};
use tds_identity::{Admission, Authority, Role, Sector, TrustStore};
use tds_manifest::content::ChunkSize;
use tds_manifest::{
    open, register, verify_receipt, AssetId, Catalog, CatalogEntry, Lineage, Manifest,
    ManifestError, OfferRef, Quality, ReceiptError, Relation, UpdateFrequency,
};

fn sample() -> (Manifest, Vec<u8>) {
    let d = data(200_000, 1);
    let (c, _) = commit(&d, ChunkSize::MIN);
    let m = manifest_for(c, &owner());
    let env = m.sign(&owner()).unwrap();
    (m, env)
}

#[test]
fn sign_open_verify_and_asset_id() {
    let (m, env) = sample();
    assert_eq!(
        cose::peek_content_type(&env).unwrap(),
        "application/tds.manifest+cbor"
    );
    let u = open(&env).unwrap();
    assert_eq!(u.manifest(), &m);
    let id = u.id();
    let v = u.verify(&owner().public_key()).unwrap();
    assert_eq!(v.id(), id);
    assert_eq!(v.to_json()["owner_authenticated"], true);
    assert_eq!(v.envelope(), &env[..]);
    // The id is the tds/manifest/v1 hash of the canonical payload.
    let payload = cbor::encode(&m).unwrap();
    assert_eq!(v.as_verified().payload(), &payload[..]);
    assert_eq!(id, AssetId::from_hash(Domain::MANIFEST.hash(&payload)));
    assert_eq!(m.asset_id().unwrap(), id);
    assert!(id.to_string().starts_with("sha256:"));
    assert_eq!(id.to_string().parse::<AssetId>().unwrap(), id);
    // Without the owner key: verified against the named key, not authenticated; a
    // different type, which the owner key turns into an authenticated one.
    let s = open(&env).unwrap().verify_self_signed().unwrap();
    assert_eq!(s.id(), id);
    assert_eq!(s.to_json()["owner_authenticated"], false);
    let err = s
        .clone()
        .authenticate(&other_key().public_key())
        .unwrap_err();
    assert!(
        matches!(err, ManifestError::UnexpectedOwner { .. }),
        "{err}"
    );
    let v = s.authenticate(&owner().public_key()).unwrap();
    assert_eq!(v.id(), id);
}

#[test]
fn signature_of_another_key_is_refused() {
    let (m, _) = sample();
    // The owner refuses to sign with a key that is not the owner key...
    assert!(matches!(
        m.sign(&other_key()),
        Err(ManifestError::SignerNotOwner { .. })
    ));
    // ...and a valid manifest re-signed by another key fails verification both ways.
    let forged = cose::sign(&other_key(), &m).unwrap();
    let err = open(&forged)
        .unwrap()
        .verify(&owner().public_key())
        .unwrap_err();
    assert!(matches!(err, ManifestError::SignerNotOwner { .. }), "{err}");
    let err = open(&forged).unwrap().verify_self_signed().unwrap_err();
    assert!(matches!(err, ManifestError::SignerNotOwner { .. }), "{err}");
    // A manifest naming the other key does not verify as ours.
    let theirs = manifest_for(m.content, &other_key());
    let env = theirs.sign(&other_key()).unwrap();
    let err = open(&env)
        .unwrap()
        .verify(&owner().public_key())
        .unwrap_err();
    assert!(
        matches!(err, ManifestError::UnexpectedOwner { .. }),
        "{err}"
    );
}

#[test]
fn a_forged_signature_with_the_right_kid_is_refused() {
    let (_, env) = sample();
    let mut bad = env.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = open(&bad).unwrap().verify_self_signed().unwrap_err();
    assert!(
        matches!(err, ManifestError::Cose(CoseError::BadSignature)),
        "{err}"
    );
    // The message says it once (issue 9 §3), and the code names it.
    assert_eq!(err.to_string(), "cose: signature does not verify");
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(err.code(), "cose.bad_signature");
}

#[test]
fn any_flipped_byte_of_the_envelope_is_refused_or_changes_nothing_verified() {
    let (_, env) = sample();
    let key = owner().public_key();
    for i in 0..env.len() {
        let mut bad = env.clone();
        bad[i] ^= 0x20;
        let ok = open(&bad).and_then(|u| u.verify(&key));
        assert!(ok.is_err(), "byte {i} flipped still verifies");
    }
}

#[test]
fn field_rules_name_the_field() {
    let (m, _) = sample();
    type Change = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|m| m.title = String::new()), "manifest.title"),
        (Box::new(|m| m.title = " x".into()), "manifest.title"),
        (Box::new(|m| m.title = "x".repeat(257)), "manifest.title"),
        (Box::new(|m| m.version = 2), "manifest.version"),
        (
            Box::new(|m| m.media_type = "csv".into()),
            "manifest.media_type",
        ),
        (
            Box::new(|m| m.schema = Some("has space".into())),
            "manifest.schema",
        ),
        (
            Box::new(|m| m.keywords = vec!["a".into(), "a".into()]),
            "manifest.keywords",
        ),
        (
            Box::new(|m| m.keywords = (0..33).map(|i| i.to_string()).collect()),
            "manifest.keywords",
        ),
        (
            Box::new(|m| m.owner = tds_identity::ParticipantId::of(&other_key().public_key())),
            "manifest.owner",
        ),
        (
            Box::new(|m| m.content.chunks += 1),
            "manifest.content.chunks",
        ),
        (
            Box::new(|m| {
                m.content.size = 0;
                m.content.chunks = 0;
            }),
            "manifest.content.root",
        ),
        (
            Box::new(|m| {
                m.quality = Some(Quality {
                    completeness: Some(10_001),
                    update_frequency: None,
                })
            }),
            "manifest.quality.completeness",
        ),
        (
            Box::new(|m| {
                let l = Lineage {
                    asset: AssetId::from_hash(Hash256::sha256(b"a")),
                    relation: Relation::Derived,
                    agreement: None,
                };
                m.lineage = vec![l.clone(), l];
            }),
            "manifest.lineage",
        ),
    ];
    for (change, field) in cases {
        let mut bad = m.clone();
        change(&mut bad);
        let err = bad.sign(&owner()).unwrap_err().to_string();
        assert!(err.starts_with(field), "{field}: {err}");
        let reason = err.split_once(": ").unwrap().1;
        assert!(!reason.starts_with(char::is_uppercase), "{err}");
        assert!(!err.ends_with('.'), "{err}");
        // The same manifest signed without the checks is refused when opened.
        let env = cose::sign(&owner(), &bad).unwrap();
        let err = open(&env).unwrap_err().to_string();
        assert!(err.starts_with(field), "{field}: {err}");
    }
}

#[test]
fn chunk_sizes_below_the_minimum_do_not_decode() {
    let d = data(100, 1);
    let (c, _) = commit(&d, ChunkSize::for_tests(64).unwrap());
    let m = manifest_for(c, &owner());
    let env = cose::sign(&owner(), &m).unwrap();
    let err = open(&env).unwrap_err().to_string();
    assert!(err.contains("chunk size 64"), "{err}");
}

#[test]
fn all_optional_fields_round_trip() {
    let (mut m, _) = sample();
    m.lineage = vec![Lineage {
        asset: AssetId::from_hash(Hash256::sha256(b"source")),
        relation: Relation::Anonymized,
        agreement: Some(Hash256::sha256(b"agreement")),
    }];
    m.supersedes = Some(AssetId::from_hash(Hash256::sha256(b"v1")));
    m.quality = Some(Quality {
        completeness: Some(9_950),
        update_frequency: Some(UpdateFrequency::Daily),
    });
    m.residency = None;
    let env = m.sign(&owner()).unwrap();
    let v = open(&env).unwrap().verify(&owner().public_key()).unwrap();
    assert_eq!(v.manifest(), &m);
    let bytes = cbor::encode(&m).unwrap();
    assert_eq!(cbor::decode::<Manifest>(&bytes).unwrap(), m);
}

fn authority_and_member(now: Timestamp) -> (Authority, Vec<u8>) {
    let mut authority =
        Authority::new("Shanxi Energy Data Space", SigningKey::from_seed(&[9; 32])).unwrap();
    let issued = authority
        .admit(
            &Admission {
                subject_key: owner().public_key(),
                name: "Taiyuan Grid".into(),
                sectors: vec![Sector::POWER],
                roles: vec![Role::Provider],
                jurisdiction: "CN-SX".parse().unwrap(),
                not_before: now,
                not_after: now.saturating_add_millis(365 * tds_core::time::DAY_MS),
            },
            now,
        )
        .unwrap();
    (authority, issued.into_envelope())
}

#[test]
fn registration_receipt() {
    let now = Timestamp::from_secs(1_800_000_000);
    let (authority, cred_env) = authority_and_member(now);
    let (_, env) = sample();
    let manifest = open(&env).unwrap().verify_self_signed().unwrap();
    let credential = authority.trust_store().verify(&cred_env, now).unwrap();
    let (receipt, receipt_env) = register(&authority, &manifest, &credential, now).unwrap();
    assert_eq!(receipt.asset, manifest.id());
    assert_eq!(receipt.credential, credential.id());
    assert_eq!(
        cose::peek_content_type(&receipt_env).unwrap(),
        "application/tds.receipt+cbor"
    );
    let checked = verify_receipt(&receipt_env, &authority.public_key()).unwrap();
    assert_eq!(checked.receipt(), &receipt);
    assert_eq!(checked.envelope(), &receipt_env[..]);
    checked.check_covers(&manifest).unwrap();
    // Another key cannot verify it.
    assert!(verify_receipt(&receipt_env, &other_key().public_key()).is_err());

    // A manifest of another owner is refused.
    let theirs = manifest_for(manifest.content, &other_key());
    let theirs = open(&theirs.sign(&other_key()).unwrap())
        .unwrap()
        .verify_self_signed()
        .unwrap();
    let err = register(&authority, &theirs, &credential, now).unwrap_err();
    assert!(matches!(err, ReceiptError::NotOwner { .. }), "{err}");
    assert_eq!(err.code(), "receipt.not_owner");
    let err = receipt.check_covers(&theirs).unwrap_err();
    assert!(matches!(err, ReceiptError::OtherAsset { .. }), "{err}");
    assert_eq!(err.code(), "receipt.other_asset");
    // A credential of another authority is refused.
    let (other_authority, _) = {
        let a = Authority::new("Other", SigningKey::from_seed(&[8; 32])).unwrap();
        (a, ())
    };
    let mut store = TrustStore::new();
    store.add_authority(authority.public_key());
    store.dangerous().accept_missing_revocation_lists();
    let credential = store.verify(&cred_env, now).unwrap();
    assert!(matches!(
        register(&other_authority, &manifest, &credential, now),
        Err(ReceiptError::ForeignCredential { .. })
    ));
    // An expired credential is refused.
    let later = now.saturating_add_millis(400 * tds_core::time::DAY_MS);
    assert!(matches!(
        register(&authority, &manifest, &credential, later),
        Err(ReceiptError::CredentialNotValid { .. })
    ));
    // A credential the authority has revoked is refused.
    let mut authority = authority;
    authority.revoke(credential.serial()).unwrap();
    assert!(matches!(
        register(&authority, &manifest, &credential, now),
        Err(ReceiptError::Revoked { serial: 1 })
    ));
}

#[test]
fn oversized_envelopes_are_refused_before_parsing() {
    let big = vec![0u8; tds_manifest::MAX_MANIFEST_LEN + 1];
    assert!(matches!(open(&big), Err(ManifestError::TooLarge { .. })));
    // Receipts are bounded too, and other kinds of envelope are refused by content type.
    assert!(verify_receipt(&big, &owner().public_key()).is_err());
    let (_, env) = sample();
    let err = verify_receipt(&env, &owner().public_key()).unwrap_err();
    assert!(err.to_string().contains("content type"), "{err}");
    assert_eq!(err.code(), "cose.wrong_content_type");
}

#[test]
fn error_codes_are_well_formed_and_messages_do_not_repeat_their_cause() {
    use tds_manifest::content::{BuildError, ChunkError, CommitmentError, DataError};
    let errors: Vec<(Box<dyn std::error::Error>, &str)> = vec![
        (
            Box::new(ManifestError::Cose(CoseError::BadSignature)),
            ManifestError::Cose(CoseError::BadSignature).code(),
        ),
        (
            Box::new(ManifestError::Commitment(CommitmentError::EmptyRoot)),
            ManifestError::Commitment(CommitmentError::EmptyRoot).code(),
        ),
        (
            Box::new(ChunkError::Mismatch { index: 3 }),
            ChunkError::Mismatch { index: 3 }.code(),
        ),
        (
            Box::new(BuildError::Io(std::io::Error::other("disk on fire"))),
            BuildError::Io(std::io::Error::other("x")).code(),
        ),
        (
            Box::new(DataError::Chunk { index: 1 }),
            DataError::Chunk { index: 1 }.code(),
        ),
        (
            Box::new(ReceiptError::Revoked { serial: 2 }),
            ReceiptError::Revoked { serial: 2 }.code(),
        ),
    ];
    for (e, code) in errors {
        assert!(tds_core::code::is_well_formed(code), "{code}");
        // What the CLI prints: the chain joined by ": ". No part repeats the next.
        let mut parts = vec![e.to_string()];
        let mut cause = e.source();
        while let Some(c) = cause {
            parts.push(c.to_string());
            cause = c.source();
        }
        for w in parts.windows(2) {
            assert!(!w[0].contains(&w[1]), "{parts:?}");
        }
    }
    assert_eq!(
        ManifestError::Commitment(CommitmentError::EmptyRoot).code(),
        "manifest.content.empty_root"
    );
}

#[test]
fn dcat_export() {
    let (mut m, _) = sample();
    m.quality = Some(Quality {
        completeness: Some(9_900),
        update_frequency: Some(UpdateFrequency::Monthly),
    });
    m.lineage = vec![Lineage {
        asset: AssetId::from_hash(Hash256::sha256(b"source")),
        relation: Relation::Aggregated,
        agreement: None,
    }];
    let env = m.sign(&owner()).unwrap();
    let v = open(&env).unwrap().verify_self_signed().unwrap();
    let catalog = Catalog {
        title: "Shanxi grid data".into(),
        entries: vec![CatalogEntry {
            manifest: v.clone(),
            offers: vec![OfferRef {
                id: "sha256:00".into(),
                policy: serde_json::json!({"@type": "odrl:Offer", "odrl:permission": []}),
            }],
        }],
    };
    let j = catalog.to_dcat();
    assert_eq!(j["@type"], "dcat:Catalog");
    assert_eq!(j["@context"]["dcat"], "http://www.w3.org/ns/dcat#");
    let d = &j["dcat:dataset"][0];
    assert_eq!(d["@type"], "dcat:Dataset");
    assert_eq!(d["dct:identifier"], v.id().to_string());
    assert_eq!(d["dct:title"], "Feeder load, 15-minute");
    assert_eq!(d["dcat:keyword"][1], "feeder");
    assert_eq!(d["tds:classification"], "important");
    assert_eq!(d["dct:spatial"], "CN-SX");
    assert_eq!(
        d["dcat:distribution"][0]["dcat:byteSize"]["@value"],
        "200000"
    );
    assert_eq!(
        d["dcat:distribution"][0]["spdx:checksum"]["spdx:checksumValue"],
        v.content.root.to_hex()
    );
    assert_eq!(d["odrl:hasPolicy"][0]["@type"], "odrl:Offer");
    assert_eq!(d["odrl:hasPolicy"][0]["@id"], "urn:tds:offer:sha256:00");
    assert_eq!(
        d["dct:accrualPeriodicity"]["@id"],
        "http://publications.europa.eu/resource/authority/frequency/MONTHLY"
    );
    assert!(d["prov:wasDerivedFrom"][0]["@id"]
        .as_str()
        .unwrap()
        .starts_with("urn:tds:asset:sha256:"));
}
