//! Identity verbs (key, authority, credential, inspect).

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use tds_core::time::DAY_MS;
use tds_core::Timestamp;

use crate::util;

fn tds(dir: &Path, args: &[&str]) -> Output {
    util::run(dir, args)
}

/// Runs a verb that must succeed and print one JSON object.
fn ok(dir: &Path, args: &[&str]) -> Value {
    util::json_of(&util::succeeded(util::run(dir, args), args))
}

/// Runs a verb that must fail with exactly one line on stderr; returns that line.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = util::run(dir, args);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().count(),
        1,
        "tds {args:?}: not one line: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    util::one_error_line(out, args)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// A directory with an authority in `auth/` and a member key `member.key`.
struct Space {
    dir: tempfile::TempDir,
    authority_key: String,
    member_key: String,
}

impl Space {
    fn new() -> Space {
        let dir = tempfile::tempdir().unwrap();
        let auth = ok(
            dir.path(),
            &[
                "authority",
                "init",
                "--home",
                "auth",
                "--name",
                "Shanxi Energy Data Space",
            ],
        );
        let member = ok(dir.path(), &["key", "new", "--out", "member.key"]);
        Space {
            authority_key: s(&auth, "public_key_hex").to_owned(),
            member_key: s(&member, "public_key_hex").to_owned(),
            dir,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn admit(&self, out: &str, extra: &[&str]) -> Value {
        let mut args = vec![
            "authority",
            "admit",
            "--home",
            "auth",
            "--subject-key",
            &self.member_key,
            "--name",
            "Taiyuan Grid Co.",
            "--sector",
            "power",
            "--sector",
            "weather",
            "--role",
            "provider,consumer",
            "--jurisdiction",
            "CN-SX",
            "--out",
            out,
        ];
        if !extra.contains(&"--days") {
            args.extend(["--days", "30"]);
        }
        args.extend_from_slice(extra);
        ok(self.path(), &args)
    }

    fn verify(&self, file: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "credential",
            "verify",
            file,
            "--authority-key",
            &self.authority_key,
        ];
        args.extend_from_slice(extra);
        tds(self.path(), &args)
    }

    fn verify_ok(&self, file: &str, extra: &[&str]) -> Value {
        let out = self.verify(file, extra);
        assert!(
            out.status.success(),
            "verify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn verify_fails(&self, file: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "credential",
            "verify",
            file,
            "--authority-key",
            &self.authority_key,
        ];
        args.extend_from_slice(extra);
        fails(self.path(), &args)
    }
}

fn no_temp_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".tds-tmp-"),
            "temporary file left: {name}"
        );
    }
}

#[test]
fn key_new_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let made = ok(dir.path(), &["key", "new", "--out", "k.pem"]);
    let id = s(&made, "id");
    assert!(id.starts_with("sha256:") && id.len() == 7 + 64, "{id}");
    assert_eq!(s(&made, "public_key_hex").len(), 64);
    #[cfg(unix)]
    assert_eq!(mode(&dir.path().join("k.pem")), 0o600);
    let shown = ok(dir.path(), &["key", "show", "k.pem"]);
    assert_eq!(shown, made);
}

#[test]
fn key_new_refuses_to_replace_a_key_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let first = ok(dir.path(), &["key", "new", "--out", "k.pem"]);
    let err = fails(dir.path(), &["key", "new", "--out", "k.pem"]);
    assert!(
        err.contains("k.pem") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(ok(dir.path(), &["key", "show", "k.pem"]), first);
    let second = ok(dir.path(), &["key", "new", "--out", "k.pem", "--force"]);
    assert_ne!(second, first);
    assert_eq!(ok(dir.path(), &["key", "show", "k.pem"]), second);
    #[cfg(unix)]
    assert_eq!(mode(&dir.path().join("k.pem")), 0o600);
    no_temp_files(dir.path());
}

#[cfg(unix)]
#[test]
fn key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["key", "new", "--out", "k.pem"]);
    set_mode(&dir.path().join("k.pem"), 0o644);
    let err = fails(dir.path(), &["key", "show", "k.pem"]);
    assert!(err.contains("k.pem") && err.contains("0644"), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn key_show_of_garbage_or_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(dir.path(), &["key", "show", "nope.pem"]);
    assert!(
        err.contains("nope.pem") && err.contains("no such file"),
        "{err}"
    );
    std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
    #[cfg(unix)]
    set_mode(&dir.path().join("bad.pem"), 0o600);
    let err = fails(dir.path(), &["key", "show", "bad.pem"]);
    assert!(err.contains("bad.pem"), "{err}");
}

