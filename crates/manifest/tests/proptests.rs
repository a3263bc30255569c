//! Properties: for random sizes and chunk sizes, every chunk verifies in any order; any
//! single-byte change is caught at the index of the chunk it sits in; manifests survive a
//! CBOR round trip byte for byte.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

mod common;

use common::*;
use proptest::prelude::*;
use tds_core::cbor;
use tds_core::hash::Hash256;
use tds_manifest::content::{check_data, ChunkError, ChunkSize, ChunkVerifier, DataError};
use tds_manifest::{
    AssetId, Classification, Lineage, Manifest, PersonalInfo, Quality, Relation, UpdateFrequency,
};

fn cases() -> u32 {
    if full_scale() {
        512
    } else {
        48
    }
}

/// A chunk size from 1 byte to 4 KiB (tests only) and a size of up to ~40 chunks.
fn layout() -> impl Strategy<Value = (u32, usize)> {
    (0u32..=12).prop_flat_map(|log| {
        let cs = 1u32 << log;
        (Just(cs), 0usize..=(cs as usize * 40).min(64 * 1024))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn every_chunk_verifies_in_random_order(
        (cs, len) in layout(),
        seed in any::<u64>(),
        threads in 1usize..4,
        order_seed in any::<u64>(),
    ) {
        let cs = ChunkSize::for_tests(cs).unwrap();
        let d = data(len, seed);
        let (c, tree) = tds_manifest::content::ChunkTree::build(&builder(cs, threads), &d[..]).unwrap();
        prop_assert_eq!(c.chunks, (len as u64).div_ceil(cs.get()));
        prop_assert_eq!(builder(cs, 1).build_slice(&d).unwrap(), c);
        let mut order: Vec<u64> = (0..c.chunks).collect();
        // Fisher-Yates with a simple generator seeded by the test case.
        let mut x = order_seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut v = ChunkVerifier::new(&c).unwrap();
        for (n, i) in order.iter().enumerate() {
            if n == order.len() / 2 {
                // Half way, save and resume.
                let bytes = v.state().to_bytes().unwrap();
                let state = tds_manifest::content::VerifierState::from_bytes(&bytes).unwrap();
                v = ChunkVerifier::resume(&c, &state).unwrap();
            }
            let got = v.verify(chunk(&d, &c, *i), &tree.proof(*i).unwrap()).unwrap();
            prop_assert_eq!(got.index(), *i);
        }
        prop_assert!(v.is_complete());
    }

    #[test]
    fn any_single_byte_change_is_caught_at_its_chunk(
        (cs, len) in layout().prop_filter("non-empty", |(_, len)| *len > 0),
        seed in any::<u64>(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let cs = ChunkSize::for_tests(cs).unwrap();
        let d = data(len, seed);
        let (c, tree) = commit(&d, cs);
        let at = at.index(len);
        let index = at as u64 / cs.get();
        let mut bad = d.clone();
        bad[at] ^= xor;
        let mut v = ChunkVerifier::new(&c).unwrap();
        prop_assert_eq!(
            v.verify(chunk(&bad, &c, index), &tree.proof(index).unwrap()).unwrap_err(),
            ChunkError::Mismatch { index }
        );
        let err = check_data(&builder(cs, 2), &bad[..], &c, Some(&tree.to_chunk_list()[..])).unwrap_err();
        prop_assert!(matches!(err, DataError::Chunk { index: i } if i == index), "{}", err);
    }

    #[test]
    fn manifest_cbor_round_trip(
        title in "[a-zA-Z0-9 ,.-]{0,40}",
        description in "\\PC{0,80}",
        keywords in prop::collection::btree_set("[a-z]{1,12}", 0..6),
        size in 0u64..(1 << 40),
        chunk_log in 16u32..=24,
        classification in prop_oneof![Just(Classification::General), Just(Classification::Important), Just(Classification::Core)],
        personal in prop_oneof![Just(PersonalInfo::None), Just(PersonalInfo::Personal), Just(PersonalInfo::Sensitive)],
        relation in prop_oneof![Just(Relation::Derived), Just(Relation::Aggregated), Just(Relation::Anonymized)],
        lineage_n in 0usize..3,
        completeness in prop::option::of(0u16..=10_000),
        created in any::<u64>(),
        root in any::<[u8; 32]>(),
    ) {
        let title = format!("t{}", title.trim());
        let cs = ChunkSize::new(1 << chunk_log).unwrap();
        let content = tds_manifest::Commitment::new(
            size,
            cs,
            if size == 0 { Hash256::sha256(b"") } else { Hash256::from_bytes(root) },
        ).unwrap();
        let mut m = manifest_for(content, &owner());
        m.title = title;
        m.description = description;
        m.keywords = keywords.into_iter().collect();
        m.classification = classification;
        m.personal = personal;
        m.created = tds_core::Timestamp::from_millis(created);
        m.lineage = (0..lineage_n).map(|i| Lineage {
            asset: AssetId::from_hash(Hash256::sha256(&[i as u8])),
            relation,
            agreement: (i % 2 == 0).then(|| Hash256::sha256(b"agreement")),
        }).collect();
        m.quality = completeness.map(|c| Quality { completeness: Some(c), update_frequency: Some(UpdateFrequency::Weekly) });
        let bytes = cbor::encode(&m).unwrap();
        let back: Manifest = cbor::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(cbor::encode(&back).unwrap(), bytes);
        let env = m.sign(&owner()).unwrap();
        let v = tds_manifest::open(&env).unwrap().verify(&owner().public_key()).unwrap();
        prop_assert_eq!(v.manifest(), &m);
        prop_assert_eq!(v.id(), m.asset_id().unwrap());
    }
}
