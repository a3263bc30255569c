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
//! `currency`, `consent_ref`, `export_assessment_ref`. Unknown keys are refused.

use serde_json::{json, Map, Value as Json};

use crate::error::PolicyError;
use crate::eval::{Decision, Request};
use crate::model::*;

fn bad(m: String) -> PolicyError {
    PolicyError::Request(m)
}

fn string<'a>(v: &'a Json, key: &str) -> Result<&'a str, PolicyError> {
    v.as_str()
        .ok_or_else(|| bad(format!("{key} must be a string")))
}

fn parsed<T: std::str::FromStr>(v: &Json, key: &str) -> Result<T, PolicyError>
where
    T::Err: std::fmt::Display,
{
    let s = string(v, key)?;
    s.parse::<T>().map_err(|e| bad(format!("{key}: {e}")))
}

fn number(v: &Json, key: &str) -> Result<u64, PolicyError> {
    v.as_u64()
        .ok_or_else(|| bad(format!("{key} must be a whole number of at least 0")))
}

/// Reads a request from its JSON form.
pub fn request_from_json(v: &Json) -> Result<Request, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("must be a JSON object".into()))?;
    let action = obj
        .get("action")
        .ok_or_else(|| bad("action is missing".into()))?;
    let a = string(action, "action")?;
    let action = Action::from_word(
        a.strip_prefix("tds:")
            .or(a.strip_prefix("odrl:"))
            .unwrap_or(a),
    )
    .ok_or_else(|| bad(format!("unknown action {}", quote(a))))?;
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
                r.time = Some(
                    crate::text::parse_time(string(v, k)?)
                        .map_err(|e| bad(format!("time: {e}")))?,
                )
            }
            "elapsed" => {
                r.elapsed = Some(
                    crate::text::parse_duration(string(v, k)?)
                        .map_err(|e| bad(format!("elapsed: {e}")))?,
                )
            }
            "location" => r.location = Some(parsed(v, k)?),
            "uses" => r.uses = Some(number(v, k)?),
            "volume" => r.volume = Some(number(v, k)?),
            "classification" => {
                let s = string(v, k)?;
                r.classification = Some(
                    Classification::from_word(s)
                        .ok_or_else(|| bad(format!("unknown classification {}", quote(s))))?,
                )
            }
            "personal_info" => {
                let s = string(v, k)?;
                r.personal_info = Some(
                    PersonalInfo::from_word(s)
                        .ok_or_else(|| bad(format!("unknown personal_info {}", quote(s))))?,
                )
            }
            "pay_amount" => {
                r.pay_amount = Some(match v {
                    Json::Number(n) => n
                        .as_u64()
                        .and_then(|n| n.checked_mul(Amount::SCALE))
                        .map(Amount)
                        .ok_or_else(|| {
                            bad("pay_amount must be at least 0; write fractions as a string".into())
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
                    .ok_or_else(|| bad("recipient must be an object".into()))?;
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
                                .ok_or_else(|| bad("recipient.roles must be a list".into()))?;
                            if items.len() > MAX_LIST {
                                return Err(bad(format!(
                                    "recipient.roles holds more than {MAX_LIST} roles"
                                )));
                            }
                            r.roles = items
                                .iter()
                                .map(|x| parsed(x, "recipient.roles"))
                                .collect::<Result<_, _>>()?;
                        }
                        other => return Err(bad(format!("unknown key recipient.{other}"))),
                    }
                }
            }
            other => return Err(bad(format!("unknown key {}", quote(other)))),
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
        "reasons": d.reasons,
    })
}
