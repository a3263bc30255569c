//! Witnessing: an authority cosigns a log's checkpoint only if the log belongs to a member
//! and the checkpoint is consistent with the last one it cosigned for that log.
//!
//! Before anything else a witness checks that the log's key holds a valid membership
//! credential ([`MemberCheck`]) and that the log's name is the one its key gives it
//! ([`crate::log::check_log_key`]: `tds.log/<key id hex>`), so nobody can present a
//! checkpoint under another participant's log name. The first checkpoint a witness sees
//! for a log is then accepted without a proof and remembered (trust on first use). Later
//! ones need a consistency proof from the remembered size; a smaller size, a different
//! root at the same size, a proof that does not check or a changed log key is refused
//! ([`WitnessError::Refused`], with a [`Refusal`] that says why and has a code).
//!
//! [`Witness`] runs the whole step: membership, its memory ([`WitnessMemory`], a
//! `witness.json` file by default: [`DirWitnessMemory`]), the check, the cosignature, and
//! an alert in the witness's own log ([`AlertSink`]) when a log signed a fork.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tds_core::hash::Hash256;
use tds_core::key::{PublicKey, Signer};
use tds_core::merkle::MerkleError;
use tds_core::{ErrorCode, Timestamp};
use tds_identity::{Authority, IdentityError, TrustStore, VerifiedCredential};

use crate::event::{Code, Event, EventBody};
use crate::log::{check_log_key, Log, LogError};
use crate::note::{self, NoteError, VerifierKey, TYPE_COSIGNATURE};
use crate::proof::ConsistencyProof;
use crate::store::LogStore;

/// Why a checkpoint was not cosigned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The checkpoint or a key is malformed or its signature does not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The log's key holds no valid membership credential (or the one offered was refused).
    #[error("witness: the log key holds no valid membership credential")]
    NotMember(#[source] IdentityError),
    /// The credential offered is a member's, but not for the log's key.
    #[error("witness: the credential is for key {credential}, not for the log key {log}")]
    CredentialForAnotherKey {
        /// The credential's subject key id.
        credential: Hash256,
        /// The log key's id.
        log: Hash256,
    },
    /// The checkpoint is not consistent with what the witness saw before (a forked or
    /// rewritten log), or no proof shows that it is.
    #[error("witness refuses checkpoint of {} at size {}: {}", .0.origin, .0.size, .0.refusal)]
    Refused(Box<Refused>),
    /// The witness's memory could not be read or written.
    #[error("witness memory {path}: {reason}")]
    Memory {
        /// Where the memory is kept.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

impl ErrorCode for WitnessError {
    fn code(&self) -> &'static str {
        match self {
            WitnessError::Note(e) => e.code(),
            WitnessError::NotMember(_) => "witness.not_member",
            WitnessError::CredentialForAnotherKey { .. } => "witness.credential_for_another_key",
            WitnessError::Refused(r) => r.refusal.code(),
            WitnessError::Memory { .. } => "witness.memory",
        }
    }
}

/// A checkpoint a witness refused, and the alert it raised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The log's origin.
    pub origin: String,
    /// The size offered.
    pub size: u64,
    /// The root offered.
    pub root: Hash256,
    /// Why.
    pub refusal: Refusal,
    /// The index of the `checkpoint_refused` alert in the witness's log, if one was
    /// logged.
    pub alert: Option<u64>,
    /// Why the alert could not be logged, if it could not.
    pub alert_error: Option<String>,
}

