#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod connection;
pub mod driver;
mod endpoint;
pub mod error;
pub mod join;
pub mod service;
pub mod tls;
mod wire;

pub use config::TransportConfig;
pub use connection::{Connection, Reply, Responder};
pub use driver::{Driver, SessionApp};
pub use endpoint::{
    Endpoint, EndpointBuilder, LocalIdentity, RefusalObserver, RevocationOutcome, SharedTrust,
};
pub use error::{close, Closer, HelloError, JoinError, TransportError};
pub use join::{AdmissionHandler, AdmissionReply, AdmissionRequest, JoinConnection, JoinLimits};
pub use service::{
    ServiceConnection, ServiceEndpoint, ServiceEndpointBuilder, ServiceHandler, ServiceLimits,
};
pub use wire::{stream_code, ChunkReply};
