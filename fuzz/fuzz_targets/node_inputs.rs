//! The reference node's own inputs: `config.toml`, admin API request bodies and backup
//! archives (`tds restore` checks one before writing anything). The first byte picks the
//! parser. No panic; an accepted config renders to text that parses to the same config;
//! an accepted archive lists files whose sizes add up (bounded by the manifest limits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tds_node::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Some(same) = fuzzing::config(text) {
                    assert!(same, "a rendered config parses to another config");
                }
            }
        }
        1 => {
            let Some((&op, body)) = rest.split_first() else {
                return;
            };
            let name = fuzzing::ADMIN_OPS[usize::from(op) % fuzzing::ADMIN_OPS.len()];
            let _ = fuzzing::admin_body(name, body);
        }
        _ => {
            if let Ok(total) = fuzzing::backup_archive(rest) {
                assert!(
                    total <= rest.len() as u64,
                    "listed more bytes than the archive holds"
                );
            }
        }
    }
});
