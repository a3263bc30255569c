//! Provenance events: the strict decoder never panics and every accepted event
//! re-encodes to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_provenance::event::{Event, MAX_EVENT_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Event::decode(data) {
        assert!(data.len() <= MAX_EVENT_BYTES);
        let again = e.encode().expect("an accepted event must encode");
        assert_eq!(again, data, "decode then encode must give the input");
        e.check().expect("an accepted event passes its checks");
        let _ = e.kind();
        let _ = e.agreement();
    }
});