#[test]
fn authority_init_show_and_layout() {
    let space = Space::new();
    let shown = ok(space.path(), &["authority", "show", "--home", "auth"]);
    assert_eq!(s(&shown, "public_key_hex"), space.authority_key);
    assert!(s(&shown, "id").starts_with("sha256:"));
    assert_eq!(s(&shown, "name"), "Shanxi Energy Data Space");
    assert_eq!(shown["next_serial"], 1);
    assert_eq!(shown["crl_sequence"], 0);
    assert_eq!(shown["revoked_serials"], serde_json::json!([]));
    // The witness verifier key: tds.witness/<key id hex>, type 0x04, the authority key.
    let vkey = tds_provenance::note::VerifierKey::parse(s(&shown, "witness_vkey")).unwrap();
    assert_eq!(vkey.kind, tds_provenance::note::TYPE_COSIGNATURE);
    assert_eq!(vkey.key.to_hex(), space.authority_key);
    assert_eq!(
        vkey.name,
        format!("tds.witness/{}", &s(&shown, "id")["sha256:".len()..])
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&space.file("auth")), 0o700);
        assert_eq!(mode(&space.file("auth/authority.key")), 0o600);
        assert_eq!(mode(&space.file("auth/authority.json")), 0o600);
    }
    let state: Value =
        serde_json::from_slice(&std::fs::read(space.file("auth/authority.json")).unwrap()).unwrap();
    assert_eq!(s(&state, "public_key"), space.authority_key);
    assert_eq!(state["version"], 1);
    // The key file is the authority's key.
    let key = ok(space.path(), &["key", "show", "auth/authority.key"]);
    assert_eq!(s(&key, "id"), s(&shown, "id"));
}

#[test]
fn authority_init_refuses_an_existing_authority() {
    let space = Space::new();
    let before = std::fs::read(space.file("auth/authority.key")).unwrap();
    let err = fails(
        space.path(),
        &["authority", "init", "--home", "auth", "--name", "Other"],
    );
    assert!(
        err.contains("auth/authority.key") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(space.file("auth/authority.key")).unwrap(),
        before
    );
}

#[test]
fn authority_verbs_on_a_missing_home_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(dir.path(), &["authority", "show", "--home", "nowhere"]);
    assert!(
        err.contains("nowhere") && err.contains("tds authority init"),
        "{err}"
    );
    assert!(!dir.path().join("nowhere").exists());
}

#[test]
fn admit_verify_and_inspect() {
    let space = Space::new();
    let admitted = space.admit("cred.cose", &[]);
    assert_eq!(admitted["serial"], 1);
    assert!(s(&admitted, "id").starts_with("sha256:"));
    let member = ok(space.path(), &["key", "show", "member.key"]);
    assert_eq!(s(&admitted, "subject"), s(&member, "id"));
    assert_eq!(s(&admitted, "subject_key"), space.member_key);
    #[cfg(unix)]
    assert_eq!(mode(&space.file("cred.cose")), 0o644);

    let v = space.verify_ok("cred.cose", &[]);
    assert_eq!(v["serial"].as_u64(), Some(1));
    assert_eq!(s(&v, "sector"), "power");
    assert_eq!(v["sectors"], serde_json::json!(["power", "weather"]));
    assert_eq!(v["roles"], serde_json::json!(["provider", "consumer"]));
    assert_eq!(s(&v, "jurisdiction"), "CN-SX");
    assert_eq!(s(&v, "name"), "Taiyuan Grid Co.");
    assert_eq!(v["revocation_checked"], false);
    assert_eq!(s(&v, "id"), s(&admitted, "id"));
    assert_eq!(s(&v, "subject"), s(&member, "id"));
    let auth = ok(space.path(), &["authority", "show", "--home", "auth"]);
    assert_eq!(s(&v, "issuer"), s(&auth, "id"));
    let nb = v["not_before_ms"].as_u64().unwrap();
    let na = v["not_after_ms"].as_u64().unwrap();
    assert_eq!(na - nb, 30 * DAY_MS);
    assert!(s(&v, "not_before").ends_with('Z'));

    let shown = ok(space.path(), &["inspect", "cred.cose"]);
    assert_eq!(s(&shown, "content_type"), "application/tds.credential+cbor");
    assert_eq!(
        shown["serial"].as_u64(),
        Some(1),
        "inspect shows the integer serial"
    );
    assert_eq!(s(&shown, "kid"), s(&auth, "id"));
    assert_eq!(shown["signature_matches_issuer_key"], true);
    assert_eq!(shown["trust_checked"], false);
    assert_eq!(shown["roles"], v["roles"]);

    // Serials go up; the state remembers.
    assert_eq!(space.admit("cred2.cose", &[])["serial"], 2);
    let shown = ok(space.path(), &["authority", "show", "--home", "auth"]);
    assert_eq!(shown["next_serial"], 3);
}

