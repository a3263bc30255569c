//! The TDS connector: what integrators embed to take part in a data space.
//!
//! The connector API (publish, catalog, negotiate, fetch, enforce, record) comes in
//! issue 11. For now this crate holds its storage layer, [`store`]: a key-value
//! [`Store`](store::Store) trait over bytes, an in-memory backend for tests and the
//! embedded redb backend with group commit (decision 0015).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod store;
pub mod usage;
