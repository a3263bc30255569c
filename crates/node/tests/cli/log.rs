//! `tds log ...`, `tds witness ...` and `tds evidence ...` end to end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tds_provenance::note::{self, VerifierKey};
use tds_provenance::InclusionProof;

use crate::util::{self, p};

fn tds(args: &[&str]) -> Output {
    util::run_here(args)
}

fn ok(args: &[&str]) -> String {
    String::from_utf8(util::succeeded(tds(args), args).stdout).unwrap()
}

fn fail(args: &[&str]) -> String {
    let o = tds(args);
    assert!(!o.status.success(), "{args:?} should fail");
    String::from_utf8(o.stderr).unwrap()
}

#[test]
fn log_verbs_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    let h = p(&home);
    for i in 0..5 {
        let out = ok(&[
            "log",
            "annotate",
            "--home",
            h,
            "--text",
            &format!("note {i}"),
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["index"], i);
    }
    let note_text = ok(&["log", "checkpoint", "--home", h]);
    let vkey = ok(&["log", "key", "--home", h]);
    let vk = VerifierKey::parse(vkey.trim()).unwrap();
    let cp = note::verify_checkpoint(note_text.as_bytes(), &vk).unwrap();
    assert_eq!(cp.checkpoint().size, 5);
    assert!(note_text.contains("\n\n\u{2014} "));

    let shown = ok(&["log", "show", "--home", h, "--from", "1", "--limit", "2"]);
    let lines: Vec<serde_json::Value> = shown
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["index"], 1);
    assert_eq!(lines[0]["kind"], "annotation");
    assert_eq!(lines[1]["body"]["text"], "note 2");

    let proof = ok(&["log", "prove", "--home", h, "--index", "3"]);
    let keys: Vec<String> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&proof)
            .unwrap()
            .keys()
            .cloned()
            .collect();
    for k in ["index", "tree_size", "leaf_hash", "root", "proof"] {
        assert!(keys.contains(&k.to_string()), "{k} in {proof}");
    }
    let ip = InclusionProof::from_json(proof.as_bytes()).unwrap();
    assert_eq!(ip.tree_size, 5);
    assert_eq!(ip.root, cp.checkpoint().root);
    ip.verify().unwrap();

    ok(&["log", "annotate", "--home", h, "--text", "later"]);
    let c = ok(&[
        "log",
        "consistency",
        "--home",
        h,
        "--from",
        "3",
        "--to",
        "6",
    ]);
    let v: serde_json::Value = serde_json::from_str(&c).unwrap();
    assert_eq!(v["size1"], 3);
    assert_eq!(v["size2"], 6);
    tds_provenance::ConsistencyProof::from_json(c.as_bytes())
        .unwrap()
        .verify()
        .unwrap();

    let v: serde_json::Value = serde_json::from_str(&ok(&["log", "verify", "--home", h])).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["tree_size"], 6);
}

#[test]
fn reading_verbs_refuse_a_missing_home() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("none");
    for verb in ["show", "verify", "key"] {
        let err = fail(&["log", verb, "--home", p(&h)]);
        assert!(err.contains("no log here"), "{err}");
    }
    assert!(!h.exists(), "a reading verb must not create the home");
    let err = fail(&["log", "prove", "--home", p(&h), "--index", "0"]);
    assert!(err.contains("no log here"), "{err}");
}

#[test]
fn annotation_bounds_and_missing_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("n");
    let err = fail(&[
        "log",
        "annotate",
        "--home",
        p(&h),
        "--text",
        &"x".repeat(281),
    ]);
    assert!(err.contains("text"), "{err}");
    ok(&["log", "annotate", "--home", p(&h), "--text", "ok"]);
    let err = fail(&["log", "prove", "--home", p(&h), "--index", "0"]);
    assert!(err.contains("no checkpoint"), "{err}");
    ok(&[
        "log",
        "prove",
        "--home",
        p(&h),
        "--index",
        "0",
        "--size",
        "1",
    ]);
}

#[test]
fn tampered_event_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("n");
    for i in 0..3 {
        ok(&[
            "log",
            "annotate",
            "--home",
            p(&h),
            "--text",
            &format!("t{i}"),
        ]);
    }
    ok(&["log", "checkpoint", "--home", p(&h)]);
    let events = h.join("log/events");
    let mut b = std::fs::read(&events).unwrap();
    b[4096 + 40] ^= 0x04;
    std::fs::write(&events, &b).unwrap();
    let err = fail(&["log", "verify", "--home", p(&h)]);
    assert!(err.contains("events") && err.contains("record 0"), "{err}");
}

