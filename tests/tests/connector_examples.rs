//! The `provider` and `consumer` examples, run against each other as a test: the
//! consumer negotiates, fetches (bytes identical), uses and deletes.

#[expect(dead_code, reason = "the example's main is not called here")]
#[path = "../../examples/examples/provider.rs"]
mod provider;

#[expect(dead_code, reason = "the example's main is not called here")]
#[path = "../../examples/examples/consumer.rs"]
mod consumer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_and_consumer_examples_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let asset = dir.path().join("asset.bin");
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&asset, &bytes)?;
    let p = provider::start(&asset, dir.path()).await?;
    let out = dir.path().join("out.bin");
    let receipt = consumer::run(dir.path(), &out).await?;
    assert_eq!(receipt.size, bytes.len() as u64);
    assert_eq!(receipt.fetched, bytes.len() as u64);
    // The consumer deleted its copy at the end, and the provider logged the receipt.
    assert!(!out.exists());
    // The provider logs the transfer's end as it records the use (just after the
    // consumer has its receipt).
    let log = p.log();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let kinds = loop {
        let mut kinds = Vec::new();
        for i in 0..log.size() {
            kinds.push(log.event(i)?.kind().to_owned());
        }
        if kinds.iter().any(|k| k == "duty_fulfilled") || std::time::Instant::now() > deadline {
            break kinds;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    for k in [
        "asset_published",
        "offer_published",
        "agreement_concluded",
        "transfer_started",
        "transfer_completed",
        "duty_fulfilled",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    p.shutdown().await;
    Ok(())
}
