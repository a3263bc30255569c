//! ODRL 2.2 JSON import and export.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use tds_policy::model::*;
use tds_policy::odrl::{export, import, import_str, xsd_duration};
use tds_policy::{evaluate, parse, Effect, Request};

mod common;
use common::{policy, request};

/// What an export and import keeps: rules grouped by kind, one duty per obligation.
fn normalized(p: &Policy) -> Policy {
    let mut out = p.clone();
    out.rules.clear();
    for kind in [
        RuleKind::Permission,
        RuleKind::Prohibition,
        RuleKind::Obligation,
    ] {
        for r in p.rules.iter().filter(|r| r.kind == kind) {
            if kind == RuleKind::Obligation {
                for d in &r.duties {
                    let mut one = r.clone();
                    one.duties = vec![d.clone()];
                    out.rules.push(one);
                }
            } else {
                out.rules.push(r.clone());
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn odrl_round_trip(p in policy(), reqs in prop::collection::vec(request(), 4)) {
        let json = export(&p);
        let text = serde_json::to_string(&json).unwrap();
        let back = import_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back.policy, &normalized(&p), "{}", text);
        for r in &reqs {
            prop_assert_eq!(evaluate(&back.policy, r).effect, evaluate(&p, r).effect);
        }
    }

    #[test]
    fn import_never_panics(s in "\\PC{0,300}") {
        let _ = import_str(&s);
    }
}

#[test]
fn accepts_the_shapes_other_connectors_emit() {
    let j = r#"{
      "@context": ["http://www.w3.org/ns/odrl.jsonld", {"tds": "https://w3id.org/tds/policy#"}],
      "@type": "odrl:Offer",
      "odrl:uid": {"@id": "urn:policy:1"},
      "assigner": {"@id": "urn:provider:sgcc"},
      "odrl:permission": {
        "odrl:target": {"@id": "urn:asset:load"},
        "odrl:action": {"@id": "odrl:use"},
        "odrl:constraint": [
          {"odrl:leftOperand": {"@id": "odrl:purpose"}, "odrl:operator": {"@id": "odrl:isA"}, "odrl:rightOperand": "grid/planning"},
          {"leftOperand": "dateTime", "operator": "lt", "rightOperand": {"@value": "2028-01-01", "@type": "xsd:date"}},
          {"leftOperand": "tds:classification", "operator": "lteq", "rightOperand": "important"},
          {"or": [
             {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": "CN"},
             {"leftOperand": "spatial", "operator": "eq", "rightOperand": {"@id": "HK"}}
          ]}
        ],
        "duty": {"action": "compensate", "unit": "CNY", "tds:per": "gib",
                 "constraint": {"leftOperand": "payAmount", "operator": "eq", "rightOperand": {"@value": 1.5, "@type": "xsd:decimal"}}}
      },
      "prohibition": [{"action": "odrl:distribute"}]
    }"#;
    let imported = import_str(j).unwrap();
    assert!(imported.warnings.is_empty());
    let p = imported.policy;
    assert_eq!(p.kind, PolicyKind::Offer);
    let expected = parse(
        "e",
        r#"policy offer uid "urn:policy:1" assigner "urn:provider:sgcc";
      permit use target "urn:asset:load"
        when purpose isA grid/planning and dateTime lt 2028-01-01 and classification lteq important
         and (spatial isPartOf CN or spatial eq HK)
        duty pay(1.5 CNY per gib);
      prohibit distribute;"#,
    )
    .unwrap();
    assert_eq!(p, expected);
    let mut r = Request::new(Action::Read);
    r.purpose = Some("grid/planning".parse().unwrap());
    r.time = Some(tds_core::Timestamp::parse_rfc3339("2027-03-01T00:00:00Z").unwrap());
    r.classification = Some(Classification::General);
    r.location = Some("CN-SX".parse().unwrap());
    assert_eq!(evaluate(&p, &r).effect, Effect::Permit);
}

#[test]
fn offer_without_assigner_is_accepted_with_a_warning() {
    let i = import_str(r#"{"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Offer", "permission": [{"action": "read"}]}"#).unwrap();
    assert_eq!(
        i.warnings,
        vec!["offer has no assigner; the connector fills it in".to_string()]
    );
}

#[test]
fn unknown_terms_are_errors_naming_the_term() {
    let cases = [
        (
            r#"{"@type": "Set", "permission": [{"action": "transmogrify"}]}"#,
            "\"transmogrify\"",
        ),
        (
            r#"{"@type": "Set", "permission": [{"action": "use", "constraint": {"leftOperand": "odrl:weather", "operator": "eq", "rightOperand": "x"}}]}"#,
            "\"odrl:weather\"",
        ),
        (
            r#"{"@type": "Set", "permission": [{"action": "use", "constraint": {"leftOperand": "purpose", "operator": "near", "rightOperand": "x"}}]}"#,
            "\"near\"",
        ),
        (
            r#"{"@type": "Set", "permission": [{"action": "tds:use"}]}"#,
            "\"tds:use\"",
        ),
        (
            r#"{"@type": "Set", "permission": [{"action": "odrl:analyze"}]}"#,
            "\"odrl:analyze\"",
        ),
        (
            r#"{"@type": "Set", "permission": [{"action": "use", "duty": {"action": "dance"}}]}"#,
            "\"dance\"",
        ),
        (r#"{"@type": "Set", "permisson": []}"#, "\"permisson\""),
        (r#"{"@type": "Ticket"}"#, "\"Ticket\""),
    ];
    for (j, name) in cases {
        let e = import_str(j).unwrap_err().to_string();
        assert!(e.contains(name), "{e} should name {name}");
    }
}

#[test]
fn xsd_durations() {
    assert_eq!(xsd_duration("P30D").unwrap(), 30 * 86_400_000);
    assert_eq!(xsd_duration("PT1H30M").unwrap(), 5_400_000);
    assert_eq!(xsd_duration("PT0.5S").unwrap(), 500);
    assert!(xsd_duration("P1M").is_err());
    assert!(xsd_duration("P").is_err());
    assert!(xsd_duration("PT").is_err());
}

#[test]
fn export_uses_the_profile_and_prefixes_tds_terms() {
    let p = parse("p", "permit train-model when classification eq general;").unwrap();
    let j = export(&p);
    assert_eq!(j["profile"], "https://w3id.org/tds/policy/v1");
    assert_eq!(j["permission"][0]["action"], "tds:trainModel");
    assert_eq!(
        j["permission"][0]["constraint"][0]["leftOperand"],
        "tds:classification"
    );
    assert_eq!(import(&j).unwrap().policy, p);
}