#[test]
fn bench_prints_acks_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("n");
    for (mode, writers) in [(None, "tasks"), (Some("--threads"), "threads")] {
        let mut args = vec![
            "log",
            "bench",
            "--home",
            p(&h),
            "--count",
            "300",
            "--concurrency",
            "8",
            "--report-acks",
        ];
        args.extend(mode);
        let out = ok(&args);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.iter().any(|l| l.starts_with("acked ")));
        let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
        assert_eq!(last["appends"], 300);
        assert!(last["seconds"].is_number() && last["appends_per_sec"].is_number());
        assert_eq!(last["writers"], writers);
        assert_eq!(last["concurrency"], 8);
    }
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["log", "verify", "--home", p(&h)])).unwrap();
    assert_eq!(v["tree_size"], 600);
}

fn kills() -> u64 {
    match std::env::var("TDS_TEST_SCALE").as_deref() {
        Ok("full") => 200,
        _ => 10,
    }
}

/// SIGKILL a writer at random moments; every acknowledged append must survive and the log
/// must verify.
#[test]
fn sigkill_keeps_every_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for k in 0..kills() {
        // A fresh home every 10 kills keeps verification time bounded.
        let home = dir.path().join(format!("n{}", k / 10));
        let h = p(&home).to_owned();
        if !home.exists() {
            // The log exists before the first kill, so every kill can be checked.
            ok(&["log", "annotate", "--home", &h, "--text", "crash test"]);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_tds"))
            .args([
                "log",
                "bench",
                "--home",
                &h,
                "--count",
                "100000000",
                "--concurrency",
                "8",
                "--report-acks",
            ])
            // Writers alternate between async tasks and blocked threads.
            .args((k % 2 == 1).then_some("--threads"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let acked = Arc::new(AtomicU64::new(0));
        let stdout = child.stdout.take().unwrap();
        let a = acked.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("acked ") {
                    a.fetch_max(n.parse().unwrap(), Ordering::SeqCst);
                }
            }
        });
        std::thread::sleep(Duration::from_millis(30 + rnd() % 300));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acked = acked.load(Ordering::SeqCst);
        let out = tds(&["log", "verify", "--home", &h]);
        assert!(
            out.status.success(),
            "kill {k}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let size = v["tree_size"].as_u64().unwrap();
        assert!(size >= acked, "kill {k}: size {size} < acked {acked}");
        if acked > 0 {
            let last = ok(&[
                "log",
                "show",
                "--home",
                &h,
                "--from",
                &(acked - 1).to_string(),
                "--limit",
                "1",
            ]);
            assert!(last.contains("\"kind\":\"annotation\""), "{last}");
        }
    }
}

