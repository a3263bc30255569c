//! Every template parses, lints clean, formats stably, and behaves as documented.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use tds_policy::templates::{template, NAMES};
use tds_policy::*;

fn load(name: &str) -> Policy {
    parse(name, template(name).unwrap()).unwrap()
}

#[test]
fn every_template_checks_clean() {
    for name in NAMES {
        let p = load(name);
        let lints: Vec<String> = lint(&p).iter().map(ToString::to_string).collect();
        assert!(lints.is_empty(), "{name}: {lints:?}");
        assert_eq!(parse(name, &format(&p)).unwrap(), p, "{name}");
        CompiledPolicy::compile(&p).unwrap();
    }
}

fn request(action: Action, purpose: &str, sector: &str, location: &str) -> Request {
    let mut r = Request::new(action);
    r.purpose = Some(purpose.parse().unwrap());
    r.sector = Some(sector.parse().unwrap());
    r.location = Some(location.parse().unwrap());
    r
}

#[test]
fn power_template_behaves() {
    let p = load("power");
    let r = request(
        Action::Read,
        "grid/planning/load-forecast",
        "power",
        "CN-SX",
    );
    let d = evaluate(&p, &r);
    assert_eq!(d.effect, Effect::Permit);
    assert!(d.duties.contains(&Duty::Anonymize));
    let r = request(Action::Read, "finance/risk", "finance", "CN");
    assert_eq!(evaluate(&p, &r).effect, Effect::Deny);
    let r = request(Action::Aggregate, "finance/risk", "finance", "CN");
    assert_eq!(evaluate(&p, &r).effect, Effect::Permit);
    let r = request(Action::Distribute, "grid/planning", "power", "CN");
    assert_eq!(evaluate(&p, &r).effect, Effect::Deny);
}

#[test]
fn healthcare_template_needs_consent_and_stays_in_cn() {
    let p = load("healthcare");
    let mut r = request(
        Action::Analyze,
        "research/medical/oncology",
        "healthcare",
        "CN-BJ",
    );
    r.personal_info = Some(PersonalInfo::Sensitive);
    assert_eq!(evaluate(&p, &r).effect, Effect::Deny);
    r.consent_ref = Some("consent:2027/0042".parse().unwrap());
    assert_eq!(evaluate(&p, &r).effect, Effect::Permit);
    r.location = Some("HK".parse().unwrap());
    assert_eq!(evaluate(&p, &r).effect, Effect::Deny);
    let r = request(Action::TrainModel, "research/medical", "healthcare", "CN");
    assert_eq!(evaluate(&p, &r).effect, Effect::Deny);
}

#[test]
fn operator_offers_are_checked_against_the_licence() {
    let licence = load("licence");
    let good = parse("offer", "permit use when purpose isA urban-planning/traffic and classification eq general and personalInfo eq none and spatial isPartOf CN-BJ and dateTime gteq 2027-06-01 and dateTime lt 2028-06-01 duty pay(0.6 CNY per gib);").unwrap();
    assert_eq!(contains(&licence, &good).unwrap(), Containment::Contained);
    let bad = parse("offer", "permit use when purpose isA urban-planning and classification eq general and personalInfo eq none and spatial isPartOf CN and dateTime gteq 2027-06-01 and dateTime lt 2031-01-01;").unwrap();
    let Containment::NotContained(r) = contains(&licence, &bad).unwrap() else {
        panic!()
    };
    assert!(r.time.unwrap().as_millis() >= 1_893_456_000_000, "{r:?}");
}

/// Writes fuzz seeds (text, ODRL JSON, CBOR) for every template when
/// `TDS_WRITE_FUZZ_SEEDS` names the fuzz directory.
#[test]
fn write_fuzz_seeds() {
    let Ok(dir) = std::env::var("TDS_WRITE_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::Path::new(&dir).join("seeds");
    for sub in ["policy_text", "policy_odrl_json", "policy_cbor"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for name in NAMES {
        let p = load(name);
        std::fs::write(dir.join("policy_text").join(name), template(name).unwrap()).unwrap();
        let j = serde_json::to_vec_pretty(&tds_policy::odrl::export(&p)).unwrap();
        std::fs::write(dir.join("policy_odrl_json").join(name), j).unwrap();
        std::fs::write(dir.join("policy_cbor").join(name), p.to_cbor().unwrap()).unwrap();
    }
}
