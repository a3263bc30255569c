//! C2SP signed notes, verifier keys, tlog checkpoints and tlog cosignatures.
//!
//! - A signed note (c2sp.org/signed-note) is text ending in a newline, a blank line, and
//!   signature lines `— <name> <base64(key id ‖ signature)>`.
//! - A key id is the first 4 bytes of `SHA-256(name ‖ 0x0A ‖ type ‖ public key)`; type
//!   0x01 is an Ed25519 note signature, 0x04 a timestamped Ed25519 cosignature.
//! - A verifier key is `<name>+<key id as 8 hex digits>+<base64(type ‖ public key)>`.
//! - A checkpoint (c2sp.org/tlog-checkpoint) is the note text `origin\nsize\nbase64(root)\n`
//!   plus optional extension lines.
//! - A cosignature (c2sp.org/tlog-cosignature) signs `cosignature/v1\ntime <t>\n` followed
//!   by the checkpoint text; its signature bytes are `key id ‖ t (u64 BE) ‖ signature`.
//!
//! The parser is strict and bounded: at most [`MAX_NOTE_BYTES`] bytes and
//! [`MAX_SIGNATURES`] signature lines, UTF-8 without control characters other than
//! newline, canonical base64, and `Note::parse(b).to_text() == b` for every accepted `b`.

use std::fmt;

use base64::Engine;
use tds_core::hash::Hash256;
use tds_core::key::{PublicKey, SignError, Signer};
use tds_core::Timestamp;

/// Largest accepted note.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;
/// Most signature lines in one note (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 64;
/// Longest key name or origin in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Signature type of an Ed25519 note signature.
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type of a timestamped Ed25519 cosignature.
pub const TYPE_COSIGNATURE: u8 = 0x04;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const DASH: &str = "\u{2014} ";

/// Why a note, key or checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is malformed.
    #[error("note: {0}")]
    Format(String),
    /// A verifier key is malformed.
    #[error("verifier key: {0}")]
    Key(String),
    /// The checkpoint text is malformed.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// No signature line from the expected key.
    #[error("note: no signature from key {0}")]
    Unsigned(String),
    /// A signature from the expected key does not verify.
    #[error("note: signature from key {0} does not verify")]
    BadSignature(String),
    /// The signer could not sign.
    #[error(transparent)]
    Sign(#[from] SignError),
}

impl tds_core::ErrorCode for NoteError {
    fn code(&self) -> &'static str {
        match self {
            NoteError::Format(_) => "note.format",
            NoteError::Key(_) => "note.key",
            NoteError::Checkpoint(_) => "note.checkpoint",
            NoteError::Unsigned(_) => "note.unsigned",
            NoteError::BadSignature(_) => "note.bad_signature",
            NoteError::Sign(_) => "note.sign",
        }
    }
}

fn fmt_err(s: impl Into<String>) -> NoteError {
    NoteError::Format(s.into())
}

/// Checks a key name: non-empty, bounded, no Unicode spaces, no `+`, no control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!("key name must be 1 to {MAX_NAME_BYTES} bytes"));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err("key name contains a space, '+' or a control character".into());
    }
    Ok(())
}

/// The key id: `SHA-256(name ‖ 0x0A ‖ type ‖ key)[..4]`.
pub fn key_id(name: &str, kind: u8, key: &[u8]) -> [u8; 4] {
    let mut m = Vec::with_capacity(name.len() + 2 + key.len());
    m.extend_from_slice(name.as_bytes());
    m.push(b'\n');
    m.push(kind);
    m.extend_from_slice(key);
    let h = Hash256::sha256(&m);
    let mut out = [0u8; 4];
    out.copy_from_slice(h.as_bytes().get(..4).unwrap_or(&[0; 4]));
    out
}

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key id.
    pub key_id: [u8; 4],
    /// The signature bytes after the key id.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, with its final newline.
    pub fn to_line(&self) -> String {
        let mut b = Vec::with_capacity(4 + self.signature.len());
        b.extend_from_slice(&self.key_id);
        b.extend_from_slice(&self.signature);
        format!("{DASH}{} {}\n", self.name, B64.encode(b))
    }
}

