#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod catalog;
pub mod kv;
pub mod load;
pub mod log;
pub mod negotiate;
pub mod net;
pub mod node;
mod pair;
