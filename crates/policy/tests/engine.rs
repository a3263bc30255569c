//! Evaluation semantics, text round trips and the compiled form's agreement with the
//! reference interpreter.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use proptest::prelude::*;

mod common;
use common::{policy, request};
use tds_policy::compiled::CompiledPolicy;
use tds_policy::model::*;
use tds_policy::{evaluate, format, parse, Effect, ReasonCode, Request};

fn p(src: &str) -> Policy {
    parse("test.tdsp", src).unwrap()
}

fn req(action: Action) -> Request {
    Request::new(action)
}

#[test]
fn count_lteq_100_permits_the_100th_use_and_denies_the_101st() {
    let policy = p("permit use when count lteq 100;");
    let mut r = req(Action::Use);
    r.uses = Some(99);
    assert_eq!(evaluate(&policy, &r).effect, Effect::Permit);
    r.uses = Some(100);
    let d = evaluate(&policy, &r);
    assert_eq!(d.effect, Effect::Deny);
    // The reason is a value: code, rule, constraint, expected, actual; and its text.
    let why = &d.reasons[0];
    assert_eq!(why.code, ReasonCode::NotGranted);
    assert_eq!(why.code.as_str(), "policy.rule.not_granted");
    let rule = why.rule.unwrap();
    assert_eq!(
        (rule.number, rule.kind, rule.action),
        (1, RuleKind::Permission, Action::Use)
    );
    assert_eq!(
        why.constraint(),
        Some(&Constraint::atom(
            Operand::Count,
            Operator::Lteq,
            Value::Count(100)
        ))
    );
    assert_eq!(why.expected().as_deref(), Some("at most 100"));
    assert_eq!(why.actual().as_deref(), Some("use number 101 (100 so far)"));
    assert_eq!(
        why.to_string(),
        "permission 1 (use): not granted: count must be at most 100, actual: use number 101 (100 so far)"
    );
    let last = d.reasons.last().unwrap();
    assert_eq!(last.code, ReasonCode::NoneGranted);
    assert_eq!(last.to_string(), "denied: no permission is granted");
}

#[test]
fn purpose_isa_honours_the_hierarchy_and_eq_does_not() {
    let policy = p("permit use when purpose isA grid;");
    let mut r = req(Action::Read);
    r.purpose = Some("grid/planning".parse().unwrap());
    assert_eq!(evaluate(&policy, &r).effect, Effect::Permit);
    let exact = p("permit use when purpose eq grid;");
    assert_eq!(evaluate(&exact, &r).effect, Effect::Deny);
    let region = p("permit use when spatial isPartOf CN;");
    r.location = Some("CN-SX".parse().unwrap());
    assert_eq!(evaluate(&region, &r).effect, Effect::Permit);
    r.location = Some("HK".parse().unwrap());
    assert_eq!(evaluate(&region, &r).effect, Effect::Deny);
}

#[test]
fn prohibitions_override_by_default_and_conflict_is_settable() {
    let src = "permit use; prohibit read when purpose isA marketing;";
    let mut r = req(Action::Read);
    r.purpose = Some("marketing/email".parse().unwrap());
    assert_eq!(evaluate(&p(src), &r).effect, Effect::Deny);
    let perm = p(&format!("policy set conflict permit; {src}"));
    assert_eq!(evaluate(&perm, &r).effect, Effect::Permit);
    let inv = p(&format!("policy set conflict invalid; {src}"));
    assert_eq!(evaluate(&inv, &r).effect, Effect::Deny);
    r.purpose = Some("research".parse().unwrap());
    assert_eq!(evaluate(&p(src), &r).effect, Effect::Permit);
}

#[test]
fn missing_facts_never_grant_and_never_escape_a_prohibition() {
    let policy = p("permit use when industry eq power; prohibit use when spatial isNoneOf [CN];");
    let mut r = req(Action::Use);
    assert_eq!(evaluate(&policy, &r).effect, Effect::Deny);
    r.sector = Some("power".parse().unwrap());
    // The location is unknown, so the prohibition may apply.
    assert_eq!(evaluate(&policy, &r).effect, Effect::Deny);
    r.location = Some("CN".parse().unwrap());
    assert_eq!(evaluate(&policy, &r).effect, Effect::Permit);
}

