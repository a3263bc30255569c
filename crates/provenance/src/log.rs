//! The provenance log: typed events over a [`LogStore`], signed checkpoints and proofs.

use std::sync::Arc;
use tds_core::hash::Hash256;

use tds_core::key::{PublicKey, Signer};
use tds_core::merkle::{self, MerkleError};
use tds_core::Timestamp;

use crate::event::{Event, EventError};
use crate::note::{self, Checkpoint, Note, NoteError, VerifiedCheckpoint, VerifierKey};
use crate::proof::{ConsistencyProof, InclusionProof, ProofError};
use crate::store::{ids, LogStore, StoreError, StoreVerify};

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event was refused.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A note or key was refused.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// A proof could not be made.
    #[error("proof")]
    Merkle(#[from] MerkleError),
    /// A proof did not check.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// Verification found a problem; [`VerifyError`] says which.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A cosigned checkpoint was refused or could not be kept.
    #[error(transparent)]
    Cosigned(#[from] crate::witnessed::CosignedError),
    /// An operation needs a checkpoint and there is none.
    #[error("log: no checkpoint yet (write one with `tds log checkpoint`)")]
    NoCheckpoint,
}

impl tds_core::ErrorCode for LogError {
    fn code(&self) -> &'static str {
        match self {
            LogError::Store(e) => e.code(),
            LogError::Event(e) => e.code(),
            LogError::Note(e) => e.code(),
            LogError::Merkle(e) => e.code(),
            LogError::Proof(e) => e.code(),
            LogError::Verify(e) => e.code(),
            LogError::Cosigned(e) => e.code(),
            LogError::NoCheckpoint => "log.no_checkpoint",
        }
    }
}

/// What a log's verification found wrong with its checkpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A stored checkpoint whose signature does not verify under the log key.
    #[error("log verify: checkpoint {index}")]
    CheckpointSignature {
        /// Its position among the stored checkpoints.
        index: usize,
        /// Why.
        #[source]
        source: NoteError,
    },
    /// A checkpoint of more entries than the log holds.
    #[error("log verify: checkpoint {index}: size {size} is beyond the log size {log_size}")]
    BeyondLog {
        /// Its position.
        index: usize,
        /// Its size.
        size: u64,
        /// The log's size.
        log_size: u64,
    },
    /// A checkpoint smaller than the one before it.
    #[error(
        "log verify: checkpoint {index}: size {size} is below the previous checkpoint's {previous}"
    )]
    Shrinks {
        /// Its position.
        index: usize,
        /// Its size.
        size: u64,
        /// The previous checkpoint's size.
        previous: u64,
    },
    /// A checkpoint whose root is not the tree's at its size.
    #[error("log verify: checkpoint {index}: root hash for size {size} differs from the tree's")]
    RootMismatch {
        /// Its position.
        index: usize,
        /// Its size.
        size: u64,
    },
    /// A checkpoint given to prove into that is not this log's tree.
    #[error("log: the checkpoint's root for size {size} is not this log's")]
    ForeignCheckpoint {
        /// Its size.
        size: u64,
    },
}

impl tds_core::ErrorCode for VerifyError {
    fn code(&self) -> &'static str {
        match self {
            VerifyError::CheckpointSignature { .. } => "log.verify.checkpoint_signature",
            VerifyError::BeyondLog { .. } => "log.verify.beyond_log",
            VerifyError::Shrinks { .. } => "log.verify.shrinks",
            VerifyError::RootMismatch { .. } => "log.verify.root_mismatch",
            VerifyError::ForeignCheckpoint { .. } => "log.foreign_checkpoint",
        }
    }
}

/// The origin line (and key name) of the log of the participant with key `key`.
pub fn origin_for(key: &PublicKey) -> String {
    format!("tds.log/{}", key.id().to_hex())
}

/// Checks that `key` is a TDS log's verifier key: an Ed25519 note key (type 0x01) whose
/// name is the origin its key gives it ([`origin_for`]). A log's name is bound to its key
/// this way, so nobody can present checkpoints under another participant's log name with
/// a key of their own. Witnesses and evidence verifiers check it before anything else.
pub fn check_log_key(key: &VerifierKey) -> Result<(), NoteError> {
    if key.kind != note::TYPE_ED25519 {
        return Err(NoteError::Key(
            "a TDS log key is an Ed25519 note key (type 0x01)".into(),
        ));
    }
    let expected = origin_for(&key.key);
    if key.name != expected {
        return Err(NoteError::Key(format!(
            "a TDS log key is named after its key ({expected}), not {:?}",
            key.name
        )));
    }
    Ok(())
}

