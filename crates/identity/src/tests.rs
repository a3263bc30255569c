//! Unit and property tests that need the crate's internals (the raw wire forms, to sign
//! objects that break the rules).

use proptest::prelude::*;
use tds_core::cose::{self, CoseError};
use tds_core::hash::Domain;
use tds_core::time::DAY_MS;
use tds_core::{cbor, PublicKey, SigningKey, Timestamp};

use crate::credential::RawCredential;
use crate::crl::RawRevocationList;
use crate::*;

const T0: u64 = 1_800_000_000_000;

/// A change to apply to a valid value before checking that it is refused.
type Change<T> = Box<dyn Fn(&mut T)>;

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn authority(n: u8) -> Authority {
    Authority::new("Test Data Space Authority", key(n)).unwrap()
}

fn admission(subject: &PublicKey, not_before: u64, not_after: u64) -> Admission {
    Admission {
        subject_key: *subject,
        name: "Taiyuan Grid Co.".into(),
        sectors: vec![Sector::POWER, Sector::WEATHER],
        roles: vec![Role::Provider, Role::Consumer],
        jurisdiction: "CN-SX".parse().unwrap(),
        not_before: t(not_before),
        not_after: t(not_after),
    }
}

fn issue(a: &mut Authority, subject: u8) -> Signed<Credential> {
    a.admit(
        &admission(&key(subject).public_key(), T0, T0 + 365 * DAY_MS),
        t(T0),
    )
    .unwrap()
}

/// A store trusting `a` that lets credentials pass without a revocation list (most tests
/// are about something else; `a_list_is_required_by_default` covers the default).
fn store_for(a: &Authority) -> TrustStore {
    let mut s = TrustStore::new();
    s.add_authority(a.public_key());
    s.dangerous().accept_missing_revocation_lists();
    s
}

fn raw_from(c: &Credential) -> RawCredential {
    RawCredential {
        version: c.version(),
        serial: c.serial(),
        issuer: c.issuer(),
        issuer_key: *c.issuer_key(),
        subject: c.subject(),
        subject_key: *c.subject_key(),
        name: c.name().to_owned(),
        sectors: c.sectors().iter().map(|s| s.to_string()).collect(),
        roles: c.roles().iter().map(|r| r.to_string()).collect(),
        jurisdiction: c.jurisdiction().to_string(),
        not_before: c.not_before(),
        not_after: c.not_after(),
        issued_at: c.issued_at(),
    }
}

fn field_of(e: IdentityError) -> (&'static str, &'static str, Invalid) {
    match e {
        IdentityError::Field(f) => (f.object, f.field, f.reason),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn admit_then_verify() {
    let mut a = authority(1);
    let issued = issue(&mut a, 2);
    assert_eq!(issued.serial(), 1);
    assert_eq!(a.state().next_serial(), 2);
    let v = store_for(&a).verify(issued.envelope(), t(T0)).unwrap();
    assert_eq!(v.credential(), issued.value());
    assert_eq!(v.subject(), ParticipantId::of(&key(2).public_key()));
    assert_eq!(v.issuer(), a.id());
    assert_eq!(v.sector(), Some(&Sector::POWER));
    assert_eq!(v.jurisdiction().as_str(), "CN-SX");
    assert!(v.has_role(Role::Consumer) && !v.has_role(Role::Witness));
    assert!(!v.revocation_checked());
    assert_eq!(v.crl_sequence(), None);
    assert_eq!(v.checked_at(), t(T0));
    assert_eq!(v.envelope(), issued.envelope());
    let payload = cbor::encode(issued.value()).unwrap();
    assert_eq!(v.id(), Domain::CREDENTIAL.hash(&payload));
    assert_eq!(v.id(), issued.id().unwrap());
}

#[test]
fn validity_window_is_half_open() {
    let mut a = authority(1);
    let issued = a
        .admit(&admission(&key(2).public_key(), T0, T0 + 1000), t(T0))
        .unwrap();
    let store = store_for(&a);
    assert!(matches!(
        store.verify(issued.envelope(), t(T0 - 1)),
        Err(IdentityError::NotYetValid { .. })
    ));
    store.verify(issued.envelope(), t(T0)).unwrap();
    store.verify(issued.envelope(), t(T0 + 999)).unwrap();
    let err = store.verify(issued.envelope(), t(T0 + 1000)).unwrap_err();
    assert!(matches!(err, IdentityError::Expired { .. }), "{err}");
    assert!(
        err.to_string().starts_with("credential: expired at "),
        "{err}"
    );
}

#[test]
fn revoked_credential_is_refused_once_a_list_is_held() {
    let mut a = authority(1);
    let one = issue(&mut a, 2);
    let two = issue(&mut a, 3);
    assert!(a.revoke(one.serial()).unwrap());
    assert!(!a.revoke(one.serial()).unwrap(), "second revoke is a no-op");
    let mut store = store_for(&a);
    // Without a list the store cannot know.
    assert!(!store
        .verify(one.envelope(), t(T0))
        .unwrap()
        .revocation_checked());
    let crl = a.revocation_list(t(T0), t(T0 + DAY_MS)).unwrap();
    assert_eq!(crl.sequence(), 1);
    assert_eq!(crl.serials(), &[1]);
    store.add_revocation_list(crl.envelope(), t(T0)).unwrap();
    let err = store.verify(one.envelope(), t(T0)).unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::Revoked {
                serial: 1,
                sequence: 1
            }
        ),
        "{err}"
    );
    let ok = store.verify(two.envelope(), t(T0)).unwrap();
    assert!(ok.revocation_checked());
    assert_eq!(ok.crl_sequence(), Some(1));
}

