//! `tds-bench log` prints the lines `tds log bench` prints; `handshake`, `transfer`,
//! `negotiate` and `catalog` print one JSON line with their keys.

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
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_str().unwrap();
    let line = json_line(&["transfer", "--size", "4MiB", "--out-dir", out_dir]);
    // The keys scripts read: kept from one version to the next (more may be added).
    for k in [
        "size_bytes",
        "raw_quinn_hashed_gbps",
        "raw_quinn_gbps",
        "tds_gbps",
        "ratio",
        "ratio_vs_unhashed",
        "raw_quinn_written_gbps",
        "ratio_vs_written",
        "tds_session_gbps",
        "ratio_session",
        "out_dir",
        "peak_rss_mib",
    ] {
        assert!(line.contains_key(k), "{k} missing from {line:?}");
    }
    assert_eq!(line["size_bytes"], 4 * 1024 * 1024);
    assert_eq!(line["out_dir"], out_dir);
    for k in [
        "raw_quinn_hashed_gbps",
        "raw_quinn_gbps",
        "raw_quinn_written_gbps",
        "tds_gbps",
        "tds_session_gbps",
        "ratio",
        "ratio_vs_unhashed",
        "ratio_vs_written",
        "ratio_session",
        "peak_rss_mib",
    ] {
        assert!(line[k].as_f64().unwrap() > 0.0, "{k}");
    }
    // Every temporary file and directory made under the output directory is gone.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn negotiate_makes_count_durable_agreements_and_prints_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let line = json_line(&[
        "negotiate",
        "--count",
        "20",
        "--concurrency",
        "4",
        "--warmup",
        "2",
        "--raw",
        "20",
        "--dir",
        data,
    ]);
    for k in [
        "count",
        "concurrency",
        "warmup",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "max_ms",
        "per_sec",
        "agreements",
        "provider_stored",
        "consumer_stored",
        "provider_log_events",
        "consumer_log_events",
        "raw_rtt_ms",
        "raw_per_sec",
        "raw_signed_rtt_ms",
        "raw_signed_per_sec",
        "raw_commit_ms",
        "floor_ms",
        "ratio_vs_rtt",
        "ratio_vs_floor",
        "ratio_vs_raw_per_sec",
    ] {
        assert!(line.contains_key(k), "{k} missing from {line:?}");
    }
    assert_eq!(line["count"], 20);
    assert_eq!(line["concurrency"], 4);
    assert_eq!(line["warmup"], 2);
    // The 20 timed negotiations made 20 agreements; with the 2 of the warm-up, both
    // sides hold 22 in their stores, and each logged one event per agreement (the
    // provider also logged its asset and offer).
    assert_eq!(line["agreements"], 20);
    assert_eq!(line["provider_stored"], 22);
    assert_eq!(line["consumer_stored"], 22);
    assert!(line["provider_log_events"].as_u64().unwrap() >= 22 + 2);
    assert!(line["consumer_log_events"].as_u64().unwrap() >= 22);
    for k in ["p50_ms", "p99_ms", "per_sec", "raw_rtt_ms", "raw_commit_ms"] {
        assert!(line[k].as_f64().unwrap() > 0.0, "{k}");
    }
    assert!(line["p50_ms"].as_f64() <= line["p99_ms"].as_f64());
    // The data directories were made where asked.
    assert!(dir.path().join("provider/connector.redb").exists());
    assert!(dir.path().join("consumer/log").is_dir());
}

#[test]
fn handshake_compares_tds_with_raw_quinn() {
    let line = json_line(&["handshake", "--connections", "3"]);
    assert_eq!(line["connections"], 3);
    for k in ["tds_median_ms", "raw_quinn_median_ms", "ratio"] {
        assert!(line[k].as_f64().unwrap() > 0.0, "{k}");
    }
}

#[test]
fn catalog_searches_a_provider_and_the_federated_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let line = json_line(&[
        "catalog",
        "--assets",
        "40",
        "--queries",
        "3",
        "--providers",
        "3",
        "--raw",
        "5",
        "--dir",
        data,
    ]);
    for k in [
        "assets",
        "queries",
        "few_matches",
        "many_page_items",
        "many_page_bytes",
        "publish_s",
        "cold_search_ms",
        "few_first_ms",
        "few_p50_ms",
        "few_p99_ms",
        "many_first_ms",
        "many_p50_ms",
        "many_p99_ms",
        "check_page_ms",
        "federated_providers",
        "federated_entries",
        "federated_max_catalog",
        "federated_max_per_provider",
        "federated_few_matches",
        "federated_many_page_items",
        "federated_few_p50_ms",
        "federated_many_p50_ms",
        "raw_rtt_ms",
        "raw_page_rtt_ms",
        "few_ratio_vs_rtt",
        "many_ratio_vs_page_rtt",
    ] {
        assert!(line.contains_key(k), "{k} missing from {line:?}");
    }
    // 40 assets: every `lot-K` keyword is on 5 of them, every period word in a quarter
    // of the titles; all 40 reached the federated catalog from 3 providers.
    assert_eq!(line["assets"], 40);
    assert_eq!(line["few_matches"], 5);
    assert_eq!(line["many_page_items"], 10);
    assert_eq!(line["federated_entries"], 40);
    assert_eq!(line["federated_providers"], 3);
    assert_eq!(line["federated_few_matches"], 5);
    assert_eq!(line["federated_many_page_items"], 10);
    assert!(line["many_page_bytes"].as_u64().unwrap() > 0);
    // The data directories were made where asked.
    assert!(dir.path().join("provider/connector.redb").exists());
    assert!(dir.path().join("authority").is_dir());
}
