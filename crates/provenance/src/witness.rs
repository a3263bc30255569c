//! Witnessing: an authority cosigns a log's checkpoint only if it is consistent with the
//! last checkpoint it cosigned for that log.
//!
//! The first checkpoint a witness sees for a log is accepted without a proof and
//! remembered (trust on first use). Later ones need a consistency proof from the
//! remembered size; a smaller size, a different root at the same size, a proof that does
//! not check or a changed log key is refused ([`WitnessError::Refused`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tds_core::hash::Hash256;
#[cfg(test)]
use tds_core::key::SigningKey;
use tds_core::key::{PublicKey, Signer};

use crate::note::{self, NoteError, VerifierKey, TYPE_COSIGNATURE};
use crate::proof::ConsistencyProof;

/// Why a checkpoint was not cosigned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The checkpoint or a key is malformed or its signature does not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The checkpoint is not consistent with what the witness saw before (a forked or
    /// rewritten log), or no proof shows that it is.
    #[error("witness refuses checkpoint of {origin} at size {size}: {reason}")]
    Refused {
        /// The log's origin.
        origin: String,
        /// The size offered.
        size: u64,
        /// Why.
        reason: String,
    },
}

/// The witness key name of the authority with public key `key`.
pub fn witness_name(key: &PublicKey) -> String {
    format!("tds.witness/{}", key.id().to_hex())
}

/// The cosignature verifier key of the authority with public key `key`.
pub fn witness_key(key: &PublicKey) -> Result<VerifierKey, NoteError> {
    VerifierKey::new(&witness_name(key), TYPE_COSIGNATURE, *key)
}

/// What a witness remembers about one log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRecord {
    /// The log's verifier key.
    pub log_key: String,
    /// The size of the last cosigned checkpoint.
    pub size: u64,
    /// Its root hash.
    pub root: Hash256,
    /// When it was cosigned (seconds since the epoch).
    pub cosigned_at: u64,
}

/// A witness's memory: the last checkpoint cosigned per log origin (kept as JSON in the
/// authority's home).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessState {
    /// Format version (1).
    pub v: u64,
    /// By origin line.
    pub logs: BTreeMap<String, LogRecord>,
}

/// The outcome of a successful cosigning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosigned {
    /// The checkpoint note with the witness's cosignature line added.
    pub note: String,
    /// The origin.
    pub origin: String,
    /// The size cosigned.
    pub size: u64,
    /// The root cosigned.
    pub root: Hash256,
    /// Whether this was the first checkpoint seen for the log (trust on first use).
    pub first_seen: bool,
}