#[test]
fn not_applicable_when_nothing_covers_the_action() {
    let policy = p("permit read; prohibit sell when count gt 5;");
    let d = evaluate(&policy, &req(Action::Distribute));
    assert_eq!(d.effect, Effect::NotApplicable);
    assert_eq!(
        evaluate(&policy, &req(Action::Display)).effect,
        Effect::Permit
    );
    // `use` is broader than `read`: not covered.
    assert_eq!(
        evaluate(&policy, &req(Action::Use)).effect,
        Effect::NotApplicable
    );
}

#[test]
fn duties_that_cannot_be_met_withhold_the_permission() {
    let policy = p(r#"permit use duty obtain-consent("pipl-consent"), attribute("x");"#);
    let mut r = req(Action::Use);
    let d = evaluate(&policy, &r);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(
        d.reasons[0].unmet,
        Some(tds_policy::eval::Unmet::Duty(
            tds_policy::eval::DutyUnmet::NoConsent {
                scheme: "pipl-consent".parse().unwrap()
            }
        ))
    );
    assert_eq!(d.reasons[0].actual(), None);
    assert!(d.reasons[0].to_string().contains("obtain-consent"));
    r.consent_ref = Some("consent-123".parse().unwrap());
    let d = evaluate(&policy, &r);
    assert_eq!(d.effect, Effect::Permit);
    assert_eq!(d.duties.len(), 2);
}

#[test]
fn deny_reasons_name_every_rule_considered() {
    let policy = p("permit use when purpose isA grid; permit read when industry eq power; prohibit distribute;");
    let mut r = req(Action::Read);
    r.purpose = Some("finance".parse().unwrap());
    r.sector = Some("finance".parse().unwrap());
    let d = evaluate(&policy, &r);
    assert_eq!(d.effect, Effect::Deny);
    let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
    assert!(
        reasons.iter().any(|x| x.starts_with(
            "permission 1 (use): not granted: purpose must be within grid, actual: finance"
        )),
        "{:?}",
        d.reasons
    );
    assert!(
        reasons.iter().any(|x| x.starts_with(
            "permission 2 (read): not granted: industry must be equal to power, actual: finance"
        )),
        "{:?}",
        d.reasons
    );
    assert!(
        reasons
            .iter()
            .any(|x| x.starts_with("prohibition 3 (distribute)")),
        "{:?}",
        d.reasons
    );
}

#[test]
fn syntax_errors_carry_file_line_and_column() {
    let e = parse("offer.tdsp", "permit use\n  when purpose isA Grid;").unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("offer.tdsp:2:20: "), "{msg}");
    let e = parse(
        "x",
        "permit use when (purpose isA grid and count lt 3 or count gt 5);",
    )
    .unwrap_err();
    assert!(e.to_string().contains("without parentheses"), "{e}");
    let e = parse("x", "permit fly;").unwrap_err();
    assert_eq!(e.to_string(), "x:1:8: unknown action `fly`");
    let deep = format!(
        "permit use when {}count lt 3{};",
        "(".repeat(40),
        ")".repeat(40)
    );
    assert!(parse("x", &deep)
        .unwrap_err()
        .to_string()
        .contains("nest deeper"));
}

#[test]
fn format_is_canonical_and_comments_are_dropped() {
    let src = "// header\npolicy offer target \"urn:a\" ; permit use when purpose isA grid and (spatial isPartOf CN or spatial eq HK) duty delete(within 720h), pay(12.50 CNY per gib);";
    let p1 = p(src);
    let f = format(&p1);
    assert_eq!(
        f,
        "policy offer\n  target \"urn:a\"\n  conflict prohibit;\n\npermit use\n  when purpose isA grid\n    and (spatial isPartOf CN or spatial eq HK)\n  duty delete(within 30d), pay(12.5 CNY per gib);\n"
    );
    assert_eq!(p(&f), p1);
    assert_eq!(format(&p(&f)), f);
}

