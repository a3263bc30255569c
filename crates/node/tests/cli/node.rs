//! The node verbs of issue 12 across real processes: `tds init`, `tds credential
//! install`, `tds serve` (admin API, metrics, SIGTERM), `tds status` from the running
//! node and from its home.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// An authority home and a node home with an installed credential, in `dir`.
pub(crate) fn admitted_node(dir: &Path, name: &str) -> PathBuf {
    let auth = dir.join("authority");
    let args = ["authority", "init", "--home", p(&auth), "--name", "Space"];
    succeeded(run_here(&args), &args);
    admitted_by(dir, name, "power")
}

/// `tds serve` on `home`, once its admin API answers (admin.json written).
pub(crate) fn serve(home: &Path) -> (Child, Value) {
    let child = Command::new(bin())
        .args(["serve", "--home", p(home), "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tds serve");
    let admin = home.join("admin.json");
    wait_for("tds serve did not start", 60, || admin.exists());
    let v: Value = serde_json::from_slice(&std::fs::read(&admin).unwrap()).unwrap();
    (child, v)
}

/// `tds serve` on `home`, its output dropped; not waiting for it.
pub(crate) fn spawn_quiet_serve(home: &Path) -> Child {
    Command::new(bin())
        .args(["serve", "--home", p(home)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tds serve")
}

/// `tds authority serve` on `auth` (loopback, a port the system picks) with `extra`
/// flags, once its `admin.json` exists: (the process, the QUIC address it listens on).
pub(crate) fn serve_authority(auth: &Path, extra: &[&str]) -> (Child, String) {
    let child = Command::new(bin())
        .args([
            "authority",
            "serve",
            "--home",
            p(auth),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tds authority serve");
    let admin = auth.join("admin.json");
    wait_for("the authority did not start", 60, || admin.exists());
    // admin.json says where its QUIC endpoint listens.
    let v: Value = serde_json::from_slice(&std::fs::read(&admin).unwrap()).unwrap();
    let listen = v["listen"].as_str().unwrap().to_owned();
    (child, listen)
}

/// `tds init` of the node `dir/name` in `sector` (loopback, any port), then `tds join` to
/// the authority at `listen` with public key `key`: (its home, what join printed).
pub(crate) fn init_and_join(
    dir: &Path,
    name: &str,
    sector: &str,
    listen: &str,
    key: &str,
) -> (PathBuf, Value) {
    let node = dir.join(name);
    ok(&[
        "init",
        "--home",
        p(&node),
        "--name",
        name,
        "--sector",
        sector,
        "--listen",
        "127.0.0.1:0",
    ]);
    let joined = ok(&[
        "join",
        "--home",
        p(&node),
        "--authority",
        listen,
        "--authority-key",
        key,
    ]);
    (node, joined)
}

/// Sets the node's witness schedule to every second (300 s in a new home).
pub(crate) fn witness_every_second(home: &Path) {
    let config = home.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("witness_every_s = 300"), "{text}");
    std::fs::write(
        &config,
        text.replace("witness_every_s = 300", "witness_every_s = 1"),
    )
    .unwrap();
}

/// A raw HTTP/1.1 GET to the admin API: (status, body).
fn get(url: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn init_install_serve_status_metrics_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let home = admitted_node(dir.path(), "grid");
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(config.contains("# How long to wait for a peer"), "{config}");

    let (mut child, admin) = serve(&home);
    let url = admin["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(admin["pid"], child.id());

    // status goes through the admin API while the node runs.
    let args = ["status", "--home", p(&home)];
    let s = json_of(&succeeded(run_here(&args), &args));
    assert_eq!(s["running"], true, "{s}");
    assert_eq!(s["admin_url"], url.as_str());
    assert_eq!(s["credential"]["valid_now"], true, "{s}");
    for key in [
        "id",
        "peers",
        "agreements",
        "transfers",
        "log_size",
        "alerts",
    ] {
        assert!(s.get(key).is_some(), "status has no {key}: {s}");
    }

    // /healthz and /metrics need no token; /v1 needs the right one.
    assert_eq!(get(&url, "/healthz", None), (200, "ok\n".into()));
    let (code, metrics) = get(&url, "/metrics", None);
    assert_eq!(code, 200);
    assert!(metrics.contains("tds_negotiations_total"), "{metrics}");
    assert!(metrics.contains("tds_log_entries"), "{metrics}");
    for line in metrics
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        assert!(line.starts_with("tds_"), "{line}");
    }
    assert_eq!(get(&url, "/v1/status", None).0, 401);
    assert_eq!(get(&url, "/v1/status", Some("wrong")).0, 401);
    let token = std::fs::read_to_string(home.join("admin.token")).unwrap();
    assert_eq!(get(&url, "/v1/status", Some(token.trim())).0, 200);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "admin.token is readable by others: {mode:o}"
        );
    }

    // SIGTERM: exit 0, admin.json gone; status then reads the home.
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "tds serve exited with {status}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    for line in err.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(!home.join("admin.json").exists());
    let s = json_of(&succeeded(run_here(&args), &args));
    assert_eq!(s["running"], false, "{s}");
    assert_eq!(s["admin_url"], Value::Null);
}

#[test]
fn node_verbs_refuse_bad_homes_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    for verb in ["status", "serve"] {
        let args = [verb, "--home", p(&missing)];
        let line = one_error_line(run_here(&args), &args);
        assert!(line.contains("no such home"), "{line}");
    }
    // A directory that is not a node home.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("x"), b"x").unwrap();
    let args = ["status", "--home", p(&other)];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("not a tds node home"), "{line}");
    let args = [
        "init",
        "--home",
        p(&other),
        "--name",
        "n",
        "--sector",
        "power",
    ];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("not empty"), "{line}");
    // A home written by a newer tds.
    let home = dir.path().join("node");
    let args = [
        "init",
        "--home",
        p(&home),
        "--name",
        "n",
        "--sector",
        "power",
    ];
    succeeded(run_here(&args), &args);
    let args = [
        "init",
        "--home",
        p(&home),
        "--name",
        "n",
        "--sector",
        "power",
    ];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("already a tds home"), "{line}");
    std::fs::write(home.join("VERSION"), "tds-node-home 99\n").unwrap();
    let args = ["status", "--home", p(&home)];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("newer than this tds"), "{line}");
    // serve without a credential says what to do.
    std::fs::write(home.join("VERSION"), "tds-node-home 1\n").unwrap();
    let args = ["serve", "--home", p(&home)];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("tds join"), "{line}");
    // A config typo is an error naming the file.
    let config = home.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("fetch_attempts", "fetch_atempts")).unwrap();
    let args = ["status", "--home", p(&home)];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("config.toml"), "{line}");
}