/// Concurrent cosigns on one authority home wait for each other: none loses another's
/// update of `witness.json`.
#[test]
fn concurrent_cosigns_keep_every_log() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    let a = p(&auth).to_owned();
    ok(&[
        "authority",
        "init",
        "--home",
        &a,
        "--name",
        "Space authority",
    ]);
    let n = 6;
    let mut jobs = Vec::new();
    for i in 0..n {
        let node = dir.path().join(format!("node{i}"));
        let h = p(&node);
        ok(&["log", "annotate", "--home", h, "--text", "hello"]);
        let vkey = ok(&["log", "key", "--home", h]).trim().to_owned();
        let cp = dir.path().join(format!("cp{i}"));
        std::fs::write(&cp, ok(&["log", "checkpoint", "--home", h])).unwrap();
        jobs.push((vkey, cp));
    }
    let children: Vec<_> = jobs
        .iter()
        .map(|(vkey, cp)| {
            Command::new(env!("CARGO_BIN_EXE_tds"))
                .args(["witness", "cosign", "--home", &a, "--log-key", vkey, p(cp)])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(auth.join("witness.json")).unwrap()).unwrap();
    assert_eq!(state["logs"].as_object().unwrap().len(), n, "{state}");
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn witness_tofu_consistency_and_fork() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    let a = p(&auth);
    ok(&[
        "authority",
        "init",
        "--home",
        a,
        "--name",
        "Space authority",
    ]);
    let node = dir.path().join("node");
    let n = p(&node);
    ok(&["log", "annotate", "--home", n, "--text", "one"]);
    let vkey = ok(&["log", "key", "--home", n]).trim().to_owned();
    let cp1 = dir.path().join("cp1");
    std::fs::write(&cp1, ok(&["log", "checkpoint", "--home", n])).unwrap();
    let out = ok(&[
        "witness",
        "cosign",
        "--home",
        a,
        "--log-key",
        &vkey,
        p(&cp1),
    ]);
    assert!(out.contains("\u{2014} tds.witness/"), "{out}");

    // Fork: a copy of the node home that diverges from here on.
    let fork = dir.path().join("fork");
    std::fs::create_dir_all(fork.join("log")).unwrap();
    std::fs::copy(node.join("node.key"), fork.join("node.key")).unwrap();
    for f in std::fs::read_dir(node.join("log")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), fork.join("log").join(f.file_name())).unwrap();
    }

    ok(&["log", "annotate", "--home", n, "--text", "two"]);
    let cp2 = dir.path().join("cp2");
    std::fs::write(&cp2, ok(&["log", "checkpoint", "--home", n])).unwrap();
    let err = fail(&[
        "witness",
        "cosign",
        "--home",
        a,
        "--log-key",
        &vkey,
        p(&cp2),
    ]);
    assert!(err.contains("consistency proof"), "{err}");
    let proof = dir.path().join("proof.json");
    std::fs::write(
        &proof,
        ok(&["log", "consistency", "--home", n, "--from", "1"]),
    )
    .unwrap();
    ok(&[
        "witness",
        "cosign",
        "--home",
        a,
        "--log-key",
        &vkey,
        p(&cp2),
        "--consistency",
        p(&proof),
    ]);

    let f = p(&fork);
    ok(&["log", "annotate", "--home", f, "--text", "rewritten"]);
    ok(&["log", "annotate", "--home", f, "--text", "three"]);
    let cp3 = dir.path().join("cp3");
    std::fs::write(&cp3, ok(&["log", "checkpoint", "--home", f])).unwrap();
    let proof3 = dir.path().join("proof3.json");
    std::fs::write(
        &proof3,
        ok(&["log", "consistency", "--home", f, "--from", "2"]),
    )
    .unwrap();
    let err = fail(&[
        "witness",
        "cosign",
        "--home",
        a,
        "--log-key",
        &vkey,
        p(&cp3),
        "--consistency",
        p(&proof3),
    ]);
    assert!(err.contains("refused"), "{err}");
    // The refusal raised an alert in the authority's own log.
    let shown = ok(&["log", "show", "--home", a]);
    assert!(shown.contains("checkpoint_refused"), "{shown}");
}

#[test]
fn evidence_export_and_verify() {
    use std::sync::Arc;
    use tds_core::SigningKey;
    use tds_provenance::event::{Event, EventBody};
    use tds_provenance::store::{FileStore, OpenOptions};

    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node");
    let n = p(&node);
    ok(&["log", "annotate", "--home", n, "--text", "start"]);
    let agreement = tds_core::Hash256::from_bytes([7; 32]);
    {
        let key = SigningKey::read_file(&node.join("node.key")).unwrap();
        let actor = key.id();
        let store = FileStore::open(
            Arc::new(tds_provenance::DirStorage::new(&node.join("log"))),
            OpenOptions::writer(),
        )
        .unwrap();
        let log = tds_provenance::Log::new(store, key);
        for body in [
            EventBody::AgreementConcluded {
                agreement,
                negotiation: tds_core::Hash256::from_bytes([1; 32]),
                provider: actor,
                consumer: tds_core::Hash256::from_bytes([2; 32]),
                object: None,
            },
            EventBody::AgreementExpired { agreement },
        ] {
            log.append(&Event::new(1_700_000_000_000, actor, body))
                .unwrap();
        }
    }
    let auth = dir.path().join("auth");
    let a = p(&auth);
    let shown = json(&ok(&[
        "authority",
        "init",
        "--home",
        a,
        "--name",
        "Space authority",
    ]));
    let auth_key = shown["public_key_hex"].as_str().unwrap().to_owned();
    let node_key = SigningKey::read_file(&node.join("node.key"))
        .unwrap()
        .public_key()
        .to_hex();
    let cred = dir.path().join("node.cred");
    ok(&[
        "authority",
        "admit",
        "--home",
        a,
        "--subject-key",
        &node_key,
        "--name",
        "Grid operator",
        "--sector",
        "power",
        "--role",
        "provider",
        "--jurisdiction",
        "CN",
        "--days",
        "30",
        "--out",
        p(&cred),
    ]);
    let vkey = ok(&["log", "key", "--home", n]).trim().to_owned();
    let cp = dir.path().join("cp");
    std::fs::write(&cp, ok(&["log", "checkpoint", "--home", n])).unwrap();
    let cosigned = dir.path().join("cosigned");
    std::fs::write(
        &cosigned,
        ok(&["witness", "cosign", "--home", a, "--log-key", &vkey, p(&cp)]),
    )
    .unwrap();
    let bundle = dir.path().join("bundle.cbor");
    let out = json(&ok(&[
        "evidence",
        "export",
        "--home",
        n,
        "--agreement",
        &agreement.to_string(),
        "--out",
        p(&bundle),
        "--checkpoint",
        p(&cosigned),
        "--credential",
        p(&cred),
    ]));
    assert_eq!(out["events"], 2);
    let v = json(&ok(&[
        "evidence",
        "verify",
        p(&bundle),
        "--authority-key",
        &auth_key,
    ]));
    assert_eq!(v["ok"], true);
    assert_eq!(v["log_key_credential"], true);
    assert_eq!(v["events"][0]["kind"], "agreement_concluded");

    // Not cosigned: refused.
    let bad = dir.path().join("bad.cbor");
    ok(&[
        "evidence",
        "export",
        "--home",
        n,
        "--agreement",
        &agreement.to_string(),
        "--out",
        p(&bad),
    ]);
    let err = fail(&["evidence", "verify", p(&bad), "--authority-key", &auth_key]);
    assert!(err.contains("cosigned"), "{err}");
}

