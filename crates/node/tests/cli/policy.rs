//! Policy and contract verbs.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::util;

fn tds(dir: &Path, args: &[&str]) -> Output {
    util::run(dir, args)
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    util::succeeded(util::run(dir, args), args)
}

fn json(out: &Output) -> Value {
    util::json_of(out)
}

fn fail(dir: &Path, args: &[&str]) -> String {
    let out = tds(dir, args);
    assert!(!out.status.success(), "tds {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const OFFER: &str = "policy offer\n  target \"urn:asset:load\"\n  conflict prohibit;\n\npermit use\n  when purpose isA grid\n    and count lteq 100\n  duty attribute(\"SGCC\");\n\nprohibit distribute;\n";

#[test]
fn check_fmt_export_and_templates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.txt"), "permit use   when purpose isA grid and count lteq 100 duty attribute(\"SGCC\"); prohibit distribute;").unwrap();
    let v = json(&ok(d, &["policy", "check", "p.txt"]));
    assert_eq!(v["valid"], true);
    assert_eq!(v["format"], "text");
    let f = ok(d, &["policy", "fmt", "p.txt"]);
    let text = String::from_utf8(f.stdout).unwrap();
    assert!(text.starts_with("policy set\n  conflict prohibit;\n\npermit use\n  when purpose isA grid\n    and count lteq 100\n"), "{text}");
    // ODRL export, and the export read back (told apart by content, not name).
    let e = ok(d, &["policy", "export", "p.txt", "--odrl"]);
    let odrl = json(&e);
    assert_eq!(odrl["permission"][0]["action"], "use");
    std::fs::write(d.join("p.policy"), &e.stdout).unwrap();
    let v = json(&ok(d, &["policy", "check", "p.policy"]));
    assert_eq!(v["format"], "odrl");
    let f2 = ok(d, &["policy", "fmt", "p.policy"]);
    assert_eq!(String::from_utf8(f2.stdout).unwrap(), text);
    // Every template checks clean.
    for s in [
        "power",
        "transport",
        "weather",
        "finance",
        "healthcare",
        "licence",
    ] {
        let t = ok(d, &["policy", "template", s]);
        std::fs::write(d.join(format!("{s}.tdsp")), &t.stdout).unwrap();
        let out = ok(d, &["policy", "check", &format!("{s}.tdsp")]);
        assert!(
            out.stderr.is_empty(),
            "{s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(fail(d, &["policy", "template", "mining"]).contains("unknown template"));
}

#[test]
fn check_reports_position_and_lint_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.tdsp"), "permit use\n  when purpose isA Grid;\n").unwrap();
    let e = fail(d, &["policy", "check", "bad.tdsp"]);
    assert!(e.starts_with("error: bad.tdsp:2:20: "), "{e}");
    std::fs::write(d.join("lint.tdsp"), "permit use when count lt 1;").unwrap();
    let out = ok(d, &["policy", "check", "lint.tdsp"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lint.tdsp: warning: rule 1: constraint `count lt 1` can never hold"),
        "{err}"
    );
    std::fs::write(
        d.join("o.json"),
        r#"{"@type": "Offer", "permission": {"action": "odrl:read"}}"#,
    )
    .unwrap();
    let out = ok(d, &["policy", "check", "o.json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("offer has no assigner"));
    std::fs::write(
        d.join("u.json"),
        r#"{"@type": "Set", "permission": {"action": "fly"}}"#,
    )
    .unwrap();
    assert!(fail(d, &["policy", "check", "u.json"]).contains("unknown action \"fly\""));
}

#[test]
fn eval_prints_decision_duties_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("offer.tdsp"), OFFER).unwrap();
    let req = |uses: u64| {
        format!(
            r#"{{"action": "use", "purpose": "grid/planning", "time": "2027-03-01T00:00:00Z",
         "recipient": {{"id": "sha256:{}", "sector": "power", "roles": ["consumer"], "jurisdiction": "CN-SX"}},
         "location": "CN-SX", "uses": {uses}, "volume": 0}}"#,
            "ab".repeat(32)
        )
    };
    std::fs::write(d.join("r99.json"), req(99)).unwrap();
    std::fs::write(d.join("r100.json"), req(100)).unwrap();
    let v = json(&ok(
        d,
        &["policy", "eval", "offer.tdsp", "--request", "r99.json"],
    ));
    assert_eq!(v["decision"], "permit");
    assert_eq!(v["duties"], serde_json::json!(["attribute(\"SGCC\")"]));
    let v = json(&ok(
        d,
        &["policy", "eval", "offer.tdsp", "--request", "r100.json"],
    ));
    assert_eq!(v["decision"], "deny");
    let reasons = v["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r
            .as_str()
            .unwrap()
            .contains("count must be at most 100, actual: use number 101 (100 so far)")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r
        .as_str()
        .unwrap()
        .starts_with("prohibition 2 (distribute)")));
    std::fs::write(d.join("x.json"), r#"{"action": "use", "colour": "red"}"#).unwrap();
    assert!(
        fail(d, &["policy", "eval", "offer.tdsp", "--request", "x.json"])
            .contains("unknown key \"colour\"")
    );
}

#[test]
fn contains_answers_with_a_counterexample() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("offer.tdsp"), OFFER).unwrap();
    std::fs::write(
        d.join("narrow.tdsp"),
        "permit read when purpose isA grid/planning and count lteq 10;",
    )
    .unwrap();
    std::fs::write(d.join("wide.tdsp"), "permit use when purpose isA grid;").unwrap();
    let v = json(&ok(d, &["policy", "contains", "offer.tdsp", "narrow.tdsp"]));
    assert_eq!(
        v,
        serde_json::json!({"contained": true, "counterexample": null})
    );
    let v = json(&ok(d, &["policy", "contains", "offer.tdsp", "wide.tdsp"]));
    assert_eq!(v["contained"], false);
    assert_eq!(v["counterexample"]["action"], "use");
}

