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
    ip.verify(&cp.checkpoint().root).unwrap();
    // A proof verifies only against the root the caller trusts, not the one it carries.
    assert!(matches!(
        ip.verify(&tds_core::Hash256::from_bytes([7; 32])),
        Err(tds_provenance::proof::ProofError::UntrustedRoot { .. })
    ));

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
    let cproof = tds_provenance::ConsistencyProof::from_json(c.as_bytes()).unwrap();
    cproof.verify(&cproof.root1, &cproof.root2).unwrap();

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
/// `tds authority init` in `auth`; returns the authority's public key hex.
fn init_authority(auth: &Path) -> String {
    let v = json(&ok(&[
        "authority",
        "init",
        "--home",
        p(auth),
        "--name",
        "Space authority",
    ]));
    v["public_key_hex"].as_str().unwrap().to_owned()
}

/// The authority in `auth` admits the owner of the log key of node home `node`; returns
/// the credential's path.
fn admit_node(auth: &Path, node: &Path) -> std::path::PathBuf {
    let key = tds_core::SigningKey::read_file(&node.join("node.key"))
        .unwrap()
        .public_key()
        .to_hex();
    let cred = node.with_extension("cred");
    ok(&[
        "authority",
        "admit",
        "--home",
        p(auth),
        "--subject-key",
        &key,
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
    cred
}

/// `tds witness cosign` with `extra` arguments.
fn cosign_args<'a>(
    auth: &'a str,
    vkey: &'a str,
    cred: &'a str,
    cp: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "witness",
        "cosign",
        "--home",
        auth,
        "--log-key",
        vkey,
        "--credential",
        cred,
        cp,
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn concurrent_cosigns_keep_every_log() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    let a = p(&auth).to_owned();
    init_authority(&auth);
    let n = 6;
    let mut jobs = Vec::new();
    for i in 0..n {
        let node = dir.path().join(format!("node{i}"));
        let h = p(&node);
        ok(&["log", "annotate", "--home", h, "--text", "hello"]);
        let vkey = ok(&["log", "key", "--home", h]).trim().to_owned();
        let cp = dir.path().join(format!("cp{i}"));
        std::fs::write(&cp, ok(&["log", "checkpoint", "--home", h])).unwrap();
        let cred = admit_node(&auth, &node);
        jobs.push((vkey, cp, cred));
    }
    let children: Vec<_> = jobs
        .iter()
        .map(|(vkey, cp, cred)| {
            Command::new(util::bin())
                .args(cosign_args(&a, vkey, p(cred), p(cp), &[]))
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
    init_authority(&auth);
    let node = dir.path().join("node");
    let n = p(&node);
    ok(&["log", "annotate", "--home", n, "--text", "one"]);
    let cred = admit_node(&auth, &node);
    let c = p(&cred);
    let vkey = ok(&["log", "key", "--home", n]).trim().to_owned();
    let cp1 = dir.path().join("cp1");
    std::fs::write(&cp1, ok(&["log", "checkpoint", "--home", n])).unwrap();
    let out = ok(&cosign_args(a, &vkey, c, p(&cp1), &[]));
    assert!(out.contains("\u{2014} tds.witness/"), "{out}");

    // Fork: a copy of the node home that diverges from here on.
    let fork = dir.path().join("fork");
    std::fs::create_dir_all(fork.join("log")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for d in [&fork, &fork.join("log")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
    }
    std::fs::copy(node.join("node.key"), fork.join("node.key")).unwrap();
    for f in std::fs::read_dir(node.join("log")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), fork.join("log").join(f.file_name())).unwrap();
    }

    ok(&["log", "annotate", "--home", n, "--text", "two"]);
    let cp2 = dir.path().join("cp2");
    std::fs::write(&cp2, ok(&["log", "checkpoint", "--home", n])).unwrap();
    let err = fail(&cosign_args(a, &vkey, c, p(&cp2), &[]));
    assert!(err.contains("consistency proof"), "{err}");
    let proof = dir.path().join("proof.json");
    std::fs::write(
        &proof,
        ok(&["log", "consistency", "--home", n, "--from", "1"]),
    )
    .unwrap();
    ok(&cosign_args(
        a,
        &vkey,
        c,
        p(&cp2),
        &["--consistency", p(&proof)],
    ));

    let f = p(&fork);
    ok(&["log", "annotate", "--home", f, "--text", "rewritten"]);
    // The fork at the size already cosigned: the log signed two roots at one size, a split
    // view, refused and raised as an alert in the authority's own log.
    let forked = dir.path().join("forked");
    std::fs::write(&forked, ok(&["log", "checkpoint", "--home", f])).unwrap();
    let err = fail(&cosign_args(a, &vkey, c, p(&forked), &[]));
    assert!(err.contains("a forked log"), "{err}");
    assert!(err.contains("alert: logged checkpoint_refused"), "{err}");
    let shown = ok(&["log", "show", "--home", a]);
    assert!(shown.contains("checkpoint_refused"), "{shown}");
    assert!(shown.contains("witness.forked"), "{shown}");

    // Further along, with a proof from the fork's own history: refused, but not alerted
    // (anyone can send a bad proof; only the log's own signatures prove a fork).
    ok(&["log", "annotate", "--home", f, "--text", "three"]);
    let cp3 = dir.path().join("cp3");
    std::fs::write(&cp3, ok(&["log", "checkpoint", "--home", f])).unwrap();
    let proof3 = dir.path().join("proof3.json");
    std::fs::write(
        &proof3,
        ok(&["log", "consistency", "--home", f, "--from", "2"]),
    )
    .unwrap();
    let err = fail(&cosign_args(
        a,
        &vkey,
        c,
        p(&cp3),
        &["--consistency", p(&proof3)],
    ));
    assert!(err.contains("witness refuses checkpoint"), "{err}");
    assert!(!err.contains("alert:"), "{err}");
    let shown = ok(&["log", "show", "--home", a]);
    assert_eq!(shown.matches("checkpoint_refused").count(), 1, "{shown}");
}

/// Red-team finding 2: anyone could present a checkpoint under another participant's log
/// name (`tds.log/<their id>`) with a key of its own; the witness remembered it first,
/// then refused the real log for good and wrote an alert blaming it. A log's name is bound
/// to its key now, checked on every cosign and verify.
#[test]
fn red_team_2_log_names_are_bound_to_keys() {
    use tds_core::SigningKey;

    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    let a = p(&auth);
    init_authority(&auth);
    let node = dir.path().join("node");
    ok(&["log", "annotate", "--home", p(&node), "--text", "one"]);
    let real_vkey = ok(&["log", "key", "--home", p(&node)]).trim().to_owned();
    let origin = real_vkey.split('+').next().unwrap().to_owned();

    // The squatter: a member too, with a key of its own, naming its log after the node's.
    let squatter = dir.path().join("squatter");
    ok(&["log", "annotate", "--home", p(&squatter), "--text", "x"]);
    let squatter_cred = admit_node(&auth, &squatter);
    let skey = SigningKey::read_file(&squatter.join("node.key")).unwrap();
    let forged_vkey = VerifierKey::new(&origin, note::TYPE_ED25519, skey.public_key()).unwrap();
    let cp = tds_provenance::Checkpoint {
        origin: origin.clone(),
        size: 1,
        root: tds_core::Hash256::from_bytes([1; 32]),
        extensions: Vec::new(),
    };
    let text = cp.to_text();
    let forged = note::Note {
        signatures: vec![note::sign(&text, &origin, &skey).unwrap()],
        text,
    };
    let forged_cp = dir.path().join("forged");
    std::fs::write(&forged_cp, forged.to_text()).unwrap();
    let err = fail(&cosign_args(
        a,
        &forged_vkey.to_string(),
        p(&squatter_cred),
        p(&forged_cp),
        &[],
    ));
    assert!(
        err.contains("a TDS log key is named after its key"),
        "{err}"
    );
    assert!(!auth.join("witness.json").exists());

    // The real log is cosigned as if nothing had happened.
    let cred = admit_node(&auth, &node);
    let cp1 = dir.path().join("cp1");
    std::fs::write(&cp1, ok(&["log", "checkpoint", "--home", p(&node)])).unwrap();
    ok(&cosign_args(a, &real_vkey, p(&cred), p(&cp1), &[]));
}

/// Red-team finding 1 (witness side): the witness cosigned the first checkpoint of any log
/// on first use. It refuses a log whose key holds no valid membership credential now.
#[test]
fn red_team_1_the_witness_refuses_logs_of_non_members() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    let a = p(&auth);
    init_authority(&auth);
    let member = dir.path().join("member");
    ok(&["log", "annotate", "--home", p(&member), "--text", "m"]);
    let member_cred = admit_node(&auth, &member);
    let outsider = dir.path().join("outsider");
    ok(&["log", "annotate", "--home", p(&outsider), "--text", "o"]);
    let vkey = ok(&["log", "key", "--home", p(&outsider)])
        .trim()
        .to_owned();
    let cp = dir.path().join("cp");
    std::fs::write(&cp, ok(&["log", "checkpoint", "--home", p(&outsider)])).unwrap();
    // Someone else's credential does not make the outsider a member.
    let err = fail(&cosign_args(a, &vkey, p(&member_cred), p(&cp), &[]));
    assert!(
        err.contains("witness: the credential is for key") && err.contains("not for the log key"),
        "{err}"
    );
    // Neither does a revoked one.
    let cred = admit_node(&auth, &outsider);
    ok(&["authority", "revoke", "--home", a, "--serial", "2"]);
    let err = fail(&cosign_args(a, &vkey, p(&cred), p(&cp), &[]));
    assert!(
        err.contains("witness: the log key holds no valid membership credential")
            && err.contains("revoked"),
        "{err}"
    );
    assert!(!auth.join("witness.json").exists());
}

/// Makes a real two-party agreement with the offline contract verbs; returns its bytes
/// and id. The provider's key is `dir/provider.key`.
fn real_agreement(dir: &Path) -> (Vec<u8>, tds_core::Hash256) {
    let f = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    std::fs::write(
        dir.join("offer.tdsp"),
        "policy set;\n\npermit use\n  when purpose isA grid;\n",
    )
    .unwrap();
    ok(&["key", "new", "--out", &f("provider.key")]);
    let consumer: serde_json::Value =
        serde_json::from_str(&ok(&["key", "new", "--out", &f("consumer.key")])).unwrap();
    // The provider accepts requests from members with the consumer role only.
    let space: serde_json::Value = serde_json::from_str(&ok(&[
        "authority",
        "init",
        "--home",
        &f("space"),
        "--name",
        "Contract Space",
    ]))
    .unwrap();
    ok(&[
        "authority",
        "admit",
        "--home",
        &f("space"),
        "--subject-key",
        consumer["public_key_hex"].as_str().unwrap(),
        "--name",
        "Consumer",
        "--sector",
        "power",
        "--role",
        "consumer",
        "--jurisdiction",
        "CN",
        "--days",
        "30",
        "--out",
        &f("consumer.cred"),
    ]);
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
        "--credential",
        &f("consumer.cred"),
        "--authority-key",
        space["public_key_hex"].as_str().unwrap(),
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

/// The provider's node home `dir/node` (its log key is the provider's key), holding one
/// `agreement_concluded` event that embeds `bytes` under `id` with the parties the terms
/// name (appended directly, so a forgery can be logged), checkpointed and cosigned by a
/// fresh authority that admitted the node; returns the bundle path and the authority key.
fn bundle_with_embedded(
    dir: &Path,
    bytes: Vec<u8>,
    id: tds_core::Hash256,
) -> (std::path::PathBuf, String) {
    use tds_core::SigningKey;
    use tds_policy::contract::AgreementTerms;
    use tds_provenance::event::{Code, Event, EventBody, SignedObject};
    use tds_provenance::store::{FileStore, OpenOptions};

    let node = dir.join("node");
    std::fs::create_dir(&node).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::copy(dir.join("provider.key"), node.join("node.key")).unwrap();
    ok(&["log", "annotate", "--home", p(&node), "--text", "start"]);
    {
        let key = SigningKey::read_file(&node.join("node.key")).unwrap();
        let actor = key.id();
        let terms = tds_core::cose::open_multi::<AgreementTerms>(&bytes)
            .unwrap()
            .value()
            .clone();
        let store = FileStore::open(
            Arc::new(tds_provenance::DirStorage::new(&node.join("log"))),
            OpenOptions::writer(),
        )
        .unwrap();
        let log = tds_provenance::Log::new(store, key);
        let body = EventBody::AgreementConcluded {
            agreement: id,
            negotiation: terms.request,
            provider: terms.provider,
            consumer: terms.consumer,
            object: Some(SignedObject {
                kind: Code::new("agreement").unwrap(),
                id,
                bytes,
            }),
        };
        log.append(&Event::new(
            tds_core::Timestamp::from_millis(1_700_000_000_000),
            actor,
            body,
        ))
        .unwrap();
    }
    let auth = dir.join("auth");
    let auth_key = init_authority(&auth);
    let cred = admit_node(&auth, &node);
    let vkey = ok(&["log", "key", "--home", p(&node)]).trim().to_owned();
    let cp = dir.join("cp");
    std::fs::write(&cp, ok(&["log", "checkpoint", "--home", p(&node)])).unwrap();
    let cosigned = dir.join("cosigned");
    std::fs::write(
        &cosigned,
        ok(&cosign_args(p(&auth), &vkey, p(&cred), p(&cp), &[])),
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
        "--credential",
        p(&cred),
    ]);
    (bundle, auth_key)
}

#[test]
fn evidence_export_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, id) = real_agreement(dir.path());
    let (bundle, auth_key) = bundle_with_embedded(dir.path(), bytes, id);
    let v = json(&ok(&[
        "evidence",
        "verify",
        p(&bundle),
        "--authority-key",
        &auth_key,
    ]));
    assert_eq!(v["ok"], true);
    assert_eq!(v["log_key_credential"], true);
    assert_eq!(v["revocation_checked"], false);
    assert_eq!(v["events"][0]["kind"], "agreement_concluded");
    assert_eq!(v["objects"][0]["kind"], "agreement");
    assert_eq!(v["objects"][0]["id"], id.to_string());
    assert_eq!(
        v["objects"][0]["check"],
        "signatures of both parties verified"
    );

    // With the authority's revocation list, revocation is checked.
    let crl = dir.path().join("crl.cose");
    ok(&[
        "authority",
        "crl",
        "--home",
        p(&dir.path().join("auth")),
        "--out",
        p(&crl),
    ]);
    let v = json(&ok(&[
        "evidence",
        "verify",
        p(&bundle),
        "--authority-key",
        &auth_key,
        "--crl",
        p(&crl),
    ]));
    assert_eq!(v["revocation_checked"], true);
    // A revoked log owner: the evidence no longer verifies.
    ok(&[
        "authority",
        "revoke",
        "--home",
        p(&dir.path().join("auth")),
        "--serial",
        "1",
    ]);
    ok(&[
        "--force",
        "authority",
        "crl",
        "--home",
        p(&dir.path().join("auth")),
        "--out",
        p(&crl),
    ]);
    let err = fail(&[
        "evidence",
        "verify",
        p(&bundle),
        "--authority-key",
        &auth_key,
        "--crl",
        p(&crl),
    ]);
    assert!(
        err.contains("credentials[0]") && err.contains("revoked"),
        "{err}"
    );

    // Not cosigned: refused.
    let node = dir.path().join("node");
    let bad = dir.path().join("bad.cbor");
    ok(&[
        "evidence",
        "export",
        "--home",
        p(&node),
        "--agreement",
        &id.to_string(),
        "--out",
        p(&bad),
        "--checkpoint",
        p(&dir.path().join("cp")),
        "--credential",
        p(&node.with_extension("cred")),
    ]);
    let err = fail(&["evidence", "verify", p(&bad), "--authority-key", &auth_key]);
    assert!(err.contains("cosigned"), "{err}");
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

