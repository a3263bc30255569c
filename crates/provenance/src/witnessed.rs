//! A log's own checkpoints that its witness cosigned: accepting one ([`Log::accept_cosigned`])
//! and keeping them ([`CosignedStore`]; by default `<home>/witnessed/<size>.txt`,
//! [`DirCosignedStore`]) for evidence export and `log verify`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tds_core::hash::Hash256;
use tds_core::key::PublicKey;
use tds_core::{ErrorCode, Timestamp};

use crate::event::{Event, EventBody};
use crate::log::{Log, LogError};
use crate::note::{self, NoteError};
use crate::store::LogStore;
use crate::witness::witness_key;

/// Largest kept checkpoint note read back.
const MAX_KEPT_NOTE: u64 = note::MAX_NOTE_BYTES as u64;

/// Why a cosigned checkpoint was refused or could not be kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CosignedError {
    /// The note is not a checkpoint of this log signed by its key.
    #[error("not a checkpoint of this log")]
    NotOurs(#[source] NoteError),
    /// The checkpoint's size is beyond the log.
    #[error("size {size} is beyond the log size {log_size}")]
    BeyondLog {
        /// The checkpoint's size.
        size: u64,
        /// The log's size.
        log_size: u64,
    },
    /// The checkpoint's root is not this log's root at that size (a forged or forked
    /// checkpoint).
    #[error("the checkpoint's root is not this log's root at size {size}")]
    RootMismatch {
        /// The size.
        size: u64,
    },
    /// The witness's cosignature is missing or does not verify.
    #[error("not cosigned by the authority's witness key {key}")]
    NotCosigned {
        /// The witness verifier key expected.
        key: String,
        /// Why.
        #[source]
        source: NoteError,
    },
    /// The store of kept checkpoints failed.
    #[error("{path}: {reason}")]
    Store {
        /// Where.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

impl ErrorCode for CosignedError {
    fn code(&self) -> &'static str {
        match self {
            CosignedError::NotOurs(_) => "log.cosigned.not_ours",
            CosignedError::BeyondLog { .. } => "log.cosigned.beyond_log",
            CosignedError::RootMismatch { .. } => "log.cosigned.root_mismatch",
            CosignedError::NotCosigned { .. } => "log.cosigned.not_cosigned",
            CosignedError::Store { .. } => "log.cosigned.store",
        }
    }
}

/// Where a log keeps the checkpoints its witness cosigned, by tree size.
pub trait CosignedStore: Send + Sync {
    /// Keeps `note` (a cosigned checkpoint of `size` entries), replacing one of that size.
    fn put(&self, size: u64, note: &[u8]) -> Result<(), CosignedError>;
    /// Every kept checkpoint, by increasing size.
    fn all(&self) -> Result<Vec<(u64, Vec<u8>)>, CosignedError>;
    /// The kept checkpoint of the largest size, if any.
    fn latest(&self) -> Result<Option<(u64, Vec<u8>)>, CosignedError> {
        Ok(self.all()?.pop())
    }
}

/// Kept checkpoints in memory, for tests and simulations.
#[derive(Debug, Default)]
pub struct MemoryCosignedStore(Mutex<BTreeMap<u64, Vec<u8>>>);

impl CosignedStore for MemoryCosignedStore {
    fn put(&self, size: u64, note: &[u8]) -> Result<(), CosignedError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(size, note.to_vec());
        Ok(())
    }

    fn all(&self) -> Result<Vec<(u64, Vec<u8>)>, CosignedError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(s, n)| (*s, n.clone()))
            .collect())
    }
}

/// Kept checkpoints as files `<dir>/<size>.txt` (public, mode 0644, each replaced
/// atomically); `dir` is created mode 0700 on first use.
#[derive(Clone, Debug)]
pub struct DirCosignedStore {
    dir: PathBuf,
}

impl DirCosignedStore {
    /// The store in `dir` (a node keeps it in `<home>/witnessed`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirCosignedStore { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn fail(&self, path: &Path, reason: impl std::error::Error + 'static) -> CosignedError {
        CosignedError::Store {
            path: path.display().to_string(),
            reason: tds_core::code::full_message(&reason),
        }
    }
}

impl CosignedStore for DirCosignedStore {
    fn put(&self, size: u64, note: &[u8]) -> Result<(), CosignedError> {
        tds_core::fs::create_private_dir(&self.dir).map_err(|e| self.fail(&self.dir, e))?;
        let path = self.dir.join(format!("{size}.txt"));
        tds_core::fs::write_atomic(&path, note, 0o644, true).map_err(|e| self.fail(&path, e))
    }