#[test]
fn offline_contract_flow() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("offer.tdsp"), OFFER).unwrap();
    std::fs::write(d.join("wide.tdsp"), "permit use;").unwrap();
    ok(d, &["key", "new", "--out", "p.key"]);
    ok(d, &["key", "new", "--out", "c.key"]);
    ok(d, &["key", "new", "--out", "x.key"]);
    let o = json(&ok(
        d,
        &[
            "offer",
            "create",
            "--key",
            "p.key",
            "--asset",
            "urn:asset:load",
            "--policy",
            "offer.tdsp",
            "--price",
            "12.50",
            "--currency",
            "CNY",
            "--out",
            "offer.cose",
        ],
    ));
    assert!(o["offer_id"].as_str().unwrap().starts_with("sha256:"));
    let e = fail(
        d,
        &[
            "contract",
            "request",
            "offer.cose",
            "--key",
            "c.key",
            "--purpose",
            "grid/planning",
            "--policy",
            "wide.tdsp",
            "--out",
            "bad.cose",
        ],
    );
    assert!(e.contains("not contained"), "{e}");
    ok(
        d,
        &[
            "contract",
            "request",
            "offer.cose",
            "--key",
            "c.key",
            "--purpose",
            "grid/planning",
            "--out",
            "req.cose",
        ],
    );
    // The wrong provider key cannot accept.
    fail(
        d,
        &[
            "contract",
            "accept",
            "req.cose",
            "--offer",
            "offer.cose",
            "--key",
            "x.key",
            "--out",
            "half.cose",
        ],
    );
    ok(
        d,
        &[
            "contract",
            "accept",
            "req.cose",
            "--offer",
            "offer.cose",
            "--key",
            "p.key",
            "--out",
            "half.cose",
        ],
    );
    // Half-signed terms are not an agreement.
    fail(d, &["agreement", "verify", "half.cose"]);
    // A stranger cannot countersign.
    fail(
        d,
        &[
            "contract",
            "countersign",
            "half.cose",
            "--key",
            "x.key",
            "--out",
            "agr.cose",
        ],
    );
    let c = json(&ok(
        d,
        &[
            "contract",
            "countersign",
            "half.cose",
            "--key",
            "c.key",
            "--out",
            "agr.cose",
        ],
    ));
    let v = json(&ok(d, &["agreement", "verify", "agr.cose"]));
    assert_eq!(v["agreement_id"], c["agreement_id"]);
    assert_eq!(v["provider"], o["provider"]);
    assert_eq!(v["terms"]["purpose"], "grid/planning");
    assert_eq!(v["terms"]["price"]["amount"], "12.5");
    assert_eq!(v["terms"]["offer_id"], o["offer_id"]);
    // Tampering breaks it.
    let mut bytes = std::fs::read(d.join("agr.cose")).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    std::fs::write(d.join("bad-agr.cose"), bytes).unwrap();
    fail(d, &["agreement", "verify", "bad-agr.cose"]);
}
