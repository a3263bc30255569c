//! Faults and crashes (issue 13): network faults on real QUIC through a UDP relay,
//! SIGKILLed nodes across real processes, full and read-only disks. Sizes and counts
//! scale with `TDS_TEST_SCALE` (`full`: the figures).

#[path = "../connector/common.rs"]
#[expect(
    dead_code,
    reason = "the connector suite's helpers; this binary uses part of them"
)]
mod common;
mod crash;
mod disk;
#[path = "../shared/full_store.rs"]
mod full_store;
mod network;
mod relay;
