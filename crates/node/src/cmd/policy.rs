//! `tds policy check|fmt|export|eval|contains|template`: usage policies.
//!
//! Policies are read as text or as ODRL JSON, told apart by content (a JSON object
//! starts with `{`), never by file name.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use clap::Subcommand;
use serde_json::json;
use tds_policy::{json as pjson, odrl, Containment, Policy};

use crate::{files, output};

/// `tds policy ...`
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Check a policy (text or ODRL JSON); exit 0 if valid, lint warnings on stderr.
    Check {
        /// The policy file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the canonical text form of a policy.
    Fmt {
        /// The policy file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print a policy in another form.
    Export {
        /// The policy file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// ODRL 2.2 JSON with the TDS profile.
        #[arg(long, required = true)]
        odrl: bool,
    },
    /// Decide a request under a policy: {"decision", "duties", "reasons"}.
    Eval {
        /// The policy file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The request, a JSON file.
        #[arg(long, value_name = "REQUEST.json")]
        request: PathBuf,
    },
    /// Whether every use REQUEST_POLICY permits stays within OFFER:
    /// {"contained", "counterexample"}.
    Contains {
        /// The offer's policy file.
        #[arg(value_name = "OFFER")]
        offer: PathBuf,
        /// The requested policy file.
        #[arg(value_name = "REQUEST_POLICY")]
        request: PathBuf,
    },
    /// Print a sector template (power, transport, weather, finance, healthcare, licence).
    Template {
        /// The sector.
        #[arg(value_name = "SECTOR")]
        sector: String,
    },
}

pub(crate) fn dispatch(c: PolicyCommand) -> anyhow::Result<()> {
    match c {
        PolicyCommand::Check { file } => check(&file),
        PolicyCommand::Fmt { file } => {
            let (p, _) = load(&file)?;
            print_text(&tds_policy::format(&p))
        }
        PolicyCommand::Export { file, odrl: _ } => {
            let (p, _) = load(&file)?;
            output::print(&odrl::export(&p))
        }
        PolicyCommand::Eval { file, request } => {
            let (p, _) = load(&file)?;
            let r = load_request(&request)?;
            output::print(&pjson::decision_to_json(&tds_policy::evaluate(&p, &r)))
        }
        PolicyCommand::Contains { offer, request } => {
            let (o, _) = load(&offer)?;
            let (r, _) = load(&request)?;
            let answer = tds_policy::contains(&o, &r)
                .map_err(|e| anyhow!("{} and {}: {e}", offer.display(), request.display()))?;
            output::print(&match answer {
                Containment::Contained => json!({"contained": true, "counterexample": null}),
                Containment::NotContained(req) => json!({
                    "contained": false,
                    "counterexample": pjson::request_to_json(&req),
                }),
            })
        }
        PolicyCommand::Template { sector } => match tds_policy::templates::template(&sector) {
            Some(t) => print_text(t),
            None => bail!(
                "unknown template {sector:?} (one of {})",
                tds_policy::templates::NAMES.join(", ")
            ),
        },
    }
}

fn print_text(t: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(t.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Reads a policy file, text or ODRL JSON; returns the policy and import warnings.
pub(crate) fn load(path: &Path) -> anyhow::Result<(Policy, Vec<String>)> {
    let bytes = files::read(path)?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))?;
    if text.trim_start().starts_with('{') {
        let i = odrl::import_str(text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok((i.policy, i.warnings))
    } else {
        let p = tds_policy::parse(&path.display().to_string(), text)?;
        Ok((p, Vec::new()))
    }
}

fn load_request(path: &Path) -> anyhow::Result<tds_policy::Request> {
    let bytes = files::read(path)?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))?;
    pjson::request_from_str(text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn check(path: &Path) -> anyhow::Result<()> {
    let bytes = files::read(path)?;
    let is_json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let (p, mut warnings) = load(path)?;
    warnings.extend(tds_policy::lint(&p).iter().map(|l| {
        l.to_string()
            .strip_prefix("warning: ")
            .unwrap_or_default()
            .to_owned()
    }));
    let mut err = std::io::stderr().lock();
    for w in &warnings {
        writeln!(err, "{}: warning: {w}", path.display())?;
    }
    output::print(&json!({
        "valid": true,
        "format": if is_json { "odrl" } else { "text" },
        "policy_id": p.id()?.to_string(),
        "rules": p.rules.len(),
        "warnings": warnings.len(),
    }))
}
