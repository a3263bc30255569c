//! The policy vectors in `spec/vectors/policy/`: decisions and containment, their schema,
//! how to run a case, and the generator that fills in the expected answers.
//!
//! A second implementation reads the policies in the text syntax (`spec/policy.md` §2)
//! and the requests in the JSON form of §4 (`tds policy eval --request`), and must give
//! the same decision, duties, reasons and reason codes, and the same containment answers.
//! Every object with a field not listed here is an error (`deny_unknown_fields`).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tds_core::ErrorCode;
use tds_policy::json::{decision_to_json, request_from_json, request_to_json};
use tds_policy::{contains, evaluate, parse, CompiledPolicy, Containment, Effect};

/// One case of `decisions.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DecisionCase {
    /// A unique kebab-case name.
    pub name: String,
    /// What the case shows.
    pub about: String,
    /// The policy, text syntax.
    pub policy: String,
    /// The request, JSON form.
    pub request: Json,
    /// `permit`, `deny` or `not_applicable`.
    pub decision: String,
    /// The duties of a permit, text form, in order.
    pub duties: Vec<String>,
    /// The reasons, text form (what `tds policy eval` prints), in order.
    pub reasons: Vec<String>,
    /// The reasons' codes (`spec/policy.md` §9), in the same order.
    pub codes: Vec<String>,
}

/// One case of `containment.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ContainmentCase {
    /// A unique kebab-case name.
    pub name: String,
    /// What the case shows.
    pub about: String,
    /// The offer's policy, text syntax.
    pub offer: String,
    /// The requested policy, text syntax.
    pub asked: String,
    /// Whether every request `asked` permits, `offer` permits; `null` when the analysis
    /// must refuse (then `error` holds the code).
    pub contained: Option<bool>,
    /// The counterexample this implementation finds (JSON request form), when not
    /// contained. Another implementation may find another one: it must check that its
    /// own is permitted by `asked` and not by `offer` (and may check this one the same
    /// way).
    pub counterexample: Option<Json>,
    /// The error code when the analysis refuses.
    pub error: Option<String>,
}