#[test]
fn stale_lists_are_refused_unless_dangerously_accepted() {
    let mut a = authority(1);
    let one = issue(&mut a, 2);
    let two = issue(&mut a, 3);
    a.revoke(two.serial()).unwrap();
    let crl = a.revocation_list(t(T0), t(T0 + DAY_MS)).unwrap();
    let later = t(T0 + DAY_MS);

    let mut strict = store_for(&a);
    let err = strict
        .add_revocation_list(crl.envelope(), later)
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::StaleRevocationList { .. }),
        "{err}"
    );
    // Held while fresh, then used once stale.
    strict.add_revocation_list(crl.envelope(), t(T0)).unwrap();
    assert!(matches!(
        strict.verify(one.envelope(), later),
        Err(IdentityError::StaleRevocationList { .. })
    ));
    // A revoked serial is reported as revoked, stale list or not.
    assert!(matches!(
        strict.verify(two.envelope(), later),
        Err(IdentityError::Revoked { .. })
    ));

    let mut lax = store_for(&a);
    lax.dangerous().accept_stale_revocation_lists();
    lax.add_revocation_list(crl.envelope(), later).unwrap();
    assert!(lax
        .verify(one.envelope(), later)
        .unwrap()
        .revocation_checked());
    assert!(matches!(
        lax.verify(two.envelope(), later),
        Err(IdentityError::Revoked { .. })
    ));
}

#[test]
fn a_list_is_required_by_default() {
    let mut a = authority(1);
    let one = issue(&mut a, 2);
    let mut store = TrustStore::new();
    store.add_authority(a.public_key());
    assert!(store.requires_revocation_lists());
    assert!(matches!(
        store.verify(one.envelope(), t(T0)),
        Err(IdentityError::RevocationListMissing { .. })
    ));
    let crl = a.revocation_list(t(T0), t(T0 + DAY_MS)).unwrap();
    store.add_revocation_list(crl.envelope(), t(T0)).unwrap();
    assert!(store
        .verify(one.envelope(), t(T0))
        .unwrap()
        .revocation_checked());
}

#[test]
fn older_and_conflicting_lists_are_refused() {
    let mut a = authority(1);
    issue(&mut a, 2);
    let first = a.revocation_list(t(T0), t(T0 + DAY_MS)).unwrap();
    a.revoke(1).unwrap();
    let second = a.revocation_list(t(T0), t(T0 + DAY_MS)).unwrap();
    let mut store = store_for(&a);
    store.add_revocation_list(second.envelope(), t(T0)).unwrap();
    store.add_revocation_list(second.envelope(), t(T0)).unwrap();
    assert!(matches!(
        store.add_revocation_list(first.envelope(), t(T0)),
        Err(IdentityError::OlderRevocationList {
            offered: 1,
            held: 2
        })
    ));
    // A different list under the same sequence number (a misbehaving authority).
    let mut twin = Authority::from_parts(
        key(1),
        cbor::decode::<AuthorityState>(&cbor::encode(a.state()).unwrap()).unwrap(),
    )
    .unwrap();
    let mut store2 = store_for(&a);
    store2
        .add_revocation_list(second.envelope(), t(T0))
        .unwrap();
    let state_bytes = cbor::encode(twin.state()).unwrap();
    let mut state: cbor::Value = cbor::decode(&state_bytes).unwrap();
    if let cbor::Value::Map(entries) = &mut state {
        for (k, v) in entries.iter_mut() {
            if k.as_text() == Some("crl_sequence") {
                *v = cbor::Value::Integer(1);
            }
        }
    }
    twin = Authority::from_parts(
        key(1),
        cbor::decode(&cbor::encode(&state).unwrap()).unwrap(),
    )
    .unwrap();
    let conflicting = twin.revocation_list(t(T0 + 1), t(T0 + DAY_MS)).unwrap();
    assert_eq!(conflicting.sequence(), 2);
    assert!(matches!(
        store2.add_revocation_list(conflicting.envelope(), t(T0)),
        Err(IdentityError::ConflictingRevocationList { sequence: 2 })
    ));
}