#[test]
fn roles_and_sectors_accept_commas_and_repeats() {
    let space = Space::new();
    let v = ok(
        space.path(),
        &[
            "authority",
            "admit",
            "--home",
            "auth",
            "--subject-key",
            &space.member_key,
            "--name",
            "Met Office",
            "--sector",
            "weather,transport",
            "--role",
            "provider",
            "--role",
            "witness,operator",
            "--jurisdiction",
            "CN",
            "--days",
            "1",
            "--out",
            "c.cose",
        ],
    );
    assert_eq!(v["sectors"], serde_json::json!(["weather", "transport"]));
    assert_eq!(s(&v, "sector"), "weather");
    assert_eq!(
        v["roles"],
        serde_json::json!(["provider", "witness", "operator"])
    );
}

#[test]
fn revoked_credential_fails_with_the_list() {
    let space = Space::new();
    let one = space.admit("one.cose", &[]);
    space.admit("two.cose", &[]);
    let serial = one["serial"].as_u64().unwrap().to_string();
    let r = ok(
        space.path(),
        &["authority", "revoke", "--home", "auth", "--serial", &serial],
    );
    assert_eq!(r["serial"], 1);
    assert_eq!(r["already_revoked"], false);
    assert_eq!(r["revoked_serials"], serde_json::json!([1]));
    let again = ok(
        space.path(),
        &["authority", "revoke", "--home", "auth", "--serial", &serial],
    );
    assert_eq!(again["already_revoked"], true);

    let crl = ok(
        space.path(),
        &["authority", "crl", "--home", "auth", "--out", "crl.cose"],
    );
    assert_eq!(crl["sequence"], 1);
    assert_eq!(crl["serials"], serde_json::json!([1]));
    assert_eq!(crl["stale"], false);
    assert_eq!(
        crl["next_update_ms"].as_u64().unwrap() - crl["issued_at_ms"].as_u64().unwrap(),
        7 * DAY_MS
    );

    // Without the list the revoked credential still passes, and says so.
    assert_eq!(
        space.verify_ok("one.cose", &[])["revocation_checked"],
        false
    );
    let err = space.verify_fails("one.cose", &["--crl", "crl.cose"]);
    assert!(
        err.contains("one.cose") && err.contains("serial 1 is revoked"),
        "{err}"
    );
    let two = space.verify_ok("two.cose", &["--crl", "crl.cose"]);
    assert_eq!(two["revocation_checked"], true);
    assert_eq!(two["crl_sequence"], 1);

    let shown = ok(space.path(), &["inspect", "crl.cose"]);
    assert_eq!(s(&shown, "content_type"), "application/tds.crl+cbor");
    assert_eq!(shown["serials"], serde_json::json!([1]));
    assert_eq!(shown["sequence"], 1);

    // The next list has the next sequence number; it replaces the old file only with
    // --force, and the refusal uses up no sequence number.
    let args = [
        "authority",
        "crl",
        "--home",
        "auth",
        "--out",
        "crl.cose",
        "--days",
        "1",
    ];
    let err = fails(space.path(), &args);
    assert_eq!(
        err,
        "error: crl.cose: already exists; pass --force to replace it"
    );
    let crl2 = ok(space.path(), &[&args[..], &["--force"]].concat());
    assert_eq!(crl2["sequence"], 2);
}

#[test]
fn revoking_a_serial_never_issued_fails() {
    let space = Space::new();
    let err = fails(
        space.path(),
        &["authority", "revoke", "--home", "auth", "--serial", "7"],
    );
    assert!(err.contains("serial 7 was never issued"), "{err}");
}

#[test]
fn validity_window_and_staleness() {
    let space = Space::new();
    space.admit(
        "old.cose",
        &["--not-before", "2020-01-01T00:00:00Z", "--days", "1"],
    );
    let err = space.verify_fails("old.cose", &[]);
    assert!(err.contains("old.cose") && err.contains("expired"), "{err}");
    // Valid back then.
    let v = space.verify_ok("old.cose", &["--at", "2020-01-01T12:00:00Z"]);
    assert_eq!(s(&v, "verified_at"), "2020-01-01T12:00:00.000Z");

    space.admit("future.cose", &["--not-before", "2100-01-01T00:00:00Z"]);
    let err = space.verify_fails("future.cose", &[]);
    assert!(err.contains("not valid before 2100-01-01"), "{err}");

    space.admit("now.cose", &[]);
    ok(
        space.path(),
        &[
            "authority",
            "crl",
            "--home",
            "auth",
            "--out",
            "crl.cose",
            "--days",
            "1",
        ],
    );
    let later = Timestamp::now()
        .saturating_add_millis(2 * DAY_MS)
        .to_rfc3339();
    let err = space.verify_fails("now.cose", &["--crl", "crl.cose", "--at", &later]);
    assert!(err.contains("crl.cose") && err.contains("stale"), "{err}");
}