/// A parsed signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The text, including its final newline.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note strictly.
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(fmt_err(format!(
                "{} bytes is over the {MAX_NOTE_BYTES} limit",
                bytes.len()
            )));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| fmt_err("not UTF-8"))?;
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(fmt_err("control character other than newline"));
        }
        if !s.ends_with('\n') {
            return Err(fmt_err("does not end with a newline"));
        }
        let split = s
            .rfind("\n\n")
            .ok_or_else(|| fmt_err("no blank line before the signatures"))?;
        // `split` is where "\n\n" starts, so both cuts fall on ASCII newlines in `s`.
        let (text, sigs) = match (s.get(..split + 1), s.get(split + 2..)) {
            (Some(t), Some(g)) => (t, g),
            _ => return Err(fmt_err("no blank line before the signatures")),
        };
        if sigs.is_empty() {
            return Err(fmt_err("no signature lines"));
        }
        let mut signatures = Vec::new();
        for line in sigs.split_terminator('\n') {
            if signatures.len() >= MAX_SIGNATURES {
                return Err(fmt_err(format!("more than {MAX_SIGNATURES} signatures")));
            }
            let rest = line.strip_prefix(DASH).ok_or_else(|| {
                fmt_err("signature line does not start with an em dash and a space")
            })?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| fmt_err("signature line has no space after the key name"))?;
            check_name(name).map_err(fmt_err)?;
            let raw = B64
                .decode(b64)
                .map_err(|_| fmt_err(format!("signature of {name}: not canonical base64")))?;
            if raw.len() < 5 {
                return Err(fmt_err(format!("signature of {name}: too short")));
            }
            let (id, sig) = raw.split_at(4);
            let mut key_id = [0u8; 4];
            key_id.copy_from_slice(id);
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id,
                signature: sig.to_vec(),
            });
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as text: text, blank line, signature lines.
    pub fn to_text(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.to_line());
        }
        s
    }

    /// The signatures from `key` (matching name and key id).
    fn matching<'a>(&'a self, key: &'a VerifierKey) -> impl Iterator<Item = &'a NoteSignature> {
        self.signatures
            .iter()
            .filter(move |s| s.name == key.name && s.key_id == key.key_id)
    }
}

/// A verifier key: name, key id, signature type and Ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key name.
    pub name: String,
    /// The key id.
    pub key_id: [u8; 4],
    /// [`TYPE_ED25519`] or [`TYPE_COSIGNATURE`].
    pub kind: u8,
    /// The public key.
    pub key: PublicKey,
}

impl VerifierKey {
    /// The verifier key of `key` under `name` with signature type `kind`.
    pub fn new(name: &str, kind: u8, key: PublicKey) -> Result<Self, NoteError> {
        check_name(name).map_err(NoteError::Key)?;
        if kind != TYPE_ED25519 && kind != TYPE_COSIGNATURE {
            return Err(NoteError::Key(format!(
                "unsupported signature type {kind:#04x}"
            )));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id: key_id(name, kind, key.as_bytes()),
            kind,
            key,
        })
    }

    /// Parses `<name>+<hex key id>+<base64(type ‖ key)>` strictly.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let text = text.trim_end_matches('\n');
        if text.len() > MAX_NAME_BYTES + 64 {
            return Err(NoteError::Key("too long".into()));
        }
        // The base64 key may itself contain '+'; name and key id cannot.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::Key("expected <name>+<key id>+<key>".into()));
        };
        check_name(name).map_err(NoteError::Key)?;
        if id.len() != 8
            || !id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(NoteError::Key(
                "key id must be 8 lowercase hex digits".into(),
            ));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::Key("key is not canonical base64".into()))?;
        let (kind, key) = raw
            .split_first()
            .ok_or_else(|| NoteError::Key("key is empty".into()))?;
        let key = PublicKey::from_slice(key).map_err(|e| NoteError::Key(e.to_string()))?;
        let vk = VerifierKey::new(name, *kind, key)?;
        if hex::encode(vk.key_id) != id {
            return Err(NoteError::Key("key id does not match name and key".into()));
        }
        Ok(vk)
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![self.kind];
        raw.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            B64.encode(raw)
        )
    }
}

