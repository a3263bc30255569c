//! `tds-bench log` prints the lines `tds log bench` prints.

use std::process::Command;

#[test]
fn log_prints_acks_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("n");
    for (mode, writers) in [(None, "tasks"), (Some("--threads"), "threads")] {
        let out = Command::new(env!("CARGO_BIN_EXE_tds-bench"))
            .args(["log", "--home"])
            .arg(&home)
            .args(["--count", "200", "--concurrency", "4", "--report-acks"])
            .args(mode)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.iter().any(|l| l.starts_with("acked ")));
        let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
        assert_eq!(last["appends"], 200);
        assert_eq!(last["writers"], writers);
        assert_eq!(last["concurrency"], 4);
    }
    assert!(home.join("node.key").exists() && home.join("log/events").exists());
}
