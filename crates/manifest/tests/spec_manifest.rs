//! `spec/manifest.md` against the code: every `worked-example:NAME` block is recomputed
//! here and must match. `TDS_SPEC_BLESS=1 cargo test -p tds-manifest --test spec_manifest`
//! rewrites them from the code (then review the diff like any wire-format change).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use tds_core::cbor;
use tds_core::merkle;
use tds_core::{SigningKey, Timestamp};
use tds_identity::{Admission, Authority, ParticipantId, Role, Sector};
use tds_manifest::content::{ChunkSize, ChunkTree, ChunkVerifier, ContentBuilder};
use tds_manifest::{
    AssetId, Catalog, CatalogEntry, Classification, Lineage, Manifest, PersonalInfo, Quality,
    Relation, UpdateFrequency, MANIFEST_VERSION,
};
use tds_spec::annotate::{annotate, hex_lines};
use tds_spec::markdown::{fenced_blocks, replace_blocks, WORKED_EXAMPLE};

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../spec/manifest.md")
}

/// The example asset: 2 × 64 KiB + 1000 bytes, byte `i` = `i mod 251`: three chunks.
fn example_data() -> Vec<u8> {
    (0..(2 * 65536 + 1000))
        .map(|i: u32| (i % 251) as u8)
        .collect()
}

