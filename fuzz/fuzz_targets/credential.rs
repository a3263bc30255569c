//! Membership credentials: opening never panics, an accepted credential re-encodes to the
//! signed bytes, and the trust store accepts only what the decoder accepts, signed by the
//! trusted authority, in its validity window and not revoked.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tds_core::cose::{self, CoseSign1};
use tds_core::{cbor, Domain};
use tds_fuzz::identity::{Fixture, NOW, REVOKED_SERIAL};
use tds_identity::{Credential, RevocationList};

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(tds_fuzz::identity::fixture)
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let opened = cose::open::<Credential>(data).ok();
    if let Some(opened) = &opened {
        let c = opened.value();
        assert_eq!(
            cbor::encode(c).ok().as_deref(),
            Some(opened.payload()),
            "re-encoding differs"
        );
        let raw = CoseSign1::from_slice(data).expect("open accepted what the raw parser refuses");
        assert_eq!(raw.to_vec().expect("serializes"), data);
        assert!(c.issuer().is_id_of(c.issuer_key()));
        assert!(c.subject().is_id_of(c.subject_key()));
        assert!(c.not_before() < c.not_after());
    }
    if let Ok(c) = cbor::decode::<Credential>(data) {
        assert_eq!(
            cbor::encode(&c).expect("a decoded credential encodes"),
            data
        );
    }
    if let Ok(verified) = f.store.verify(data, NOW) {
        let opened = opened.expect("the trust store accepted what open refuses");
        let c = verified.credential();
        assert_eq!(verified.envelope(), data);
        assert_eq!(c, opened.value());
        assert_eq!(verified.id(), Domain::CREDENTIAL.hash(opened.payload()));
        assert_eq!(
            c.issuer(),
            f.authority,
            "accepted a credential of another issuer"
        );
        assert!(
            c.is_valid_at(NOW),
            "accepted a credential outside its validity window"
        );
        assert_ne!(c.serial(), REVOKED_SERIAL, "accepted a revoked credential");
    }
    // Revocation lists travel with credentials; one the store takes must open as a list.
    let mut store = f.store.clone();
    if store.add_revocation_list(data, NOW).is_ok() {
        let list = cose::open::<RevocationList>(data).expect("the store took what open refuses");
        assert_eq!(list.value().issuer(), f.authority);
    }
});