    fn all(&self) -> Result<Vec<(u64, Vec<u8>)>, CosignedError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.fail(&self.dir, e)),
        };
        let mut sizes = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| self.fail(&self.dir, e))?.path();
            // Decimal digits only, no leading zero: one file name per size.
            let size = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .filter(|s| !s.starts_with('0') || *s == "0")
                .and_then(|s| s.parse::<u64>().ok());
            if let (Some(size), Some("txt")) = (size, path.extension().and_then(|e| e.to_str())) {
                sizes.push((size, path));
            }
        }
        sizes.sort();
        sizes
            .into_iter()
            .map(|(size, path)| {
                tds_core::fs::read_bounded(&path, MAX_KEPT_NOTE)
                    .map(|b| (size, b))
                    .map_err(|e| self.fail(&path, e))
            })
            .collect()
    }
}

/// What [`Log::accept_cosigned`] accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedCheckpoint {
    /// The index of the `checkpoint_witnessed` event appended.
    pub index: u64,
    /// The witness's participant id.
    pub witness: Hash256,
    /// The tree size cosigned.
    pub size: u64,
    /// The root cosigned.
    pub root: Hash256,
    /// When the witness cosigned (whole seconds).
    pub cosigned_at: Timestamp,
}

/// A cosigned checkpoint of this log, checked: the log's signature, that it is this log's
/// tree, and (with `authority`) the witness's cosignature. Returns the size, root and the
/// cosignature time.
fn check_cosigned<S: LogStore>(
    log: &Log<S>,
    bytes: &[u8],
    authority: Option<&PublicKey>,
) -> Result<(u64, Hash256, Option<Timestamp>), LogError> {
    let verified =
        note::verify_checkpoint(bytes, &log.verifier_key()?).map_err(CosignedError::NotOurs)?;
    let cp = verified.checkpoint();
    if cp.size > log.size() {
        return Err(CosignedError::BeyondLog {
            size: cp.size,
            log_size: log.size(),
        }
        .into());
    }
    if log.root(cp.size)? != cp.root {
        return Err(CosignedError::RootMismatch { size: cp.size }.into());
    }
    let at = match authority {
        None => None,
        Some(a) => {
            let wk = witness_key(a)?;
            let at = note::verify_cosignature(verified.note(), &wk).map_err(|source| {
                CosignedError::NotCosigned {
                    key: wk.to_string(),
                    source,
                }
            })?;
            Some(at)
        }
    };
    Ok((cp.size, cp.root, at))
}

impl<S: LogStore> Log<S> {
    /// Accepts a checkpoint of this log that the witness of the authority with key
    /// `authority` cosigned: checks the log's signature, the cosignature and that the root
    /// is this log's at that size, keeps the note in `kept` and appends a
    /// `checkpoint_witnessed` event at `now`.
    pub fn accept_cosigned(
        &self,
        note: &[u8],
        authority: &PublicKey,
        kept: &dyn CosignedStore,
        now: Timestamp,
    ) -> Result<AcceptedCheckpoint, LogError> {
        let (size, root, at) = check_cosigned(self, note, Some(authority))?;
        let cosigned_at = at.unwrap_or(now);
        kept.put(size, note)?;
        let index = self.append(&Event::new(
            now,
            self.signer().key_id(),
            EventBody::CheckpointWitnessed {
                witness: authority.id(),
                size,
                root,
            },
        ))?;
        Ok(AcceptedCheckpoint {
            index,
            witness: authority.id(),
            size,
            root,
            cosigned_at,
        })
    }

    /// Checks every checkpoint kept in `kept`: signed by this log, within it, with this
    /// log's root at its size, and (with `authority`) cosigned by its witness. Returns how
    /// many were checked.
    pub fn verify_cosigned(
        &self,
        kept: &dyn CosignedStore,
        authority: Option<&PublicKey>,
    ) -> Result<u64, LogError> {
        let all = kept.all()?;
        for (size, bytes) in &all {
            let (cp_size, _, _) = check_cosigned(self, bytes, authority)?;
            if cp_size != *size {
                return Err(CosignedError::Store {
                    path: format!("{size}.txt"),
                    reason: format!("holds the checkpoint of size {cp_size}"),
                }
                .into());
            }
        }
        Ok(all.len() as u64)
    }
}
