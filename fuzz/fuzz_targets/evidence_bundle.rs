//! Evidence bundles: the strict decoder and the offline verifier (with the standard object
//! verifier of `tds-objects`) never panic, a decoded bundle re-encodes to exactly the
//! input, and a bundle that verifies names only events whose proofs lead to its
//! checkpoint and is concluded by an `agreement_concluded` event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::key::SigningKey;
use tds_identity::TrustStore;
use tds_provenance::evidence::{self, Bundle};

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Bundle::decode(data) {
        assert_eq!(b.encode().expect("a decoded bundle encodes"), data);
    }
    static TRUST: std::sync::OnceLock<TrustStore> = std::sync::OnceLock::new();
    let trust = TRUST.get_or_init(|| {
        let mut t = TrustStore::new();
        t.add_authority(SigningKey::from_seed(&[0x42; 32]).public_key());
        t.dangerous().accept_missing_revocation_lists();
        t
    });
    let objects = tds_objects::StandardVerifier::with_trust(trust);
    if let Ok(s) = evidence::verify(data, trust, &objects) {
        assert!(s.events().iter().all(|(i, _)| *i < s.tree_size()));
        assert!(s.events().iter().any(|(_, k)| k == "agreement_concluded"));
    }
});