#[test]
fn untrusted_signer_is_refused() {
    let mut a = authority(1);
    let b = authority(9);
    let issued = issue(&mut a, 2);
    let err = store_for(&b).verify(issued.envelope(), t(T0)).unwrap_err();
    assert!(
        matches!(err, IdentityError::UntrustedSigner { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("not a trusted authority key"),
        "{err}"
    );
    assert!(matches!(
        TrustStore::new().verify(issued.envelope(), t(T0)),
        Err(IdentityError::UntrustedSigner { .. })
    ));
    // A list from an untrusted authority is refused too.
    let mut a2 = authority(1);
    let crl = a2.revocation_list(t(T0), t(T0 + DAY_MS)).unwrap();
    assert!(matches!(
        store_for(&b).add_revocation_list(crl.envelope(), t(T0)),
        Err(IdentityError::UntrustedSigner { .. })
    ));
}

#[test]
fn every_single_byte_change_is_refused() {
    let mut a = authority(1);
    let issued = issue(&mut a, 2);
    let store = store_for(&a);
    let good = issued.envelope();
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = good.to_vec();
            bad[i] ^= flip;
            assert!(
                store.verify(&bad, t(T0)).is_err(),
                "byte {i} ^ {flip:#x} accepted"
            );
        }
    }
    for len in 0..good.len() {
        assert!(
            store.verify(&good[..len], t(T0)).is_err(),
            "truncated to {len}"
        );
    }
    let mut longer = good.to_vec();
    longer.push(0);
    assert!(store.verify(&longer, t(T0)).is_err());
}

#[test]
fn wrong_content_type_is_refused() {
    let mut a = authority(1);
    let issued = issue(&mut a, 2);
    let crl = a.revocation_list(t(T0), t(T0 + DAY_MS)).unwrap();
    let (rollover, _) = a.rollover(key(5), t(T0)).unwrap();
    let mut store = store_for(&a);
    for wrong in [crl.envelope(), rollover.envelope()] {
        let err = store.verify(wrong, t(T0)).unwrap_err();
        assert!(
            matches!(
                err,
                IdentityError::Envelope(CoseError::WrongContentType { .. })
            ),
            "{err}"
        );
    }
    assert!(matches!(
        store.add_revocation_list(issued.envelope(), t(T0)),
        Err(IdentityError::Envelope(CoseError::WrongContentType { .. }))
    ));
    assert!(matches!(
        store.add_rollover(issued.envelope()),
        Err(IdentityError::Envelope(CoseError::WrongContentType { .. }))
    ));
}

#[test]
fn oversized_credential_is_refused_before_parsing() {
    let store = TrustStore::new();
    let big = vec![0u8; MAX_CREDENTIAL_LEN + 1];
    assert!(matches!(
        store.verify(&big, t(T0)),
        Err(IdentityError::TooLarge { .. })
    ));
}

#[test]
fn rollover_chain_is_followed() {
    let mut a = authority(1);
    let under_first = issue(&mut a, 20);
    let (ab, old) = a.rollover(key(2), t(T0)).unwrap();
    assert_eq!(old.public_key(), key(1).public_key());
    assert_eq!(ab.old_key(), &key(1).public_key());
    assert_eq!(ab.new_key(), &key(2).public_key());
    assert_eq!(ab.authority(), "Test Data Space Authority");
    let under_second = issue(&mut a, 21);
    let (bc, _) = a.rollover(key(3), t(T0 + 1)).unwrap();
    let under_third = issue(&mut a, 22);
    assert_eq!(under_third.serial(), 3, "serials continue across rollovers");
    assert_eq!(
        under_third.issuer(),
        ParticipantId::of(&key(3).public_key())
    );
    assert_eq!(
        a.state().previous_keys(),
        &[key(1).public_key(), key(2).public_key()]
    );

    let mut store = TrustStore::new();
    store.dangerous().accept_missing_revocation_lists();
    store.add_authority(key(1).public_key());
    // Out of order: the second link's signer is not trusted yet.
    assert!(matches!(
        store.add_rollover(bc.envelope()),
        Err(IdentityError::UntrustedSigner { .. })
    ));
    assert!(matches!(
        store.verify(under_third.envelope(), t(T0)),
        Err(IdentityError::UntrustedSigner { .. })
    ));
    assert_eq!(
        store.add_rollover(ab.envelope()).unwrap(),
        ParticipantId::of(&key(2).public_key())
    );
    store.add_rollover(bc.envelope()).unwrap();
    assert_eq!(
        store.authority_name(&ParticipantId::of(&key(3).public_key())),
        Some("Test Data Space Authority")
    );
    for c in [&under_first, &under_second, &under_third] {
        store.verify(c.envelope(), t(T0)).unwrap();
    }

    // A list signed by the newest key covers credentials signed by the oldest.
    a.revoke(under_first.serial()).unwrap();
    let crl = a.revocation_list(t(T0), t(T0 + DAY_MS)).unwrap();
    assert_eq!(crl.issuer(), ParticipantId::of(&key(3).public_key()));
    store.add_revocation_list(crl.envelope(), t(T0)).unwrap();
    assert!(matches!(
        store.verify(under_first.envelope(), t(T0)),
        Err(IdentityError::Revoked { serial: 1, .. })
    ));
    assert!(store
        .verify(under_second.envelope(), t(T0))
        .unwrap()
        .revocation_checked());
}

