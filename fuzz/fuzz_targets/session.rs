//! The protocol session as a state machine: the input is a script (`tds_fuzz::protocol`)
//! of honest calls of either side, messages built from fuzzer-chosen fields with the real
//! process ids, offers, requests, agreements, notices and manifest, raw frames, clock and
//! network steps, played in a fresh `Sim` of a provider and a consumer. After every step:
//! no panic; every reported state change is an arrow of the DSP tables
//! (`state::negotiation_next` / `transfer_next`), every process starts in REQUESTED and
//! never leaves FINALIZED, COMPLETED or TERMINATED; the sessions' states are the last
//! reported ones; a finalized agreement is between these two parties and both sides
//! finalize the same one; every chunk the consumer stored is the asset's, and no verified
//! chunk is asked for again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tds_fuzz::protocol::run(data);
});
