//! COSE envelopes: the raw parsers round-trip exactly, and the typed TDS layer never
//! panics and never verifies under a key the envelope does not name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::cose::{self, CoseError, CoseSign, CoseSign1, SignedObject};
use tds_core::key::PublicKey;
use tds_fuzz::{AnyPayload, Note};

fn public_key() -> &'static PublicKey {
    static KEY: std::sync::OnceLock<PublicKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| tds_fuzz::key().public_key())
}

fn single<T: SignedObject>(data: &[u8]) {
    let Ok(opened) = cose::open::<T>(data) else {
        return;
    };
    assert!(
        CoseSign1::from_slice(data).is_ok(),
        "open accepted what the raw parser refuses"
    );
    let payload = opened.payload().to_vec();
    assert_eq!(
        tds_core::cbor::encode(opened.value()).ok(),
        Some(payload.clone())
    );
    let kid = opened.kid();
    let key = public_key();
    match opened.verify(key) {
        Ok(verified) => {
            assert_eq!(kid, key.id(), "verified under a key the kid does not name");
            assert_eq!(verified.envelope(), data);
            assert_eq!(verified.payload(), payload);
        }
        Err(CoseError::KidMismatch { .. }) => assert_ne!(kid, key.id()),
        Err(CoseError::BadSignature) => assert_eq!(kid, key.id()),
        Err(e) => panic!("unexpected verification error: {e}"),
    }
}

fn multi<T: SignedObject>(data: &[u8]) {
    let Ok(opened) = cose::open_multi::<T>(data) else {
        return;
    };
    assert!(
        CoseSign::from_slice(data).is_ok(),
        "open_multi accepted what the raw parser refuses"
    );
    let kids = opened.kids().to_vec();
    let key = public_key();
    if let Ok(verified) = opened.verify(std::slice::from_ref(key)) {
        assert_eq!(
            kids,
            [key.id()],
            "verified under a key the kids do not name"
        );
        assert_eq!(verified.envelope(), data);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = CoseSign1::from_slice(data) {
        assert_eq!(
            m.to_vec().expect("a parsed COSE_Sign1 must serialize"),
            data
        );
        let _ = m.verify_ed25519(&[], public_key());
    }
    if let Ok(m) = CoseSign::from_slice(data) {
        assert_eq!(m.to_vec().expect("a parsed COSE_Sign must serialize"), data);
        let _ = m.verify_ed25519(0, &[], public_key());
    }
    let _ = cose::peek_content_type(data);
    single::<Note>(data);
    single::<AnyPayload>(data);
    multi::<Note>(data);
    multi::<AnyPayload>(data);
});
