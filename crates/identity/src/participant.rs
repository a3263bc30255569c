//! Participant ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tds_core::hash::ParseHashError;
use tds_core::{Hash256, PublicKey};

/// A participant's id: the `tds/participant/v1` hash of its 32-byte Ed25519 public key,
/// the same value as [`PublicKey::id`] and as the COSE `kid` of everything the key signs.
///
/// Printed as `sha256:<64 lowercase hex digits>`; encoded in CBOR as a 32-byte byte string.
///
/// ```
/// use tds_core::SigningKey;
/// use tds_identity::ParticipantId;
///
/// let key = SigningKey::from_seed(&[1; 32]).public_key();
/// let id = ParticipantId::of(&key);
/// assert_eq!(*id.as_hash(), key.id());
/// assert_eq!(id.to_string().parse::<ParticipantId>()?, id);
/// # Ok::<(), tds_core::hash::ParseHashError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(Hash256);

impl ParticipantId {
    /// The id of `key`.
    pub fn of(key: &PublicKey) -> Self {
        ParticipantId(key.id())
    }

    /// Wraps a hash that is known to be a participant id (a COSE `kid`, say).
    pub const fn from_hash(hash: Hash256) -> Self {
        ParticipantId(hash)
    }

    /// The hash.
    pub const fn as_hash(&self) -> &Hash256 {
        &self.0
    }

    /// The 32 raw bytes (the COSE `kid`).
    pub const fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Whether this is the id of `key`.
    pub fn is_id_of(&self, key: &PublicKey) -> bool {
        self.0 == key.id()
    }
}

impl From<&PublicKey> for ParticipantId {
    fn from(key: &PublicKey) -> Self {
        ParticipantId::of(key)
    }
}

impl From<ParticipantId> for Hash256 {
    fn from(id: ParticipantId) -> Self {
        id.0
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParticipantId({})", self.0)
    }
}

impl FromStr for ParticipantId {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(ParticipantId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tds_core::hash::Domain;
    use tds_core::SigningKey;

    #[test]
    fn id_is_the_domain_hash_of_the_key() {
        let key = SigningKey::from_seed(&[3; 32]).public_key();
        let id = ParticipantId::of(&key);
        assert_eq!(*id.as_hash(), Domain::PARTICIPANT.hash(key.as_bytes()));
        assert!(id.is_id_of(&key));
        assert!(id.to_string().starts_with("sha256:"));
        assert_eq!(id.to_string().len(), 7 + 64);
    }

    #[test]
    fn cbor_is_a_32_byte_string() {
        let id = ParticipantId::of(&SigningKey::from_seed(&[4; 32]).public_key());
        let bytes = tds_core::cbor::encode(&id).unwrap();
        assert_eq!(bytes.len(), 34);
        assert_eq!(&bytes[..2], &[0x58, 0x20]);
        assert_eq!(&bytes[2..], id.as_bytes());
        assert_eq!(tds_core::cbor::decode::<ParticipantId>(&bytes).unwrap(), id);
    }
}
