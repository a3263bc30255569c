#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod catalog;
pub mod client;
pub mod error;
pub mod message;
mod records;
pub mod service;

pub use client::{apply, Application, AuthorityClient, ClientOptions, FetchedRevocationList};
pub use error::AuthorityError;
pub use message::{Reply, Request, SearchRequest};
pub use records::FILE_NAME as RECORDS_FILE;
pub use service::{
    Approved, AuthorityConfig, AuthorityService, PendingRequest, RevokeTarget, Revoked, Validity,
};
pub use tds_protocol::message::{CatalogFilter, CatalogItem, CatalogPageMsg};
