//! The worked examples of `spec/policy.md` are tests: every tagged block is checked here,
//! so the specification cannot drift from the implementation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
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
