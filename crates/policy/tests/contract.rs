//! Offers, requests and agreements.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use proptest::prelude::*;
use tds_core::cose::{self, CoseError};
use tds_core::{ErrorCode, SigningKey, Timestamp};
use tds_identity::{Admission, Authority, Role, VerifiedCredential};
use tds_policy::contract::danger::NoNonceStore;
use tds_policy::contract::*;
use tds_policy::{parse, ContainmentLimit, Effect, Policy, PolicyError};

mod common;

const T0: u64 = 1_800_000_000_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

/// A membership credential for `member` with `roles`, verified at `T0`.
fn credential(member: &SigningKey, roles: &[Role]) -> VerifiedCredential {
    let mut authority = Authority::new("Test Data Space Authority", key(200)).unwrap();
    let signed = authority
        .admit(
            &Admission {
                subject_key: member.public_key(),
                name: "Member".into(),
                sectors: vec!["power".parse().unwrap()],
                roles: roles.to_vec(),
                jurisdiction: "CN-SX".parse().unwrap(),
                not_before: Timestamp::from_millis(T0 - 86_400_000),
                not_after: Timestamp::from_millis(T0 + 365 * 86_400_000),
            },
            Timestamp::from_millis(T0 - 86_400_000),
        )
        .unwrap();
    authority
        .check_member(signed.envelope(), Timestamp::from_millis(T0))
        .unwrap()
}

fn consumer_credential(consumer: &SigningKey) -> VerifiedCredential {
    credential(consumer, &[Role::Consumer])
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
        licence: None,
    }
}

fn contract_request(
    consumer: &SigningKey,
    offer: &VerifiedOffer,
    policy: Policy,
    purpose: &str,
    nonce: u8,
    time: u64,
) -> ContractRequest {
    ContractRequest {
        offer: offer.id(),
        consumer: consumer.id(),
        consumer_key: consumer.public_key(),
        policy,
        purpose: purpose.parse().unwrap(),
        nonce: serde_bytes::ByteArray::new([nonce; 16]),
        time: Timestamp::from_millis(time),
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
        &contract_request(consumer, offer, policy, "grid/planning", nonce, time),
    )
    .unwrap()
}

fn verified_offer(p: &SigningKey) -> VerifiedOffer {
    verify_offer(&create_offer(p, &offer(p)).unwrap()).unwrap()
}

#[test]
fn full_flow_gives_an_agreement_both_parties_signed() {
    let (p, c) = (key(1), key(2));
    let o = verified_offer(&p);
    let asked = narrow_to_purpose(&o.offer().policy, &"grid/planning".parse().unwrap());
    let now = Timestamp::from_millis(T0 + 1000);
    let plain = contract_request(&c, &o, asked.clone(), "grid/planning", 1, T0 + 500);
    let req = create_request(&c, &plain).unwrap();
    let nonces = MemoryNonceStore::new();
    let vr = verify_request(&req, &o, &consumer_credential(&c), now, &nonces).unwrap();
    // The library gives the request id; the CLI prints it without computing it.
    assert_eq!(vr.id(), plain.id().unwrap());
    let half = accept(&p, &o, &vr, now).unwrap();
    // The half-signed terms are not an agreement yet.
    assert!(matches!(
        verify_agreement(&half.envelope),
        Err(ContractError::Cose(CoseError::Signers(_)))
    ));
    let full = countersign(&c, &half.envelope).unwrap();
    let a = verify_agreement(&full).unwrap();
    assert_eq!(a.id(), half.id, "accept returns the agreement's id");
    assert_eq!(a.terms().provider, p.id());
    assert_eq!(a.terms().consumer, c.id());
    assert_eq!(a.terms().request, vr.id());
    assert_eq!(a.id(), a.terms().id().unwrap());
    assert_eq!(a.policy().policy(), &asked);
    assert_eq!(a.offer_policy().policy(), &o.offer().policy);
    // Either party may terminate; a stranger may not.
    let t = terminate(&c, &a, now, Some("done".parse().unwrap())).unwrap();
    let vt = verify_termination(&t, &a).unwrap();
    assert_eq!(vt.party(), c.id());
    assert_eq!(vt.agreement(), a.id());
    assert_eq!(vt.envelope(), &t[..]);
    assert!(matches!(
        terminate(&key(9), &a, now, None),
        Err(ContractError::NotAParty { party, .. }) if party == key(9).id()
    ));
    // The agreement decides uses under both policies, with the compiled engine, and
    // explains them with the reference interpreter.
    let mut r = tds_policy::Request::new(tds_policy::Action::Read);
    r.purpose = Some("grid/planning/load".parse().unwrap());
    r.uses = Some(3);
    let d = a.decide(&r);
    assert_eq!(d.effect, Effect::Permit);
    assert_eq!(d.duties, a.explain(&r).duties);
    assert_eq!(d.duties.len(), 1);
    r.purpose = Some("grid/operations".parse().unwrap());
    assert_eq!(a.decide(&r).effect, Effect::Deny);
    let explained = a.explain(&r);
    assert_eq!(explained.effect, Effect::Deny);
    assert!(explained.reasons.iter().any(|x| x.offer));
    assert!(explained.reasons.iter().any(|x| x
        .to_string()
        .starts_with("offer: permission 1 (use): granted")));
}

