//! `tds evidence export|verify`: evidence bundles for one agreement.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use tds_core::{Hash256, PublicKey};
use tds_provenance::event::SignedObject;
use tds_provenance::evidence;

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
    let checkpoint = match a
        .checkpoint
        .clone()
        .or(super::log::latest_witnessed(&a.home)?)
    {
        Some(p) => String::from_utf8(files::read(&p)?)
            .map_err(|_| anyhow!("{}: not UTF-8", p.display()))?,
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

/// The asset an embedded signed agreement covers, if `o` is the agreement `agreement`
/// and its asset is an asset id (`sha256:...`): that asset's manifest event belongs in the
/// agreement's evidence. The agreement's signatures are checked.
fn covered_asset(o: &SignedObject, agreement: &Hash256) -> anyhow::Result<Option<Hash256>> {
    if o.kind.as_str() != "agreement" || o.id != *agreement {
        return Ok(None);
    }
    let v = tds_policy::contract::verify_agreement(&o.bytes)
        .map_err(|e| anyhow!("embedded agreement: {e}"))?;
    Ok(v.terms().asset.as_str().parse::<Hash256>().ok())
}

/// The assets of `agreement`, read from the signed agreement the log holds (if any).
fn agreement_assets(
    log: &tds_provenance::Log<tds_provenance::store::FileStore>,
    agreement: &Hash256,
) -> anyhow::Result<Vec<Hash256>> {
    let store = log.store();
    let mut out = Vec::new();
    for i in 0..tds_provenance::LogStore::size(store) {
        let event = tds_provenance::Event::decode(&tds_provenance::LogStore::read(store, i)?)?;
        for o in event.objects() {
            // A log entry that fails to verify is not evidence; leave it out here and
            // let `evidence verify` say why if it is ever bundled.
            if let Ok(Some(asset)) = covered_asset(o, agreement) {
                if !out.contains(&asset) {
                    out.push(asset);
                }
            }
        }
    }
    Ok(out)
}

fn verify(a: &VerifyArgs) -> anyhow::Result<()> {
    let bytes = files::read(&a.file)?;
    let in_file = |e: anyhow::Error| anyhow!("{}: {e}", a.file.display());
    // The signed objects the events embed (agreements, manifests) are checked here, where
    // their crates are known; the agreement names the assets whose manifest events belong
    // in the bundle. Then the provenance crate proves the events are in the cosigned log.
    let checked = check_objects(&bytes).map_err(in_file)?;
    let s = evidence::verify_with_assets(&bytes, &a.authority_key, &checked.assets)
        .map_err(|e| in_file(e.into()))?;
    let objects = checked.objects;
    super::log::print_line(&json!({
        "ok": true,
        "agreement": s.agreement.to_string(),
        "log": s.origin,
        "tree_size": s.tree_size,
        "root": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s.root.as_bytes()),
        "cosigned_at": s.cosigned_at,
        "events": s.events.iter().map(|(i, k)| json!({"index": i, "kind": k})).collect::<Vec<_>>(),
        "credentials": s.credentials.iter().map(|(id, name)| json!({"id": id.to_string(), "name": name})).collect::<Vec<_>>(),
        "log_key_credential": s.log_key_credential,
        "objects": objects,
    }))
}

/// What [`check_objects`] found.
struct CheckedObjects {
    /// One JSON line per embedded object.
    objects: Vec<serde_json::Value>,
    /// The assets the bundle's agreement covers.
    assets: Vec<Hash256>,
}

/// Verifies the signatures of the agreements and manifests embedded in the bundle's
/// events and that each has the id its event claims; an embedded agreement must be the
/// bundle's. Objects of other kinds are listed as not checked.
fn check_objects(bundle: &[u8]) -> anyhow::Result<CheckedObjects> {
    let bundle = evidence::Bundle::decode(bundle)?;
    let mut out = CheckedObjects {
        objects: Vec::new(),
        assets: Vec::new(),
    };
    for be in &bundle.events {
        let event = tds_provenance::Event::decode(&be.event)?;
        for o in event.objects() {
            let kind = o.kind.as_str();
            let checked = match kind {
                "agreement" => {
                    if o.id != bundle.agreement {
                        return Err(anyhow!(
                            "event {}: embeds agreement {}, the bundle is for {}",
                            be.index,
                            o.id,
                            bundle.agreement
                        ));
                    }
                    let v = tds_policy::contract::verify_agreement(&o.bytes)
                        .map_err(|e| anyhow!("event {}: embedded agreement: {e}", be.index))?;
                    if v.id() != o.id {
                        return Err(anyhow!(
                            "event {}: embedded agreement is {}, the event says {}",
                            be.index,
                            v.id(),
                            o.id
                        ));
                    }
                    if let Ok(asset) = v.terms().asset.as_str().parse::<Hash256>() {
                        out.assets.push(asset);
                    }
                    "signatures of both parties verified"
                }
                "manifest" => {
                    let v = tds_manifest::open(&o.bytes)
                        .and_then(|u| u.verify_named_owner())
                        .map_err(|e| anyhow!("event {}: embedded manifest: {e}", be.index))?;
                    if *v.id().as_hash() != o.id {
                        return Err(anyhow!(
                            "event {}: embedded manifest is {}, the event says {}",
                            be.index,
                            v.id(),
                            o.id
                        ));
                    }
                    "owner signature verified"
                }
                _ => "not checked (unknown kind)",
            };
            out.objects.push(json!({
                "event": be.index,
                "kind": kind,
                "id": o.id.to_string(),
                "check": checked,
            }));
        }
    }
    Ok(out)
}
