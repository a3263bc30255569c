//! Contract objects: offers, requests, agreements (COSE_Sign, two signers) and
//! termination notices never panic the verifiers, and whatever verifies is signed by
//! the keys the object names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::cose;
use tds_policy::contract::{self, AgreementTerms, ContractRequest, Offer, Termination};

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = contract::verify_offer(data) {
        assert_eq!(o.envelope(), data);
        assert_eq!(o.offer().provider, o.offer().provider_key.id());
        assert_eq!(
            o.id(),
            tds_core::Domain::OFFER.hash(&tds_core::cbor::encode(o.offer()).expect("encodes"))
        );
        o.offer()
            .policy
            .validate()
            .expect("a verified offer holds a valid policy");
    }
    if let Ok(a) = contract::verify_agreement(data) {
        let t = a.terms();
        assert_eq!(t.provider, t.provider_key.id());
        assert_eq!(t.consumer, t.consumer_key.id());
        assert_ne!(t.provider, t.consumer);
        assert_eq!(a.id(), t.id().expect("terms encode"));
        assert_eq!(a.envelope(), data);
    }
    if let Ok(u) = cose::open_multi::<AgreementTerms>(data) {
        assert_eq!(
            tds_core::cbor::encode(u.value()).ok().as_deref(),
            Some(u.payload())
        );
    }
    let _ = cose::open::<ContractRequest>(data);
    let _ = cose::open::<Termination>(data);
    let _ = cose::open::<Offer>(data);
});
