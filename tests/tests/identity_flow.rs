//! The identity flow across crates: the `issue_credential` example, run as a test, and
//! the same objects carried as bytes between an authority and a verifier that share
//! nothing but the authority's public key.

use tds_core::time::DAY_MS;
use tds_core::{cbor, SigningKey, Timestamp};
use tds_identity::{Admission, Authority, AuthorityState, IdentityError, Role, Sector, TrustStore};

#[expect(dead_code, reason = "the example's main is not called here")]
#[path = "../../examples/examples/issue_credential.rs"]
mod issue_credential;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

#[test]
fn issue_credential_example_runs() {
    issue_credential::run(NOW).unwrap();
}

#[test]
fn authority_restarts_from_its_stored_state() {
    let key_seed = [11u8; 32];
    let mut authority =
        Authority::new("Shanxi Energy Data Space", SigningKey::from_seed(&key_seed)).unwrap();
    let member = SigningKey::from_seed(&[12; 32]);
    let admission = Admission {
        subject_key: member.public_key(),
        name: "Datong Wind Farm".into(),
        sectors: vec![Sector::POWER, Sector::WEATHER],
        roles: vec![Role::Provider],
        jurisdiction: "CN-SX".parse().unwrap(),
        not_before: NOW,
        not_after: NOW.saturating_add_millis(90 * DAY_MS),
    };
    let first = authority.admit(&admission, NOW).unwrap().into_envelope();

    // Persist and reload (as the node does), then carry on numbering.
    let stored = cbor::encode(authority.state()).unwrap();
    drop(authority);
    let state: AuthorityState = cbor::decode(&stored).unwrap();
    let mut authority = Authority::from_parts(SigningKey::from_seed(&key_seed), state).unwrap();
    let second = authority.admit(&admission, NOW).unwrap();
    assert_eq!(second.serial(), 2);

    // The verifier gets only bytes and a public key.
    let mut store = TrustStore::new();
    store.add_authority(authority.public_key());
    store.dangerous().accept_missing_revocation_lists();
    let v1 = store.verify(&first, NOW).unwrap();
    let v2 = store.verify(second.envelope(), NOW).unwrap();
    assert_eq!(v1.subject(), v2.subject());
    assert_ne!(v1.id(), v2.id());

    // Key rotation for the member: new credential, old serial revoked.
    let new_member = SigningKey::from_seed(&[13; 32]);
    let rotated = authority
        .rotate_subject_key(&v1, new_member.public_key(), NOW.saturating_add_millis(1))
        .unwrap();
    let crl = authority
        .revocation_list(NOW, NOW.saturating_add_millis(DAY_MS))
        .unwrap();
    store.add_revocation_list(crl.envelope(), NOW).unwrap();
    assert!(matches!(
        store.verify(&first, NOW),
        Err(IdentityError::Revoked { serial: 1, .. })
    ));
    let v3 = store
        .verify(rotated.envelope(), NOW.saturating_add_millis(1))
        .unwrap();
    assert_eq!(v3.subject_key(), &new_member.public_key());
    assert!(v3.revocation_checked());
    assert_eq!(v3.not_after(), v1.not_after());
}
