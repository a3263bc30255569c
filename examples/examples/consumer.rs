//! A minimal consumer: negotiates the provider's offer, fetches the asset, uses it
//! under the usage guard, and deletes it.
//!
//! ```text
//! cargo run -p tds-examples --example consumer -- DIR OUT
//! ```
//!
//! Reads `DIR/provider.addr` and `DIR/offer.cose` (written by the `provider` example).
//! Its state is in `DIR/consumer/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tds_connector::{Connector, FetchOptions, Receipt};
use tds_core::Timestamp;
use tds_examples::demo;
use tds_identity::Sector;
use tds_policy::Action;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("usage: consumer DIR OUT")?);
    let out = PathBuf::from(args.next().context("usage: consumer DIR OUT")?);
    let receipt = run(&dir, &out).await?;
    println!(
        "fetched {} bytes into {} ({} resumed)",
        receipt.size,
        receipt.out.display(),
        receipt.resumed
    );
    Ok(())
}

/// Negotiates, fetches into `out`, uses the data once, and (when `delete`) deletes it.
pub async fn run(dir: &Path, out: &Path) -> Result<Receipt> {
    let me = demo::member(2, "Jinzhong Bank", Sector::FINANCE, Timestamp::now())?;
    let consumer = Connector::builder(me.key, me.credential, me.trust)
        .revocation_list(me.crl)
        .data_dir(dir.join("consumer"))
        .start()
        .await?;
    let addr = std::fs::read_to_string(dir.join("provider.addr"))?
        .trim()
        .parse()?;
    let offer = std::fs::read(dir.join("offer.cose"))?;

    // Negotiate: the agreement comes back signed by both, stored and logged.
    let agreement = consumer
        .negotiate(addr, &offer, None, "research".parse()?)
        .await?;
    println!("agreement {}", agreement.id());

    // Fetch: every chunk verified before it is written; re-running resumes.
    let receipt = consumer
        .fetch(
            addr,
            &agreement.id(),
            FetchOptions::new(out, "research".parse()?),
        )
        .await?;

    // Use it: the guard counts uses and refuses those the agreement does not permit.
    let grant = consumer
        .guard()
        .check_use(&agreement.id(), Action::Use, &"research".parse()?)?;
    println!(
        "use {} granted; duties: {:?}",
        grant.use_number, grant.duties
    );

    // Done with it: delete the copy and send the provider a signed deletion receipt.
    consumer.delete(addr, &agreement.id()).await?;
    consumer.shutdown().await;
    Ok(receipt)
}