/// What [`Log::verify`] checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries and hashes checked by the store.
    pub storage: StoreVerify,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// The root of the whole tree.
    pub root: Hash256,
}

/// When [`Log::checkpoint_if_due`] issues a checkpoint: after `every_entries` new entries
/// or `every_ms` milliseconds, whichever comes first (never for an unchanged tree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Entries since the last checkpoint.
    pub every_entries: u64,
    /// Milliseconds since the last checkpoint.
    pub every_ms: u64,
}

impl Default for CheckpointPolicy {
    /// Every 10,000 entries or every minute.
    fn default() -> Self {
        CheckpointPolicy {
            every_entries: 10_000,
            every_ms: 60_000,
        }
    }
}

/// A provenance log: a store, the log's signing key and its origin.
pub struct Log<S: LogStore> {
    store: S,
    key: Arc<dyn Signer>,
    origin: String,
    /// Size and time (ms) of the last checkpoint issued by this process.
    last: std::sync::Mutex<Option<(u64, u64)>>,
}

impl<S: LogStore> Log<S> {
    /// A log over `store`, signed by `key` (the node key, or any [`Signer`] for it).
    pub fn new(store: S, key: impl Into<Arc<dyn Signer>>) -> Self {
        let signer = key.into();
        let origin = origin_for(&signer.public_key());
        Log {
            store,
            key: signer,
            origin,
            last: std::sync::Mutex::new(None),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The signer of the log's checkpoints (the node key).
    pub fn signer(&self) -> &Arc<dyn Signer> {
        &self.key
    }

    /// The origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key of the log's checkpoints (type 0x01, named by the origin).
    pub fn verifier_key(&self) -> Result<VerifierKey, LogError> {
        Ok(VerifierKey::new(
            &self.origin,
            note::TYPE_ED25519,
            self.key.public_key(),
        )?)
    }

    /// Entries durable so far.
    pub fn size(&self) -> u64 {
        self.store.size()
    }

    /// Appends an event; returns its index once durable.
    pub fn append(&self, event: &Event) -> Result<u64, LogError> {
        let index = self.store.append(&event.encode()?)?;
        self.store.note_ids(index, &ids::ids_of(event));
        Ok(index)
    }

    /// Appends an event from an async task; resolves to its index once durable. The
    /// event is queued when this is called (see [`LogStore::append_durable`]).
    pub fn append_async(
        &self,
        event: &Event,
    ) -> impl std::future::Future<Output = Result<u64, LogError>> + Send + '_ {
        let queued = event
            .encode()
            .map(|bytes| self.store.append_durable(&[&bytes]));
        let names = ids::ids_of(event);
        async move {
            match queued {
                Ok(f) => {
                    let index = f.await?;
                    self.store.note_ids(index, &names);
                    Ok(index)
                }
                Err(e) => Err(e.into()),
            }
        }
    }

    /// The indexes of the events that name `id` as their agreement or as an asset
    /// (`asset_published`, `offer_published`, `transfer_started`), ascending: from the
    /// store's index when it keeps one, else by reading every event.
    pub fn events_for(&self, id: &Hash256) -> Result<Vec<u64>, LogError> {
        Ok(match self.store.entries_naming(id)? {
            Some(entries) => entries,
            None => ids::scan_store(&self.store, id)?,
        })
    }

    /// Entry `index`, decoded.
    pub fn event(&self, index: u64) -> Result<Event, LogError> {
        Ok(Event::decode(&self.store.read(index)?)?)
    }

    /// The root of the first `size` entries.
    pub fn root(&self, size: u64) -> Result<Hash256, LogError> {
        if size > self.size() {
            return Err(StoreError::OutOfRange {
                index: size,
                size: self.size(),
            }
            .into());
        }
        Ok(merkle::root(&self.store, size)?)
    }

    /// Signs and stores a checkpoint of the current tree; returns the note text.
    pub fn checkpoint(&self) -> Result<String, LogError> {
        let size = self.size();
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.root(size)?,
            extensions: Vec::new(),
        };
        let text = cp.to_text();
        let sig = note::sign(&text, &self.origin, &*self.key)?;
        let out = Note {
            text,
            signatures: vec![sig],
        }
        .to_text();
        self.store.add_checkpoint(out.as_bytes())?;
        Ok(out)
    }