#[test]
fn rollover_by_an_untrusted_key_is_refused() {
    let mut rogue = authority(7);
    let (stmt, _) = rogue.rollover(key(8), t(T0)).unwrap();
    let mut store = TrustStore::new();
    store.dangerous().accept_missing_revocation_lists();
    store.add_authority(key(1).public_key());
    let err = store.add_rollover(stmt.envelope()).unwrap_err();
    assert!(
        matches!(err, IdentityError::UntrustedSigner { .. }),
        "{err}"
    );
    assert!(!store.is_trusted(&ParticipantId::of(&key(8).public_key())));
}

#[test]
fn rollover_to_a_separately_trusted_authority_is_refused() {
    let mut a = authority(1);
    let (stmt, _) = a.rollover(key(2), t(T0)).unwrap();
    let mut store = TrustStore::new();
    store.dangerous().accept_missing_revocation_lists();
    store.add_authority(key(1).public_key());
    store.add_authority(key(2).public_key());
    assert!(matches!(
        store.add_rollover(stmt.envelope()),
        Err(IdentityError::RolloverConflict { .. })
    ));
}

#[test]
fn rollover_must_change_the_key() {
    let mut a = authority(1);
    let err = a.rollover(key(1), t(T0)).unwrap_err();
    assert_eq!(field_of(err).1, "new_key");
    a.rollover(key(2), t(T0)).unwrap();
    let err = a.rollover(key(1), t(T0)).unwrap_err();
    assert_eq!(field_of(err).1, "new_key");
}

#[test]
fn member_key_rotation_reissues_and_revokes() {
    let mut a = authority(1);
    let old = issue(&mut a, 2);
    let store = a.trust_store();
    let verified = store.verify(old.envelope(), t(T0)).unwrap();
    let new = a
        .rotate_subject_key(&verified, key(3).public_key(), t(T0 + 5))
        .unwrap();
    assert_eq!(new.serial(), 2);
    assert_eq!(new.subject_key(), &key(3).public_key());
    assert_eq!(new.name(), old.name());
    assert_eq!(new.sectors(), old.sectors());
    assert_eq!(new.roles(), old.roles());
    assert_eq!(new.jurisdiction(), old.jurisdiction());
    assert_eq!(new.not_before(), t(T0 + 5));
    assert_eq!(new.not_after(), old.not_after());
    assert!(a.is_revoked(old.serial()));

    let mut store = a.trust_store();
    let crl = a.revocation_list(t(T0 + 5), t(T0 + DAY_MS)).unwrap();
    store
        .add_revocation_list(crl.envelope(), t(T0 + 5))
        .unwrap();
    assert!(matches!(
        store.verify(old.envelope(), t(T0 + 5)),
        Err(IdentityError::Revoked { .. })
    ));
    store.verify(new.envelope(), t(T0 + 5)).unwrap();

    // Same key again is refused; another authority's credential is refused.
    let v2 = store.verify(new.envelope(), t(T0 + 5)).unwrap();
    assert_eq!(
        field_of(
            a.rotate_subject_key(&v2, key(3).public_key(), t(T0 + 6))
                .unwrap_err()
        )
        .1,
        "subject_key"
    );
    let mut other = authority(9);
    assert!(matches!(
        other.rotate_subject_key(&v2, key(4).public_key(), t(T0 + 6)),
        Err(IdentityError::NotIssuedHere { .. })
    ));
}

#[test]
fn issue_checks_the_fields() {
    let mut a = authority(1);
    let subject = key(2).public_key();
    let cases: Vec<(Change<Admission>, &str)> = vec![
        (Box::new(|x| x.sectors.clear()), "sectors"),
        (Box::new(|x| x.sectors.push(Sector::POWER)), "sectors"),
        (
            Box::new(|x| x.sectors = (0..17).map(|i| format!("s{i}").parse().unwrap()).collect()),
            "sectors",
        ),
        (Box::new(|x| x.roles.clear()), "roles"),
        (Box::new(|x| x.roles.push(Role::Consumer)), "roles"),
        (Box::new(|x| x.name = String::new()), "name"),
        (Box::new(|x| x.name = "x".repeat(129)), "name"),
        (Box::new(|x| x.name = "tab\there".into()), "name"),
        (Box::new(|x| x.not_after = x.not_before), "not_after"),
    ];
    for (change, want) in cases {
        let mut adm = admission(&subject, T0, T0 + DAY_MS);
        change(&mut adm);
        let err = a.admit(&adm, t(T0)).unwrap_err();
        let msg = err.to_string();
        let (object, field, _) = field_of(err);
        assert_eq!((object, field), ("credential", want), "{msg}");
        assert!(msg.starts_with(&format!("credential {want}: ")), "{msg}");
    }
    // Nothing was consumed by the failures.
    assert_eq!(a.state().next_serial(), 1);
}

