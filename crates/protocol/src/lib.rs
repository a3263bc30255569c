//! The TDS connector protocol without I/O.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod frame;
pub mod message;

pub use error::ProtocolError;
pub use message::{Message, Pid, Refusal};
