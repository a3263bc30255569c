//! The authority, credentials and trust store the `credential` target and its seeds share.

use tds_core::key::SigningKey;
use tds_core::time::DAY_MS;
use tds_core::Timestamp;
use tds_identity::{Admission, Authority, Jurisdiction, ParticipantId, Role, Sector, TrustStore};

/// The time at which the target verifies (2025-06-15T15:06:40Z).
pub const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);

/// The serial the fixture authority has revoked (its second credential).
pub const REVOKED_SERIAL: u64 = 2;

/// An authority with the fixed key (`crate::KEY_SEED`), the credentials it issued and
/// the revocation list it signed, all at [`NOW`].
pub struct Fixture {
    /// The authority's id.
    pub authority: ParticipantId,
    /// A store that trusts the authority and holds its revocation list.
    pub store: TrustStore,
    /// Credential envelopes: serial 1 (valid), 2 (revoked), 3 (expired at [`NOW`]).
    pub credentials: Vec<Vec<u8>>,
    /// The revocation list envelope (revokes [`REVOKED_SERIAL`]).
    pub revocation_list: Vec<u8>,
}

fn admission(subject: &SigningKey, name: &str, not_after: Timestamp) -> Admission {
    Admission {
        subject_key: subject.public_key(),
        name: name.into(),
        sectors: vec![Sector::POWER, Sector::WEATHER],
        roles: vec![Role::Provider, Role::Consumer],
        jurisdiction: "DE-NI".parse::<Jurisdiction>().expect("a valid region"),
        not_before: Timestamp::from_millis(NOW.as_millis() - 30 * DAY_MS),
        not_after,
    }
}

/// Builds the fixture (deterministic: Ed25519 signatures are).
pub fn fixture() -> Fixture {
    let mut authority =
        Authority::new("Fuzz Data Space Authority", crate::key()).expect("a valid authority");
    let year = Timestamp::from_millis(NOW.as_millis() + 365 * DAY_MS);
    let issued_at = Timestamp::from_millis(NOW.as_millis() - DAY_MS);
    let members = [
        (
            SigningKey::from_seed(&crate::OTHER_KEY_SEED),
            "Stadtwerke Beispiel",
            year,
        ),
        (
            SigningKey::from_seed(&[0x44; 32]),
            "Wetterdienst Nord",
            year,
        ),
        (SigningKey::from_seed(&[0x45; 32]), "Netz Süd", NOW),
    ];
    let credentials = members
        .iter()
        .map(|(key, name, not_after)| {
            authority
                .admit(&admission(key, name, *not_after), issued_at)
                .expect("admission")
                .into_envelope()
        })
        .collect();
    authority.revoke(REVOKED_SERIAL).expect("an issued serial");
    let revocation_list = authority
        .revocation_list(
            issued_at,
            Timestamp::from_millis(NOW.as_millis() + 7 * DAY_MS),
        )
        .expect("a revocation list")
        .into_envelope();
    let mut store = authority.trust_store();
    store
        .add_revocation_list(&revocation_list, NOW)
        .expect("the authority's own list");
    Fixture {
        authority: authority.id(),
        store,
        credentials,
        revocation_list,
    }
}
