//! Signed revocation lists.

use serde::{Deserialize, Serialize};
use tds_core::cose::SignedObject;
use tds_core::hash::{Domain, Hash256};
use tds_core::{cbor, PublicKey, Timestamp};

use crate::error::{FieldError, Invalid};
use crate::participant::ParticipantId;

/// The revocation-list format version this code reads and writes.
pub const CRL_VERSION: u64 = 1;

const OBJECT: &str = "revocation list";

/// A revocation list: the serial numbers an authority has revoked, signed, numbered and
/// dated.
///
/// `sequence` grows by one with every list the authority signs, so a verifier can refuse an
/// older list offered in place of a newer one. A list is *stale* from `next_update` on; a
/// [`TrustStore`](crate::TrustStore) refuses stale lists unless told otherwise.
///
/// The list names every serial the authority ever revoked, across its key rollovers, in
/// ascending order without repeats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRevocationList")]
pub struct RevocationList {
    version: u64,
    issuer: ParticipantId,
    issuer_key: PublicKey,
    sequence: u64,
    issued_at: Timestamp,
    next_update: Timestamp,
    serials: Vec<u64>,
}

impl SignedObject for RevocationList {
    const CONTENT_TYPE: &'static str = "application/tds.crl+cbor";
}

/// The wire form before its fields are checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RawRevocationList {
    pub(crate) version: u64,
    pub(crate) issuer: ParticipantId,
    pub(crate) issuer_key: PublicKey,
    pub(crate) sequence: u64,
    pub(crate) issued_at: Timestamp,
    pub(crate) next_update: Timestamp,
    pub(crate) serials: Vec<u64>,
}

impl SignedObject for RawRevocationList {
    const CONTENT_TYPE: &'static str = RevocationList::CONTENT_TYPE;
}

fn field(field: &'static str, reason: Invalid) -> FieldError {
    FieldError::new(OBJECT, field, reason)
}

impl TryFrom<RawRevocationList> for RevocationList {
    type Error = FieldError;

    fn try_from(raw: RawRevocationList) -> Result<Self, FieldError> {
        let list = RevocationList {
            version: raw.version,
            issuer: raw.issuer,
            issuer_key: raw.issuer_key,
            sequence: raw.sequence,
            issued_at: raw.issued_at,
            next_update: raw.next_update,
            serials: raw.serials,
        };
        list.check()?;
        Ok(list)
    }
}

impl RevocationList {
    /// Assembles a list and checks its rules.
    pub(crate) fn new(
        issuer_key: PublicKey,
        sequence: u64,
        issued_at: Timestamp,
        next_update: Timestamp,
        serials: Vec<u64>,
    ) -> Result<Self, FieldError> {
        let list = RevocationList {
            version: CRL_VERSION,
            issuer: ParticipantId::of(&issuer_key),
            issuer_key,
            sequence,
            issued_at,
            next_update,
            serials,
        };
        list.check()?;
        Ok(list)
    }

    fn check(&self) -> Result<(), FieldError> {
        if self.version != CRL_VERSION {
            return Err(field(
                "version",
                Invalid::UnsupportedVersion {
                    found: self.version,
                    expected: CRL_VERSION,
                },
            ));
        }
        if !self.issuer.is_id_of(&self.issuer_key) {
            return Err(field("issuer", Invalid::NotKeyId("issuer_key")));
        }
        if self.sequence == 0 {
            return Err(field("sequence", Invalid::OutOfRange("must be at least 1")));
        }
        if self.next_update <= self.issued_at {
            return Err(field("next_update", Invalid::NotLater("issued_at")));
        }
        if self
            .serials
            .windows(2)
            .any(|w| matches!(w, [a, b] if a >= b))
        {
            return Err(field("serials", Invalid::NotSortedUnique));
        }
        if self.serials.first() == Some(&0) {
            return Err(field(
                "serials",
                Invalid::OutOfRange("serial 0 is never issued"),
            ));
        }
        Ok(())
    }

    /// The list id: the `tds/crl/v1` hash of its canonical CBOR (the signed payload).
    pub fn id(&self) -> Result<Hash256, cbor::CborError> {
        Ok(Domain::CRL.hash(&cbor::encode(self)?))
    }

    /// The format version ([`CRL_VERSION`]).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The id of the authority key that signed the list.
    pub fn issuer(&self) -> ParticipantId {
        self.issuer
    }

    /// The authority key that signed the list.
    pub fn issuer_key(&self) -> &PublicKey {
        &self.issuer_key
    }

    /// The list's number; each new list from an authority has a higher one.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// When the list was signed.
    pub fn issued_at(&self) -> Timestamp {
        self.issued_at
    }

    /// When the next list is due; from then on this one is stale.
    pub fn next_update(&self) -> Timestamp {
        self.next_update
    }

    /// The revoked serials, ascending, without repeats.
    pub fn serials(&self) -> &[u64] {
        &self.serials
    }

    /// Whether `serial` is revoked.
    pub fn is_revoked(&self, serial: u64) -> bool {
        self.serials.binary_search(&serial).is_ok()
    }

    /// Whether the list is past its `next_update` at `now`.
    pub fn is_stale(&self, now: Timestamp) -> bool {
        now >= self.next_update
    }
}