#[test]
fn validation_refuses_bad_requests() {
    let (p, c) = (key(1), key(2));
    let member = consumer_credential(&c);
    let o = verified_offer(&p);
    let now = Timestamp::from_millis(T0 + 1000);
    let nonces = MemoryNonceStore::new();
    // Not contained: asks for distribute. The counterexample is a value.
    let wide = parse("w", "permit use; permit distribute;").unwrap();
    let e = verify_request(&request(&c, &o, wide, 1, T0), &o, &member, now, &nonces).unwrap_err();
    let ContractError::NotContained(example) = &e else {
        panic!("{e}")
    };
    assert_eq!(e.code(), "contract.not_contained");
    assert_ne!(
        tds_policy::evaluate(&o.offer().policy, example).effect,
        Effect::Permit
    );
    assert!(e.to_string().contains("\"action\""), "{e}");
    // Expired offer.
    let narrow = narrow_to_purpose(&o.offer().policy, &"grid/planning".parse().unwrap());
    let late = Timestamp::from_millis(T0 + 31 * 86_400_000);
    let late_member = {
        let mut authority = Authority::new("A", key(200)).unwrap();
        let signed = authority
            .admit(
                &Admission {
                    subject_key: c.public_key(),
                    name: "Member".into(),
                    sectors: vec!["power".parse().unwrap()],
                    roles: vec![Role::Consumer],
                    jurisdiction: "CN".parse().unwrap(),
                    not_before: Timestamp::from_millis(T0),
                    not_after: Timestamp::from_millis(T0 + 365 * 86_400_000),
                },
                Timestamp::from_millis(T0),
            )
            .unwrap();
        authority.check_member(signed.envelope(), late).unwrap()
    };
    let e = verify_request(
        &request(&c, &o, narrow.clone(), 2, late.as_millis()),
        &o,
        &late_member,
        late,
        &nonces,
    )
    .unwrap_err();
    assert!(matches!(e, ContractError::OfferNotValid { .. }), "{e}");
    assert_eq!(e.code(), "contract.offer_not_valid");
    // Reused nonce.
    let r = request(&c, &o, narrow.clone(), 3, T0);
    verify_request(&r, &o, &member, now, &nonces).unwrap();
    let e = verify_request(&r, &o, &member, now, &nonces).unwrap_err();
    assert!(matches!(e, ContractError::NonceReused), "{e}");
    assert_eq!(e.code(), "contract.nonce_reused");
    // Stale request.
    let e = verify_request(
        &request(&c, &o, narrow.clone(), 4, T0 - 2 * 86_400_000),
        &o,
        &member,
        now,
        &nonces,
    )
    .unwrap_err();
    assert!(matches!(e, ContractError::StaleRequest { .. }), "{e}");
    // A request for another offer.
    let mut other = offer(&p);
    other.asset = "urn:asset:2".parse().unwrap();
    let other = verify_offer(&create_offer(&p, &other).unwrap()).unwrap();
    let e = verify_request(
        &request(&c, &other, narrow.clone(), 7, T0),
        &o,
        &member,
        now,
        &nonces,
    )
    .unwrap_err();
    assert!(
        matches!(e, ContractError::OfferMismatch { expected, found } if expected == o.id() && found == other.id()),
        "{e}"
    );
    // A request naming the consumer but signed by another key: the kid is not the
    // named key's, so the signature is not even tried.
    let forged = cose::sign(
        &key(3),
        &contract_request(&c, &o, narrow.clone(), "grid/planning", 5, T0),
    )
    .unwrap();
    let e = verify_request(&forged, &o, &member, now, &nonces).unwrap_err();
    assert!(
        matches!(e, ContractError::Cose(CoseError::KidMismatch { .. })),
        "{e}"
    );
    // A request naming the consumer with the signer's key: the member credential is for
    // another key, so it is refused before anything else.
    let mut named = contract_request(&c, &o, narrow.clone(), "grid/planning", 6, T0);
    named.consumer_key = key(3).public_key();
    let forged = cose::sign(&key(3), &named).unwrap();
    let e = verify_request(&forged, &o, &member, now, &nonces).unwrap_err();
    assert!(matches!(e, ContractError::CredentialMismatch { .. }), "{e}");
    // A credential for the signer's key does not match the consumer id the request names.
    let e = verify_request(&forged, &o, &consumer_credential(&key(3)), now, &nonces).unwrap_err();
    assert!(
        matches!(e, ContractError::CredentialMismatch { subject, consumer } if subject == key(3).id() && consumer == c.id()),
        "{e}"
    );
    // Nothing refused burnt its nonce.
    assert_eq!(nonces.len(), 1);
}