/// Makes a real two-party agreement with the offline contract verbs; returns its bytes
/// and id.
fn real_agreement(dir: &Path) -> (Vec<u8>, tds_core::Hash256) {
    let f = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    std::fs::write(
        dir.join("offer.tdsp"),
        "policy set;\n\npermit use\n  when purpose isA grid;\n",
    )
    .unwrap();
    ok(&["key", "new", "--out", &f("provider.key")]);
    ok(&["key", "new", "--out", &f("consumer.key")]);
    ok(&[
        "offer",
        "create",
        "--key",
        &f("provider.key"),
        "--asset",
        "urn:asset:load",
        "--policy",
        &f("offer.tdsp"),
        "--out",
        &f("offer.cose"),
    ]);
    ok(&[
        "contract",
        "request",
        &f("offer.cose"),
        "--key",
        &f("consumer.key"),
        "--purpose",
        "grid/planning",
        "--out",
        &f("request.cose"),
    ]);
    ok(&[
        "contract",
        "accept",
        &f("request.cose"),
        "--offer",
        &f("offer.cose"),
        "--key",
        &f("provider.key"),
        "--out",
        &f("half.cose"),
    ]);
    ok(&[
        "contract",
        "countersign",
        &f("half.cose"),
        "--key",
        &f("consumer.key"),
        "--out",
        &f("agreement.cose"),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["agreement", "verify", &f("agreement.cose")])).unwrap();
    let id: tds_core::Hash256 = v["agreement_id"].as_str().unwrap().parse().unwrap();
    (std::fs::read(dir.join("agreement.cose")).unwrap(), id)
}