/// A second node admitted by the authority in `dir` (made by [`admitted_node`]).
/// Copies a stopped node's home (files and directories, modes kept).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub(crate) fn admitted_by(dir: &Path, name: &str, sector: &str) -> PathBuf {
    let auth = dir.join("authority");
    let args = ["authority", "show", "--home", p(&auth)];
    let a = json_of(&succeeded(run_here(&args), &args));
    let home = dir.join(name);
    let args = [
        "init",
        "--home",
        p(&home),
        "--name",
        name,
        "--sector",
        sector,
        "--listen",
        "127.0.0.1:0",
    ];
    let n = json_of(&succeeded(run_here(&args), &args));
    let cred = dir.join(format!("{name}.cred"));
    let crl = dir.join(format!("{name}.crl"));
    let args = [
        "authority",
        "admit",
        "--home",
        p(&auth),
        "--subject-key",
        n["public_key_hex"].as_str().unwrap(),
        "--name",
        name,
        "--sector",
        sector,
        "--role",
        "provider,consumer",
        "--jurisdiction",
        "CN",
        "--days",
        "30",
        "--out",
        p(&cred),
    ];
    succeeded(run_here(&args), &args);
    let args = ["authority", "crl", "--home", p(&auth), "--out", p(&crl)];
    succeeded(run_here(&args), &args);
    let args = [
        "credential",
        "install",
        "--home",
        p(&home),
        p(&cred),
        "--authority-key",
        a["public_key_hex"].as_str().unwrap(),
        "--crl",
        p(&crl),
    ];
    succeeded(run_here(&args), &args);
    home
}