/// Signs note text with an Ed25519 note signature (type 0x01).
pub fn sign(text: &str, name: &str, key: &dyn Signer) -> Result<NoteSignature, NoteError> {
    check_name(name).map_err(NoteError::Key)?;
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: key_id(name, TYPE_ED25519, key.public_key().as_bytes()),
        signature: key.try_sign(text.as_bytes())?.to_vec(),
    })
}

/// Checks the note carries a valid type-0x01 signature from `key`; every signature line
/// matching its name and key id must verify.
pub fn verify(note: &Note, key: &VerifierKey) -> Result<(), NoteError> {
    if key.kind != TYPE_ED25519 {
        return Err(NoteError::Key("not an Ed25519 note key (type 0x01)".into()));
    }
    let mut any = false;
    for s in note.matching(key) {
        key.key
            .verify(note.text.as_bytes(), &s.signature)
            .map_err(|_| NoteError::BadSignature(key.to_string()))?;
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err(NoteError::Unsigned(key.to_string()))
    }
}

/// The message a cosignature signs.
pub fn cosignature_message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

/// Cosigns checkpoint text at `at` with type 0x04. The cosignature carries whole seconds
/// (the C2SP format), so `at` is truncated to its second.
pub fn cosign(
    text: &str,
    name: &str,
    key: &dyn Signer,
    at: Timestamp,
) -> Result<NoteSignature, NoteError> {
    check_name(name).map_err(NoteError::Key)?;
    let timestamp = at.as_secs();
    if timestamp > i64::MAX as u64 {
        return Err(NoteError::Key("timestamp over 2^63 - 1".into()));
    }
    let sig = key.try_sign(cosignature_message(text, timestamp).as_bytes())?;
    let mut signature = timestamp.to_be_bytes().to_vec();
    signature.extend_from_slice(&sig);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: key_id(name, TYPE_COSIGNATURE, key.public_key().as_bytes()),
        signature,
    })
}

/// Checks the note carries a valid cosignature from `key` (type 0x04); returns its time
/// (the latest, if several; whole seconds).
pub fn verify_cosignature(note: &Note, key: &VerifierKey) -> Result<Timestamp, NoteError> {
    if key.kind != TYPE_COSIGNATURE {
        return Err(NoteError::Key("not a cosignature key (type 0x04)".into()));
    }
    let mut best: Option<u64> = None;
    for s in note.matching(key) {
        if s.signature.len() != 72 {
            return Err(NoteError::BadSignature(key.to_string()));
        }
        let (ts, sig) = s.signature.split_at(8);
        let mut t = [0u8; 8];
        t.copy_from_slice(ts);
        let t = u64::from_be_bytes(t);
        if t > i64::MAX as u64 {
            return Err(NoteError::BadSignature(key.to_string()));
        }
        key.key
            .verify(cosignature_message(&note.text, t).as_bytes(), sig)
            .map_err(|_| NoteError::BadSignature(key.to_string()))?;
        best = Some(best.map_or(t, |b| b.max(t)));
    }
    best.map(Timestamp::from_secs)
        .ok_or_else(|| NoteError::Unsigned(key.to_string()))
}

