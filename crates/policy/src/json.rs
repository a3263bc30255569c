//! The JSON forms the CLI speaks: request files, decisions, containment answers.
//!
//! A request file:
//!
//! ```json
//! {"action": "use", "purpose": "grid/planning", "time": "2027-03-01T00:00:00Z",
//!  "recipient": {"id": "sha256:…", "sector": "power", "roles": ["consumer"], "jurisdiction": "CN-SX"},
//!  "location": "CN-SX", "uses": 3, "volume": 0}
//! ```
//!
//! Further optional keys: `target`, `elapsed` (a duration such as `"30d"`),
//! `classification`, `personal_info`, `pay_amount` (a decimal string such as `"12.50"`),
//! `currency`, `consent_ref`, `export_assessment_ref`. Unknown keys are refused, and so
//! are keys given twice ([`parse_strict`]).

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value as Json};

use crate::error::{short, PolicyError, RequestError};
use crate::eval::{Decision, Request};
use crate::model::*;

/// Why [`parse_strict`] refused its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrictJsonError {
    /// Not JSON text; serde_json's message.
    NotJson(String),
    /// An object gives this key twice (shortened to 64 characters).
    DuplicateKey(String),
}

/// Parses JSON text, refusing an object that gives a key twice: JSON parsers disagree
/// about which duplicate wins (serde_json keeps the last), so a document with duplicates
/// can mean different things to different readers. Otherwise the value is exactly what
/// `serde_json::from_str` gives.
pub fn parse_strict(text: &str) -> Result<Json, StrictJsonError> {
    let v: Json =
        serde_json::from_str(text).map_err(|e| StrictJsonError::NotJson(e.to_string()))?;
    // A second pass that only looks at keys; serde_json's own reading stays the value.
    let duplicate = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let checked = NoDuplicates(&duplicate).deserialize(&mut de);
    match (checked, duplicate.take()) {
        (_, Some(key)) => Err(StrictJsonError::DuplicateKey(key)),
        (Ok(()), None) => Ok(v),
        (Err(e), None) => Err(StrictJsonError::NotJson(e.to_string())),
    }
}

/// Walks a JSON document checking that no object gives a key twice; the first duplicate
/// found is left in the cell.
#[derive(Clone, Copy)]
struct NoDuplicates<'a>(&'a Cell<Option<String>>);

impl<'de> DeserializeSeed<'de> for NoDuplicates<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = BTreeSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if keys.contains(&k) {
                self.0.set(Some(short(&k)));
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(self)?;
            keys.insert(k);
        }
        Ok(())
    }
}

fn wrong(key: &str, expected: &'static str) -> RequestError {
    RequestError::WrongType {
        key: short(key),
        expected,
    }
}

fn string<'a>(v: &'a Json, key: &str) -> Result<&'a str, RequestError> {
    v.as_str().ok_or_else(|| wrong(key, "a string"))
}

fn parsed<T: std::str::FromStr>(v: &Json, key: &str) -> Result<T, RequestError>
where
    T::Err: std::fmt::Display,
{
    let s = string(v, key)?;
    s.parse::<T>().map_err(|e| RequestError::BadValue {
        key: short(key),
        reason: e.to_string(),
    })
}

fn number(v: &Json, key: &str) -> Result<u64, RequestError> {
    v.as_u64()
        .ok_or_else(|| wrong(key, "a whole number of at least 0"))
}

/// Reads a request from JSON text, refusing keys given twice.
pub fn request_from_str(text: &str) -> Result<Request, PolicyError> {
    let v = parse_strict(text).map_err(|e| match e {
        StrictJsonError::NotJson(m) => RequestError::NotJson(m),
        StrictJsonError::DuplicateKey(key) => RequestError::DuplicateKey { key },
    })?;
    request_from_json(&v)
}

/// Reads a request from its JSON form.
pub fn request_from_json(v: &Json) -> Result<Request, PolicyError> {
    Ok(read_request(v)?)
}

fn bad_value(key: &str, reason: String) -> RequestError {
    RequestError::BadValue {
        key: short(key),
        reason,
    }
}

