//! A minimal provider: publishes one file under a research-only offer and serves it.
//!
//! ```text
//! cargo run -p tds-examples --example provider -- FILE DIR
//! ```
//!
//! Writes `DIR/provider.addr` (where it listens) and `DIR/offer.cose` (the signed offer a
//! consumer negotiates), then serves until Ctrl-C. Its state (store, provenance log,
//! chunk tree) is in `DIR/provider/`. Run the `consumer` example with the same `DIR`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tds_connector::{Connector, OfferTerms, Source};
use tds_core::time::DAY_MS;
use tds_core::{Signer, Timestamp};
use tds_examples::demo;
use tds_identity::{ParticipantId, Sector};
use tds_manifest::content::{ChunkSize, ContentBuilder};
use tds_manifest::{Classification, Manifest, PersonalInfo, MANIFEST_VERSION};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let file = PathBuf::from(args.next().context("usage: provider FILE DIR")?);
    let dir = PathBuf::from(args.next().context("usage: provider FILE DIR")?);
    let provider = start(&file, &dir).await?;
    println!("serving at {}; Ctrl-C to stop", provider.local_addr()?);
    tokio::signal::ctrl_c().await?;
    provider.shutdown().await;
    Ok(())
}

/// Starts the provider, publishes `file` and writes the address and offer into `dir`.
pub async fn start(file: &Path, dir: &Path) -> Result<Connector> {
    let now = Timestamp::now();
    let me = demo::member(1, "Shanxi Grid", Sector::POWER, now)?;
    let key = me.key.clone();
    let connector = Connector::builder(me.key, me.credential, me.trust)
        .revocation_list(me.crl)
        .data_dir(dir.join("provider"))
        .start()
        .await?;

    // The manifest: what the asset is, and the Merkle root of its bytes, signed.
    let chunk = ChunkSize::new(1 << 20)?;
    let content = ContentBuilder::new(chunk, std::num::NonZeroUsize::MIN)
        .build_file(&std::fs::File::open(file).with_context(|| file.display().to_string())?)?;
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        title: "Feeder load".into(),
        description: "Quarter-hourly load of the feeders".into(),
        sector: Sector::POWER,
        media_type: "application/octet-stream".into(),
        schema: None,
        keywords: vec!["load".into()],
        owner: ParticipantId::of(&key.public_key()),
        owner_key: key.public_key(),
        created: now,
        classification: Classification::General,
        personal: PersonalInfo::None,
        residency: None,
        content,
        lineage: vec![],
        supersedes: None,
        quality: None,
    }
    .sign(key.as_ref())?;

    // One offer: any use for research, at most 10 times, delete within 30 days.
    let policy = tds_policy::parse(
        "offer",
        "policy set;\n\npermit use\n  when purpose isA research and count lteq 10\n  duty delete(within 30d);\n",
    )?;
    let published = connector
        .publish(
            &manifest,
            Source::File(file.to_path_buf()),
            vec![OfferTerms {
                policy,
                price: None,
                not_before: now,
                not_after: now.saturating_add_millis(DAY_MS),
                licence: None,
            }],
        )
        .await?;
    println!(
        "published {} with offer {:?}",
        published.asset, published.offers
    );

    // The consumer finds the offer in the catalog; the example also leaves it in a file.
    let offer = connector
        .offer(published.offers.first().context("no offer")?)?
        .context("the offer is stored")?;
    std::fs::write(dir.join("offer.cose"), offer)?;
    std::fs::write(
        dir.join("provider.addr"),
        connector.local_addr()?.to_string(),
    )?;
    Ok(connector)
}
