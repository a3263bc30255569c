//! `tds manifest create|verify|show|register`: signed data-asset manifests.
//!
//! `create` also writes the asset's chunk-hash list (the 32-byte leaf hashes in chunk
//! order) next to the manifest, as `MANIFEST.chunks` unless `--chunks` says otherwise
//! (the name and format are tds-manifest's: `content::chunk_list_path`,
//! `content::ChunkListWriter`).
//! The manifest commits only to the Merkle root, which says *whether* a copy matches;
//! the list, checked against that root, lets `verify --data` say *which* chunk differs
//! (spec/manifest.md, docs/decisions/0004-manifest-chunk-proofs.md).

use std::cell::Cell;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value as Json};
use tds_core::{PublicKey, Timestamp};
use tds_identity::{Jurisdiction, ParticipantId, Sector};
use tds_manifest::content::{
    check_data, chunk_list_path, ChunkListWriter, ChunkSize, ContentBuilder, DataError, ListStatus,
};
use tds_manifest::{
    AssetId, Classification, Lineage, Manifest, PersonalInfo, Relation, SelfSignedManifest,
    MANIFEST_VERSION,
};

use tds_identity::AuthorityStore;

use crate::{files, output};

/// `tds manifest ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ManifestCommand {
    /// Hash a data file and sign a manifest for it with the owner's key.
    Create(Box<CreateArgs>),
    /// Check a manifest's signature, and a data file against it.
    Verify(Box<VerifyManifestArgs>),
    /// Show every field of a manifest as JSON.
    Show {
        /// The manifest file.
        #[arg(value_name = "MANIFEST")]
        manifest: PathBuf,
    },
    /// Register a manifest with the authority (产权登记): check the owner's credential and
    /// sign a registration receipt.
    Register(RegisterArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The data file.
    #[arg(value_name = "DATAFILE")]
    data: PathBuf,
    /// The owner's key file.
    #[arg(long, value_name = "KEYFILE")]
    key: PathBuf,
    /// Title.
    #[arg(long)]
    title: String,
    /// Sector (power, transport, weather, finance, healthcare, or another lowercase token).
    #[arg(long, value_parser = parse_sector)]
    sector: Sector,
    /// Classification level: general, important or core.
    #[arg(long, value_name = "LEVEL", value_parser = parse_classification)]
    classification: Classification,
    /// Personal-information level: none, personal or sensitive.
    #[arg(long, value_name = "LEVEL", default_value = "none", value_parser = parse_personal)]
    personal: PersonalInfo,
    /// Where the data must reside, a region code such as CN or CN-SX.
    #[arg(long, value_name = "REGION", value_parser = parse_region)]
    residency: Option<Jurisdiction>,
    /// Chunk size in bytes: a power of two from 65536 to 16777216.
    #[arg(long, value_name = "BYTES", default_value_t = ChunkSize::DEFAULT.get())]
    chunk_size: u64,
    /// An asset this one is derived from (sha256:...); may repeat.
    #[arg(long = "derived-from", value_name = "ASSET_ID", value_parser = parse_asset_id)]
    derived_from: Vec<AssetId>,
    /// How the asset relates to the --derived-from assets: derived, aggregated or
    /// anonymized.
    #[arg(long, default_value = "derived", value_parser = parse_relation)]
    relation: Relation,
    /// The asset this one supersedes (sha256:...).
    #[arg(long, value_name = "ASSET_ID", value_parser = parse_asset_id)]
    supersedes: Option<AssetId>,
    /// Description.
    #[arg(long, default_value = "")]
    description: String,
    /// IANA media type of the data.
    #[arg(long, default_value = "application/octet-stream")]
    media_type: String,
    /// A schema reference (URI).
    #[arg(long, value_name = "URI")]
    schema: Option<String>,
    /// A keyword; repeat or separate with commas.
    #[arg(long = "keyword", value_delimiter = ',')]
    keywords: Vec<String>,
    /// Creation time, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    created: Option<Timestamp>,
    /// Hashing threads (default: the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Where to write the chunk-hash list (default: MANIFEST.chunks).
    #[arg(long, value_name = "FILE")]
    chunks: Option<PathBuf>,
    /// Where to write the manifest (replaced atomically if it exists).
    #[arg(long, value_name = "MANIFEST")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyManifestArgs {
    /// The manifest file.
    #[arg(value_name = "MANIFEST")]
    manifest: PathBuf,
    /// A copy of the data to check against the manifest.
    #[arg(long, value_name = "DATAFILE")]
    data: Option<PathBuf>,
    /// The owner's public key, 64 hex digits; without it the owner is not authenticated.
    #[arg(long, value_name = "HEX", value_parser = parse_public_key)]
    owner_key: Option<PublicKey>,
    /// The chunk-hash list that names a bad chunk (default: MANIFEST.chunks if present).
    #[arg(long, value_name = "FILE")]
    chunks: Option<PathBuf>,
    /// Hashing threads (default: the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// A registration receipt to check: signed by --authority-key, for this manifest.
    #[arg(long, value_name = "RECEIPT", requires = "authority_key")]
    receipt: Option<PathBuf>,
    /// The authority's public key, 64 hex digits (with --receipt).
    #[arg(long, value_name = "HEX", value_parser = parse_public_key, requires = "receipt")]
    authority_key: Option<PublicKey>,
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// The manifest file.
    #[arg(value_name = "MANIFEST")]
    manifest: PathBuf,
    /// The authority's home directory.
    #[arg(long, value_name = "AUTHORITY_DIR")]
    home: PathBuf,
    /// The owner's membership credential.
    #[arg(long, value_name = "OWNER_CREDENTIAL")]
    credential: PathBuf,
    /// Registration time, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    at: Option<Timestamp>,
    /// Where to write the receipt (replaced atomically if it exists).
    #[arg(long, value_name = "RECEIPT")]
    out: PathBuf,
}

