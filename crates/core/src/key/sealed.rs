//! Key files encrypted with a passphrase ("keys at rest", `spec/encoding.md` §8).
//!
//! ```text
//! -----BEGIN TDS ENCRYPTED PRIVATE KEY-----
//! base64 of the canonical CBOR map:
//!   {"v": 1, "pk": 32-byte public key, "kdf": "argon2id", "m": KiB, "t": passes,
//!    "p": lanes, "salt": 16 bytes, "aead": "chacha20-poly1305", "nonce": 12 bytes,
//!    "ct": 32-byte seed + 16-byte tag}
//! -----END TDS ENCRYPTED PRIVATE KEY-----
//! ```
//!
//! The sealing key is Argon2id(passphrase, salt, m, t, p) (RFC 9106, 32 bytes); the
//! Ed25519 seed is sealed with ChaCha20-Poly1305 (ring) under that key, the associated
//! data being the canonical CBOR of every field but `ct`, so the parameters cannot be
//! changed without the tag failing. The public key is in clear (a node's id can be shown
//! without the passphrase) and checked against the opened seed. The cost parameters are bounded before anything is
//! allocated: a file cannot make its reader spend more than [`MAX_M_KIB`] of memory.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;
use zeroize::Zeroizing;

/// The PEM label of an encrypted key file.
pub const LABEL: &str = "TDS ENCRYPTED PRIVATE KEY";
/// The format version written.
pub const VERSION: u8 = 1;
/// The largest memory cost accepted when reading, in KiB (1 GiB).
pub const MAX_M_KIB: u32 = 1024 * 1024;
/// The largest number of passes accepted when reading.
pub const MAX_T: u32 = 16;
/// The largest number of lanes accepted when reading.
pub const MAX_P: u32 = 16;

/// A passphrase (zeroized on drop, never printed).
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// A passphrase from its bytes. Empty passphrases are refused by the writers.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Passphrase(Zeroizing::new(bytes.into()))
    }

    /// The passphrase in a file (e.g. a systemd credential): its contents, one trailing
    /// newline removed; at most 4 KiB.
    pub fn from_file(path: &std::path::Path) -> Result<Self, super::KeyError> {
        let bytes = crate::fs::read_bounded(path, 4096).map_err(|e| match e {
            crate::fs::ReadError::Io { source, .. } => super::KeyError::Io {
                path: path.to_path_buf(),
                source,
            },
            other => super::KeyError::Format {
                path: path.to_path_buf(),
                reason: format!("passphrase file: {other}"),
            },
        })?;
        let mut bytes = Zeroizing::new(bytes);
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Ok(Passphrase(bytes))
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// Argon2id costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfCost {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfCost {
    /// The most a reader spends by default: 1 GiB, 16 passes, 16 lanes.
    pub const MAX: KdfCost = KdfCost {
        m_kib: MAX_M_KIB,
        t: MAX_T,
        p: MAX_P,
    };
}

