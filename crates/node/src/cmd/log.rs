//! `tds log ...`: the node's provenance log.
//!
//! A log home holds `node.key` (the key that signs checkpoints) and `log/` (the log files,
//! see `spec/provenance.md`) with the cosigned checkpoints in `witnessed/`. A node home
//! (`tds init`) keeps its log in `data/log/` and `data/witnessed/`, signed by its
//! `node.key`. Writing verbs (`annotate`, `checkpoint`, `bench`) create a missing log home
//! and key (never a node's key); reading verbs (`show`, `verify`, `key`, `prove`,
//! `consistency`) refuse a missing one. Readers take no lock and only read, so they are
//! safe while a writer runs; writers take the log's lock, so on a node home whose node
//! runs, `annotate`, `checkpoint`, `record` and `witnessed` go through the node's admin
//! API (operations `log_annotate`, `log_checkpoint`, `log_record`, `log_witnessed`) and
//! `bench` refuses.

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
    /// The log's home: a node home (`tds init`; its log is data/log) or a directory
    /// holding node.key and log/.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
}

/// The node home's layout: `VERSION` names the format.
const NODE_VERSION_PREFIX: &[u8] = b"tds-node-home ";
/// A node home's data directory.
const NODE_DATA: &str = "data";

/// Whether `home` is a node home (`tds init`), whose log is `data/log/`.
pub(crate) fn is_node_home(home: &Path) -> bool {
    std::fs::read(home.join("VERSION")).is_ok_and(|v| v.starts_with(NODE_VERSION_PREFIX))
}

/// The log directory of `home`.
fn log_dir(home: &Path) -> PathBuf {
    if is_node_home(home) {
        home.join(NODE_DATA).join(LOG_DIR)
    } else {
        home.join(LOG_DIR)
    }
}

/// Refuses a node's data directory given as a home: its log is signed by the key in the
/// home above it, and a writer must never make another key there.
fn refuse_data_dir(home: &Path) -> anyhow::Result<()> {
    if home.join(tds_connector::store::FILE_NAME).exists() {
        let parent = home.parent().unwrap_or(home);
        bail!(
            "{}: a node's data directory; give the node's home ({}) instead",
            home.display(),
            parent.display()
        );
    }
    Ok(())
}

/// On a node home whose node runs: the answer of its admin API's operation `op`; `None`
/// when no node runs there (or `home` is not a node home).
fn through_node(home: &Path, op: &str, args: &Json) -> anyhow::Result<Option<Json>> {
    if !is_node_home(home) {
        return Ok(None);
    }
    crate::node::block_on(crate::node::admin::call(
        home,
        "POST",
        &format!("/v1/op/{op}"),
        Some(args),
    ))
}

/// Refuses a node home whose node runs, for `what` (a writer that cannot go through it).
fn refuse_running(home: &Path, what: &str) -> anyhow::Result<()> {
    if let Some(pid) = is_node_home(home)
        .then(|| crate::home::running_pid(home))
        .flatten()
    {
        bail!(
            "{}: the node is running (tds serve, pid {pid}) and holds its log; {what} needs the log to itself: stop the node first",
            home.display()
        );
    }
    Ok(())
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
        } => {
            refuse_running(&home.home, "`tds log bench`")?;
            bench(&home.home, count, concurrency, report_acks, threads)
        }
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

/// Opens the log of a home for writing, creating home, key and log if missing (a node
/// home's key is never made here: `tds init` made it).
pub(crate) fn open_writer(home: &Path) -> anyhow::Result<Log<FileStore>> {
    if home.exists() && !home.is_dir() {
        bail!("{}: not a directory", home.display());
    }
    refuse_data_dir(home)?;
    let node = is_node_home(home);
    if node {
        refuse_running(home, "writing the log directly")?;
        crate::home::check_private(home)?;
        if !home.join(NODE_KEY).exists() {
            bail!(
                "{}: missing in this node home",
                home.join(NODE_KEY).display()
            );
        }
    }
    crate::home::create_private_dir(home)?;
    let dir = log_dir(home);
    crate::home::create_private_dir(&dir)?;
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
    let store = FileStore::open(Arc::new(DirStorage::new(&dir)), OpenOptions::writer())
        .with_context(|| format!("{}", dir.display()))?;
    if let Some(cut) = store.recovery().describe_cut() {
        let _ = writeln!(std::io::stderr(), "note: {}: {cut}", dir.display());
    }
    Ok(Log::new(store, key))
}