/// Checks `checkpoint` (signed by `log_key`) against `state`, cosigns it with `key` at
/// `now` (seconds), and updates `state`.
pub fn cosign(
    state: &mut WitnessState,
    key: &dyn Signer,
    log_key: &VerifierKey,
    checkpoint: &[u8],
    proof: Option<&ConsistencyProof>,
    now: u64,
) -> Result<Cosigned, WitnessError> {
    let verified = note::verify_checkpoint(checkpoint, log_key)?;
    let cp = verified.checkpoint().clone();
    let refuse = |reason: String| WitnessError::Refused {
        origin: cp.origin.clone(),
        size: cp.size,
        reason,
    };
    let log_key_text = log_key.to_string();
    let first_seen = match state.logs.get(&cp.origin) {
        None => true,
        Some(prev) => {
            if prev.log_key != log_key_text {
                return Err(refuse(format!(
                    "the log key changed (was {})",
                    prev.log_key
                )));
            }
            if cp.size < prev.size {
                return Err(refuse(format!(
                    "size is below the {} already cosigned (a rolled-back log)",
                    prev.size
                )));
            }
            if cp.size == prev.size {
                if cp.root != prev.root {
                    return Err(refuse(
                        "root differs from the one cosigned at the same size (a forked log)".into(),
                    ));
                }
            } else {
                let p = proof.ok_or_else(|| {
                    refuse(format!(
                        "a consistency proof from size {} is needed (tds log consistency --from {})",
                        prev.size, prev.size
                    ))
                })?;
                if p.size1 != prev.size || p.root1 != prev.root {
                    return Err(refuse(format!(
                        "the proof starts at size {} but the last cosigned checkpoint has size {} and another root",
                        p.size1, prev.size
                    )));
                }
                if p.size2 != cp.size || p.root2 != cp.root {
                    return Err(refuse(
                        "the proof does not end at this checkpoint's size and root".into(),
                    ));
                }
                p.verify().map_err(|e| {
                    refuse(format!(
                        "inconsistent with the last cosigned checkpoint (a forked log): {e}"
                    ))
                })?;
            }
            false
        }
    };
    let name = witness_name(&key.public_key());
    let sig = note::cosign(&verified.note().text, &name, key, now)?;
    let mut out = verified.note().clone();
    // Replace an earlier cosignature by this witness rather than stacking them.
    out.signatures
        .retain(|s| !(s.name == sig.name && s.key_id == sig.key_id));
    out.signatures.push(sig);
    state.v = 1;
    state.logs.insert(
        cp.origin.clone(),
        LogRecord {
            log_key: log_key_text,
            size: cp.size,
            root: cp.root,
            cosigned_at: now,
        },
    );
    Ok(Cosigned {
        note: out.to_text(),
        origin: cp.origin,
        size: cp.size,
        root: cp.root,
        first_seen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::Log;

    fn log_with(n: u64, seed: u8, tag: &str) -> Log<MemoryStore> {
        let log = Log::new(MemoryStore::new(), SigningKey::from_seed(&[seed; 32]));
        for i in 0..n {
            crate::store::LogStore::append(log.store(), format!("{tag} {i}").as_bytes()).unwrap();
        }
        log
    }

    #[test]
    fn tofu_then_consistency_then_fork_refused() {
        let witness = SigningKey::from_seed(&[9; 32]);
        let mut state = WitnessState::default();
        let log = log_with(10, 1, "a");
        let vk = log.verifier_key().unwrap();
        let c1 = log.checkpoint().unwrap();
        let r = cosign(&mut state, &witness, &vk, c1.as_bytes(), None, 100).unwrap();
        assert!(r.first_seen);
        let n = note::Note::parse(r.note.as_bytes()).unwrap();
        note::verify_cosignature(&n, &witness_key(&witness.public_key()).unwrap()).unwrap();

        for i in 10..20 {
            crate::store::LogStore::append(log.store(), format!("a {i}").as_bytes()).unwrap();
        }
        let c2 = log.checkpoint().unwrap();
        assert!(cosign(&mut state, &witness, &vk, c2.as_bytes(), None, 101).is_err());
        let p = log.consistency(10, Some(20)).unwrap();
        cosign(&mut state, &witness, &vk, c2.as_bytes(), Some(&p), 102).unwrap();

        // A fork: same key, different history.
        let fork = log_with(30, 1, "b");
        let c3 = fork.checkpoint().unwrap();
        let p = fork.consistency(20, Some(30)).unwrap();
        let err = cosign(&mut state, &witness, &vk, c3.as_bytes(), Some(&p), 103).unwrap_err();
        assert!(err.to_string().contains("last cosigned"), "{err}");
        assert_eq!(state.logs.values().next().unwrap().size, 20);
    }

    #[test]
    fn checkpoint_policy() {
        let log = log_with(5, 4, "c");
        let p = crate::CheckpointPolicy {
            every_entries: 10,
            every_ms: 1000,
        };
        // Time 0 counts as "long ago": the first call issues one.
        assert!(log.checkpoint_if_due(&p, 5000).unwrap().is_some());
        assert!(log.checkpoint_if_due(&p, 5001).unwrap().is_none());
        crate::store::LogStore::append(log.store(), b"x").unwrap();
        assert!(log.checkpoint_if_due(&p, 5500).unwrap().is_none());
        assert!(log.checkpoint_if_due(&p, 6000).unwrap().is_some());
    }
}
