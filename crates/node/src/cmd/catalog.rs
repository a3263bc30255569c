//! `tds catalog export --dcat MANIFEST...`: a catalog of manifests as DCAT 3 JSON-LD.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use tds_manifest::{Catalog, CatalogEntry};

use crate::{files, output};

/// `tds catalog ...`
#[derive(Debug, Subcommand)]
pub(crate) enum CatalogCommand {
    /// Export manifests as a catalog.
    Export(ExportArgs),
    /// Search a provider's catalog (or the authority's federated one); each offer carries
    /// its `offer_id`.
    Search(crate::node::verbs::SearchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Write DCAT 3 JSON-LD (dcat:Catalog / dcat:Dataset / odrl:hasPolicy) on stdout.
    #[arg(long)]
    dcat: bool,
    /// The catalog title.
    #[arg(long, default_value = "TDS catalog")]
    title: String,
    /// The manifest files; each signature is checked against the key it names (the owners
    /// are not authenticated: a catalog lists what was published).
    #[arg(value_name = "MANIFEST", required = true)]
    manifests: Vec<PathBuf>,
}

pub(crate) fn dispatch(command: CatalogCommand) -> anyhow::Result<()> {
    match command {
        CatalogCommand::Export(args) => export(&args),
        CatalogCommand::Search(args) => crate::node::verbs::search(args),
    }
}

fn export(args: &ExportArgs) -> anyhow::Result<()> {
    if !args.dcat {
        bail!("choose an export format: --dcat (the only one so far)");
    }
    let mut catalog = Catalog {
        title: args.title.clone(),
        entries: Vec::with_capacity(args.manifests.len()),
    };
    for path in &args.manifests {
        let bytes = files::read(path)?;
        // Self-signed is what a catalog can check alone (CatalogEntry says why).
        let manifest = tds_manifest::open(&bytes)
            .and_then(|u| u.verify_self_signed())
            .with_context(|| path.display().to_string())?;
        catalog.entries.push(CatalogEntry {
            manifest,
            offers: Vec::new(),
        });
    }
    output::print(&catalog.to_dcat())
}
