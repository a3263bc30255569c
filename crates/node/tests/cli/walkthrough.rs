//! `scripts/walkthrough.sh` (named in the README) run against the built binary, so
//! CI proves the README.

use std::path::Path;
use std::process::Command;

#[test]
fn readme_walkthrough_runs_to_completion() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/walkthrough.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("TDS", crate::util::bin())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walkthrough failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("walkthrough complete"), "{stdout}");
    // The revoked and the corrupted credential were refused with one line each.
    assert!(
        stderr.lines().filter(|l| l.starts_with("error:")).count() >= 2,
        "{stderr}"
    );
}