fn read_request(v: &Json) -> Result<Request, RequestError> {
    let obj = v.as_object().ok_or(RequestError::NotObject)?;
    let action = obj
        .get("action")
        .ok_or(RequestError::Missing { key: "action" })?;
    let a = string(action, "action")?;
    let action = Action::from_word(
        a.strip_prefix("tds:")
            .or(a.strip_prefix("odrl:"))
            .unwrap_or(a),
    )
    .ok_or_else(|| RequestError::UnknownAction { action: short(a) })?;
    let mut r = Request::new(action);
    for (k, v) in obj {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "action" => {}
            "target" => r.target = Some(parsed(v, k)?),
            "purpose" => r.purpose = Some(parsed(v, k)?),
            "time" => {
                r.time =
                    Some(crate::text::parse_time(string(v, k)?).map_err(|e| bad_value("time", e))?)
            }
            "elapsed" => {
                r.elapsed = Some(
                    crate::text::parse_duration(string(v, k)?)
                        .map_err(|e| bad_value("elapsed", e))?,
                )
            }
            "location" => r.location = Some(parsed(v, k)?),
            "uses" => r.uses = Some(number(v, k)?),
            "volume" => r.volume = Some(number(v, k)?),
            "classification" => {
                let s = string(v, k)?;
                r.classification = Some(Classification::from_word(s).ok_or_else(|| {
                    bad_value(
                        "classification",
                        format!("unknown classification {}", quote(s)),
                    )
                })?)
            }
            "personal_info" => {
                let s = string(v, k)?;
                r.personal_info = Some(PersonalInfo::from_word(s).ok_or_else(|| {
                    bad_value(
                        "personal_info",
                        format!("unknown personal information level {}", quote(s)),
                    )
                })?)
            }
            "pay_amount" => {
                r.pay_amount = Some(match v {
                    Json::Number(n) => n
                        .as_u64()
                        .and_then(|n| n.checked_mul(Amount::SCALE))
                        .map(Amount)
                        .ok_or_else(|| {
                            wrong(
                                "pay_amount",
                                "a whole number of at least 0 (write fractions as a string)",
                            )
                        })?,
                    _ => parsed(v, k)?,
                })
            }
            "currency" => r.currency = Some(parsed(v, k)?),
            "consent_ref" => r.consent_ref = Some(parsed(v, k)?),
            "export_assessment_ref" => r.export_assessment_ref = Some(parsed(v, k)?),
            "recipient" => {
                let o = v
                    .as_object()
                    .ok_or_else(|| wrong("recipient", "an object"))?;
                for (rk, rv) in o {
                    if rv.is_null() {
                        continue;
                    }
                    match rk.as_str() {
                        "id" => r.recipient = Some(parsed(rv, "recipient.id")?),
                        "sector" => r.sector = Some(parsed(rv, "recipient.sector")?),
                        "jurisdiction" => {
                            r.jurisdiction = Some(parsed(rv, "recipient.jurisdiction")?)
                        }
                        "roles" => {
                            let items = rv
                                .as_array()
                                .ok_or_else(|| wrong("recipient.roles", "a list"))?;
                            if items.len() > MAX_LIST {
                                return Err(RequestError::TooMany {
                                    key: "recipient.roles",
                                    limit: MAX_LIST,
                                });
                            }
                            r.roles = items
                                .iter()
                                .map(|x| parsed(x, "recipient.roles"))
                                .collect::<Result<_, _>>()?;
                        }
                        other => {
                            return Err(RequestError::UnknownKey {
                                key: short(&format!("recipient.{other}")),
                            })
                        }
                    }
                }
            }
            other => return Err(RequestError::UnknownKey { key: short(other) }),
        }
    }
    Ok(r)
}

/// Writes a request in its JSON form (keys that are not set are left out).
pub fn request_to_json(r: &Request) -> Json {
    let mut m = Map::new();
    m.insert("action".into(), json!(r.action.as_str()));
    let mut put = |k: &str, v: Option<Json>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    put("target", r.target.as_ref().map(|t| json!(t.as_str())));
    put("purpose", r.purpose.as_ref().map(|t| json!(t.as_str())));
    put("time", r.time.map(|t| json!(t.to_rfc3339())));
    put(
        "elapsed",
        r.elapsed.map(|e| json!(crate::text::format_duration(e))),
    );
    put("location", r.location.as_ref().map(|t| json!(t.as_str())));
    put("uses", r.uses.map(|u| json!(u)));
    put("volume", r.volume.map(|u| json!(u)));
    put(
        "classification",
        r.classification.map(|c| json!(c.as_str())),
    );
    put("personal_info", r.personal_info.map(|c| json!(c.as_str())));
    put("pay_amount", r.pay_amount.map(|a| json!(a.to_string())));
    put("currency", r.currency.as_ref().map(|t| json!(t.as_str())));
    put(
        "consent_ref",
        r.consent_ref.as_ref().map(|t| json!(t.as_str())),
    );
    put(
        "export_assessment_ref",
        r.export_assessment_ref.as_ref().map(|t| json!(t.as_str())),
    );
    let mut rec = Map::new();
    if let Some(id) = &r.recipient {
        rec.insert("id".into(), json!(id.to_string()));
    }
    if let Some(s) = &r.sector {
        rec.insert("sector".into(), json!(s.as_str()));
    }
    if !r.roles.is_empty() {
        rec.insert(
            "roles".into(),
            json!(r.roles.iter().map(Token::as_str).collect::<Vec<_>>()),
        );
    }
    if let Some(j) = &r.jurisdiction {
        rec.insert("jurisdiction".into(), json!(j.as_str()));
    }
    if !rec.is_empty() {
        m.insert("recipient".into(), Json::Object(rec));
    }
    Json::Object(m)
}

/// `{"decision": ..., "duties": [...], "reasons": [...]}`; duties in their text form.
pub fn decision_to_json(d: &Decision) -> Json {
    json!({
        "decision": d.effect.as_str(),
        "duties": d.duties.iter().map(crate::text::format_duty).collect::<Vec<_>>(),
        "reasons": d.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}