/// A checkpoint body: origin, tree size, root hash, extension lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: Hash256,
    /// Extension lines (without newlines); TDS writes none.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.as_bytes())
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses note text strictly.
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let err = |s: &str| NoteError::Checkpoint(s.to_owned());
        if !text.ends_with('\n') {
            return Err(err("text does not end with a newline"));
        }
        let mut lines = text.split_terminator('\n');
        let origin = lines.next().ok_or_else(|| err("missing origin line"))?;
        if origin.is_empty() || origin.len() > MAX_NAME_BYTES {
            return Err(err("origin line must be 1 to 256 bytes"));
        }
        let size = lines.next().ok_or_else(|| err("missing tree size line"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(err("tree size must be a decimal without leading zeros"));
        }
        let size: u64 = size.parse().map_err(|_| err("tree size is out of range"))?;
        let root = lines.next().ok_or_else(|| err("missing root hash line"))?;
        let root = B64
            .decode(root)
            .ok()
            .and_then(|b| Hash256::from_slice(&b))
            .ok_or_else(|| err("root hash must be canonical base64 of 32 bytes"))?;
        let mut extensions = Vec::new();
        for l in lines {
            if l.is_empty() {
                return Err(err("empty extension line"));
            }
            extensions.push(l.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// A checkpoint note whose log signature was checked. Only [`verify_checkpoint`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
}

impl VerifiedCheckpoint {
    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }
    /// The whole note (with every signature line).
    pub fn note(&self) -> &Note {
        &self.note
    }
}

/// Parses a checkpoint note and checks the log's signature (`key` of type 0x01, whose name
/// must be the origin).
pub fn verify_checkpoint(bytes: &[u8], key: &VerifierKey) -> Result<VerifiedCheckpoint, NoteError> {
    let note = Note::parse(bytes)?;
    let checkpoint = Checkpoint::parse(&note.text)?;
    if checkpoint.origin != key.name {
        return Err(NoteError::Checkpoint(format!(
            "origin {:?} is not the key name {:?}",
            checkpoint.origin, key.name
        )));
    }
    verify(&note, key)?;
    Ok(VerifiedCheckpoint { checkpoint, note })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tds_core::key::SigningKey;

    #[test]
    fn spec_example_key_id_and_vkey() {
        // The verifier key from the C2SP signed-note examples (golang.org/x/mod/sumdb/note).
        let vk = VerifierKey::parse(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .unwrap();
        assert_eq!(hex::encode(vk.key_id), "c74f20a3");
        assert_eq!(
            vk.to_string(),
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
        let note = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let n = Note::parse(note.as_bytes()).unwrap();
        assert_eq!(n.to_text(), note);
        verify(&n, &vk).unwrap();
    }

    #[test]
    fn sign_verify_cosign() {
        let k = SigningKey::from_seed(&[1; 32]);
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 5,
            root: Hash256::from_bytes([2; 32]),
            extensions: vec![],
        };
        let text = cp.to_text();
        let sig = sign(&text, "example.com/log", &k).unwrap();
        let mut note = Note {
            text: text.clone(),
            signatures: vec![sig],
        };
        let vk = VerifierKey::new("example.com/log", TYPE_ED25519, k.public_key()).unwrap();
        verify_checkpoint(note.to_text().as_bytes(), &vk).unwrap();
        let w = SigningKey::from_seed(&[3; 32]);
        note.signatures.push(
            cosign(
                &text,
                "witness.example/w",
                &w,
                Timestamp::from_secs(1_700_000_000),
            )
            .unwrap(),
        );
        let wk = VerifierKey::new("witness.example/w", TYPE_COSIGNATURE, w.public_key()).unwrap();
        let again = Note::parse(note.to_text().as_bytes()).unwrap();
        assert_eq!(
            verify_cosignature(&again, &wk).unwrap(),
            Timestamp::from_secs(1_700_000_000)
        );
        assert_eq!(VerifierKey::parse(&wk.to_string()).unwrap(), wk);
    }

    #[test]
    fn strictness() {
        for bad in [
            &b"text\n"[..],
            b"text\n\n",
            b"text\n\n- name AAAAAAA=\n",
            b"text\n\n\xe2\x80\x94 na+me AAAAAAA=\n",
            b"text\n\n\xe2\x80\x94 name AAAAAAA\n",
            b"text\n\n\xe2\x80\x94 name AAAA\n",
            b"te\rxt\n\n\xe2\x80\x94 name AAAAAAA=\n",
        ] {
            assert!(
                matches!(Note::parse(bad), Err(NoteError::Format(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            Checkpoint::parse("o\n01\nAAAA\n"),
            Err(NoteError::Checkpoint(_))
        ));
    }
}
