//! `tds log ...`: the node's provenance log.
//!
//! The node's home directory holds `node.key` (the node key, which signs checkpoints) and
//! `log/` (the log files, see `spec/provenance.md`). Writing verbs (`annotate`,
//! `checkpoint`, `bench`) create a missing home and key; reading verbs (`show`, `verify`,
//! `key`, `prove`, `consistency`) refuse a missing one. Readers take no lock and only
//! read, so they are safe while a writer runs; writers take the log's lock.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};
use tds_core::{SigningKey, Timestamp};
use tds_objects::record;
use tds_provenance::event::{Annotation, Event, EventBody};
use tds_provenance::store::{FileStore, OpenOptions};
use tds_provenance::{DirCosignedStore, DirStorage, Log};

/// The node key file in a node home.
pub(crate) const NODE_KEY: &str = "node.key";
/// The log directory in a node home.
pub(crate) const LOG_DIR: &str = "log";

/// `tds log ...`
#[derive(Debug, Subcommand)]
pub(crate) enum LogCommand {
    /// Print events as JSON lines.
    Show {
        #[command(flatten)]
        home: NodeHome,
        /// The first index to show.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// The most events to show.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Recompute the whole tree and check every record, hash and checkpoint, and the
    /// cosigned checkpoints kept in `witnessed/` (read-only); exit 0 if intact.
    Verify {
        #[command(flatten)]
        home: NodeHome,
        /// The authority's public key, 64 hex digits: also check the witness's
        /// cosignature on every kept checkpoint.
        #[arg(long, value_name = "HEX")]
        authority_key: Option<String>,
    },
    /// Write a new signed checkpoint and print it (C2SP signed-note text).
    Checkpoint {
        #[command(flatten)]
        home: NodeHome,
    },
    /// Print the log's verifier key: <name>+<key id hex>+<base64(0x01 ‖ public key)>.
    Key {
        #[command(flatten)]
        home: NodeHome,
    },
    /// Print the inclusion proof of one event.
    Prove {
        #[command(flatten)]
        home: NodeHome,
        /// The event index.
        #[arg(long)]
        index: u64,
        /// The tree size (default: the size of the latest checkpoint).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Print a consistency proof between two tree sizes.
    Consistency {
        #[command(flatten)]
        home: NodeHome,
        /// The older size.
        #[arg(long)]
        from: u64,
        /// The newer size (default: the latest checkpoint's size, else the log size).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Append an operator annotation. Annotations are public and can never be removed:
    /// never put personal information in one.
    Annotate {
        #[command(flatten)]
        home: NodeHome,
        /// The text (at most 280 bytes, no control characters).
        #[arg(long)]
        text: String,
    },
    /// Record a signed object in the log: an agreement (as `agreement_concluded`, after
    /// checking both parties' signatures) or a manifest (as `asset_published`, after
    /// checking the owner's signature). The log keeps the signed bytes, so evidence
    /// bundles carry them.
    Record {
        #[command(flatten)]
        home: NodeHome,
        /// A two-party agreement (as written by `tds contract countersign`).
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "manifest",
            required_unless_present = "manifest"
        )]
        agreement: Option<PathBuf>,
        /// A signed manifest (as written by `tds manifest create`).
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
    },
    /// Record that the authority cosigned one of this log's checkpoints: checks the log's
    /// signature, the authority's cosignature and the root, appends
    /// `checkpoint_witnessed`, and keeps the cosigned checkpoint for `tds evidence
    /// export`.
    Witnessed {
        #[command(flatten)]
        home: NodeHome,
        /// The authority's public key, 64 hex digits.
        #[arg(long, value_name = "HEX")]
        authority_key: String,
        /// The cosigned checkpoint (as printed by `tds witness cosign`).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Disk benchmark: append COUNT annotation events from CONCURRENCY writers, each
    /// waiting for its own append to be durable before the next.
    Bench {
        #[command(flatten)]
        home: NodeHome,
        /// Events to append.
        #[arg(long)]
        count: u64,
        /// Concurrent writers.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
        concurrency: u64,
        /// Print "acked K" each time a batch is durable (K = total durable so far).
        #[arg(long)]
        report_acks: bool,
        /// Writers are operating-system threads blocked in each append, instead of async
        /// tasks on a runtime with one worker per core (as the node's connections are).
        #[arg(long)]
        threads: bool,
    },
}

/// `--home DIR`
#[derive(Debug, Args)]
pub(crate) struct NodeHome {
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
}

pub(crate) fn dispatch(command: LogCommand) -> anyhow::Result<()> {
    match command {
        LogCommand::Show { home, from, limit } => show(&home.home, from, limit),
        LogCommand::Verify {
            home,
            authority_key,
        } => verify(&home.home, authority_key.as_deref()),
        LogCommand::Checkpoint { home } => checkpoint(&home.home),
        LogCommand::Key { home } => key(&home.home),
        LogCommand::Prove { home, index, size } => prove(&home.home, index, size),
        LogCommand::Consistency { home, from, to } => consistency(&home.home, from, to),
        LogCommand::Annotate { home, text } => annotate(&home.home, &text),
        LogCommand::Record {
            home,
            agreement,
            manifest,
        } => record(&home.home, agreement.as_deref(), manifest.as_deref()),
        LogCommand::Witnessed {
            home,
            authority_key,
            file,
        } => witnessed(&home.home, &authority_key, &file),
        LogCommand::Bench {
            home,
            count,
            concurrency,
            report_acks,
            threads,
        } => bench(&home.home, count, concurrency, report_acks, threads),
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The key that signs a home's log: `node.key`, or in an authority's home (which has
/// no node key) `authority.key`.
pub(crate) fn log_key_path(home: &Path) -> PathBuf {
    let node = home.join(NODE_KEY);
    let authority = home.join(crate::home::KEY_FILE);
    if !node.exists() && authority.exists() {
        authority
    } else {
        node
    }
}

/// Opens the log of a node home for writing, creating home, key and log if missing.
pub(crate) fn open_writer(home: &Path) -> anyhow::Result<Log<FileStore>> {
    if home.exists() && !home.is_dir() {
        bail!("{}: not a directory", home.display());
    }
    crate::home::create_private_dir(home)?;
    crate::home::create_private_dir(&home.join(LOG_DIR))?;
    let key_path = log_key_path(home);
    if !key_path.exists() && home.join(crate::home::STATE_FILE).exists() {
        // An authority's log is signed by the authority key; never make up another one
        // (the key file is briefly absent during `tds authority rollover`).
        bail!(
            "{}: missing in an authority home (is a key rollover in progress?)",
            home.join(crate::home::KEY_FILE).display()
        );
    }
    if !key_path.exists() {
        let key = SigningKey::generate()?;
        key.write_file(&key_path)?;
    }
    let key = SigningKey::read_file(&key_path)?;
    let dir = home.join(LOG_DIR);
    let store = FileStore::open(Arc::new(DirStorage::new(&dir)), OpenOptions::writer())
        .with_context(|| format!("{}", dir.display()))?;
    if let Some(cut) = store.recovery().describe_cut() {
        let _ = writeln!(std::io::stderr(), "note: {}: {cut}", dir.display());
    }
    Ok(Log::new(store, key))
}

/// Opens the log of an existing node home for reading.
pub(crate) fn open_reader(home: &Path) -> anyhow::Result<Log<FileStore>> {
    let dir = home.join(LOG_DIR);
    if !dir.join("events").exists() {
        bail!(
            "{}: no log here (a writing verb such as 'tds log annotate --home {} --text ...' creates one)",
            home.display(),
            home.display()
        );
    }
    crate::home::check_private(home)?;
    crate::home::check_private(&dir)?;
    let key = SigningKey::read_file(&log_key_path(home))?;
    let store = FileStore::open(Arc::new(DirStorage::new(&dir)), OpenOptions::reader())
        .with_context(|| format!("{}", dir.display()))?;
    Ok(Log::new(store, key))
}

/// One event as the JSON line `tds log show` prints.
pub(crate) fn event_json(index: u64, leaf: &tds_core::Hash256, e: &Event) -> anyhow::Result<Json> {
    let body = match serde_json::to_value(&e.body)? {
        Json::Object(m) => m.into_iter().next().map_or(Json::Null, |(_, v)| v),
        other => other,
    };
    Ok(json!({
        "index": index,
        "leaf_hash": b64(leaf.as_bytes()),
        "v": e.v,
        "kind": e.kind(),
        "time": e.time.to_rfc3339(),
        "time_ms": e.time.as_millis(),
        "actor": e.actor.to_string(),
        "body": body,
    }))
}

fn show(home: &Path, from: u64, limit: Option<u64>) -> anyhow::Result<()> {
    let log = open_reader(home)?;
    let size = log.size();
    let end = limit.map_or(size, |l| from.saturating_add(l).min(size));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in from..end {
        let e = log.event(i)?;
        let leaf = tds_core::merkle::leaf_hash(&e.encode()?);
        serde_json::to_writer(&mut out, &event_json(i, &leaf, &e)?)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

fn verify(home: &Path, authority_key: Option<&str>) -> anyhow::Result<()> {
    let authority = authority_key
        .map(tds_core::PublicKey::from_hex)
        .transpose()
        .context("--authority-key")?;
    let log = open_reader(home)?;
    let r = log.verify()?;
    let store = witnessed_store(home);
    let cosigned = log
        .verify_cosigned(&store, authority.as_ref())
        .with_context(|| store.dir().display().to_string())?;
    print_line(&json!({
        "ok": true,
        "tree_size": log.size(),
        "root": b64(r.root.as_bytes()),
        "entries": r.storage.entries,
        "interior_hashes": r.storage.interior,
        "checkpoints": r.checkpoints,
        "cosigned_checkpoints": cosigned,
        "cosignatures_checked": authority.is_some(),
    }))
}

fn checkpoint(home: &Path) -> anyhow::Result<()> {
    let log = open_writer(home)?;
    let note = log.checkpoint()?;
    let mut out = std::io::stdout().lock();
    out.write_all(note.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn key(home: &Path) -> anyhow::Result<()> {
    let log = open_reader(home)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", log.verifier_key()?)?;
    out.flush()?;
    Ok(())
}

fn prove(home: &Path, index: u64, size: Option<u64>) -> anyhow::Result<()> {
    let log = open_reader(home)?;
    let p = log.prove(index, size)?;
    // Struct order is the documented key order.
    print_line(&p)
}

fn consistency(home: &Path, from: u64, to: Option<u64>) -> anyhow::Result<()> {
    let log = open_reader(home)?;
    let to = match to {
        Some(t) => t,
        None => match log.latest_checkpoint()? {
            Some(cp) => cp.checkpoint().size,
            None => log.size(),
        },
    };
    let p = log.consistency(from, Some(to))?;
    print_line(&p)
}

fn annotate(home: &Path, text: &str) -> anyhow::Result<()> {
    let text = Annotation::new(text).context("--text")?;
    let log = open_writer(home)?;
    let _ = writeln!(
        std::io::stderr(),
        "note: annotations are public and permanent; they must never hold personal information"
    );
    let actor = SigningKey::read_file(&log_key_path(home))?.id();
    let e = Event::new(Timestamp::now(), actor, EventBody::Annotation { text });
    let index = log.append(&e)?;
    let leaf = tds_core::merkle::leaf_hash(&e.encode()?);
    print_line(&json!({
        "index": index,
        "leaf_hash": b64(leaf.as_bytes()),
        "tree_size": log.size(),
    }))
}

/// Where a node keeps the checkpoints its witness cosigned: `<home>/witnessed/<size>.txt`.
pub(crate) const WITNESSED_DIR: &str = "witnessed";

/// The store of cosigned checkpoints of a node home.
pub(crate) fn witnessed_store(home: &Path) -> DirCosignedStore {
    DirCosignedStore::new(home.join(WITNESSED_DIR))
}

fn record(home: &Path, agreement: Option<&Path>, manifest: Option<&Path>) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let r = match (agreement, manifest) {
        (Some(path), _) => {
            let bytes = crate::files::read(path)?;
            let v = tds_policy::contract::verify_agreement(&bytes)
                .with_context(|| path.display().to_string())?;
            let log = open_writer(home)?;
            (record::record_agreement(&log, &v, now)?, log.size())
        }
        (None, Some(path)) => {
            let bytes = crate::files::read(path)?;
            let v = tds_manifest::open(&bytes)
                .and_then(|u| u.verify_self_signed())
                .with_context(|| path.display().to_string())?;
            let log = open_writer(home)?;
            (record::record_manifest(&log, &v, now)?, log.size())
        }
        (None, None) => bail!("give --agreement FILE or --manifest FILE"),
    };
    let (recorded, size) = r;
    print_line(&json!({
        "index": recorded.index,
        "event": recorded.event,
        "object": recorded.kind.name(),
        "id": recorded.id.to_string(),
        "tree_size": size,
    }))
}

fn witnessed(home: &Path, authority_key: &str, file: &Path) -> anyhow::Result<()> {
    let authority = tds_core::PublicKey::from_hex(authority_key).context("--authority-key")?;
    let log = open_writer(home)?;
    let bytes = crate::files::read(file)?;
    let accepted = log
        .accept_cosigned(&bytes, &authority, &witnessed_store(home), Timestamp::now())
        .with_context(|| file.display().to_string())?;
    print_line(&json!({
        "index": accepted.index,
        "event": "checkpoint_witnessed",
        "witness": accepted.witness.to_string(),
        "size": accepted.size,
        "cosigned_at": accepted.cosigned_at.as_secs(),
    }))
}

/// `tds log bench`: a front to the benchmark in `tds-bench` (`tds-bench log` runs the
/// same), on this home's log as the writing verbs open it.
fn bench(
    home: &Path,
    count: u64,
    concurrency: u64,
    report_acks: bool,
    threads: bool,
) -> anyhow::Result<()> {
    let log = Arc::new(open_writer(home)?);
    let actor = SigningKey::read_file(&log_key_path(home))?.id();
    let opts = tds_bench::log::LogBench {
        count,
        concurrency,
        report_acks,
        threads,
    };
    tds_bench::log::run(log, actor, &opts, Box::new(std::io::stdout()))?;
    Ok(())
}

/// Prints one compact JSON line on stdout.
pub(crate) fn print_line<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
