//! Authority messages (`tds-authority/1`): `Request::decode` and `Reply::decode` (strict
//! canonical CBOR, then the format's limits) never panic; an accepted message has a known
//! name, passes its checks and encodes back to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_authority::message::{Reply, Request};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        assert!(["revocation_list", "publish", "search", "cosign"].contains(&r.name()));
        r.check().expect("a decoded request passes its checks");
        assert_eq!(r.encode().expect("a decoded request encodes"), data);
    }
    if let Ok(r) = Reply::decode(data) {
        assert!(["revocation_list", "published", "page", "cosigned", "error"].contains(&r.name()));
        r.check().expect("a decoded reply passes its checks");
        assert_eq!(r.encode().expect("a decoded reply encodes"), data);
    }
});
