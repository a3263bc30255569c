//! The TDS connector: what integrators embed to take part in a data space.
//!
//! A [`Connector`] is one participant: it publishes assets under offers, answers
//! catalog queries, negotiates agreements, serves and fetches verified transfers over
//! QUIC, re-checks every agreement at every transfer, and records each step in its
//! provenance log. State lives in a [`Store`](store::Store) (redb in the data directory,
//! or memory for tests) with group commit (decision 0015).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod app;
mod connector;
mod core;
mod error;
pub mod events;
pub mod records;
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
pub use source::{BytesSource, DataSource, DirSource, FileSource, Source};
pub use usage::{UsageGuard, UseDenied, UseGrant};
