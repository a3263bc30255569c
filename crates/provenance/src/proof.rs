//! Inclusion and consistency proofs in their JSON form (what `tds log prove` and
//! `tds log consistency` print): hashes as standard base64.

use base64::Engine;
use serde::{Deserialize, Serialize};
use tds_core::hash::Hash256;
use tds_core::merkle::{self, MerkleError};

/// Most hashes a proof may carry (a tree of up to 2^64 leaves needs at most 64 for
/// inclusion and about twice that for consistency).
pub const MAX_PROOF_HASHES: usize = 128;
/// Largest accepted proof JSON in bytes.
pub const MAX_PROOF_JSON: usize = 16 * 1024;

/// Why a proof was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// Not proof JSON of the expected shape.
    #[error("proof: {0}")]
    Json(String),
    /// The proof names another root than the one the caller trusts.
    #[error("proof: it is for root {claimed}, not the trusted root {trusted}")]
    UntrustedRoot {
        /// The root the proof carries.
        claimed: Hash256,
        /// The root the caller trusts.
        trusted: Hash256,
    },
    /// The proof does not check.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
}

impl tds_core::ErrorCode for ProofError {
    fn code(&self) -> &'static str {
        match self {
            ProofError::Json(_) => "log.proof.format",
            ProofError::UntrustedRoot { .. } => "log.proof.untrusted_root",
            ProofError::Merkle(_) => "log.proof.mismatch",
        }
    }
}

fn trusted(claimed: &Hash256, trusted: &Hash256) -> Result<(), ProofError> {
    if claimed != trusted {
        return Err(ProofError::UntrustedRoot {
            claimed: *claimed,
            trusted: *trusted,
        });
    }
    Ok(())
}

pub(crate) mod b64hash {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &Hash256, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(h.as_bytes()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash256, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .ok()
            .and_then(|b| Hash256::from_slice(&b))
            .ok_or_else(|| serde::de::Error::custom("expected base64 of 32 bytes"))
    }
}

pub(crate) mod b64hashes {
    use super::*;
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Hash256], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for h in v {
            seq.serialize_element(&base64::engine::general_purpose::STANDARD.encode(h.as_bytes()))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash256>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        if v.len() > MAX_PROOF_HASHES {
            return Err(serde::de::Error::custom("too many proof hashes"));
        }
        v.iter()
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .ok()
                    .and_then(|b| Hash256::from_slice(&b))
                    .ok_or_else(|| serde::de::Error::custom("expected base64 of 32 bytes"))
            })
            .collect()
    }
}

/// A proof that leaf `index` is in the tree of `tree_size` leaves with root `root`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The leaf index.
    pub index: u64,
    /// The tree size.
    pub tree_size: u64,
    /// The leaf hash, `SHA-256(0x00 ‖ event)`.
    #[serde(with = "b64hash")]
    pub leaf_hash: Hash256,
    /// The root of the tree.
    #[serde(with = "b64hash")]
    pub root: Hash256,
    /// The audit path, from the leaf up.
    #[serde(with = "b64hashes")]
    pub proof: Vec<Hash256>,
}

impl InclusionProof {
    /// Checks that the proof leads from its leaf hash to `trusted_root`, a root the caller
    /// trusts (from a checkpoint whose signature it checked), not merely to the root the
    /// proof carries.
    pub fn verify(&self, trusted_root: &Hash256) -> Result<(), ProofError> {
        trusted(&self.root, trusted_root)?;
        Ok(merkle::verify_inclusion(
            &self.leaf_hash,
            self.index,
            self.tree_size,
            &self.proof,
            trusted_root,
        )?)
    }

    /// Parses the JSON form, bounded.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProofError> {
        parse_json(bytes)
    }
}

/// A proof that the tree of `size1` leaves is a prefix of the tree of `size2`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The older size.
    pub size1: u64,
    /// The newer size.
    pub size2: u64,
    /// The older root.
    #[serde(with = "b64hash")]
    pub root1: Hash256,
    /// The newer root.
    #[serde(with = "b64hash")]
    pub root2: Hash256,
    /// The proof hashes.
    #[serde(with = "b64hashes")]
    pub proof: Vec<Hash256>,
}

impl ConsistencyProof {
    /// Checks (RFC 9162 §2.1.4.2) that the tree with root `trusted_old` is a prefix of the
    /// tree with root `trusted_new`: both roots are ones the caller trusts (a checkpoint it
    /// cosigned or verified), not merely the roots the proof carries.
    pub fn verify(&self, trusted_old: &Hash256, trusted_new: &Hash256) -> Result<(), ProofError> {
        trusted(&self.root1, trusted_old)?;
        trusted(&self.root2, trusted_new)?;
        Ok(merkle::verify_consistency(
            self.size1,
            self.size2,
            &self.proof,
            trusted_old,
            trusted_new,
        )?)
    }

    /// Parses the JSON form, bounded.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProofError> {
        parse_json(bytes)
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ProofError> {
    if bytes.len() > MAX_PROOF_JSON {
        return Err(ProofError::Json(format!(
            "{} bytes is over the {MAX_PROOF_JSON} limit",
            bytes.len()
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| ProofError::Json(e.to_string()))
}