impl Default for KdfCost {
    /// RFC 9106 §4's second recommendation with one lane: 64 MiB, 3 passes (about a
    /// quarter of a second here).
    fn default() -> Self {
        KdfCost {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

/// The header: every field but the ciphertext (the AEAD's associated data).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Header {
    v: u8,
    pk: ByteArray<32>,
    kdf: String,
    m: u32,
    t: u32,
    p: u32,
    salt: ByteArray<16>,
    aead: String,
    nonce: ByteArray<12>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Sealed {
    v: u8,
    pk: ByteArray<32>,
    kdf: String,
    m: u32,
    t: u32,
    p: u32,
    salt: ByteArray<16>,
    aead: String,
    nonce: ByteArray<12>,
    #[serde(with = "serde_bytes")]
    ct: Vec<u8>,
}

/// Why sealing or opening failed (mapped to [`super::KeyError`] by the callers).
#[derive(Debug)]
pub(crate) enum SealError {
    /// The file's format or parameters.
    Format(String),
    /// The tag did not verify: a wrong passphrase, or the file was changed.
    WrongPassphrase,
    /// No randomness.
    Rng,
}

fn derive(
    pass: &Passphrase,
    salt: &[u8; 16],
    cost: KdfCost,
) -> Result<Zeroizing<[u8; 32]>, SealError> {
    let params = argon2::Params::new(cost.m_kib, cost.t, cost.p, Some(32))
        .map_err(|e| SealError::Format(format!("argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(pass.bytes(), salt, out.as_mut())
        .map_err(|e| SealError::Format(format!("argon2: {e}")))?;
    Ok(out)
}

fn aead_key(k: &[u8; 32]) -> Result<ring::aead::LessSafeKey, SealError> {
    ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, k)
        .map(ring::aead::LessSafeKey::new)
        .map_err(|_| SealError::Format("aead key".into()))
}

/// Seals a 32-byte seed: the PEM text.
pub(crate) fn seal(
    seed: &[u8; 32],
    public: &[u8; 32],
    pass: &Passphrase,
    cost: KdfCost,
    random: &dyn crate::rand::RandomSource,
) -> Result<Zeroizing<String>, SealError> {
    if pass.bytes().is_empty() {
        return Err(SealError::Format("an empty passphrase".into()));
    }
    let salt: [u8; 16] = crate::rand::random_array(random).map_err(|_| SealError::Rng)?;
    let nonce: [u8; 12] = crate::rand::random_array(random).map_err(|_| SealError::Rng)?;
    let header = Header {
        v: VERSION,
        pk: ByteArray::new(*public),
        kdf: "argon2id".into(),
        m: cost.m_kib,
        t: cost.t,
        p: cost.p,
        salt: ByteArray::new(salt),
        aead: "chacha20-poly1305".into(),
        nonce: ByteArray::new(nonce),
    };
    let aad = crate::cbor::encode(&header).map_err(|e| SealError::Format(e.to_string()))?;
    let key = aead_key(&*derive(pass, &salt, cost)?)?;
    let mut ct = Zeroizing::new(seed.to_vec());
    key.seal_in_place_append_tag(
        ring::aead::Nonce::assume_unique_for_key(nonce),
        ring::aead::Aad::from(&aad),
        &mut *ct,
    )
    .map_err(|_| SealError::Format("sealing failed".into()))?;
    let sealed = Sealed {
        v: header.v,
        pk: header.pk,
        kdf: header.kdf,
        m: header.m,
        t: header.t,
        p: header.p,
        salt: header.salt,
        aead: header.aead,
        nonce: header.nonce,
        ct: ct.to_vec(),
    };
    let body = crate::cbor::encode(&sealed).map_err(|e| SealError::Format(e.to_string()))?;
    pem_rfc7468::encode_string(LABEL, pem_rfc7468::LineEnding::LF, &body)
        .map(Zeroizing::new)
        .map_err(|e| SealError::Format(e.to_string()))
}

/// Whether `text` is an encrypted key file (by its PEM label).
pub(crate) fn is_sealed(text: &str) -> bool {
    text.trim_start()
        .starts_with(&format!("-----BEGIN {LABEL}-----"))
}

fn parse(text: &str) -> Result<Sealed, SealError> {
    let (label, body) =
        pem_rfc7468::decode_vec(text.as_bytes()).map_err(|e| SealError::Format(e.to_string()))?;
    if label != LABEL {
        return Err(SealError::Format(format!("PEM label {label:?}")));
    }
    crate::cbor::decode(&body).map_err(|e| SealError::Format(e.to_string()))
}

/// The public key an encrypted key file names (not authenticated until it is opened).
pub(crate) fn public_key(text: &str) -> Result<[u8; 32], SealError> {
    Ok(*parse(text)?.pk)
}

/// Opens an encrypted key file's text: the seed and the public key it names (the caller
/// checks they agree).
pub(crate) fn open(
    text: &str,
    pass: &Passphrase,
    max: KdfCost,
) -> Result<(Zeroizing<[u8; 32]>, [u8; 32]), SealError> {
    let s = parse(text)?;
    if s.v != VERSION {
        return Err(SealError::Format(format!(
            "format version {} (this build reads {VERSION})",
            s.v
        )));
    }
    if s.kdf != "argon2id" || s.aead != "chacha20-poly1305" {
        return Err(SealError::Format(format!(
            "kdf {:?} / aead {:?} (argon2id / chacha20-poly1305 expected)",
            s.kdf, s.aead
        )));
    }
    // Bounded before the KDF allocates anything.
    if s.m > max.m_kib || s.t == 0 || s.t > max.t || s.p == 0 || s.p > max.p {
        return Err(SealError::Format(format!(
            "argon2 costs m={} KiB t={} p={} beyond the limits (m <= {}, 1 <= t <= {}, 1 <= p <= {})",
            s.m, s.t, s.p, max.m_kib, max.t, max.p
        )));
    }
    if s.ct.len() != 32 + ring::aead::CHACHA20_POLY1305.tag_len() {
        return Err(SealError::Format(format!(
            "a sealed seed of {} bytes",
            s.ct.len()
        )));
    }
    let header = Header {
        v: s.v,
        pk: s.pk,
        kdf: s.kdf,
        m: s.m,
        t: s.t,
        p: s.p,
        salt: s.salt,
        aead: s.aead,
        nonce: s.nonce,
    };
    let aad = crate::cbor::encode(&header).map_err(|e| SealError::Format(e.to_string()))?;
    let cost = KdfCost {
        m_kib: header.m,
        t: header.t,
        p: header.p,
    };
    let key = aead_key(&*derive(pass, &header.salt, cost)?)?;
    let mut buf = Zeroizing::new(s.ct);
    let plain = key
        .open_in_place(
            ring::aead::Nonce::assume_unique_for_key(*header.nonce),
            ring::aead::Aad::from(&aad),
            &mut buf,
        )
        .map_err(|_| SealError::WrongPassphrase)?;
    let mut seed = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        return Err(SealError::Format("the sealed seed is not 32 bytes".into()));
    }
    seed.copy_from_slice(plain);
    Ok((seed, *header.pk))
}