#[test]
fn credential_of_another_authority_is_refused() {
    let space = Space::new();
    space.admit("cred.cose", &[]);
    let other = ok(
        space.path(),
        &[
            "authority",
            "init",
            "--home",
            "other",
            "--name",
            "Other Space",
        ],
    );
    let err = fails(
        space.path(),
        &[
            "credential",
            "verify",
            "cred.cose",
            "--authority-key",
            s(&other, "public_key_hex"),
        ],
    );
    assert!(err.contains("not a trusted authority key"), "{err}");
    // A list from another authority is refused too.
    ok(
        space.path(),
        &[
            "authority",
            "crl",
            "--home",
            "other",
            "--out",
            "other-crl.cose",
        ],
    );
    let err = space.verify_fails("cred.cose", &["--crl", "other-crl.cose"]);
    assert!(
        err.contains("other-crl.cose") && err.contains("not a trusted"),
        "{err}"
    );
}

#[test]
fn bad_files_give_one_line_naming_the_file() {
    let space = Space::new();
    space.admit("cred.cose", &[]);
    ok(
        space.path(),
        &["authority", "crl", "--home", "auth", "--out", "crl.cose"],
    );
    let good = std::fs::read(space.file("cred.cose")).unwrap();
    std::fs::write(space.file("truncated.cose"), &good[..good.len() / 2]).unwrap();
    let mut corrupted = good.clone();
    let last = corrupted.len() - 10;
    corrupted[last] ^= 0x01;
    std::fs::write(space.file("corrupted.cose"), &corrupted).unwrap();
    let mut payload_flip = good.clone();
    let mid = payload_flip.len() / 2;
    payload_flip[mid] ^= 0x20;
    std::fs::write(space.file("flipped.cose"), &payload_flip).unwrap();
    std::fs::write(space.file("empty.cose"), b"").unwrap();
    std::fs::write(space.file("text.cose"), b"hello, world\n").unwrap();
    let big = std::fs::File::create(space.file("huge.cose")).unwrap();
    big.set_len(17 * 1024 * 1024).unwrap();
    drop(big);

    // The whole line of each typical failure is pinned: it names the file once, says what
    // is wrong once, and never repeats a cause.
    for (file, line) in [
        ("truncated.cose", "error: truncated.cose: cbor: truncated input at byte "),
        (
            "corrupted.cose",
            "error: corrupted.cose: cose: signature does not verify",
        ),
        (
            "flipped.cose",
            "error: flipped.cose: cbor: map keys not in canonical order at byte ",
        ),
        ("empty.cose", "error: empty.cose: cbor: truncated input at byte 0"),
        (
            "text.cose",
            "error: text.cose: cose: malformed structure: COSE_Sign1 must be an array of 4 items",
        ),
        (
            "crl.cose",
            "error: crl.cose: cose: content type is \"application/tds.crl+cbor\", expected \"application/tds.credential+cbor\"",
        ),
        ("missing.cose", "error: missing.cose: no such file or directory"),
        (
            "huge.cose",
            "error: huge.cose: 17825792 bytes is larger than the limit of 16777216",
        ),
        ("auth", "error: auth: not a regular file"),
    ] {
        let err = space.verify_fails(file, &[]);
        if line.ends_with(' ') {
            assert!(err.starts_with(line), "{file}: {err}");
        } else {
            assert_eq!(err, line, "{file}");
        }
        match file {
            "crl.cose" => {}
            // Inspect shows what it can; the signature check against the embedded key
            // says false.
            "corrupted.cose" => {
                let shown = ok(space.path(), &["inspect", file]);
                assert_eq!(shown["signature_matches_issuer_key"], false);
            }
            _ => {
                let err = fails(space.path(), &["inspect", file]);
                assert!(err.starts_with(&format!("error: {file}: ")), "{err}");
            }
        }
    }
    // The wrong kind of file given as the list.
    let err = space.verify_fails("cred.cose", &["--crl", "cred.cose"]);
    assert!(err.contains("content type"), "{err}");
    let err = space.verify_fails("cred.cose", &["--crl", "truncated.cose"]);
    assert!(err.starts_with("error: truncated.cose: "), "{err}");
}

