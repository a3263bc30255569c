//! Public-data licences: the authority lets one operator offer a public data resource
//! under at most a policy ("public data authorized operation").
//!
//! ```text
//! authority: Licence  --COSE_Sign1-->  operator      (resource, licensee, policy, validity)
//! operator:  Offer { licence: Some(licence bytes), .. }  --COSE_Sign1-->  consumers
//! ```
//!
//! The operator's offers embed the licence, so an offer proves its chain by itself: a
//! consumer checks that a trusted authority signed the licence, that it names the offer's
//! provider, that it is valid, that the offer does not outlive it, and that every use the
//! offer permits, the licence permits ([`VerifiedLicence::check_offer`]). The operator's
//! own connector makes the same check before it signs an offer, so an offer outside its
//! licence is never published.

use serde::{Deserialize, Serialize};
use tds_core::cose::{self, CoseError, SignedObject};
use tds_core::{Domain, ErrorCode, Hash256, PublicKey, Signer, Timestamp};

use crate::compiled::CompiledPolicy;
use crate::contain::{contains, Containment};
use crate::contract::Offer;
use crate::error::PolicyError;
use crate::eval::Request;
use crate::model::{Policy, Text};

/// The largest licence envelope accepted, in bytes (an offer embeds it).
pub const MAX_LICENCE_LEN: usize = 64 * 1024;

/// A licence to operate a public data resource, signed by the authority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    /// The public data resource it covers (a name the authority gives, e.g.
    /// `public:meteorological-observations`).
    pub resource: Text,
    /// The authority's participant id.
    pub authority: Hash256,
    /// The authority's public key.
    pub authority_key: PublicKey,
    /// The operator's participant id: the only provider whose offers it covers.
    pub licensee: Hash256,
    /// The widest policy the operator may offer: every offer under the licence must be
    /// contained in it.
    pub policy: Policy,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until; no offer under the licence may be valid after it.
    pub not_after: Timestamp,
}

impl SignedObject for Licence {
    const CONTENT_TYPE: &'static str = "application/tds.licence+cbor";
}

impl Licence {
    /// The licence id: `tds/licence/v1` hash of the canonical licence.
    pub fn id(&self) -> Result<Hash256, PolicyError> {
        Ok(Domain::LICENCE.hash(&tds_core::cbor::encode(self)?))
    }
}

/// Why a licence, or an offer under one, was refused. Codes `licence.*`
/// (`spec/policy.md` §9).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LicenceError {
    /// Envelope or signature problem.
    #[error(transparent)]
    Cose(#[from] CoseError),
    /// Policy problem.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The envelope is larger than [`MAX_LICENCE_LEN`].
    #[error("licence: {len} bytes, at most {max} allowed")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Signed by (or naming) a key that is not a trusted authority's.
    #[error("licence: signed by {found}, which is not a trusted authority")]
    NotAuthority {
        /// The id of the key that signed (or is named).
        found: Hash256,
    },
    /// The licence names the signer's id but another key, or the other way round.
    #[error("licence: authority_key is not the key of the authority it names")]
    KeyMismatch,
    /// A licence whose validity ends before it begins.
    #[error("licence: not_after {not_after} is before not_before {not_before}")]
    EmptyValidity {
        /// Start of validity.
        not_before: Timestamp,
        /// End of validity.
        not_after: Timestamp,
    },
    /// The licence is not valid at this time.
    #[error("licence: valid from {not_before} until {not_after}, but it is {now}")]
    NotValid {
        /// Start of validity.
        not_before: Timestamp,
        /// End of validity.
        not_after: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The offer is by another provider than the licensee.
    #[error("licence: issued to {licensee}, but the offer is by {provider}")]
    WrongLicensee {
        /// Whom the licence names.
        licensee: Hash256,
        /// The offer's provider.
        provider: Hash256,
    },
    /// The offer is valid after the licence ends.
    #[error("licence: ends {licence_end}, but the offer is valid until {offer_end}")]
    OutlivesLicence {
        /// The licence's end.
        licence_end: Timestamp,
        /// The offer's end.
        offer_end: Timestamp,
    },
    /// The offer permits a use the licence does not: this request is an example.
    #[error("licence: the offer permits uses beyond the licence; for example this request would be permitted: {}", crate::json::request_to_json(.0))]
    NotContained(Box<Request>),
}

impl ErrorCode for LicenceError {
    fn code(&self) -> &'static str {
        match self {
            LicenceError::Cose(e) => e.code(),
            LicenceError::Policy(e) => e.code(),
            LicenceError::TooLarge { .. } => "licence.too_large",
            LicenceError::NotAuthority { .. } => "licence.not_authority",
            LicenceError::KeyMismatch => "licence.key_mismatch",
            LicenceError::EmptyValidity { .. } => "licence.empty_validity",
            LicenceError::NotValid { .. } => "licence.not_valid",
            LicenceError::WrongLicensee { .. } => "licence.wrong_licensee",
            LicenceError::OutlivesLicence { .. } => "licence.outlives",
            LicenceError::NotContained(_) => "licence.not_contained",
        }
    }
}

