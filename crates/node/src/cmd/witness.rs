//! `tds witness cosign`: the authority cosigns a participant's log checkpoint.
//!
//! The authority's home keeps `witness.json` (the last checkpoint cosigned per log,
//! [`tds_provenance::witness::WitnessState`]) and, for alerts, its own provenance log in
//! `log/` signed with the authority key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use tds_core::Timestamp;
use tds_provenance::event::{Code, Event, EventBody};
use tds_provenance::note::{Checkpoint, Note, VerifierKey};
use tds_provenance::store::{FileStore, OpenOptions};
use tds_provenance::witness::{self, WitnessError, WitnessState};
use tds_provenance::{ConsistencyProof, DirStorage, Log};

use crate::files;
use crate::home::Home;

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
    let home = Home::open(&args.home)?;
    let authority = home.load()?;
    let log_key = read_log_key(&args.log_key)?;
    let checkpoint = files::read(&args.checkpoint)?;
    let proof = match &args.consistency {
        Some(p) => Some(
            ConsistencyProof::from_json(&files::read(p)?)
                .with_context(|| format!("{}", p.display()))?,
        ),
        None => None,
    };
    let state_path = args.home.join(WITNESS_STATE);
    let mut state: WitnessState = if state_path.exists() {
        serde_json::from_slice(&files::read(&state_path)?)
            .map_err(|e| anyhow!("{}: {e}", state_path.display()))?
    } else {
        WitnessState::default()
    };
    let now = Timestamp::now().as_secs();
    match witness::cosign(
        &mut state,
        &**authority.signer(),
        &log_key,
        &checkpoint,
        proof.as_ref(),
        now,
    ) {
        Ok(done) => {
            let mut json = serde_json::to_vec_pretty(&state)?;
            json.push(b'\n');
            files::write_state(&state_path, &json, files::PRIVATE_MODE)?;
            let mut out = std::io::stdout().lock();
            out.write_all(done.note.as_bytes())?;
            out.flush()?;
            Ok(())
        }
        Err(WitnessError::Refused {
            origin,
            size,
            reason,
        }) => {
            if let Err(e) = alert(&args.home, authority.signer(), &checkpoint, &origin, size) {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: the alert event was not logged: {e:#}"
                );
            }
            bail!("{}: refused: {reason}", args.checkpoint.display())
        }
        Err(e) => Err(anyhow!("{}: {e}", args.checkpoint.display())),
    }
}

/// Logs a `checkpoint_refused` alert in the authority's own log.
fn alert(
    home: &Path,
    key: &Arc<dyn tds_core::Signer>,
    checkpoint: &[u8],
    origin: &str,
    size: u64,
) -> anyhow::Result<()> {
    let root = Note::parse(checkpoint)
        .ok()
        .and_then(|n| Checkpoint::parse(&n.text).ok())
        .map(|c| c.root)
        .unwrap_or_default();
    let dir = home.join(super::log::LOG_DIR);
    crate::home::create_private_dir(&dir)?;
    let store = FileStore::open(Arc::new(DirStorage::new(&dir)), OpenOptions::writer())?;
    let actor = key.key_id();
    let log = Log::new(store, key.clone());
    log.append(&Event::new(
        Timestamp::now().as_millis(),
        actor,
        EventBody::CheckpointRefused {
            log: tds_core::Hash256::sha256(origin.as_bytes()),
            size,
            root,
            reason: Code::new("inconsistent")?,
        },
    ))?;
    let _ = writeln!(
        std::io::stderr(),
        "alert: logged checkpoint_refused for {origin} in {}",
        dir.display()
    );
    Ok(())
}
