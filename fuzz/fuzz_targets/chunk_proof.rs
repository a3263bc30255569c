//! Chunk proofs and verifier states against a fixed asset: decoding never panics, what
//! decodes re-encodes to the same bytes, and a chunk the verifier accepts is exactly the
//! committed chunk at that index (no second preimage through a crafted proof).
//!
//! Input: `[n_hi, n_lo] ‖ proof (n bytes) ‖ chunk`. The whole input is also tried as a
//! proof and as a verifier state.
#![no_main]

use std::num::NonZeroUsize;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tds_manifest::content::{ChunkProof, ChunkSize, ChunkVerifier, ContentBuilder, VerifierState};
use tds_manifest::Commitment;

/// The fixed asset: 5 chunks of 64 bytes and a 10-byte sixth (`tds_fuzz::ASSET_*`).
fn asset() -> &'static (Vec<u8>, Commitment) {
    static ASSET: OnceLock<(Vec<u8>, Commitment)> = OnceLock::new();
    ASSET.get_or_init(|| {
        let data = tds_fuzz::chunk_asset();
        let cs = ChunkSize::for_tests(tds_fuzz::ASSET_CHUNK_SIZE).expect("chunk size");
        let c = ContentBuilder::new(cs, NonZeroUsize::MIN)
            .build(&data[..])
            .expect("commitment");
        (data, c)
    })
}

fuzz_target!(|data: &[u8]| {
    let (asset, c) = asset();
    if let Ok(p) = ChunkProof::from_bytes(data) {
        assert_eq!(p.to_bytes().expect("a decoded proof must encode"), data);
    }
    if let Ok(state) = VerifierState::from_bytes(data) {
        assert_eq!(state.to_bytes().expect("a decoded state must encode"), data);
        if let Ok(v) = ChunkVerifier::resume(c, &state) {
            assert_eq!(v.state(), state, "resume then save changed the state");
            assert!(v.verified_count() <= c.chunks);
        }
    }
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let n = usize::from(u16::from_be_bytes(*len));
    let Some((proof, chunk)) = rest.split_at_checked(n) else {
        return;
    };
    let Ok(proof) = ChunkProof::from_bytes(proof) else {
        return;
    };
    let mut v = ChunkVerifier::new(c).expect("verifier");
    match v.verify(chunk, &proof) {
        Ok(ok) => {
            let start = c.chunk_offset(proof.index) as usize;
            let end = start + c.chunk_len(proof.index).expect("index in range") as usize;
            assert_eq!(
                ok.data(),
                &asset[start..end],
                "accepted a chunk that is not the committed one"
            );
            assert_eq!(ok.index(), proof.index);
            assert!(v.is_verified(proof.index));
        }
        Err(e) => {
            assert!(
                e.to_string().contains(&format!("chunk {}", proof.index)),
                "{e}"
            );
            assert_eq!(v.verified_count(), 0);
        }
    }
});
