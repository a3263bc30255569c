//! Stable machine-readable error codes.
//!
//! Every error a caller or a wire protocol must tell apart carries a code: a lowercase
//! dotted token such as `cose.bad_signature` or `contract.not_contained`. Codes are a
//! contract (the connector protocol sends them as refusal reason codes, and the
//! provenance log records them in `access_denied` events); messages are for people and
//! may change. `spec/reasons.md` lists every code.

/// An error (or a decision reason) with a stable machine-readable code.
pub trait ErrorCode {
    /// The code: lowercase ASCII letters, digits and `_`, in dot-separated segments, the
    /// first naming the crate's area (`cbor`, `cose`, `key`, `identity`, `policy`,
    /// `contract`, `manifest`, `receipt`, `log`, `store`, `note`, `witness`, `evidence`, `kv`).
    fn code(&self) -> &'static str;
}

/// An error and its causes on one line, joined by `: ` (as `anyhow` prints `{:#}`). TDS
/// errors name their cause once, in the chain, not again in their own message; use this
/// where one string must carry the whole reason.
pub fn full_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Whether `code` has the form of an error code (see [`ErrorCode::code`]).
pub fn is_well_formed(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code.split('.').count() >= 2
        && code.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_shapes() {
        assert!(is_well_formed("cose.bad_signature"));
        assert!(is_well_formed("contract.request.not_contained"));
        assert!(!is_well_formed("cose"));
        assert!(!is_well_formed("Cose.bad"));
        assert!(!is_well_formed("cose..bad"));
        assert!(!is_well_formed("cose.bad-signature"));
    }
}
