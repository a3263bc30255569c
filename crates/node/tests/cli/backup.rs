//! `tds backup` / `tds restore` of stopped and running nodes, refused archives, and the
//! verbs that need a home going through the running node's or authority's admin API.

use std::path::Path;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::node::{admitted_by, admitted_node, ok, serve, serve_authority};
use crate::util::*;

/// The JSON lines `tds log show` prints.
fn log_lines(home: &Path) -> Vec<Value> {
    let args = ["log", "show", "--home", p(home)];
    let out = succeeded(run_here(&args), &args);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn count_kind(lines: &[Value], kind: &str) -> usize {
    lines.iter().filter(|l| l["kind"] == kind).count()
}

fn asset_add(home: &Path, file: &Path, policy: &Path, title: &str) -> Value {
    ok(&[
        "asset",
        "add",
        "--home",
        p(home),
        p(file),
        "--title",
        title,
        "--classification",
        "general",
        "--policy",
        p(policy),
    ])
}

#[test]
fn backups_of_a_running_and_a_stopped_node_restore_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let grid = admitted_node(dir.path(), "grid");
    let bank = admitted_by(dir.path(), "bank", "finance");
    let policy = dir.path().join("research.tdsp");
    std::fs::write(
        &policy,
        "policy set;\n\npermit use\n  when purpose isA research;\n",
    )
    .unwrap();
    let files: Vec<_> = (0..24u32)
        .map(|i| {
            let f = dir.path().join(format!("load-{i}.csv"));
            std::fs::write(&f, format!("feeder,load\n{i},{}\n", i * 7).repeat(200)).unwrap();
            f
        })
        .collect();
    let (mut node, _) = serve(&grid);
    let first = asset_add(&grid, &files[0], &policy, "Load 0");

    // Assets are published through the running node while it is backed up.
    let acked = Arc::new(AtomicUsize::new(1));
    let adder = {
        let (grid, policy, files, acked) =
            (grid.clone(), policy.clone(), files.clone(), acked.clone());
        std::thread::spawn(move || {
            for (i, f) in files.iter().enumerate().skip(1) {
                asset_add(&grid, f, &policy, &format!("Load {i}"));
                acked.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "no asset was added");
        std::thread::sleep(Duration::from_millis(5));
    }
    let assets_before = acked.load(Ordering::SeqCst);
    let size_before = ok(&["status", "--home", p(&grid)])["log_size"]
        .as_u64()
        .unwrap();
    let archive = dir.path().join("running.tar");
    let b = ok(&["backup", "--home", p(&grid), "--out", p(&archive)]);
    let assets_after = acked.load(Ordering::SeqCst);
    adder.join().unwrap();
    assert_eq!(b["running"], true, "{b}");
    assert_eq!(b["format"], "tds-backup 1");
    let log_size = b["log_size"].as_u64().unwrap();
    assert!(log_size >= size_before, "{b}: below {size_before}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&archive).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the archive is readable by others: {mode:o}"
        );
    }
    // The admin token is the running process's, never archived.
    let listing =
        String::from_utf8(std::fs::read(&archive).unwrap()[..4096].to_vec()).unwrap_or_default();
    assert!(!listing.contains("admin.token"), "{listing}");

    let restored = dir.path().join("restored");
    let r = ok(&["restore", "--home", p(&restored), p(&archive)]);
    assert_eq!(r["log_size"], log_size, "{r}");
    assert!(!restored.join("admin.json").exists());
    assert!(!restored.join("admin.token").exists());
    let s = ok(&["status", "--home", p(&restored)]);
    assert_eq!(s["running"], false);
    assert_eq!(s["log_size"], log_size, "{s}");
    assert_eq!(s["id"], ok(&["status", "--home", p(&grid)])["id"]);
    let v = ok(&["log", "verify", "--home", p(&restored)]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["tree_size"], log_size, "{v}");
    // Store and log agree: every asset and offer stored is logged, and the reverse; at
    // least the assets acknowledged before the backup began are there.
    let lines = log_lines(&restored);
    let listed = ok(&["asset", "list", "--home", p(&restored)]);
    let assets = listed["assets"].as_array().unwrap();
    assert!(assets.len() >= assets_before, "{listed}");
    eprintln!(
        "note: {} assets in the backup; {assets_before} acknowledged before it began, {assets_after} when it ended",
        assets.len()
    );
    assert_eq!(
        count_kind(&lines, "asset_published"),
        assets.len(),
        "{listed}"
    );
    let offers: usize = assets
        .iter()
        .map(|a| a["offers"].as_array().unwrap().len())
        .sum();
    assert_eq!(count_kind(&lines, "offer_published"), offers);
    assert!(
        assets.iter().any(|a| a["asset"] == first["asset"]),
        "{listed}"
    );

    // A negotiation, then the node stops and is backed up from its home.
    let provider_addr = ok(&["status", "--home", p(&grid)])["listen"]
        .as_str()
        .unwrap()
        .to_owned();
    let agreed = ok(&[
        "negotiate",
        "--home",
        p(&bank),
        "--peer",
        &provider_addr,
        "--offer",
        first["offer_id"].as_str().unwrap(),
        "--purpose",
        "research",
    ]);
    stop(&mut node);
    let original = ok(&["status", "--home", p(&grid)]);
    let archive = dir.path().join("stopped.tar");
    let b = ok(&["backup", "--home", p(&grid), "--out", p(&archive)]);
    assert_eq!(b["running"], false, "{b}");
    assert_eq!(b["log_size"], original["log_size"], "{b}");
    // An existing archive is replaced only with --force.
    let args = ["backup", "--home", p(&grid), "--out", p(&archive)];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("--force"), "{line}");
    ok(&[
        "backup",
        "--home",
        p(&grid),
        "--out",
        p(&archive),
        "--force",
    ]);

    // Restored into an empty directory: the same agreements, transfers and log.
    let again = dir.path().join("again");
    std::fs::create_dir(&again).unwrap();
    ok(&["restore", "--home", p(&again), p(&archive)]);
    let s = ok(&["status", "--home", p(&again)]);
    for key in ["id", "agreements", "transfers", "log_size", "name"] {
        assert_eq!(s[key], original[key], "{key}: {s} vs {original}");
    }
    assert_eq!(s["agreements"], 1, "{s}");
    let held = ok(&["agreements", "--home", p(&again)]);
    assert_eq!(
        held["agreements"][0]["agreement_id"], agreed["agreement_id"],
        "{held}"
    );
    let v = ok(&["log", "verify", "--home", p(&again)]);
    assert_eq!(v["tree_size"], original["log_size"], "{v}");
    // The restored node serves (its own trees, its own store and log).
    let (mut restored_node, _) = serve(&again);
    let s = ok(&["status", "--home", p(&again)]);
    assert_eq!(s["running"], true);
    stop(&mut restored_node);
}

