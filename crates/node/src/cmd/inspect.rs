//! `tds inspect`: any TDS object as JSON, for reviewers. Nothing here decides trust: a
//! signature is only checked against the key the object itself names, and the output says
//! so.

use std::path::Path;

use anyhow::{anyhow, Context};
use serde_json::{json, Map, Value as Json};
use tds_core::cbor::{self, Limits};
use tds_core::cose::{self, CoseSign, CoseSign1};
use tds_core::{Hash256, Timestamp};
use tds_objects::Value;

use crate::{files, output};

pub(crate) fn inspect(path: &Path) -> anyhow::Result<()> {
    let bytes = files::read(path)?;
    let json = render(&bytes).with_context(|| path.display().to_string())?;
    output::print(&Json::Object(json))
}

fn render(bytes: &[u8]) -> anyhow::Result<Map<String, Json>> {
    if bytes.starts_with(b"-----BEGIN") {
        return Err(anyhow!(
            "a PEM file, not a TDS object (for a key file use 'tds key show')"
        ));
    }
    let content_type = match cose::peek_content_type(bytes) {
        Ok(ct) => ct,
        Err(cose::CoseError::WrongTag { found: None, .. }) => return plain_cbor(bytes),
        Err(e) => return Err(e.into()),
    };
    let now = Timestamp::now();
    let mut m = Map::new();
    m.insert("content_type".into(), json!(content_type));
    let decoded = match tds_objects::decode_any(bytes) {
        Ok(d) => d,
        Err(tds_objects::DecodeError::UnknownContentType(_)) => {
            m.extend(generic(bytes)?);
            m.insert("trust_checked".into(), json!(false));
            return Ok(m);
        }
        Err(e) => return Err(e.into()),
    };
    let kind = decoded.kind();
    m.insert("kind".into(), json!(kind.name()));
    let id = decoded.id();
    let signed = decoded.self_signed();
    match decoded.value() {
        Value::Credential(c) => {
            m.insert("kid".into(), json!(kid(&decoded)));
            m.insert("signature_matches_issuer_key".into(), json!(signed));
            m.extend(output::credential(c, &id));
        }
        Value::RevocationList(l) => {
            m.insert("kid".into(), json!(kid(&decoded)));
            m.insert("signature_matches_issuer_key".into(), json!(signed));
            m.extend(output::crl(l, &id, now));
        }
        Value::KeyRollover(r) => {
            m.insert("kid".into(), json!(kid(&decoded)));
            m.insert("signature_matches_old_key".into(), json!(signed));
            m.extend(output::rollover(r));
        }
        Value::Manifest(_) => {
            // Checked against the owner key the manifest names: self-consistent, not
            // authenticated (trust_checked stays false).
            let opened = tds_manifest::open(bytes)?;
            let owner = opened.manifest().owner_key.id();
            m.insert("owner_key_id".into(), json!(owner.to_string()));
            match opened.verify_self_signed() {
                Ok(v) => {
                    m.insert("signature_matches_owner_key".into(), json!(true));
                    m.extend(v.to_json());
                }
                Err(e) => {
                    m.insert("signature_matches_owner_key".into(), json!(false));
                    m.insert("problem".into(), json!(e.to_string()));
                    m.extend(generic(bytes)?);
                }
            }
        }
        _ => {
            // Offers, requests, agreements, terminations and receipts: their fields as
            // signed, with what the signatures were checked against.
            m.insert("id".into(), json!(id.to_string()));
            m.insert(
                "signers".into(),
                Json::Array(
                    decoded
                        .signers()
                        .iter()
                        .map(|s| json!(s.to_string()))
                        .collect(),
                ),
            );
            m.insert(
                "signatures_match_named_keys".into(),
                match signed {
                    Some(ok) => json!(ok),
                    // A receipt names only the authority's id: nothing to check it with.
                    None => json!("not checkable without the signer's key"),
                },
            );
            m.extend(generic(bytes)?);
        }
    }
    m.insert("trust_checked".into(), json!(false));
    Ok(m)
}

/// The one `kid` of a COSE_Sign1 kind (decode_any always has it).
fn kid(d: &tds_objects::Decoded) -> Json {
    d.signers()
        .first()
        .map_or(Json::Null, |k| json!(k.to_string()))
}

/// An envelope of a kind this build does not know: its headers, signers and payload.
fn generic(bytes: &[u8]) -> anyhow::Result<Map<String, Json>> {
    let mut m = Map::new();
    let (payload, kids) = match bytes.first() {
        Some(0xd2) => {
            let msg = CoseSign1::from_slice(bytes)?;
            let kid = msg.header(cose::label::KID).map(output::cbor);
            m.insert("envelope".into(), json!("COSE_Sign1"));
            (msg.payload, vec![kid])
        }
        _ => {
            let msg = CoseSign::from_slice(bytes)?;
            let kids = msg
                .signatures
                .iter()
                .map(|s| s.header(cose::label::KID).map(output::cbor))
                .collect();
            m.insert("envelope".into(), json!("COSE_Sign"));
            (msg.payload, kids)
        }
    };
    m.insert(
        "kids".into(),
        Json::Array(kids.into_iter().map(|k| k.unwrap_or(Json::Null)).collect()),
    );
    let payload = payload.ok_or(cose::CoseError::DetachedPayload)?;
    m.insert(
        "payload_sha256".into(),
        json!(Hash256::sha256(&payload).to_string()),
    );
    m.extend(payload_json(&payload)?);
    Ok(m)
}

/// A payload as JSON, under `payload`; a non-canonical one is shown canonicalized and
/// flagged. At most [`output::MAX_SHOWN_ITEMS`] items are shown; `payload_items_not_shown`
/// counts the rest.
fn payload_json(payload: &[u8]) -> anyhow::Result<Map<String, Json>> {
    let mut m = Map::new();
    let limits = Limits::DEFAULT.with_floats();
    let (json, hidden) = match cbor::validate(payload, &limits) {
        Ok(()) => {
            m.insert("payload_canonical".into(), json!(true));
            output::cbor_bounded(payload, &limits, output::MAX_SHOWN_ITEMS)?
        }
        Err(strict) => {
            let canonical =
                cbor::canonicalize(payload, &limits).map_err(|_| anyhow!("payload: {strict}"))?;
            m.insert("payload_canonical".into(), json!(false));
            m.insert("payload_problem".into(), json!(strict.to_string()));
            output::cbor_bounded(&canonical, &limits, output::MAX_SHOWN_ITEMS)?
        }
    };
    m.insert("payload".into(), json);
    if hidden > 0 {
        m.insert("payload_items_not_shown".into(), json!(hidden));
    }
    Ok(m)
}

/// Bytes that are not an envelope: shown if they are CBOR at all.
fn plain_cbor(bytes: &[u8]) -> anyhow::Result<Map<String, Json>> {
    let mut m = Map::new();
    m.insert("content_type".into(), Json::Null);
    let inner = payload_json(bytes)
        .map_err(|_| anyhow!("not a TDS object (neither a COSE envelope nor CBOR)"))?;
    m.insert(
        "cbor_canonical".into(),
        inner
            .get("payload_canonical")
            .cloned()
            .unwrap_or(Json::Null),
    );
    m.insert(
        "cbor".into(),
        inner.get("payload").cloned().unwrap_or(Json::Null),
    );
    if let Some(hidden) = inner.get("payload_items_not_shown") {
        m.insert("cbor_items_not_shown".into(), hidden.clone());
    }
    Ok(m)
}