pub(crate) fn dispatch(command: ManifestCommand) -> anyhow::Result<()> {
    match command {
        ManifestCommand::Create(args) => create(&args),
        ManifestCommand::Verify(args) => verify(&args),
        ManifestCommand::Show { manifest } => show(&manifest),
        ManifestCommand::Register(args) => register(&args),
    }
}

fn parse_sector(s: &str) -> Result<Sector, String> {
    s.parse().map_err(|e: tds_identity::Invalid| e.to_string())
}

fn parse_region(s: &str) -> Result<Jurisdiction, String> {
    s.parse().map_err(|e: tds_identity::Invalid| e.to_string())
}

fn parse_classification(s: &str) -> Result<Classification, String> {
    s.parse()
        .map_err(|_| "expected general, important or core".to_string())
}

fn parse_personal(s: &str) -> Result<PersonalInfo, String> {
    s.parse()
        .map_err(|_| "expected none, personal or sensitive".to_string())
}

fn parse_relation(s: &str) -> Result<Relation, String> {
    s.parse()
        .map_err(|_| "expected derived, aggregated or anonymized".to_string())
}

fn parse_asset_id(s: &str) -> Result<AssetId, String> {
    s.parse()
        .map_err(|e: tds_core::hash::ParseHashError| e.to_string())
}

fn parse_public_key(s: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(s).map_err(|e| e.to_string())
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).map_err(|e| e.to_string())
}

fn threads(arg: Option<u16>) -> NonZeroUsize {
    arg.and_then(|t| NonZeroUsize::new(usize::from(t)))
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN)
}

/// A progress bar on stderr that appears only when stderr is a terminal and hashing has
/// already taken more than a second.
struct Bar {
    bar: indicatif::ProgressBar,
    started: Instant,
    shown: Cell<bool>,
    tty: bool,
}

