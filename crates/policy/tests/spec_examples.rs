//! The worked examples of `spec/policy.md` are tests: every tagged block is checked here,
//! so the specification cannot drift from the implementation.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use serde_json::Value;
use tds_policy::json::{decision_to_json, request_from_json, request_to_json};
use tds_policy::{contains, evaluate, format, parse, Containment, Policy};

const SPEC: &str = include_str!("../../../spec/policy.md");

struct Block {
    tag: String,
    name: String,
    body: String,
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = SPEC.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        let Some((_, attr)) = info.split_once(' ') else {
            continue;
        };
        let Some((tag, name)) = attr.split_once('=') else {
            continue;
        };
        out.push(Block {
            tag: tag.to_owned(),
            name: name.to_owned(),
            body,
        });
    }
    out
}

fn policy(blocks: &[Block], tag: &str, name: &str) -> Policy {
    let b = blocks
        .iter()
        .find(|b| b.tag == tag && b.name == name)
        .unwrap_or_else(|| panic!("no {tag}={name} block"));
    parse(&format!("spec/policy.md ({tag}={name})"), &b.body).unwrap()
}

#[test]
fn spec_examples_hold() {
    let blocks = blocks();
    let mut checked = 0;
    let mut pending_request: Option<(String, Value)> = None;
    for b in &blocks {
        match b.tag.as_str() {
            "example" => {
                // Every example parses and round-trips through the formatter.
                let p = policy(&blocks, "example", &b.name);
                assert_eq!(parse("again", &format(&p)).unwrap(), p);
            }
            "formatted" => {
                let p = policy(&blocks, "example", &b.name);
                assert_eq!(format(&p), b.body, "formatted={}", b.name);
                checked += 1;
            }
            "request" => {
                let v: Value = serde_json::from_str(&b.body).unwrap();
                pending_request = Some((b.name.clone(), v));
            }
            "decision" => {
                let (name, req) = pending_request
                    .take()
                    .expect("a request before each decision");
                assert_eq!(name, b.name);
                let p = policy(&blocks, "example", &name);
                let r = request_from_json(&req).unwrap();
                let got = decision_to_json(&evaluate(&p, &r));
                let want: Value = serde_json::from_str(&b.body).unwrap();
                for key in ["decision", "duties", "reasons"] {
                    if let Some(w) = want.get(key) {
                        assert_eq!(&got[key], w, "{name}: {key} for {req}");
                    }
                }
                // The compiled form agrees.
                let c = tds_policy::CompiledPolicy::compile(&p).unwrap();
                assert_eq!(
                    c.decide(&r).effect.as_str(),
                    want["decision"].as_str().unwrap()
                );
                checked += 1;
            }
            "contains" => {
                let offer = policy(&blocks, "offer", &b.name);
                let asked = policy(&blocks, "asked", &b.name);
                let want: Value = serde_json::from_str(&b.body).unwrap();
                let got = contains(&offer, &asked).unwrap();
                match got {
                    Containment::Contained => assert_eq!(want["contained"], true, "{}", b.name),
                    Containment::NotContained(r) => {
                        assert_eq!(want["contained"], false, "{}", b.name);
                        let j = request_to_json(&r);
                        if let Some(Value::Object(fields)) = want.get("counterexample") {
                            for (k, v) in fields {
                                assert_eq!(&j[k], v, "{}: counterexample {j}", b.name);
                            }
                        }
                    }
                }
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 10, "only {checked} examples found");
}

/// One value of every error variant (and every decision reason code): the codes they
/// give are exactly the codes `spec/policy.md` §9 lists.
fn every_code() -> std::collections::BTreeSet<&'static str> {
    use tds_core::ErrorCode;
    use tds_policy::contract::{ContractError, ContractObject};
    use tds_policy::error::TermKind;
    use tds_policy::model::{LogicalOp, Operand, Operator};
    use tds_policy::{ContainmentLimit, OdrlError, PolicyError, ReasonCode, RequestError};

    let h = tds_core::Hash256::from_bytes([1; 32]);
    let t = tds_core::Timestamp::from_millis(0);
    let req = || Box::new(tds_policy::Request::new(tds_policy::Action::Use));
    let s = String::new;
    let mut codes: std::collections::BTreeSet<&'static str> =
        ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
    let policy = [
        PolicyError::BadValue {
            what: "x",
            value: s(),
        },
        PolicyError::BadOperator {
            operand: Operand::Count,
            operator: Operator::IsA,
        },
        PolicyError::BadValueType {
            operand: Operand::Count,
            value: s(),
        },
        PolicyError::BadList {
            operand: Operand::Count,
            reason: s(),
        },
        PolicyError::BadLogical {
            op: LogicalOp::And,
            count: 1,
        },
        PolicyError::TooDeep { limit: 1 },
        PolicyError::TooLarge {
            what: "rules",
            limit: 1,
        },
        PolicyError::EmptyObligation,
        PolicyError::ProhibitionDuty,
        PolicyError::Syntax {
            file: s(),
            line: 1,
            col: 1,
            message: s(),
        },
        PolicyError::Cbor(tds_core::cbor::CborError::Truncated { offset: 0 }),
        PolicyError::TooComplex(ContainmentLimit::Roles { limit: 1 }),
        PolicyError::TooComplex(ContainmentLimit::Budget { limit: 1 }),
    ];
    let kinds = [
        TermKind::PolicyKey,
        TermKind::Action,
        TermKind::LeftOperand,
        TermKind::Operator,
        TermKind::PolicyType,
        TermKind::Term,
    ];
    let odrl = [
        OdrlError::NotJson(s()),
        OdrlError::TooLarge { limit: 1 },
        OdrlError::TooDeep { limit: 1 },
        OdrlError::DuplicateKey { key: s() },
        OdrlError::WrongShape {
            what: "x",
            expected: "y",
        },
        OdrlError::Missing {
            what: "x",
            field: "y",
        },
        OdrlError::Unsupported { what: "x" },
        OdrlError::RemoteContext { context: s() },
        OdrlError::ContextTerm { term: s() },
        OdrlError::BadValue {
            field: s(),
            reason: s(),
        },
        OdrlError::TooMany {
            what: "rules",
            limit: 1,
        },
        OdrlError::IncompleteDuty {
            action: s(),
            needs: "x",
        },
        OdrlError::NoDefaultParty {
            action: "attribute",
        },
        OdrlError::BadOperator {
            operand: Operand::Count,
            operator: Operator::IsA,
        },
        OdrlError::Shape("x"),
    ]
    .into_iter()
    .chain(kinds.map(|kind| OdrlError::Unknown { kind, term: s() }));
    let request = [
        RequestError::NotJson(s()),
        RequestError::DuplicateKey { key: s() },
        RequestError::NotObject,
        RequestError::Missing { key: "action" },
        RequestError::WrongType {
            key: s(),
            expected: "x",
        },
        RequestError::UnknownKey { key: s() },
        RequestError::UnknownAction { action: s() },
        RequestError::BadValue {
            key: s(),
            reason: s(),
        },
        RequestError::TooMany {
            key: "recipient.roles",
            limit: 1,
        },
    ];
    let contract = [
        ContractError::Cose(tds_core::cose::CoseError::BadSignature),
        ContractError::WrongSigner {
            what: ContractObject::Offer,
            expected: h,
            found: h,
        },
        ContractError::KeyMismatch {
            what: ContractObject::Offer,
            field: "provider_key",
        },
        ContractError::EmptyValidity {
            not_before: t,
            not_after: t,
        },
        ContractError::OfferNotValid {
            not_before: t,
            not_after: t,
            now: t,
        },
        ContractError::OfferMismatch {
            expected: h,
            found: h,
        },
        ContractError::CredentialMismatch {
            subject: h,
            consumer: h,
        },
        ContractError::NotAConsumer { subject: h },
        ContractError::CredentialNotValid {
            not_before: t,
            not_after: t,
            now: t,
        },
        ContractError::NotContained(req()),
        ContractError::PurposeNotCovered {
            purpose: "grid".parse().unwrap(),
            example: req(),
        },
        ContractError::TooComplex(ContainmentLimit::Budget { limit: 1 }),
        ContractError::NonceReused,
        ContractError::StaleRequest { time: t, now: t },
        ContractError::SameParty { party: h },
        ContractError::SignatureOrder { found: vec![h] },
        ContractError::NotAParty {
            what: ContractObject::Termination,
            party: h,
        },
        ContractError::OtherAgreement {
            expected: h,
            found: h,
        },
        ContractError::NoRandomness,
    ];
    codes.extend(policy.iter().map(ErrorCode::code));
    codes.extend(odrl.map(|e| e.code()));
    codes.extend(request.iter().map(ErrorCode::code));
    codes.extend(contract.iter().map(ErrorCode::code));
    codes
}

#[test]
fn the_spec_lists_every_code() {
    let section = SPEC
        .split_once("## 9. Codes")
        .expect("spec/policy.md has a section 9")
        .1;
    let listed: std::collections::BTreeSet<&str> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| {
            (t.starts_with("policy.") || t.starts_with("contract."))
                && tds_core::code::is_well_formed(t)
        })
        .collect();
    // Envelope and CBOR problems carry tds-core's codes, which spec/encoding.md lists.
    let produced: std::collections::BTreeSet<&str> = every_code()
        .into_iter()
        .filter(|c| c.starts_with("policy.") || c.starts_with("contract."))
        .collect();
    for code in &produced {
        assert!(tds_core::code::is_well_formed(code), "{code}");
    }
    let missing: Vec<_> = produced.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&produced).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "codes not in spec/policy.md §9: {missing:?}; listed but never produced: {extra:?}"
    );
}
