//! Public-data licences: opening never panics, an accepted licence re-encodes to the
//! signed bytes, verification accepts only licences the trusted authority signed, and
//! an offer passes the chain check only when the licence names its provider, is valid,
//! outlasts the offer and contains its policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::cose::{self, CoseSign1};
use tds_core::{cbor, Domain};
use tds_fuzz::licence::{offer, NOW};
use tds_policy::contain::{contains, Containment};
use tds_policy::licence::{self, Licence};

fuzz_target!(|data: &[u8]| {
    let authority = tds_fuzz::key().public_key();
    let opened = cose::open::<Licence>(data).ok();
    if let Some(opened) = &opened {
        assert_eq!(
            cbor::encode(opened.value()).ok().as_deref(),
            Some(opened.payload()),
            "re-encoding differs"
        );
        let raw = CoseSign1::from_slice(data).expect("open accepted what the raw parser refuses");
        assert_eq!(raw.to_vec().expect("serializes"), data);
    }
    if let Ok(l) = cbor::decode::<Licence>(data) {
        assert_eq!(cbor::encode(&l).expect("a decoded licence encodes"), data);
    }
    let Ok(verified) = licence::verify(data, |k| *k == authority) else {
        return;
    };
    let opened = opened.expect("verify accepted what open refuses");
    assert_eq!(verified.envelope(), data);
    assert_eq!(verified.licence(), opened.value());
    assert_eq!(verified.id(), Domain::LICENCE.hash(opened.payload()));
    assert_eq!(verified.licence().authority_key, authority);
    let o = offer(data);
    if verified.check_offer(&o, NOW).is_ok() {
        let l = verified.licence();
        assert_eq!(
            l.licensee, o.provider,
            "accepted an offer by another provider"
        );
        assert!(
            l.not_before <= NOW && NOW <= l.not_after,
            "accepted outside validity"
        );
        assert!(
            o.not_after <= l.not_after,
            "accepted an offer outliving its licence"
        );
        assert!(
            matches!(contains(&l.policy, &o.policy), Ok(Containment::Contained)),
            "accepted an offer its licence does not contain"
        );
        let chained = licence::check_offer_chain(&o, |k| *k == authority, NOW);
        assert!(matches!(chained, Ok(Some(_))), "the chain check disagrees");
    }
});
