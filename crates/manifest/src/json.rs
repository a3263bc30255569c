//! The JSON view of a manifest, as `tds manifest show` and `tds inspect` print it.
//!
//! Conventions (a contract for scripts): ids are `sha256:<hex>`, keys are 64 hex digits,
//! and each time `t` appears twice, as `"t"` (RFC 3339, UTC, milliseconds) and `"t_ms"`
//! (integer milliseconds since the epoch, as on the wire).

use serde_json::{json, Map, Value};
use tds_core::time::Timestamp;

use crate::model::{AssetId, Manifest};

fn time(m: &mut Map<String, Value>, name: &str, t: Timestamp) {
    m.insert(name.into(), json!(t.to_rfc3339()));
    m.insert(format!("{name}_ms"), json!(t.as_millis()));
}

/// Every field of `manifest` (with asset id `id`) as a JSON object, in the order the CLI
/// prints it, ending with `owner_authenticated`.
pub(crate) fn manifest_json(
    manifest: &Manifest,
    id: AssetId,
    owner_authenticated: bool,
) -> Map<String, Value> {
    let m = manifest;
    let mut o = Map::new();
    o.insert("asset_id".into(), json!(id.to_string()));
    o.insert("version".into(), json!(m.version));
    o.insert("title".into(), json!(m.title));
    o.insert("description".into(), json!(m.description));
    o.insert("sector".into(), json!(m.sector.as_str()));
    o.insert("media_type".into(), json!(m.media_type));
    o.insert("schema".into(), json!(m.schema));
    o.insert("keywords".into(), json!(m.keywords));
    o.insert("owner".into(), json!(m.owner.to_string()));
    o.insert("owner_key".into(), json!(m.owner_key.to_hex()));
    time(&mut o, "created", m.created);
    o.insert("classification".into(), json!(m.classification.as_str()));
    o.insert("personal".into(), json!(m.personal.as_str()));
    o.insert(
        "residency".into(),
        json!(m.residency.as_ref().map(|r| r.as_str())),
    );
    o.insert(
        "content".into(),
        json!({
            "size": m.content.size,
            "chunk_size": m.content.chunk_size.get(),
            "chunks": m.content.chunks,
            "root": m.content.root.to_string(),
            "alg": m.content.alg.as_str(),
        }),
    );
    o.insert(
        "lineage".into(),
        Value::Array(
            m.lineage
                .iter()
                .map(|l| {
                    json!({
                        "asset": l.asset.to_string(),
                        "relation": l.relation.as_str(),
                        "agreement": l.agreement.map(|a| a.to_string()),
                    })
                })
                .collect(),
        ),
    );
    o.insert(
        "supersedes".into(),
        json!(m.supersedes.map(|s| s.to_string())),
    );
    o.insert(
        "quality".into(),
        match &m.quality {
            None => Value::Null,
            Some(q) => json!({
                "completeness": q.completeness,
                "update_frequency": q.update_frequency.map(|f| f.as_str()),
            }),
        },
    );
    o.insert("owner_authenticated".into(), json!(owner_authenticated));
    o
}