#[test]
fn members_without_the_consumer_role_are_refused() {
    let (p, c) = (key(1), key(2));
    let o = verified_offer(&p);
    let now = Timestamp::from_millis(T0 + 1000);
    let narrow = narrow_to_purpose(&o.offer().policy, &"grid".parse().unwrap());
    let req = request(&c, &o, narrow, 1, T0);
    let provider_only = credential(&c, &[Role::Provider]);
    let e = verify_request(
        &req,
        &o,
        &provider_only,
        now,
        &NoNonceStore::accepting_replays(),
    )
    .unwrap_err();
    assert!(
        matches!(e, ContractError::NotAConsumer { subject } if subject == c.id()),
        "{e}"
    );
    assert_eq!(e.code(), "contract.not_consumer");
    // A credential checked earlier but expired by now.
    let later = Timestamp::from_millis(T0 + 400 * 86_400_000);
    let e = verify_request(
        &req,
        &o,
        &consumer_credential(&c),
        later,
        &NoNonceStore::accepting_replays(),
    )
    .unwrap_err();
    assert!(matches!(e, ContractError::CredentialNotValid { .. }), "{e}");
}

/// A request policy whose containment check costs minutes without a budget (185 s on
/// the development machine for two rules): roles, purposes, regions, counts, volumes and
/// times all split into many classes, and the offer decides only on the last field.
fn costly_policy(rules: usize) -> Policy {
    let roles: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let mut text = String::new();
    for k in 0..rules {
        text.push_str(&format!(
            "permit use when personalInfo lteq personal and recipientRole isAnyOf [{}] and (purpose isA grid/p{k} or purpose isA grid/q{k}/x) and (spatial eq CN-S{k} or spatial isPartOf HK) and (count lteq {} or volume gt {}) and (dateTime lt 2030-01-0{} or elapsedTime lt {}d);\n",
            roles.join(", "),
            10 + k,
            100 + k,
            1 + k % 9,
            1 + k
        ));
    }
    parse("costly", &text).unwrap()
}