#[test]
fn cbor_round_trip_and_strictness() {
    let policy = p("policy offer target \"urn:a\"; permit use when count lteq 100 and dateTime lt 2028-01-01 duty attribute(\"x\");");
    let bytes = policy.to_cbor().unwrap();
    assert_eq!(Policy::from_cbor(&bytes).unwrap(), policy);
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        Policy::from_cbor(&longer),
        Err(tds_policy::PolicyError::Cbor(
            tds_core::cbor::CborError::TrailingBytes { count: 1, .. }
        ))
    ));
    // A policy built in code is checked by validate, which returns the proof.
    let mut bad = policy.clone();
    bad.rules[0].kind = RuleKind::Prohibition;
    assert_eq!(
        bad.validate().unwrap_err(),
        tds_policy::PolicyError::ProhibitionDuty
    );
    let compiled = policy.validate().unwrap();
    assert_eq!(compiled.policy(), &policy);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compiled_agrees_with_reference(policy in policy(), reqs in prop::collection::vec(request(), 1..8)) {
        policy.validate().unwrap();
        let compiled = CompiledPolicy::compile(&policy).unwrap();
        for r in &reqs {
            let d = evaluate(&policy, r);
            let o = compiled.decide(r);
            prop_assert_eq!(o.effect, d.effect, "policy:\n{}\nrequest: {:?}\nreasons: {:?}", format(&policy), r, d.reasons);
            prop_assert_eq!(compiled.duties(&o), d.duties);
        }
    }

    #[test]
    fn text_round_trip(policy in policy()) {
        let text = format(&policy);
        let back = parse("rt", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &policy);
        prop_assert_eq!(format(&back), text);
    }

    #[test]
    fn cbor_round_trip(policy in policy()) {
        let bytes = policy.to_cbor().unwrap();
        prop_assert_eq!(Policy::from_cbor(&bytes).unwrap(), policy);
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,200}") {
        let _ = parse("f", &s);
    }
}

#[test]
fn too_many_distinct_values_are_refused() {
    let rules: String = (0..5)
        .map(|r| {
            let list: Vec<String> = (0..64).map(|i| format!("p{r}x{i}")).collect();
            format!("permit use when purpose isAnyOf [{}];\n", list.join(", "))
        })
        .collect();
    let e = parse("big", &rules).unwrap_err();
    assert!(
        matches!(&e, tds_policy::PolicyError::Syntax { message, .. } if message.contains("more distinct values for one operand than the limit of 256")),
        "{e}"
    );
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value as J;
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(J::from),
        any::<u64>().prop_map(J::from),
        "\\PC{0,8}".prop_map(J::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
            prop::collection::btree_map("[a-z@:]{0,6}", inner, 0..6)
                .prop_map(|m| J::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The strict JSON reader reads what serde_json prints, unchanged.
    #[test]
    fn strict_json_round_trip(v in json_value()) {
        let text = serde_json::to_string(&v).unwrap();
        prop_assert_eq!(tds_policy::json::parse_strict(&text).unwrap(), v.clone());
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        prop_assert_eq!(tds_policy::json::parse_strict(&pretty).unwrap(), v);
    }

    /// A request written in its JSON form reads back to the same request.
    #[test]
    fn request_json_round_trip(r in request()) {
        let text = tds_policy::json::request_to_json(&r).to_string();
        prop_assert_eq!(tds_policy::json::request_from_str(&text).unwrap(), r);
    }
}

#[test]
fn strict_json_refuses_duplicate_keys_at_any_depth() {
    use tds_policy::json::{parse_strict, StrictJsonError};
    assert_eq!(
        parse_strict(r#"{"a": [1, {"b": 1, "c": {"d": 1, "d": 2}}]}"#),
        Err(StrictJsonError::DuplicateKey("d".into()))
    );
    assert!(matches!(
        parse_strict(r#"{"a": 1} x"#),
        Err(StrictJsonError::NotJson(_))
    ));
    assert!(matches!(
        tds_policy::json::request_from_str(r#"{"action": "use", "uses": 1, "uses": 2}"#),
        Err(tds_policy::PolicyError::Request(
            tds_policy::RequestError::DuplicateKey { ref key }
        )) if key == "uses"
    ));
}

proptest! {
    /// The bit set lists exactly its members, in order.
    #[test]
    fn bits_iterate_their_members(members in prop::collection::btree_set(0u16..256, 0..40)) {
        let mut outcome = tds_policy::compiled::Bits::default();
        for m in &members {
            outcome.set(*m);
        }
        outcome.set(256);
        let listed: Vec<u16> = outcome.iter().collect();
        prop_assert_eq!(listed, members.iter().copied().collect::<Vec<_>>());
        for i in 0..256u16 {
            prop_assert_eq!(outcome.has(i), members.contains(&i));
        }
    }
}
