//! Proof JSON: the bounded parsers never panic, and a proof that verifies really leads
//! to its root (checked against an independent recomputation).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::merkle;
use tds_provenance::{ConsistencyProof, InclusionProof};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = InclusionProof::from_json(data) {
        if p.verify(&p.root).is_ok() {
            let r = merkle::root_from_inclusion_proof(&p.leaf_hash, p.index, p.tree_size, &p.proof)
                .expect("a verified proof has a root");
            assert_eq!(r, p.root);
        }
        let back = serde_json::to_vec(&p).unwrap();
        assert_eq!(InclusionProof::from_json(&back).unwrap(), p);
    }
    if let Ok(p) = ConsistencyProof::from_json(data) {
        if p.verify(&p.root1, &p.root2).is_ok() {
            assert!(p.size1 <= p.size2);
        }
        let back = serde_json::to_vec(&p).unwrap();
        assert_eq!(ConsistencyProof::from_json(&back).unwrap(), p);
    }
});
