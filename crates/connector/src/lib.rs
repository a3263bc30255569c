//! The TDS connector: what integrators embed to take part in a data space.
//!
//! A [`Connector`] is one participant: it publishes assets under offers, answers
//! catalog queries, negotiates agreements, serves and fetches verified transfers over
//! QUIC, re-checks every agreement at every transfer, and records each step in its
//! provenance log. State lives in a [`Store`](store::Store) (redb in the data directory,
//! or memory for tests) with group commit (decision 0015); the shape of the connector is
//! decision 0016; what is enforced where is `spec/enforcement.md`.
//!
//! # A provider and a consumer
//!
//! ```no_run
//! use std::sync::Arc;
//! use tds_connector::{Connector, FetchOptions, OfferTerms, Source};
//! use tds_core::SigningKey;
//! use tds_identity::TrustStore;
//! use tds_policy::Action;
//!
//! # async fn demo(
//! #     provider_key: Arc<SigningKey>, provider_credential: Vec<u8>,
//! #     consumer_key: Arc<SigningKey>, consumer_credential: Vec<u8>,
//! #     trust: TrustStore, manifest: Vec<u8>, terms: OfferTerms,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! // The provider: a key, its membership credential, the authorities it trusts.
//! let provider = Connector::builder(provider_key, provider_credential, trust.clone())
//!     .data_dir("/var/lib/tds/grid")
//!     .listen("0.0.0.0:7443".parse()?)
//!     .start()
//!     .await?;
//! // Publish a file under its signed manifest and one offer (policy, price, validity).
//! let published = provider
//!     .publish(&manifest, Source::File("load-2026.parquet".into()), vec![terms])
//!     .await?;
//! println!("published {}", published.asset);
//!
//! // The consumer: finds the offer, negotiates, fetches, and uses under the guard.
//! let consumer = Connector::builder(consumer_key, consumer_credential, trust)
//!     .data_dir("/var/lib/tds/bank")
//!     .start()
//!     .await?;
//! let addr = "203.0.113.7:7443".parse()?;
//! let catalog = consumer.catalog_all(addr, Default::default()).await?;
//! let offer = &catalog.first().ok_or("empty catalog")?.offer_bytes;
//! let agreement = consumer.negotiate(addr, offer, None, "research".parse()?).await?;
//! let receipt = consumer
//!     .fetch(addr, &agreement.id(), FetchOptions::new("load.parquet", "research".parse()?))
//!     .await?;
//! println!("{} bytes, every chunk verified", receipt.size);
//! consumer
//!     .guard()
//!     .check_use(&agreement.id(), Action::Use, &"research".parse()?)?;
//! # Ok(())
//! # }
//! ```
//!
//! Runnable versions: `cargo run -p tds-examples --example provider -- FILE DIR` and
//! `cargo run -p tds-examples --example consumer -- DIR OUT`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod app;
pub mod backup;
mod catalog;
mod connector;
mod core;
mod error;
pub mod events;
pub mod records;
mod recover;
pub mod source;
pub mod store;
pub mod usage;

pub use app::{CatalogPage, ProgressFn};
pub use connector::{
    Connector, ConnectorBuilder, ConnectorConfig, FetchOptions, OfferTerms, Published, Receipt,
};
pub use core::ConnectorLog;
pub use error::ConnectorError;
pub use events::{Alert, AlertKind, ConnectorEvent};
pub use records::Side;
pub use source::{BytesSource, DataSink, DataSource, DirSource, FileSource, Source};
pub use usage::{UsageGuard, UseDenied, UseGrant};
