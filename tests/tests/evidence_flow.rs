//! Evidence bundles through the library API alone: a provider's log records a real
//! two-party agreement, the authority's witness cosigns it for a member, an arbiter
//! verifies the bundle with `tds_provenance::evidence::verify` and the standard object
//! verifier of `tds-objects`: exactly the checks `tds evidence verify` performs.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap or an unexpected result is a failed test"
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
    /// The seed of the log's key (the provider's by default).
    log_seed: [u8; 32],
}

fn world() -> World {
    // The key the evidence_bundle fuzz target trusts.
    let mut authority = Authority::new("Space", SigningKey::from_seed(&[0x42; 32])).unwrap();
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
        log_seed: [1; 32],
    }
}

/// The provider's log with `event`, cosigned for the member; the bundle for `agreement`.
fn bundle(w: &World, events: &[Event], agreement: Hash256) -> Vec<u8> {
    let log = Log::new(MemoryStore::new(), SigningKey::from_seed(&w.log_seed));
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
    // Every published asset goes into the bundle: the verifier decides what belongs.
    let assets: Vec<Hash256> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AssetPublished { asset, .. } => Some(*asset),
            _ => None,
        })
        .collect();
    evidence::export_with_assets(
        &log,
        &agreement,
        &assets,
        &cosigned,
        vec![w.credential.clone()],
    )
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
    // `TDS_WRITE_SEEDS=fuzz/seeds cargo test -p tds-tests --test evidence_flow` writes
    // this bundle as the evidence_bundle fuzz target's seed (the authority key is the one
    // the target trusts).
    if let Some(dir) = std::env::var_os("TDS_WRITE_SEEDS") {
        let dir = std::path::Path::new(&dir).join("evidence_bundle");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("verifies"), &bytes).unwrap();
    }
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
    // An embedded object of another kind than its field holds fails the bundle.
    let concluded = record::agreement_concluded(&a, w.provider.id(), NOW).unwrap();
    let report = |kind: &str| {
        Event::new(
            NOW,
            w.provider.id(),
            EventBody::UsageReported {
                agreement: a.id(),
                report: Hash256::from_bytes([5; 32]),
                object: Some(SignedObject {
                    kind: Code::new(kind).unwrap(),
                    id: Hash256::from_bytes([5; 32]),
                    bytes: vec![1],
                }),
            },
        )
    };
    let err = evidence::verify(
        &bundle(&w, &[concluded.clone(), report("mystery")], a.id()),
        &t,
        &StandardVerifier::with_trust(&t),
    )
    .unwrap_err();
    assert!(
        matches!(&err, EvidenceError::Invalid(Invalid::ObjectKind { expected: "usage-report or usage-record", found, .. }) if found == "mystery"),
        "{err}"
    );
    // The right kind, checked by the standard verifier: bytes that are not a signed
    // usage report fail as that object.
    let err = evidence::verify(
        &bundle(&w, &[concluded.clone(), report("usage-report")], a.id()),
        &t,
        &StandardVerifier::with_trust(&t),
    )
    .unwrap_err();
    match err {
        EvidenceError::Invalid(Invalid::Object { kind, source, .. }) => {
            assert_eq!(kind, "usage-report");
            assert!(
                !source.code.starts_with("evidence.object."),
                "{}",
                source.code
            );
        }
        other => panic!("{other}"),
    }
    // A duty_fulfilled event holds a deletion receipt; any other kind fails the bundle.
    let duty = Event::new(
        NOW,
        w.provider.id(),
        EventBody::DutyFulfilled {
            agreement: a.id(),
            duty: Code::new("delete").unwrap(),
            receipt: Some(SignedObject {
                kind: Code::new("duty-receipt").unwrap(),
                id: Hash256::from_bytes([6; 32]),
                bytes: vec![1],
            }),
        },
    );
    let err = evidence::verify(
        &bundle(&w, &[concluded, duty], a.id()),
        &t,
        &StandardVerifier::with_trust(&t),
    )
    .unwrap_err();
    assert!(
        matches!(&err, EvidenceError::Invalid(Invalid::ObjectKind { expected: "deletion-receipt", found, .. }) if found == "duty-receipt"),
        "{err}"
    );
}

// Regression tests for the review of session 3: objects embedded in an event must be what
// the event's field holds, and the evidence must be a party's.

fn obj(kind: &str, id: Hash256, bytes: Vec<u8>) -> Option<SignedObject> {
    Some(SignedObject {
        kind: Code::new(kind).unwrap(),
        id,
        bytes,
    })
}

/// A manifest signed by `key` over `data`.
fn manifest_by(key: &SigningKey, data: &[u8]) -> (Hash256, Vec<u8>) {
    use std::num::NonZeroUsize;
    use tds_manifest::content::{ChunkSize, ChunkTree, ContentBuilder};
    use tds_manifest::{Classification, Manifest, PersonalInfo, MANIFEST_VERSION};
    let b = ContentBuilder::new(ChunkSize::DEFAULT, NonZeroUsize::MIN);
    let (content, _) = ChunkTree::build(&b, data).unwrap();
    let m = Manifest {
        version: MANIFEST_VERSION,
        title: "Feeder load".into(),
        description: String::new(),
        sector: "power".parse().unwrap(),
        media_type: "text/csv".into(),
        schema: None,
        keywords: vec![],
        owner: tds_identity::ParticipantId::of(&key.public_key()),
        owner_key: key.public_key(),
        created: NOW,
        classification: Classification::General,
        personal: PersonalInfo::None,
        residency: None,
        content,
        lineage: vec![],
        supersedes: None,
        quality: None,
    };
    let bytes = m.sign(key).unwrap();
    let v = tds_manifest::open(&bytes)
        .unwrap()
        .verify_self_signed()
        .unwrap();
    (*v.id().as_hash(), bytes)
}

