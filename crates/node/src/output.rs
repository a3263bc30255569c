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

/// How many CBOR data items `tds inspect` shows of one payload (red-team finding 9: a
/// 16 MiB payload of tiny items nested 32 deep printed 1.17 GB of indented JSON and needed
/// 1.6 GB of memory). Past the budget, arrays and maps end with a note of how much was
/// left out, and the output says how many items were not shown.
pub(crate) const MAX_SHOWN_ITEMS: u64 = 100_000;

/// Bytes of one byte or text string shown in full; longer ones are cut with a note.
pub(crate) const MAX_SHOWN_STRING: usize = 4096;

/// Renders the single canonical CBOR data item `bytes` (already validated with `limits`)
/// as JSON, like [`cbor`], showing at most `budget` items. Returns the JSON and the number
/// of items left out. Memory and output stay bounded whatever the input holds.
pub(crate) fn cbor_bounded(
    bytes: &[u8],
    limits: &tds_core::cbor::Limits,
    budget: u64,
) -> Result<(Json, u64), tds_core::cbor::CborError> {
    let mut reader = tds_core::cbor::Reader::new(bytes);
    let mut left = budget;
    let mut hidden = 0u64;
    let json = bounded_item(&mut reader, limits, &mut left, &mut hidden)?;
    reader.finish()?;
    Ok((json, hidden))
}

fn bounded_item(
    r: &mut tds_core::cbor::Reader<'_>,
    limits: &tds_core::cbor::Limits,
    left: &mut u64,
    hidden: &mut u64,
) -> Result<Json, tds_core::cbor::CborError> {
    use tds_core::cbor::{self as c, Major};
    *left = left.saturating_sub(1);
    let mut peek = r.clone();
    let h = peek.strict_header()?;
    match h.major {
        Major::Array | Major::Map => {
            *r = peek;
            let is_map = h.major == Major::Map;
            let mut items = Vec::new();
            let mut entries = Map::new();
            let mut skipped = 0u64;
            for _ in 0..h.arg {
                if *left == 0 {
                    // Skip the rest without building anything: read_item only walks.
                    c::read_item(r, limits)?;
                    if is_map {
                        c::read_item(r, limits)?;
                    }
                    skipped += 1;
                    continue;
                }
                if is_map {
                    let k = bounded_item(r, limits, left, hidden)?;
                    let v = bounded_item(r, limits, left, hidden)?;
                    let mut key = match k {
                        Json::String(t) => t,
                        other => other.to_string(),
                    };
                    // An integer key 1 and a text key "1" both render as "1": keep both.
                    while entries.contains_key(&key) {
                        key.push('\'');
                    }
                    entries.insert(key, v);
                } else {
                    items.push(bounded_item(r, limits, left, hidden)?);
                }
            }
            if skipped > 0 {
                *hidden = hidden.saturating_add(skipped);
                let note = format!("... {skipped} more not shown");
                if is_map {
                    entries.insert("...".into(), json!(note));
                } else {
                    items.push(json!(note));
                }
            }
            Ok(if is_map {
                Json::Object(entries)
            } else {
                Json::Array(items)
            })
        }
        _ => {
            let item = c::read_item(r, limits)?;
            let v = c::decode_with::<Value>(item, limits)?;
            Ok(match v {
                Value::Bytes(b) if b.len() > MAX_SHOWN_STRING => json!(format!(
                    "{}... ({} bytes)",
                    hex::encode(b.get(..MAX_SHOWN_STRING).unwrap_or(&b)),
                    b.len()
                )),
                Value::Text(t) if t.len() > MAX_SHOWN_STRING => {
                    let mut end = MAX_SHOWN_STRING;
                    while !t.is_char_boundary(end) {
                        end -= 1;
                    }
                    json!(format!(
                        "{}... ({} bytes)",
                        t.get(..end).unwrap_or(&t),
                        t.len()
                    ))
                }
                other => cbor(&other),
            })
        }
    }
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
