//! `spec/reasons.md` lists every machine-readable error code the crates produce (the
//! `tds_core::ErrorCode` vocabulary, shared by the future wire reason codes and the
//! provenance log's `access_denied` reasons): exactly those, each well-formed.
//! `TDS_PRINT_CODES=1 cargo test -p tds-spec --test reasons -- --nocapture` prints the
//! codes found in the sources.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `=> "a.b"` string in library sources: the arms of `ErrorCode::code` (and the
/// codes `tds-objects` hands to `ObjectError`, written `code: "a.b"`, and the refusals of
/// the protocol, `Refusal::new("a.b", ..)` and `CallError::new("a.b", ..)`).
fn codes_in_sources() -> BTreeSet<String> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let mut codes = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for marker in ["=>", "code:", "Refusal::new(", "CallError::new("] {
            for piece in text.split(marker).skip(1) {
                // `=> "a.b"`, or `=> {` and the code on the next line.
                let piece = piece.trim_start();
                let piece = piece.strip_prefix('{').unwrap_or(piece).trim_start();
                let Some(rest) = piece.strip_prefix('"') else {
                    continue;
                };
                let Some(end) = rest.find('"') else { continue };
                let s = &rest[..end];
                let is_code = s.contains('.')
                    && s.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'
                    });
                if is_code {
                    codes.insert(s.to_owned());
                }
            }
        }
    }
    codes
}

/// The codes in the first column of spec/reasons.md's tables (`` | `a.b` | ... ``).
fn codes_in_spec() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("reasons.md")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn reasons_md_lists_exactly_the_codes_in_the_sources() {
    let found = codes_in_sources();
    if std::env::var_os("TDS_PRINT_CODES").is_some() {
        for c in &found {
            println!("{c}");
        }
    }
    assert!(found.len() > 100, "only {} codes found", found.len());
    for c in &found {
        assert!(tds_core::code::is_well_formed(c), "malformed code {c}");
    }
    let listed = codes_in_spec();
    let missing: Vec<_> = found.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&found).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "spec/reasons.md misses {missing:?} and lists codes no crate produces: {stale:?}"
    );
}