/// A home with a log, for the refusal tests (no credential needed to back it up).
fn small_home(dir: &Path) -> std::path::PathBuf {
    let home = dir.join("node");
    ok(&[
        "init",
        "--home",
        p(&home),
        "--name",
        "n",
        "--sector",
        "power",
    ]);
    ok(&[
        "log",
        "annotate",
        "--home",
        p(&home),
        "--text",
        "before the backup",
    ]);
    home
}

/// Asserts that restoring `archive` into `dir/target` fails with one line and leaves
/// nothing behind; returns the line.
fn refused(dir: &Path, archive: &Path) -> String {
    let target = dir.join("target");
    let args = ["restore", "--home", p(&target), p(archive)];
    let line = one_error_line(run_here(&args), &args);
    assert!(!target.exists(), "{line}: the target was created");
    assert!(!dir.join("evil").exists(), "{line}: a file escaped");
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.starts_with(".tds-restore-"), "{line}: left {name}");
    }
    line
}

#[test]
fn restore_refuses_damaged_or_unsafe_archives_and_full_targets_writing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = small_home(dir.path());
    let archive = dir.path().join("node.tar");
    let b = ok(&["backup", "--home", p(&home), "--out", p(&archive)]);
    assert_eq!(b["log_size"], 1, "{b}");
    let bytes = std::fs::read(&archive).unwrap();

    // A byte flipped inside a file (config.toml's text).
    let at = bytes
        .windows(6)
        .position(|w| w == b"[node]")
        .expect("config.toml in the archive");
    let mut flipped = bytes.clone();
    flipped[at + 1] ^= 0x20;
    let bad = dir.path().join("flipped.tar");
    std::fs::write(&bad, &flipped).unwrap();
    let line = refused(dir.path(), &bad);
    assert!(
        line.contains("config.toml") && line.contains("SHA-256"),
        "{line}"
    );

    // A byte flipped in an entry's header (the second entry's name).
    let manifest_len: usize = {
        let text = &bytes[124..136];
        let octal = std::str::from_utf8(text)
            .unwrap()
            .trim_matches(char::from(0))
            .trim();
        usize::from_str_radix(octal, 8).unwrap()
    };
    let second = 512 + manifest_len.div_ceil(512) * 512;
    let mut flipped = bytes.clone();
    flipped[second] ^= 0x01;
    std::fs::write(&bad, &flipped).unwrap();
    let line = refused(dir.path(), &bad);
    assert!(line.contains("archive"), "{line}");

    // Cut short.
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    refused(dir.path(), &bad);

    // Not an archive at all.
    std::fs::write(&bad, b"hello").unwrap();
    let line = refused(dir.path(), &bad);
    assert!(
        line.contains("not a tds backup") || line.contains("archive"),
        "{line}"
    );

    // A `../` path, listed with its true digest, and one entry the manifest does not list.
    let evil = b"escaped\n";
    for listed in [true, false] {
        let unsafe_archive = with_entry(&bytes, "../evil", evil, listed);
        std::fs::write(&bad, &unsafe_archive).unwrap();
        let line = refused(dir.path(), &bad);
        assert!(
            line.contains("../evil") || line.contains("unsafe"),
            "{line}"
        );
    }

    // A target that is not empty.
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), b"mine").unwrap();
    let args = ["restore", "--home", p(&full), p(&archive)];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("not empty"), "{line}");
    assert_eq!(std::fs::read(full.join("keep.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);

    // The untouched archive restores; its log holds the annotation.
    let target = dir.path().join("target");
    let r = ok(&["restore", "--home", p(&target), p(&archive)]);
    assert_eq!(r["log_size"], 1, "{r}");
    let lines = log_lines(&target);
    assert_eq!(lines[0]["body"]["text"], "before the backup", "{lines:?}");
}

/// `archive` with one more file `name` at its end; `listed`: also in the manifest (with
/// its true size and SHA-256).
fn with_entry(archive: &[u8], name: &str, data: &[u8], listed: bool) -> Vec<u8> {
    let mut input = tar::Archive::new(archive);
    let mut out = tar::Builder::new(Vec::new());
    for (i, entry) in input.entries().unwrap().enumerate() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut body).unwrap();
        if i == 0 && listed {
            let mut m: Value = serde_json::from_slice(&body).unwrap();
            let digest = ring::digest::digest(&ring::digest::SHA256, data);
            m["files"].as_array_mut().unwrap().push(serde_json::json!({
                "path": name,
                "size": data.len(),
                "sha256": hex::encode(digest.as_ref()),
            }));
            body = serde_json::to_vec(&m).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        out.append_data(&mut h, &path, body.as_slice()).unwrap();
    }
    // The name written raw: tar-rs itself refuses to write `..`.
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    out.append(&h, data).unwrap();
    out.into_inner().unwrap()
}

#[test]
fn log_verbs_on_a_node_home_go_through_the_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let grid = admitted_node(dir.path(), "grid");
    let (mut node, _) = serve(&grid);
    // A writer through the admin API (the node holds the log's lock).
    let a = ok(&[
        "log",
        "annotate",
        "--home",
        p(&grid),
        "--text",
        "maintenance window",
    ]);
    let index = a["index"].as_u64().unwrap();
    assert_eq!(a["tree_size"].as_u64().unwrap(), index + 1, "{a}");
    for key in ["index", "leaf_hash", "tree_size"] {
        assert!(a.get(key).is_some(), "no {key}: {a}");
    }
    let args = ["log", "checkpoint", "--home", p(&grid)];
    let note = String::from_utf8(succeeded(run_here(&args), &args).stdout).unwrap();
    assert!(
        note.lines().nth(1) == Some(&(index + 1).to_string()),
        "{note}"
    );
    // Readers read the node's log (data/log) directly, also while it runs.
    let v = ok(&["log", "verify", "--home", p(&grid)]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["tree_size"], index + 1, "{v}");
    assert_eq!(v["checkpoints"], 1, "{v}");
    let lines = log_lines(&grid);
    assert_eq!(lines[index as usize]["body"]["text"], "maintenance window");
    // The bench cannot share the node's log.
    let args = ["log", "bench", "--home", p(&grid), "--count", "1"];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("the node is running"), "{line}");
    // A node's data directory is not a log home (a writer would make a key there).
    let data = grid.join("data");
    let args = ["log", "annotate", "--home", p(&data), "--text", "x"];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("data directory"), "{line}");
    assert!(!data.join("node.key").exists());
    stop(&mut node);
    // Stopped: the same verb writes the node's own log, never a second one.
    let a = ok(&[
        "log",
        "annotate",
        "--home",
        p(&grid),
        "--text",
        "after the stop",
    ]);
    assert_eq!(a["index"], index + 1, "{a}");
    assert!(!grid.join("log").exists(), "a second log in the node home");
    let s = ok(&["status", "--home", p(&grid)]);
    assert_eq!(s["log_size"], index + 2, "{s}");
}

