//! Evidence bundles: the strict decoder and the offline verifier never panic, a decoded
//! bundle re-encodes to exactly the input, and a bundle that verifies names only events
//! whose proofs lead to its checkpoint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::key::SigningKey;
use tds_provenance::evidence::{self, Bundle};

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Bundle::decode(data) {
        assert_eq!(b.encode().expect("a decoded bundle encodes"), data);
    }
    static KEY: std::sync::OnceLock<tds_core::key::PublicKey> = std::sync::OnceLock::new();
    let authority = KEY.get_or_init(|| SigningKey::from_seed(&[0x42; 32]).public_key());
    if let Ok(s) = evidence::verify(data, authority) {
        assert!(s.events.iter().all(|(i, _)| *i < s.tree_size));
        assert!(s.events.iter().any(|(_, k)| k == "agreement_concluded"));
    }
});
