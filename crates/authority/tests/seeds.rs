//! The fuzz seeds of `authority_message` (fuzz/seeds/authority_message) are messages the
//! decoders accept, so fuzzing starts from valid inputs.

use tds_authority::message::{Reply, Request};

#[test]
fn every_seed_decodes_and_round_trips() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/authority_message");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let bytes = std::fs::read(&path)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.starts_with("request_") {
            let r = Request::decode(&bytes).map_err(|e| format!("{name}: {e}"))?;
            assert_eq!(r.encode()?, bytes, "{name}");
        } else {
            let r = Reply::decode(&bytes).map_err(|e| format!("{name}: {e}"))?;
            assert_eq!(r.encode()?, bytes, "{name}");
        }
        n += 1;
    }
    assert!(n >= 8, "{n} seeds");
    Ok(())
}