#[test]
fn red_team_8_costly_requests_are_refused_cheaply() {
    let p = key(1);
    let mut costly_offer = offer(&p);
    costly_offer.policy = parse(
        "o",
        "policy offer target \"urn:asset:1\"; permit use when personalInfo lteq personal;",
    )
    .unwrap();
    let o = verify_offer(&create_offer(&p, &costly_offer).unwrap()).unwrap();
    let now = Timestamp::from_millis(T0 + 1000);
    // A large request signed by a throwaway key that holds no credential.
    let throwaway = key(66);
    let big = costly_policy(40);
    let bytes = create_request(
        &throwaway,
        &contract_request(&throwaway, &o, big, "grid", 1, T0),
    )
    .unwrap();
    assert!(bytes.len() > 20_000, "{} bytes", bytes.len());
    // The provider holds some member's credential for the key the request names; a key
    // without one cannot produce a matching credential, so the request is refused
    // before signature, policy or containment work.
    let some_member = consumer_credential(&key(2));
    let e = verify_request(
        &bytes,
        &o,
        &some_member,
        now,
        &NoNonceStore::accepting_replays(),
    )
    .unwrap_err();
    assert!(
        matches!(e, ContractError::CredentialMismatch { consumer, .. } if consumer == throwaway.id()),
        "{e}"
    );
    assert_eq!(e.code(), "contract.credential_mismatch");
    // A member's request whose containment would cost more than the budget is refused
    // with its own code, without an answer.
    let member = key(2);
    let bytes = create_request(
        &member,
        &contract_request(&member, &o, costly_policy(2), "grid", 2, T0),
    )
    .unwrap();
    let e = verify_request(
        &bytes,
        &o,
        &consumer_credential(&member),
        now,
        &NoNonceStore::accepting_replays(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ContractError::TooComplex(ContainmentLimit::Budget {
                limit: REQUEST_BUDGET
            })
        ),
        "{e}"
    );
    assert_eq!(e.code(), "contract.too_complex");
    assert_eq!(
        e.to_string(),
        "request: the requested policy cannot be checked against the offer within the limits"
    );
    // The same budget applies to the consumer's own check before it signs.
    let mut budget = tds_policy::Budget::new(REQUEST_BUDGET);
    let e = check_request_policy(
        &o.offer().policy,
        &costly_policy(2),
        &"grid".parse().unwrap(),
        &mut budget,
    )
    .unwrap_err();
    assert!(matches!(e, ContractError::TooComplex(_)), "{e}");
    assert!(budget.spent() > budget.limit());
}

#[test]
fn red_team_12_the_declared_purpose_must_cover_the_requested_policy() {
    let (p, c) = (key(1), key(2));
    let o = verified_offer(&p);
    let now = Timestamp::from_millis(T0 + 1000);
    // Contained in the offer (purpose isA grid), but wider than the declared purpose
    // grid/planning: the agreement would say "grid/planning" and permit all of grid.
    let asked = parse(
        "a",
        "policy set target \"urn:asset:1\"; permit use when purpose isA grid and count lteq 100;",
    )
    .unwrap();
    let bytes =
        create_request(&c, &contract_request(&c, &o, asked, "grid/planning", 1, T0)).unwrap();
    let e = verify_request(
        &bytes,
        &o,
        &consumer_credential(&c),
        now,
        &NoNonceStore::accepting_replays(),
    )
    .unwrap_err();
    let ContractError::PurposeNotCovered { purpose, example } = &e else {
        panic!("{e}")
    };
    assert_eq!(purpose.as_str(), "grid/planning");
    assert!(!example
        .purpose
        .as_ref()
        .unwrap()
        .is_within(&"grid/planning".parse().unwrap()));
    assert_eq!(e.code(), "contract.purpose_not_covered");
    // The default request policy (the offer narrowed to the purpose) is covered.
    let narrow = narrow_to_purpose(&o.offer().policy, &"grid/planning".parse().unwrap());
    verify_request(
        &request(&c, &o, narrow, 2, T0),
        &o,
        &consumer_credential(&c),
        now,
        &NoNonceStore::accepting_replays(),
    )
    .unwrap();
}

