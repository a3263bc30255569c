//! Adversarial tests (issue 13): each attack on real components (QUIC on 127.0.0.1,
//! connectors as integrators run them) is refused with its reason code, is logged or
//! raised where the connector records refusals (`access_denied` events, alerts), and
//! leaves the attacked side serving: an honest request succeeds afterwards.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap or index is a failed test"
)]

/// The connector suite's helpers (shared with the `faults` binary); `common` re-exports
/// the ones that are the same here.
#[path = "../connector/common.rs"]
#[expect(
    dead_code,
    reason = "the connector suite's helpers; this binary uses part of them"
)]
mod base;
mod common;
mod credentials;
mod messages;
mod paths;
mod rogue;
mod storage;
mod udp;
mod wire;
