//! `tds manifest create|verify|show|register` and `tds catalog export --dcat`.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::util;

const K64: usize = 64 * 1024;

fn tds(args: &[&str], dir: &Path) -> Output {
    util::run(dir, args)
}

fn ok_json(args: &[&str], dir: &Path) -> Value {
    util::json_of(&util::succeeded(util::run(dir, args), args))
}

fn fails(args: &[&str], dir: &Path) -> String {
    util::one_error_line(util::run(dir, args), args)
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Setup {
    dir: tempfile::TempDir,
    data: Vec<u8>,
    owner_hex: String,
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A key, a 9-chunk data file (64 KiB chunks, the last short) and its manifest.
fn setup() -> (Setup, Value) {
    let dir = tempfile::tempdir().unwrap();
    let d = data(8 * K64 + 100, 1);
    std::fs::write(dir.path().join("data.bin"), &d).unwrap();
    ok_json(&["key", "new", "--out", "owner.key"], dir.path());
    let owner = ok_json(&["key", "show", "owner.key"], dir.path());
    let created = ok_json(
        &[
            "manifest",
            "create",
            "data.bin",
            "--key",
            "owner.key",
            "--title",
            "Feeder load",
            "--sector",
            "power",
            "--classification",
            "important",
            "--personal",
            "none",
            "--residency",
            "CN-SX",
            "--chunk-size",
            "65536",
            "--keyword",
            "load,feeder",
            "--out",
            "data.manifest",
        ],
        dir.path(),
    );
    (
        Setup {
            dir,
            data: d,
            owner_hex: owner["public_key_hex"].as_str().unwrap().to_string(),
        },
        created,
    )
}

#[test]
fn create_prints_the_contract_keys_and_writes_the_files() {
    let (s, created) = setup();
    let id = created["asset_id"].as_str().unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert!(created["root"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(created["size"], (8 * K64 + 100) as u64);
    assert_eq!(created["chunks"], 9);
    let manifest = std::fs::read(s.path("data.manifest")).unwrap();
    assert_eq!(manifest[0], 0xd2, "a tagged COSE_Sign1");
    let list = std::fs::read(s.path("data.manifest.chunks")).unwrap();
    assert_eq!(list.len(), 9 * 32);
    // Creating again replaces the manifest (same content, newer time) with --force.
    ok_json(
        &[
            "--force",
            "manifest",
            "create",
            "data.bin",
            "--key",
            "owner.key",
            "--title",
            "T2",
            "--sector",
            "power",
            "--classification",
            "general",
            "--chunk-size",
            "65536",
            "--out",
            "data.manifest",
        ],
        s.dir.path(),
    );
    let shown = ok_json(&["manifest", "show", "data.manifest"], s.dir.path());
    assert_eq!(shown["title"], "T2");
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".tds-tmp")),
        "{names:?}"
    );
}

#[test]
fn verify_says_whether_the_owner_is_authenticated() {
    let (s, created) = setup();
    let dir = s.dir.path();
    let out = tds(&["manifest", "verify", "data.manifest"], dir);
    assert!(out.status.success());
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["asset_id"], created["asset_id"]);
    assert_eq!(j["owner_authenticated"], false);
    assert!(j["warning"]
        .as_str()
        .unwrap()
        .contains("owner is not authenticated"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("owner is not authenticated"));
    let j = ok_json(
        &[
            "manifest",
            "verify",
            "data.manifest",
            "--owner-key",
            &s.owner_hex,
            "--data",
            "data.bin",
        ],
        dir,
    );
    assert_eq!(j["owner_authenticated"], true);
    assert_eq!(j["data"], "valid");
    assert_eq!(j["chunk_list"], "verified");
    assert!(j.get("warning").is_none());
}

#[test]
fn verify_names_the_first_bad_chunk() {
    let (s, _) = setup();
    let dir = s.dir.path();
    for index in [0usize, 5, 8] {
        let mut bad = s.data.clone();
        bad[index * K64 + 3] ^= 0x10;
        std::fs::write(s.path("bad.bin"), &bad).unwrap();
        let line = fails(
            &[
                "manifest",
                "verify",
                "data.manifest",
                "--owner-key",
                &s.owner_hex,
                "--data",
                "bad.bin",
            ],
            dir,
        );
        assert_eq!(
            line,
            format!("error: chunk {index} does not match the manifest")
        );
    }
    // Truncated and extended copies.
    std::fs::write(s.path("short.bin"), &s.data[..3 * K64 + 7]).unwrap();
    let line = fails(
        &["manifest", "verify", "data.manifest", "--data", "short.bin"],
        dir,
    );
    assert!(
        line.starts_with("error: chunk 3 does not match the manifest"),
        "{line}"
    );
    let mut long = s.data.clone();
    long.push(7);
    std::fs::write(s.path("long.bin"), &long).unwrap();
    let line = fails(
        &["manifest", "verify", "data.manifest", "--data", "long.bin"],
        dir,
    );
    assert!(
        line.starts_with("error: chunk 8 does not match the manifest"),
        "{line}"
    );
    // Without the chunk list the copy is still refused, by its root.
    std::fs::remove_file(s.path("data.manifest.chunks")).unwrap();
    let line = fails(
        &["manifest", "verify", "data.manifest", "--data", "bad.bin"],
        dir,
    );
    assert!(line.contains("does not match the manifest"), "{line}");
}

#[test]
fn a_manifest_signed_by_another_key_is_refused() {
    let (s, _) = setup();
    let dir = s.dir.path();
    ok_json(&["key", "new", "--out", "other.key"], dir);
    let other = ok_json(&["key", "show", "other.key"], dir);
    // The right owner key does not verify a manifest the other key made...
    ok_json(
        &[
            "manifest",
            "create",
            "data.bin",
            "--key",
            "other.key",
            "--title",
            "T",
            "--sector",
            "power",
            "--classification",
            "general",
            "--out",
            "other.manifest",
        ],
        dir,
    );
    let line = fails(
        &[
            "manifest",
            "verify",
            "other.manifest",
            "--owner-key",
            &s.owner_hex,
        ],
        dir,
    );
    assert!(line.contains("not the expected"), "{line}");
    // ...and a manifest whose signature was replaced fails its own check.
    let mut forged = std::fs::read(s.path("data.manifest")).unwrap();
    let n = forged.len();
    forged[n - 5] ^= 1;
    std::fs::write(s.path("forged.manifest"), &forged).unwrap();
    let line = fails(&["manifest", "verify", "forged.manifest"], dir);
    // The whole line, which names its cause once (issue 9 §3).
    assert_eq!(
        line,
        "error: forged.manifest: cose: signature does not verify"
    );
    let line = fails(
        &[
            "manifest",
            "verify",
            "data.manifest",
            "--owner-key",
            other["public_key_hex"].as_str().unwrap(),
        ],
        dir,
    );
    assert!(line.contains("not the expected"), "{line}");
}

#[test]
fn show_prints_every_field() {
    let (s, created) = setup();
    let j = ok_json(&["manifest", "show", "data.manifest"], s.dir.path());
    assert_eq!(j["asset_id"], created["asset_id"]);
    for key in [
        "version",
        "title",
        "description",
        "sector",
        "media_type",
        "schema",
        "keywords",
        "owner",
        "owner_key",
        "created",
        "created_ms",
        "classification",
        "personal",
        "residency",
        "content",
        "lineage",
        "supersedes",
        "quality",
    ] {
        assert!(j.get(key).is_some(), "missing {key}: {j}");
    }
    assert_eq!(j["owner_key"], s.owner_hex.as_str());
    assert_eq!(j["classification"], "important");
    assert_eq!(j["residency"], "CN-SX");
    assert_eq!(j["keywords"][1], "feeder");
    assert_eq!(j["content"]["chunks"], 9);
    assert_eq!(j["content"]["root"], created["root"]);
}

#[test]
fn derived_from_names_the_source() {
    let (s, created) = setup();
    let source = created["asset_id"].as_str().unwrap();
    ok_json(
        &[
            "manifest",
            "create",
            "data.bin",
            "--key",
            "owner.key",
            "--title",
            "Derived",
            "--sector",
            "power",
            "--classification",
            "general",
            "--derived-from",
            source,
            "--out",
            "derived.manifest",
        ],
        s.dir.path(),
    );
    let j = ok_json(&["manifest", "show", "derived.manifest"], s.dir.path());
    assert_eq!(j["lineage"][0]["asset"], source);
    assert_eq!(j["lineage"][0]["relation"], "derived");
    // A bad chunk size is a clear error.
    let line = fails(
        &[
            "manifest",
            "create",
            "data.bin",
            "--key",
            "owner.key",
            "--title",
            "T",
            "--sector",
            "power",
            "--classification",
            "general",
            "--chunk-size",
            "1000",
            "--out",
            "x",
        ],
        s.dir.path(),
    );
    assert!(line.contains("chunk size 1000"), "{line}");
}

#[test]
fn empty_data_file() {
    let (s, _) = setup();
    std::fs::write(s.path("empty.bin"), b"").unwrap();
    let j = ok_json(
        &[
            "manifest",
            "create",
            "empty.bin",
            "--key",
            "owner.key",
            "--title",
            "Empty",
            "--sector",
            "power",
            "--classification",
            "general",
            "--out",
            "empty.manifest",
        ],
        s.dir.path(),
    );
    assert_eq!(j["size"], 0);
    assert_eq!(j["chunks"], 0);
    assert_eq!(
        j["root"],
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    ok_json(
        &[
            "manifest",
            "verify",
            "empty.manifest",
            "--data",
            "empty.bin",
        ],
        s.dir.path(),
    );
}

#[test]
fn register_checks_the_credential_and_signs_a_receipt() {
    let (s, created) = setup();
    let dir = s.dir.path();
    ok_json(
        &[
            "authority",
            "init",
            "--home",
            "auth",
            "--name",
            "Shanxi Energy Data Space",
        ],
        dir,
    );
    ok_json(
        &[
            "authority",
            "admit",
            "--home",
            "auth",
            "--subject-key",
            &s.owner_hex,
            "--name",
            "Taiyuan Grid",
            "--sector",
            "power",
            "--role",
            "provider",
            "--jurisdiction",
            "CN-SX",
            "--days",
            "365",
            "--out",
            "owner.cred",
        ],
        dir,
    );
    let j = ok_json(
        &[
            "manifest",
            "register",
            "data.manifest",
            "--home",
            "auth",
            "--credential",
            "owner.cred",
            "--out",
            "data.receipt",
        ],
        dir,
    );
    assert_eq!(j["asset_id"], created["asset_id"]);
    assert_eq!(j["owner_key"], s.owner_hex.as_str());
    let receipt = std::fs::read(s.path("data.receipt")).unwrap();
    assert_eq!(receipt[0], 0xd2);

    // Another member's credential is refused.
    ok_json(&["key", "new", "--out", "other.key"], dir);
    let other = ok_json(&["key", "show", "other.key"], dir);
    ok_json(
        &[
            "authority",
            "admit",
            "--home",
            "auth",
            "--subject-key",
            other["public_key_hex"].as_str().unwrap(),
            "--name",
            "Someone Else",
            "--sector",
            "power",
            "--role",
            "provider",
            "--jurisdiction",
            "CN",
            "--days",
            "365",
            "--out",
            "other.cred",
        ],
        dir,
    );
    let line = fails(
        &[
            "manifest",
            "register",
            "data.manifest",
            "--home",
            "auth",
            "--credential",
            "other.cred",
            "--out",
            "x.receipt",
        ],
        dir,
    );
    assert!(line.contains("is not the manifest owner"), "{line}");
    assert!(!s.path("x.receipt").exists());

    // The receipt verifies with the authority's key and covers the manifest...
    let authority_key = j["authority_key"].as_str().unwrap();
    let v = ok_json(
        &[
            "manifest",
            "verify",
            "data.manifest",
            "--receipt",
            "data.receipt",
            "--authority-key",
            authority_key,
        ],
        dir,
    );
    assert_eq!(v["receipt"]["authority"], j["authority"]);
    assert_eq!(v["receipt"]["registered_ms"], j["registered_ms"]);
    assert_eq!(v["owner_authenticated"], false);
    // ...but not another asset: the whole line names the two assets once.
    std::fs::write(s.path("other.bin"), data(1000, 5)).unwrap();
    let other_manifest = ok_json(
        &[
            "manifest",
            "create",
            "other.bin",
            "--key",
            "owner.key",
            "--title",
            "Other",
            "--sector",
            "power",
            "--classification",
            "general",
            "--out",
            "other.manifest",
        ],
        dir,
    );
    let line = fails(
        &[
            "manifest",
            "verify",
            "other.manifest",
            "--receipt",
            "data.receipt",
            "--authority-key",
            authority_key,
        ],
        dir,
    );
    assert_eq!(
        line,
        format!(
            "error: data.receipt: receipt: it registers asset {}, not {}",
            created["asset_id"].as_str().unwrap(),
            other_manifest["asset_id"].as_str().unwrap()
        )
    );
    // A receipt checked with another key names both keys, once.
    let line = fails(
        &[
            "manifest",
            "verify",
            "data.manifest",
            "--receipt",
            "data.receipt",
            "--authority-key",
            &s.owner_hex,
        ],
        dir,
    );
    assert!(
        line.starts_with("error: data.receipt: cose: signed by key sha256:"),
        "{line}"
    );
    assert_eq!(line.matches("cose:").count(), 1, "{line}");
}

#[test]
fn catalog_export_dcat() {
    let (s, created) = setup();
    let j = ok_json(
        &["catalog", "export", "--dcat", "data.manifest"],
        s.dir.path(),
    );
    assert_eq!(j["@type"], "dcat:Catalog");
    let d = &j["dcat:dataset"][0];
    assert_eq!(d["@type"], "dcat:Dataset");
    assert_eq!(d["dct:identifier"], created["asset_id"]);
    assert!(d["odrl:hasPolicy"].is_array());
    let line = fails(&["catalog", "export", "data.manifest"], s.dir.path());
    assert!(line.contains("--dcat"), "{line}");
}

#[test]
fn inspect_shows_a_manifest_and_says_trust_is_not_checked() {
    let (s, created) = setup();
    let shown = ok_json(&["inspect", "data.manifest"], s.dir.path());
    assert_eq!(shown["content_type"], "application/tds.manifest+cbor");
    assert_eq!(shown["asset_id"], created["asset_id"]);
    assert_eq!(shown["signature_matches_owner_key"], true);
    assert_eq!(shown["trust_checked"], false);
    assert!(shown["owner_key_id"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
}

/// Red-team finding 6, the `--chunks` output of `manifest create` (found in review): the
/// chunk list was written without the output checks, before `--out` was checked, so it
/// could replace the owner's key or the data file, with or without `--force`.
#[test]
fn red_team_6_the_chunk_list_never_replaces_inputs_or_keys() {
    let (s, _) = setup();
    let key = std::fs::read(s.path("owner.key")).unwrap();
    let base = [
        "manifest",
        "create",
        "data.bin",
        "--key",
        "owner.key",
        "--title",
        "T",
        "--sector",
        "power",
        "--classification",
        "general",
    ];
    for (extra, line) in [
        (
            &["--out", "new.manifest", "--chunks", "owner.key", "--force"][..],
            "error: owner.key: is an input of this command; refusing to overwrite it",
        ),
        (
            &["--out", "new.manifest", "--chunks", "data.bin", "--force"][..],
            "error: data.bin: is an input of this command; refusing to overwrite it",
        ),
        (
            &["--out", "data.bin", "--force"][..],
            "error: data.bin: is an input of this command; refusing to overwrite it",
        ),
        // An existing output is refused before the list is written.
        (
            &["--out", "data.manifest"][..],
            "error: data.manifest: already exists; pass --force to replace it",
        ),
    ] {
        let args = [&base[..], extra].concat();
        assert_eq!(fails(&args, s.dir.path()), line, "{extra:?}");
    }
    assert_eq!(std::fs::read(s.path("owner.key")).unwrap(), key);
    assert_eq!(std::fs::read(s.path("data.bin")).unwrap(), s.data);
    assert!(!s.path("new.manifest").exists());
}
