//! SHA-256 with domain separation, and the `sha256:<hex>` form of ids.
//!
//! A TDS hash is `SHA-256(tag ‖ 0x00 ‖ bytes)` where `tag` is an ASCII string such as
//! `tds/manifest/v1`. Tags keep a hash made for one purpose from ever being accepted for
//! another, and the zero byte keeps tag and message apart (tags contain no zero byte).
//!
//! ```
//! use tds_core::hash::{Domain, Hash256};
//!
//! let id = Domain::PARTICIPANT.hash(&[7u8; 32]);
//! let text = id.to_string();
//! assert!(text.starts_with("sha256:"));
//! assert_eq!(text.parse::<Hash256>()?, id);
//! # Ok::<(), tds_core::hash::ParseHashError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte SHA-256 digest. Serialized as a CBOR byte string of 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash256([u8; 32]);

impl Hash256 {
    /// The printed prefix of every id.
    pub const PREFIX: &'static str = "sha256:";

    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Hash256(bytes)
    }

    /// Takes a digest from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Hash256)
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex without the prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Plain SHA-256 of `bytes` (no domain tag), for interoperating with other formats.
    pub fn sha256(bytes: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Hash256(out)
    }
}

impl AsRef<[u8]> for Hash256 {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.to_hex())
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a printed hash was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseHashError {
    /// The `sha256:` prefix is missing.
    #[error("hash must start with \"sha256:\"")]
    MissingPrefix,
    /// Not 64 lowercase hex digits after the prefix.
    #[error("hash must be \"sha256:\" followed by 64 lowercase hex digits")]
    BadHex,
}

impl FromStr for Hash256 {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s
            .strip_prefix(Self::PREFIX)
            .ok_or(ParseHashError::MissingPrefix)?;
        if hex_part.len() != 64
            || !hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ParseHashError::BadHex);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| ParseHashError::BadHex)?;
        Ok(Hash256(out))
    }
}

impl Serialize for Hash256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Hash256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let b = serde_bytes::ByteArray::<32>::deserialize(d)?;
            Ok(Hash256(b.into_array()))
        }
    }
}

/// A domain-separation tag: ASCII, no zero byte, of the form `tds/<kind>/v<N>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Domain(&'static str);

impl Domain {
    /// Participant ids, from the 32-byte Ed25519 public key.
    pub const PARTICIPANT: Domain = Domain("tds/participant/v1");
    /// Membership credentials (the canonical credential payload).
    pub const CREDENTIAL: Domain = Domain("tds/credential/v1");
    /// Revocation lists.
    pub const CRL: Domain = Domain("tds/crl/v1");
    /// Data-asset manifests.
    pub const MANIFEST: Domain = Domain("tds/manifest/v1");
    /// Offers.
    pub const OFFER: Domain = Domain("tds/offer/v1");
    /// Contract requests.
    pub const REQUEST: Domain = Domain("tds/request/v1");
    /// Agreements (the canonical terms).
    pub const AGREEMENT: Domain = Domain("tds/agreement/v1");
    /// Registration receipts.
    pub const RECEIPT: Domain = Domain("tds/receipt/v1");
    /// Termination notices.
    pub const TERMINATION: Domain = Domain("tds/termination/v1");
    /// Negotiation notices of the connector protocol (FINALIZED, TERMINATED).
    pub const NOTICE: Domain = Domain("tds/notice/v1");
    /// Transfers (from the agreement id and the consumer's process id).
    pub const TRANSFER: Domain = Domain("tds/transfer/v1");
    /// Transfer receipts of the connector protocol.
    pub const TRANSFER_RECEIPT: Domain = Domain("tds/transfer-receipt/v1");
    /// Usage reports of the connector protocol (a consumer's report of its use).
    pub const USAGE_REPORT: Domain = Domain("tds/usage-report/v1");
    /// Deletion receipts of the connector protocol (a consumer deleted an asset).
    pub const DELETION_RECEIPT: Domain = Domain("tds/deletion-receipt/v1");
    /// Usage records (metering, signed by the side that records).
    pub const USAGE_RECORD: Domain = Domain("tds/usage-record/v1");
    /// Public-data licences (the authority lets an operator offer a public resource).
    pub const LICENCE: Domain = Domain("tds/licence/v1");
    /// Admission requests (a credential asked for on `tds-join/1`).
    pub const ADMISSION_REQUEST: Domain = Domain("tds/admission-request/v1");
    /// Authority key rollover statements.
    pub const ROLLOVER: Domain = Domain("tds/key-rollover/v1");
    /// Policies.
    pub const POLICY: Domain = Domain("tds/policy/v1");
    /// Provenance events.
    pub const EVENT: Domain = Domain("tds/event/v1");
    /// Any signed envelope as a whole (its exact bytes).
    pub const ENVELOPE: Domain = Domain("tds/envelope/v1");

