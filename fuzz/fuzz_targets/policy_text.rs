//! The policy text parser: never panics; whatever it accepts formats to a text that
//! parses back to the same policy, and formatting is idempotent; the compiled form and
//! the reference interpreter agree on a fixed request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = tds_policy::parse("fuzz", text) else {
        return;
    };
    let formatted = tds_policy::format(&policy);
    let again = tds_policy::parse("fuzz", &formatted).expect("formatted text must parse");
    assert_eq!(again, policy, "parse(format(p)) != p");
    assert_eq!(
        tds_policy::format(&again),
        formatted,
        "format is not idempotent"
    );
    let bytes = policy.to_cbor().expect("a valid policy encodes");
    assert_eq!(
        tds_policy::Policy::from_cbor(&bytes).expect("its cbor decodes"),
        policy
    );
    if let Ok(compiled) = tds_policy::CompiledPolicy::compile(&policy) {
        for action in tds_policy::Action::ALL {
            let mut r = tds_policy::Request::new(*action);
            r.purpose = "grid/planning".parse().ok();
            r.uses = Some(3);
            assert_eq!(
                compiled.decide(&r).effect,
                tds_policy::evaluate(&policy, &r).effect
            );
        }
    }
});
