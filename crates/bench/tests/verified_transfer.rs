//! A TDS verified transfer over real QUIC on loopback: two members negotiate an
//! agreement and move a 64 MiB asset chunk by chunk, every chunk verified against the
//! manifest's root; the bytes that arrive are the bytes sent.

use tds_bench::net::{source_digest, tds_transfer, Keep, TransferBench};

#[test]
fn a_64_mib_verified_transfer_over_quic_arrives_identical() {
    let bench = TransferBench {
        size: 64 * 1024 * 1024 - 1000,
        chunk: 1024 * 1024,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (gbps, bytes) = runtime
        .block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(120),
                tds_transfer(bench, Keep::All),
            )
            .await
        })
        .unwrap()
        .unwrap();
    let bytes = bytes.unwrap();
    assert_eq!(bytes.len() as u64, bench.size);
    let got = ring::digest::digest(&ring::digest::SHA256, &bytes);
    assert_eq!(got.as_ref(), source_digest(bench).as_slice());
    assert!(gbps > 0.0);
}