fn decision_inputs() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    const METER: &str = "policy offer target \"urn:tds:asset:meter-load\"; permit use when purpose isA grid and industry eq power and count lteq 100 duty attribute(\"State Grid Shanxi\"); prohibit distribute; prohibit use when spatial isNoneOf [CN, CN-SX];";
    vec![
        (
            "meter-100th-use",
            "the 100th use is permitted: count is uses so far + 1",
            METER,
            r#"{"action": "read", "purpose": "grid/planning", "recipient": {"sector": "power"}, "location": "CN-SX", "uses": 99}"#,
        ),
        (
            "meter-101st-use",
            "the 101st use is denied; every rule is explained",
            METER,
            r#"{"action": "read", "purpose": "grid/planning", "recipient": {"sector": "power"}, "location": "CN-SX", "uses": 100}"#,
        ),
        (
            "meter-location-unknown",
            "a prohibition applies unless the request rules it out",
            METER,
            r#"{"action": "read", "purpose": "grid/planning", "recipient": {"sector": "power"}, "uses": 1}"#,
        ),
        (
            "meter-isnoneof-exact",
            "isNoneOf compares exactly: CN-BJ is outside [CN, CN-SX]",
            METER,
            r#"{"action": "read", "purpose": "grid", "recipient": {"sector": "power"}, "location": "CN-BJ", "uses": 1}"#,
        ),
        (
            "meter-not-applicable",
            "no permission covers sell",
            METER,
            r#"{"action": "sell", "location": "CN"}"#,
        ),
        (
            "meter-other-asset",
            "rules about another asset do not apply",
            METER,
            r#"{"action": "read", "target": "urn:tds:asset:other", "purpose": "grid", "recipient": {"sector": "power"}, "location": "CN", "uses": 1}"#,
        ),
        (
            "meter-distribute-prohibited",
            "a prohibition of distribute, and use does not cover distribute",
            METER,
            r#"{"action": "distribute", "location": "CN"}"#,
        ),
        (
            "conflict-prohibit",
            "by default a prohibition overrides a granted permission",
            "permit use; prohibit read when purpose isA marketing;",
            r#"{"action": "read", "purpose": "marketing/email"}"#,
        ),
        (
            "conflict-permit",
            "conflict permit: the permission overrides",
            "policy set conflict permit; permit use; prohibit read when purpose isA marketing;",
            r#"{"action": "read", "purpose": "marketing/email"}"#,
        ),
        (
            "conflict-invalid",
            "conflict invalid: the policy is void when both apply",
            "policy set conflict invalid; permit use; prohibit read when purpose isA marketing;",
            r#"{"action": "read", "purpose": "marketing/email"}"#,
        ),
        (
            "prohibition-does-not-concern",
            "prohibiting read concerns use (which includes reading), not distribute",
            "permit use; permit distribute; prohibit read when purpose isA marketing;",
            r#"{"action": "distribute", "purpose": "marketing"}"#,
        ),
        (
            "consent-missing",
            "a permission whose duty cannot be met is not granted",
            "permit analyze when purpose isA research/medical duty obtain-consent(\"pipl-separate-consent\"), anonymize;",
            r#"{"action": "analyze", "purpose": "research/medical/oncology"}"#,
        ),
        (
            "consent-present",
            "the same request with a consent reference",
            "permit analyze when purpose isA research/medical duty obtain-consent(\"pipl-separate-consent\"), anonymize;",
            r#"{"action": "analyze", "purpose": "research/medical/oncology", "consent_ref": "consent:2027/0042"}"#,
        ),
        (
            "pay-other-currency",
            "a pay duty cannot be met by a payment in another currency",
            "permit use duty pay(12.5 CNY per gib);",
            r#"{"action": "use", "currency": "USD"}"#,
        ),
        (
            "obligation-unmet",
            "an obligation's duty that cannot be met denies a granted use",
            "permit use; obligation use when classification gteq important duty obtain-consent(\"scheme\");",
            r#"{"action": "read", "classification": "core"}"#,
        ),
        (
            "obligation-duties",
            "obligations add their duties to a permit, without repeats",
            "permit use duty anonymize; obligation use duty anonymize, report-usage(every 30d); obligation sell duty notify(\"x\");",
            r#"{"action": "read"}"#,
        ),
        (
            "obligation-does-not-apply",
            "an obligation whose condition is false",
            "permit use; obligation use when volume gt 1GiB duty report-usage(every 1d);",
            r#"{"action": "use", "volume": 1024}"#,
        ),
        (
            "assignee-other",
            "a rule for another recipient",
            "permit use assignee sha256:0101010101010101010101010101010101010101010101010101010101010101;",
            r#"{"action": "use", "recipient": {"id": "sha256:0202020202020202020202020202020202020202020202020202020202020202"}}"#,
        ),
        (
            "or-none-holds",
            "an or: every part is explained",
            "permit use when (spatial isPartOf CN or spatial eq HK) and recipientRole hasPart consumer;",
            r#"{"action": "use", "location": "DE", "recipient": {"roles": ["consumer"]}}"#,
        ),
        (
            "xone",
            "an xone: how many parts hold",
            "permit use when (industry eq power xone recipientRole isAnyOf [operator, provider]);",
            r#"{"action": "use", "recipient": {"sector": "power", "roles": ["operator"]}}"#,
        ),
        (
            "then-first-failing",
            "andSequence (then) reports the first part that fails, in order",
            "permit use when dateTime gteq 2027-01-01 then dateTime lt 2028-01-01 then personalInfo eq none;",
            r#"{"action": "use", "time": "2028-06-01T00:00:00Z", "personal_info": "sensitive"}"#,
        ),
        (
            "elapsed-and-pay-amount",
            "durations and amounts compare as numbers",
            "permit use when elapsedTime lt 30d and payAmount gteq 12.5 and currency eq CNY;",
            r#"{"action": "use", "elapsed": "29d", "pay_amount": "12.50", "currency": "CNY"}"#,
        ),
        (
            "roles-isallof",
            "isAllOf needs every listed role",
            "permit use when recipientRole isAllOf [consumer, licensed-bank];",
            r#"{"action": "use", "recipient": {"roles": ["consumer"]}}"#,
        ),
        (
            "export-assessment",
            "presence operands are always known",
            "permit use when exportAssessmentRef eq present; prohibit use when spatial isNoneOf [CN] and exportAssessmentRef eq absent;",
            r#"{"action": "use", "location": "DE"}"#,
        ),
    ]
}