pub(crate) fn ok(args: &[&str]) -> Value {
    json_of(&succeeded(run_here(args), args))
}

#[test]
fn publish_search_negotiate_fetch_use_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let grid = admitted_node(dir.path(), "grid");
    let bank = admitted_by(dir.path(), "bank", "finance");
    let (mut provider, _) = serve(&grid);
    let provider_addr = {
        let args = ["status", "--home", p(&grid)];
        ok(&args)["listen"].as_str().unwrap().to_owned()
    };

    // Publish through the running provider's admin API.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let file = dir.path().join("load.bin");
    std::fs::write(&file, &data).unwrap();
    let policy = dir.path().join("research.tdsp");
    std::fs::write(
        &policy,
        "policy set;\n\npermit use\n  when purpose isA research;\n",
    )
    .unwrap();
    let added = ok(&[
        "asset",
        "add",
        "--home",
        p(&grid),
        p(&file),
        "--title",
        "Feeder load",
        "--classification",
        "general",
        "--policy",
        p(&policy),
        "--keyword",
        "load",
    ]);
    let offer = added["offer_id"].as_str().unwrap().to_owned();
    let listed = ok(&["asset", "list", "--home", p(&grid)]);
    assert_eq!(
        listed["assets"][0]["offers"][0]["offer_id"],
        offer.as_str(),
        "{listed}"
    );

    // The consumer is not running: its verbs start a connector from its home.
    let found = ok(&[
        "catalog",
        "search",
        "--home",
        p(&bank),
        "--peer",
        &provider_addr,
        "--query",
        "load",
    ]);
    assert_eq!(found["offers"][0]["offer_id"], offer.as_str(), "{found}");
    let none = ok(&[
        "catalog",
        "search",
        "--home",
        p(&bank),
        "--peer",
        &provider_addr,
        "--query",
        "weather",
    ]);
    assert_eq!(none["offers"].as_array().unwrap().len(), 0, "{none}");

    // A purpose outside the offer is refused with the provider's reason, non-zero.
    let args = [
        "negotiate",
        "--home",
        p(&bank),
        "--peer",
        &provider_addr,
        "--offer",
        &offer,
        "--purpose",
        "marketing",
    ];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("purpose"), "{line}");

    let agreed = ok(&[
        "negotiate",
        "--home",
        p(&bank),
        "--peer",
        &provider_addr,
        "--offer",
        &offer,
        "--purpose",
        "research",
    ]);
    let agreement = agreed["agreement_id"].as_str().unwrap().to_owned();
    let out = dir.path().join("fetched.bin");
    let fetched = ok(&[
        "fetch",
        "--home",
        p(&bank),
        "--peer",
        &provider_addr,
        "--agreement",
        &agreement,
        "--out",
        p(&out),
    ]);
    assert_eq!(fetched["size"], data.len());
    assert_eq!(
        std::fs::read(&out).unwrap(),
        data,
        "the fetched bytes differ"
    );

    // Usage control on the consumer, from scripts.
    let used = ok(&[
        "use",
        "--home",
        p(&bank),
        "--agreement",
        &agreement,
        "--action",
        "use",
        "--purpose",
        "research",
    ]);
    assert_eq!(used["allowed"], true, "{used}");
    let args = [
        "use",
        "--home",
        p(&bank),
        "--agreement",
        &agreement,
        "--action",
        "use",
        "--purpose",
        "marketing",
    ];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("use refused"), "{line}");

    // The consumer running now: the same verbs go through its admin API.
    let (mut consumer, _) = serve(&bank);
    let held = ok(&["agreements", "--home", p(&bank)]);
    assert_eq!(
        held["agreements"][0]["agreement_id"],
        agreement.as_str(),
        "{held}"
    );
    assert_eq!(held["agreements"][0]["side"], "consumer", "{held}");
    let ended = ok(&[
        "agreement",
        "terminate",
        &agreement,
        "--home",
        p(&grid),
        "--reason",
        "test over",
    ]);
    assert_eq!(ended["terminated"], true, "{ended}");
    let provider_view = ok(&["agreements", "--home", p(&grid)]);
    assert_eq!(
        provider_view["agreements"][0]["terminated"], true,
        "{provider_view}"
    );

    // An unreachable peer fails within the connect timeout with one line.
    let args = [
        "catalog",
        "search",
        "--home",
        p(&bank),
        "--peer",
        "127.0.0.1:9",
    ];
    let started = Instant::now();
    let line = one_error_line(run_here(&args), &args);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        line.contains("connect") || line.contains("timed out"),
        "{line}"
    );

    for child in [&mut provider, &mut consumer] {
        stop(child);
    }
}

