//! Transport tests, loopback only (127.0.0.1), every network step bounded in time: the
//! TLS profile, the hello and its refusals, revocation during a session, requests and
//! transfers, and the admission path.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

mod common;
mod handshake;
mod join;
mod requests;
mod tls_profile;
