//! `tds-bench log` prints the lines `tds log bench` prints; `handshake` and `transfer`
//! print one JSON line with their keys.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

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

fn json_line(args: &[&str]) -> serde_json::Map<String, serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_tds-bench"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    value.as_object().unwrap().clone()
}

#[test]
fn transfer_prints_the_raw_and_the_tds_figures() {
    let line = json_line(&["transfer", "--size", "4MiB"]);
    let keys: Vec<&str> = line.keys().map(String::as_str).collect();
    let mut expected = [
        "size_bytes",
        "raw_quinn_hashed_gbps",
        "raw_quinn_gbps",
        "tds_gbps",
        "ratio",
        "ratio_vs_unhashed",
        "peak_rss_mib",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(line["size_bytes"], 4 * 1024 * 1024);
    assert!(line["raw_quinn_hashed_gbps"].as_f64().unwrap() > 0.0);
    assert!(line["raw_quinn_gbps"].as_f64().unwrap() > 0.0);
    for k in ["tds_gbps", "ratio", "ratio_vs_unhashed"] {
        assert!(line[k].as_f64().unwrap() > 0.0, "{k}");
    }
    assert!(line["peak_rss_mib"].as_f64().unwrap() > 0.0);
}

#[test]
fn handshake_compares_tds_with_raw_quinn() {
    let line = json_line(&["handshake", "--connections", "3"]);
    assert_eq!(line["connections"], 3);
    for k in ["tds_median_ms", "raw_quinn_median_ms", "ratio"] {
        assert!(line[k].as_f64().unwrap() > 0.0, "{k}");
    }
}
