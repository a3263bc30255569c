//! Signed notes, checkpoints and verifier keys: the strict parsers never panic, an
//! accepted note prints back to exactly the input, and nothing verifies under a key
//! that did not sign it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::key::SigningKey;
use tds_provenance::note::{self, Checkpoint, Note, VerifierKey, TYPE_COSIGNATURE, TYPE_ED25519};

fn keys() -> &'static (VerifierKey, VerifierKey) {
    static K: std::sync::OnceLock<(VerifierKey, VerifierKey)> = std::sync::OnceLock::new();
    K.get_or_init(|| {
        let k = SigningKey::from_seed(&[0x42; 32]);
        (
            VerifierKey::new("example.com/log", TYPE_ED25519, k.public_key()).unwrap(),
            VerifierKey::new("example.com/log", TYPE_COSIGNATURE, k.public_key()).unwrap(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (vk, ck) = keys();
    if let Ok(n) = Note::parse(data) {
        assert_eq!(
            n.to_text().as_bytes(),
            data,
            "parse then print must give the input"
        );
        if note::verify(&n, vk).is_ok() {
            assert!(n
                .signatures
                .iter()
                .any(|s| s.name == vk.name && s.key_id == vk.key_id));
        }
        let _ = note::verify_cosignature(&n, ck);
        if let Ok(cp) = Checkpoint::parse(&n.text) {
            assert_eq!(cp.to_text(), n.text, "checkpoint text must round-trip");
        }
    }
    let _ = note::verify_checkpoint(data, vk);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(k) = VerifierKey::parse(s) {
            assert_eq!(k.to_string(), s.trim_end_matches('\n'));
        }
    }
});
