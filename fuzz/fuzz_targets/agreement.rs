//! Contract objects: offers, requests, agreements (COSE_Sign, two signers) and
//! termination notices never panic the verifiers, and whatever verifies is signed by
//! the keys the object names (an agreement by the provider first); a verified
//! agreement's compiled decisions agree with the reference interpreter.
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
        assert_eq!(o.policy().policy(), &o.offer().policy);
    }
    if let Ok(a) = contract::verify_agreement(data) {
        let t = a.terms();
        assert_eq!(t.provider, t.provider_key.id());
        assert_eq!(t.consumer, t.consumer_key.id());
        assert_ne!(t.provider, t.consumer);
        assert_eq!(a.id(), t.id().expect("terms encode"));
        assert_eq!(a.envelope(), data);
        assert_eq!(a.policy().policy(), &t.policy);
        assert_eq!(a.offer_policy().policy(), &t.offer_policy);
        for action in tds_policy::Action::ALL {
            let mut r = tds_policy::Request::new(*action);
            r.purpose = "grid/planning".parse().ok();
            r.uses = Some(3);
            let fast = a.decide(&r);
            let reference = a.explain(&r);
            assert_eq!(fast.effect, reference.effect);
            assert_eq!(fast.duties, reference.duties);
        }
    }
    if let Ok(u) = cose::open_multi::<AgreementTerms>(data) {
        // An agreement that verifies was signed by the provider first.
        if contract::verify_agreement(data).is_ok() {
            assert_eq!(u.kids(), [u.value().provider, u.value().consumer]);
        }
        assert_eq!(
            tds_core::cbor::encode(u.value()).ok().as_deref(),
            Some(u.payload())
        );
    }
    let _ = cose::open::<ContractRequest>(data);
    let _ = cose::open::<Termination>(data);
    let _ = cose::open::<Offer>(data);
});