fn containment_inputs() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    vec![
        (
            "narrow",
            "a narrower purpose, region and count are contained",
            "policy offer target \"urn:a\"; permit use when purpose isA grid and spatial isPartOf CN and count lteq 100; prohibit distribute;",
            "permit read when purpose isA grid/planning and spatial eq CN-SX and count lteq 10;",
        ),
        (
            "count-one-more",
            "count lteq 101 permits use number 101",
            "permit use when purpose isA grid/planning and count lteq 100;",
            "permit use when purpose isA grid/planning and count lteq 101;",
        ),
        (
            "wider-purpose",
            "a wider purpose is not contained",
            "permit use when purpose isA grid/planning and count lteq 100;",
            "permit use when purpose isA grid and count lteq 100;",
        ),
        (
            "action-not-granted",
            "distribute must be granted by name",
            "permit use when purpose isA grid/planning;",
            "permit distribute when purpose isA grid/planning;",
        ),
        (
            "offer-prohibition",
            "the offer's prohibition outside CN",
            "permit use; prohibit use when spatial isNoneOf [CN];",
            "permit use;",
        ),
        (
            "isnoneof-exact",
            "isNoneOf compares exactly: CN-SX is not CN",
            "permit use; prohibit use when spatial isNoneOf [CN];",
            "permit use when spatial isPartOf CN;",
        ),
        (
            "exact-region",
            "a request pinned to CN stays inside",
            "permit use; prohibit use when spatial isNoneOf [CN];",
            "permit use when spatial eq CN;",
        ),
        (
            "roles",
            "roles: every subset of the named roles is tried",
            "permit use when recipientRole hasPart consumer;",
            "permit use when recipientRole isAnyOf [consumer, operator];",
        ),
        (
            "target-defaults-to-the-offer",
            "a request policy without target is about the offer's asset",
            "policy offer target \"urn:a\"; permit use;",
            "permit use;",
        ),
        (
            "duties-not-compared",
            "duties are not compared (the agreement binds both policies)",
            "permit use duty attribute(\"x\");",
            "permit use;",
        ),
        (
            "consent-duty",
            "a duty that can fail: the offer's consent duty permits less",
            "permit use duty obtain-consent(\"s\");",
            "permit use;",
        ),
        (
            "too-many-roles",
            "more than 10 distinct roles are refused, not misjudged",
            "permit use when recipientRole isAnyOf [r0, r1, r2, r3, r4, r5];",
            "permit use when recipientRole isAnyOf [r5, r6, r7, r8, r9, r10];",
        ),
    ]
}

/// The decision cases with their answers computed by `tds-policy`.
pub fn decision_cases() -> Result<Vec<DecisionCase>, String> {
    decision_inputs()
        .into_iter()
        .map(|(name, about, policy, request)| {
            let request: Json =
                serde_json::from_str(request).map_err(|e| format!("{name}: {e}"))?;
            let (decision, duties, reasons, codes) = decide(&policy_text(policy)?, &request)?;
            Ok(DecisionCase {
                name: name.into(),
                about: about.into(),
                policy: policy_text(policy)?,
                request,
                decision,
                duties,
                reasons,
                codes,
            })
        })
        .collect()
}

