//! Property tests: events round-trip through canonical CBOR; the file store agrees with
//! the in-memory reference tree on every root and proof.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use std::sync::Arc;

use proptest::prelude::*;
use tds_core::hash::Hash256;
use tds_core::merkle::{self, MemoryTree};
use tds_provenance::event::{Annotation, Code, Event, EventBody, SignedObject};
use tds_provenance::store::{FileStore, LogStore, OpenOptions};
use tds_provenance::SimStorage;

fn hash() -> impl Strategy<Value = Hash256> {
    any::<[u8; 32]>().prop_map(Hash256::from_bytes)
}

fn code() -> impl Strategy<Value = Code> {
    "[a-z0-9_./-]{1,64}".prop_map(|s| Code::new(&s).unwrap())
}

fn object() -> impl Strategy<Value = Option<SignedObject>> {
    proptest::option::of(
        (
            code(),
            hash(),
            proptest::collection::vec(any::<u8>(), 1..200),
        )
            .prop_map(|(kind, id, bytes)| SignedObject { kind, id, bytes }),
    )
}

fn body() -> impl Strategy<Value = EventBody> {
    prop_oneof![
        (hash(), object()).prop_map(|(asset, object)| EventBody::AssetPublished { asset, object }),
        (hash(), hash(), object()).prop_map(|(offer, asset, object)| EventBody::OfferPublished {
            offer,
            asset,
            object
        }),
        (hash(), hash(), hash()).prop_map(|(negotiation, offer, consumer)| {
            EventBody::NegotiationRequested {
                negotiation,
                offer,
                consumer,
            }
        }),
        (hash(), hash(), hash(), hash(), object()).prop_map(
            |(agreement, negotiation, provider, consumer, object)| EventBody::AgreementConcluded {
                agreement,
                negotiation,
                provider,
                consumer,
                object
            }
        ),
        (hash(), code()).prop_map(|(negotiation, reason)| EventBody::NegotiationTerminated {
            negotiation,
            reason
        }),
        (hash(), hash(), hash()).prop_map(|(transfer, agreement, asset)| {
            EventBody::TransferStarted {
                transfer,
                agreement,
                asset,
            }
        }),
        (hash(), hash(), hash(), any::<u64>(), object()).prop_map(
            |(transfer, agreement, root, bytes, receipt)| EventBody::TransferCompleted {
                transfer,
                agreement,
                root,
                bytes,
                receipt
            }
        ),
        (hash(), hash(), code()).prop_map(|(transfer, agreement, reason)| {
            EventBody::TransferFailed {
                transfer,
                agreement,
                reason,
            }
        }),
        (
            hash(),
            hash(),
            proptest::option::of(hash()),
            proptest::collection::vec(code(), 0..5)
        )
            .prop_map(
                |(requester, target, agreement, reasons)| EventBody::AccessDenied {
                    requester,
                    target,
                    agreement,
                    reasons
                }
            ),
        (hash(), hash(), object()).prop_map(|(agreement, report, object)| {
            EventBody::UsageReported {
                agreement,
                report,
                object,
            }
        }),
        (hash(), code(), object()).prop_map(|(agreement, duty, receipt)| {
            EventBody::DutyFulfilled {
                agreement,
                duty,
                receipt,
            }
        }),
        (hash(), code())
            .prop_map(|(agreement, reason)| EventBody::AgreementTerminated { agreement, reason }),
        hash().prop_map(|agreement| EventBody::AgreementExpired { agreement }),
        (hash(), hash())
            .prop_map(|(credential, crl)| EventBody::CredentialRevoked { credential, crl }),
        (hash(), any::<u64>(), hash()).prop_map(|(witness, size, root)| {
            EventBody::CheckpointWitnessed {
                witness,
                size,
                root,
            }
        }),
        (hash(), any::<u64>(), hash(), code()).prop_map(|(log, size, root, reason)| {
            EventBody::CheckpointRefused {
                log,
                size,
                root,
                reason,
            }
        }),
        "[ -~]{1,280}".prop_map(|t| EventBody::Annotation {
            text: Annotation::new(&t).unwrap()
        }),
    ]
}

proptest! {
    #[test]
    fn events_round_trip(time in any::<u64>(), actor in hash(), body in body()) {
        let e = Event::new(tds_core::Timestamp::from_millis(time), actor, body);
        let bytes = e.encode().unwrap();
        let back = Event::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(back.encode().unwrap(), bytes);
        let json = serde_json::to_string(&e).unwrap();
        prop_assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_reference(n in 1u64..300, flush in 1u64..5) {
        let sim = SimStorage::new();
        let s = FileStore::open(Arc::new(sim.clone()), OpenOptions::writer().flush_every(flush * 64)).unwrap();
        let mut tree = MemoryTree::new();
        for i in 0..n {
            let r = i.to_be_bytes();
            s.append(&r).unwrap();
            tree.push(merkle::leaf_hash(&r));
        }
        drop(s);
        let s = FileStore::open(Arc::new(sim), OpenOptions::reader()).unwrap();
        for size in [1, n / 2 + 1, n] {
            prop_assert_eq!(merkle::root(&s, size).unwrap(), merkle::root(&tree, size).unwrap());
            let i = size - 1;
            prop_assert_eq!(merkle::inclusion_proof(&s, i, size).unwrap(), merkle::inclusion_proof(&tree, i, size).unwrap());
            for j in [0, i / 2, i] {
                prop_assert_eq!(s.inclusion_proof(j, size).unwrap(), merkle::inclusion_proof(&tree, j, size).unwrap());
            }
            prop_assert_eq!(merkle::consistency_proof(&s, size, n).unwrap(), merkle::consistency_proof(&tree, size, n).unwrap());
        }
    }
}