    /// A new tag. Returns `None` unless it is printable ASCII without spaces, 1 to 64 bytes.
    pub const fn new(tag: &'static str) -> Option<Domain> {
        let b = tag.as_bytes();
        if b.is_empty() || b.len() > 64 {
            return None;
        }
        let mut i = 0;
        while i < b.len() {
            // Indexing in a const loop bounded by the length.
            #[expect(
                clippy::indexing_slicing,
                reason = "bounded by the length in a const loop"
            )]
            let c = b[i];
            if c <= b' ' || c > b'~' {
                return None;
            }
            i += 1;
        }
        Some(Domain(tag))
    }

    /// The tag text.
    pub const fn as_str(&self) -> &'static str {
        self.0
    }

    /// `SHA-256(tag ‖ 0x00 ‖ bytes)`.
    pub fn hash(&self, bytes: &[u8]) -> Hash256 {
        let mut h = self.hasher();
        h.update(bytes);
        h.finish()
    }

    /// A streaming hasher already primed with this tag.
    pub fn hasher(&self) -> Hasher {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(self.0.as_bytes());
        ctx.update(&[0]);
        Hasher(ctx)
    }
}

/// Incremental domain-separated SHA-256 (from [`Domain::hasher`]), or plain SHA-256
/// (from [`Hasher::plain`]).
#[derive(Clone)]
pub struct Hasher(ring::digest::Context);

impl Hasher {
    /// A plain SHA-256 hasher with no domain tag, for formats whose bytes are fixed
    /// elsewhere (RFC 9162 leaf and node hashes, file checksums). Every SHA-256 in TDS goes
    /// through this module, so a second algorithm suite has one place to plug in.
    pub fn plain() -> Hasher {
        Hasher(ring::digest::Context::new(&ring::digest::SHA256))
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest.
    pub fn finish(self) -> Hash256 {
        let d = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Hash256(out)
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_hash_is_sha256_of_tag_zero_message() {
        let tagged = Domain::PARTICIPANT.hash(b"abc");
        let mut manual = b"tds/participant/v1".to_vec();
        manual.push(0);
        manual.extend_from_slice(b"abc");
        assert_eq!(tagged, Hash256::sha256(&manual));
        assert_ne!(tagged, Domain::MANIFEST.hash(b"abc"));
    }

    #[test]
    fn empty_sha256_matches_known_value() {
        assert_eq!(
            Hash256::sha256(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_rejects_uppercase_short_and_unprefixed() {
        let h = Domain::EVENT.hash(b"x");
        let upper = format!("sha256:{}", h.to_hex().to_uppercase());
        assert_eq!(upper.parse::<Hash256>(), Err(ParseHashError::BadHex));
        assert_eq!("sha256:00".parse::<Hash256>(), Err(ParseHashError::BadHex));
        assert_eq!(
            h.to_hex().parse::<Hash256>(),
            Err(ParseHashError::MissingPrefix)
        );
        assert_eq!(h.to_string().parse::<Hash256>(), Ok(h));
    }

    #[test]
    fn domain_new_rejects_bad_tags() {
        assert!(Domain::new("").is_none());
        assert!(Domain::new("has space").is_none());
        assert!(Domain::new("tds/x/v1").is_some());
    }

    #[test]
    fn cbor_form_is_a_32_byte_string() {
        let h = Domain::EVENT.hash(b"x");
        let bytes = crate::cbor::encode(&h).unwrap();
        assert_eq!(bytes.len(), 34);
        assert_eq!(&bytes[..2], &[0x58, 0x20]);
        assert_eq!(crate::cbor::decode::<Hash256>(&bytes).unwrap(), h);
    }
}
