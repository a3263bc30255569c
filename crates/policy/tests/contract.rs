//! Offers, requests and agreements.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use tds_core::{cose, SigningKey, Timestamp};
use tds_policy::contract::*;
use tds_policy::{parse, Policy};

const T0: u64 = 1_800_000_000_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

fn offer_policy() -> Policy {
    parse("o", "policy offer target \"urn:asset:1\"; permit use when purpose isA grid and count lteq 100 duty attribute(\"SGCC\"); prohibit distribute;").unwrap()
}

fn offer(provider: &SigningKey) -> Offer {
    Offer {
        asset: "urn:asset:1".parse().unwrap(),
        provider: provider.id(),
        provider_key: provider.public_key(),
        policy: offer_policy(),
        price: Some(Price {
            amount: "12.5".parse().unwrap(),
            currency: "CNY".parse().unwrap(),
        }),
        not_before: Timestamp::from_millis(T0),
        not_after: Timestamp::from_millis(T0 + 30 * 86_400_000),
    }
}

fn request(
    consumer: &SigningKey,
    offer: &VerifiedOffer,
    policy: Policy,
    nonce: u8,
    time: u64,
) -> Vec<u8> {
    create_request(
        consumer,
        &ContractRequest {
            offer: offer.id(),
            consumer: consumer.id(),
            consumer_key: consumer.public_key(),
            policy,
            purpose: "grid/planning".parse().unwrap(),
            nonce: serde_bytes::ByteArray::new([nonce; 16]),
            time: Timestamp::from_millis(time),
        },
    )
    .unwrap()
}

#[test]
fn full_flow_gives_an_agreement_both_parties_signed() {
    let (p, c) = (key(1), key(2));
    let o = verify_offer(&create_offer(&p, &offer(&p)).unwrap()).unwrap();
    let asked = narrow_to_purpose(&o.offer().policy, &"grid/planning".parse().unwrap());
    let now = Timestamp::from_millis(T0 + 1000);
    let req = request(&c, &o, asked, 1, T0 + 500);
    let mut nonces = MemoryNonceStore::new();
    let vr = verify_request(&req, &o, now, &mut nonces).unwrap();
    let half = accept(&p, &o, &vr, now).unwrap();
    // The half-signed terms are not an agreement yet.
    assert!(verify_agreement(&half).is_err());
    let full = countersign(&c, &half).unwrap();
    let a = verify_agreement(&full).unwrap();
    assert_eq!(a.terms().provider, p.id());
    assert_eq!(a.terms().consumer, c.id());
    assert_eq!(a.id(), a.terms().id().unwrap());
    // Either party may terminate; a stranger may not.
    let t = terminate(&c, &a, now, Some("done".parse().unwrap())).unwrap();
    assert_eq!(verify_termination(&t, &a).unwrap().party, c.id());
    assert!(terminate(&key(9), &a, now, None).is_err());
    // The agreement evaluates requests under both policies.
    let mut r = tds_policy::Request::new(tds_policy::Action::Read);
    r.purpose = Some("grid/planning/load".parse().unwrap());
    r.uses = Some(3);
    assert_eq!(a.terms().evaluate(&r).effect, tds_policy::Effect::Permit);
    r.purpose = Some("grid/operations".parse().unwrap());
    assert_eq!(a.terms().evaluate(&r).effect, tds_policy::Effect::Deny);
}

#[test]
fn validation_refuses_bad_requests() {
    let (p, c) = (key(1), key(2));
    let o = verify_offer(&create_offer(&p, &offer(&p)).unwrap()).unwrap();
    let now = Timestamp::from_millis(T0 + 1000);
    let mut nonces = MemoryNonceStore::new();
    // Not contained: asks for distribute.
    let wide = parse("w", "permit use; permit distribute;").unwrap();
    let e = verify_request(&request(&c, &o, wide, 1, T0), &o, now, &mut nonces).unwrap_err();
    assert!(matches!(e, ContractError::NotContained(_)), "{e}");
    assert!(e.to_string().contains("\"action\""), "{e}");
    // Expired offer.
    let narrow = narrow_to_purpose(&o.offer().policy, &"grid".parse().unwrap());
    let late = Timestamp::from_millis(T0 + 31 * 86_400_000);
    let e = verify_request(
        &request(&c, &o, narrow.clone(), 2, late.as_millis()),
        &o,
        late,
        &mut nonces,
    )
    .unwrap_err();
    assert!(matches!(e, ContractError::OfferNotValid { .. }), "{e}");
    // Reused nonce.
    let r = request(&c, &o, narrow.clone(), 3, T0);
    verify_request(&r, &o, now, &mut nonces).unwrap();
    let e = verify_request(&r, &o, now, &mut nonces).unwrap_err();
    assert!(matches!(e, ContractError::NonceReused), "{e}");
    // Stale request.
    let e = verify_request(
        &request(&c, &o, narrow.clone(), 4, T0 - 2 * 86_400_000),
        &o,
        now,
        &mut nonces,
    )
    .unwrap_err();
    assert!(matches!(e, ContractError::StaleRequest { .. }), "{e}");
    // A request naming the consumer but signed by another key.
    let forged = cose::sign(
        &key(3),
        &ContractRequest {
            offer: o.id(),
            consumer: c.id(),
            consumer_key: c.public_key(),
            policy: narrow.clone(),
            purpose: "grid".parse().unwrap(),
            nonce: serde_bytes::ByteArray::new([5; 16]),
            time: Timestamp::from_millis(T0),
        },
    )
    .unwrap();
    assert!(verify_request(&forged, &o, now, &mut nonces).is_err());
    // A request naming the consumer with the signer's key.
    let forged = cose::sign(
        &key(3),
        &ContractRequest {
            offer: o.id(),
            consumer: c.id(),
            consumer_key: key(3).public_key(),
            policy: narrow,
            purpose: "grid".parse().unwrap(),
            nonce: serde_bytes::ByteArray::new([6; 16]),
            time: Timestamp::from_millis(T0),
        },
    )
    .unwrap();
    let e = verify_request(&forged, &o, now, &mut nonces).unwrap_err();
    assert!(matches!(e, ContractError::WrongSigner { .. }), "{e}");
}

#[test]
fn offers_signed_by_another_key_are_refused() {
    let p = key(1);
    let forged = cose::sign(&key(4), &offer(&p)).unwrap();
    assert!(verify_offer(&forged).is_err());
    assert!(create_offer(&key(4), &offer(&p)).is_err());
}

#[test]
fn countersign_by_a_stranger_is_refused() {
    let (p, c) = (key(1), key(2));
    let o = verify_offer(&create_offer(&p, &offer(&p)).unwrap()).unwrap();
    let now = Timestamp::from_millis(T0 + 1000);
    let asked = narrow_to_purpose(&o.offer().policy, &"grid".parse().unwrap());
    let vr = verify_request(&request(&c, &o, asked, 1, T0), &o, now, &mut NoNonceStore).unwrap();
    let half = accept(&p, &o, &vr, now).unwrap();
    assert!(countersign(&key(7), &half).is_err());
    // Provider signing twice does not make an agreement.
    assert!(cose::add_signature::<AgreementTerms>(&half, &p).is_err());
}
