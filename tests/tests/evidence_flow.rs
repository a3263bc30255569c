//! Evidence bundles through the library API alone: a provider's log records a real
//! two-party agreement, the authority's witness cosigns it for a member, an arbiter
//! verifies the bundle with `tds_provenance::evidence::verify` and the standard object
//! verifier of `tds-objects`: exactly the checks `tds evidence verify` performs.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use tds_core::time::DAY_MS;
use tds_core::{cose, ErrorCode, Hash256, SigningKey, Timestamp};
use tds_identity::{Admission, Authority, Role, Sector, TrustStore};
use tds_objects::{record, StandardVerifier};
use tds_policy::contract::{verify_agreement, AgreementTerms};
use tds_provenance::event::{Code, Event, EventBody, SignedObject};
use tds_provenance::evidence::{self, EvidenceError, Invalid};
use tds_provenance::store::MemoryStore;
use tds_provenance::witness::{MemoryWitnessMemory, Witness};
use tds_provenance::Log;

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

/// A two-party agreement signed provider first, consumer second.
fn agreement(provider: &SigningKey, consumer: &SigningKey) -> Vec<u8> {
    let policy =
        tds_policy::parse("t", "policy set;\n\npermit use\n  when purpose isA grid;\n").unwrap();
    let terms = AgreementTerms {
        offer: Hash256::from_bytes([1; 32]),
        request: Hash256::from_bytes([2; 32]),
        asset: "urn:asset:load".parse().unwrap(),
        provider: provider.id(),
        provider_key: provider.public_key(),
        consumer: consumer.id(),
        consumer_key: consumer.public_key(),
        offer_policy: policy.clone(),
        policy,
        purpose: "grid/planning".parse().unwrap(),
        price: None,
        agreed_at: NOW,
    };
    cose::sign_multi(&[provider, consumer], &terms).unwrap()
}

struct World {
    authority: Authority,
    provider: SigningKey,
    consumer: SigningKey,
    credential: Vec<u8>,
}

fn world() -> World {
    let mut authority = Authority::new("Space", SigningKey::from_seed(&[9; 32])).unwrap();
    let provider = SigningKey::from_seed(&[1; 32]);
    let credential = authority
        .admit(
            &Admission {
                subject_key: provider.public_key(),
                name: "Grid".into(),
                sectors: vec![Sector::POWER],
                roles: vec![Role::Provider],
                jurisdiction: "CN".parse().unwrap(),
                not_before: NOW,
                not_after: NOW.saturating_add_millis(DAY_MS),
            },
            NOW,
        )
        .unwrap()
        .into_envelope();
    World {
        authority,
        provider,
        consumer: SigningKey::from_seed(&[2; 32]),
        credential,
    }
}

/// The provider's log with `event`, cosigned for the member; the bundle for `agreement`.
fn bundle(w: &World, events: &[Event], agreement: Hash256) -> Vec<u8> {
    let log = Log::new(MemoryStore::new(), SigningKey::from_seed(&[1; 32]));
    for e in events {
        log.append(e).unwrap();
    }
    let note = log.checkpoint().unwrap();
    let memory = MemoryWitnessMemory::default();
    let cosigned = Witness::new(w.authority.signer().as_ref(), &w.authority, &memory)
        .cosign(
            &log.verifier_key().unwrap(),
            note.as_bytes(),
            None,
            &w.credential,
            NOW,
        )
        .unwrap()
        .note;
    evidence::export(&log, &agreement, &cosigned, vec![w.credential.clone()])
        .unwrap()
        .encode()
        .unwrap()
}

fn trust(w: &World) -> TrustStore {
    let mut t = TrustStore::new();
    t.add_authority(w.authority.public_key());
    t.dangerous().accept_missing_revocation_lists();
    t
}

#[test]
fn a_recorded_agreement_verifies_as_evidence() {
    let w = world();
    let a = verify_agreement(&agreement(&w.provider, &w.consumer)).unwrap();
    let e = record::agreement_concluded(&a, w.provider.id(), NOW).unwrap();
    let bytes = bundle(&w, &[e], a.id());
    let t = trust(&w);
    let v = evidence::verify(&bytes, &t, &StandardVerifier::with_trust(&t)).unwrap();
    assert_eq!(v.agreement(), a.id());
    assert_eq!(v.objects().len(), 1);
    assert_eq!(v.objects()[0].check, "signatures of both parties verified");
}

#[test]
fn a_bundle_with_a_tampered_embedded_agreement_fails_through_the_library() {
    let w = world();
    let mut bytes = agreement(&w.provider, &w.consumer);
    let id = verify_agreement(&bytes).unwrap().id();
    // The log faithfully holds a forgery: the consumer's signature is broken.
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let e = Event::new(
        NOW,
        w.provider.id(),
        EventBody::AgreementConcluded {
            agreement: id,
            negotiation: Hash256::from_bytes([2; 32]),
            provider: w.provider.id(),
            consumer: w.consumer.id(),
            object: Some(SignedObject {
                kind: Code::new("agreement").unwrap(),
                id,
                bytes,
            }),
        },
    );
    let bundle = bundle(&w, &[e], id);
    let t = trust(&w);
    let err = evidence::verify(&bundle, &t, &StandardVerifier::with_trust(&t)).unwrap_err();
    assert!(
        matches!(
            &err,
            EvidenceError::Invalid(Invalid::Object { kind, index: 0, .. }) if kind == "agreement"
        ),
        "{err}"
    );
    assert_eq!(err.code(), "evidence.object");
}

#[test]
fn parties_must_be_the_agreements_and_unknown_kinds_fail() {
    let w = world();
    let bytes = agreement(&w.provider, &w.consumer);
    let a = verify_agreement(&bytes).unwrap();
    // A made-up consumer in the event.
    let mut e = record::agreement_concluded(&a, w.provider.id(), NOW).unwrap();
    if let EventBody::AgreementConcluded { consumer, .. } = &mut e.body {
        *consumer = Hash256::from_bytes([7; 32]);
    }
    let t = trust(&w);
    let err = evidence::verify(
        &bundle(&w, &[e], a.id()),
        &t,
        &StandardVerifier::with_trust(&t),
    )
    .unwrap_err();
    assert!(
        matches!(err, EvidenceError::Invalid(Invalid::Concluded { .. })),
        "{err}"
    );
    // An embedded object of a kind no verifier knows fails the bundle.
    let concluded = record::agreement_concluded(&a, w.provider.id(), NOW).unwrap();
    let odd = Event::new(
        NOW,
        w.provider.id(),
        EventBody::UsageReported {
            agreement: a.id(),
            report: Hash256::from_bytes([5; 32]),
            object: Some(SignedObject {
                kind: Code::new("mystery").unwrap(),
                id: Hash256::from_bytes([5; 32]),
                bytes: vec![1],
            }),
        },
    );
    let err = evidence::verify(
        &bundle(&w, &[concluded, odd], a.id()),
        &t,
        &StandardVerifier::with_trust(&t),
    )
    .unwrap_err();
    match err {
        EvidenceError::Invalid(Invalid::Object { source, .. }) => {
            assert_eq!(source.code, "evidence.object.unknown_kind")
        }
        other => panic!("{other}"),
    }
}
