//! Shared helpers for the integration tests.
#![expect(
    dead_code,
    reason = "shared by several test binaries; each uses a part"
)]

use std::num::NonZeroUsize;

use tds_core::{SigningKey, Timestamp};
use tds_identity::ParticipantId;
use tds_manifest::content::{ChunkSize, ChunkTree, ContentBuilder};
use tds_manifest::{Classification, Commitment, Manifest, PersonalInfo, MANIFEST_VERSION};

/// `TDS_TEST_SCALE=full` runs the heavy variants.
pub fn full_scale() -> bool {
    std::env::var("TDS_TEST_SCALE").is_ok_and(|v| v == "full")
}

pub fn owner() -> SigningKey {
    SigningKey::from_seed(&[1; 32])
}

pub fn other_key() -> SigningKey {
    SigningKey::from_seed(&[2; 32])
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn builder(cs: ChunkSize, threads: usize) -> ContentBuilder<'static> {
    ContentBuilder::new(cs, NonZeroUsize::new(threads).unwrap())
}

pub fn commit(data: &[u8], cs: ChunkSize) -> (Commitment, ChunkTree) {
    ChunkTree::build(&builder(cs, 2), data).unwrap()
}

pub fn manifest_for(content: Commitment, key: &SigningKey) -> Manifest {
    Manifest {
        version: MANIFEST_VERSION,
        title: "Feeder load, 15-minute".into(),
        description: "Load per feeder in Taiyuan, 2027".into(),
        sector: "power".parse().unwrap(),
        media_type: "text/csv".into(),
        schema: Some("https://schemas.example.invalid/feeder-load/v1".into()),
        keywords: vec!["load".into(), "feeder".into()],
        owner: ParticipantId::of(&key.public_key()),
        owner_key: key.public_key(),
        created: Timestamp::from_secs(1_800_000_000),
        classification: Classification::Important,
        personal: PersonalInfo::None,
        residency: Some("CN-SX".parse().unwrap()),
        content,
        lineage: vec![],
        supersedes: None,
        quality: None,
    }
}

/// Chunk `index` of `data` under `c`.
pub fn chunk<'a>(data: &'a [u8], c: &Commitment, index: u64) -> &'a [u8] {
    let start = c.chunk_offset(index) as usize;
    let len = c.chunk_len(index).unwrap() as usize;
    &data[start..start + len]
}
