//! ODRL JSON import: never panics; whatever it accepts exports to JSON that imports to
//! the same policy, and the policy survives the text form too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(imported) = tds_policy::odrl::import_str(text) else {
        return;
    };
    let p = imported.policy;
    let exported = tds_policy::odrl::export(&p);
    let back = tds_policy::odrl::import(&exported).expect("an export must import");
    // An export groups rules by kind and writes one ODRL obligation per duty; one more
    // round trip must change nothing.
    let again = tds_policy::odrl::import(&tds_policy::odrl::export(&back.policy))
        .expect("an export must import");
    assert_eq!(again.policy, back.policy);
    let formatted = tds_policy::format(&p);
    assert_eq!(
        tds_policy::parse("fuzz", &formatted).expect("text form parses"),
        p
    );
});
