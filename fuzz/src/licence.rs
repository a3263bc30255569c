//! The authority, licences and operator offer the `licence` target and its seeds share.

use tds_core::key::SigningKey;
use tds_core::time::DAY_MS;
use tds_core::Timestamp;
use tds_policy::contract::Offer;
use tds_policy::licence::{self, Licence};

/// The time at which the target checks (2025-06-15T15:06:40Z).
pub const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);

/// The licensed operator's key (the second fixed key).
pub fn operator() -> SigningKey {
    SigningKey::from_seed(&crate::OTHER_KEY_SEED)
}

/// The licence the fixed key (the trusted authority) issues to [`operator`]: research
/// and public-service use, no selling, valid a year around [`NOW`].
pub fn licence() -> Licence {
    let authority = crate::key();
    Licence {
        resource: "public:meteorological-observations"
            .parse()
            .expect("a valid name"),
        authority: authority.id(),
        authority_key: authority.public_key(),
        licensee: operator().id(),
        policy: tds_policy::parse(
            "licence",
            "policy set;\n\npermit use\n  when purpose isA research or purpose isA public-service;\n\nprohibit sell;\n",
        )
        .expect("a valid policy"),
        not_before: Timestamp::from_millis(NOW.as_millis() - 30 * DAY_MS),
        not_after: Timestamp::from_millis(NOW.as_millis() + 335 * DAY_MS),
    }
}

/// The operator's offer the target checks each licence against (within [`licence`]).
pub fn offer(licence_bytes: &[u8]) -> Offer {
    let op = operator();
    Offer {
        asset: "urn:asset:observations".parse().expect("a valid name"),
        provider: op.id(),
        provider_key: op.public_key(),
        policy: tds_policy::parse(
            "offer",
            "policy set;\n\npermit use\n  when purpose isA research;\n",
        )
        .expect("a valid policy"),
        price: None,
        not_before: NOW,
        not_after: Timestamp::from_millis(NOW.as_millis() + 30 * DAY_MS),
        licence: Some(licence_bytes.to_vec()),
    }
}

/// Seed licences: (name, envelope).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let authority = crate::key();
    let mut out = vec![(
        "licence_valid",
        licence::issue(&authority, &licence()).expect("issues"),
    )];
    // Too wide for nothing (the offer stays within), but for another licensee.
    let mut other = licence();
    other.licensee = authority.id();
    out.push((
        "licence_other_licensee",
        licence::issue(&authority, &other).expect("issues"),
    ));
    // Expired before NOW.
    let mut old = licence();
    old.not_after = Timestamp::from_millis(NOW.as_millis() - DAY_MS);
    out.push((
        "licence_expired",
        licence::issue(&authority, &old).expect("issues"),
    ));
    // From an authority nobody trusts.
    let stranger = SigningKey::from_seed(&[0x46; 32]);
    let mut rogue = licence();
    rogue.authority = stranger.id();
    rogue.authority_key = stranger.public_key();
    out.push((
        "licence_untrusted",
        licence::issue(&stranger, &rogue).expect("issues"),
    ));
    out
}