#[test]
fn sigterm_mid_fetch_then_the_fetch_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let grid = admitted_node(dir.path(), "grid");
    let bank = admitted_by(dir.path(), "bank", "finance");
    // Sync the fetch's state every MiB, so a stop mid-transfer keeps most of it.
    let config = bank.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("sync_every_mib = 32", "sync_every_mib = 1"),
    )
    .unwrap();
    let (mut provider, _) = serve(&grid);
    let provider_addr = ok(&["status", "--home", p(&grid)])["listen"]
        .as_str()
        .unwrap()
        .to_owned();
    let mib = if std::env::var("TDS_TEST_SCALE").is_ok_and(|v| v == "full") {
        256
    } else {
        64
    };
    let data: Vec<u8> = (0..mib * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &data).unwrap();
    let policy = dir.path().join("research.tdsp");
    std::fs::write(
        &policy,
        "policy set;\n\npermit use\n  when purpose isA research;\n",
    )
    .unwrap();
    let added = ok(&[
        "asset",
        "add",
        "--home",
        p(&grid),
        p(&file),
        "--title",
        "Big",
        "--classification",
        "general",
        "--policy",
        p(&policy),
    ]);
    let offer = added["offer_id"].as_str().unwrap().to_owned();
    let agreed = ok(&[
        "negotiate",
        "--home",
        p(&bank),
        "--peer",
        &provider_addr,
        "--offer",
        &offer,
        "--purpose",
        "research",
    ]);
    let agreement = agreed["agreement_id"].as_str().unwrap().to_owned();

    // The consumer node runs the fetch; it is stopped once part of the file is there.
    let (mut consumer, _) = serve(&bank);
    let out = dir.path().join("big.out");
    let fetch = Command::new(bin())
        .args([
            "fetch",
            "--home",
            p(&bank),
            "--peer",
            &provider_addr,
            "--agreement",
            &agreement,
            "--out",
            p(&out),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Stop it early (2 MiB in), so the transfer is still running when the signal lands.
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < 2 << 20 {
        assert!(Instant::now() < deadline, "the fetch made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop(&mut consumer);
    let interrupted = fetch.wait_with_output().unwrap();

    // Run again (the node is stopped now): it resumes, and the bytes are the asset's.
    let again = ok(&[
        "fetch",
        "--home",
        p(&bank),
        "--peer",
        &provider_addr,
        "--agreement",
        &agreement,
        "--out",
        p(&out),
    ]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        data,
        "the fetched bytes differ"
    );
    if interrupted.status.success() {
        // The transfer finished before the stop reached it: nothing to resume.
        eprintln!("note: the first fetch completed before SIGTERM");
    } else {
        let resumed = again["resumed"].as_u64().unwrap();
        assert!(resumed > 0, "nothing resumed: {again}");
        assert_eq!(
            resumed + again["fetched"].as_u64().unwrap(),
            u64::from(mib) << 20,
            "{again}"
        );
    }
    stop(&mut provider);
}

#[test]
fn the_five_sector_demo_plays_every_scenario_and_verifies_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let args = ["demo", "--keep", p(&keep)];
    let out = succeeded(run_here(&args), &args);
    let text = String::from_utf8(out.stdout).unwrap();
    // Each scenario's decisions, with the reason its enforcer gave.
    for expected in [
        "fetched   every chunk verified",
        "guard.denied",
        "duties: anonymize",
        "policy.unmet.count",
        "policy.unmet.consent",
        "deleted",
        "verifies and logs the receipt",
        "licence.not_contained",
        "contained in the licence",
        "policy.unmet.spatial",
        "policy.unmet.elapsed_time",
        "contract.purpose_not_offered",
        "identity.revoked",
        "every log verifies",
        "verified offline",
    ] {
        assert!(
            text.contains(expected),
            "the demo did not show {expected:?}:\n{text}"
        );
    }
    assert!(!text.contains("missing"), "{text}");
    // The kept homes work with the other verbs.
    let s = json_of(&succeeded(
        run_here(&["status", "--home", p(&keep.join("hospital"))]),
        &[],
    ));
    assert_eq!(s["running"], false, "{s}");
    assert!(s["log_size"].as_u64().unwrap() > 0, "{s}");
    assert!(keep.join("evidence-healthcare.cbor").exists());
}

#[test]
fn join_waits_for_the_authority_and_serve_picks_up_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("authority");
    let shown = ok(&["authority", "init", "--home", p(&auth), "--name", "Space"]);
    let key = shown["public_key_hex"].as_str().unwrap().to_owned();
    let (mut authority, listen) = serve_authority(&auth, &["--join-burst", "64"]);

    // A node joins: queued, not yet admitted.
    let (node, joined) = init_and_join(dir.path(), "grid", "power", &listen, &key);
    assert_eq!(joined["status"], "pending", "{joined}");
    let requests = ok(&["authority", "requests", "--home", p(&auth)]);
    let id = requests["requests"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(id, joined["request_id"].as_str().unwrap());
    assert_eq!(requests["requests"][0]["name"], "grid");

    // Checkpoints go to the witness every second in this test.
    witness_every_second(&node);
    // serve waits for the decision, then runs with the issued credential.
    let mut served = spawn_quiet_serve(&node);
    let approved = ok(&["authority", "approve", &id, "--home", p(&auth)]);
    assert_eq!(approved["approved"], true, "{approved}");
    wait_for("the node did not pick up its credential", 90, || {
        node.join("admin.json").exists()
    });
    let s = ok(&["status", "--home", p(&node)]);
    assert_eq!(s["credential"]["serial"], approved["serial"], "{s}");
    assert_eq!(s["running"], true);

    // Published assets are listed in the authority's federated catalog.
    let file = dir.path().join("load.csv");
    std::fs::write(&file, "feeder,load\n1,2\n").unwrap();
    let policy = dir.path().join("p.tdsp");
    std::fs::write(
        &policy,
        "policy set;\n\npermit use\n  when purpose isA research;\n",
    )
    .unwrap();
    let added = ok(&[
        "asset",
        "add",
        "--home",
        p(&node),
        p(&file),
        "--title",
        "Feeder load",
        "--classification",
        "general",
        "--policy",
        p(&policy),
        "--keyword",
        "feeder",
    ]);
    assert_eq!(added["federated"], true, "{added}");
    let found = ok(&[
        "catalog",
        "search",
        "--home",
        p(&node),
        "--federated",
        "--query",
        "feeder",
    ]);
    assert_eq!(found["offers"][0]["offer_id"], added["offer_id"], "{found}");
    let none = ok(&[
        "catalog",
        "search",
        "--home",
        p(&node),
        "--federated",
        "--sector",
        "weather",
    ]);
    assert_eq!(none["offers"].as_array().unwrap().len(), 0, "{none}");
    // The authority's witness cosigns the node's log on the schedule.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node.join("witnessed.json").exists() {
        assert!(Instant::now() < deadline, "no checkpoint was cosigned");
        std::thread::sleep(Duration::from_millis(50));
    }
    let w: Value =
        serde_json::from_slice(&std::fs::read(node.join("witnessed.json")).unwrap()).unwrap();
    assert!(w["size"].as_u64().unwrap() > 0, "{w}");
    let first = w["size"].as_u64().unwrap();

    // Roll the node back: copy its home while stopped, let the witness cosign a larger
    // log, then put the old copy back. The witness holds a history the node no longer
    // has: a split view, raised as an alert on the node.
    let start = |home: &Path| {
        let child = spawn_quiet_serve(home);
        wait_for("tds serve did not start", 60, || {
            home.join("admin.json").exists()
        });
        child
    };
    stop(&mut served);
    let old = dir.path().join("grid-copy");
    copy_dir(&node, &old);
    let copied_size = ok(&["status", "--home", p(&old)])["log_size"]
        .as_u64()
        .unwrap();
    assert!(copied_size > first, "{copied_size} {first}");
    served = start(&node);
    let file2 = dir.path().join("load2.csv");
    std::fs::write(&file2, "feeder,load\n3,4\n").unwrap();
    ok(&[
        "asset",
        "add",
        "--home",
        p(&node),
        p(&file2),
        "--title",
        "Feeder load 2",
        "--classification",
        "general",
        "--policy",
        p(&policy),
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let w: Value =
            serde_json::from_slice(&std::fs::read(node.join("witnessed.json")).unwrap()).unwrap();
        if w["size"].as_u64().unwrap() > copied_size {
            break;
        }
        assert!(Instant::now() < deadline, "the larger log was not cosigned");
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = ok(&["status", "--home", p(&node)]);
    assert_eq!(s["alerts"].get("split_view"), None, "{s}");
    stop(&mut served);
    std::fs::remove_dir_all(&node).unwrap();
    std::fs::rename(&old, &node).unwrap();
    served = start(&node);
    let deadline = Instant::now() + Duration::from_secs(60);
    let s = loop {
        let s = ok(&["status", "--home", p(&node)]);
        if s["alerts"]["split_view"].as_u64().unwrap_or(0) > 0 {
            break s;
        }
        assert!(Instant::now() < deadline, "no split-view alert: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(s["alerts"]["split_view"], 1, "{s}");
    let admin: Value =
        serde_json::from_slice(&std::fs::read(node.join("admin.json")).unwrap()).unwrap();
    let (status, metrics) = get(admin["url"].as_str().unwrap(), "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tds_alerts_total{kind=\"split_view\"} 1"),
        "{metrics}"
    );

    // Another node is rejected, and told so when it asks again.
    let bank = dir.path().join("bank");
    ok(&[
        "init",
        "--home",
        p(&bank),
        "--name",
        "bank",
        "--sector",
        "finance",
        "--listen",
        "127.0.0.1:0",
    ]);
    let joined = ok(&[
        "join",
        "--home",
        p(&bank),
        "--authority",
        &listen,
        "--authority-key",
        &key,
    ]);
    let bank_id = joined["request_id"].as_str().unwrap().to_owned();
    let rejected = ok(&[
        "authority",
        "reject",
        &bank_id,
        "--home",
        p(&auth),
        "--reason",
        "unknown bank",
    ]);
    assert_eq!(rejected["rejected"], true);
    let args = ["join", "--home", p(&bank), "--authority", &listen];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("authority.rejected"), "{line}");

    for child in [&mut served, &mut authority] {
        stop(child);
    }
}

#[test]
fn authority_verbs_that_need_the_home_say_the_authority_runs() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("authority");
    ok(&["authority", "init", "--home", p(&auth), "--name", "Space"]);
    let (mut authority, _) = serve_authority(&auth, &[]);
    let out = dir.path().join("rollover.cose");
    let args = [
        "authority",
        "rollover",
        "--home",
        p(&auth),
        "--out",
        p(&out),
    ];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("the authority is running"), "{line}");
    // The admin-API verbs work; a wrong token is refused.
    let requests = ok(&["authority", "requests", "--home", p(&auth)]);
    assert_eq!(requests["requests"].as_array().unwrap().len(), 0);
    // A licence is signed by the running service.
    let shown = ok(&["authority", "show", "--home", p(&auth)]);
    let licensee = tds_core::SigningKey::from_seed(&[3; 32]).id().to_string();
    let file = dir.path().join("licence.cose");
    let issued = ok(&[
        "authority",
        "licence",
        "--home",
        p(&auth),
        "--licensee",
        &licensee,
        "--resource",
        "public:roads",
        "--out",
        p(&file),
    ]);
    assert_eq!(issued["licensee"], licensee.as_str(), "{issued}");
    assert_eq!(issued["authority"], shown["id"], "{issued} {shown}");
    let inspected = ok(&["inspect", p(&file)]);
    assert_eq!(inspected["kind"], "licence");
    assert_eq!(inspected["signatures_match_named_keys"], true);
    std::fs::write(auth.join("admin.token"), "0".repeat(64)).unwrap();
    let args = ["authority", "requests", "--home", p(&auth)];
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("admin.unauthorized"), "{line}");
    stop(&mut authority);
}

