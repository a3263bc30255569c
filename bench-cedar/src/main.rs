//! The same decision in TDS and in cedar-policy 4.x, in one run.
//!
//! 1. One TDS permission with 10 constraints vs one Cedar `permit` with the same 10
//!    conditions in its `when` clause.
//! 2. A 10-rule TDS policy vs 10 Cedar policies (the request matches the last one).
//!
//! Cedar's request, context and entities are built once, outside the timed loop. TDS's
//! request is built once too; the compiled policy binds it to its tables inside the
//! loop (that binding is part of every TDS decision). Prints medians of 7 runs and the
//! ratio. Run: `cargo run --release` in this directory.
//!
//! A third column times the per-access decision under a verified agreement
//! (`VerifiedAgreement::decide`: the agreed and the offer's policy, both compiled, and
//! the duties of both) with the case's policy as both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Instant;

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};
use tds_policy::{Action, CompiledPolicy, Effect};

const RUNS: usize = 7;

fn median_ns(iters: u64, mut f: impl FnMut()) -> f64 {
    // Warm up.
    for _ in 0..iters / 10 {
        f();
    }
    let mut v: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[RUNS / 2]
}

const TDS_ONE: &str = r#"
permit use
  when purpose isA grid/planning
    and industry eq power
    and recipientRole hasPart consumer
    and spatial isPartOf CN
    and count lteq 100
    and dateTime gteq 2027-01-01
    and dateTime lt 2028-01-01
    and classification lteq important
    and personalInfo eq none
    and volume lteq 10GiB;
"#;

const CEDAR_ONE: &str = r#"
permit(principal, action == Action::"use", resource)
when {
  context.purpose in Purpose::"grid/planning" &&
  principal.sector == "power" &&
  principal.roles.contains("consumer") &&
  context.location in Region::"CN" &&
  context.uses < 100 &&
  context.time >= 1798761600000 &&
  context.time < 1830297600000 &&
  context.classification <= 1 &&
  context.personal_info == 0 &&
  context.volume <= 10737418240
};
"#;

const SECTORS: [&str; 10] = [
    "weather",
    "transport",
    "finance",
    "healthcare",
    "water",
    "gas",
    "telecom",
    "retail",
    "agri",
    "power",
];
const PURPOSES: [&str; 10] = [
    "forecast",
    "navigation",
    "credit",
    "research",
    "supply",
    "heating",
    "network",
    "sales",
    "crops",
    "grid",
];

fn tds_ten() -> String {
    let mut s = String::new();
    for (sector, purpose) in SECTORS.iter().zip(PURPOSES) {
        s.push_str(&format!(
            "permit use when purpose isA {purpose} and industry eq {sector} and spatial isPartOf CN;\n"
        ));
    }
    s
}

fn cedar_ten() -> String {
    let mut s = String::new();
    for (sector, purpose) in SECTORS.iter().zip(PURPOSES) {
        s.push_str(&format!(
            "permit(principal, action == Action::\"use\", resource) when {{ context.purpose in Purpose::\"{purpose}\" && principal.sector == \"{sector}\" && context.location in Region::\"CN\" }};\n"
        ));
    }
    s
}

