//! ODRL 2.2 JSON import and export.

#![expect(
    clippy::panic,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use proptest::prelude::*;
use tds_core::ErrorCode;
use tds_policy::model::*;
use tds_policy::odrl::{export, import, import_str, xsd_duration};
use tds_policy::{evaluate, parse, Effect, OdrlError, PolicyError, Request};

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
    for bad in ["P1M", "P", "PT", "P+1D", "PT1.S", "PT.5S", "PT1H1H"] {
        assert!(
            matches!(xsd_duration(bad), Err(OdrlError::BadValue { ref field, .. }) if field == "xsd:duration"),
            "{bad}"
        );
    }
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

fn odrl_error(j: &str) -> OdrlError {
    match import_str(j) {
        Err(PolicyError::Odrl(e)) => e,
        other => panic!("expected an ODRL error, got {other:?}"),
    }
}

#[test]
fn red_team_11_duplicate_keys_are_refused() {
    // serde_json keeps the last duplicate: this read as `permit distribute`.
    let e = odrl_error(
        r#"{"@type": "Set", "permission": [{"action": "use", "action": "distribute"}]}"#,
    );
    assert_eq!(
        e,
        OdrlError::DuplicateKey {
            key: "action".into()
        }
    );
    assert_eq!(e.code(), "policy.odrl.duplicate_key");
    assert_eq!(e.to_string(), "odrl: key \"action\" given twice");
    // At any depth, and also between a plain and a prefixed spelling of one key.
    let e = odrl_error(
        r#"{"@type": "Set", "permission": [{"action": "use", "constraint": [{"leftOperand": "count", "operator": "lteq", "rightOperand": 5, "rightOperand": 500}]}]}"#,
    );
    assert!(
        matches!(e, OdrlError::DuplicateKey { ref key } if key == "rightOperand"),
        "{e}"
    );
    let e =
        odrl_error(r#"{"@type": "Set", "permission": [{"action": "use", "odrl:action": "sell"}]}"#);
    assert!(
        matches!(e, OdrlError::DuplicateKey { ref key } if key == "action"),
        "{e}"
    );
    // The same text without the duplicate imports.
    import_str(r#"{"@type": "Set", "permission": [{"action": "use"}]}"#).unwrap();
}

#[test]
fn red_team_12_foreign_contexts_are_refused() {
    let with = |ctx: &str| {
        format!(r#"{{"@context": {ctx}, "@type": "Set", "permission": [{{"action": "use"}}]}}"#)
    };
    // The ODRL context by reference (http or https), alone or with the TDS prefix.
    for ok in [
        r#""http://www.w3.org/ns/odrl.jsonld""#,
        r#""https://www.w3.org/ns/odrl.jsonld""#,
        r#"["http://www.w3.org/ns/odrl.jsonld", {"tds": "https://w3id.org/tds/policy#"}]"#,
        r#"{"odrl": "http://www.w3.org/ns/odrl/2/", "xsd": "http://www.w3.org/2001/XMLSchema#", "@version": 1.1}"#,
    ] {
        import_str(&with(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // A remote context TDS does not know could redefine every term.
    let e = odrl_error(&with(r#""https://example.com/evil-context.jsonld""#));
    assert_eq!(
        e,
        OdrlError::RemoteContext {
            context: "https://example.com/evil-context.jsonld".into()
        }
    );
    assert_eq!(e.code(), "policy.odrl.remote_context");
    let e = odrl_error(&with(
        r#"["http://www.w3.org/ns/odrl.jsonld", "https://example.com/more.jsonld"]"#,
    ));
    assert!(matches!(e, OdrlError::RemoteContext { .. }), "{e}");
    // Inline definitions that could change meanings.
    for (ctx, term) in [
        (
            r#"{"use": "http://www.w3.org/ns/odrl/2/distribute"}"#,
            "use",
        ),
        (r#"{"@vocab": "https://example.com/"}"#, "@vocab"),
        (r#"{"tds": "https://example.com/not-tds#"}"#, "tds"),
    ] {
        let e = odrl_error(&with(ctx));
        assert_eq!(e, OdrlError::ContextTerm { term: term.into() }, "{ctx}");
        assert_eq!(e.code(), "policy.odrl.context_term");
    }
}

#[test]
fn plain_odrl_duties_import_with_their_defaults() {
    let imported = |duty: &str| {
        import_str(&format!(
            r#"{{"@type": "Offer", "assigner": "urn:provider:sgcc", "permission": [{{"action": "use", "duty": [{duty}]}}]}}"#
        ))
        .unwrap_or_else(|e| panic!("{duty}: {e}"))
        .policy
        .rules[0]
            .duties
            .clone()
    };
    let sgcc: Text = "urn:provider:sgcc".parse().unwrap();
    assert_eq!(
        imported(r#"{"action": "attribute"}"#),
        vec![Duty::Attribute(sgcc.clone())]
    );
    assert_eq!(
        imported(r#"{"action": "odrl:attribute"}"#),
        vec![Duty::Attribute(sgcc.clone())]
    );
    assert_eq!(
        imported(r#"{"action": "inform"}"#),
        vec![Duty::Notify(sgcc.clone())]
    );
    assert_eq!(
        imported(r#"{"action": "delete"}"#),
        vec![Duty::Delete { within: 0 }]
    );
    assert_eq!(
        imported(r#"{"action": "anonymize"}"#),
        vec![Duty::Anonymize]
    );
    for consent in ["obtainConsent", "odrl:obtainConsent", "tds:obtainConsent"] {
        assert_eq!(
            imported(&format!(r#"{{"action": "{consent}"}}"#)),
            vec![Duty::ObtainConsent("unspecified".parse().unwrap())]
        );
    }
    // Named parties still win, and a rule's own assigner comes before the policy's.
    assert_eq!(
        imported(r#"{"action": "attribute", "attributedParty": "urn:x"}"#),
        vec![Duty::Attribute("urn:x".parse().unwrap())]
    );
    let p = import_str(
        r#"{"@type": "Set", "assigner": "urn:a", "permission": [{"action": "use", "assigner": "urn:b", "duty": {"action": "attribute"}}],
            "obligation": [{"action": "inform", "assigner": "urn:c"}]}"#,
    )
    .unwrap()
    .policy;
    assert_eq!(
        p.rules[0].duties,
        vec![Duty::Attribute("urn:b".parse().unwrap())]
    );
    assert_eq!(
        p.rules[1].duties,
        vec![Duty::Notify("urn:c".parse().unwrap())]
    );
    // Without any assigner there is no party to default to.
    let e = odrl_error(
        r#"{"@type": "Set", "permission": [{"action": "use", "duty": {"action": "attribute"}}]}"#,
    );
    assert_eq!(
        e,
        OdrlError::NoDefaultParty {
            action: "attribute"
        }
    );
    assert_eq!(e.code(), "policy.odrl.no_default_party");
    // A pay duty is a price: compensate needs its amount and currency.
    let e = odrl_error(
        r#"{"@type": "Set", "permission": [{"action": "use", "duty": {"action": "compensate"}}]}"#,
    );
    assert!(
        matches!(e, OdrlError::IncompleteDuty { ref action, .. } if action == "compensate"),
        "{e}"
    );
    assert_eq!(e.code(), "policy.odrl.incomplete_duty");
}

#[test]
fn odrl_errors_have_codes() {
    let cases = [
        ("not json", "policy.odrl.not_json"),
        ("[]", "policy.odrl.wrong_shape"),
        (
            r#"{"@type": "Set", "colour": 1}"#,
            "policy.odrl.unknown_key",
        ),
        (
            r#"{"@type": "Set", "permission": {"action": "fly"}}"#,
            "policy.odrl.unknown_action",
        ),
        (
            r#"{"@type": "Set", "permission": {}}"#,
            "policy.odrl.missing",
        ),
        (r#"{"@type": "Ticket"}"#, "policy.odrl.unknown_type"),
        (
            r#"{"@type": "Set", "profile": "urn:other"}"#,
            "policy.odrl.unknown_term",
        ),
        (
            r#"{"@type": "Set", "permission": {"action": {"rdf:value": "use", "refinement": []}}}"#,
            "policy.odrl.unsupported",
        ),
        (
            r#"{"@type": "Set", "permission": {"action": "use", "constraint": {"leftOperand": "count", "operator": "isA", "rightOperand": 1}}}"#,
            "policy.odrl.bad_operator",
        ),
        (
            r#"{"@type": "Set", "permission": {"action": "use", "constraint": {"leftOperand": "count", "operator": "lt", "rightOperand": "many"}}}"#,
            "policy.odrl.bad_value",
        ),
    ];
    for (j, code) in cases {
        let e = import_str(j).unwrap_err();
        assert_eq!(e.code(), code, "{j}: {e}");
        assert!(tds_core::code::is_well_formed(e.code()));
    }
}
