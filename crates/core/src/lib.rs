#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cbor;
pub mod code;
pub mod cose;
pub mod fs;
pub mod hash;
pub mod key;
pub mod merkle;
pub mod rand;
pub mod time;

pub use code::ErrorCode;
pub use hash::{Domain, Hash256};
pub use key::{PublicKey, SignError, Signer, SigningKey};
pub use time::{Clock, Timestamp};