/// Why a witness refused a checkpoint of a member's log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The log was first seen with another key.
    #[error("the log key changed (was {was})")]
    KeyChanged {
        /// The key remembered.
        was: String,
    },
    /// The size is below the size already cosigned.
    #[error("size is below the {cosigned} already cosigned (a rolled-back log)")]
    RolledBack {
        /// The size cosigned before.
        cosigned: u64,
    },
    /// Same size, another root.
    #[error("root differs from the one cosigned at the same size (a forked log)")]
    Forked,
    /// A bigger size without a consistency proof.
    #[error("a consistency proof from size {from} is needed (tds log consistency --from {from})")]
    ProofNeeded {
        /// The size the proof must start from.
        from: u64,
    },
    /// The proof starts somewhere else than the last cosigned checkpoint.
    #[error("the proof starts at size {proof} but the last cosigned checkpoint has size {cosigned} and another root")]
    ProofStart {
        /// Where the proof starts.
        proof: u64,
        /// The size cosigned before.
        cosigned: u64,
    },
    /// The proof does not end at the offered checkpoint.
    #[error("the proof does not end at this checkpoint's size and root")]
    ProofEnd,
    /// The proof does not check: the log was rewritten.
    #[error("inconsistent with the last cosigned checkpoint (a forked log): {0}")]
    Inconsistent(MerkleError),
}

impl ErrorCode for Refusal {
    fn code(&self) -> &'static str {
        match self {
            Refusal::KeyChanged { .. } => "witness.key_changed",
            Refusal::RolledBack { .. } => "witness.rolled_back",
            Refusal::Forked => "witness.forked",
            Refusal::ProofNeeded { .. } => "witness.proof_needed",
            Refusal::ProofStart { .. } => "witness.proof_start",
            Refusal::ProofEnd => "witness.proof_end",
            Refusal::Inconsistent(_) => "witness.inconsistent",
        }
    }
}

/// The witness key name of the authority with public key `key`.
pub fn witness_name(key: &PublicKey) -> String {
    format!("tds.witness/{}", key.id().to_hex())
}

/// The cosignature verifier key of the authority with public key `key`: name
/// [`witness_name`], type 0x04 (C2SP tlog-cosignature), the authority's Ed25519 key.
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
    /// When it was cosigned (seconds since the epoch, as in the cosignature).
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

