//! `tds evidence export|verify`: evidence bundles for one agreement.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use tds_core::{Hash256, PublicKey};
use tds_provenance::evidence;
use tds_provenance::CosignedStore;

use crate::files;

/// `tds evidence ...`
#[derive(Debug, Subcommand)]
pub(crate) enum EvidenceCommand {
    /// Write one file with every event about an agreement, its inclusion proofs, the
    /// checkpoint they prove into (with cosignatures) and membership credentials.
    Export(ExportArgs),
    /// Check a bundle offline, trusting only the authority's key; exit 0 and a summary if
    /// everything checks.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The agreement id (sha256:...).
    #[arg(long, value_name = "ID")]
    agreement: Hash256,
    /// Where to write the bundle.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The checkpoint to prove into, cosigned by the authority (as printed by
    /// `tds witness cosign`); default: the latest one recorded with `tds log witnessed`,
    /// else the latest stored checkpoint.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// A membership credential to include (the node's own, at least); may repeat.
    #[arg(long = "credential", value_name = "FILE")]
    credentials: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The bundle.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The authority's public key, 64 hex digits.
    #[arg(long, value_name = "HEX", value_parser = parse_key)]
    authority_key: PublicKey,
    /// A signed key-rollover statement to follow from the authority key; repeat, oldest
    /// first.
    #[arg(long = "rollover", value_name = "FILE")]
    rollovers: Vec<PathBuf>,
    /// The authority's revocation list; without it revocation is not checked
    /// (`"revocation_checked": false`).
    #[arg(long, value_name = "FILE")]
    crl: Option<PathBuf>,
}

fn parse_key(s: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(s).map_err(|e| e.to_string())
}

pub(crate) fn dispatch(command: EvidenceCommand) -> anyhow::Result<()> {
    match command {
        EvidenceCommand::Export(a) => export(&a),
        EvidenceCommand::Verify(a) => verify(&a),
    }
}

fn export(a: &ExportArgs) -> anyhow::Result<()> {
    let log = super::log::open_reader(&a.home)?;
    let kept = match &a.checkpoint {
        Some(p) => Some(files::read(p)?),
        None => super::log::witnessed_store(&a.home)
            .latest()?
            .map(|(_, note)| note),
    };
    let checkpoint = match kept {
        Some(note) => String::from_utf8(note).map_err(|_| anyhow!("checkpoint: not UTF-8"))?,
        None => {
            let stored = tds_provenance::LogStore::checkpoints(log.store())?;
            let last = stored.last().ok_or_else(|| {
                anyhow!(
                    "no checkpoint yet (write one with 'tds log checkpoint' and have it cosigned)"
                )
            })?;
            String::from_utf8(last.clone()).map_err(|_| anyhow!("stored checkpoint: not UTF-8"))?
        }
    };
    let mut creds = Vec::new();
    for p in &a.credentials {
        creds.push(files::read(p)?);
    }
    let assets = agreement_assets(&log, &a.agreement)?;
    let bundle = evidence::export_with_assets(&log, &a.agreement, &assets, &checkpoint, creds)
        .context("--checkpoint")?;
    files::write(&a.out, &bundle.encode()?, files::PUBLIC_MODE)?;
    super::log::print_line(&json!({
        "file": a.out.display().to_string(),
        "agreement": a.agreement.to_string(),
        "events": bundle.events.len(),
        "tree_size": tds_provenance::Checkpoint::parse(
            &tds_provenance::Note::parse(checkpoint.as_bytes())?.text
        )?.size,
        "credentials": bundle.credentials.len(),
    }))
}

/// The assets of `agreement`, read from the signed agreement the log holds (if any),
/// checked as evidence verification checks it.
fn agreement_assets(
    log: &tds_provenance::Log<tds_provenance::store::FileStore>,
    agreement: &Hash256,
) -> anyhow::Result<Vec<Hash256>> {
    use tds_provenance::evidence::ObjectVerifier;
    let store = log.store();
    let verifier = tds_objects::StandardVerifier::new();
    let mut out = Vec::new();
    for i in 0..tds_provenance::LogStore::size(store) {
        let event = tds_provenance::Event::decode(&tds_provenance::LogStore::read(store, i)?)?;
        for o in event.objects() {
            if o.kind.as_str() != "agreement" || o.id != *agreement {
                continue;
            }
            // A log entry that fails to verify is not evidence; leave it out here and
            // let `evidence verify` say why if it is ever bundled.
            if let Ok(checked) = verifier.verify_object(o) {
                for asset in checked.assets {
                    if !out.contains(&asset) {
                        out.push(asset);
                    }
                }
            }
        }
    }
    Ok(out)
}

fn verify(a: &VerifyArgs) -> anyhow::Result<()> {
    let bytes = files::read(&a.file)?;
    let now = tds_core::Timestamp::now();
    let trust = crate::trust::store(&[a.authority_key], &a.rollovers, a.crl.as_deref(), now)?;
    let objects = tds_objects::StandardVerifier::with_trust(&trust);
    let v =
        evidence::verify(&bytes, &trust, &objects).with_context(|| a.file.display().to_string())?;
    super::log::print_line(&json!({
        "ok": true,
        "agreement": v.agreement().to_string(),
        "log": v.origin(),
        "tree_size": v.tree_size(),
        "root": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v.root().as_bytes()),
        "cosigned_at": v.cosigned_at().as_secs(),
        "events": v.events().iter().map(|(i, k)| json!({"index": i, "kind": k})).collect::<Vec<_>>(),
        "credentials": v.credentials().iter().map(|(id, name)| json!({"id": id.to_string(), "name": name})).collect::<Vec<_>>(),
        "log_key_credential": true,
        "revocation_checked": v.revocation_checked(),
        "objects": v.objects().iter().map(|o| json!({
            "event": o.event,
            "kind": o.kind,
            "id": o.id.to_string(),
            "check": o.check,
        })).collect::<Vec<_>>(),
    }))
}
