//! Evidence bundles and witnessing, end to end in the library.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use tds_core::hash::Hash256;
use tds_core::key::SigningKey;
use tds_core::Timestamp;
use tds_identity::{Admission, Authority, Role, Sector};
use tds_provenance::event::{Code, Event, EventBody, SignedObject};
use tds_provenance::evidence::{self, Bundle};
use tds_provenance::store::MemoryStore;
use tds_provenance::witness::{self, WitnessState};
use tds_provenance::Log;

fn h(b: u8) -> Hash256 {
    Hash256::from_bytes([b; 32])
}

struct Setup {
    log: Log<MemoryStore>,
    authority: Authority,
    agreement: Hash256,
    credential: Vec<u8>,
}

fn setup() -> Setup {
    let node = SigningKey::from_seed(&[1; 32]);
    let node_pub = node.public_key();
    let actor = node.id();
    let log = Log::new(MemoryStore::new(), node);
    let agreement = h(0xa0);
    let asset = h(0xa1);
    let events = [
        EventBody::AssetPublished {
            asset,
            object: Some(SignedObject {
                kind: Code::new("manifest").unwrap(),
                id: asset,
                bytes: vec![1, 2, 3],
            }),
        },
        EventBody::AssetPublished {
            asset: h(0xb1),
            object: None,
        },
        EventBody::AgreementConcluded {
            agreement,
            negotiation: h(2),
            provider: actor,
            consumer: h(3),
            object: Some(SignedObject {
                kind: Code::new("agreement").unwrap(),
                id: agreement,
                bytes: vec![4, 5, 6],
            }),
        },
        EventBody::AgreementExpired { agreement: h(0xcc) },
        EventBody::TransferStarted {
            transfer: h(4),
            agreement,
            asset,
        },
        EventBody::TransferCompleted {
            transfer: h(4),
            agreement,
            root: h(5),
            bytes: 1000,
            receipt: None,
        },
    ];
    for (i, b) in events.into_iter().enumerate() {
        log.append(&Event::new(1_700_000_000_000 + i as u64, actor, b))
            .unwrap();
    }
    let mut authority = Authority::new("Space authority", SigningKey::from_seed(&[2; 32])).unwrap();
    let now = Timestamp::from_secs(1_700_000_000);
    let credential = authority
        .admit(
            &Admission {
                subject_key: node_pub,
                name: "Grid operator".into(),
                sectors: vec![Sector::POWER],
                roles: vec![Role::Provider],
                jurisdiction: "CN".parse().unwrap(),
                not_before: now,
                not_after: Timestamp::from_secs(1_900_000_000),
            },
            now,
        )
        .unwrap()
        .into_envelope();
    Setup {
        log,
        authority,
        agreement,
        credential,
    }
}

fn cosigned(s: &Setup) -> String {
    let note = s.log.checkpoint().unwrap();
    let mut state = WitnessState::default();
    witness::cosign(
        &mut state,
        s.authority.signer().as_ref(),
        &s.log.verifier_key().unwrap(),
        note.as_bytes(),
        None,
        1_750_000_000,
    )
    .unwrap()
    .note
}

#[test]
fn export_and_verify() {
    let s = setup();
    let note = cosigned(&s);
    let b = evidence::export(&s.log, &s.agreement, &note, vec![s.credential.clone()]).unwrap();
    let kinds: Vec<u64> = b.events.iter().map(|e| e.index).collect();
    assert_eq!(kinds, [0, 2, 4, 5]);
    let bytes = b.encode().unwrap();
    let sum = evidence::verify(&bytes, &s.authority.public_key()).unwrap();
    assert_eq!(sum.tree_size, 6);
    assert!(sum.log_key_credential);
    assert_eq!(sum.cosigned_at, 1_750_000_000);
    assert_eq!(Bundle::decode(&bytes).unwrap(), b);

    // Another authority's key: refused.
    let other = SigningKey::from_seed(&[3; 32]).public_key();
    let err = evidence::verify(&bytes, &other).unwrap_err();
    assert!(err.to_string().contains("cosigned"), "{err}");
}

#[test]
fn tampered_bundles_are_refused() {
    let s = setup();
    let note = cosigned(&s);
    let good = evidence::export(&s.log, &s.agreement, &note, vec![s.credential.clone()]).unwrap();
    let key = s.authority.public_key();

    let mut b = good.clone();
    b.events[1].event[10] ^= 1;
    assert!(evidence::verify(&b.encode().unwrap(), &key).is_err());

    let mut b = good.clone();
    b.events[1].proof[0] = h(9);
    let err = evidence::verify(&b.encode().unwrap(), &key).unwrap_err();
    assert!(err.to_string().contains("inclusion proof"), "{err}");

    let mut b = good.clone();
    b.events.remove(1);
    let err = evidence::verify(&b.encode().unwrap(), &key).unwrap_err();
    assert!(err.to_string().contains("agreement_concluded"), "{err}");

    // Uncosigned checkpoint.
    let mut b = good.clone();
    b.checkpoint = s.log.checkpoint().unwrap();
    let err = evidence::verify(&b.encode().unwrap(), &key).unwrap_err();
    assert!(err.to_string().contains("cosigned"), "{err}");

    // A credential for another key only.
    let mut b = good;
    b.credentials.clear();
    assert!(evidence::verify(&b.encode().unwrap(), &key).is_ok());
}
