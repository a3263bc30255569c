//! `tds witness cosign`: the authority cosigns a member's log checkpoint, through
//! [`tds_provenance::witness::Witness`].
//!
//! The authority's home keeps `witness.json` (the last checkpoint cosigned per log,
//! [`tds_provenance::witness::DirWitnessMemory`]) and, for alerts, its own provenance log
//! in `log/` signed with the authority key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use tds_core::Timestamp;
use tds_identity::Authority;
use tds_provenance::note::VerifierKey;
use tds_provenance::store::{FileStore, OpenOptions};
use tds_provenance::witness::{DirWitnessMemory, Witness, WitnessError};
use tds_provenance::{ConsistencyProof, DirStorage, Log};

use crate::files;
use tds_identity::AuthorityStore;

/// The witness memory in an authority home.
pub(crate) const WITNESS_STATE: &str = "witness.json";

/// `tds witness ...`
#[derive(Debug, Subcommand)]
pub(crate) enum WitnessCommand {
    /// Cosign a log checkpoint if it is consistent with the last one cosigned for that
    /// log (the first one is trusted on first use); print it with the cosignature added.
    Cosign(CosignArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CosignArgs {
    /// The authority's home directory.
    #[arg(long, value_name = "AUTHORITY_DIR")]
    home: PathBuf,
    /// The log's verifier key (as printed by `tds log key`), or a file holding it.
    #[arg(long, value_name = "VKEY")]
    log_key: String,
    /// The log owner's membership credential: the witness cosigns only logs of members
    /// (checked against this authority's own records).
    #[arg(long, value_name = "FILE")]
    credential: PathBuf,
    /// The checkpoint (signed-note text, as printed by `tds log checkpoint`).
    #[arg(value_name = "CHECKPOINT_FILE")]
    checkpoint: PathBuf,
    /// A consistency proof (as printed by `tds log consistency`) from the size of the last
    /// checkpoint this witness cosigned for the log.
    #[arg(long, value_name = "PROOF_JSON")]
    consistency: Option<PathBuf>,
}

pub(crate) fn dispatch(command: WitnessCommand) -> anyhow::Result<()> {
    match command {
        WitnessCommand::Cosign(args) => cosign(&args),
    }
}

fn read_log_key(text: &str) -> anyhow::Result<VerifierKey> {
    let p = Path::new(text);
    let owned;
    let text = if !text.contains('+') && p.exists() {
        owned = String::from_utf8(files::read(p)?)
            .map_err(|_| anyhow!("{}: not UTF-8", p.display()))?;
        owned.trim().to_owned()
    } else {
        text.trim().to_owned()
    };
    VerifierKey::parse(&text).context("--log-key")
}

fn cosign(args: &CosignArgs) -> anyhow::Result<()> {
    let home = crate::home::open(&args.home)?;
    let authority = home.load()?;
    let log_key = read_log_key(&args.log_key)?;
    let checkpoint = files::read(&args.checkpoint)?;
    let credential = files::read(&args.credential)?;
    let proof = match &args.consistency {
        Some(p) => Some(
            ConsistencyProof::from_json(&files::read(p)?)
                .with_context(|| format!("{}", p.display()))?,
        ),
        None => None,
    };
    let memory = DirWitnessMemory::new(args.home.join(WITNESS_STATE));
    let alerts = alert_log(&args.home, &authority)?;
    let witness = Witness::new(&**authority.signer(), &authority, &memory).with_alerts(&alerts);
    match witness.cosign(
        &log_key,
        &checkpoint,
        proof.as_ref(),
        &credential,
        Timestamp::now(),
    ) {
        Ok(done) => {
            let mut out = std::io::stdout().lock();
            out.write_all(done.note.as_bytes())?;
            out.flush()?;
            Ok(())
        }
        Err(e @ WitnessError::Refused(_)) => {
            if let WitnessError::Refused(r) = &e {
                let origin = &r.origin;
                let mut err = std::io::stderr();
                match (&r.alert, &r.alert_error) {
                    (Some(_), _) => {
                        let _ = writeln!(
                            err,
                            "alert: logged checkpoint_refused for {origin} in {}",
                            args.home.join(super::log::LOG_DIR).display()
                        );
                    }
                    (None, Some(why)) => {
                        let _ = writeln!(err, "warning: the alert event was not logged: {why}");
                    }
                    (None, None) => {}
                }
            }
            bail!("{}: {e}", args.checkpoint.display())
        }
        Err(e @ WitnessError::NotMember(_))
        | Err(e @ WitnessError::CredentialForAnotherKey { .. }) => {
            Err(anyhow::Error::new(e).context(args.credential.display().to_string()))
        }
        Err(e) => Err(anyhow::Error::new(e).context(args.checkpoint.display().to_string())),
    }
}

/// The authority's own log (`<home>/log`, signed with the authority key), where refusals
/// are raised as `checkpoint_refused` alerts.
fn alert_log(home: &Path, authority: &Authority) -> anyhow::Result<Log<FileStore>> {
    let dir = home.join(super::log::LOG_DIR);
    crate::home::create_private_dir(&dir)?;
    let store = FileStore::open(Arc::new(DirStorage::new(&dir)), OpenOptions::writer())
        .with_context(|| dir.display().to_string())?;
    Ok(Log::new(store, authority.signer().clone()))
}
