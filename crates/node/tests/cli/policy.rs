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

/// A directory with an authority (`auth/`), provider, consumer and stranger keys, the
/// consumer's membership credential (`c.cred`, roles consumer) and a signed offer.
struct Market {
    dir: tempfile::TempDir,
    authority_key: String,
    provider: Value,
    consumer: Value,
    stranger: Value,
    offer: Value,
}

impl Market {
    fn new() -> Market {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("offer.tdsp"), OFFER).unwrap();
        let auth = json(&ok(
            d,
            &[
                "authority",
                "init",
                "--home",
                "auth",
                "--name",
                "Test Space",
            ],
        ));
        let provider = json(&ok(d, &["key", "new", "--out", "p.key"]));
        let consumer = json(&ok(d, &["key", "new", "--out", "c.key"]));
        let stranger = json(&ok(d, &["key", "new", "--out", "x.key"]));
        for (who, key, roles) in [
            ("c.cred", &consumer, "consumer"),
            ("x.cred", &stranger, "provider"),
        ] {
            ok(
                d,
                &[
                    "authority",
                    "admit",
                    "--home",
                    "auth",
                    "--subject-key",
                    key["public_key_hex"].as_str().unwrap(),
                    "--name",
                    "Member",
                    "--sector",
                    "power",
                    "--role",
                    roles,
                    "--jurisdiction",
                    "CN-SX",
                    "--days",
                    "30",
                    "--out",
                    who,
                ],
            );
        }
        let offer = json(&ok(
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
        Market {
            authority_key: auth["public_key_hex"].as_str().unwrap().to_owned(),
            dir,
            provider,
            consumer,
            stranger,
            offer,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn accept_args<'a>(&'a self, request: &'a str, key: &'a str, cred: &'a str) -> Vec<&'a str> {
        vec![
            "contract",
            "accept",
            request,
            "--offer",
            "offer.cose",
            "--key",
            key,
            "--credential",
            cred,
            "--authority-key",
            &self.authority_key,
            "--out",
            "half.cose",
        ]
    }

    /// Runs `args` expecting failure; returns its one `error: ` line.
    fn error_line(&self, args: &[&str]) -> String {
        util::one_error_line(tds(self.path(), args), args)
    }

    /// A contract request for the offer signed with the library, as a consumer who skips
    /// the CLI's own checks would make it.
    fn raw_request(&self, out: &str, policy: &str, purpose: &str) {
        use tds_policy::contract;
        let d = self.path();
        let key = tds_core::SigningKey::read_file(&d.join("c.key")).unwrap();
        let offer = contract::verify_offer(&std::fs::read(d.join("offer.cose")).unwrap()).unwrap();
        let bytes = contract::create_request(
            &key,
            &contract::ContractRequest {
                offer: offer.id(),
                consumer: key.id(),
                consumer_key: key.public_key(),
                policy: tds_policy::parse("p", policy).unwrap(),
                purpose: purpose.parse().unwrap(),
                nonce: serde_bytes::ByteArray::new([9; 16]),
                time: tds_core::Timestamp::now(),
            },
        )
        .unwrap();
        std::fs::write(d.join(out), bytes).unwrap();
    }
}

#[test]
fn offline_contract_flow() {
    let m = Market::new();
    let d = m.path();
    std::fs::write(d.join("wide.tdsp"), "permit use;").unwrap();
    assert!(m.offer["offer_id"].as_str().unwrap().starts_with("sha256:"));
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
    let r = json(&ok(
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
    ));
    // The wrong provider key cannot accept.
    let e = m.error_line(&m.accept_args("req.cose", "x.key", "c.cred"));
    assert_eq!(
        e,
        format!(
            "error: x.key: offer: signed by key {}, but the offer names {}",
            m.stranger["id"].as_str().unwrap(),
            m.provider["id"].as_str().unwrap()
        )
    );
    let half = json(&ok(d, &m.accept_args("req.cose", "p.key", "c.cred")));
    assert_eq!(half["revocation_checked"], false);
    assert_eq!(half["consumer"], m.consumer["id"]);
    // Half-signed terms are not an agreement.
    assert!(fail(d, &["agreement", "verify", "half.cose"]).contains("expected 2 signers, found 1"));
    // A stranger cannot countersign.
    let e = m.error_line(&[
        "contract",
        "countersign",
        "half.cose",
        "--key",
        "x.key",
        "--out",
        "agr.cose",
    ]);
    assert_eq!(
        e,
        format!(
            "error: half.cose: agreement: signed by key {}, but the agreement names {}",
            m.stranger["id"].as_str().unwrap(),
            m.consumer["id"].as_str().unwrap()
        )
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
    // The library gave the ids the CLI printed: accept's is the agreement's.
    assert_eq!(c["agreement_id"], half["agreement_id"]);
    let v = json(&ok(d, &["agreement", "verify", "agr.cose"]));
    assert_eq!(v["agreement_id"], c["agreement_id"]);
    assert_eq!(v["provider"], m.offer["provider"]);
    assert_eq!(v["terms"]["purpose"], "grid/planning");
    assert_eq!(v["terms"]["price"]["amount"], "12.5");
    assert_eq!(v["terms"]["offer_id"], m.offer["offer_id"]);
    assert_eq!(v["terms"]["request_id"], r["request_id"]);
    // Tampering breaks it.
    let mut bytes = std::fs::read(d.join("agr.cose")).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    std::fs::write(d.join("bad-agr.cose"), bytes).unwrap();
    assert_eq!(
        m.error_line(&["agreement", "verify", "bad-agr.cose"]),
        "error: bad-agr.cose: cose: signature does not verify"
    );
}

#[test]
fn contract_errors_are_one_line_naming_file_and_reason() {
    let m = Market::new();
    let d = m.path();
    // Offer: a policy file the offer cannot carry.
    std::fs::write(
        d.join("dup.json"),
        r#"{"@type": "Offer", "permission": [{"action": "use", "action": "distribute"}]}"#,
    )
    .unwrap();
    assert_eq!(
        m.error_line(&[
            "offer",
            "create",
            "--key",
            "p.key",
            "--asset",
            "urn:asset:load",
            "--policy",
            "dup.json",
            "--out",
            "o2.cose",
        ]),
        "error: dup.json: odrl: key \"action\" given twice"
    );
    // Request: not contained in the offer, refused by the provider with a counterexample.
    m.raw_request("wide.cose", "permit use;", "grid/planning");
    assert_eq!(
        m.error_line(&m.accept_args("wide.cose", "p.key", "c.cred")),
        r#"error: wide.cose: request: the requested policy is not contained in the offer; for example this request would be permitted: {"action":"use"}"#
    );
    // Request: wider than its declared purpose.
    m.raw_request(
        "purpose.cose",
        "permit use when purpose isA grid and count lteq 10;",
        "grid/planning",
    );
    assert_eq!(
        m.error_line(&m.accept_args("purpose.cose", "p.key", "c.cred")),
        r#"error: purpose.cose: request: the requested policy permits uses beyond the declared purpose grid/planning; for example: {"action":"use","purpose":"grid","uses":0}"#
    );
    // Request: the credential is someone else's.
    m.raw_request(
        "ok.cose",
        "permit use when purpose isA grid/planning and count lteq 10;",
        "grid/planning",
    );
    assert_eq!(
        m.error_line(&m.accept_args("ok.cose", "p.key", "x.cred")),
        format!(
            "error: ok.cose: request: the credential is for {}, but the request is from {}",
            m.stranger["id"].as_str().unwrap(),
            m.consumer["id"].as_str().unwrap()
        )
    );
    // Agreement: half-signed terms.
    ok(d, &m.accept_args("ok.cose", "p.key", "c.cred"));
    assert_eq!(
        m.error_line(&["agreement", "verify", "half.cose"]),
        "error: half.cose: cose: signers: expected 2 signers, found 1"
    );
}

#[test]
fn red_team_8_accept_needs_the_consumers_credential() {
    let m = Market::new();
    let d = m.path();
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
    // The credential and the authority key are required flags.
    let out = tds(
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
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--credential"), "{err}");
    assert!(err.contains("--authority-key"), "{err}");
    // A member without the consumer role is refused before any containment work.
    let x = json(&ok(
        d,
        &[
            "authority",
            "admit",
            "--home",
            "auth",
            "--subject-key",
            m.consumer["public_key_hex"].as_str().unwrap(),
            "--name",
            "Provider only",
            "--sector",
            "power",
            "--role",
            "provider",
            "--jurisdiction",
            "CN",
            "--days",
            "30",
            "--out",
            "p-only.cred",
        ],
    ));
    assert!(x["id"].as_str().is_some());
    assert_eq!(
        m.error_line(&m.accept_args("req.cose", "p.key", "p-only.cred")),
        format!(
            "error: req.cose: request: the credential of {} does not hold the consumer role",
            m.consumer["id"].as_str().unwrap()
        )
    );
    // With the authority's revocation list, revocation is checked.
    ok(
        d,
        &["authority", "crl", "--home", "auth", "--out", "crl.cose"],
    );
    let mut args = m.accept_args("req.cose", "p.key", "c.cred");
    args.extend(["--crl", "crl.cose"]);
    let v = json(&ok(d, &args));
    assert_eq!(v["revocation_checked"], true);
}

#[test]
fn red_team_11_odrl_duplicate_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("dup.json"),
        r#"{"@type": "Set", "permission": [{"action": "use", "action": "distribute"}]}"#,
    )
    .unwrap();
    let line = util::one_error_line(
        tds(d, &["policy", "check", "dup.json"]),
        &["policy", "check", "dup.json"],
    );
    assert_eq!(line, "error: dup.json: odrl: key \"action\" given twice");
    // Requests too.
    std::fs::write(d.join("p.tdsp"), "permit use;").unwrap();
    std::fs::write(d.join("r.json"), r#"{"action": "use", "action": "sell"}"#).unwrap();
    let args = ["policy", "eval", "p.tdsp", "--request", "r.json"];
    assert_eq!(
        util::one_error_line(tds(d, &args), &args),
        "error: r.json: request: key \"action\" given twice"
    );
}