#[test]
fn authority_verbs_go_through_the_running_authority() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("authority");
    ok(&["authority", "init", "--home", p(&auth), "--name", "Space"]);
    let offline = ok(&["authority", "show", "--home", p(&auth)]);
    let (mut authority, _) = serve_authority(&auth, &[]);
    let shown = ok(&["authority", "show", "--home", p(&auth)]);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&shown), keys(&offline));
    assert_eq!(shown["id"], offline["id"]);
    assert_eq!(shown["next_serial"], offline["next_serial"]);

    let key = ok(&["key", "new", "--out", p(&dir.path().join("member.key"))]);
    let cred = dir.path().join("member.cred");
    let admitted = ok(&[
        "authority",
        "admit",
        "--home",
        p(&auth),
        "--subject-key",
        key["public_key_hex"].as_str().unwrap(),
        "--name",
        "member",
        "--sector",
        "power",
        "--role",
        "consumer",
        "--jurisdiction",
        "CN",
        "--days",
        "30",
        "--out",
        p(&cred),
    ]);
    let serial = admitted["serial"].as_u64().unwrap();
    assert_eq!(serial, offline["next_serial"].as_u64().unwrap());
    assert_eq!(admitted["file"], p(&cred));
    let inspected = ok(&["inspect", p(&cred)]);
    assert_eq!(inspected["kind"], "credential", "{inspected}");

    let revoked = ok(&[
        "authority",
        "revoke",
        "--home",
        p(&auth),
        "--serial",
        &serial.to_string(),
    ]);
    assert_eq!(revoked["already_revoked"], false, "{revoked}");
    assert_eq!(revoked["revoked_serials"], serde_json::json!([serial]));
    let again = ok(&[
        "authority",
        "revoke",
        "--home",
        p(&auth),
        "--serial",
        &serial.to_string(),
    ]);
    assert_eq!(again["already_revoked"], true, "{again}");
    let crl = dir.path().join("crl.cose");
    let list = ok(&[
        "authority",
        "crl",
        "--home",
        p(&auth),
        "--days",
        "3",
        "--out",
        p(&crl),
    ]);
    assert_eq!(list["serials"], serde_json::json!([serial]), "{list}");
    assert_eq!(list["issuer"], offline["id"]);
    // The credential verifies against the key, and is refused with the list.
    let args = [
        "credential",
        "verify",
        p(&cred),
        "--authority-key",
        offline["public_key_hex"].as_str().unwrap(),
        "--crl",
        p(&crl),
    ];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("revoked"), "{line}");

    let shown = ok(&["authority", "show", "--home", p(&auth)]);
    assert_eq!(shown["next_serial"], serial + 1, "{shown}");
    assert_eq!(shown["revoked_serials"], serde_json::json!([serial]));
    stop(&mut authority);
    // What the service did is the home's state.
    let after = ok(&["authority", "show", "--home", p(&auth)]);
    assert_eq!(after, shown);
}
