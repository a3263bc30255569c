//! Helpers shared by the examples.
//!
//! [`demo`] builds a throw-away data space (an authority with a fixed demo key and its
//! members) so the provider and consumer examples can run on one machine without any
//! set-up. A real participant gets its credential from its authority (`tds join`) and
//! keeps its key in a file; never use these fixed keys outside a demo.

/// A throw-away data space for the examples.
pub mod demo {
    use std::sync::Arc;

    use anyhow::Result;
    use tds_core::time::DAY_MS;
    use tds_core::{Signer, SigningKey, Timestamp};
    use tds_identity::{Admission, Authority, Role, Sector, TrustStore};

    /// A member of the demo space: its key, credential and the space's trust store and
    /// revocation list.
    pub struct Member {
        /// The member's signing key.
        pub key: Arc<SigningKey>,
        /// Its membership credential (COSE bytes).
        pub credential: Vec<u8>,
        /// A trust store holding the demo authority and its current revocation list.
        pub trust: TrustStore,
        /// The authority's current revocation list.
        pub crl: Vec<u8>,
    }

    /// The demo authority's key (fixed, public: a demo only).
    pub fn authority_key() -> SigningKey {
        SigningKey::from_seed(&[0xA5; 32])
    }

    /// Admits the member whose key is derived from `seed`, in `sector`, valid for a day
    /// from `now`. Every call with the same seed gives the same key.
    pub fn member(seed: u8, name: &str, sector: Sector, now: Timestamp) -> Result<Member> {
        let mut authority = Authority::new("Demo Data Space", authority_key())?;
        let key = Arc::new(SigningKey::from_seed(&[seed; 32]));
        let credential = authority
            .admit(
                &Admission {
                    subject_key: key.public_key(),
                    name: name.into(),
                    sectors: vec![sector],
                    roles: vec![Role::Provider, Role::Consumer],
                    jurisdiction: "CN-SX".parse()?,
                    not_before: Timestamp::from_millis(now.as_millis().saturating_sub(60_000)),
                    not_after: now.saturating_add_millis(DAY_MS),
                },
                now,
            )?
            .into_envelope();
        let crl = authority
            .revocation_list(now, now.saturating_add_millis(DAY_MS))?
            .into_envelope();
        let mut trust = TrustStore::new();
        trust.add_authority(authority.public_key());
        trust.add_revocation_list(&crl, now)?;
        Ok(Member {
            key,
            credential,
            trust,
            crl,
        })
    }
}