/// Red-team finding 1: a non-member signed a one-event log with a made-up
/// `agreement_concluded` between two real participants, a witness cosigned its first
/// checkpoint on first use, and `tds evidence verify` said `"ok": true`. Now the log key
/// must hold a valid credential, and the event must embed the real agreement of exactly
/// the parties it names.
#[test]
fn red_team_1_forged_evidence_is_refused() {
    use tds_core::SigningKey;
    use tds_provenance::event::{Event, EventBody};
    use tds_provenance::evidence::{Bundle, BundleEvent, BUNDLE_VERSION};
    use tds_provenance::store::MemoryStore;

    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    let auth_key = init_authority(&auth);
    let authority = SigningKey::read_file(&auth.join("authority.key")).unwrap();
    // Two real participants, one admitted.
    let real = dir.path().join("real");
    ok(&["log", "annotate", "--home", p(&real), "--text", "r"]);
    let real_cred = admit_node(&auth, &real);
    let real_id = SigningKey::read_file(&real.join("node.key")).unwrap().id();

    // The forger's log: one made-up agreement_concluded, no embedded agreement.
    let forger = SigningKey::from_seed(&[0x66; 32]);
    let log = tds_provenance::Log::new(MemoryStore::new(), forger);
    let agreement = tds_core::Hash256::from_bytes([0xaa; 32]);
    let event = Event::new(
        tds_core::Timestamp::from_millis(1_700_000_000_000),
        log.signer().key_id(),
        EventBody::AgreementConcluded {
            agreement,
            negotiation: tds_core::Hash256::from_bytes([1; 32]),
            provider: real_id,
            consumer: tds_core::Hash256::from_bytes([2; 32]),
            object: None,
        },
    );
    log.append(&event).unwrap();
    let note_text = log.checkpoint().unwrap();
    // A witness of old cosigned it on first use.
    let mut n = note::Note::parse(note_text.as_bytes()).unwrap();
    let name = tds_provenance::witness::witness_name(&authority.public_key());
    n.signatures
        .push(note::cosign(&n.text, &name, &authority, tds_core::Timestamp::now()).unwrap());
    let bundle = Bundle {
        v: BUNDLE_VERSION,
        agreement,
        log_key: log.verifier_key().unwrap().to_string(),
        checkpoint: n.to_text(),
        events: vec![BundleEvent {
            index: 0,
            event: event.encode().unwrap(),
            proof: Vec::new(),
        }],
        credentials: vec![serde_bytes::ByteBuf::from(
            std::fs::read(&real_cred).unwrap(),
        )],
    };
    let path = dir.path().join("forged.cbor");
    std::fs::write(&path, bundle.encode().unwrap()).unwrap();
    let err = fail(&["evidence", "verify", p(&path), "--authority-key", &auth_key]);
    assert!(
        err.contains("credentials: none is for the log's key"),
        "{err}"
    );
}