const ENTITIES: &str = r#"[
  {"uid": {"type": "User", "id": "alice"}, "attrs": {"sector": "power", "roles": ["consumer"]}, "parents": []},
  {"uid": {"type": "Asset", "id": "load"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Purpose", "id": "grid/planning/load"}, "attrs": {}, "parents": [{"type": "Purpose", "id": "grid/planning"}]},
  {"uid": {"type": "Purpose", "id": "grid/planning"}, "attrs": {}, "parents": [{"type": "Purpose", "id": "grid"}]},
  {"uid": {"type": "Purpose", "id": "grid"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Region", "id": "CN-SX"}, "attrs": {}, "parents": [{"type": "Region", "id": "CN"}]},
  {"uid": {"type": "Region", "id": "CN"}, "attrs": {}, "parents": []}
]"#;

const CONTEXT: &str = r#"{
  "purpose": {"__entity": {"type": "Purpose", "id": "grid/planning/load"}},
  "location": {"__entity": {"type": "Region", "id": "CN-SX"}},
  "uses": 3, "time": 1804204800000, "classification": 0, "personal_info": 0, "volume": 1048576
}"#;

fn tds_request() -> tds_policy::Request {
    let mut r = tds_policy::Request::new(Action::Read);
    r.purpose = Some("grid/planning/load".parse().unwrap());
    r.sector = Some("power".parse().unwrap());
    r.roles = vec!["consumer".parse().unwrap()];
    r.location = Some("CN-SX".parse().unwrap());
    r.uses = Some(3);
    r.time = Some(tds_core::Timestamp::from_millis(1_804_204_800_000));
    r.classification = Some(tds_policy::Classification::General);
    r.personal_info = Some(tds_policy::PersonalInfo::None);
    r.volume = Some(1 << 20);
    r
}

struct Row {
    name: &'static str,
    tds_ns: f64,
    tds_ref_ns: f64,
    agreement_ns: f64,
    cedar_ns: f64,
}

/// A verified agreement whose agreed and offer policies are both `policy`.
fn agreement(policy: &tds_policy::Policy) -> tds_policy::contract::VerifiedAgreement {
    use tds_policy::contract::{verify_agreement, AgreementTerms};
    let p = tds_core::SigningKey::from_seed(&[1; 32]);
    let c = tds_core::SigningKey::from_seed(&[2; 32]);
    let terms = AgreementTerms {
        offer: tds_core::Hash256::from_bytes([1; 32]),
        request: tds_core::Hash256::from_bytes([2; 32]),
        asset: "urn:asset:load".parse().unwrap(),
        provider: p.id(),
        provider_key: p.public_key(),
        consumer: c.id(),
        consumer_key: c.public_key(),
        offer_policy: policy.clone(),
        policy: policy.clone(),
        purpose: "grid".parse().unwrap(),
        price: None,
        agreed_at: tds_core::Timestamp::from_millis(1_800_000_000_000),
    };
    verify_agreement(&tds_core::cose::sign_multi(&[&p, &c], &terms).unwrap()).unwrap()
}

fn run(name: &'static str, tds_src: &str, cedar_src: &str) -> Row {
    let policy = tds_policy::parse(name, tds_src).unwrap();
    let compiled = CompiledPolicy::compile(&policy).unwrap();
    let req = tds_request();
    assert_eq!(
        compiled.decide(&req).effect,
        Effect::Permit,
        "{name}: TDS must permit"
    );
    assert_eq!(tds_policy::evaluate(&policy, &req).effect, Effect::Permit);

    let policies: PolicySet = cedar_src.parse().unwrap();
    let entities = Entities::from_json_str(ENTITIES, None).unwrap();
    let principal: EntityUid = r#"User::"alice""#.parse().unwrap();
    let action: EntityUid = r#"Action::"use""#.parse().unwrap();
    let resource: EntityUid = r#"Asset::"load""#.parse().unwrap();
    let context = Context::from_json_str(CONTEXT, None).unwrap();
    let request = Request::new(principal, action, resource, context, None).unwrap();
    let auth = Authorizer::new();
    let resp = auth.is_authorized(&request, &policies, &entities);
    assert_eq!(resp.decision(), Decision::Allow, "{name}: Cedar must allow");

    let tds_ns = median_ns(2_000_000, || {
        black_box(compiled.decide(black_box(&req)));
    });
    let tds_ref_ns = median_ns(200_000, || {
        black_box(tds_policy::evaluate(black_box(&policy), black_box(&req)));
    });
    let agreed = agreement(&policy);
    assert_eq!(agreed.decide(&req).effect, Effect::Permit);
    let agreement_ns = median_ns(1_000_000, || {
        black_box(agreed.decide(black_box(&req)));
    });
    let cedar_ns = median_ns(100_000, || {
        black_box(auth.is_authorized(black_box(&request), &policies, &entities));
    });
    Row {
        name,
        tds_ns,
        tds_ref_ns,
        agreement_ns,
        cedar_ns,
    }
}

fn main() {
    let ten = tds_ten();
    let cedar = cedar_ten();
    let rows = [
        run("1 rule, 10 constraints", TDS_ONE, CEDAR_ONE),
        run("10 rules / 10 policies", &ten, &cedar),
    ];
    println!(
        "{:<26} {:>14} {:>22} {:>18} {:>12} {:>14}",
        "case", "tds compiled", "tds reference+reasons", "tds agreement", "cedar", "cedar / tds"
    );
    for r in rows {
        println!(
            "{:<26} {:>11.0} ns {:>19.0} ns {:>15.0} ns {:>9.0} ns {:>13.1}x",
            r.name,
            r.tds_ns,
            r.tds_ref_ns,
            r.agreement_ns,
            r.cedar_ns,
            r.cedar_ns / r.tds_ns
        );
    }
}