/// Opens the log of an existing node home for reading.
pub(crate) fn open_reader(home: &Path) -> anyhow::Result<Log<FileStore>> {
    refuse_data_dir(home)?;
    let dir = log_dir(home);
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
    let note = match through_node(home, "log_checkpoint", &json!({}))? {
        Some(v) => v
            .get("note")
            .and_then(Json::as_str)
            .ok_or_else(|| anyhow::anyhow!("the node's answer holds no note"))?
            .to_owned(),
        None => open_writer(home)?.checkpoint()?,
    };
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
    let checked = Annotation::new(text).context("--text")?;
    let through = through_node(home, "log_annotate", &json!({ "text": text }))?;
    let _ = writeln!(
        std::io::stderr(),
        "note: annotations are public and permanent; they must never hold personal information"
    );
    if let Some(v) = through {
        return print_line(&v);
    }
    let log = open_writer(home)?;
    let actor = SigningKey::read_file(&log_key_path(home))?.id();
    let e = Event::new(
        Timestamp::now(),
        actor,
        EventBody::Annotation { text: checked },
    );
    let index = log.append(&e)?;
    print_line(&annotated(&e, index, log.size())?)
}

/// What `tds log annotate` prints.
fn annotated(e: &Event, index: u64, size: u64) -> anyhow::Result<Json> {
    let leaf = tds_core::merkle::leaf_hash(&e.encode()?);
    Ok(json!({
        "index": index,
        "leaf_hash": b64(leaf.as_bytes()),
        "tree_size": size,
    }))
}

/// What `tds log record` records, verified.
enum Recordable {
    Agreement(Box<tds_policy::contract::VerifiedAgreement>),
    Manifest(Box<tds_manifest::SelfSignedManifest>),
}