#[test]
fn log_witnessed_checks_the_cosignature_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node");
    let auth = dir.path().join("auth");
    let other = dir.path().join("other");
    ok(&["log", "annotate", "--home", p(&node), "--text", "one"]);
    let auth_key = init_authority(&auth);
    let other_key = init_authority(&other);
    let cred = admit_node(&auth, &node);
    let vkey = ok(&["log", "key", "--home", p(&node)]).trim().to_owned();
    let cp = dir.path().join("cp");
    std::fs::write(&cp, ok(&["log", "checkpoint", "--home", p(&node)])).unwrap();
    let cosigned = dir.path().join("cosigned");
    std::fs::write(
        &cosigned,
        ok(&cosign_args(p(&auth), &vkey, p(&cred), p(&cp), &[])),
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
    let v = json(&ok(&[
        "log",
        "witnessed",
        "--home",
        p(&node),
        "--authority-key",
        &auth_key,
        p(&cosigned),
    ]));
    assert_eq!(v["event"], "checkpoint_witnessed");
    assert_eq!(v["size"], 1);
    assert!(node.join("witnessed").join("1.txt").exists());
    let shown = ok(&["log", "show", "--home", p(&node)]);
    assert!(shown.contains("checkpoint_witnessed"), "{shown}");

    // `log verify` checks the kept cosigned checkpoints too (red-team finding 12).
    let v = json(&ok(&[
        "log",
        "verify",
        "--home",
        p(&node),
        "--authority-key",
        &auth_key,
    ]));
    assert_eq!(v["cosigned_checkpoints"], 1);
    assert_eq!(v["cosignatures_checked"], true);
    let err = fail(&[
        "log",
        "verify",
        "--home",
        p(&node),
        "--authority-key",
        &other_key,
    ]);
    assert!(
        err.contains("witnessed") && err.contains("not cosigned"),
        "{err}"
    );
    // A kept checkpoint that is not this log's root is found.
    std::fs::write(
        node.join("witnessed").join("1.txt"),
        std::fs::read(dir.path().join("cp")).unwrap(),
    )
    .unwrap();
    ok(&["log", "annotate", "--home", p(&node), "--text", "two"]);
    let other_cp = ok(&["log", "checkpoint", "--home", p(&node)]);
    std::fs::write(node.join("witnessed").join("1.txt"), other_cp).unwrap();
    let err = fail(&["log", "verify", "--home", p(&node)]);
    assert!(err.contains("1.txt"), "{err}");
}
