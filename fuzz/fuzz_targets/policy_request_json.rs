//! The strict JSON reader (`json::parse_strict`, which refuses duplicate keys) and request
//! files: never panic; what the strict reader accepts, serde_json reads the same, and it
//! reads its own output back unchanged (floats aside: serde_json's default float parsing
//! does not round-trip every float, and policies have none); an accepted request writes to
//! JSON that reads back to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_policy::json::{parse_strict, request_from_json, request_from_str, request_to_json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = parse_strict(text) {
        let loose: serde_json::Value = serde_json::from_str(text).expect("strict JSON is JSON");
        assert_eq!(loose, v);
        let again = serde_json::to_string(&v).expect("a value prints");
        let back = parse_strict(&again).expect("printed JSON reads back");
        if !has_float(&v) {
            assert_eq!(back, v);
        }
    }
    if let Ok(r) = request_from_str(text) {
        let j = request_to_json(&r);
        assert_eq!(
            request_from_json(&j).expect("a written request reads back"),
            r
        );
    }
});

fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(a) => a.iter().any(has_float),
        serde_json::Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}
