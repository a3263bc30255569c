//! The canonical CBOR form of policies: never panics; what decodes re-encodes to the
//! input exactly and is a valid policy that round-trips through text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = tds_policy::Policy::from_cbor(data) else {
        return;
    };
    assert_eq!(p.to_cbor().expect("a decoded policy encodes"), data);
    let formatted = tds_policy::format(&p);
    assert_eq!(
        tds_policy::parse("fuzz", &formatted).expect("text form parses"),
        p
    );
});