/// Signs `raw` with the authority key as if the authority had skipped its checks.
fn sign_raw(a: &Authority, raw: &RawCredential) -> Vec<u8> {
    cose::sign(a.signer().as_ref(), raw).unwrap()
}

#[test]
fn decode_checks_the_fields_of_signed_credentials() {
    let mut a = authority(1);
    let good = raw_from(issue(&mut a, 2).value());
    let store = store_for(&a);
    let other = key(3).public_key();
    let cases: Vec<(Change<RawCredential>, &str)> = vec![
        (Box::new(|r| r.version = 2), "version"),
        (
            Box::new(|r| r.subject = ParticipantId::of(&key(4).public_key())),
            "subject",
        ),
        (Box::new(move |r| r.issuer_key = other), "issuer"),
        (Box::new(|r| r.sectors = vec!["Power".into()]), "sectors"),
        (Box::new(|r| r.sectors = vec![]), "sectors"),
        (Box::new(|r| r.roles = vec!["admin".into()]), "roles"),
        (
            Box::new(|r| r.roles = vec!["witness".into(), "witness".into()]),
            "roles",
        ),
        (
            Box::new(|r| r.jurisdiction = "China".into()),
            "jurisdiction",
        ),
        (Box::new(|r| r.not_after = r.not_before), "not_after"),
        (Box::new(|r| r.name = " padded".into()), "name"),
    ];
    for (change, want) in cases {
        let mut raw = good.clone();
        change(&mut raw);
        let err = store.verify(&sign_raw(&a, &raw), t(T0)).unwrap_err();
        let msg = err.to_string();
        assert_eq!(field_of(err).1, want, "{msg}");
        // The serde path refuses the same payload, with the same message inside.
        let payload = cbor::encode(&raw).unwrap();
        let serde_err = cbor::decode::<Credential>(&payload)
            .unwrap_err()
            .to_string();
        assert!(
            serde_err.contains(&format!("credential {want}: ")),
            "{serde_err} / {msg}"
        );
    }
}

#[test]
fn issuer_must_be_the_signer() {
    // Authority 9 is trusted, but signs a credential naming authority 1 as issuer.
    let mut a = authority(1);
    let raw = raw_from(issue(&mut a, 2).value());
    let b = authority(9);
    let forged = cose::sign(b.signer().as_ref(), &raw).unwrap();
    let err = store_for(&b).verify(&forged, t(T0)).unwrap_err();
    assert!(matches!(err, IdentityError::SignerMismatch { .. }), "{err}");
}

#[test]
fn crl_decode_checks_the_fields() {
    let a = authority(1);
    let base = RawRevocationList {
        version: 1,
        issuer: a.id(),
        issuer_key: a.public_key(),
        sequence: 1,
        issued_at: t(T0),
        next_update: t(T0 + DAY_MS),
        serials: vec![1, 2, 3],
    };
    let cases: Vec<(Change<RawRevocationList>, &str)> = vec![
        (Box::new(|r| r.serials = vec![2, 1]), "serials"),
        (Box::new(|r| r.serials = vec![2, 2]), "serials"),
        (Box::new(|r| r.serials = vec![0, 2]), "serials"),
        (Box::new(|r| r.next_update = r.issued_at), "next_update"),
        (Box::new(|r| r.sequence = 0), "sequence"),
        (Box::new(|r| r.version = 0), "version"),
    ];
    let mut store = store_for(&a);
    store
        .add_revocation_list(&cose::sign(a.signer().as_ref(), &base).unwrap(), t(T0))
        .unwrap();
    for (change, want) in cases {
        let mut raw = base.clone();
        change(&mut raw);
        let env = cose::sign(a.signer().as_ref(), &raw).unwrap();
        let err = store_for(&a).add_revocation_list(&env, t(T0)).unwrap_err();
        let msg = err.to_string();
        let (object, field, _) = field_of(err);
        assert_eq!((object, field), ("revocation list", want), "{msg}");
    }
}

#[test]
fn revoking_unknown_serials_is_refused() {
    let mut a = authority(1);
    assert!(matches!(
        a.revoke(1),
        Err(IdentityError::UnknownSerial { serial: 1, last: 0 })
    ));
    issue(&mut a, 2);
    assert!(matches!(
        a.revoke(0),
        Err(IdentityError::UnknownSerial { .. })
    ));
    assert!(matches!(
        a.revoke(2),
        Err(IdentityError::UnknownSerial { .. })
    ));
    assert!(a.revoke(1).unwrap());
}