#[test]
fn bad_flags_give_one_line_and_status_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["key", "new", "--bogus"][..],
        &["key", "new"][..],
        &["credential", "verify", "x", "--authority-key", "zz"][..],
        &["authority", "revoke", "--home", "h", "--serial", "-1"][..],
        &["nonsense"][..],
        &[][..],
        &["authority"][..],
    ] {
        let out = tds(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
    let help = tds(dir.path(), &["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("authority"));
}

#[test]
fn bad_admissions_write_nothing_and_use_no_serial() {
    let space = Space::new();
    std::fs::write(space.file("existing.cose"), b"keep me").unwrap();
    for (flag, value, reason) in [
        ("--sector", "Power", "lowercase token"),
        ("--role", "admin", "unknown role"),
        ("--jurisdiction", "China", "region code"),
        ("--subject-key", "00", "64 hex digits"),
        ("--not-before", "yesterday", "RFC 3339"),
    ] {
        let mut args = vec![
            "authority",
            "admit",
            "--home",
            "auth",
            "--name",
            "X",
            "--days",
            "1",
            "--out",
            "existing.cose",
        ];
        for (f, v) in [
            ("--subject-key", space.member_key.as_str()),
            ("--sector", "power"),
            ("--role", "provider"),
            ("--jurisdiction", "CN"),
        ] {
            if f != flag {
                args.extend([f, v]);
            }
        }
        args.extend([flag, value]);
        let err = fails(space.path(), &args);
        assert!(err.contains(reason), "{flag}: {err}");
    }
    // Rules the identity crate checks (after parsing).
    let err = fails(
        space.path(),
        &[
            "authority",
            "admit",
            "--home",
            "auth",
            "--subject-key",
            &space.member_key,
            "--name",
            "X",
            "--sector",
            "power",
            "--role",
            "provider,provider",
            "--jurisdiction",
            "CN",
            "--days",
            "1",
            "--out",
            "existing.cose",
            "--force",
        ],
    );
    assert!(
        err.contains("credential roles") && err.contains("more than once"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(space.file("existing.cose")).unwrap(),
        b"keep me"
    );
    let shown = ok(space.path(), &["authority", "show", "--home", "auth"]);
    assert_eq!(shown["next_serial"], 1);
    no_temp_files(space.path());
    no_temp_files(&space.file("auth"));
}

#[test]
fn failed_verbs_leave_existing_outputs_alone() {
    let space = Space::new();
    std::fs::write(space.file("crl.cose"), b"previous").unwrap();
    // The authority's state file is broken: nothing is signed, the output is untouched.
    std::fs::write(space.file("auth/authority.json"), b"{\"version\": 1").unwrap();
    let err = fails(
        space.path(),
        &[
            "authority",
            "crl",
            "--home",
            "auth",
            "--out",
            "crl.cose",
            "--force",
        ],
    );
    assert!(err.contains("auth/authority.json"), "{err}");
    assert_eq!(std::fs::read(space.file("crl.cose")).unwrap(), b"previous");
    no_temp_files(space.path());
}

#[test]
fn state_and_key_must_match() {
    let space = Space::new();
    let other = tempfile::tempdir().unwrap();
    ok(
        other.path(),
        &["authority", "init", "--home", "a2", "--name", "Other"],
    );
    std::fs::copy(
        other.path().join("a2/authority.key"),
        space.file("auth/authority.key"),
    )
    .unwrap();
    let err = fails(space.path(), &["authority", "show", "--home", "auth"]);
    assert!(err.contains("disagree"), "{err}");
}

#[test]
fn authority_rollover() {
    let space = Space::new();
    space.admit("before.cose", &[]);
    let before = ok(space.path(), &["authority", "show", "--home", "auth"]);
    let roll = ok(
        space.path(),
        &[
            "authority",
            "rollover",
            "--home",
            "auth",
            "--out",
            "roll.cose",
        ],
    );
    assert_eq!(s(&roll, "old_key"), space.authority_key);
    assert_eq!(s(&roll, "old_id"), s(&before, "id"));
    assert_eq!(s(&roll, "authority"), "Shanxi Energy Data Space");
    let retired = space.file(s(&roll, "retired_key_file"));
    assert!(retired.exists());
    #[cfg(unix)]
    assert_eq!(mode(&retired), 0o600);
    let old_key = ok(space.path(), &["key", "show", s(&roll, "retired_key_file")]);
    assert_eq!(s(&old_key, "public_key_hex"), space.authority_key);

    let after = ok(space.path(), &["authority", "show", "--home", "auth"]);
    assert_eq!(s(&after, "public_key_hex"), s(&roll, "new_key"));
    assert_eq!(
        after["previous_keys"][0]["public_key_hex"],
        space.authority_key
    );
    assert_eq!(after["next_serial"], 2);

    let new = space.admit("after.cose", &[]);
    assert_eq!(new["serial"], 2);
    assert_eq!(s(&new, "issuer"), s(&roll, "new_id"));
    let err = space.verify_fails("after.cose", &[]);
    assert!(err.contains("not a trusted authority key"), "{err}");
    space.verify_ok("after.cose", &["--rollover", "roll.cose"]);
    space.verify_ok("before.cose", &["--rollover", "roll.cose"]);

    // A list signed by the new key revokes a credential signed by the old one.
    ok(
        space.path(),
        &["authority", "revoke", "--home", "auth", "--serial", "1"],
    );
    ok(
        space.path(),
        &["authority", "crl", "--home", "auth", "--out", "crl.cose"],
    );
    let err = space.verify_fails(
        "before.cose",
        &["--rollover", "roll.cose", "--crl", "crl.cose"],
    );
    assert!(err.contains("revoked"), "{err}");

    let shown = ok(space.path(), &["inspect", "roll.cose"]);
    assert_eq!(
        s(&shown, "content_type"),
        "application/tds.key-rollover+cbor"
    );
    assert_eq!(shown["signature_matches_old_key"], true);

    // A second rollover chains.
    ok(
        space.path(),
        &[
            "authority",
            "rollover",
            "--home",
            "auth",
            "--out",
            "roll2.cose",
        ],
    );
    space.admit("third.cose", &[]);
    space.verify_ok(
        "third.cose",
        &["--rollover", "roll.cose", "--rollover", "roll2.cose"],
    );
    let err = space.verify_fails("third.cose", &["--rollover", "roll2.cose"]);
    assert!(err.starts_with("error: roll2.cose: "), "{err}");
}

#[test]
fn inspect_unknown_content_type_and_plain_cbor() {
    use serde::{Deserialize, Serialize};
    use tds_core::cose::SignedObject;

    #[derive(Serialize, Deserialize)]
    struct Reading {
        meter: String,
        #[serde(with = "serde_bytes")]
        digest: Vec<u8>,
        kwh: u64,
    }
    impl SignedObject for Reading {
        const CONTENT_TYPE: &'static str = "application/x-reading+cbor";
    }

    let dir = tempfile::tempdir().unwrap();
    let key = tds_core::SigningKey::from_seed(&[5; 32]);
    let env = tds_core::cose::sign(
        &key,
        &Reading {
            meter: "m-1".into(),
            digest: vec![0xde, 0xad],
            kwh: 42,
        },
    )
    .unwrap();
    std::fs::write(dir.path().join("r.cose"), &env).unwrap();
    let shown = ok(dir.path(), &["inspect", "r.cose"]);
    assert_eq!(s(&shown, "content_type"), "application/x-reading+cbor");
    assert_eq!(shown["payload"]["meter"], "m-1");
    assert_eq!(shown["payload"]["digest"], "dead");
    assert_eq!(shown["payload"]["kwh"], 42);
    assert_eq!(shown["kids"][0], key.id().to_hex());

    let plain = tds_core::cbor::encode(&vec![1u64, 2, 3]).unwrap();
    std::fs::write(dir.path().join("p.cbor"), &plain).unwrap();
    let shown = ok(dir.path(), &["inspect", "p.cbor"]);
    assert_eq!(shown["content_type"], Value::Null);
    assert_eq!(shown["cbor"], serde_json::json!([1, 2, 3]));
}

/// Red-team finding 3: with the old and the new authority key passed as two separate
/// `--authority-key`s (no rollover statement linking them), a revocation list signed by
/// the new key was silently unused for a credential signed by the old one, and a revoked
/// credential verified. A list that does not apply is now an error.
#[test]
fn red_team_3_a_revocation_list_that_does_not_apply_is_an_error() {
    let space = Space::new();
    space.admit("before.cose", &[]);
    let roll = ok(
        space.path(),
        &[
            "authority",
            "rollover",
            "--home",
            "auth",
            "--out",
            "roll.cose",
        ],
    );
    ok(
        space.path(),
        &["authority", "revoke", "--home", "auth", "--serial", "1"],
    );
    ok(
        space.path(),
        &["authority", "crl", "--home", "auth", "--out", "crl.cose"],
    );
    let err = space.verify_fails(
        "before.cose",
        &["--authority-key", s(&roll, "new_key"), "--crl", "crl.cose"],
    );
    assert!(
        err.contains("crl.cose is not from the authority that issued this credential")
            && err.contains("--rollover"),
        "{err}"
    );
    // Linked by the statement, the list applies and is applied.
    let err = space.verify_fails(
        "before.cose",
        &["--rollover", "roll.cose", "--crl", "crl.cose"],
    );
    assert!(err.contains("serial 1 is revoked"), "{err}");
}

/// Red-team finding 4: a credential with serial 0 verified, although no revocation list
/// can name serial 0. It is refused now, with or without a list.
#[test]
fn red_team_4_serial_zero_credentials_are_refused() {
    use tds_core::cbor::{self, Value};
    use tds_core::cose::{self, SignedObject};

    let space = Space::new();
    space.admit("cred.cose", &[]);
    let real = std::fs::read(space.file("cred.cose")).unwrap();
    let raw = cose::CoseSign1::from_slice(&real).unwrap();
    let mut payload: Value = cbor::decode(raw.payload.as_deref().unwrap()).unwrap();
    let Value::Map(entries) = &mut payload else {
        panic!("credential payload is not a map")
    };
    for (k, v) in entries.iter_mut() {
        if k == &Value::Text("serial".into()) {
            *v = Value::Integer(0);
        }
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(transparent)]
    struct Forged(Value);
    impl SignedObject for Forged {
        const CONTENT_TYPE: &'static str = "application/tds.credential+cbor";
    }
    let key = tds_core::SigningKey::read_file(&space.file("auth/authority.key")).unwrap();
    let forged = cose::sign(&key, &Forged(payload)).unwrap();
    std::fs::write(space.file("zero.cose"), forged).unwrap();
    let err = space.verify_fails("zero.cose", &[]);
    assert!(
        err.contains("credential serial: serials start at 1"),
        "{err}"
    );
}

/// Red-team finding 6: every `--out` atomically replaced any file, including the private
/// key the same command had just read and the authority's key and state.
#[test]
fn red_team_6_outputs_never_destroy_inputs_keys_or_state() {
    let space = Space::new();
    let key_before = std::fs::read(space.file("member.key")).unwrap();
    // An input of the same command, even with --force.
    for force in [false, true] {
        let mut args = vec![
            "authority",
            "admit",
            "--home",
            "auth",
            "--subject-key",
            &space.member_key,
            "--name",
            "Grid",
            "--sector",
            "power",
            "--role",
            "provider",
            "--jurisdiction",
            "CN-SX",
            "--days",
            "30",
            "--out",
            "auth/authority.json",
        ];
        if force {
            args.push("--force");
        }
        let err = fails(space.path(), &args);
        assert_eq!(
            err,
            "error: auth/authority.json: holds a key or a home's state; refusing to overwrite it"
        );
    }
    // A key file, by content, whatever its name.
    std::fs::copy(space.file("member.key"), space.file("copy.pem")).unwrap();
    let err = fails(
        space.path(),
        &[
            "authority",
            "crl",
            "--home",
            "auth",
            "--out",
            "copy.pem",
            "--force",
        ],
    );
    assert_eq!(
        err,
        "error: copy.pem: holds a key or a home's state; refusing to overwrite it"
    );
    let err = fails(
        space.path(),
        &[
            "authority",
            "crl",
            "--home",
            "auth",
            "--out",
            "auth/authority.key",
            "--force",
        ],
    );
    assert!(err.contains("refusing to overwrite it"), "{err}");
    // An input that is not a key: the credential being verified cannot be an output, and
    // `key new --force` replaces a key but never an input or state.
    let err = fails(
        space.path(),
        &["key", "new", "--out", "auth/authority.json", "--force"],
    );
    assert!(err.contains("refusing to overwrite it"), "{err}");
    ok(
        space.path(),
        &["key", "new", "--out", "copy.pem", "--force"],
    );
    assert_eq!(std::fs::read(space.file("member.key")).unwrap(), key_before);
    // Nothing numbered was used up by the refusals.
    let shown = ok(space.path(), &["authority", "show", "--home", "auth"]);
    assert_eq!(shown["next_serial"], 1);
    assert_eq!(shown["crl_sequence"], 0);
}

/// Red-team finding 5: `authority init` accepted a world-writable home and left it so, and
/// `authority.json` / `witness.json` were read whatever their mode. Homes are created 0700
/// and refused when group or others can write them or their state files.
#[cfg(unix)]
#[test]
fn red_team_5_homes_and_state_files_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("open")).unwrap();
    set_mode(&dir.path().join("open"), 0o777);
    let err = fails(
        dir.path(),
        &["authority", "init", "--home", "open", "--name", "A"],
    );
    assert_eq!(
        err,
        "error: open: permissions 0777 let group or others write it; a home and its state must be private (chmod go-w open)"
    );
    assert!(!dir.path().join("open/authority.key").exists());

    let space = Space::new();
    assert_eq!(mode(&space.file("auth")), 0o700);
    set_mode(&space.file("auth/authority.json"), 0o666);
    let err = fails(space.path(), &["authority", "show", "--home", "auth"]);
    assert!(
        err.starts_with(
            "error: auth/authority.json: permissions 0666 let group or others write it"
        ),
        "{err}"
    );
    set_mode(&space.file("auth/authority.json"), 0o600);
    set_mode(&space.file("auth"), 0o770);
    let err = fails(space.path(), &["authority", "show", "--home", "auth"]);
    assert!(err.starts_with("error: auth: permissions 0770"), "{err}");
    set_mode(&space.file("auth"), 0o700);
    std::fs::write(space.file("auth/witness.json"), b"{}").unwrap();
    set_mode(&space.file("auth/witness.json"), 0o646);
    let err = fails(space.path(), &["authority", "show", "--home", "auth"]);
    assert!(
        err.starts_with("error: auth/witness.json: permissions 0646"),
        "{err}"
    );

    // A node home for the log verbs too.
    let node = space.file("node");
    ok(
        space.path(),
        &["log", "annotate", "--home", "node", "--text", "hello"],
    );
    assert_eq!(mode(&node), 0o700);
    set_mode(&node, 0o757);
    let out = tds(space.path(), &["log", "show", "--home", "node"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("node: permissions 0757"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Red-team finding 10: the 16 KiB key-file limit was checked on the reported size, so a
/// FIFO (which reports 0 bytes) was read forever. Key files are read through a bounded
/// reader and must be regular files.
#[cfg(unix)]
#[test]
fn red_team_10_a_fifo_is_not_read_as_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("k.pem");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    set_mode(&fifo, 0o600);
    let err = fails(dir.path(), &["key", "show", "k.pem"]);
    assert_eq!(
        err,
        "error: k.pem: not an Ed25519 PKCS#8 PEM private key (not a regular file)"
    );
}

/// A big canonical CBOR payload: 8 MiB of zeros in arrays nested 30 deep.
#[cfg(unix)]
fn amplifier(path: &Path) {
    use tds_core::cbor::{write_header, Major};
    let mut out = Vec::new();
    for _ in 0..30 {
        write_header(&mut out, Major::Array, 1);
    }
    let n = 8 * 1024 * 1024 - 64;
    write_header(&mut out, Major::Array, n as u64);
    out.resize(out.len() + n, 0);
    std::fs::write(path, out).unwrap();
}

/// Red-team finding 9: `tds inspect` of 16 MiB of valid canonical CBOR wrote 1.17 GB and
/// needed 1.6 GB of memory. What it expands is capped now, and says so.
#[cfg(unix)]
#[test]
fn red_team_9_inspect_output_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    amplifier(&dir.path().join("big.cbor"));
    let out = util::succeeded(tds(dir.path(), &["inspect", "big.cbor"]), &["inspect"]);
    assert!(
        out.stdout.len() < 16 * 1024 * 1024,
        "{} bytes of output",
        out.stdout.len()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cbor_canonical"], true);
    let hidden = v["cbor_items_not_shown"].as_u64().unwrap();
    assert!(hidden > 8_000_000, "{hidden}");
}

/// `tds inspect FILE | head`: a closed stdout ends the command quietly with status 0,
/// not with `error: Broken pipe (os error 32)`.
#[cfg(unix)]
#[test]
fn closed_stdout_ends_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    amplifier(&dir.path().join("big.cbor"));
    let mut child = Command::new(util::bin())
        .current_dir(dir.path())
        .args(["inspect", "big.cbor"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// The whole error line of a typical failure of each identity object kind, pinned: the
/// file once, the reason once (issue 9: no message repeats its cause).
#[test]
fn typical_failures_of_lists_and_rollovers_are_one_unrepeated_line() {
    let space = Space::new();
    space.admit("cred.cose", &[]);
    ok(
        space.path(),
        &["authority", "crl", "--home", "auth", "--out", "crl.cose"],
    );
    ok(
        space.path(),
        &[
            "authority",
            "rollover",
            "--home",
            "auth",
            "--out",
            "roll.cose",
        ],
    );
    for (good, bad) in [("crl.cose", "bad-crl.cose"), ("roll.cose", "bad-roll.cose")] {
        let mut b = std::fs::read(space.file(good)).unwrap();
        let i = b.len() - 3;
        b[i] ^= 1;
        std::fs::write(space.file(bad), b).unwrap();
    }
    assert_eq!(
        space.verify_fails("cred.cose", &["--crl", "bad-crl.cose"]),
        "error: bad-crl.cose: cose: signature does not verify"
    );
    assert_eq!(
        space.verify_fails("cred.cose", &["--rollover", "bad-roll.cose"]),
        "error: bad-roll.cose: cose: signature does not verify"
    );
    // A credential given where evidence is expected.
    let err = fails(
        space.path(),
        &[
            "evidence",
            "verify",
            "cred.cose",
            "--authority-key",
            &space.authority_key,
        ],
    );
    assert_eq!(
        err,
        "error: cred.cose: evidence: cbor: tag 18 at byte 0 is not allowed"
    );
}
