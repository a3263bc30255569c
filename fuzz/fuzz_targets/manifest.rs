//! Manifests and registration receipts: decoding never panics, what decodes re-encodes to
//! the same bytes, and what verifies is exactly what was given, under the key it names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::cbor;
use tds_core::hash::Domain;
use tds_core::key::PublicKey;
use tds_manifest::{Manifest, Receipt};

fn authority_key() -> &'static PublicKey {
    static KEY: std::sync::OnceLock<PublicKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| tds_fuzz::key().public_key())
}

fuzz_target!(|data: &[u8]| {
    // The envelope path: open, then verify with the key the manifest names.
    if let Ok(unverified) = tds_manifest::open(data) {
        let m = unverified.manifest().clone();
        m.check()
            .expect("open accepted a manifest that breaks a field rule");
        let id = unverified.id();
        assert_eq!(
            m.asset_id().ok(),
            Some(id),
            "the id is not the hash of the payload"
        );
        if let Ok(v) = unverified.verify_self_signed() {
            assert_eq!(v.envelope(), data);
            assert_eq!(v.manifest(), &m);
            assert_eq!(
                id,
                tds_manifest::AssetId::from_hash(Domain::MANIFEST.hash(v.as_verified().payload()))
            );
            assert_eq!(
                v.as_verified().signer(),
                &m.owner_key,
                "verified under a key the manifest does not name"
            );
            assert_eq!(v.to_json()["owner_authenticated"], false);
            // The key it names authenticates it; another key does not.
            let named = m.owner_key;
            assert!(v.clone().authenticate(authority_key()).is_err() || named == *authority_key());
            assert!(v.authenticate(&named).is_ok());
        }
    }
    // The bare payload: canonical round trip.
    if let Ok(m) = cbor::decode::<Manifest>(data) {
        assert_eq!(
            cbor::encode(&m).expect("a decoded manifest must encode"),
            data
        );
        let _ = m.check();
    }
    // Receipts, verified with a fixed authority key.
    if let Ok(r) = tds_manifest::verify_receipt(data, authority_key()) {
        assert_eq!(r.envelope(), data);
        assert!(r.receipt().authority.is_id_of(authority_key()));
        assert!(r.owner.is_id_of(&r.owner_key));
    }
    if let Ok(r) = cbor::decode::<Receipt>(data) {
        assert_eq!(
            cbor::encode(&r).expect("a decoded receipt must encode"),
            data
        );
    }
});