#[test]
fn state_round_trips_and_is_checked() {
    let mut a = authority(1);
    for s in 2..6 {
        issue(&mut a, s);
    }
    a.revoke(2).unwrap();
    a.revoke(4).unwrap();
    a.revocation_list(t(T0), t(T0 + DAY_MS)).unwrap();
    a.rollover(key(7), t(T0)).unwrap();
    let state = a.state().clone();
    let bytes = cbor::encode(&state).unwrap();
    assert_eq!(cbor::decode::<AuthorityState>(&bytes).unwrap(), state);
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(
        serde_json::from_str::<AuthorityState>(&json).unwrap(),
        state
    );
    assert!(json.contains(&format!(
        "\"public_key\":\"{}\"",
        key(7).public_key().to_hex()
    )));

    let back = Authority::from_parts(key(7), state.clone()).unwrap();
    assert_eq!(back.state(), &state);
    assert!(matches!(
        Authority::from_parts(key(1), state),
        Err(IdentityError::KeyMismatch { .. })
    ));

    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["revoked"] = serde_json::json!([2, 99]);
    let err = serde_json::from_value::<AuthorityState>(v.clone()).unwrap_err();
    assert!(err.to_string().contains("authority state revoked"), "{err}");
    v["revoked"] = serde_json::json!([4, 2]);
    assert!(serde_json::from_value::<AuthorityState>(v.clone()).is_err());
    v["revoked"] = serde_json::json!([]);
    let mut unknown = v.clone();
    unknown["extra"] = serde_json::json!(1);
    assert!(serde_json::from_value::<AuthorityState>(unknown).is_err());
    v["name"] = serde_json::json!("");
    assert!(serde_json::from_value::<AuthorityState>(v).is_err());
}

#[test]
fn authority_name_is_checked() {
    assert!(matches!(
        Authority::new("", key(1)),
        Err(IdentityError::Field(FieldError { field: "name", .. }))
    ));
}

#[test]
fn errors_are_single_lowercase_lines() {
    let mut a = authority(1);
    let issued = a
        .admit(&admission(&key(2).public_key(), T0, T0 + 10), t(T0))
        .unwrap();
    let store = store_for(&a);
    let mut errors = vec![
        store.verify(issued.envelope(), t(T0 + 10)).unwrap_err(),
        store.verify(issued.envelope(), t(0)).unwrap_err(),
        TrustStore::new()
            .verify(issued.envelope(), t(T0))
            .unwrap_err(),
        store.verify(b"", t(T0)).unwrap_err(),
    ];
    errors.push(a.revoke(77).unwrap_err());
    for e in errors {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
        assert!(msg.chars().next().unwrap().is_lowercase(), "{msg}");
    }
}

/// The example credential in `spec/identity.md`; the bytes must not change.
#[test]
fn spec_example_credential() {
    let mut a = Authority::new("Shanxi Energy Data Space", key(1)).unwrap();
    let not_before = Timestamp::parse_rfc3339("2027-03-01T00:00:00Z").unwrap();
    let issued = a
        .admit(
            &Admission {
                subject_key: key(2).public_key(),
                name: "Taiyuan Grid Co.".into(),
                sectors: vec![Sector::POWER],
                roles: vec![Role::Provider, Role::Consumer],
                jurisdiction: "CN-SX".parse().unwrap(),
                not_before,
                not_after: not_before.saturating_add_millis(365 * DAY_MS),
            },
            not_before,
        )
        .unwrap();
    let payload = cbor::encode(issued.value()).unwrap();
    let envelope = hex::encode(issued.envelope());
    if std::env::var_os("TDS_PRINT_SPEC").is_some() {
        println!("payload {}", hex::encode(&payload));
        println!("envelope {envelope}");
        println!("id {}", issued.id().unwrap());
        println!("authority {} {}", a.public_key().to_hex(), a.id());
        println!(
            "subject {} {}",
            key(2).public_key().to_hex(),
            issued.subject()
        );
    }
    assert_eq!(hex::encode(&payload), SPEC_PAYLOAD);
    assert_eq!(envelope, SPEC_ENVELOPE);
}

/// The hex blocks of `spec/identity.md` §9 (payload, protected header, signature) and the
/// ids in its text are these bytes.
#[test]
fn spec_document_matches_the_example() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../spec/identity.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim()) {
            (None, "```hex") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                let code = text.split('#').next().unwrap_or_default();
                block.extend(code.chars().filter(|c| !c.is_whitespace()));
            }
            (None, _) => {}
        }
    }
    let envelope = hex::decode(SPEC_ENVELOPE).unwrap();
    let protected = hex::encode(&envelope[4..4 + 72]);
    let signature = hex::encode(&envelope[envelope.len() - 64..]);
    assert_eq!(blocks, vec![SPEC_PAYLOAD.to_owned(), protected, signature]);
    let payload = hex::decode(SPEC_PAYLOAD).unwrap();
    let id = Domain::CREDENTIAL.hash(&payload).to_string();
    assert!(doc.contains(&format!("Credential id: `{id}`")), "{id}");
    assert!(doc.contains(&format!("authority id          {}", key(1).id())));
    assert!(doc.contains(&format!("member id             {}", key(2).id())));
    assert!(doc.contains(&format!("The envelope ({} bytes)", envelope.len())));
    assert!(doc.contains(&format!("The payload ({} bytes)", payload.len())));
}

