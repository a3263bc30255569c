//! A read-only home (issue 13): `tds serve` and the verbs that write fail with one
//! error line naming the file they could not write, and change nothing.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::node::{admitted_node, ok};
use crate::util::*;

/// The user the verbs run as when the test runs as root (root writes through any mode
/// bits; the mode bits are what is tested).
const NOBODY: u32 = 65534;

/// Sets the mode of every directory (`dirs`) and file (`files`) under `path`.
fn set_modes(path: &Path, dirs: u32, files: u32) {
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let p = entry.path();
        if entry.file_type().unwrap().is_dir() {
            set_modes(&p, dirs, files);
        } else {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(files)).unwrap();
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(dirs)).unwrap();
}

fn chown_all(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_all(&entry.unwrap().path(), uid);
        }
    }
}

#[test]
fn a_read_only_home_fails_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = admitted_node(dir.path(), "grid");
    // The data directory exists with its store and log (a verb started a connector).
    ok(&["asset", "list", "--home", p(&home)]);
    let data = home.join("data");
    let before: Vec<(std::path::PathBuf, u64)> = walk(&data);
    let root = rustix::process::geteuid().is_root();
    if root {
        chown_all(dir.path(), NOBODY);
    }
    set_modes(&data, 0o500, 0o400);
    let text = "maintenance";
    for args in [
        vec!["serve", "--home", p(&home)],
        vec!["asset", "list", "--home", p(&home)],
        vec!["log", "annotate", "--home", p(&home), "--text", text],
    ] {
        let mut cmd = Command::new(bin());
        cmd.args(&args);
        if root {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        let line = one_error_line(cmd.output().unwrap(), &args);
        assert!(
            line.contains(p(&data)) && line.contains("ermission denied"),
            "tds {args:?}: {line}"
        );
        println!(
            "read-only home: tds {}: {line}",
            args.first().unwrap_or(&"")
        );
    }
    // `tds status` reads a read-only home (its store opened read-only).
    let args = ["status", "--home", p(&home)];
    let mut cmd = Command::new(bin());
    cmd.args(args);
    if root {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tds status on a read-only home: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["running"], false);
    assert_eq!(status["agreements"], 0);
    set_modes(&data, 0o700, 0o600);
    assert_eq!(
        walk(&data),
        before,
        "a refused verb changed the data directory"
    );
}

/// Every file under `path` with its size, sorted.
fn walk(path: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            v.extend(walk(&entry.path()));
        } else {
            v.push((entry.path(), entry.metadata().unwrap().len()));
        }
    }
    v.sort();
    v
}
