//! Evidence bundles and witnessing, end to end in the library.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use tds_core::hash::Hash256;
use tds_core::key::SigningKey;
use tds_core::ErrorCode;
use tds_core::Timestamp;
use tds_identity::TrustStore;
use tds_identity::{Admission, Authority, Role, Sector};
use tds_provenance::event::{Code, Event, EventBody, SignedObject};
use tds_provenance::evidence::{
    self, Bundle, CheckedObject, EvidenceError, Invalid, ObjectError, ObjectVerifier,
};
use tds_provenance::store::MemoryStore;
use tds_provenance::witness::{MemoryWitnessMemory, Witness};
use tds_provenance::Log;

fn h(b: u8) -> Hash256 {
    Hash256::from_bytes([b; 32])
}

/// Stands in for the crate that knows agreements and manifests (`tds-objects`): accepts
/// the placeholder bytes this test embeds, says who the agreement's parties are.
struct Objects {
    provider: Hash256,
    consumer: Hash256,
}

impl ObjectVerifier for Objects {
    fn verify_object(&self, o: &SignedObject) -> Result<CheckedObject, ObjectError> {
        match (o.kind.as_str(), o.bytes.as_slice()) {
            ("agreement", [4, 5, 6]) => Ok(CheckedObject::new(
                o.id,
                Some((self.provider, self.consumer)),
                vec![h(0xa1)],
                "test agreement",
            )),
            ("manifest", [1, 2, 3]) => {
                Ok(CheckedObject::new(o.id, None, vec![o.id], "test manifest")
                    .signed_by(self.provider))
            }
            (kind, _) => Err(ObjectError {
                code: "test.unknown",
                message: format!("{kind} does not verify"),
            }),
        }
    }
}

fn trust(s: &Setup) -> TrustStore {
    let mut t = TrustStore::new();
    t.add_authority(s.authority.public_key());
    t.dangerous().accept_missing_revocation_lists();
    t
}

fn objects(s: &Setup) -> Objects {
    Objects {
        provider: s.log.signer().key_id(),
        consumer: h(3),
    }
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
        log.append(&Event::new(
            tds_core::Timestamp::from_millis(1_700_000_000_000 + i as u64),
            actor,
            b,
        ))
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
    let memory = MemoryWitnessMemory::default();
    Witness::new(s.authority.signer().as_ref(), &s.authority, &memory)
        .cosign(
            &s.log.verifier_key().unwrap(),
            note.as_bytes(),
            None,
            &s.credential,
            Timestamp::from_secs(1_750_000_000),
        )
        .unwrap()
        .note
}

fn verify(s: &Setup, bytes: &[u8]) -> Result<evidence::VerifiedEvidence, EvidenceError> {
    evidence::verify(bytes, &trust(s), &objects(s))
}

#[test]
fn export_and_verify() {
    let s = setup();
    let note = cosigned(&s);
    let b = evidence::export(&s.log, &s.agreement, &note, vec![s.credential.clone()]).unwrap();
    let kinds: Vec<u64> = b.events.iter().map(|e| e.index).collect();
    assert_eq!(kinds, [0, 2, 4, 5]);
    let bytes = b.encode().unwrap();
    let v = verify(&s, &bytes).unwrap();
    assert_eq!(v.tree_size(), 6);
    assert_eq!(v.cosigned_at(), Timestamp::from_secs(1_750_000_000));
    assert!(!v.revocation_checked());
    assert_eq!(v.objects().len(), 2);
    assert_eq!(Bundle::decode(&bytes).unwrap(), b);

    // Another authority's key: refused.
    let mut other = TrustStore::new();
    other.add_authority(SigningKey::from_seed(&[3; 32]).public_key());
    let err = evidence::verify(&bytes, &other, &objects(&s)).unwrap_err();
    assert!(
        matches!(err, EvidenceError::Invalid(Invalid::NotCosigned)),
        "{err}"
    );
    assert_eq!(err.code(), "evidence.not_cosigned");
}

#[test]
fn tampered_bundles_are_refused() {
    let s = setup();
    let note = cosigned(&s);
    let good = evidence::export(&s.log, &s.agreement, &note, vec![s.credential.clone()]).unwrap();
    let fails = |b: &Bundle| verify(&s, &b.encode().unwrap()).unwrap_err();

    let mut b = good.clone();
    b.events[1].event[10] ^= 1;
    let err = fails(&b);
    assert!(
        matches!(
            err,
            EvidenceError::Invalid(Invalid::Event { .. } | Invalid::Inclusion { .. })
        ),
        "{err}"
    );

    let mut b = good.clone();
    b.events[1].proof[0] = h(9);
    let err = fails(&b);
    assert!(
        matches!(
            err,
            EvidenceError::Invalid(Invalid::Inclusion { index: 2, .. })
        ),
        "{err}"
    );

    let mut b = good.clone();
    b.events.remove(1);
    let err = fails(&b);
    assert!(
        matches!(err, EvidenceError::Invalid(Invalid::NotConcluded)),
        "{err}"
    );

    // Uncosigned checkpoint.
    let mut b = good.clone();
    b.checkpoint = s.log.checkpoint().unwrap();
    let err = fails(&b);
    assert!(
        matches!(err, EvidenceError::Invalid(Invalid::NotCosigned)),
        "{err}"
    );

    // No credential for the log key: the log is not shown to belong to a member
    // (red-team finding 1: such a bundle used to verify).
    let mut b = good.clone();
    b.credentials.clear();
    let err = fails(&b);
    assert!(
        matches!(err, EvidenceError::Invalid(Invalid::NoLogKeyCredential)),
        "{err}"
    );

    // The concluding event's parties are not the embedded agreement's.
    let wrong = Objects {
        provider: h(8),
        consumer: h(3),
    };
    let err = evidence::verify(&good.encode().unwrap(), &trust(&s), &wrong).unwrap_err();
    assert!(
        matches!(err, EvidenceError::Invalid(Invalid::Concluded { .. })),
        "{err}"
    );
}