/// Checks `checkpoint` (signed by `log_key`, whose owner `member` is) against `state`,
/// cosigns it with `signer` at `now` (the cosignature carries whole seconds), and updates
/// `state`. `member` is the proof that the log key holds a valid membership credential;
/// [`Witness::cosign`] obtains it from its [`MemberCheck`].
fn cosign(
    state: &mut WitnessState,
    signer: &dyn Signer,
    log_key: &VerifierKey,
    member: &VerifiedCredential,
    checkpoint: &[u8],
    proof: Option<&ConsistencyProof>,
    now: Timestamp,
) -> Result<Cosigned, WitnessError> {
    check_log_key(log_key)?;
    if member.subject_key() != &log_key.key {
        return Err(WitnessError::CredentialForAnotherKey {
            credential: member.subject_key().id(),
            log: log_key.key.id(),
        });
    }
    let verified = note::verify_checkpoint(checkpoint, log_key)?;
    let cp = verified.checkpoint().clone();
    let refuse = |refusal: Refusal| {
        WitnessError::Refused(Box::new(Refused {
            origin: cp.origin.clone(),
            size: cp.size,
            root: cp.root,
            refusal,
            alert: None,
            alert_error: None,
        }))
    };
    let log_key_text = log_key.to_string();
    let first_seen = match state.logs.get(&cp.origin) {
        None => true,
        Some(prev) => {
            if prev.log_key != log_key_text {
                return Err(refuse(Refusal::KeyChanged {
                    was: prev.log_key.clone(),
                }));
            }
            if cp.size < prev.size {
                return Err(refuse(Refusal::RolledBack {
                    cosigned: prev.size,
                }));
            }
            if cp.size == prev.size {
                if cp.root != prev.root {
                    return Err(refuse(Refusal::Forked));
                }
            } else {
                let p = proof.ok_or_else(|| refuse(Refusal::ProofNeeded { from: prev.size }))?;
                if p.size1 != prev.size || p.root1 != prev.root {
                    return Err(refuse(Refusal::ProofStart {
                        proof: p.size1,
                        cosigned: prev.size,
                    }));
                }
                if p.size2 != cp.size || p.root2 != cp.root {
                    return Err(refuse(Refusal::ProofEnd));
                }
                p.verify(&prev.root, &cp.root).map_err(|e| {
                    refuse(Refusal::Inconsistent(match e {
                        crate::proof::ProofError::Merkle(m) => m,
                        _ => MerkleError::RootMismatch,
                    }))
                })?;
            }
            false
        }
    };
    let name = witness_name(&signer.public_key());
    let secs = now.as_secs();
    let sig = note::cosign(&verified.note().text, &name, signer, now)?;
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
            cosigned_at: secs,
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

/// Who counts as a member: checks a membership credential envelope at a time.
pub trait MemberCheck: Send + Sync {
    /// Verifies `credential` at `now`.
    fn check_member(
        &self,
        credential: &[u8],
        now: Timestamp,
    ) -> Result<VerifiedCredential, IdentityError>;
}

/// The authority checks its own members against its own records.
impl MemberCheck for Authority {
    fn check_member(
        &self,
        credential: &[u8],
        now: Timestamp,
    ) -> Result<VerifiedCredential, IdentityError> {
        Authority::check_member(self, credential, now)
    }
}

/// A verifier's trust store (with its revocation lists) decides.
impl MemberCheck for TrustStore {
    fn check_member(
        &self,
        credential: &[u8],
        now: Timestamp,
    ) -> Result<VerifiedCredential, IdentityError> {
        self.verify(credential, now)
    }
}

/// Where a witness keeps its [`WitnessState`] between cosignings. The default is a JSON
/// file ([`DirWitnessMemory`]); an authority node can keep it in another store.
pub trait WitnessMemory: Send + Sync {
    /// The state (empty if nothing was remembered yet).
    fn load(&self) -> Result<WitnessState, WitnessError>;
    /// Loads the state, runs `change` on it and, if it succeeds, saves it durably, as one
    /// step: no other transaction on this memory runs in between (two first checkpoints of
    /// one log must not both be trusted on first use).
    fn transaction(
        &self,
        change: &mut dyn FnMut(&mut WitnessState) -> Result<(), WitnessError>,
    ) -> Result<(), WitnessError>;
}

/// A [`WitnessMemory`] in memory, for tests and simulations.
#[derive(Debug, Default)]
pub struct MemoryWitnessMemory(Mutex<WitnessState>);

impl WitnessMemory for MemoryWitnessMemory {
    fn load(&self) -> Result<WitnessState, WitnessError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone())
    }

    fn transaction(
        &self,
        change: &mut dyn FnMut(&mut WitnessState) -> Result<(), WitnessError>,
    ) -> Result<(), WitnessError> {
        let mut held = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state = held.clone();
        change(&mut state)?;
        *held = state;
        Ok(())
    }
}

/// Largest witness memory file read (a few hundred bytes per log).
pub const MAX_WITNESS_STATE: u64 = 64 << 20;

/// The witness memory as a JSON file (`witness.json` in an authority's home), replaced
/// atomically (mode 0600) and refused when group or others may write it. Callers that
/// share a home between processes hold the home's lock around load and save.
///
/// Transactions on one value run one at a time; processes that share the file must hold an
/// exclusive lock around their use of it (the authority home's `LOCK`, which
/// `tds_identity::DirAuthorityStore` holds).
#[derive(Debug)]
pub struct DirWitnessMemory {
    path: PathBuf,
    busy: Mutex<()>,
}

impl DirWitnessMemory {
    /// The memory in file `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DirWitnessMemory {
            path: path.into(),
            busy: Mutex::new(()),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, reason: impl std::error::Error + 'static) -> WitnessError {
        WitnessError::Memory {
            path: self.path.display().to_string(),
            reason: tds_core::code::full_message(&reason),
        }
    }
}

impl WitnessMemory for DirWitnessMemory {
    fn load(&self) -> Result<WitnessState, WitnessError> {
        // Only a memory that is not there at all is empty; any other failure to look at
        // it (a dangling link, a permission error) must not reset trust on first use.
        match std::fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(WitnessState::default())
            }
            Err(e) => return Err(self.fail(e)),
            Ok(_) => {}
        }
        tds_core::fs::check_private(&self.path).map_err(|e| self.fail(e))?;
        let bytes =
            tds_core::fs::read_bounded(&self.path, MAX_WITNESS_STATE).map_err(|e| self.fail(e))?;
        serde_json::from_slice(&bytes).map_err(|e| self.fail(e))
    }

    fn transaction(
        &self,
        change: &mut dyn FnMut(&mut WitnessState) -> Result<(), WitnessError>,
    ) -> Result<(), WitnessError> {
        let _busy = self
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state = self.load()?;
        change(&mut state)?;
        let mut json = serde_json::to_vec_pretty(&state).map_err(|e| self.fail(e))?;
        json.push(b'\n');
        tds_core::fs::write_atomic(&self.path, &json, 0o600, true).map_err(|e| self.fail(e))
    }
}

