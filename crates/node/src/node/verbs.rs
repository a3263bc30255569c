//! The operator verbs of issue 12 (`asset`, `catalog search`, `negotiate`, `fetch`,
//! `agreements`, `agreement terminate`, `use`, `duties`, `delete`): each sends its
//! operation to the running node's admin API, or, when no node runs on the home, runs it
//! on a connector started from the home for the call ([`super::ops`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::home::{absolute, NodeHome};
use super::{admin, ops, serve};

/// `tds asset`.
#[derive(Debug, Subcommand)]
pub(crate) enum AssetCommand {
    /// Publish a file: sign its manifest, serve it, offer it under a policy.
    Add(Box<AssetAddArgs>),
    /// The assets this node publishes and their offers.
    List(super::NodeHomeArg),
}

/// `tds asset add`.
#[derive(Debug, Args)]
pub(crate) struct AssetAddArgs {
    /// The node's home directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// The data file.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// The title.
    #[arg(long)]
    pub(crate) title: String,
    /// general, important or core.
    #[arg(long, value_name = "LEVEL")]
    pub(crate) classification: String,
    /// A usage policy file (the TDS policy language).
    #[arg(long, value_name = "FILE", conflicts_with = "template")]
    pub(crate) policy: Option<PathBuf>,
    /// A sector policy template: power, transport, weather, finance, healthcare, licence
    /// (default: the node's sector).
    #[arg(long, value_name = "SECTOR")]
    pub(crate) template: Option<String>,
    /// The price per use, in the currency's units (e.g. 12.5).
    #[arg(long, value_name = "AMOUNT", requires = "currency")]
    pub(crate) price: Option<String>,
    /// The price's currency (ISO 4217, e.g. CNY).
    #[arg(long, value_name = "CODE", requires = "price")]
    pub(crate) currency: Option<String>,
    /// A description.
    #[arg(long, default_value = "")]
    pub(crate) description: String,
    /// A keyword; repeat for more.
    #[arg(long = "keyword", value_name = "WORD")]
    pub(crate) keywords: Vec<String>,
    /// Personal information: none, personal or sensitive.
    #[arg(long, value_name = "LEVEL")]
    pub(crate) personal: Option<String>,
    /// Days the offer stays valid (under a licence: at most until the licence ends).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36_600))]
    pub(crate) days: u64,
    /// The authority's public-data licence (`tds authority licence`) this offer is made
    /// under: the offer is refused unless the licence is this node's, valid, and contains
    /// the offer's policy; consumers check the same chain when they negotiate.
    #[arg(long, value_name = "FILE")]
    pub(crate) licence: Option<PathBuf>,
}

/// `tds catalog search`.
#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// The node's home directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// The provider to ask.
    #[arg(long, value_name = "ADDR", required_unless_present = "federated")]
    pub(crate) peer: Option<SocketAddr>,
    /// Search the authority's federated catalog instead of one provider.
    #[arg(long, conflicts_with = "peer")]
    pub(crate) federated: bool,
    /// Only this sector.
    #[arg(long)]
    pub(crate) sector: Option<String>,
    /// A word in the title, description or keywords.
    #[arg(long, value_name = "TEXT")]
    pub(crate) query: Option<String>,
    /// Only this classification.
    #[arg(long, value_name = "LEVEL")]
    pub(crate) classification: Option<String>,
}

/// `tds negotiate`.
#[derive(Debug, Args)]
pub(crate) struct NegotiateArgs {
    /// The node's home directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// The provider.
    #[arg(long, value_name = "ADDR")]
    pub(crate) peer: SocketAddr,
    /// The offer id (`offer_id` of `tds catalog search`).
    #[arg(long, value_name = "ID")]
    pub(crate) offer: String,
    /// The purpose of use.
    #[arg(long, value_name = "PURPOSE")]
    pub(crate) purpose: String,
    /// A policy file asking for less than the offer (default: the offer's narrowed to the
    /// purpose).
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
}

/// `tds fetch`.
#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// The node's home directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// The provider.
    #[arg(long, value_name = "ADDR")]
    pub(crate) peer: SocketAddr,
    /// The agreement id.
    #[arg(long, value_name = "ID")]
    pub(crate) agreement: String,
    /// Where to write the asset (re-running resumes a partial file).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
    /// The purpose of this use (default: the agreement's).
    #[arg(long, value_name = "PURPOSE")]
    pub(crate) purpose: Option<String>,
    /// Where the data will be processed, a region code (policies may constrain it).
    #[arg(long, value_name = "REGION")]
    pub(crate) location: Option<String>,
    /// A consent reference (policies on personal data may ask for one).
    #[arg(long, value_name = "REF")]
    pub(crate) consent_ref: Option<String>,
    /// An export-assessment reference (cross-border processing).
    #[arg(long, value_name = "REF")]
    pub(crate) export_assessment_ref: Option<String>,
}