/// A node log holding one `agreement_concluded` event that embeds `bytes` under `id`,
/// checkpointed and cosigned by a fresh authority; returns the bundle path and the
/// authority key.
fn bundle_with_embedded(
    dir: &Path,
    bytes: Vec<u8>,
    id: tds_core::Hash256,
) -> (std::path::PathBuf, String) {
    use tds_core::SigningKey;
    use tds_provenance::event::{Code, Event, EventBody, SignedObject};
    use tds_provenance::store::{FileStore, OpenOptions};

    let node = dir.join("node");
    ok(&["log", "annotate", "--home", p(&node), "--text", "start"]);
    {
        let key = SigningKey::read_file(&node.join("node.key")).unwrap();
        let actor = key.id();
        let store = FileStore::open(
            Arc::new(tds_provenance::DirStorage::new(&node.join("log"))),
            OpenOptions::writer(),
        )
        .unwrap();
        let log = tds_provenance::Log::new(store, key);
        let body = EventBody::AgreementConcluded {
            agreement: id,
            negotiation: tds_core::Hash256::from_bytes([1; 32]),
            provider: actor,
            consumer: tds_core::Hash256::from_bytes([2; 32]),
            object: Some(SignedObject {
                kind: Code::new("agreement").unwrap(),
                id,
                bytes,
            }),
        };
        log.append(&Event::new(1_700_000_000_000, actor, body))
            .unwrap();
    }
    let auth = dir.join("auth");
    let shown: serde_json::Value = serde_json::from_str(&ok(&[
        "authority",
        "init",
        "--home",
        p(&auth),
        "--name",
        "Space authority",
    ]))
    .unwrap();
    let vkey = ok(&["log", "key", "--home", p(&node)]).trim().to_owned();
    let cp = dir.join("cp");
    std::fs::write(&cp, ok(&["log", "checkpoint", "--home", p(&node)])).unwrap();
    let cosigned = dir.join("cosigned");
    std::fs::write(
        &cosigned,
        ok(&[
            "witness",
            "cosign",
            "--home",
            p(&auth),
            "--log-key",
            &vkey,
            p(&cp),
        ]),
    )
    .unwrap();
    let bundle = dir.join("bundle.cbor");
    ok(&[
        "evidence",
        "export",
        "--home",
        p(&node),
        "--agreement",
        &id.to_string(),
        "--out",
        p(&bundle),
        "--checkpoint",
        p(&cosigned),
    ]);
    (bundle, shown["public_key_hex"].as_str().unwrap().to_owned())
}

#[test]
fn evidence_verify_checks_the_embedded_agreement_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, id) = real_agreement(dir.path());
    let (bundle, auth_key) = bundle_with_embedded(dir.path(), bytes, id);
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "evidence",
        "verify",
        p(&bundle),
        "--authority-key",
        &auth_key,
    ]))
    .unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["objects"][0]["kind"], "agreement");
    assert_eq!(v["objects"][0]["id"], id.to_string());
    assert_eq!(
        v["objects"][0]["check"],
        "signatures of both parties verified"
    );
}

#[test]
fn evidence_verify_refuses_a_logged_agreement_with_a_broken_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, id) = real_agreement(dir.path());
    // The last byte belongs to the consumer's signature: the log faithfully holds a
    // forgery, and the bundle's proofs are all valid, but the arbiter must still refuse.
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let (bundle, auth_key) = bundle_with_embedded(dir.path(), bytes, id);
    let err = fail(&[
        "evidence",
        "verify",
        p(&bundle),
        "--authority-key",
        &auth_key,
    ]);
    assert!(err.contains("embedded agreement"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn log_witnessed_checks_the_cosignature_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node");
    let auth = dir.path().join("auth");
    let other = dir.path().join("other");
    ok(&["log", "annotate", "--home", p(&node), "--text", "one"]);
    let key_of = |home: &Path| -> String {
        let v: serde_json::Value = serde_json::from_str(&ok(&[
            "authority",
            "init",
            "--home",
            p(home),
            "--name",
            "Space authority",
        ]))
        .unwrap();
        v["public_key_hex"].as_str().unwrap().to_owned()
    };
    let auth_key = key_of(&auth);
    let other_key = key_of(&other);
    let vkey = ok(&["log", "key", "--home", p(&node)]).trim().to_owned();
    let cp = dir.path().join("cp");
    std::fs::write(&cp, ok(&["log", "checkpoint", "--home", p(&node)])).unwrap();
    let cosigned = dir.path().join("cosigned");
    std::fs::write(
        &cosigned,
        ok(&[
            "witness",
            "cosign",
            "--home",
            p(&auth),
            "--log-key",
            &vkey,
            p(&cp),
        ]),
    )
    .unwrap();
    // Another authority's key: no valid cosignature by it.
    let err = fail(&[
        "log",
        "witnessed",
        "--home",
        p(&node),
        "--authority-key",
        &other_key,
        p(&cosigned),
    ]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cosigned"), "{err}");
    // The uncosigned checkpoint is refused too.
    fail(&[
        "log",
        "witnessed",
        "--home",
        p(&node),
        "--authority-key",
        &auth_key,
        p(&cp),
    ]);
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "log",
        "witnessed",
        "--home",
        p(&node),
        "--authority-key",
        &auth_key,
        p(&cosigned),
    ]))
    .unwrap();
    assert_eq!(v["event"], "checkpoint_witnessed");
    assert_eq!(v["size"], 1);
    assert!(node.join("witnessed").join("1.txt").exists());
    let shown = ok(&["log", "show", "--home", p(&node)]);
    assert!(shown.contains("checkpoint_witnessed"), "{shown}");
}