/// Where a witness raises an alert when it refuses a checkpoint (a forked or rolled-back
/// log is an incident). A [`Log`] logs a `checkpoint_refused` event.
pub trait AlertSink: Send + Sync {
    /// Records that `origin`'s checkpoint of `size` and `root` was refused for `refusal`
    /// at `now`; returns the alert's log index.
    fn checkpoint_refused(
        &self,
        origin: &str,
        size: u64,
        root: &Hash256,
        refusal: &Refusal,
        now: Timestamp,
    ) -> Result<u64, LogError>;
}

impl<S: LogStore> AlertSink for Log<S> {
    fn checkpoint_refused(
        &self,
        origin: &str,
        size: u64,
        root: &Hash256,
        refusal: &Refusal,
        now: Timestamp,
    ) -> Result<u64, LogError> {
        self.append(&Event::new(
            now,
            self.signer().key_id(),
            EventBody::CheckpointRefused {
                log: Hash256::sha256(origin.as_bytes()),
                size,
                root: *root,
                reason: Code::new(refusal.code())?,
            },
        ))
    }
}

/// A witness: its signer, who counts as a member, its memory and where it raises alerts.
pub struct Witness<'a> {
    signer: &'a dyn Signer,
    members: &'a dyn MemberCheck,
    memory: &'a dyn WitnessMemory,
    alerts: Option<&'a dyn AlertSink>,
}

impl<'a> Witness<'a> {
    /// A witness signing with `signer` (the authority's key), admitting the logs of
    /// `members`, remembering in `memory`.
    pub fn new(
        signer: &'a dyn Signer,
        members: &'a dyn MemberCheck,
        memory: &'a dyn WitnessMemory,
    ) -> Self {
        Witness {
            signer,
            members,
            memory,
            alerts: None,
        }
    }

    /// Raises an alert in `sink` on every refusal.
    pub fn with_alerts(mut self, sink: &'a dyn AlertSink) -> Self {
        self.alerts = Some(sink);
        self
    }

