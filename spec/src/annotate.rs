//! CBOR as annotated hex, one data item header per line, in the style of RFC 8949
//! Appendix A's diagnostic comments.
//!
//! ```
//! let text = tds_spec::annotate::annotate(&[0xa1, 0x61, 0x6e, 0x01])?;
//! assert_eq!(
//!     text,
//!     "a1      # map(1)\n  61 6e #   text(1) \"n\"\n  01    #   unsigned 1\n"
//! );
//! # Ok::<(), tds_spec::SpecError>(())
//! ```
//!
//! A byte string that holds one canonical CBOR map or array (a COSE protected header, a
//! payload) is annotated item by item beneath its header. Long byte strings are split
//! into lines of [`CHUNK`] bytes. The output is read back by
//! [`crate::markdown::hex_block_bytes`], which keeps only the hex before each `#`.

use tds_core::cbor::{self, Limits, Major, Reader};

use crate::SpecError;

/// Bytes per line for long byte strings.
pub const CHUNK: usize = 16;

/// Text strings up to this many bytes stay on their header's line.
const INLINE_TEXT: usize = 16;

struct Line {
    depth: usize,
    hex: String,
    note: String,
}

/// Annotates exactly one CBOR data item (definite lengths; tags allowed).
pub fn annotate(bytes: &[u8]) -> Result<String, SpecError> {
    let mut lines = Vec::new();
    let mut r = Reader::new(bytes);
    item(&mut r, 0, &mut lines)?;
    r.finish()?;
    Ok(render(&lines))
}

/// Annotates a COSE header map: integer labels 1 to 4 and the alg value get their names.
pub fn annotate_header(bytes: &[u8]) -> Result<String, SpecError> {
    let mut lines = Vec::new();
    let mut r = Reader::new(bytes);
    item_with(&mut r, 0, &mut lines, None, Hint::Header)?;
    r.finish()?;
    Ok(render(&lines))
}

/// Plain hex, [`CHUNK`] bytes to a line, for values that are not CBOR (keys, signatures).
pub fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(CHUNK)
        .map(|c| format!("{}\n", hex::encode(c)))
        .collect()
}

fn render(lines: &[Line]) -> String {
    let width = lines
        .iter()
        .map(|l| 2 * l.depth + l.hex.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for l in lines {
        let code = format!("{}{}", "  ".repeat(l.depth), l.hex);
        if l.note.is_empty() {
            out.push_str(code.trim_end());
        } else {
            out.push_str(&format!(
                "{code:width$} # {}{}",
                "  ".repeat(l.depth),
                l.note
            ));
        }
        out.push('\n');
    }
    out
}

/// What the surrounding structure says about an item, for friendlier notes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hint {
    None,
    /// A COSE header map.
    Header,
    /// A key of a header map: labels 1 to 4 get their names.
    Label,
    /// The value of label 1: a COSE algorithm.
    Alg,
    /// The array under tag 18.
    Sign1,
    /// The array under tag 98.
    Sign,
    /// The signatures array of a COSE_Sign.
    Signatures,
    /// One COSE_Signature.
    Signer,
}

const SIGN1_ROLES: &[&str] = &["protected", "unprotected", "payload", "signature"];
const SIGN_ROLES: &[&str] = &["protected", "unprotected", "payload", "signatures"];
const SIGNER_ROLES: &[&str] = &["protected", "unprotected", "signature"];
const SIG1_STRUCTURE_ROLES: &[&str] = &["context", "body_protected", "external_aad", "payload"];
const SIG_STRUCTURE_ROLES: &[&str] = &[
    "context",
    "body_protected",
    "sign_protected",
    "external_aad",
    "payload",
];

fn item(r: &mut Reader<'_>, depth: usize, lines: &mut Vec<Line>) -> Result<(), SpecError> {
    item_with(r, depth, lines, None, Hint::None)
}