const SPEC_PAYLOAD: &str = concat!(
    "ad646e616d65705461697975616e204772696420436f2e65726f6c6573826870726f766964657268",
    "636f6e73756d65726669737375657258203b062c02978e3e9a38d22c92a771ed9f419fd4a145a439",
    "c7589f4e7c1cb90ba46673657269616c0167736563746f72738165706f776572677375626a656374",
    "5820e10d98124833cb176c7446446008f05b2a0c45b0469100baa8d43821450969dc677665727369",
    "6f6e01696973737565645f61741b000001a3fe630800696e6f745f61667465721b000001ab561434",
    "006a6973737565725f6b657958208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf374",
    "8801b40f6f5c6a6e6f745f6265666f72651b000001a3fe6308006b7375626a6563745f6b65795820",
    "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3946c6a757269736469",
    "6374696f6e65434e2d5358",
);
const SPEC_ENVELOPE: &str = concat!(
    "d2845848a3012703781f6170706c69636174696f6e2f7464732e63726564656e7469616c2b63626f",
    "720458203b062c02978e3e9a38d22c92a771ed9f419fd4a145a439c7589f4e7c1cb90ba4a059014b",
    "ad646e616d65705461697975616e204772696420436f2e65726f6c6573826870726f766964657268",
    "636f6e73756d65726669737375657258203b062c02978e3e9a38d22c92a771ed9f419fd4a145a439",
    "c7589f4e7c1cb90ba46673657269616c0167736563746f72738165706f776572677375626a656374",
    "5820e10d98124833cb176c7446446008f05b2a0c45b0469100baa8d43821450969dc677665727369",
    "6f6e01696973737565645f61741b000001a3fe630800696e6f745f61667465721b000001ab561434",
    "006a6973737565725f6b657958208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf374",
    "8801b40f6f5c6a6e6f745f6265666f72651b000001a3fe6308006b7375626a6563745f6b65795820",
    "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3946c6a757269736469",
    "6374696f6e65434e2d5358584036b2b3272b66c69168f4fd46c92aa93d9252529d20df95856a517c",
    "b640b38c347ab3da091a15d87e8e903993f7db1ed8ea12a5d0de813d18ffc74c4005eb9a0e",
);

// ---------------------------------------------------------------------------------------
// Property tests: every type through canonical CBOR, and the signed ones through
// sign / open / verify.
// ---------------------------------------------------------------------------------------

fn sector() -> impl Strategy<Value = Sector> {
    "[a-z]([a-z0-9-]{0,30}[a-z0-9])?".prop_map(|s| s.parse().unwrap())
}

fn jurisdiction() -> impl Strategy<Value = Jurisdiction> {
    "[A-Z]{2}(-[A-Z0-9]{1,3})?".prop_map(|s| s.parse().unwrap())
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9\u{4e00}-\u{4e20}]([A-Za-z0-9 .\u{4e00}-\u{4e20}]{0,100}[A-Za-z0-9])?"
}

fn roles() -> impl Strategy<Value = Vec<Role>> {
    proptest::sample::subsequence(Role::ALL.to_vec(), 1..=5).prop_shuffle()
}

fn sectors() -> impl Strategy<Value = Vec<Sector>> {
    proptest::collection::btree_set(sector(), 1..=MAX_SECTORS)
        .prop_map(|s| s.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
}

prop_compose! {
    fn credential()(
        serial in 1..=u64::MAX,
        issuer in any::<[u8; 32]>(),
        subject in any::<[u8; 32]>(),
        name in name(),
        sectors in sectors(),
        roles in roles(),
        jurisdiction in jurisdiction(),
        not_before in 0..u64::MAX - 1,
        len in 1..u64::MAX,
        issued_at in any::<u64>(),
    ) -> (SigningKey, Credential) {
        let issuer = SigningKey::from_seed(&issuer);
        let not_after = not_before.saturating_add(len).max(not_before + 1);
        let c = Credential::new(
            serial,
            issuer.public_key(),
            SigningKey::from_seed(&subject).public_key(),
            name,
            sectors,
            roles,
            jurisdiction,
            t(not_before),
            t(not_after),
            t(issued_at),
        )
        .unwrap();
        (issuer, c)
    }
}

prop_compose! {
    fn revocation_list()(
        issuer in any::<[u8; 32]>(),
        sequence in 1..u64::MAX,
        issued_at in 0..u64::MAX - 1,
        len in 1..u64::MAX,
        serials in proptest::collection::btree_set(1..u64::MAX, 0..64),
    ) -> (SigningKey, RevocationList) {
        let issuer = SigningKey::from_seed(&issuer);
        let next_update = issued_at.saturating_add(len).max(issued_at + 1);
        let list = RevocationList::new(
            issuer.public_key(),
            sequence,
            t(issued_at),
            t(next_update),
            serials.into_iter().collect(),
        )
        .unwrap();
        (issuer, list)
    }
}

prop_compose! {
    fn rollover()(
        old in any::<[u8; 32]>(),
        new in any::<[u8; 32]>(),
        authority in name(),
        issued_at in any::<u64>(),
    ) -> (SigningKey, KeyRollover) {
        let old = SigningKey::from_seed(&old);
        let mut new = SigningKey::from_seed(&new);
        if new.public_key() == old.public_key() {
            new = SigningKey::from_seed(&[0x55; 32]);
        }
        let r = KeyRollover::new(authority, old.public_key(), new.public_key(), t(issued_at)).unwrap();
        (old, r)
    }
}

fn cbor_round_trip<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = cbor::encode(value).unwrap();
    let back: T = cbor::decode(&bytes).unwrap();
    assert_eq!(&back, value);
    assert_eq!(cbor::encode(&back).unwrap(), bytes);
}

