//! ODRL 2.2 JSON (JSON-LD compact form) import and export for the TDS profile.
//!
//! Import accepts the shapes other connectors emit: plain or `odrl:`-prefixed keys and
//! values (and full `http://www.w3.org/ns/odrl/2/` IRIs), values as strings or as
//! `{"@id": ...}` objects, a single object wherever an array is allowed, the ODRL
//! `@context` by reference or the `odrl`, `tds` and `xsd` prefixes defined inline (the
//! ODRL context is built in and never fetched; any other context is refused, since TDS
//! cannot know what it would make the terms mean), typed literals
//! (`{"@value": ..., "@type": "xsd:dateTime"}`, `xsd:date`, `xsd:duration`,
//! `xsd:integer`, `xsd:decimal`), and `@type` `Set`, `Offer`, `Agreement` (or `Policy`,
//! read as `Set`). Unknown actions, operands, operators, keys and duty shapes are errors
//! that name the term, and so is a key given twice in one object ([`import_str`]). An
//! offer without an assigner is accepted with a warning. Duties of the ODRL common
//! vocabulary import in their plain form with the defaults of `spec/policy.md` §7
//! (`attribute` and `inform`: the assigner; `delete`: right after the use).
//!
//! TDS terms beyond ODRL's vocabulary are in the `tds:` namespace ([`TDS_NS`]); they may
//! be written with or without the prefix. Rules are grouped by kind in ODRL, so an
//! import lists permissions, then prohibitions, then obligations (the decision does not
//! depend on rule order), and an obligation with several duties is written as one ODRL
//! obligation per duty.

use serde_json::{json, Map, Value as Json};

use crate::error::{short, OdrlError, PolicyError, TermKind};
use crate::json::{parse_strict, StrictJsonError};
use crate::model::*;

/// The ODRL 2.2 namespace.
pub const ODRL_NS: &str = "http://www.w3.org/ns/odrl/2/";
/// The ODRL JSON-LD context IRI (built in, never fetched).
pub const ODRL_CONTEXT: &str = "http://www.w3.org/ns/odrl.jsonld";
/// The TDS profile namespace.
pub const TDS_NS: &str = "https://w3id.org/tds/policy#";
/// The TDS profile IRI (ODRL `profile`).
pub const TDS_PROFILE: &str = "https://w3id.org/tds/policy/v1";
/// The XML Schema datatypes namespace (typed literals).
pub const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema#";

const MAX_JSON_DEPTH: usize = 64;

/// The scheme a plain ODRL `obtainConsent` duty imports with (`spec/policy.md` §7).
pub const DEFAULT_CONSENT_SCHEME: &str = "unspecified";

/// An imported policy and the warnings about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The policy.
    pub policy: Policy,
    /// Things accepted but worth saying (an offer without an assigner).
    pub warnings: Vec<String>,
}

fn unknown(kind: TermKind, term: &str) -> OdrlError {
    OdrlError::Unknown {
        kind,
        term: short(term),
    }
}

fn shape(what: &'static str, expected: &'static str) -> OdrlError {
    OdrlError::WrongShape { what, expected }
}