/// The canonical text form of a policy (what the vectors hold).
fn policy_text(src: &str) -> Result<String, String> {
    Ok(tds_policy::format(
        &parse("vector", src).map_err(|e| e.to_string())?,
    ))
}

type Answer = (String, Vec<String>, Vec<String>, Vec<String>);

fn decide(policy: &str, request: &Json) -> Result<Answer, String> {
    let p = parse("vector", policy).map_err(|e| e.to_string())?;
    let r = request_from_json(request).map_err(|e| e.to_string())?;
    let d = evaluate(&p, &r);
    let j = decision_to_json(&d);
    let strings = |key: &str| -> Vec<String> {
        j.get(key)
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    // The compiled engine must agree with the reference interpreter.
    let compiled = CompiledPolicy::new(p).map_err(|e| e.to_string())?;
    let fast = compiled.decide(&r);
    if fast.effect != d.effect || compiled.duties(&fast) != d.duties {
        return Err("the compiled engine disagrees with the reference".into());
    }
    Ok((
        d.effect.as_str().to_owned(),
        strings("duties"),
        strings("reasons"),
        d.reasons
            .iter()
            .map(|r| r.code.as_str().to_owned())
            .collect(),
    ))
}

/// Checks one decision case against `tds-policy`.
pub fn run_decision(case: &DecisionCase) -> Result<(), String> {
    let (decision, duties, reasons, codes) = decide(&case.policy, &case.request)?;
    let want = (&case.decision, &case.duties, &case.reasons, &case.codes);
    if (&decision, &duties, &reasons, &codes) != want {
        return Err(format!(
            "{}: gives {decision} {duties:?} {reasons:?} {codes:?}",
            case.name
        ));
    }
    Ok(())
}

/// The containment cases with their answers computed by `tds-policy`.
pub fn containment_cases() -> Result<Vec<ContainmentCase>, String> {
    containment_inputs()
        .into_iter()
        .map(|(name, about, offer, asked)| {
            let (offer, asked) = (policy_text(offer)?, policy_text(asked)?);
            let (contained, counterexample, error) = contain(&offer, &asked)?;
            Ok(ContainmentCase {
                name: name.into(),
                about: about.into(),
                offer,
                asked,
                contained,
                counterexample,
                error,
            })
        })
        .collect()
}

type ContainAnswer = (Option<bool>, Option<Json>, Option<String>);

fn contain(offer: &str, asked: &str) -> Result<ContainAnswer, String> {
    let o = parse("offer", offer).map_err(|e| e.to_string())?;
    let a = parse("asked", asked).map_err(|e| e.to_string())?;
    Ok(match contains(&o, &a) {
        Ok(Containment::Contained) => (Some(true), None, None),
        Ok(Containment::NotContained(r)) => (Some(false), Some(request_to_json(&r)), None),
        Err(e) => (None, None, Some(e.code().to_owned())),
    })
}

/// Checks one containment case against `tds-policy`, and checks the recorded
/// counterexample the way another implementation would: `asked` permits it and `offer`
/// does not (a request policy without target takes the offer's).
pub fn run_containment(case: &ContainmentCase) -> Result<(), String> {
    let got = contain(&case.offer, &case.asked)?;
    let want = (
        case.contained,
        case.counterexample.clone(),
        case.error.clone(),
    );
    if got != want {
        return Err(format!("{}: gives {got:?}", case.name));
    }
    if let Some(example) = &case.counterexample {
        let o = parse("offer", &case.offer).map_err(|e| e.to_string())?;
        let mut a = parse("asked", &case.asked).map_err(|e| e.to_string())?;
        if a.target.is_none() {
            a.target = o.target.clone();
        }
        let r = request_from_json(example).map_err(|e| e.to_string())?;
        if evaluate(&a, &r).effect != Effect::Permit || evaluate(&o, &r).effect == Effect::Permit {
            return Err(format!(
                "{}: the counterexample does not show it",
                case.name
            ));
        }
    }
    Ok(())
}
