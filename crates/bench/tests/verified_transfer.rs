//! A TDS verified transfer over real QUIC on loopback, through the connector API: two
//! connectors with durable state negotiate an agreement and the consumer fetches the
//! asset chunk by chunk into a file, every chunk verified against the manifest's root;
//! the bytes in the file are the bytes sent. The same through bare protocol sessions.
//! 8 MiB (less a partial chunk) by default, 64 MiB with `TDS_TEST_SCALE=full`.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use tds_bench::net::{source_digest, tds_session_transfer, tds_transfer, Keep, TransferBench};

fn bench() -> TransferBench {
    let full = std::env::var("TDS_TEST_SCALE").is_ok_and(|v| v == "full");
    let mib = if full { 64 } else { 8 };
    TransferBench {
        size: mib * 1024 * 1024 - 1000,
        chunk: 1024 * 1024,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn check(bench: TransferBench, gbps: f64, bytes: Option<Vec<u8>>) {
    let bytes = bytes.unwrap();
    assert_eq!(bytes.len() as u64, bench.size);
    let got = ring::digest::digest(&ring::digest::SHA256, &bytes);
    assert_eq!(got.as_ref(), source_digest(bench).as_slice());
    assert!(gbps > 0.0);
}

#[test]
fn a_verified_connector_fetch_over_quic_arrives_identical() {
    let bench = bench();
    let (gbps, bytes) = runtime()
        .block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(120),
                tds_transfer(bench, Keep::All),
            )
            .await
        })
        .unwrap()
        .unwrap();
    check(bench, gbps, bytes);
}

#[test]
fn a_verified_session_transfer_over_quic_arrives_identical() {
    let bench = bench();
    let (gbps, bytes) = runtime()
        .block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(120),
                tds_session_transfer(bench, Keep::All),
            )
            .await
        })
        .unwrap()
        .unwrap();
    check(bench, gbps, bytes);
}