fn bad_value(field: &str, reason: impl std::fmt::Display) -> OdrlError {
    OdrlError::BadValue {
        field: short(field),
        reason: reason.to_string(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ns {
    Plain,
    Odrl,
    Tds,
}

/// Splits a term into its namespace and local name.
fn term(s: &str, kind: TermKind) -> Result<(Ns, &str), OdrlError> {
    if let Some(l) = s.strip_prefix("odrl:").or(s.strip_prefix(ODRL_NS)) {
        Ok((Ns::Odrl, l))
    } else if let Some(l) = s.strip_prefix("tds:").or(s.strip_prefix(TDS_NS)) {
        Ok((Ns::Tds, l))
    } else if s.contains(':') {
        Err(unknown(kind, s))
    } else {
        Ok((Ns::Plain, s))
    }
}

/// A string, or the `@id` of an object, or the `@value` of a literal.
fn text(v: &Json, what: &'static str) -> Result<String, OdrlError> {
    match v {
        Json::String(s) => Ok(s.clone()),
        Json::Object(o) => {
            if let Some(id) = o.get("@id").or(o.get("uid")).or(o.get("odrl:uid")) {
                return text(id, what);
            }
            if let Some(val) = o.get("@value") {
                return text(val, what);
            }
            Err(shape(what, "a string or {\"@id\": ...}"))
        }
        Json::Number(n) => Ok(n.to_string()),
        Json::Bool(b) => Ok(b.to_string()),
        _ => Err(shape(what, "a string or {\"@id\": ...}")),
    }
}

/// The items of a value that may be one object or an array (or a `{"@list": [...]}`).
fn items(v: &Json) -> Vec<&Json> {
    match v {
        Json::Array(a) => a.iter().collect(),
        Json::Object(o) if o.contains_key("@list") => match o.get("@list") {
            Some(l) => items(l),
            None => Vec::new(),
        },
        other => vec![other],
    }
}

/// The keys of an object with `odrl:` prefixes removed; refuses keys given twice.
fn keys(o: &Map<String, Json>) -> Result<Vec<(String, &Json)>, OdrlError> {
    let mut out: Vec<(String, &Json)> = Vec::new();
    for (k, v) in o {
        let local = k
            .strip_prefix("odrl:")
            .or(k.strip_prefix(ODRL_NS))
            .unwrap_or(k)
            .to_owned();
        if out.iter().any(|(x, _)| *x == local) {
            return Err(OdrlError::DuplicateKey { key: short(&local) });
        }
        out.push((local, v));
    }
    Ok(out)
}

fn depth_ok(v: &Json, d: usize) -> bool {
    if d > MAX_JSON_DEPTH {
        return false;
    }
    match v {
        Json::Array(a) => a.iter().all(|x| depth_ok(x, d + 1)),
        Json::Object(o) => o.values().all(|x| depth_ok(x, d + 1)),
        _ => true,
    }
}

/// Checks a `@context`: the ODRL context by reference (`http` or `https`), and inline
/// definitions of the `odrl`, `tds` and `xsd` prefixes with their own namespaces (and
/// `@version`). Anything else could change what the document's terms mean, and TDS
/// never fetches a context to find out, so it is refused rather than ignored.
fn check_context(v: &Json) -> Result<(), OdrlError> {
    match v {
        Json::String(s) => {
            if s == ODRL_CONTEXT || s.strip_prefix("https:") == ODRL_CONTEXT.strip_prefix("http:") {
                Ok(())
            } else {
                Err(OdrlError::RemoteContext { context: short(s) })
            }
        }
        Json::Array(a) => a.iter().try_for_each(|c| match c {
            Json::Array(_) => Err(shape("@context", "a string, an object or an array of them")),
            c => check_context(c),
        }),
        Json::Object(o) => {
            for (k, v) in o {
                let ok = match (k.as_str(), v) {
                    ("odrl", Json::String(ns)) => ns == ODRL_NS,
                    ("tds", Json::String(ns)) => ns == TDS_NS,
                    ("xsd", Json::String(ns)) => ns == XSD_NS,
                    ("@version", Json::Number(n)) => n.as_f64() == Some(1.1),
                    _ => false,
                };
                if !ok {
                    return Err(OdrlError::ContextTerm { term: short(k) });
                }
            }
            Ok(())
        }
        _ => Err(shape("@context", "a string, an object or an array")),
    }
}

/// Reads an ODRL policy from JSON text. Refuses an object that gives a key twice: JSON
/// readers disagree about which one wins, so such a document can mean different things
/// to different connectors.
pub fn import_str(s: &str) -> Result<Imported, PolicyError> {
    if s.len() > crate::text::MAX_INPUT {
        return Err(OdrlError::TooLarge {
            limit: crate::text::MAX_INPUT,
        }
        .into());
    }
    let v = parse_strict(s).map_err(|e| match e {
        StrictJsonError::NotJson(m) => OdrlError::NotJson(m),
        StrictJsonError::DuplicateKey(key) => OdrlError::DuplicateKey { key },
    })?;
    import(&v)
}

/// Reads an ODRL policy from parsed JSON. (A `serde_json::Value` has already dropped
/// duplicate keys; read text with [`import_str`], which refuses them.)
pub fn import(v: &Json) -> Result<Imported, PolicyError> {
    if !depth_ok(v, 0) {
        return Err(OdrlError::TooDeep {
            limit: MAX_JSON_DEPTH,
        }
        .into());
    }
    let o = v.as_object().ok_or(shape("a policy", "a JSON object"))?;
    let mut p = Policy::default();
    let mut warnings = Vec::new();
    for (k, v) in keys(o)? {
        match k.as_str() {
            "@context" => check_context(v)?,
            "@type" | "type" => {
                let t = text(v, "@type")?;
                let (_, local) = term(&t, TermKind::PolicyType)?;
                p.kind = match local {
                    "Set" | "Policy" => PolicyKind::Set,
                    "Offer" => PolicyKind::Offer,
                    "Agreement" => PolicyKind::Agreement,
                    _ => return Err(unknown(TermKind::PolicyType, &t).into()),
                };
            }
            "uid" | "@id" => {
                if p.uid.is_some() {
                    return Err(OdrlError::DuplicateKey { key: k }.into());
                }
                p.uid = Some(parse_text(v, "uid")?);
            }
            "profile" => {
                for x in items(v) {
                    let t = text(x, "profile")?;
                    if t != TDS_PROFILE {
                        return Err(unknown(TermKind::Profile, &t).into());
                    }
                }
            }
            "conflict" => {
                let t = text(v, "conflict")?;
                let (_, local) = term(&t, TermKind::Conflict)?;
                p.conflict = match local {
                    "perm" => Conflict::Permit,
                    "prohibit" => Conflict::Prohibit,
                    "invalid" => Conflict::Invalid,
                    _ => return Err(unknown(TermKind::Conflict, &t).into()),
                };
            }
            "target" => p.target = Some(parse_text(v, "target")?),
            "assigner" => p.assigner = Some(parse_text(v, "assigner")?),
            "permission" | "prohibition" | "obligation" => {}
            other => return Err(unknown(TermKind::PolicyKey, other).into()),
        }
    }
    for (kind, key) in [
        (RuleKind::Permission, "permission"),
        (RuleKind::Prohibition, "prohibition"),
        (RuleKind::Obligation, "obligation"),
    ] {
        let Some(v) = o
            .get(key)
            .or(o.get(&format!("odrl:{key}")))
            .or(o.get(&format!("{ODRL_NS}{key}")))
        else {
            continue;
        };
        for r in items(v) {
            if p.rules.len() >= MAX_RULES {
                return Err(OdrlError::TooMany {
                    what: "rules",
                    limit: MAX_RULES,
                }
                .into());
            }
            p.rules.push(rule(kind, r, p.assigner.as_ref())?);
        }
    }
    if p.kind == PolicyKind::Offer && p.assigner.is_none() {
        warnings.push("offer has no assigner; the connector fills it in".into());
    }
    p.validate()?;
    Ok(Imported {
        policy: p,
        warnings,
    })
}

fn parse_text(v: &Json, what: &'static str) -> Result<Text, OdrlError> {
    text(v, what)?
        .parse()
        .map_err(|e: PolicyError| bad_value(what, e))
}

fn action_of(v: &Json) -> Result<String, OdrlError> {
    // An action may be a refined object {"rdf:value": {"@id": ...}, "refinement": ...}.
    if let Json::Object(o) = v {
        if o.contains_key("refinement") || o.contains_key("odrl:refinement") {
            return Err(OdrlError::Unsupported {
                what: "action refinements are not supported; use rule constraints",
            });
        }
        if let Some(x) = o.get("rdf:value").or(o.get("value")) {
            return text(x, "action");
        }
    }
    text(v, "action")
}

fn action_word(s: &str) -> Result<Action, OdrlError> {
    let (ns, local) = term(s, TermKind::Action)?;
    let a = match local {
        "trainModel" | "train-model" => Some(Action::TrainModel),
        other => Action::from_word(other),
    };
    match a {
        Some(a) if ns == Ns::Plain || (ns == Ns::Tds) == a.is_tds() => Ok(a),
        _ => Err(unknown(TermKind::Action, s)),
    }
}

fn rule(kind: RuleKind, v: &Json, policy_assigner: Option<&Text>) -> Result<Rule, OdrlError> {
    let o = v.as_object().ok_or(shape("a rule", "a JSON object"))?;
    if kind == RuleKind::Obligation {
        return obligation(o, policy_assigner);
    }
    let mut action = None;
    let mut r = Rule::new(kind, Action::Use);
    let mut duties = Vec::new();
    for (k, v) in keys(o)? {
        match k.as_str() {
            "action" => {
                let all = items(v);
                let [a] = all.as_slice() else {
                    return Err(OdrlError::Shape("a rule must have exactly one action"));
                };
                action = Some(action_word(&action_of(a)?)?);
            }
            "target" => r.target = Some(parse_text(v, "target")?),
            "assigner" => r.assigner = Some(parse_text(v, "assigner")?),
            "assignee" => r.assignee = Some(participant(v)?),
            "constraint" => r.constraint = Some(constraint_list(v, 1)?),
            "duty" if kind == RuleKind::Permission => duties.extend(items(v)),
            "uid" | "@type" | "@id" => {}
            other => return Err(unknown(TermKind::RuleKey, other)),
        }
    }
    // Duties are read once the rule's assigner is known: it is their default party.
    let assigner = r.assigner.as_ref().or(policy_assigner);
    for d in duties {
        let (d, rest) = duty(d, assigner)?;
        if let Some((k, _)) = rest.first() {
            return Err(unknown(TermKind::DutyKey, k));
        }
        r.duties.push(d);
    }
    r.action = action.ok_or(OdrlError::Missing {
        what: "a rule",
        field: "action",
    })?;
    Ok(r)
}

fn participant(v: &Json) -> Result<tds_core::Hash256, OdrlError> {
    let s = text(v, "assignee")?;
    s.parse().map_err(|e| {
        bad_value(
            "assignee",
            format!("{} is not a participant id: {e}", quote(&s)),
        )
    })
}

fn obligation(o: &Map<String, Json>, policy_assigner: Option<&Text>) -> Result<Rule, OdrlError> {
    let own_assigner = match o.get("assigner").or(o.get("odrl:assigner")) {
        Some(v) => Some(parse_text(v, "assigner")?),
        None => None,
    };
    let (d, rest) = duty(
        &Json::Object(o.clone()),
        own_assigner.as_ref().or(policy_assigner),
    )?;
    let mut r = Rule::new(RuleKind::Obligation, Action::Use);
    r.duties.push(d);
    for (k, v) in rest {
        match k.as_str() {
            "tds:action" => r.action = action_word(&text(&v, "tds:action")?)?,
            "assignee" => r.assignee = Some(participant(&v)?),
            "assigner" => r.assigner = Some(parse_text(&v, "assigner")?),
            "target" => r.target = Some(parse_text(&v, "target")?),
            "constraint" => r.constraint = Some(constraint_list(&v, 1)?),
            other => return Err(unknown(TermKind::ObligationKey, other)),
        }
    }
    Ok(r)
}

/// Reads a duty; returns the keys it did not use (for obligations). `assigner` is the
/// party a plain `attribute` or `inform` defaults to.
fn duty(v: &Json, assigner: Option<&Text>) -> Result<(Duty, Vec<(String, Json)>), OdrlError> {
    let o = v.as_object().ok_or(shape("a duty", "a JSON object"))?;
    let mut rest: Vec<(String, Json)> = Vec::new();
    let mut action = None;
    let mut constraints: Vec<Constraint> = Vec::new();
    let mut extra: Vec<(String, Json)> = Vec::new();
    for (k, v) in keys(o)? {
        match k.as_str() {
            "action" => action = Some(action_of(v)?),
            "constraint" => {
                for c in items(v) {
                    constraints.push(constraint(c, 1)?);
                }
                rest.push((k, v.clone()));
            }
            "informedParty" | "attributedParty" | "tds:text" | "tds:every" | "tds:consent"
            | "tds:per" | "unit" => extra.push((k, v.clone())),
            "uid" | "@type" | "@id" => {}
            _ => rest.push((k, v.clone())),
        }
    }
    let a = action.ok_or(OdrlError::Missing {
        what: "a duty",
        field: "action",
    })?;
    let get = |name: &str| extra.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let incomplete = |needs: &'static str| OdrlError::IncompleteDuty {
        action: short(&a),
        needs,
    };
    let (ns, local) = term(&a, TermKind::DutyAction)?;
    let tds = ns == Ns::Tds;
    let plain_or = |want_tds: bool| ns == Ns::Plain || tds == want_tds;
    // Duty constraints are part of the duty itself (delete's deadline, pay's amount);
    // an obligation's own constraints stay in `rest`.
    let mut take_constraint = |operand: Operand| -> Option<Value> {
        let pos = constraints
            .iter()
            .position(|c| matches!(c, Constraint::Atom { operand: o, .. } if *o == operand))?;
        match constraints.remove(pos) {
            Constraint::Atom { value, .. } => Some(value),
            Constraint::Logical { .. } => None,
        }
    };
    // The party a plain `attribute` or `inform` names: the assigner (ODRL's default).
    let default_party = |action: &'static str| {
        assigner
            .cloned()
            .ok_or(OdrlError::NoDefaultParty { action })
    };
    let d = match local {
        "attribute" if plain_or(false) => {
            Duty::Attribute(match get("tds:text").or(get("attributedParty")) {
                Some(v) => parse_text(v, "attribution text")?,
                None => default_party("attribute")?,
            })
        }
        "anonymize" if plain_or(false) => Duty::Anonymize,
        "inform" if plain_or(false) => Duty::Notify(match get("informedParty") {
            Some(v) => parse_text(v, "informedParty")?,
            None => default_party("inform")?,
        }),
        // Without a deadline, ODRL's `delete` is "remove all copies after use": the
        // strictest deadline, right after the use.
        "delete" if plain_or(false) => match take_constraint(Operand::ElapsedTime) {
            Some(Value::Duration(ms)) => Duty::Delete { within: ms },
            None => Duty::Delete { within: 0 },
            Some(_) => return Err(incomplete("a constraint elapsedTime lteq <xsd:duration>")),
        },
        "compensate" if plain_or(false) => {
            // A TDS pay duty is a price: it cannot default its amount or currency.
            let needs = "a constraint payAmount eq <decimal> and a unit (the currency)";
            let amount = match take_constraint(Operand::PayAmount) {
                Some(Value::Amount(a)) => a,
                _ => return Err(incomplete(needs)),
            };
            let currency: Currency = text(get("unit").ok_or_else(|| incomplete(needs))?, "unit")?
                .parse()
                .map_err(|e: PolicyError| bad_value("unit", e))?;
            let per = match get("tds:per") {
                None => PayUnit::Once,
                Some(v) => {
                    let t = text(v, "tds:per")?;
                    PayUnit::from_word(&t).ok_or_else(|| unknown(TermKind::PayUnit, &t))?
                }
            };
            Duty::Pay {
                amount,
                currency,
                per,
            }
        }
        "reportUsage" if plain_or(true) => Duty::ReportUsage {
            every: xsd_duration(&text(
                get("tds:every").ok_or_else(|| incomplete("\"tds:every\""))?,
                "tds:every",
            )?)?,
        },
        // ODRL has `obtainConsent` too; TDS exports it as `tds:obtainConsent` with its
        // scheme, and reads either.
        "obtainConsent" => Duty::ObtainConsent(match get("tds:consent") {
            Some(v) => parse_text(v, "tds:consent")?,
            None => DEFAULT_CONSENT_SCHEME
                .parse()
                .map_err(|e: PolicyError| bad_value("tds:consent", e))?,
        }),
        _ => return Err(unknown(TermKind::DutyAction, &a)),
    };
    // Constraints the duty did not consume belong to an obligation; for a duty inside
    // a permission they are refused (TDS duties carry no conditions of their own).
    if !constraints.is_empty() {
        if rest.iter().any(|(k, _)| k == "constraint") {
            rest.retain(|(k, _)| k != "constraint");
            let c = if constraints.len() == 1 {
                constraints.pop().map(constraint_to_json)
            } else {
                Some(constraint_to_json(Constraint::Logical {
                    op: LogicalOp::And,
                    items: constraints,
                }))
            };
            if let Some(c) = c {
                rest.push(("constraint".into(), c));
            }
        }
    } else {
        rest.retain(|(k, _)| k != "constraint");
    }
    Ok((d, rest))
}

fn constraint_to_json(c: Constraint) -> Json {
    export_constraint(&c)
}

fn constraint_list(v: &Json, depth: usize) -> Result<Constraint, OdrlError> {
    let mut cs: Vec<Constraint> = Vec::new();
    for c in items(v) {
        cs.push(constraint(c, depth)?);
    }
    match cs.len() {
        0 => Err(OdrlError::Shape("a constraint list is empty")),
        1 => cs
            .pop()
            .ok_or(OdrlError::Shape("a constraint list is empty")),
        _ => Ok(Constraint::Logical {
            op: LogicalOp::And,
            items: cs,
        }),
    }
}

fn constraint(v: &Json, depth: usize) -> Result<Constraint, OdrlError> {
    if depth > MAX_DEPTH {
        return Err(OdrlError::TooDeep { limit: MAX_DEPTH });
    }
    let o = v
        .as_object()
        .ok_or(shape("a constraint", "a JSON object"))?;
    let ks = keys(o)?;
    for (k, v) in &ks {
        if let Some(op) = LogicalOp::from_word(k) {
            let mut parts = Vec::new();
            for c in items(v) {
                parts.push(constraint(c, depth + 1)?);
            }
            if ks
                .iter()
                .any(|(x, _)| x != k && x != "uid" && x != "@type" && x != "@id")
            {
                return Err(OdrlError::Shape(
                    "a logical constraint has keys besides its operator",
                ));
            }
            return Ok(Constraint::Logical { op, items: parts });
        }
    }
    let mut left = None;
    let mut op = None;
    let mut right = None;
    for (k, v) in ks {
        match k.as_str() {
            "leftOperand" => left = Some(text(v, "leftOperand")?),
            "operator" => op = Some(text(v, "operator")?),
            "rightOperand" => right = Some(v),
            "rightOperandReference" => {
                return Err(OdrlError::Unsupported {
                    what: "rightOperandReference is not supported",
                })
            }
            "uid" | "@type" | "@id" | "unit" | "dataType" => {}
            other => return Err(unknown(TermKind::ConstraintKey, other)),
        }
    }
    let l = left.ok_or(OdrlError::Missing {
        what: "a constraint",
        field: "leftOperand",
    })?;
    let (ns, local) = term(&l, TermKind::LeftOperand)?;
    let operand = match Operand::from_word(local) {
        Some(o) if ns == Ns::Plain || (ns == Ns::Tds) == o.is_tds() => o,
        _ => return Err(unknown(TermKind::LeftOperand, &l)),
    };
    let o = op.ok_or(OdrlError::Missing {
        what: "a constraint",
        field: "operator",
    })?;
    let (ons, olocal) = term(&o, TermKind::Operator)?;
    let operator = match Operator::from_word(olocal) {
        Some(x) if ons != Ns::Tds => x,
        _ => return Err(unknown(TermKind::Operator, &o)),
    };
    if !operand.supports(operator) {
        return Err(OdrlError::BadOperator { operand, operator });
    }
    let r = right.ok_or(OdrlError::Missing {
        what: "a constraint",
        field: "rightOperand",
    })?;
    let value = if operator.takes_list() {
        let mut vs = Vec::new();
        for x in items(r) {
            vs.push(literal(operand, x)?);
        }
        Value::List(vs)
    } else {
        match items(r).as_slice() {
            [x] => literal(operand, x)?,
            _ => {
                return Err(OdrlError::Shape(
                    "this operator takes exactly one rightOperand",
                ))
            }
        }
    };
    Ok(Constraint::Atom {
        operand,
        operator,
        value,
    })
}

fn literal(operand: Operand, v: &Json) -> Result<Value, OdrlError> {
    let (raw, ty) = match v {
        Json::Object(o) => match (o.get("@value"), o.get("@id")) {
            (Some(value), _) => (
                value.clone(),
                o.get("@type").map(|t| text(t, "@type")).transpose()?,
            ),
            (None, Some(id)) => (id.clone(), None),
            (None, None) => return Err(shape("a rightOperand", "a literal")),
        },
        other => (other.clone(), None),
    };
    if let Some(t) = &ty {
        let local = t
            .strip_prefix("xsd:")
            .or(t.strip_prefix(XSD_NS))
            .ok_or_else(|| unknown(TermKind::LiteralType, t))?;
        let ok = match operand {
            Operand::DateTime => matches!(local, "dateTime" | "date" | "dateTimeStamp"),
            Operand::ElapsedTime => local == "duration",
            Operand::Count | Operand::Volume => {
                matches!(local, "integer" | "nonNegativeInteger" | "long" | "int")
            }
            Operand::PayAmount => matches!(local, "decimal" | "integer"),
            Operand::ConsentRef | Operand::ExportAssessmentRef => local == "boolean",
            _ => matches!(local, "string" | "anyURI" | "token"),
        };
        if !ok {
            return Err(bad_value(
                &format!("rightOperand of {operand}"),
                format!("literal type {} does not fit", quote(t)),
            ));
        }
    }
    let s = match &raw {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        Json::Bool(true) => "present".into(),
        Json::Bool(false) => "absent".into(),
        _ => return Err(shape("a rightOperand", "a literal")),
    };
    let s = match operand {
        Operand::ElapsedTime => return Ok(Value::Duration(xsd_duration(&s)?)),
        Operand::ConsentRef | Operand::ExportAssessmentRef => match s.as_str() {
            "true" => "present".to_string(),
            "false" => "absent".to_string(),
            _ => s,
        },
        Operand::Classification
        | Operand::PersonalInfo
        | Operand::Industry
        | Operand::RecipientRole
        | Operand::Purpose => {
            // Values may carry the tds: prefix.
            s.strip_prefix("tds:").unwrap_or(&s).to_owned()
        }
        _ => s,
    };
    crate::text::parse_value(operand, &s)
        .map_err(|m| bad_value(&format!("rightOperand of {operand}"), m))
}

/// Parses an `xsd:duration` without years or months (`P30D`, `PT12H`, `PT0.5S`).
pub fn xsd_duration(s: &str) -> Result<u64, OdrlError> {
    let bad = || {
        bad_value(
            "xsd:duration",
            format!(
                "{} is not a duration of days, hours, minutes and seconds",
                quote(s)
            ),
        )
    };
    let digits = |n: &str| -> Result<u64, OdrlError> {
        if n.is_empty() || n.len() > 20 || !n.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        n.parse().map_err(|_| bad())
    };
    let rest = s.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total: u64 = 0;
    let mut add = |n: u64, mult: u64| -> Result<(), OdrlError> {
        total = n
            .checked_mul(mult)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(bad)?;
        Ok(())
    };
    let mut any = false;
    if !date.is_empty() {
        let n = date.strip_suffix('D').ok_or_else(bad)?;
        add(digits(n)?, 86_400_000)?;
        any = true;
    }
    if let Some(mut t) = time {
        if t.is_empty() {
            return Err(bad());
        }
        for (unit, mult) in [('H', 3_600_000u64), ('M', 60_000)] {
            if let Some((n, r)) = t.split_once(unit) {
                add(digits(n)?, mult)?;
                t = r;
                any = true;
            }
        }
        if let Some(n) = t.strip_suffix('S') {
            let (i, f) = n.split_once('.').unwrap_or((n, ""));
            if f.len() > 3 || (n.contains('.') && f.is_empty()) {
                return Err(bad());
            }
            add(digits(i)?, 1000)?;
            if !f.is_empty() {
                add(digits(&format!("{f:0<3}"))?, 1)?;
            }
            any = true;
        } else if !t.is_empty() {
            return Err(bad());
        }
    }
    if !any {
        return Err(bad());
    }
    Ok(total)
}

/// Writes milliseconds as an `xsd:duration`.
pub fn format_xsd_duration(ms: u64) -> String {
    if ms == 0 {
        return "PT0S".into();
    }
    let days = ms / 86_400_000;
    let rem = ms % 86_400_000;
    let mut s = String::from("P");
    if days > 0 {
        s.push_str(&format!("{days}D"));
    }
    if rem > 0 {
        s.push('T');
        let (h, m) = (rem / 3_600_000, rem % 3_600_000 / 60_000);
        let (sec, milli) = (rem % 60_000 / 1000, rem % 1000);
        if h > 0 {
            s.push_str(&format!("{h}H"));
        }
        if m > 0 {
            s.push_str(&format!("{m}M"));
        }
        if sec > 0 || milli > 0 {
            if milli > 0 {
                let f = format!("{milli:03}");
                s.push_str(&format!("{sec}.{}S", f.trim_end_matches('0')));
            } else {
                s.push_str(&format!("{sec}S"));
            }
        }
    }
    s
}

fn name(is_tds: bool, local: &str) -> String {
    if is_tds {
        format!("tds:{local}")
    } else {
        local.to_owned()
    }
}

fn action_name(a: Action) -> String {
    match a {
        Action::TrainModel => "tds:trainModel".into(),
        a => name(a.is_tds(), a.as_str()),
    }
}

fn export_value(v: &Value) -> Json {
    match v {
        Value::Time(t) => json!({"@value": t.to_rfc3339(), "@type": "xsd:dateTime"}),
        Value::Duration(d) => json!({"@value": format_xsd_duration(*d), "@type": "xsd:duration"}),
        Value::Count(n) | Value::Bytes(n) => {
            json!({"@value": n.to_string(), "@type": "xsd:integer"})
        }
        Value::Amount(a) => json!({"@value": a.to_string(), "@type": "xsd:decimal"}),
        Value::Present(b) => json!(b),
        Value::List(items) => Json::Array(items.iter().map(export_value).collect()),
        other => json!(crate::text::format_value(other)),
    }
}

fn export_constraint(c: &Constraint) -> Json {
    match c {
        Constraint::Atom {
            operand,
            operator,
            value,
        } => json!({
            "leftOperand": name(operand.is_tds(), operand.as_str()),
            "operator": operator.as_str(),
            "rightOperand": export_value(value),
        }),
        Constraint::Logical { op, items } => {
            let mut m = Map::new();
            m.insert(
                op.as_str().into(),
                Json::Array(items.iter().map(export_constraint).collect()),
            );
            Json::Object(m)
        }
    }
}

fn export_constraints(c: &Constraint) -> Json {
    match c {
        Constraint::Logical {
            op: LogicalOp::And,
            items,
        } => Json::Array(items.iter().map(export_constraint).collect()),
        other => json!([export_constraint(other)]),
    }
}

fn export_duty(d: &Duty) -> Map<String, Json> {
    let v = match d {
        Duty::Attribute(t) => json!({"action": "attribute", "tds:text": t.as_str()}),
        Duty::Anonymize => json!({"action": "anonymize"}),
        Duty::Notify(p) => json!({"action": "inform", "informedParty": p.as_str()}),
        Duty::Delete { within } => json!({"action": "delete", "constraint": [
            {"leftOperand": "elapsedTime", "operator": "lteq",
             "rightOperand": {"@value": format_xsd_duration(*within), "@type": "xsd:duration"}}]}),
        Duty::Pay {
            amount,
            currency,
            per,
        } => json!({"action": "compensate", "unit": currency.as_str(), "tds:per": per.as_str(),
            "constraint": [{"leftOperand": "payAmount", "operator": "eq",
             "rightOperand": {"@value": amount.to_string(), "@type": "xsd:decimal"}}]}),
        Duty::ReportUsage { every } => {
            json!({"action": "tds:reportUsage", "tds:every": format_xsd_duration(*every)})
        }
        Duty::ObtainConsent(r) => json!({"action": "tds:obtainConsent", "tds:consent": r.as_str()}),
    };
    match v {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

/// Writes a policy as ODRL 2.2 JSON with the TDS profile.
pub fn export(p: &Policy) -> Json {
    let mut m = Map::new();
    m.insert("@context".into(), json!([ODRL_CONTEXT, {"tds": TDS_NS}]));
    m.insert(
        "@type".into(),
        json!(match p.kind {
            PolicyKind::Set => "Set",
            PolicyKind::Offer => "Offer",
            PolicyKind::Agreement => "Agreement",
        }),
    );
    if let Some(u) = &p.uid {
        m.insert("uid".into(), json!(u.as_str()));
    }
    m.insert("profile".into(), json!(TDS_PROFILE));
    m.insert(
        "conflict".into(),
        json!(match p.conflict {
            Conflict::Permit => "perm",
            Conflict::Prohibit => "prohibit",
            Conflict::Invalid => "invalid",
        }),
    );
    if let Some(t) = &p.target {
        m.insert("target".into(), json!(t.as_str()));
    }
    if let Some(a) = &p.assigner {
        m.insert("assigner".into(), json!(a.as_str()));
    }
    let mut groups: [Vec<Json>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for r in &p.rules {
        let mut base = Map::new();
        if let Some(t) = &r.target {
            base.insert("target".into(), json!(t.as_str()));
        }
        if let Some(a) = &r.assigner {
            base.insert("assigner".into(), json!(a.as_str()));
        }
        if let Some(a) = &r.assignee {
            base.insert("assignee".into(), json!(a.to_string()));
        }
        match r.kind {
            RuleKind::Obligation => {
                for d in &r.duties {
                    let mut o = base.clone();
                    let dm = export_duty(d);
                    for (k, v) in dm {
                        if k == "constraint" {
                            continue;
                        }
                        o.insert(k, v);
                    }
                    // The duty's own constraint (delete's deadline, pay's amount) and the
                    // obligation's condition share the ODRL constraint list.
                    let mut cs: Vec<Json> = match export_duty(d).get("constraint") {
                        Some(Json::Array(a)) => a.clone(),
                        _ => Vec::new(),
                    };
                    if let Some(c) = &r.constraint {
                        cs.push(export_constraint(c));
                    }
                    if !cs.is_empty() {
                        o.insert("constraint".into(), Json::Array(cs));
                    }
                    if r.action != Action::Use {
                        o.insert("tds:action".into(), json!(action_name(r.action)));
                    }
                    if let Some(g) = groups.get_mut(2) {
                        g.push(Json::Object(o));
                    }
                }
            }
            kind => {
                let mut o = base;
                o.insert("action".into(), json!(action_name(r.action)));
                if let Some(c) = &r.constraint {
                    o.insert("constraint".into(), export_constraints(c));
                }
                if !r.duties.is_empty() {
                    o.insert(
                        "duty".into(),
                        Json::Array(
                            r.duties
                                .iter()
                                .map(|d| Json::Object(export_duty(d)))
                                .collect(),
                        ),
                    );
                }
                let i = usize::from(kind == RuleKind::Prohibition);
                if let Some(g) = groups.get_mut(i) {
                    g.push(Json::Object(o));
                }
            }
        }
    }
    for (g, key) in groups
        .into_iter()
        .zip(["permission", "prohibition", "obligation"])
    {
        if !g.is_empty() {
            m.insert(key.into(), Json::Array(g));
        }
    }
    Json::Object(m)
}