impl Recordable {
    /// The agreement or manifest read with `read` and verified.
    fn read(
        agreement: Option<&Path>,
        manifest: Option<&Path>,
        read: &dyn Fn(&Path) -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<Recordable> {
        match (agreement, manifest) {
            (Some(path), _) => tds_policy::contract::verify_agreement(&read(path)?)
                .map(|v| Recordable::Agreement(Box::new(v)))
                .with_context(|| path.display().to_string()),
            (None, Some(path)) => tds_manifest::open(&read(path)?)
                .and_then(|u| u.verify_self_signed())
                .map(|v| Recordable::Manifest(Box::new(v)))
                .with_context(|| path.display().to_string()),
            (None, None) => bail!("give --agreement FILE or --manifest FILE"),
        }
    }

    /// Records it in `log`; what `tds log record` prints.
    fn record<S: tds_provenance::LogStore>(&self, log: &Log<S>) -> anyhow::Result<Json> {
        let now = Timestamp::now();
        let recorded = match self {
            Recordable::Agreement(v) => record::record_agreement(log, v, now)?,
            Recordable::Manifest(v) => record::record_manifest(log, v, now)?,
        };
        Ok(json!({
            "index": recorded.index,
            "event": recorded.event,
            "object": recorded.kind.name(),
            "id": recorded.id.to_string(),
            "tree_size": log.size(),
        }))
    }
}

/// What `tds log witnessed` prints.
fn witnessed_json(accepted: &tds_provenance::witnessed::AcceptedCheckpoint) -> Json {
    json!({
        "index": accepted.index,
        "event": "checkpoint_witnessed",
        "witness": accepted.witness.to_string(),
        "size": accepted.size,
        "cosigned_at": accepted.cosigned_at.as_secs(),
    })
}

/// The largest file a running node reads for `log_record` or `log_witnessed`.
const MAX_OP_FILE: u64 = 16 << 20;

/// The log operations of a running node's admin API (the writing `tds log` verbs on its
/// home): `log_annotate {text}`, `log_checkpoint {}`, `log_record {agreement | manifest}`
/// and `log_witnessed {authority_key, file}` (paths absolute). The same JSON as the verbs
/// print offline (`log_checkpoint`: `{"note"}`).
pub(crate) async fn node_op(
    connector: &tds_connector::Connector,
    name: &str,
    args: &Json,
) -> anyhow::Result<Json> {
    let text_arg = |key: &str| args.get(key).and_then(Json::as_str).map(str::to_owned);
    let path_arg = |key: &str| -> anyhow::Result<Option<PathBuf>> {
        match text_arg(key) {
            None => Ok(None),
            Some(p) if Path::new(&p).is_absolute() => Ok(Some(PathBuf::from(p))),
            Some(p) => bail!("{key} {p:?}: not an absolute path"),
        }
    };
    let read = |p: &Path| -> anyhow::Result<Vec<u8>> {
        tds_core::fs::read_bounded(p, MAX_OP_FILE).map_err(|e| anyhow::anyhow!("{e}"))
    };
    match name {
        "log_annotate" => {
            let text = text_arg("text").ok_or_else(|| anyhow::anyhow!("no text"))?;
            let text = Annotation::new(&text).context("text")?;
            let e = Event::new(
                Timestamp::now(),
                connector.id(),
                EventBody::Annotation { text },
            );
            let log = connector.log();
            let index = log.append_async(&e).await?;
            annotated(&e, index, log.size())
        }
        "log_checkpoint" => Ok(json!({ "note": connector.checkpoint()? })),
        "log_record" => {
            let r = Recordable::read(
                path_arg("agreement")?.as_deref(),
                path_arg("manifest")?.as_deref(),
                &read,
            )?;
            let log = connector.log().clone();
            tokio::task::spawn_blocking(move || r.record(&log))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
        }
        "log_witnessed" => {
            let key = text_arg("authority_key").unwrap_or_default();
            let authority = tds_core::PublicKey::from_hex(&key).context("authority_key")?;
            let file = path_arg("file")?.ok_or_else(|| anyhow::anyhow!("no file"))?;
            let accepted = connector
                .accept_cosigned(&read(&file)?, &authority)
                .with_context(|| file.display().to_string())?;
            Ok(witnessed_json(&accepted))
        }
        other => bail!("no operation {other:?}"),
    }
}

/// Where a node keeps the checkpoints its witness cosigned: `<home>/witnessed/<size>.txt`.
pub(crate) const WITNESSED_DIR: &str = "witnessed";

/// The store of cosigned checkpoints of a home (a node home's: `data/witnessed/`).
pub(crate) fn witnessed_store(home: &Path) -> DirCosignedStore {
    if is_node_home(home) {
        DirCosignedStore::new(home.join(NODE_DATA).join(WITNESSED_DIR))
    } else {
        DirCosignedStore::new(home.join(WITNESSED_DIR))
    }
}

fn record(home: &Path, agreement: Option<&Path>, manifest: Option<&Path>) -> anyhow::Result<()> {
    // Checked here first (a bad file never reaches the log), then recorded by the running
    // node or in the home's log.
    let r = Recordable::read(agreement, manifest, &|p| crate::files::read(p))?;
    let abs = |p: Option<&Path>| p.map(crate::node::home::absolute).transpose();
    let args = json!({ "agreement": abs(agreement)?, "manifest": abs(manifest)? });
    if let Some(v) = through_node(home, "log_record", &args)? {
        return print_line(&v);
    }
    let log = open_writer(home)?;
    print_line(&r.record(&log)?)
}

fn witnessed(home: &Path, authority_key: &str, file: &Path) -> anyhow::Result<()> {
    let authority = tds_core::PublicKey::from_hex(authority_key).context("--authority-key")?;
    let bytes = crate::files::read(file)?;
    let args = json!({
        "authority_key": authority_key,
        "file": crate::node::home::absolute(file)?,
    });
    if let Some(v) = through_node(home, "log_witnessed", &args)? {
        return print_line(&v);
    }
    let log = open_writer(home)?;
    let accepted = log
        .accept_cosigned(&bytes, &authority, &witnessed_store(home), Timestamp::now())
        .with_context(|| file.display().to_string())?;
    print_line(&witnessed_json(&accepted))
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