    /// Cosigns `checkpoint` of the log with key `log_key` whose owner holds `credential`
    /// (a membership credential envelope): checks membership at `now`, then the checkpoint
    /// against the remembered state, saves the new state, and returns the cosigned note.
    /// A fork (the log signed two roots at one size) is raised as an alert first (its
    /// index or failure is in the error). Other refusals are not: anyone can replay an old
    /// checkpoint or send a bad proof, and that must not put an honest log on record.
    pub fn cosign(
        &self,
        log_key: &VerifierKey,
        checkpoint: &[u8],
        proof: Option<&ConsistencyProof>,
        credential: &[u8],
        now: Timestamp,
    ) -> Result<Cosigned, WitnessError> {
        check_log_key(log_key)?;
        let member = self
            .members
            .check_member(credential, now)
            .map_err(WitnessError::NotMember)?;
        // The check and the new state are one memory transaction: two cosign requests for
        // one new log never both pass as its first checkpoint (a split view, cosigned).
        let mut done = None;
        let outcome = self.memory.transaction(&mut |state| {
            done = Some(cosign(
                state,
                self.signer,
                log_key,
                &member,
                checkpoint,
                proof,
                now,
            )?);
            Ok(())
        });
        match outcome.and_then(|()| {
            done.take().ok_or(WitnessError::Memory {
                path: String::new(),
                reason: "the memory ran no transaction".into(),
            })
        }) {
            Ok(done) => Ok(done),
            Err(WitnessError::Refused(mut r)) => {
                let signed_by_the_log = matches!(r.refusal, Refusal::Forked);
                if let (Some(sink), true) = (self.alerts, signed_by_the_log) {
                    match sink.checkpoint_refused(&r.origin, r.size, &r.root, &r.refusal, now) {
                        Ok(i) => r.alert = Some(i),
                        Err(e) => r.alert_error = Some(tds_core::code::full_message(&e)),
                    }
                }
                Err(WitnessError::Refused(r))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use tds_core::key::SigningKey;
    use tds_identity::{Admission, Role, Sector};

    fn log_with(n: u64, seed: u8, tag: &str) -> Log<MemoryStore> {
        let log = Log::new(MemoryStore::new(), SigningKey::from_seed(&[seed; 32]));
        for i in 0..n {
            LogStore::append(log.store(), format!("{tag} {i}").as_bytes()).unwrap();
        }
        log
    }

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn member(authority: &mut Authority, key: &PublicKey) -> Vec<u8> {
        authority
            .admit(
                &Admission {
                    subject_key: *key,
                    name: "Grid".into(),
                    sectors: vec![Sector::POWER],
                    roles: vec![Role::Provider],
                    jurisdiction: "CN".parse().unwrap(),
                    not_before: NOW,
                    not_after: NOW.saturating_add_millis(tds_core::time::DAY_MS),
                },
                NOW,
            )
            .unwrap()
            .into_envelope()
    }

    #[test]
    fn tofu_then_consistency_then_fork_refused() {
        let witness_key_ = SigningKey::from_seed(&[9; 32]);
        let mut authority = Authority::new("A", SigningKey::from_seed(&[9; 32])).unwrap();
        let memory = MemoryWitnessMemory::default();
        let alerts = Log::new(MemoryStore::new(), SigningKey::from_seed(&[9; 32]));
        let log = log_with(10, 1, "a");
        let cred = member(&mut authority, &log.signer().public_key());
        let w = Witness::new(&witness_key_, &authority, &memory).with_alerts(&alerts);
        let vk = log.verifier_key().unwrap();
        let c1 = log.checkpoint().unwrap();
        let r = w.cosign(&vk, c1.as_bytes(), None, &cred, NOW).unwrap();
        assert!(r.first_seen);
        let n = note::Note::parse(r.note.as_bytes()).unwrap();
        note::verify_cosignature(&n, &witness_key(&witness_key_.public_key()).unwrap()).unwrap();

        for i in 10..20 {
            LogStore::append(log.store(), format!("a {i}").as_bytes()).unwrap();
        }
        let c2 = log.checkpoint().unwrap();
        let err = w.cosign(&vk, c2.as_bytes(), None, &cred, NOW).unwrap_err();
        // No alert: anyone can send a checkpoint without its proof.
        assert!(matches!(
            &err,
            WitnessError::Refused(r)
                if r.refusal == Refusal::ProofNeeded { from: 10 } && r.alert.is_none()
        ));
        let p = log.consistency(10, Some(20)).unwrap();
        w.cosign(&vk, c2.as_bytes(), Some(&p), &cred, NOW).unwrap();

        // A fork: same key, different history.
        let fork = log_with(30, 1, "b");
        let c3 = fork.checkpoint().unwrap();
        let p = fork.consistency(20, Some(30)).unwrap();
        let err = w
            .cosign(&vk, c3.as_bytes(), Some(&p), &cred, NOW)
            .unwrap_err();
        assert!(
            matches!(&err, WitnessError::Refused(r) if matches!(r.refusal, Refusal::ProofStart { .. })),
            "{err}"
        );
        assert_eq!(err.code(), "witness.proof_start");
        // A replayed old checkpoint: refused, not alerted (anyone can replay one).
        let err = w.cosign(&vk, c1.as_bytes(), None, &cred, NOW).unwrap_err();
        assert_eq!(err.code(), "witness.rolled_back");
        assert_eq!(alerts.size(), 0);
        assert_eq!(
            memory.load().unwrap().logs.values().next().unwrap().size,
            20
        );
        // The log signed another root at the cosigned size: a split view, on record.
        let fork20 = log_with(20, 1, "b");
        let c4 = fork20.checkpoint().unwrap();
        let err = w.cosign(&vk, c4.as_bytes(), None, &cred, NOW).unwrap_err();
        assert!(
            matches!(&err, WitnessError::Refused(r) if r.refusal == Refusal::Forked && r.alert == Some(0)),
            "{err}"
        );
        assert_eq!(alerts.size(), 1);
        match alerts.event(0).unwrap().body {
            EventBody::CheckpointRefused { size, reason, .. } => {
                assert_eq!(size, 20);
                assert_eq!(reason.as_str(), "witness.forked");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn concurrent_first_cosigns_of_one_log_cosign_one_root() {
        use std::sync::Barrier;
        let signer = SigningKey::from_seed(&[9; 32]);
        let mut authority = Authority::new("A", SigningKey::from_seed(&[9; 32])).unwrap();
        let a = log_with(5, 1, "a");
        let b = log_with(5, 1, "b");
        let cred = member(&mut authority, &a.signer().public_key());
        let memory = MemoryWitnessMemory::default();
        let vk = a.verifier_key().unwrap();
        let (ca, cb) = (a.checkpoint().unwrap(), b.checkpoint().unwrap());
        let barrier = Barrier::new(2);
        let results: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = [&ca, &cb]
                .into_iter()
                .map(|cp| {
                    let (signer, authority, memory) = (&signer, &authority, &memory);
                    let (vk, cred, barrier) = (&vk, &cred, &barrier);
                    scope.spawn(move || {
                        // One witness per request, sharing the memory, as a node may.
                        let w = Witness::new(signer, authority, memory);
                        barrier.wait();
                        w.cosign(vk, cp.as_bytes(), None, cred, NOW).is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Exactly one of the two forks is trusted on first use; the other is refused.
        assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    }

    #[test]
    fn a_log_without_a_members_credential_is_not_cosigned() {
        let signer = SigningKey::from_seed(&[9; 32]);
        let mut authority = Authority::new("A", SigningKey::from_seed(&[9; 32])).unwrap();
        let memory = MemoryWitnessMemory::default();
        let w = Witness::new(&signer, &authority, &memory);
        let log = log_with(3, 1, "a");
        let other = log_with(3, 2, "b");
        let vk = log.verifier_key().unwrap();
        let c = log.checkpoint().unwrap();
        // No credential at all.
        let err = w.cosign(&vk, c.as_bytes(), None, b"", NOW).unwrap_err();
        assert!(matches!(err, WitnessError::NotMember(_)), "{err}");
        // A member's credential, but for another key.
        let cred = member(&mut authority, &other.signer().public_key());
        let w = Witness::new(&signer, &authority, &memory);
        let err = w.cosign(&vk, c.as_bytes(), None, &cred, NOW).unwrap_err();
        assert!(
            matches!(err, WitnessError::CredentialForAnotherKey { .. }),
            "{err}"
        );
        // A revoked member.
        let cred = member(&mut authority, &log.signer().public_key());
        authority.revoke(2).unwrap();
        let w = Witness::new(&signer, &authority, &memory);
        let err = w.cosign(&vk, c.as_bytes(), None, &cred, NOW).unwrap_err();
        assert!(matches!(err, WitnessError::NotMember(_)), "{err}");
        assert!(memory.load().unwrap().logs.is_empty());
    }

    #[test]
    fn checkpoint_policy() {
        let log = log_with(5, 4, "c");
        let p = crate::CheckpointPolicy {
            every_entries: 10,
            every_ms: 1000,
        };
        let t = Timestamp::from_millis;
        // Time 0 counts as "long ago": the first call issues one.
        assert!(log.checkpoint_if_due(&p, t(5000)).unwrap().is_some());
        assert!(log.checkpoint_if_due(&p, t(5001)).unwrap().is_none());
        LogStore::append(log.store(), b"x").unwrap();
        assert!(log.checkpoint_if_due(&p, t(5500)).unwrap().is_none());
        assert!(log.checkpoint_if_due(&p, t(6000)).unwrap().is_some());
    }
}