/// A two-party agreement on `asset`.
fn agreement_on(provider: &SigningKey, consumer: &SigningKey, asset: Hash256) -> Vec<u8> {
    let policy = tds_policy::parse("t", "policy set;\n\npermit use;\n").unwrap();
    let terms = AgreementTerms {
        offer: Hash256::from_bytes([1; 32]),
        request: Hash256::from_bytes([2; 32]),
        asset: asset.to_string().parse().unwrap(),
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

fn refused(w: &World, events: &[Event], agreement: Hash256) -> Invalid {
    let t = trust(w);
    match evidence::verify(
        &bundle(w, events, agreement),
        &t,
        &StandardVerifier::with_trust(&t),
    ) {
        Err(EvidenceError::Invalid(i)) => i,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_asset_publication_must_embed_the_providers_manifest_of_that_asset() {
    let w = world();
    let (real, real_bytes) = manifest_by(&w.provider, b"load data");
    let a = verify_agreement(&agreement_on(&w.provider, &w.consumer, real)).unwrap();
    let concluded = record::agreement_concluded(&a, w.provider.id(), NOW).unwrap();
    // Another manifest (a stranger's) under the agreement's asset id.
    let (other, other_bytes) = manifest_by(&SigningKey::from_seed(&[66; 32]), b"unrelated");
    let published = |object| {
        Event::new(
            NOW,
            w.provider.id(),
            EventBody::AssetPublished {
                asset: real,
                object,
            },
        )
    };
    let i = refused(
        &w,
        &[
            published(obj("manifest", other, other_bytes.clone())),
            concluded.clone(),
        ],
        a.id(),
    );
    assert!(matches!(i, Invalid::ObjectId { .. }), "{i}");
    // The asset's own id, but the manifest is a stranger's: not the asset agreed on.
    let a2 = verify_agreement(&agreement_on(&w.provider, &w.consumer, other)).unwrap();
    let concluded2 = record::agreement_concluded(&a2, w.provider.id(), NOW).unwrap();
    let e = Event::new(
        NOW,
        w.provider.id(),
        EventBody::AssetPublished {
            asset: other,
            object: obj("manifest", other, other_bytes),
        },
    );
    let i = refused(&w, &[e, concluded2], a2.id());
    assert!(matches!(i, Invalid::AssetOwner { .. }), "{i}");
    // The provider's manifest of the asset: fine.
    let t = trust(&w);
    evidence::verify(
        &bundle(
            &w,
            &[published(obj("manifest", real, real_bytes)), concluded],
            a.id(),
        ),
        &t,
        &StandardVerifier::with_trust(&t),
    )
    .unwrap();
}

#[test]
fn receipts_must_be_receipts_and_every_conclusion_embeds_the_agreement() {
    let w = world();
    let a = verify_agreement(&agreement(&w.provider, &w.consumer)).unwrap();
    let concluded = record::agreement_concluded(&a, w.provider.id(), NOW).unwrap();
    // Another agreement (between strangers) as a transfer "receipt".
    let (x, y) = (
        SigningKey::from_seed(&[30; 32]),
        SigningKey::from_seed(&[31; 32]),
    );
    let other = verify_agreement(&agreement(&x, &y)).unwrap();
    let done = Event::new(
        NOW,
        w.provider.id(),
        EventBody::TransferCompleted {
            transfer: Hash256::from_bytes([4; 32]),
            agreement: a.id(),
            root: Hash256::from_bytes([5; 32]),
            bytes: 10,
            receipt: obj("agreement", other.id(), other.envelope().to_vec()),
        },
    );
    let i = refused(&w, &[concluded.clone(), done], a.id());
    assert!(
        matches!(
            i,
            Invalid::ObjectKind {
                expected: "transfer-receipt",
                ..
            }
        ),
        "{i}"
    );
    // A second conclusion naming made-up parties, without the agreement.
    let forged = Event::new(
        NOW,
        w.provider.id(),
        EventBody::AgreementConcluded {
            agreement: a.id(),
            negotiation: Hash256::from_bytes([2; 32]),
            provider: Hash256::from_bytes([0xee; 32]),
            consumer: Hash256::from_bytes([0xef; 32]),
            object: None,
        },
    );
    let i = refused(&w, &[concluded, forged], a.id());
    assert!(matches!(i, Invalid::NotEmbedded { index: 1, .. }), "{i}");
}

#[test]
fn the_log_must_be_a_partys() {
    let mut w = world();
    // A member who is neither party logs the agreement (bytes it obtained elsewhere).
    let stranger = SigningKey::from_seed(&[50; 32]);
    let a = verify_agreement(&agreement(&w.provider, &w.consumer)).unwrap();
    w.credential = w
        .authority
        .admit(
            &Admission {
                subject_key: stranger.public_key(),
                name: "Stranger".into(),
                sectors: vec![Sector::POWER],
                roles: vec![Role::Consumer],
                jurisdiction: "CN".parse().unwrap(),
                not_before: NOW,
                not_after: NOW.saturating_add_millis(DAY_MS),
            },
            NOW,
        )
        .unwrap()
        .into_envelope();
    w.log_seed = [50; 32];
    let e = record::agreement_concluded(&a, stranger.id(), NOW).unwrap();
    let i = refused(&w, &[e], a.id());
    assert!(matches!(i, Invalid::LogNotParty), "{i}");
}