impl Bar {
    fn new(len: u64) -> Bar {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(len),
            indicatif::ProgressDrawTarget::hidden(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        Bar {
            bar,
            started: Instant::now(),
            shown: Cell::new(false),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
        if self.tty && !self.shown.get() && self.started.elapsed() > Duration::from_secs(1) {
            self.shown.set(true);
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }

    fn finish(&self) {
        if self.shown.get() {
            self.bar.finish_and_clear();
        }
    }
}

fn open_data(path: &Path) -> anyhow::Result<(File, u64)> {
    files::note_input(path);
    let file =
        File::open(path).map_err(|e| anyhow!("{}: {}", path.display(), files::io_reason(&e)))?;
    let len = file
        .metadata()
        .map_err(|e| anyhow!("{}: {}", path.display(), files::io_reason(&e)))?
        .len();
    Ok((file, len))
}

fn create(args: &CreateArgs) -> anyhow::Result<()> {
    let key = files::read_key(&args.key)?;
    let chunk_size = ChunkSize::new(args.chunk_size).context("--chunk-size")?;
    let (file, len) = open_data(&args.data)?;
    let list_path = args
        .chunks
        .clone()
        .unwrap_or_else(|| chunk_list_path(&args.out));
    // Both outputs are checked before anything is hashed or written: neither may replace an
    // input (the key, the data), a key or a home's state, nor an existing file without
    // --force.
    files::check_out(&args.out, files::Replace::Output)?;
    files::check_out(&list_path, files::Replace::Output)?;
    if list_path == args.out {
        anyhow::bail!(
            "{}: --chunks and --out name the same file",
            list_path.display()
        );
    }

    // The chunk list is streamed to a temporary file beside its destination and renamed
    // into place once complete, so memory stays bounded and no half list is left.
    let list_dir = match list_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".tds-tmp-")
        .tempfile_in(&list_dir)
        .map_err(|e| anyhow!("{}: {}", list_dir.display(), files::io_reason(&e)))?;
    let mut list = ChunkListWriter::new(BufWriter::new(tmp));

    let bar = Bar::new(len);
    let progress = |n: u64| bar.advance(n);
    let builder = ContentBuilder::new(chunk_size, threads(args.threads)).progress(&progress);
    // Positional reads: each hashing thread copies its own part out of the page cache.
    let content = builder
        .build_file_with_leaves(&file, |index, leaf| list.push(index, leaf))
        .with_context(|| args.data.display().to_string())?;
    bar.finish();

    let manifest = Manifest {
        version: MANIFEST_VERSION,
        title: args.title.clone(),
        description: args.description.clone(),
        sector: args.sector.clone(),
        media_type: args.media_type.clone(),
        schema: args.schema.clone(),
        keywords: args.keywords.clone(),
        owner: ParticipantId::of(&key.public_key()),
        owner_key: key.public_key(),
        created: args.created.unwrap_or_else(Timestamp::now),
        classification: args.classification,
        personal: args.personal,
        residency: args.residency.clone(),
        content,
        lineage: args
            .derived_from
            .iter()
            .map(|asset| Lineage {
                asset: *asset,
                relation: args.relation,
                agreement: None,
            })
            .collect(),
        supersedes: args.supersedes,
        quality: None,
    };
    let envelope = manifest.sign(&key)?;
    let id = manifest.asset_id()?;

    let tmp = list
        .finish()
        .map_err(|e| anyhow!("{}: {}", list_path.display(), files::io_reason(&e)))?
        .into_inner()
        .map_err(|e| anyhow!("{}: {}", list_path.display(), files::io_reason(e.error())))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| anyhow!("{}: {}", list_path.display(), files::io_reason(&e)))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            tmp.path(),
            std::fs::Permissions::from_mode(files::PUBLIC_MODE),
        )
        .map_err(|e| anyhow!("{}: {}", list_path.display(), files::io_reason(&e)))?;
    }
    tmp.persist(&list_path)
        .map_err(|e| anyhow!("{}: {}", list_path.display(), files::io_reason(&e.error)))?;
    files::write(&args.out, &envelope, files::PUBLIC_MODE)?;

    output::print(&json!({
        "asset_id": id.to_string(),
        "root": content.root.to_string(),
        "size": content.size,
        "chunks": content.chunks,
        "chunk_size": content.chunk_size.get(),
        "chunk_list": list_path.display().to_string(),
    }))
}

/// Opens a manifest and checks its signature: against `owner_key` if given (the owner
/// is then authenticated, the `bool`), else against the key the manifest names.
fn open_manifest(
    path: &Path,
    owner_key: Option<&PublicKey>,
) -> anyhow::Result<(SelfSignedManifest, bool)> {
    let bytes = files::read(path)?;
    let unverified = tds_manifest::open(&bytes).with_context(|| path.display().to_string())?;
    match owner_key {
        Some(k) => unverified.verify(k).map(|v| (v.into_self_signed(), true)),
        None => unverified.verify_self_signed().map(|m| (m, false)),
    }
    .with_context(|| path.display().to_string())
}

const NOT_AUTHENTICATED: &str = "the owner is not authenticated: the signature was checked against the key the manifest names; pass --owner-key to authenticate it";