/// `tds agreement terminate`.
#[derive(Debug, Args)]
pub(crate) struct TerminateArgs {
    /// The agreement id.
    #[arg(value_name = "ID")]
    pub(crate) agreement: String,
    /// The node's home directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// Why (sent to the peer and logged).
    #[arg(long)]
    pub(crate) reason: String,
}

/// `tds use`.
#[derive(Debug, Args)]
pub(crate) struct UseArgs {
    /// The node's home directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// The agreement id.
    #[arg(long, value_name = "ID")]
    pub(crate) agreement: String,
    /// The action: use, read, analyze, aggregate, derive, ...
    #[arg(long)]
    pub(crate) action: String,
    /// The purpose.
    #[arg(long)]
    pub(crate) purpose: String,
}

/// `tds delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The node's home directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// The agreement whose data to delete.
    #[arg(long, value_name = "ID")]
    pub(crate) agreement: String,
    /// The provider (default: where the agreement was negotiated).
    #[arg(long, value_name = "ADDR")]
    pub(crate) peer: Option<SocketAddr>,
}

/// Runs operation `name` through the running node or on the home; prints its JSON.
fn run_op(home: &Path, name: &str, args: Value, progress: bool) -> anyhow::Result<()> {
    let home = NodeHome::open(home)?;
    let value = super::block_on(async {
        if let Some(v) =
            admin::call(&home.dir, "POST", &format!("/v1/op/{name}"), Some(&args)).await?
        {
            return Ok(v);
        }
        // No node runs here: a connector of this home for the call, on a free port.
        let ip = home.config.network.listen.ip();
        let connector = serve::start_connector(&home, Some(SocketAddr::new(ip, 0))).await?;
        let bar = progress.then(super::progress::Bar::new);
        let callback = bar.as_ref().map(super::progress::Bar::callback);
        let out = ops::run(&connector, &home, name, args, callback).await;
        if let Some(b) = bar {
            b.finish();
        }
        connector.shutdown().await;
        out
    })?;
    crate::output::print(&value)
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    String::from_utf8(crate::files::read(path)?)
        .map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))
}

pub(crate) fn asset(c: AssetCommand) -> anyhow::Result<()> {
    match c {
        AssetCommand::Add(a) => {
            let policy = match &a.policy {
                Some(p) => Some(read_text(p)?),
                None => None,
            };
            let args = json!({
                "file": absolute(&a.file)?,
                "title": a.title,
                "classification": a.classification,
                "description": a.description,
                "keywords": a.keywords,
                "personal": a.personal,
                "policy": policy,
                "template": a.template,
                "price": a.price,
                "currency": a.currency,
                "days": a.days,
                "licence": a.licence.as_deref().map(absolute).transpose()?,
            });
            run_op(&a.home, "asset_add", args, false)
        }
        AssetCommand::List(h) => run_op(&h.home, "asset_list", json!({}), false),
    }
}

pub(crate) fn search(a: SearchArgs) -> anyhow::Result<()> {
    let args = json!({
        "peer": a.peer,
        "sector": a.sector,
        "query": a.query,
        "classification": a.classification,
    });
    run_op(&a.home, "catalog_search", args, false)
}

pub(crate) fn negotiate(a: NegotiateArgs) -> anyhow::Result<()> {
    let policy = match &a.policy {
        Some(p) => Some(read_text(p)?),
        None => None,
    };
    let args = json!({"peer": a.peer, "offer": a.offer, "purpose": a.purpose, "policy": policy});
    run_op(&a.home, "negotiate", args, false)
}

pub(crate) fn fetch(a: FetchArgs) -> anyhow::Result<()> {
    let args = json!({
        "peer": a.peer,
        "agreement": a.agreement,
        "out": absolute(&a.out)?,
        "purpose": a.purpose,
        "location": a.location,
        "consent_ref": a.consent_ref,
        "export_assessment_ref": a.export_assessment_ref,
    });
    run_op(&a.home, "fetch", args, true)
}

pub(crate) fn agreements(h: super::NodeHomeArg) -> anyhow::Result<()> {
    run_op(&h.home, "agreements", json!({}), false)
}

pub(crate) fn terminate(a: TerminateArgs) -> anyhow::Result<()> {
    let args = json!({"agreement": a.agreement, "reason": a.reason});
    run_op(&a.home, "agreement_terminate", args, false)
}

pub(crate) fn use_data(a: UseArgs) -> anyhow::Result<()> {
    let args = json!({"agreement": a.agreement, "action": a.action, "purpose": a.purpose});
    run_op(&a.home, "use", args, false)
}

pub(crate) fn duties(h: super::NodeHomeArg) -> anyhow::Result<()> {
    run_op(&h.home, "duties", json!({}), false)
}

pub(crate) fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let args = json!({"agreement": a.agreement, "peer": a.peer});
    run_op(&a.home, "delete", args, false)
}
