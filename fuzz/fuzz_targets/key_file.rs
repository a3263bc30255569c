//! Encrypted key files: opening arbitrary text never panics and never spends more than the
//! cost cap; an opened key is the public key the file names, and sealing it again opens
//! to the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_core::key::{KdfCost, Passphrase};
use tds_core::SigningKey;

/// Costs the target lets a file ask for (the product allows up to `KdfCost::MAX`).
const CAP: KdfCost = KdfCost {
    m_kib: 256,
    t: 2,
    p: 2,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let pass = Passphrase::new("fuzz passphrase");
    if let Ok(key) = SigningKey::from_encrypted_pem(text, &pass, CAP) {
        let again = key
            .to_encrypted_pem(
                &pass,
                KdfCost {
                    m_kib: 8,
                    t: 1,
                    p: 1,
                },
            )
            .expect("an opened key seals again");
        let back = SigningKey::from_encrypted_pem(&again, &pass, CAP).expect("and opens");
        assert_eq!(back.public_key(), key.public_key());
    }
});