fn verify(args: &VerifyManifestArgs) -> anyhow::Result<()> {
    let (manifest, authenticated) = open_manifest(&args.manifest, args.owner_key.as_ref())?;
    let mut out = Map::new();
    out.insert("asset_id".into(), json!(manifest.id().to_string()));
    out.insert("owner".into(), json!(manifest.owner.to_string()));
    out.insert("owner_key".into(), json!(manifest.owner_key.to_hex()));
    out.insert("signature".into(), json!("valid"));
    out.insert("owner_authenticated".into(), json!(authenticated));
    if !authenticated {
        out.insert("warning".into(), json!(NOT_AUTHENTICATED));
    }
    if let (Some(path), Some(key)) = (&args.receipt, &args.authority_key) {
        let bytes = files::read(path)?;
        let receipt = tds_manifest::verify_receipt(&bytes, key)
            .and_then(|r| r.check_covers(&manifest).map(|()| r))
            .with_context(|| path.display().to_string())?;
        let mut r = Map::new();
        r.insert("authority".into(), json!(receipt.authority.to_string()));
        r.insert("credential".into(), json!(receipt.credential.to_string()));
        output::time(&mut r, "registered", receipt.registered);
        out.insert("receipt".into(), Json::Object(r));
    }
    if let Some(data) = &args.data {
        let list_path = match &args.chunks {
            Some(p) => Some(p.clone()),
            None => Some(chunk_list_path(&args.manifest)).filter(|p| p.exists()),
        };
        let list = match &list_path {
            Some(p) => Some(
                File::open(p).map_err(|e| anyhow!("{}: {}", p.display(), files::io_reason(&e)))?,
            ),
            None => None,
        };
        let (file, len) = open_data(data)?;
        let bar = Bar::new(len);
        let progress = |n: u64| bar.advance(n);
        let builder = ContentBuilder::new(manifest.content.chunk_size, threads(args.threads))
            .progress(&progress);
        let checked = check_data(&builder, file, &manifest.content, list);
        bar.finish();
        match checked {
            Ok(status) => {
                out.insert("data".into(), json!("valid"));
                out.insert(
                    "chunk_list".into(),
                    match status {
                        ListStatus::Verified => json!("verified"),
                        ListStatus::Absent => json!("absent"),
                        ListStatus::Invalid(why) => json!(format!("ignored: {why}")),
                    },
                );
            }
            // The contract: one line naming the first bad chunk.
            Err(
                e @ (DataError::Chunk { .. } | DataError::Length { .. } | DataError::Root { .. }),
            ) => {
                if !authenticated {
                    let _ = writeln!(std::io::stderr(), "warning: {NOT_AUTHENTICATED}");
                }
                bail!("{e}")
            }
            Err(e) => return Err(e).with_context(|| data.display().to_string()),
        }
    } else {
        out.insert("data".into(), json!("not checked"));
    }
    if !authenticated {
        let _ = writeln!(std::io::stderr(), "warning: {NOT_AUTHENTICATED}");
    }
    output::print(&Json::Object(out))
}

fn show(path: &Path) -> anyhow::Result<()> {
    let (m, _) = open_manifest(path, None)?;
    output::print(&Json::Object(m.to_json()))
}

fn register(args: &RegisterArgs) -> anyhow::Result<()> {
    let now = args.at.unwrap_or_else(Timestamp::now);
    let authority = crate::home::open(&args.home)?.load()?;
    // The credential binds the owner key to a member, so a self-signed manifest is enough.
    let (manifest, _) = open_manifest(&args.manifest, None)?;
    let cred_bytes = files::read(&args.credential)?;
    let credential = authority
        .trust_store()
        .verify(&cred_bytes, now)
        .with_context(|| args.credential.display().to_string())?;
    let (receipt, envelope) = tds_manifest::register(&authority, &manifest, &credential, now)
        .with_context(|| args.credential.display().to_string())?;
    files::write(&args.out, &envelope, files::PUBLIC_MODE)?;
    let mut o = Map::new();
    o.insert("asset_id".into(), json!(receipt.asset.to_string()));
    o.insert("owner".into(), json!(receipt.owner.to_string()));
    o.insert("owner_key".into(), json!(receipt.owner_key.to_hex()));
    o.insert("credential".into(), json!(receipt.credential.to_string()));
    o.insert("authority".into(), json!(receipt.authority.to_string()));
    o.insert(
        "authority_key".into(),
        json!(authority.public_key().to_hex()),
    );
    output::time(&mut o, "registered", receipt.registered);
    output::print(&Json::Object(o))
}
