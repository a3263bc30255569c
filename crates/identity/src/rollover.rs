//! Authority key rollover statements.

use serde::{Deserialize, Serialize};
use tds_core::cose::SignedObject;
use tds_core::{PublicKey, Timestamp};

use crate::attributes::check_name;
use crate::error::{FieldError, Invalid};
use crate::participant::ParticipantId;

/// The key-rollover format version this code reads and writes.
pub const ROLLOVER_VERSION: u64 = 1;

const OBJECT: &str = "key rollover";

/// An authority's statement, signed by its old key, that `new_key` speaks for it from now
/// on.
///
/// A [`TrustStore`](crate::TrustStore) that trusts `old_key` and is given the signed
/// statement trusts `new_key` for the same authority; chains of rollovers are followed one
/// link at a time, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawKeyRollover")]
pub struct KeyRollover {
    version: u64,
    authority: String,
    old_key: PublicKey,
    new_key: PublicKey,
    issued_at: Timestamp,
}

impl SignedObject for KeyRollover {
    const CONTENT_TYPE: &'static str = "application/tds.key-rollover+cbor";
}

/// The wire form before its fields are checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RawKeyRollover {
    pub(crate) version: u64,
    pub(crate) authority: String,
    pub(crate) old_key: PublicKey,
    pub(crate) new_key: PublicKey,
    pub(crate) issued_at: Timestamp,
}

impl SignedObject for RawKeyRollover {
    const CONTENT_TYPE: &'static str = KeyRollover::CONTENT_TYPE;
}

fn field(field: &'static str, reason: Invalid) -> FieldError {
    FieldError::new(OBJECT, field, reason)
}

impl TryFrom<RawKeyRollover> for KeyRollover {
    type Error = FieldError;

    fn try_from(raw: RawKeyRollover) -> Result<Self, FieldError> {
        let rollover = KeyRollover {
            version: raw.version,
            authority: raw.authority,
            old_key: raw.old_key,
            new_key: raw.new_key,
            issued_at: raw.issued_at,
        };
        rollover.check()?;
        Ok(rollover)
    }
}

impl KeyRollover {
    /// Assembles a statement and checks its rules.
    pub(crate) fn new(
        authority: String,
        old_key: PublicKey,
        new_key: PublicKey,
        issued_at: Timestamp,
    ) -> Result<Self, FieldError> {
        let rollover = KeyRollover {
            version: ROLLOVER_VERSION,
            authority,
            old_key,
            new_key,
            issued_at,
        };
        rollover.check()?;
        Ok(rollover)
    }

    fn check(&self) -> Result<(), FieldError> {
        if self.version != ROLLOVER_VERSION {
            return Err(field(
                "version",
                Invalid::UnsupportedVersion {
                    found: self.version,
                    expected: ROLLOVER_VERSION,
                },
            ));
        }
        check_name(&self.authority).map_err(|e| field("authority", e))?;
        if self.old_key == self.new_key {
            return Err(field("new_key", Invalid::NotDifferent("old_key")));
        }
        Ok(())
    }

    /// The statement id: the `tds/key-rollover/v1` hash of its canonical CBOR (the signed
    /// payload).
    pub fn id(&self) -> Result<tds_core::Hash256, tds_core::cbor::CborError> {
        Ok(tds_core::Domain::ROLLOVER.hash(&tds_core::cbor::encode(self)?))
    }

    /// The format version ([`ROLLOVER_VERSION`]).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The authority's display name.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The key being retired (the signer).
    pub fn old_key(&self) -> &PublicKey {
        &self.old_key
    }

    /// The key taking over.
    pub fn new_key(&self) -> &PublicKey {
        &self.new_key
    }

    /// The id of the old key.
    pub fn old_id(&self) -> ParticipantId {
        ParticipantId::of(&self.old_key)
    }

    /// The id of the new key.
    pub fn new_id(&self) -> ParticipantId {
        ParticipantId::of(&self.new_key)
    }

    /// When the statement was signed.
    pub fn issued_at(&self) -> Timestamp {
        self.issued_at
    }
}
