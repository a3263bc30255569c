//! `tds-join/1`, the one path open to anyone: admission frames and signed admission
//! requests. Decoding never panics; an accepted frame encodes back to exactly its bytes;
//! a verified request is signed by the TLS key it arrived on, passes its field rules and
//! is fresh.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tds_core::{cbor, cose};
use tds_fuzz::licence::NOW;
use tds_transport::join::{verify_request, AdmissionRequest, JoinMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = JoinMessage::decode_frame(data) {
        let again = m.encode_frame().expect("a decoded message encodes");
        assert_eq!(again, data, "the frame does not re-encode to its bytes");
    }
    if let Ok(r) = cbor::decode::<AdmissionRequest>(data) {
        assert_eq!(cbor::encode(&r).expect("encodes"), data);
    }
    let tls = tds_fuzz::key().public_key();
    let source = std::net::SocketAddr::from(([127, 0, 0, 1], 7000));
    if let Ok(v) = verify_request(data, &tls, NOW, Duration::from_secs(300), source) {
        let r = v.request();
        assert_eq!(
            r.applicant_key, tls,
            "accepted a request not signed by the TLS key"
        );
        assert!(
            r.check().is_ok(),
            "accepted a request breaking its field rules"
        );
        let skew = if r.time > NOW {
            r.time.millis_since(NOW)
        } else {
            NOW.millis_since(r.time)
        };
        assert!(skew <= 300_000, "accepted a stale request");
        assert_eq!(v.envelope(), data);
        assert!(cose::open::<AdmissionRequest>(data).is_ok());
    }
});
