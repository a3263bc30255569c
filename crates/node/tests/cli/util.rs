//! Running the built `tds` and reading what it prints.

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `tds` binary under test.
pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tds")
}

/// Runs `tds args` in `dir`.
pub(crate) fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run tds")
}

/// Runs `tds args` in the test's working directory (paths in `args` are absolute).
pub(crate) fn run_here(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run tds")
}

/// Asserts that `out` is a success; returns it.
pub(crate) fn succeeded(out: Output, args: &[&str]) -> Output {
    assert!(
        out.status.success(),
        "tds {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The one JSON object a verb printed.
pub(crate) fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Asserts that `out` is a failure with exactly one `error: ` line on stderr (lines that
/// start with `warning: ` or `note: ` aside) and nothing on stdout; returns that line.
pub(crate) fn one_error_line(out: Output, args: &[&str]) -> String {
    assert!(!out.status.success(), "tds {args:?} succeeded");
    let err = String::from_utf8(out.stderr).expect("stderr is UTF-8");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("warning: ") && !l.starts_with("note: "))
        .collect();
    assert_eq!(lines.len(), 1, "tds {args:?}: not one error line: {err:?}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{err}");
    assert!(out.stdout.is_empty(), "tds {args:?} printed on failure");
    line.to_owned()
}

/// A path as `&str` (test paths are UTF-8).
pub(crate) fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Polls `done` every 20 ms; fails the test with `what` after `secs` seconds.
pub(crate) fn wait_for(what: &str, secs: u64, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM to `child`; asserts that it exits with success.
pub(crate) fn stop(child: &mut Child) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "did not stop cleanly: {status}");
}
