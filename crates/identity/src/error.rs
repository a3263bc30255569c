//! Errors: [`FieldError`] for a field that breaks a rule, [`IdentityError`] for everything
//! else the crate refuses.

use tds_core::cbor::CborError;
use tds_core::cose::CoseError;
use tds_core::key::KeyError;
use tds_core::Timestamp;

use crate::participant::ParticipantId;

/// What is wrong with a field's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// An empty string or list where at least one entry is required.
    #[error("must not be empty")]
    Empty,
    /// A string longer than allowed.
    #[error("{len} characters exceeds the limit of {max}")]
    TooLong {
        /// The length found, in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list longer than allowed.
    #[error("{count} entries exceeds the limit of {max}")]
    TooMany {
        /// The number of entries found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The same entry twice in a list.
    #[error("{0:?} appears more than once")]
    Duplicate(String),
    /// A list of numbers that is not strictly ascending.
    #[error("must be sorted in ascending order without repeats")]
    NotSortedUnique,
    /// A sector that is not a lowercase token.
    #[error("{0:?} is not a lowercase token (a-z, 0-9 and '-', starting with a letter, not ending with '-', at most 32 characters)")]
    NotAToken(String),
    /// A role that is not one of the five.
    #[error("unknown role {0:?} (expected provider, consumer, operator, authority or witness)")]
    UnknownRole(String),
    /// A jurisdiction that is not a region code.
    #[error("{0:?} is not a region code such as CN or CN-SX (two capital letters, optionally '-' and 1 to 3 capital letters or digits)")]
    NotARegion(String),
    /// Display text with control characters or surrounding white space.
    #[error("{0}")]
    BadText(&'static str),
    /// An id that is not the hash of the key it stands beside.
    #[error("is not the id of {0}")]
    NotKeyId(&'static str),
    /// A time that must come after another one.
    #[error("must be later than {0}")]
    NotLater(&'static str),
    /// A value that must differ from another one.
    #[error("must differ from {0}")]
    NotDifferent(&'static str),
    /// A number outside its allowed range.
    #[error("{0}")]
    OutOfRange(&'static str),
    /// A format version this code does not know.
    #[error("version {found} is not supported (expected {expected})")]
    UnsupportedVersion {
        /// The version found.
        found: u64,
        /// The version this code reads and writes.
        expected: u64,
    },
}

/// A field of an object that breaks a rule. Displayed as `<object> <field>: <reason>`,
/// for example `credential not_after: must be later than not_before`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object} {field}: {reason}")]
pub struct FieldError {
    /// The kind of object: `credential`, `revocation list`, `key rollover` or
    /// `authority state`.
    pub object: &'static str,
    /// The field, by its CBOR key name.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: Invalid,
}

impl FieldError {
    pub(crate) fn new(object: &'static str, field: &'static str, reason: Invalid) -> Self {
        FieldError {
            object,
            field,
            reason,
        }
    }
}

/// Why an identity object was refused or an authority operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A field breaks a rule.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The COSE envelope was refused (structure, content type, signature).
    #[error(transparent)]
    Envelope(#[from] CoseError),
    /// Bytes that are not the canonical CBOR of the expected type.
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// A key could not be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// An object larger than its limit.
    #[error("{object}: {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The kind of object.
        object: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Signed by a key the trust store does not trust.
    #[error("{object}: signed by {kid}, which is not a trusted authority key")]
    UntrustedSigner {
        /// The kind of object.
        object: &'static str,
        /// The key id in the envelope.
        kid: ParticipantId,
    },
    /// The issuer the object names is not the key that signed it.
    #[error("{object}: names {named} but is signed by {kid}")]
    SignerMismatch {
        /// The kind of object.
        object: &'static str,
        /// The key id the object names (issuer, or the old key of a rollover).
        named: ParticipantId,
        /// The key id that signed it.
        kid: ParticipantId,
    },
    /// A credential whose validity has not started.
    #[error("credential: not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Start of validity.
        not_before: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// A credential whose validity has ended.
    #[error("credential: expired at {not_after} (now {now})")]
    Expired {
        /// End of validity (exclusive).
        not_after: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// A credential whose serial is on the authority's revocation list.
    #[error("credential: serial {serial} is revoked (revocation list sequence {sequence})")]
    Revoked {
        /// The credential's serial.
        serial: u64,
        /// The sequence number of the list that revokes it.
        sequence: u64,
    },
    /// The authority's own records revoke the credential (no list needed).
    #[error("credential: serial {serial} is revoked by this authority")]
    RevokedHere {
        /// The credential's serial.
        serial: u64,
    },
    /// A revocation list past its `next_update`, refused because freshness is required.
    #[error("revocation list: stale since {next_update} (now {now}); fetch a current one")]
    StaleRevocationList {
        /// When the list should have been replaced.
        next_update: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// No revocation list is held for the issuing authority and one is required.
    #[error("credential: no revocation list is held for issuer {issuer} and one is required")]
    RevocationListMissing {
        /// The credential's issuer.
        issuer: ParticipantId,
    },
    /// A revocation list older than the one already held (a rollback).
    #[error("revocation list: sequence {offered} is older than the held sequence {held}")]
    OlderRevocationList {
        /// The sequence of the list offered.
        offered: u64,
        /// The sequence of the list held.
        held: u64,
    },
    /// A revocation list with the same sequence as the held one but other contents.
    #[error("revocation list: sequence {sequence} is already held with different contents")]
    ConflictingRevocationList {
        /// The sequence number both lists carry.
        sequence: u64,
    },
    /// A rollover to a key that already belongs to another trusted authority.
    #[error("key rollover: new key {new} is already trusted as a separate authority")]
    RolloverConflict {
        /// The new key's id.
        new: ParticipantId,
    },
    /// An authority asked to revoke a serial it never issued.
    #[error("authority: serial {serial} was never issued (serials run from 1 to {last})")]
    UnknownSerial {
        /// The serial asked for.
        serial: u64,
        /// The last serial issued (0 if none).
        last: u64,
    },
    /// An authority has issued `u64::MAX` credentials or revocation lists.
    #[error("authority: {0} numbers are exhausted")]
    Exhausted(&'static str),
    /// A credential another authority issued.
    #[error("authority: credential serial {serial} was issued by {issuer}, not by this authority")]
    NotIssuedHere {
        /// The credential's serial.
        serial: u64,
        /// Its issuer.
        issuer: ParticipantId,
    },
    /// A signing key that is not the one the authority state names.
    #[error("authority: signing key {key} does not match the state's key {state}")]
    KeyMismatch {
        /// The id of the signing key offered.
        key: ParticipantId,
        /// The id of the key the state names.
        state: ParticipantId,
    },
}

impl tds_core::ErrorCode for Invalid {
    fn code(&self) -> &'static str {
        match self {
            Invalid::Empty => "identity.field.empty",
            Invalid::TooLong { .. } => "identity.field.too_long",
            Invalid::TooMany { .. } => "identity.field.too_many",
            Invalid::Duplicate(_) => "identity.field.duplicate",
            Invalid::NotSortedUnique => "identity.field.not_sorted_unique",
            Invalid::NotAToken(_) => "identity.field.not_a_token",
            Invalid::UnknownRole(_) => "identity.field.unknown_role",
            Invalid::NotARegion(_) => "identity.field.not_a_region",
            Invalid::BadText(_) => "identity.field.bad_text",
            Invalid::NotKeyId(_) => "identity.field.not_key_id",
            Invalid::NotLater(_) => "identity.field.not_later",
            Invalid::NotDifferent(_) => "identity.field.not_different",
            Invalid::OutOfRange(_) => "identity.field.out_of_range",
            Invalid::UnsupportedVersion { .. } => "identity.field.unsupported_version",
        }
    }
}

impl tds_core::ErrorCode for IdentityError {
    fn code(&self) -> &'static str {
        match self {
            IdentityError::Field(f) => f.reason.code(),
            IdentityError::Envelope(e) => e.code(),
            IdentityError::Cbor(e) => e.code(),
            IdentityError::Key(e) => e.code(),
            IdentityError::TooLarge { .. } => "identity.too_large",
            IdentityError::UntrustedSigner { .. } => "identity.untrusted_signer",
            IdentityError::SignerMismatch { .. } => "identity.signer_mismatch",
            IdentityError::NotYetValid { .. } => "identity.not_yet_valid",
            IdentityError::Expired { .. } => "identity.expired",
            IdentityError::Revoked { .. } => "identity.revoked",
            IdentityError::RevokedHere { .. } => "identity.revoked",
            IdentityError::StaleRevocationList { .. } => "identity.stale_revocation_list",
            IdentityError::RevocationListMissing { .. } => "identity.revocation_list_missing",
            IdentityError::OlderRevocationList { .. } => "identity.older_revocation_list",
            IdentityError::ConflictingRevocationList { .. } => {
                "identity.conflicting_revocation_list"
            }
            IdentityError::RolloverConflict { .. } => "identity.rollover_conflict",
            IdentityError::UnknownSerial { .. } => "identity.unknown_serial",
            IdentityError::Exhausted(_) => "identity.exhausted",
            IdentityError::NotIssuedHere { .. } => "identity.not_issued_here",
            IdentityError::KeyMismatch { .. } => "identity.key_mismatch",
        }
    }
}