#[test]
fn a_public_data_licence_bounds_what_the_operator_offers() {
    let dir = tempfile::tempdir().unwrap();
    let weather = admitted_node(dir.path(), "weather");
    let auth = dir.path().join("authority");
    let id = ok(&["status", "--home", p(&weather)])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let licence = dir.path().join("licence.cose");
    let issued = ok(&[
        "authority",
        "licence",
        "--home",
        p(&auth),
        "--licensee",
        &id,
        "--resource",
        "public:meteorological-observations",
        "--days",
        "90",
        "--out",
        p(&licence),
    ]);
    assert_eq!(issued["licensee"], id.as_str(), "{issued}");
    assert_eq!(issued["policy"], "licence");
    let shown = ok(&["inspect", p(&licence)]);
    assert_eq!(shown["kind"], "licence", "{shown}");
    assert_eq!(shown["signatures_match_named_keys"], true, "{shown}");

    let file = dir.path().join("obs.csv");
    std::fs::write(&file, "station,rain\n1,0.2\n").unwrap();
    let within = dir.path().join("within.tdsp");
    let args = ["policy", "template", "licence"];
    let text = String::from_utf8(succeeded(run_here(&args), &args).stdout).unwrap();
    std::fs::write(
        &within,
        text.replace(
            "(purpose isA public-service or purpose isA urban-planning or purpose isA research)",
            "purpose isA research",
        ),
    )
    .unwrap();
    let outside = dir.path().join("outside.tdsp");
    std::fs::write(&outside, "policy set;\n\npermit sell;\n").unwrap();
    let add = |policy: &Path| {
        vec![
            "asset".to_owned(),
            "add".to_owned(),
            "--home".to_owned(),
            p(&weather).to_owned(),
            p(&file).to_owned(),
            "--title".to_owned(),
            "Observations".to_owned(),
            "--classification".to_owned(),
            "general".to_owned(),
            "--policy".to_owned(),
            p(policy).to_owned(),
            "--licence".to_owned(),
            p(&licence).to_owned(),
        ]
    };
    let args = add(&outside);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let line = one_error_line(run_here(&args), &args);
    assert!(line.contains("licence.not_contained"), "{line}");
    let args = add(&within);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let added = ok(&args);
    assert_eq!(added["licence"], true, "{added}");
    // The offer ends with the licence (90 days), not after the default 365.
    let listed = ok(&["asset", "list", "--home", p(&weather)]);
    assert_eq!(listed["assets"].as_array().unwrap().len(), 1, "{listed}");
    let end = added["not_after"].as_str().unwrap();
    assert_eq!(end, issued["not_after"].as_str().unwrap(), "{added}");
}

