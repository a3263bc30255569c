//! JSON renderings of keys and identity objects, and printing them.
//!
//! Conventions (a contract for scripts): ids are `sha256:<hex>`, keys are 64 hex digits,
//! byte strings are lowercase hex, and each time `t` appears twice, as `"t"` (RFC 3339,
//! UTC, milliseconds) and `"t_ms"` (integer milliseconds since the epoch, as on the wire).

use std::io::Write;

use serde_json::{json, Map, Value as Json};
use tds_core::cbor::Value;
use tds_core::{PublicKey, Timestamp};
use tds_identity::{Credential, KeyRollover, ParticipantId, RevocationList};

/// Prints one JSON object on stdout.
pub(crate) fn print(value: &Json) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// `{"id": ..., "public_key_hex": ...}`.
pub(crate) fn key(key: &PublicKey) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("id".into(), json!(ParticipantId::of(key).to_string()));
    m.insert("public_key_hex".into(), json!(key.to_hex()));
    m
}

pub(crate) fn time(m: &mut Map<String, Json>, name: &str, t: Timestamp) {
    m.insert(name.into(), json!(t.to_rfc3339()));
    m.insert(format!("{name}_ms"), json!(t.as_millis()));
}

/// A credential's fields; `id` is the credential id.
pub(crate) fn credential(c: &Credential, id: &tds_core::Hash256) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("id".into(), json!(id.to_string()));
    m.insert("version".into(), json!(c.version()));
    m.insert("serial".into(), json!(c.serial()));
    m.insert("issuer".into(), json!(c.issuer().to_string()));
    m.insert("issuer_key".into(), json!(c.issuer_key().to_hex()));
    m.insert("subject".into(), json!(c.subject().to_string()));
    m.insert("subject_key".into(), json!(c.subject_key().to_hex()));
    m.insert("name".into(), json!(c.name()));
    m.insert(
        "sector".into(),
        json!(c.sector().map(|s| s.as_str().to_owned())),
    );
    m.insert(
        "sectors".into(),
        json!(c.sectors().iter().map(|s| s.as_str()).collect::<Vec<_>>()),
    );
    m.insert(
        "roles".into(),
        json!(c.roles().iter().map(|r| r.as_str()).collect::<Vec<_>>()),
    );
    m.insert("jurisdiction".into(), json!(c.jurisdiction().as_str()));
    time(&mut m, "not_before", c.not_before());
    time(&mut m, "not_after", c.not_after());
    time(&mut m, "issued_at", c.issued_at());
    m
}

/// A revocation list's fields, with `stale` as of `now`.
pub(crate) fn crl(l: &RevocationList, id: &tds_core::Hash256, now: Timestamp) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("id".into(), json!(id.to_string()));
    m.insert("version".into(), json!(l.version()));
    m.insert("issuer".into(), json!(l.issuer().to_string()));
    m.insert("issuer_key".into(), json!(l.issuer_key().to_hex()));
    m.insert("sequence".into(), json!(l.sequence()));
    time(&mut m, "issued_at", l.issued_at());
    time(&mut m, "next_update", l.next_update());
    m.insert("serials".into(), json!(l.serials()));
    m.insert("stale".into(), json!(l.is_stale(now)));
    m
}

/// A key rollover statement's fields.
pub(crate) fn rollover(r: &KeyRollover) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("version".into(), json!(r.version()));
    m.insert("authority".into(), json!(r.authority()));
    m.insert("old_id".into(), json!(r.old_id().to_string()));
    m.insert("old_key".into(), json!(r.old_key().to_hex()));
    m.insert("new_id".into(), json!(r.new_id().to_string()));
    m.insert("new_key".into(), json!(r.new_key().to_hex()));
    time(&mut m, "issued_at", r.issued_at());
    m
}

/// Any CBOR value as JSON: byte strings as hex, integers beyond 64 bits as decimal text,
/// map keys that are not text as their JSON text.
pub(crate) fn cbor(v: &Value) -> Json {
    match v {
        Value::Integer(i) => {
            if let Ok(u) = u64::try_from(*i) {
                json!(u)
            } else if let Ok(n) = i64::try_from(*i) {
                json!(n)
            } else {
                json!(i.to_string())
            }
        }
        Value::Bytes(b) => json!(hex::encode(b)),
        Value::Text(t) => json!(t),
        Value::Array(items) => Json::Array(items.iter().map(cbor).collect()),
        Value::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let key = match k {
                    Value::Text(t) => t.clone(),
                    other => cbor(other).to_string(),
                };
                m.insert(key, cbor(v));
            }
            Json::Object(m)
        }
        Value::Bool(b) => json!(b),
        Value::Null => Json::Null,
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
    }
}