fn terms(p: &SigningKey, c: &SigningKey) -> AgreementTerms {
    AgreementTerms {
        offer: tds_core::Hash256::from_bytes([1; 32]),
        request: tds_core::Hash256::from_bytes([2; 32]),
        asset: "urn:asset:1".parse().unwrap(),
        provider: p.id(),
        provider_key: p.public_key(),
        consumer: c.id(),
        consumer_key: c.public_key(),
        offer_policy: offer_policy(),
        policy: narrow_to_purpose(&offer_policy(), &"grid".parse().unwrap()),
        purpose: "grid".parse().unwrap(),
        price: None,
        agreed_at: Timestamp::from_millis(T0),
    }
}

#[test]
fn red_team_12_agreements_are_signed_by_the_provider_first() {
    let (p, c) = (key(1), key(2));
    let t = terms(&p, &c);
    let right = cose::sign_multi(&[&p, &c], &t).unwrap();
    verify_agreement(&right).unwrap();
    // The consumer signing first and the provider countersigning is refused.
    let reversed = cose::sign_multi(&[&c, &p], &t).unwrap();
    let e = verify_agreement(&reversed).unwrap_err();
    assert!(
        matches!(&e, ContractError::SignatureOrder { found } if *found == vec![c.id(), p.id()]),
        "{e}"
    );
    assert_eq!(e.code(), "contract.signature_order");
    // A third party instead of the consumer is not an order problem.
    let stranger = cose::sign_multi(&[&p, &key(3)], &t).unwrap();
    assert!(matches!(
        verify_agreement(&stranger),
        Err(ContractError::Cose(CoseError::Signers(_)))
    ));
    // One participant as both parties.
    let same = terms(&p, &p);
    assert!(matches!(
        verify_agreement(&cose::sign_multi(&[&p], &same).unwrap()),
        Err(ContractError::SameParty { party }) if party == p.id()
    ));
}

#[test]
fn offers_signed_by_another_key_are_refused() {
    let p = key(1);
    let forged = cose::sign(&key(4), &offer(&p)).unwrap();
    assert!(matches!(
        verify_offer(&forged),
        Err(ContractError::Cose(CoseError::KidMismatch { .. }))
    ));
    assert!(matches!(
        create_offer(&key(4), &offer(&p)),
        Err(ContractError::WrongSigner {
            what: ContractObject::Offer,
            ..
        })
    ));
    let mut backwards = offer(&p);
    backwards.not_after = Timestamp::from_millis(T0 - 1);
    assert!(matches!(
        create_offer(&p, &backwards),
        Err(ContractError::EmptyValidity { .. })
    ));
    let mut invalid = offer(&p);
    invalid.policy.rules[1]
        .duties
        .push(tds_policy::Duty::Anonymize);
    assert!(matches!(
        create_offer(&p, &invalid),
        Err(ContractError::Policy(PolicyError::ProhibitionDuty))
    ));
}

#[test]
fn countersign_by_a_stranger_is_refused() {
    let (p, c) = (key(1), key(2));
    let o = verified_offer(&p);
    let now = Timestamp::from_millis(T0 + 1000);
    let asked = narrow_to_purpose(&o.offer().policy, &"grid/planning".parse().unwrap());
    let vr = verify_request(
        &request(&c, &o, asked, 1, T0),
        &o,
        &consumer_credential(&c),
        now,
        &NoNonceStore::accepting_replays(),
    )
    .unwrap();
    let half = accept(&p, &o, &vr, now).unwrap();
    assert!(matches!(
        countersign(&key(7), &half.envelope),
        Err(ContractError::WrongSigner { what: ContractObject::Agreement, found, .. }) if found == key(7).id()
    ));
    // Provider signing twice does not make an agreement.
    assert!(matches!(
        cose::add_signature::<AgreementTerms>(&half.envelope, &p),
        Err(CoseError::Signers(_))
    ));
    // The wrong provider key cannot accept.
    assert!(matches!(
        accept(&key(8), &o, &vr, now),
        Err(ContractError::WrongSigner {
            what: ContractObject::Offer,
            ..
        })
    ));
}

