//! The node verbs of issue 12: `tds init`, `tds serve`, `tds status`, `tds credential
//! install`. A node is one home directory ([`home`]) and one config file ([`config`]);
//! `serve` runs its connector with an admin API ([`admin`]) that the other verbs use while
//! it runs.

pub(crate) mod admin;
pub(crate) mod authority;
pub(crate) mod backup;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod home;
pub(crate) mod metrics;
pub(crate) mod ops;
pub(crate) mod progress;
pub(crate) mod serve;
pub(crate) mod status;
pub(crate) mod verbs;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use serde_json::json;
use tds_core::PublicKey;
use tds_identity::{Jurisdiction, Role, Sector};

use config::{AdminSection, LogSection, NetworkSection, NodeConfig, NodeSection, TransferSection};
use home::NodeHome;

/// `tds init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The node's home directory (created, mode 0700; must be new or empty).
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// The node's display name.
    #[arg(long)]
    pub(crate) name: String,
    /// The primary sector (power, transport, weather, finance, healthcare, ...).
    #[arg(long, value_parser = crate::cli::parse_sector)]
    pub(crate) sector: Sector,
    /// Roles to ask for, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "provider,consumer", value_parser = crate::cli::parse_role)]
    pub(crate) roles: Vec<Role>,
    /// Jurisdiction, a region code such as CN or CN-SX.
    #[arg(long, default_value = "CN", value_parser = crate::cli::parse_jurisdiction)]
    pub(crate) jurisdiction: Jurisdiction,
    /// QUIC listen address of the connector.
    #[arg(long, default_value = "0.0.0.0:7700")]
    pub(crate) listen: SocketAddr,
    /// The authority's address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) authority_addr: Option<SocketAddr>,
}

/// `tds serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The node's home directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// Log format on stderr: human or json (default: the config's).
    #[arg(long, value_name = "FORMAT", value_parser = ["human", "json"])]
    pub(crate) log_format: Option<String>,
    /// Log level or filter, e.g. debug or tds_connector=debug,info (RUST_LOG overrides).
    #[arg(long, value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
}

/// A verb that needs only a node home.
#[derive(Debug, Args)]
pub(crate) struct NodeHomeArg {
    /// The node's home directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
}

/// `tds credential install`.
#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// The node's home directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// The credential file (from `tds authority admit` or an approved `tds join`).
    #[arg(value_name = "FILE")]
    pub(crate) credential: PathBuf,
    /// The authority's public key, 64 hex digits (its `tds authority show`).
    #[arg(long, value_name = "HEX", value_parser = crate::cli::parse_public_key)]
    pub(crate) authority_key: PublicKey,
    /// The authority's current revocation list (`tds authority crl`): peers are checked
    /// against it.
    #[arg(long, value_name = "FILE")]
    pub(crate) crl: PathBuf,
}

pub(crate) fn init(args: &InitArgs) -> anyhow::Result<()> {
    let config = NodeConfig {
        node: NodeSection {
            name: args.name.clone(),
            sector: args.sector.to_string(),
            roles: args.roles.iter().map(ToString::to_string).collect(),
            jurisdiction: args.jurisdiction.to_string(),
        },
        network: NetworkSection {
            listen: args.listen,
            authority_addr: args.authority_addr,
            connect_timeout_ms: 5_000,
            witness_every_s: 300,
        },
        admin: AdminSection::default(),
        transfer: TransferSection::default(),
        log: LogSection::default(),
    };
    let home = NodeHome::create(&args.home, &config)?;
    let mut out = crate::output::key(&home.public_key()?);
    out.insert("key_encrypted".into(), json!(home.key_encrypted()?));
    out.insert("home".into(), json!(home.dir.display().to_string()));
    out.insert(
        "config".into(),
        json!(home.path(home::CONFIG_FILE).display().to_string()),
    );
    crate::output::print(&serde_json::Value::Object(out))
}

pub(crate) fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let home = NodeHome::open(&args.home)?;
    serve::serve(
        home,
        &serve::LogFlags {
            format: args.log_format.clone(),
            level: args.log_level.clone(),
        },
    )
}

/// Runs `f` on a small runtime (the verbs that may call a running node).
pub(crate) fn block_on<T>(
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f)
}

pub(crate) fn status(args: &NodeHomeArg) -> anyhow::Result<()> {
    let home = NodeHome::open(&args.home)?;
    let value = block_on(async {
        match admin::call(&home.dir, "GET", "/v1/status", None).await? {
            Some(v) => Ok(v),
            None => status::offline(&home),
        }
    })?;
    crate::output::print(&value)
}

pub(crate) fn install(args: &InstallArgs) -> anyhow::Result<()> {
    let home = NodeHome::open(&args.home)?;
    let credential = crate::files::read(&args.credential)?;
    let crl = crate::files::read(&args.crl)?;
    // The credential must be this node's and verify under the authority key and list.
    let now = tds_core::Clock::now(&tds_core::time::SystemClock);
    let mut trust = tds_identity::TrustStore::new();
    trust.add_authority(args.authority_key);
    trust
        .add_revocation_list(&crl, now)
        .map_err(|e| anyhow!("{}: {e}", args.crl.display()))?;
    let verified = trust
        .verify(&credential, now)
        .map_err(|e| anyhow!("{}: {e}", args.credential.display()))?;
    if verified.credential().subject_key() != &home.public_key()? {
        return Err(anyhow!(
            "{}: the credential is for another key than this node's",
            args.credential.display()
        ));
    }
    home.install_credential(&credential, &args.authority_key, Some(&crl))?;
    crate::output::print(&json!({
        "id": verified.credential().subject().to_string(),
        "serial": verified.credential().serial(),
        "not_before": verified.credential().not_before().to_rfc3339(),
        "not_after": verified.credential().not_after().to_rfc3339(),
        "home": home.dir.display().to_string(),
    }))
}
