//! Backups: a copy of a connector's state as it was at one instant ([`Connector::backup`]
//! while it runs, [`backup_stopped`] while it does not).
//!
//! # Why the copy is consistent
//!
//! The state is two stores written separately: the key-value [`Store`] and the
//! provenance log (plus the cosigned checkpoints kept beside the log, and chunk-tree
//! files). A copy must not hold a record that names a log entry the copied log lacks (a
//! metering record's `log_index`), nor miss the store half of a step whose log half it
//! holds, or the reverse. The backup therefore:
//!
//! 1. waits until no operation that writes both in one step (an agreement stored and
//!    logged, a termination, a publication, a metering record) is in flight, and keeps
//!    new ones waiting (a gate those operations hold shared and the backup exclusively);
//! 2. cuts the log ([`LogStore::cut`]): while the cut holds, no append becomes durable;
//!    inside it, it takes the store's snapshot ([`Store::snapshot`], a read transaction)
//!    and reads the cosigned checkpoints. The log is frozen from the cut's start, so the
//!    log at the cut and the store at the snapshot are the durable state of one single
//!    instant: what a crash at that instant would have left. Every sequence of steps
//!    (log then store, or store then log) is copied as a prefix, exactly as the
//!    connector's recovery after a crash already expects;
//! 3. lets everything go on, and then copies the snapshot into a new `connector.redb`
//!    and the log's entries below the cut into a new `log/` ([`copy_cut`]): the entries
//!    below the cut never change and the snapshot does not see later commits.
//!
//! Chunk-tree files are written (to a temporary name, then renamed) before the asset
//! record naming them is committed and never change afterwards, so copying them after
//! the instant finds every one the snapshot names (and perhaps a newer one no record
//! names yet, which is harmless).

use std::path::Path;
use std::sync::Arc;

use tds_provenance::store::{copy_cut, FileStore, LogCut, LogStore, OpenOptions};
use tds_provenance::{CosignedStore, DirCosignedStore, DirStorage};

use crate::connector::Connector;
use crate::error::ConnectorError;
use crate::store::{write_snapshot, RedbStore, Snapshot, Store, FILE_NAME};

/// The log's directory in a data directory.
const LOG_DIR: &str = "log";
/// The cosigned checkpoints' directory in a data directory.
const WITNESSED_DIR: &str = "witnessed";
/// The chunk trees' directory in a data directory.
const TREES_DIR: &str = "trees";

/// What a backup copied.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupSummary {
    /// Entries of the provenance log copied: its size at the instant of the copy.
    pub log_size: u64,
    /// Checkpoint notes copied.
    pub checkpoints: usize,
    /// Key-value entries copied (every table).
    pub records: u64,
    /// Cosigned checkpoints copied (`witnessed/`).
    pub cosigned: usize,
    /// Chunk-tree files copied (`trees/`).
    pub trees: usize,
}

/// What is taken at the instant, to be written out afterwards.
struct AtInstant {
    cut: LogCut,
    snapshot: Box<dyn Snapshot>,
    cosigned: Vec<(u64, Vec<u8>)>,
}

impl Connector {
    /// Writes a copy of this connector's state as it was at one instant into `dest`, a
    /// new or empty directory, laid out like a data directory: `connector.redb`, `log/`,
    /// `witnessed/`, `trees/` (the module docs say why the copy is consistent). Runs
    /// while the connector serves: operations that write the store and the log together
    /// wait while the instant is taken (a read transaction and the cosigned checkpoints
    /// read), log appends wait for that instant only, and the copying itself runs on
    /// blocking threads afterwards. Data files the connector serves or fetched into
    /// (outside the data directory) are not copied.
    pub async fn backup(&self, dest: &Path) -> Result<BackupSummary, ConnectorError> {
        prepare(dest)?;
        let core = self.core().clone();
        let taken = {
            let _gate = core.paired.write().await;
            let (store, log, cosigned) = (core.store.clone(), core.log.clone(), core.clone());
            tokio::task::spawn_blocking(move || {
                take(store.as_ref(), log.store().as_ref(), &*cosigned.cosigned)
            })
            .await
            .map_err(|e| ConnectorError::Closed(e.to_string()))??
        };
        let dest = dest.to_path_buf();
        let data_dir = core.data_dir.clone();
        let log = core.log.clone();
        tokio::task::spawn_blocking(move || {
            write_out(taken, log.store().as_ref(), data_dir.as_deref(), &dest)
        })
        .await
        .map_err(|e| ConnectorError::Closed(e.to_string()))?
    }
}

