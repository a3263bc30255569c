//! The TDS reference node: the command-line verbs of the `tds` binary.
//!
//! Output formats are a contract: every verb that reports something prints one JSON
//! object on stdout, and every failure is one line on stderr (`error: <file>: <reason>`)
//! with a non-zero exit status (2 for a usage error, 1 for anything else). The verbs and
//! their JSON keys are listed in `spec/identity.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cli;
mod cmd;
mod files;
mod home;
mod node;
mod output;
mod trust;

/// Entry points for the fuzz targets in `fuzz/` (not a stable API): the parsers of the
/// node's own inputs, without side effects.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a `config.toml`; on success renders it and parses the rendering again,
    /// returning whether the two configurations are equal (they must be).
    pub fn config(text: &str) -> Option<bool> {
        let c = crate::node::config::NodeConfig::parse(text).ok()?;
        let again = crate::node::config::NodeConfig::parse(&c.render());
        Some(again.as_ref() == Ok(&c))
    }

    /// Parses an admin API request body as the arguments of operation `name` (what the
    /// admin API does before running it). `Ok` when the body is accepted.
    pub fn admin_body(name: &str, body: &[u8]) -> Result<(), String> {
        let args = crate::node::admin::body_json(body).map_err(|e| e.to_string())?;
        crate::node::ops::check_args(name, args).map_err(|e| format!("{e:#}"))
    }

    /// The operations of the admin API (`POST /v1/op/NAME`) whose arguments
    /// [`admin_body`] parses.
    pub const ADMIN_OPS: [&str; 11] = [
        "asset_add",
        "asset_list",
        "catalog_search",
        "negotiate",
        "fetch",
        "agreements",
        "agreement_terminate",
        "use",
        "duties",
        "delete",
        "backup",
    ];

    /// Checks a backup archive held in memory against its manifest, as `tds restore`
    /// does before writing anything. `Ok(bytes)`: the listed files' total size.
    pub fn backup_archive(bytes: &[u8]) -> Result<u64, String> {
        crate::node::backup::check_archive_bytes(bytes).map_err(|e| format!("{e:#}"))
    }
}

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

/// A command line that clap refused (unknown flag, missing value, bad value).
#[derive(Debug)]
pub struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses `args` (program name first) and runs the verb.
pub fn run<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return usage(e),
    };
    cmd::dispatch(cli.command, cli.force)
}

fn usage(e: clap::Error) -> anyhow::Result<()> {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let mut out = std::io::stdout().lock();
            write!(out, "{}", e.render())?;
            out.flush()?;
            Ok(())
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `tds` or `tds authority` alone: still one line, with the usage clap found.
            let rendered = e.render().to_string();
            let usage = rendered
                .lines()
                .find_map(|l| l.trim().strip_prefix("Usage: "))
                .unwrap_or("tds <COMMAND>");
            Err(UsageError(format!(
                "a subcommand is required: {usage} (see 'tds --help')"
            ))
            .into())
        }
        _ => {
            // clap's first paragraph, on one line: the message and what it lists (missing
            // arguments, possible subcommands); the usage and tips that follow are dropped.
            let rendered = e.render().to_string();
            let paragraph: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect();
            let text = paragraph.join(" ");
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            let text = if text.is_empty() {
                "invalid command line"
            } else {
                text
            };
            Err(UsageError(format!("{text} (see 'tds --help')")).into())
        }
    }
}

/// Prints `err` as one line on stderr: `error: ` and the causes joined by `: `.
pub fn report(err: &anyhow::Error) {
    let text = format!("{err:#}");
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let _ = writeln!(std::io::stderr(), "error: {line}");
}

/// Whether `err` is a write to a closed pipe (`tds inspect FILE | head`): the reader has
/// seen what it wanted, so the command ends quietly, as other Unix tools do.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// The exit status for `err`: 2 for a usage error, 1 otherwise.
pub fn exit_status(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UsageError>().is_some() {
        2
    } else {
        1
    }
}
