//! The post-agreement signed objects (usage reports, deletion receipts, usage records):
//! `verify_usage_report` / `verify_deletion_receipt` / `verify_usage_record` with the
//! fixed key never panic; a verified object's envelope is the input, its id is its
//! domain's hash of the payload, it names the fixed key, and it signs again to an object
//! that verifies to the same value and id. The same bytes as a payload: a decoded object
//! re-encodes to exactly the input, and, made the fixed key's, either signs and verifies
//! back to itself or is refused by its rules alike when signed and when verified.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::{cbor, cose, ErrorCode as _, Hash256};
use tds_protocol::signed::{self, DeletionReceipt, UsageRecord, UsageReport};

fuzz_target!(|data: &[u8]| {
    let key = tds_fuzz::key();
    let pk = key.public_key();

    if let Ok(v) = signed::verify_usage_report(data, &pk) {
        assert_eq!(v.envelope(), data);
        assert_eq!(v.report().id().ok(), Some(v.id()));
        assert_eq!(v.report().consumer, pk.id());
        let again = signed::sign_usage_report(&key, v.report()).expect("a verified report signs");
        let back = signed::verify_usage_report(&again, &pk).expect("and verifies");
        assert_eq!(back.report(), v.report());
        assert_eq!(back.id(), v.id());
    }
    if let Ok(v) = signed::verify_deletion_receipt(data, &pk) {
        assert_eq!(v.envelope(), data);
        assert_eq!(v.receipt().id().ok(), Some(v.id()));
        assert_eq!(v.receipt().consumer, pk.id());
        let again =
            signed::sign_deletion_receipt(&key, v.receipt()).expect("a verified receipt signs");
        let back = signed::verify_deletion_receipt(&again, &pk).expect("and verifies");
        assert_eq!(back.receipt(), v.receipt());
        assert_eq!(back.id(), v.id());
    }
    if let Ok(v) = signed::verify_usage_record(data, &pk) {
        assert_eq!(v.envelope(), data);
        assert_eq!(v.record().id().ok(), Some(v.id()));
        let r = v.record();
        assert_eq!(r.recorder, pk.id());
        assert!(r.recorder == r.provider || r.recorder == r.consumer);
        assert_ne!(r.provider, r.consumer);
        let again = signed::sign_usage_record(&key, r).expect("a verified record signs");
        let back = signed::verify_usage_record(&again, &pk).expect("and verifies");
        assert_eq!(back.record(), r);
        assert_eq!(back.id(), v.id());
    }

    if let Ok(mut r) = cbor::decode::<UsageReport>(data) {
        assert_eq!(cbor::encode(&r).expect("encodes"), data);
        r.consumer = key.id();
        r.consumer_key = pk;
        round_trip(
            &r,
            signed::sign_usage_report(&key, &r),
            |b| signed::verify_usage_report(b, &pk).map(|v| (v.report().clone(), v.id())),
            r.id().expect("an id"),
        );
    }
    if let Ok(mut r) = cbor::decode::<DeletionReceipt>(data) {
        assert_eq!(cbor::encode(&r).expect("encodes"), data);
        r.consumer = key.id();
        r.consumer_key = pk;
        round_trip(
            &r,
            signed::sign_deletion_receipt(&key, &r),
            |b| signed::verify_deletion_receipt(b, &pk).map(|v| (v.receipt().clone(), v.id())),
            r.id().expect("an id"),
        );
    }
    if let Ok(mut r) = cbor::decode::<UsageRecord>(data) {
        assert_eq!(cbor::encode(&r).expect("encodes"), data);
        r.recorder = key.id();
        r.recorder_key = pk;
        round_trip(
            &r,
            signed::sign_usage_record(&key, &r),
            |b| signed::verify_usage_record(b, &pk).map(|v| (v.record().clone(), v.id())),
            r.id().expect("an id"),
        );
    }
});

/// `signed` is `value` signed by the fixed key: it verifies back to `value` with `id`; or
/// it was refused by the object's rules, and the same value signed without them is
/// refused alike when verified.
fn round_trip<T>(
    value: &T,
    signed: Result<Vec<u8>, signed::SignedError>,
    verify: impl Fn(&[u8]) -> Result<(T, Hash256), signed::SignedError>,
    id: Hash256,
) where
    T: cose::SignedObject + PartialEq + std::fmt::Debug,
{
    match signed {
        Ok(bytes) => {
            let (back, back_id) = verify(&bytes).expect("a signed object verifies");
            assert_eq!(&back, value);
            assert_eq!(back_id, id);
        }
        Err(e) => {
            assert_eq!(e.code(), "protocol.signed_invalid", "{e}");
            let raw = cose::sign(&tds_fuzz::key(), value).expect("signs without the rules");
            let e2 = verify(&raw).expect_err("refused by its rules");
            let expected = if raw.len() > signed::MAX_SIGNED_LEN {
                "protocol.signed_too_large"
            } else {
                "protocol.signed_invalid"
            };
            assert_eq!(e2.code(), expected, "{e2}");
        }
    }
}
