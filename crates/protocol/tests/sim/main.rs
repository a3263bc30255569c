//! The protocol in the simulation: whole conversations (clean, lossy, cut, hostile) and
//! the DSP TCK cases, for both roles. One test binary, so the fixtures are built once.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap, index or an unexpected result is a failed test"
)]

mod common;
mod conversations;
mod hostile;
mod post_agreement;
mod recheck;
mod services;
mod tck_negotiation;
mod tck_transfer;
