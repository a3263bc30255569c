//! `spec/vectors/policy/*.json` against `tds-policy`: every case is run, and the files
//! must be exactly what the generator makes. `TDS_SPEC_BLESS=1` rewrites them from the
//! code instead (then review the diff).

// The helpers below are test code too; clippy's test exemptions only reach #[test] fns.
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use tds_spec::policy::{
    containment_cases, decision_cases, run_containment, run_decision, ContainmentCase, DecisionCase,
};

fn spec_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn bless() -> bool {
    std::env::var_os("TDS_SPEC_BLESS").is_some_and(|v| v != "0" && !v.is_empty())
}

/// Writes `cases` to `rel` when blessing, then reads the file back strictly: unknown
/// fields are refused by the schema, names are unique, and the file must equal `cases`.
fn load<T>(rel: &str, cases: &[T]) -> Vec<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let path = spec_path(rel);
    if bless() {
        let text = serde_json::to_string_pretty(cases).expect("vectors serialize") + "\n";
        tds_core::fs::write_atomic(&path, text.as_bytes(), 0o644, true).expect("write vectors");
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let raw: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut names = BTreeSet::new();
    for obj in &raw {
        let name = obj.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        assert!(
            names.insert(name.to_owned()),
            "{rel}: duplicate name {name}"
        );
    }
    let read: Vec<T> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(
        read, cases,
        "{rel} is not what the generator makes; rerun with TDS_SPEC_BLESS=1"
    );
    read
}

#[test]
fn decision_vectors() {
    let cases: Vec<DecisionCase> =
        load("vectors/policy/decisions.json", &decision_cases().unwrap());
    assert!(cases.len() >= 20);
    for case in &cases {
        run_decision(case).unwrap();
    }
    // Every decision reason code appears in some case.
    let seen: BTreeSet<&str> = cases
        .iter()
        .flat_map(|c| c.codes.iter().map(String::as_str))
        .collect();
    for code in tds_policy::ReasonCode::ALL {
        assert!(seen.contains(code.as_str()), "no vector shows {code}");
    }
}

#[test]
fn containment_vectors() {
    let cases: Vec<ContainmentCase> = load(
        "vectors/policy/containment.json",
        &containment_cases().unwrap(),
    );
    assert!(cases.iter().any(|c| c.contained == Some(true)));
    assert!(cases.iter().any(|c| c.contained == Some(false)));
    assert!(cases.iter().any(|c| c.error.is_some()));
    for case in &cases {
        run_containment(case).unwrap();
    }
}

#[test]
fn the_schema_refuses_unknown_fields() {
    let mut case = serde_json::to_value(&decision_cases().unwrap()[0]).unwrap();
    case["colour"] = "red".into();
    assert!(serde_json::from_value::<DecisionCase>(case)
        .unwrap_err()
        .to_string()
        .contains("unknown field `colour`"));
    let mut case = serde_json::to_value(&containment_cases().unwrap()[0]).unwrap();
    case["contained "] = true.into();
    assert!(serde_json::from_value::<ContainmentCase>(case)
        .unwrap_err()
        .to_string()
        .contains("unknown field"));
}
