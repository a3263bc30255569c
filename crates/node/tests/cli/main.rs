//! The `tds` binary, run for real in temporary directories: one integration-test binary
//! (as ripgrep's `tests/`) with a shared helper module. Output formats are a contract;
//! these tests pin them. Regression tests are named after the finding they fix.

// The helpers below are test code too; clippy's test exemptions only reach #[test] fns.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

mod util;

mod adversarial;
mod backup;
mod faults;
mod identity;
mod log;
mod manifest;
mod node;
mod policy;
mod walkthrough;