/// Signs a licence with the authority's key (the licence must name that key).
pub fn issue(key: &dyn Signer, licence: &Licence) -> Result<Vec<u8>, LicenceError> {
    licence.policy.validate()?;
    let signer = key.public_key();
    if licence.authority_key != signer || licence.authority != signer.id() {
        return Err(LicenceError::KeyMismatch);
    }
    if licence.not_after < licence.not_before {
        return Err(LicenceError::EmptyValidity {
            not_before: licence.not_before,
            not_after: licence.not_after,
        });
    }
    let bytes = cose::sign(key, licence)?;
    if bytes.len() > MAX_LICENCE_LEN {
        return Err(LicenceError::TooLarge {
            len: bytes.len(),
            max: MAX_LICENCE_LEN,
        });
    }
    Ok(bytes)
}

/// A licence whose signature by a trusted authority has been checked, with its policy
/// compiled. Only [`verify`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedLicence {
    licence: Licence,
    policy: CompiledPolicy,
    id: Hash256,
    envelope: Vec<u8>,
}

impl VerifiedLicence {
    /// The licence.
    pub fn licence(&self) -> &Licence {
        &self.licence
    }

    /// The licence's policy, compiled (and so valid).
    pub fn policy(&self) -> &CompiledPolicy {
        &self.policy
    }

    /// The licence id (`tds/licence/v1` hash of the canonical licence).
    pub fn id(&self) -> Hash256 {
        self.id
    }

    /// The signed envelope.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// Checks that the licence is valid at `now`.
    pub fn check_valid_at(&self, now: Timestamp) -> Result<(), LicenceError> {
        let l = &self.licence;
        if now < l.not_before || now > l.not_after {
            return Err(LicenceError::NotValid {
                not_before: l.not_before,
                not_after: l.not_after,
                now,
            });
        }
        Ok(())
    }

    /// Checks an offer under this licence at `now`: the licence is valid, names the
    /// offer's provider, ends no earlier than the offer, and contains the offer's policy
    /// (every use the offer permits, the licence permits).
    pub fn check_offer(&self, offer: &Offer, now: Timestamp) -> Result<(), LicenceError> {
        self.check_valid_at(now)?;
        let l = &self.licence;
        if offer.provider != l.licensee {
            return Err(LicenceError::WrongLicensee {
                licensee: l.licensee,
                provider: offer.provider,
            });
        }
        if offer.not_after > l.not_after {
            return Err(LicenceError::OutlivesLicence {
                licence_end: l.not_after,
                offer_end: offer.not_after,
            });
        }
        match contains(&l.policy, &offer.policy)? {
            Containment::Contained => Ok(()),
            Containment::NotContained(r) => Err(LicenceError::NotContained(r)),
        }
    }
}

/// Verifies a licence's envelope: signed by the authority it names, and that authority
/// is one `is_trusted` accepts (e.g. a trust store's authority keys).
pub fn verify(
    bytes: &[u8],
    is_trusted: impl Fn(&PublicKey) -> bool,
) -> Result<VerifiedLicence, LicenceError> {
    if bytes.len() > MAX_LICENCE_LEN {
        return Err(LicenceError::TooLarge {
            len: bytes.len(),
            max: MAX_LICENCE_LEN,
        });
    }
    let opened = cose::open::<Licence>(bytes)?;
    let key = opened.value().authority_key;
    if opened.value().authority != key.id() {
        return Err(LicenceError::KeyMismatch);
    }
    if !is_trusted(&key) {
        return Err(LicenceError::NotAuthority { found: key.id() });
    }
    let v = opened.verify(&key)?;
    let id = Domain::LICENCE.hash(v.payload());
    let envelope = v.envelope().to_vec();
    let licence = v.into_value();
    let policy = licence.policy.validate()?;
    Ok(VerifiedLicence {
        licence,
        policy,
        id,
        envelope,
    })
}

/// Checks the licence an offer embeds, if any: `Ok(None)` for an offer without one,
/// `Ok(Some(licence))` when the whole chain holds at `now` (see
/// [`VerifiedLicence::check_offer`]).
pub fn check_offer_chain(
    offer: &Offer,
    is_trusted: impl Fn(&PublicKey) -> bool,
    now: Timestamp,
) -> Result<Option<VerifiedLicence>, LicenceError> {
    let Some(bytes) = &offer.licence else {
        return Ok(None);
    };
    let licence = verify(bytes, is_trusted)?;
    licence.check_offer(offer, now)?;
    Ok(Some(licence))
}