fn cose_round_trip<T>(key: &SigningKey, value: &T)
where
    T: cose::SignedObject + PartialEq + std::fmt::Debug,
{
    let env = cose::sign(key, value).unwrap();
    let opened = cose::open::<T>(&env).unwrap();
    assert_eq!(opened.kid(), key.id());
    let verified = opened.verify(&key.public_key()).unwrap();
    assert_eq!(verified.value(), value);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_credential_round_trips((key, c) in credential()) {
        cbor_round_trip(&c);
        cose_round_trip(&key, &c);
        let mut store = TrustStore::new();
        store.dangerous().accept_missing_revocation_lists();
        store.add_authority(key.public_key());
        let env = cose::sign(&key, &c).unwrap();
        let v = store.verify(&env, c.not_before()).unwrap();
        prop_assert_eq!(v.credential(), &c);
        prop_assert_eq!(v.id(), c.id().unwrap());
    }

    #[test]
    fn prop_revocation_list_round_trips((key, list) in revocation_list(), probe in any::<u64>()) {
        cbor_round_trip(&list);
        cose_round_trip(&key, &list);
        let mut store = TrustStore::new();
        store.dangerous().accept_missing_revocation_lists();
        store.add_authority(key.public_key());
        let env = cose::sign(&key, &list).unwrap();
        let held = store.add_revocation_list(&env, list.issued_at()).unwrap();
        prop_assert_eq!(held, &list);
        prop_assert_eq!(list.is_revoked(probe), list.serials().contains(&probe));
    }

    #[test]
    fn prop_rollover_round_trips((key, r) in rollover()) {
        cbor_round_trip(&r);
        cose_round_trip(&key, &r);
        let mut store = TrustStore::new();
        store.dangerous().accept_missing_revocation_lists();
        store.add_authority(key.public_key());
        let env = cose::sign(&key, &r).unwrap();
        prop_assert_eq!(store.add_rollover(&env).unwrap(), r.new_id());
        prop_assert!(store.is_trusted(&r.new_id()));
    }

    #[test]
    fn prop_authority_state_round_trips(
        seed in any::<[u8; 32]>(),
        n in 0u64..6,
        revoke in proptest::collection::vec(any::<bool>(), 6),
        crls in 0u64..3,
        roll in any::<bool>(),
    ) {
        let mut a = Authority::new("Prop Authority", SigningKey::from_seed(&seed)).unwrap();
        for i in 0..n {
            a.admit(&admission(&key(2).public_key(), T0, T0 + 1 + i), t(T0)).unwrap();
        }
        for s in 1..=n {
            if revoke[s as usize] {
                a.revoke(s).unwrap();
            }
        }
        for _ in 0..crls {
            a.revocation_list(t(T0), t(T0 + 1)).unwrap();
        }
        if roll {
            let mut next = seed;
            next[0] ^= 1;
            a.rollover(SigningKey::from_seed(&next), t(T0)).unwrap();
        }
        cbor_round_trip(a.state());
        let json = serde_json::to_vec(a.state()).unwrap();
        prop_assert_eq!(&serde_json::from_slice::<AuthorityState>(&json).unwrap(), a.state());
    }

    #[test]
    fn prop_small_types_round_trip(
        seed in any::<[u8; 32]>(),
        s in sector(),
        j in jurisdiction(),
        r in proptest::sample::select(Role::ALL.to_vec()),
    ) {
        cbor_round_trip(&ParticipantId::of(&SigningKey::from_seed(&seed).public_key()));
        cbor_round_trip(&s);
        cbor_round_trip(&j);
        cbor_round_trip(&r);
        prop_assert_eq!(s.to_string().parse::<Sector>().unwrap(), s);
        prop_assert_eq!(j.to_string().parse::<Jurisdiction>().unwrap(), j);
    }

    #[test]
    fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut store = TrustStore::new();
        store.dangerous().accept_missing_revocation_lists();
        store.add_authority(key(1).public_key());
        let _ = store.verify(&bytes, t(T0));
        let _ = store.add_revocation_list(&bytes, t(T0));
        let _ = store.add_rollover(&bytes);
        let _ = cbor::decode::<Credential>(&bytes);
        let _ = cbor::decode::<AuthorityState>(&bytes);
    }
}