fn item_with(
    r: &mut Reader<'_>,
    depth: usize,
    lines: &mut Vec<Line>,
    role: Option<&str>,
    hint: Hint,
) -> Result<(), SpecError> {
    let h = r.header()?;
    if h.is_indefinite() {
        return Err(SpecError::Other(format!(
            "indefinite length at byte {}",
            h.offset
        )));
    }
    let head = r.input().get(h.offset..r.position()).unwrap_or_default();
    let head_hex = match head.split_first() {
        Some((first, [])) => format!("{first:02x}"),
        Some((first, arg)) => format!("{first:02x} {}", hex::encode(arg)),
        None => String::new(),
    };
    let prefix = role.map(|r| format!("{r}: ")).unwrap_or_default();
    let mut push = |hex: String, note: String| {
        lines.push(Line {
            depth,
            hex,
            note: format!("{prefix}{note}"),
        })
    };
    match h.major {
        Major::Unsigned => {
            let name = match (hint, h.arg) {
                (Hint::Label, 1) => " (alg)",
                (Hint::Label, 2) => " (crit)",
                (Hint::Label, 3) => " (content type)",
                (Hint::Label, 4) => " (kid)",
                _ => "",
            };
            push(head_hex, format!("unsigned {}{name}", h.arg));
        }
        Major::Negative => {
            let value = -1 - i128::from(h.arg);
            let name = match (hint, value) {
                (Hint::Alg, -8) => " (EdDSA)",
                (Hint::Alg, -19) => " (Ed25519)",
                _ => "",
            };
            push(head_hex, format!("negative {value}{name}"));
        }
        Major::Text => {
            let body = r.take(h.arg)?;
            let text = String::from_utf8_lossy(body);
            let note = format!("text({}) {text:?}", body.len());
            if body.len() <= INLINE_TEXT {
                push(format!("{head_hex} {}", hex::encode(body)), note);
            } else {
                push(head_hex, note);
                chunks(body, depth + 1, lines);
            }
        }
        Major::Bytes => {
            let body = r.take(h.arg)?;
            let n = body.len();
            if holds_cbor(body) {
                push(head_hex, format!("bytes({n}), holding:"));
                let inner_hint = match role {
                    Some("protected" | "body_protected" | "sign_protected") => Hint::Header,
                    _ => Hint::None,
                };
                let mut inner = Reader::new(body);
                item_with(&mut inner, depth + 1, lines, None, inner_hint)?;
                inner.finish()?;
            } else if n <= CHUNK {
                let hex = if n == 0 {
                    head_hex
                } else {
                    format!("{head_hex} {}", hex::encode(body))
                };
                push(hex, format!("bytes({n})"));
            } else {
                push(head_hex, format!("bytes({n})"));
                chunks(body, depth + 1, lines);
            }
        }
        Major::Array => {
            push(head_hex, format!("array({})", h.arg));
            let roles = match hint {
                Hint::Sign1 => SIGN1_ROLES,
                Hint::Sign => SIGN_ROLES,
                Hint::Signer => SIGNER_ROLES,
                _ => {
                    let rest = r.input().get(r.position()..).unwrap_or_default();
                    if rest.starts_with(b"\x6aSignature1") {
                        SIG1_STRUCTURE_ROLES
                    } else if rest.starts_with(b"\x69Signature") {
                        SIG_STRUCTURE_ROLES
                    } else {
                        &[]
                    }
                }
            };
            for i in 0..h.arg {
                let role = usize::try_from(i).ok().and_then(|i| roles.get(i)).copied();
                let child = match (hint, role) {
                    (Hint::Sign, Some("signatures")) => Hint::Signatures,
                    (Hint::Signatures, _) => Hint::Signer,
                    (_, Some("unprotected")) => Hint::Header,
                    _ => Hint::None,
                };
                item_with(r, depth + 1, lines, role, child)?;
            }
        }
        Major::Map => {
            push(head_hex, format!("map({})", h.arg));
            let header = hint == Hint::Header;
            for _ in 0..h.arg {
                let is_alg = header && r.peek() == Some(0x01);
                let key = if header { Hint::Label } else { Hint::None };
                item_with(r, depth + 1, lines, None, key)?;
                let value = if is_alg { Hint::Alg } else { Hint::None };
                item_with(r, depth + 1, lines, None, value)?;
            }
        }
        Major::Tag => {
            let (name, child) = match h.arg {
                18 => (" COSE_Sign1", Hint::Sign1),
                98 => (" COSE_Sign", Hint::Sign),
                _ => ("", Hint::None),
            };
            push(head_hex, format!("tag({}){name}", h.arg));
            item_with(r, depth + 1, lines, None, child)?;
        }
        Major::Simple => {
            let note = match h.info {
                20 => "false".to_owned(),
                21 => "true".to_owned(),
                22 => "null".to_owned(),
                23 => "undefined".to_owned(),
                25 => "float16".to_owned(),
                26 => "float32".to_owned(),
                27 => "float64".to_owned(),
                _ => format!("simple({})", h.arg),
            };
            push(head_hex, note);
        }
    }
    Ok(())
}

fn chunks(body: &[u8], depth: usize, lines: &mut Vec<Line>) {
    for chunk in body.chunks(CHUNK) {
        lines.push(Line {
            depth,
            hex: hex::encode(chunk),
            note: String::new(),
        });
    }
}

/// Whether `body` is one canonical CBOR map or array (then it is annotated as CBOR).
fn holds_cbor(body: &[u8]) -> bool {
    matches!(body.first(), Some(b) if b >> 5 == 4 || b >> 5 == 5)
        && cbor::validate(body, &Limits::DEFAULT).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markdown::hex_block_bytes;

    #[test]
    fn round_trips_through_the_hex_block_reader() {
        let samples: [&[u8]; 4] = [
            &[0x00],
            &[0x83, 0x20, 0xf6, 0x43, 0xa1, 0x01, 0x27],
            &[
                0xd2, 0x82, 0x58, 0x20, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
                0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
                0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x60,
            ],
            &[0x1b, 0, 0, 1, 0x8b, 0xcf, 0xe5, 0x68, 0],
        ];
        for bytes in samples {
            let text = annotate(bytes).unwrap();
            assert_eq!(hex_block_bytes(&text).unwrap(), bytes, "{text}");
        }
    }

    #[test]
    fn embedded_cbor_is_annotated() {
        let text = annotate(&[0x43, 0xa1, 0x01, 0x27]).unwrap();
        assert!(text.contains("bytes(3), holding:"), "{text}");
        assert!(text.contains("negative -8"), "{text}");
    }

    #[test]
    fn header_labels_are_named() {
        let text = annotate_header(&[0xa2, 0x01, 0x27, 0x04, 0x41, 0x00]).unwrap();
        assert!(text.contains("unsigned 1 (alg)"), "{text}");
        assert!(text.contains("negative -8 (EdDSA)"), "{text}");
        assert!(text.contains("unsigned 4 (kid)"), "{text}");
        assert!(!annotate(&[0xa1, 0x01, 0x27]).unwrap().contains("(alg)"));
    }

    #[test]
    fn refuses_indefinite_and_trailing() {
        assert!(annotate(&[0x9f, 0xff]).is_err());
        assert!(annotate(&[0x00, 0x00]).is_err());
    }
}