/// [`Connector::backup`] for a data directory no connector runs on: opens its store
/// (whose lock refuses, with `kv.locked`, while a connector holds it) and its log (as a
/// reader), and copies them into `dest`, a new or empty directory.
pub fn backup_stopped(data_dir: &Path, dest: &Path) -> Result<BackupSummary, ConnectorError> {
    prepare(dest)?;
    let store: Box<dyn Store> = if data_dir.join(FILE_NAME).exists() {
        Box::new(RedbStore::open_file(&data_dir.join(FILE_NAME))?)
    } else {
        Box::new(crate::store::MemoryStore::new())
    };
    let log_dir = data_dir.join(LOG_DIR);
    let log: Box<dyn LogStore> = if log_dir.join("events").exists() {
        Box::new(
            FileStore::open(Arc::new(DirStorage::new(&log_dir)), OpenOptions::reader())
                .map_err(tds_provenance::LogError::from)?,
        )
    } else {
        Box::new(tds_provenance::MemoryStore::new())
    };
    let cosigned = DirCosignedStore::new(data_dir.join(WITNESSED_DIR));
    let taken = take(store.as_ref(), log.as_ref(), &cosigned)?;
    let summary = write_out(taken, log.as_ref(), Some(data_dir), dest)?;
    drop(store);
    Ok(summary)
}

/// `dest` exists afterwards (mode 0700) and is empty.
fn prepare(dest: &Path) -> Result<(), ConnectorError> {
    tds_core::fs::create_private_dir(dest).map_err(|e| {
        ConnectorError::io(
            dest,
            std::io::Error::other(tds_core::code::full_message(&e)),
        )
    })?;
    let mut entries = std::fs::read_dir(dest).map_err(|e| ConnectorError::io(dest, e))?;
    if entries.next().is_some() {
        return Err(ConnectorError::io(
            dest,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "not empty; a backup is written to a new or empty directory",
            ),
        ));
    }
    Ok(())
}

/// The instant: the log cut, the store's snapshot and the cosigned checkpoints taken
/// inside it.
fn take(
    store: &dyn Store,
    log: &dyn LogStore,
    cosigned: &dyn CosignedStore,
) -> Result<AtInstant, ConnectorError> {
    let mut inside = None;
    let cut = log
        .cut(&mut || inside = Some((store.snapshot(), cosigned.all())))
        .map_err(tds_provenance::LogError::from)?;
    let Some((snapshot, kept)) = inside else {
        return Err(ConnectorError::Closed("the log cut did not run".into()));
    };
    let snapshot = snapshot?;
    let kept = kept.map_err(|e| ConnectorError::invalid("cosigned checkpoints", &e))?;
    // Each was cosigned for a checkpoint the log made, so at most the cut's size; kept
    // to the cut in any case, so the copy verifies.
    let cosigned = kept.into_iter().filter(|(s, _)| *s <= cut.size).collect();
    Ok(AtInstant {
        cut,
        snapshot,
        cosigned,
    })
}

/// After the instant: the snapshot, the log below the cut, the cosigned checkpoints and
/// the chunk trees, into `dest`.
fn write_out(
    taken: AtInstant,
    log: &dyn LogStore,
    data_dir: Option<&Path>,
    dest: &Path,
) -> Result<BackupSummary, ConnectorError> {
    let records = write_snapshot(taken.snapshot.as_ref(), &dest.join(FILE_NAME))?;
    drop(taken.snapshot);
    let log_dir = dest.join(LOG_DIR);
    tds_core::fs::create_private_dir(&log_dir).map_err(|e| {
        ConnectorError::io(
            &log_dir,
            std::io::Error::other(tds_core::code::full_message(&e)),
        )
    })?;
    let log_size = copy_cut(log, &taken.cut, Arc::new(DirStorage::new(&log_dir)))
        .map_err(tds_provenance::LogError::from)?;
    let kept = DirCosignedStore::new(dest.join(WITNESSED_DIR));
    for (size, note) in &taken.cosigned {
        kept.put(*size, note)
            .map_err(|e| ConnectorError::invalid("cosigned checkpoints", &e))?;
    }
    let trees = match data_dir {
        Some(d) => copy_trees(&d.join(TREES_DIR), &dest.join(TREES_DIR))?,
        None => 0,
    };
    Ok(BackupSummary {
        log_size,
        checkpoints: taken.cut.checkpoints.len(),
        records,
        cosigned: taken.cosigned.len(),
        trees,
    })
}

/// Copies the finished tree files (`*.tree`; not the temporary ones being written).
fn copy_trees(from: &Path, to: &Path) -> Result<usize, ConnectorError> {
    let entries = match std::fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ConnectorError::io(from, e)),
    };
    std::fs::create_dir_all(to).map_err(|e| ConnectorError::io(to, e))?;
    let mut n = 0;
    for entry in entries {
        let entry = entry.map_err(|e| ConnectorError::io(from, e))?;
        let path = entry.path();
        let is_file = entry
            .file_type()
            .map_err(|e| ConnectorError::io(&path, e))?
            .is_file();
        if !is_file || path.extension().and_then(|e| e.to_str()) != Some("tree") {
            continue;
        }
        let target = to.join(entry.file_name());
        std::fs::copy(&path, &target).map_err(|e| ConnectorError::io(&path, e))?;
        n += 1;
    }
    Ok(n)
}