#[test]
fn terminations_name_their_agreement_and_party() {
    let (p, c) = (key(1), key(2));
    let a = verify_agreement(&cose::sign_multi(&[&p, &c], &terms(&p, &c)).unwrap()).unwrap();
    let mut other_terms = terms(&p, &c);
    other_terms.agreed_at = Timestamp::from_millis(T0 + 1);
    let other = verify_agreement(&cose::sign_multi(&[&p, &c], &other_terms).unwrap()).unwrap();
    let t = terminate(&p, &a, Timestamp::from_millis(T0 + 5), None).unwrap();
    assert_eq!(verify_termination(&t, &a).unwrap().party(), p.id());
    assert!(matches!(
        verify_termination(&t, &other),
        Err(ContractError::OtherAgreement { expected, found }) if expected == other.id() && found == a.id()
    ));
    // A stranger's notice.
    let stranger = cose::sign(
        &key(9),
        &Termination {
            agreement: a.id(),
            party: key(9).id(),
            party_key: key(9).public_key(),
            time: Timestamp::from_millis(T0),
            reason: None,
        },
    )
    .unwrap();
    assert!(matches!(
        verify_termination(&stranger, &a),
        Err(ContractError::NotAParty { what: ContractObject::Termination, party }) if party == key(9).id()
    ));
}

#[test]
fn the_nonce_store_is_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<MemoryNonceStore>();
    shared::<NoNonceStore>();
    let store = std::sync::Arc::new(MemoryNonceStore::new());
    let consumer = key(2).id();
    let fresh: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = &store;
                s.spawn(move || {
                    usize::from(store.insert(&consumer, &[7; 16], Timestamp::from_millis(T0)))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(fresh, 1, "exactly one thread sees the nonce as new");
    store.forget_before(Timestamp::from_millis(T0 + 1));
    assert!(store.is_empty());
    let none = NoNonceStore::accepting_replays();
    assert!(none.insert(&consumer, &[7; 16], Timestamp::from_millis(T0)));
    assert!(none.insert(&consumer, &[7; 16], Timestamp::from_millis(T0)));
}

#[test]
fn every_contract_code_is_well_formed() {
    let h = tds_core::Hash256::from_bytes([1; 32]);
    let t = Timestamp::from_millis(T0);
    let errors = [
        ContractError::WrongSigner {
            what: ContractObject::Offer,
            expected: h,
            found: h,
        },
        ContractError::KeyMismatch {
            what: ContractObject::Request,
            field: "consumer_key",
        },
        ContractError::EmptyValidity {
            not_before: t,
            not_after: t,
        },
        ContractError::NotContained(Box::new(tds_policy::Request::new(tds_policy::Action::Use))),
        ContractError::TooComplex(ContainmentLimit::Roles { limit: 10 }),
        ContractError::NonceReused,
        ContractError::SameParty { party: h },
        ContractError::SignatureOrder { found: vec![h, h] },
        ContractError::NoRandomness,
        ContractError::Policy(PolicyError::EmptyObligation),
    ];
    for e in errors {
        assert!(tds_core::code::is_well_formed(e.code()), "{}", e.code());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Per-access decisions on an agreement use the compiled engine; the reference
    /// interpreter is the oracle.
    #[test]
    fn agreement_decisions_agree_with_the_reference(
        agreed in common::policy(),
        offered in common::policy(),
        reqs in prop::collection::vec(common::request(), 1..8),
    ) {
        let (p, c) = (key(1), key(2));
        let mut t = terms(&p, &c);
        t.policy = agreed;
        t.offer_policy = offered;
        let a = verify_agreement(&cose::sign_multi(&[&p, &c], &t).unwrap()).unwrap();
        for r in &reqs {
            let fast = a.decide(r);
            let reference = t.evaluate(r);
            prop_assert_eq!(fast.effect, reference.effect, "request {:?}", r);
            prop_assert_eq!(fast.duties, reference.duties);
        }
    }
}