/// Every worked-example value, by block name.
fn values() -> BTreeMap<&'static str, String> {
    let mut v = BTreeMap::new();
    let owner = SigningKey::from_seed(&[0x01; 32]);
    let data = example_data();
    let builder = ContentBuilder::new(ChunkSize::MIN, NonZeroUsize::MIN);
    let (content, tree) = ChunkTree::build(&builder, &data[..]).unwrap();

    let leaves: Vec<_> = (0..3).map(|i| tree.leaf(i).unwrap()).collect();
    let n01 = merkle::node_hash(&leaves[0], &leaves[1]);
    v.insert(
        "manifest-tree",
        format!(
            "data    = {} bytes, byte i = i mod 251; chunk size 65536 -> 3 chunks\n\
             leaf 0  = SHA-256(00 || bytes 0..65536)       = {}\n\
             leaf 1  = SHA-256(00 || bytes 65536..131072)  = {}\n\
             leaf 2  = SHA-256(00 || bytes 131072..132072) = {}\n\
             node 01 = SHA-256(01 || leaf 0 || leaf 1)     = {}\n\
             root    = SHA-256(01 || node 01 || leaf 2)    = {}\n",
            data.len(),
            leaves[0].to_hex(),
            leaves[1].to_hex(),
            leaves[2].to_hex(),
            n01.to_hex(),
            content.root.to_hex(),
        ),
    );
    assert_eq!(merkle::node_hash(&n01, &leaves[2]), content.root);

    let source = AssetId::from_hash(tds_core::hash::Domain::MANIFEST.hash(b"source"));
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        title: "Feeder load".into(),
        description: "15-minute load per feeder".into(),
        sector: Sector::POWER,
        media_type: "text/csv".into(),
        schema: None,
        keywords: vec!["load".into()],
        owner: ParticipantId::of(&owner.public_key()),
        owner_key: owner.public_key(),
        created: Timestamp::from_millis(1_800_000_000_000),
        classification: Classification::Important,
        personal: PersonalInfo::None,
        residency: Some("CN-SX".parse().unwrap()),
        content,
        lineage: vec![Lineage {
            asset: source,
            relation: Relation::Aggregated,
            agreement: None,
        }],
        supersedes: None,
        quality: Some(Quality {
            completeness: Some(9_950),
            update_frequency: Some(UpdateFrequency::Daily),
        }),
    };
    let payload = manifest.to_canonical().unwrap();
    v.insert("manifest-payload", annotate(&payload).unwrap());
    let id = manifest.asset_id().unwrap();
    v.insert("manifest-id", format!("{id}\n"));
    let envelope = manifest.sign(&owner).unwrap();
    v.insert("manifest-envelope", hex_lines(&envelope));
    let verified = tds_manifest::open(&envelope)
        .unwrap()
        .verify(&owner.public_key())
        .unwrap();
    assert_eq!(verified.id(), id);

    // The chunk tree file of the example (§3.4): header, three leaves, node 01.
    let tree_file = tds_manifest::content::write_tree_from_list(
        &tree.to_chunk_list()[..],
        &content,
        Vec::new(),
    )
    .unwrap();
    assert_eq!(tree_file.len(), 64 + 4 * 32);
    assert_eq!(&tree_file[64 + 3 * 32..], n01.as_bytes());
    tds_manifest::content::ChunkTreeFile::open_for(&tree_file[..], &content)
        .unwrap()
        .check()
        .unwrap();
    v.insert("chunk-tree-file", hex_lines(&tree_file));

    let proof = tree.proof(0).unwrap();
    v.insert("chunk-proof", annotate(&proof.to_bytes().unwrap()).unwrap());
    let mut verifier = ChunkVerifier::new(&content).unwrap();
    verifier
        .verify(&data[..65536], &proof)
        .expect("chunk 0 verifies");
    verifier
        .verify(&data[131072..], &tree.proof(2).unwrap())
        .expect("chunk 2 verifies");
    v.insert(
        "verifier-state",
        annotate(&verifier.state().to_bytes().unwrap()).unwrap(),
    );

    let mut authority = Authority::new(
        "Shanxi Energy Data Space",
        SigningKey::from_seed(&[0x09; 32]),
    )
    .unwrap();
    let now = Timestamp::from_millis(1_800_000_060_000);
    let cred = authority
        .admit(
            &Admission {
                subject_key: owner.public_key(),
                name: "Taiyuan Grid".into(),
                sectors: vec![Sector::POWER],
                roles: vec![Role::Provider],
                jurisdiction: "CN-SX".parse().unwrap(),
                not_before: Timestamp::from_millis(1_790_000_000_000),
                not_after: Timestamp::from_millis(1_830_000_000_000),
            },
            Timestamp::from_millis(1_790_000_000_000),
        )
        .unwrap();
    let cred = authority
        .trust_store()
        .verify(cred.envelope(), now)
        .unwrap();
    let (receipt, receipt_env) =
        tds_manifest::register(&authority, verified.as_self_signed(), &cred, now).unwrap();
    v.insert(
        "receipt-payload",
        annotate(&cbor::encode(&receipt).unwrap()).unwrap(),
    );
    tds_manifest::verify_receipt(&receipt_env, &authority.public_key()).unwrap();

    let catalog = Catalog {
        title: "Shanxi grid data".into(),
        entries: vec![CatalogEntry {
            manifest: verified.into_self_signed(),
            offers: vec![],
        }],
    };
    v.insert(
        "dcat",
        format!(
            "{}\n",
            serde_json::to_string_pretty(&catalog.to_dcat()).unwrap()
        ),
    );
    v
}

#[test]
fn worked_examples_match_the_code() {
    let path = doc_path();
    let doc = std::fs::read_to_string(&path).unwrap();
    let values = values();
    if std::env::var_os("TDS_SPEC_BLESS").is_some_and(|v| v != "0" && !v.is_empty()) {
        let new = replace_blocks(&doc, |b| {
            Ok(b.worked_example()
                .and_then(|name| values.get(name))
                .cloned())
        })
        .unwrap();
        std::fs::write(&path, new).unwrap();
        return;
    }
    let mut seen = Vec::new();
    for block in fenced_blocks(&doc).unwrap() {
        let Some(name) = block.worked_example() else {
            continue;
        };
        let want = values
            .get(name)
            .unwrap_or_else(|| panic!("line {}: unknown {WORKED_EXAMPLE}{name}", block.line));
        assert_eq!(
            block.body.trim(),
            want.trim(),
            "spec/manifest.md line {}: {name} differs from the code (TDS_SPEC_BLESS=1 rewrites it)",
            block.line
        );
        seen.push(name.to_string());
    }
    for name in values.keys() {
        assert!(
            seen.iter().any(|s| s == name),
            "spec/manifest.md has no block {WORKED_EXAMPLE}{name}"
        );
    }
}