/// `tds` with `TDS_KEY_PASSPHRASE_FILE` set to `pass` (or without it).
fn with_pass(pass: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("TDS_KEY_PASSPHRASE")
        .env_remove("TDS_KEY_PASSPHRASE_FILE");
    if let Some(p) = pass {
        c.env("TDS_KEY_PASSPHRASE_FILE", p);
    }
    c.output().unwrap()
}

#[test]
fn keys_at_rest_are_encrypted_with_a_passphrase_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "a long node passphrase\n").unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not it\n").unwrap();

    // An authority home created with a passphrase in the environment: its key is
    // encrypted, and using it needs the passphrase.
    let auth = dir.path().join("authority");
    let args = ["authority", "init", "--home", p(&auth), "--name", "Space"];
    let a = json_of(&succeeded(with_pass(Some(&pass), &args), &args));
    let args = ["authority", "show", "--home", p(&auth)];
    let line = one_error_line(with_pass(None, &args), &args);
    assert!(
        line.contains("encrypted") && line.contains("passphrase"),
        "{line}"
    );
    let line = one_error_line(with_pass(Some(&wrong), &args), &args);
    assert!(line.contains("wrong passphrase"), "{line}");
    let shown = json_of(&succeeded(with_pass(Some(&pass), &args), &args));
    assert_eq!(shown["public_key_hex"], a["public_key_hex"]);

    // A node home likewise; its id is shown without the passphrase.
    let home = dir.path().join("grid");
    let args = [
        "init",
        "--home",
        p(&home),
        "--name",
        "grid",
        "--sector",
        "power",
        "--listen",
        "127.0.0.1:0",
    ];
    let n = json_of(&succeeded(with_pass(Some(&pass), &args), &args));
    assert_eq!(n["key_encrypted"], true, "{n}");
    let key_file = home.join("node.key");
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(text.contains("TDS ENCRYPTED PRIVATE KEY"), "{text}");
    let args = ["status", "--home", p(&home)];
    let s = json_of(&succeeded(with_pass(None, &args), &args));
    assert_eq!(s["key_encrypted"], true, "{s}");
    assert_eq!(s["id"], n["id"], "{s}");
    // Signing with it (here: tds serve, which needs a credential first; the key is read
    // before) fails clearly without the passphrase.
    let args = ["key", "show", p(&key_file)];
    let line = one_error_line(with_pass(None, &args), &args);
    assert!(line.contains("passphrase"), "{line}");
    let shown = json_of(&succeeded(with_pass(Some(&pass), &args), &args));
    assert_eq!(shown["public_key_hex"], n["public_key_hex"]);

    // decrypt, then encrypt again in place; the key stays the same.
    let args = ["key", "decrypt", p(&key_file)];
    let d = json_of(&succeeded(with_pass(Some(&pass), &args), &args));
    assert_eq!(d["encrypted"], false);
    let s = json_of(&succeeded(
        with_pass(None, &["status", "--home", p(&home)]),
        &[],
    ));
    assert_eq!(s["key_encrypted"], false, "{s}");
    let args = ["key", "encrypt", p(&key_file)];
    let line = one_error_line(with_pass(None, &args), &args);
    assert!(line.contains("TDS_KEY_PASSPHRASE"), "{line}");
    let e = json_of(&succeeded(with_pass(Some(&pass), &args), &args));
    assert_eq!(e["encrypted"], true);
    assert_eq!(e["public_key_hex"], n["public_key_hex"]);
    // Encrypting an encrypted key again needs its current passphrase.
    let line = one_error_line(with_pass(Some(&wrong), &args), &args);
    assert!(line.contains("already encrypted"), "{line}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