    /// Issues a checkpoint if `policy` says one is due at `now`; returns it if so. The
    /// first call after opening compares with the latest stored checkpoint (as if it had
    /// been issued at time 0).
    pub fn checkpoint_if_due(
        &self,
        policy: &CheckpointPolicy,
        now: Timestamp,
    ) -> Result<Option<String>, LogError> {
        let now_ms = now.as_millis();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (size0, t0) = match *last {
            Some(l) => l,
            None => (
                self.latest_checkpoint()?.map_or(0, |c| c.checkpoint().size),
                0,
            ),
        };
        let size = self.size();
        let due = size > size0
            && (size - size0 >= policy.every_entries
                || now_ms.saturating_sub(t0) >= policy.every_ms);
        if !due {
            *last = Some((size0, t0));
            return Ok(None);
        }
        let note = self.checkpoint()?;
        *last = Some((size, now_ms));
        Ok(Some(note))
    }

    /// The latest stored checkpoint, checked.
    pub fn latest_checkpoint(&self) -> Result<Option<VerifiedCheckpoint>, LogError> {
        let vk = self.verifier_key()?;
        match self.store.checkpoints()?.last() {
            Some(b) => Ok(Some(note::verify_checkpoint(b, &vk)?)),
            None => Ok(None),
        }
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries (default: the
    /// latest checkpoint's size).
    pub fn prove(&self, index: u64, size: Option<u64>) -> Result<InclusionProof, LogError> {
        let size = match size {
            Some(s) => s,
            None => {
                self.latest_checkpoint()?
                    .ok_or(LogError::NoCheckpoint)?
                    .checkpoint()
                    .size
            }
        };
        let root = self.root(size)?;
        let leaf_hash = self.store.leaf(index)?;
        let proof = self.store.inclusion_proof(index, size)?;
        Ok(InclusionProof {
            index,
            tree_size: size,
            leaf_hash,
            root,
            proof,
        })
    }

    /// The consistency proof from `size1` to `size2` (default: the current size).
    pub fn consistency(
        &self,
        size1: u64,
        size2: Option<u64>,
    ) -> Result<ConsistencyProof, LogError> {
        let size2 = size2.unwrap_or_else(|| self.size());
        let root1 = self.root(size1)?;
        let root2 = self.root(size2)?;
        let proof = if size1 == size2 {
            Vec::new()
        } else {
            merkle::consistency_proof(&self.store, size1, size2)?
        };
        Ok(ConsistencyProof {
            size1,
            size2,
            root1,
            root2,
            proof,
        })
    }

    /// Checks every stored record and hash (through `storage_check`, the store's own full
    /// check) and every checkpoint: its signature, that its size is within the log and
    /// not below the previous one, and that its root is the tree's root at that size.
    pub fn verify_with(
        &self,
        storage_check: impl FnOnce(&S) -> Result<StoreVerify, StoreError>,
    ) -> Result<VerifyReport, LogError> {
        let storage = storage_check(&self.store)?;
        let vk = self.verifier_key()?;
        let size = self.size();
        let mut prev = 0u64;
        let cps = self.store.checkpoints()?;
        for (i, b) in cps.iter().enumerate() {
            let v = note::verify_checkpoint(b, &vk)
                .map_err(|source| VerifyError::CheckpointSignature { index: i, source })?;
            let cp = v.checkpoint();
            if cp.size > size {
                return Err(VerifyError::BeyondLog {
                    index: i,
                    size: cp.size,
                    log_size: size,
                }
                .into());
            }
            if cp.size < prev {
                return Err(VerifyError::Shrinks {
                    index: i,
                    size: cp.size,
                    previous: prev,
                }
                .into());
            }
            prev = cp.size;
            if self.root(cp.size)? != cp.root {
                return Err(VerifyError::RootMismatch {
                    index: i,
                    size: cp.size,
                }
                .into());
            }
        }
        Ok(VerifyReport {
            storage,
            checkpoints: cps.len() as u64,
            root: self.root(size)?,
        })
    }
}

impl<S: LogStore> Log<S> {
    /// Full verification of any log: every record, leaf and interior hash (and what else
    /// the store keeps: [`LogStore::verify_storage`]) and every checkpoint. Read-only.
    pub fn verify(&self) -> Result<VerifyReport, LogError> {
        self.verify_with(|s| s.verify_storage())
    }
}

/// Recomputes the tree from the records of any store and checks every leaf and interior
/// hash the store serves (the default [`LogStore::verify_storage`]).
pub fn recompute<S: LogStore>(store: &S) -> Result<StoreVerify, StoreError> {
    crate::store::verify_recompute(store)
}
