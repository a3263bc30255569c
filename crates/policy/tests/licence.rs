//! Public-data licences: issue, verify, and the chain authority -> licence -> offer.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use proptest::prelude::*;
use tds_core::{ErrorCode, PublicKey, SigningKey, Timestamp};
use tds_policy::contract::{create_offer, verify_offer, Offer};
use tds_policy::licence::{self, Licence, LicenceError, MAX_LICENCE_LEN};
use tds_policy::parse;

const T0: u64 = 1_800_000_000_000;
const DAY: u64 = 86_400_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

fn authority() -> SigningKey {
    key(200)
}

fn operator() -> SigningKey {
    key(7)
}

fn licence_of(operator: &SigningKey, days: u64) -> Licence {
    let a = authority();
    Licence {
        resource: "public:meteorological-observations".parse().unwrap(),
        authority: a.id(),
        authority_key: a.public_key(),
        licensee: operator.id(),
        policy: parse(
            "licence",
            "policy set;\n\npermit use\n  when purpose isA research or purpose isA public-service;\n\nprohibit sell;\n",
        )
        .unwrap(),
        not_before: Timestamp::from_millis(T0),
        not_after: Timestamp::from_millis(T0 + days * DAY),
    }
}

fn offer_of(provider: &SigningKey, policy: &str, days: u64, licence: &[u8]) -> Offer {
    Offer {
        asset: "urn:asset:obs".parse().unwrap(),
        provider: provider.id(),
        provider_key: provider.public_key(),
        policy: parse("offer", policy).unwrap(),
        price: None,
        not_before: Timestamp::from_millis(T0),
        not_after: Timestamp::from_millis(T0 + days * DAY),
        licence: Some(licence.to_vec()),
    }
}

fn trusted(key: &PublicKey) -> bool {
    *key == authority().public_key()
}

const WITHIN: &str = "policy set;\n\npermit use\n  when purpose isA research;\n";
const NOW: Timestamp = Timestamp::from_millis(T0 + DAY);

#[test]
fn an_offer_within_its_licence_checks_and_survives_signing() {
    let op = operator();
    let signed = licence::issue(&authority(), &licence_of(&op, 365)).unwrap();
    let offer = offer_of(&op, WITHIN, 30, &signed);
    // Signed and verified, the offer still carries the licence, and the chain holds.
    let v = verify_offer(&create_offer(&op, &offer).unwrap()).unwrap();
    assert_eq!(v.offer(), &offer);
    let l = licence::check_offer_chain(v.offer(), trusted, NOW)
        .unwrap()
        .unwrap();
    assert_eq!(l.licence().licensee, op.id());
    assert_eq!(l.id(), l.licence().id().unwrap());
    // An offer without a licence has no chain to check.
    let mut plain = offer.clone();
    plain.licence = None;
    assert!(licence::check_offer_chain(&plain, trusted, NOW)
        .unwrap()
        .is_none());
}

#[test]
fn offers_beyond_their_licence_are_refused_each_with_its_code() {
    let op = operator();
    let signed = licence::issue(&authority(), &licence_of(&op, 365)).unwrap();
    let check = |offer: &Offer, now| {
        licence::check_offer_chain(offer, trusted, now)
            .unwrap_err()
            .code()
    };
    // A use the licence does not permit.
    let outside = offer_of(
        &op,
        "policy set;\n\npermit use\n  when purpose isA marketing;\n",
        30,
        &signed,
    );
    let e = licence::check_offer_chain(&outside, trusted, NOW).unwrap_err();
    assert!(
        matches!(&e, LicenceError::NotContained(r) if r.purpose.is_some()),
        "{e}"
    );
    assert_eq!(e.code(), "licence.not_contained");
    // Selling is prohibited by the licence.
    let sell = offer_of(&op, "policy set;\n\npermit sell;\n", 30, &signed);
    assert_eq!(check(&sell, NOW), "licence.not_contained");
    // Another provider waving the operator's licence.
    let other = offer_of(&key(8), WITHIN, 30, &signed);
    assert_eq!(check(&other, NOW), "licence.wrong_licensee");
    // An offer that outlives the licence.
    let long = offer_of(&op, WITHIN, 400, &signed);
    assert_eq!(check(&long, NOW), "licence.outlives");
    // Before and after the licence's validity.
    let ok = offer_of(&op, WITHIN, 30, &signed);
    assert_eq!(
        check(&ok, Timestamp::from_millis(T0 - 1)),
        "licence.not_valid"
    );
    assert_eq!(
        check(&ok, Timestamp::from_millis(T0 + 366 * DAY)),
        "licence.not_valid"
    );
}

#[test]
fn licences_not_from_a_trusted_authority_are_refused() {
    let op = operator();
    // Issued by a key nobody trusts.
    let rogue = key(66);
    let mut l = licence_of(&op, 365);
    l.authority = rogue.id();
    l.authority_key = rogue.public_key();
    let signed = licence::issue(&rogue, &l).unwrap();
    let e = licence::verify(&signed, trusted).unwrap_err();
    assert_eq!(e.code(), "licence.not_authority", "{e}");
    // Naming the trusted authority but signed by the rogue key: the signature fails.
    let mut forged = tds_core::cose::sign(&rogue, &licence_of(&op, 365)).unwrap();
    let e = licence::verify(&forged, trusted).unwrap_err();
    assert!(e.code().starts_with("cose."), "{e}");
    // A flipped byte in a genuine licence.
    let genuine = licence::issue(&authority(), &licence_of(&op, 365)).unwrap();
    forged.clone_from(&genuine);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(licence::verify(&forged, trusted).is_err());
    // Issuing refuses a licence naming another key than the signer's.
    let e = licence::issue(&rogue, &licence_of(&op, 365)).unwrap_err();
    assert_eq!(e.code(), "licence.key_mismatch");
    // An oversize envelope is refused before it is parsed.
    let big = vec![0u8; MAX_LICENCE_LEN + 1];
    assert_eq!(
        licence::verify(&big, trusted).unwrap_err().code(),
        "licence.too_large"
    );
    // An empty validity.
    let mut empty = licence_of(&op, 365);
    empty.not_after = Timestamp::from_millis(T0 - 1);
    assert_eq!(
        licence::issue(&authority(), &empty).unwrap_err().code(),
        "licence.empty_validity"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Issue then verify gives back the licence, whatever its resource name, licensee
    /// and validity; the canonical bytes decode to the same value.
    #[test]
    fn licences_round_trip(
        name in "[a-z][a-z0-9:-]{0,40}",
        licensee in any::<u8>(),
        start in 0u64..4_000_000_000_000,
        days in 0u64..10_000,
    ) {
        let op = key(licensee);
        let mut l = licence_of(&op, 0);
        l.resource = name.parse().unwrap();
        l.not_before = Timestamp::from_millis(start);
        l.not_after = Timestamp::from_millis(start + days * DAY);
        let signed = licence::issue(&authority(), &l).unwrap();
        let v = licence::verify(&signed, trusted).unwrap();
        prop_assert_eq!(v.licence(), &l);
        prop_assert_eq!(v.envelope(), &signed[..]);
        let bytes = tds_core::cbor::encode(&l).unwrap();
        let back: Licence = tds_core::cbor::decode(&bytes).unwrap();
        prop_assert_eq!(back, l);
    }
}
