//! Ed25519 keys: signing keys that zeroize on drop, public keys checked strictly, key files.
//!
//! A key's id is the domain-separated hash (`tds/participant/v1`) of its 32-byte public
//! key; the COSE `kid` of everything it signs is those 32 bytes.
//!
//! Key files are PKCS#8 PEM, or encrypted with a passphrase ([`sealed`]: Argon2id and
//! ChaCha20-Poly1305), written with mode 0600 and refused (as ssh does) when any group or
//! other permission bit is set.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::hash::{Domain, Hash256};

pub mod sealed;
pub use sealed::{KdfCost, Passphrase};

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Why a key or signature was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 32 bytes, not a point on the curve, or a weak (small-order) key.
    #[error("invalid Ed25519 public key: {0}")]
    InvalidPublicKey(&'static str),
    /// A signature that does not verify (or is not 64 bytes).
    #[error("signature does not verify")]
    BadSignature,
    /// The operating system's random number generator failed.
    #[error("no randomness available from the operating system")]
    Rng,
    /// A key file that could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key file readable or writable by group or others.
    #[error("{path}: permissions {mode:04o} are too open; a key file must be private (chmod 600 {path})")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file in the wrong format.
    #[error("{path}: not an Ed25519 PKCS#8 PEM private key ({reason})")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A key file that already exists.
    #[error("{path}: already exists; refusing to overwrite a key")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// An encrypted key file, and no passphrase was given.
    #[error("{path}: the key is encrypted; give its passphrase (TDS_KEY_PASSPHRASE_FILE or TDS_KEY_PASSPHRASE)")]
    PassphraseNeeded {
        /// The file.
        path: PathBuf,
    },
    /// The passphrase does not open the key file (or the file was changed).
    #[error("{path}: wrong passphrase, or the encrypted key file was altered")]
    WrongPassphrase {
        /// The file.
        path: PathBuf,
    },
}

impl crate::ErrorCode for KeyError {
    fn code(&self) -> &'static str {
        match self {
            KeyError::InvalidPublicKey(_) => "key.invalid_public_key",
            KeyError::BadSignature => "key.bad_signature",
            KeyError::Rng => "key.rng",
            KeyError::Io { .. } => "key.io",
            KeyError::Permissions { .. } => "key.permissions",
            KeyError::Format { .. } => "key.format",
            KeyError::Exists { .. } => "key.exists",
            KeyError::PassphraseNeeded { .. } => "key.passphrase_needed",
            KeyError::WrongPassphrase { .. } => "key.wrong_passphrase",
        }
    }
}

/// An Ed25519 signing key. The secret is zeroized when the value is dropped and never
/// printed by `Debug`.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    /// The key id, computed once: every envelope signed carries it.
    id: Hash256,
}

impl SigningKey {
    /// A new random key from the operating system's generator (through ring).
    pub fn generate() -> Result<Self, KeyError> {
        Self::generate_from(&crate::rand::SystemRandom)
    }

    /// A new random key with its seed from `source`.
    pub fn generate_from(source: &dyn crate::rand::RandomSource) -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        source.fill(seed.as_mut()).map_err(|_| KeyError::Rng)?;
        Ok(Self::from_seed(&seed))
    }

    /// The key with this 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    fn from_dalek(inner: ed25519_dalek::SigningKey) -> Self {
        let id = Domain::PARTICIPANT.hash(inner.verifying_key().as_bytes());
        SigningKey { inner, id }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.inner.verifying_key())
    }

    /// The key id (`tds/participant/v1` hash of the public key).
    pub fn id(&self) -> Hash256 {
        self.id
    }

    /// Signs `message` (pure Ed25519, deterministic).
    ///
    /// In a fuzzing build only (`cfg(fuzzing)`, set by cargo fuzz) the signature is the
    /// cheap stand-in `fuzzing_stand_in` (decision 0022); normal builds never contain it.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        #[cfg(fuzzing)]
        {
            fuzzing_stand_in(self.inner.verifying_key().as_bytes(), message)
        }
        #[cfg(not(fuzzing))]
        {
            use ed25519_dalek::Signer;
            self.inner.sign(message).to_bytes()
        }
    }

    /// The PKCS#8 PEM form (a secret: the string is zeroized on drop).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.inner
            .to_pkcs8_pem(Default::default())
            .map_err(|e| KeyError::Format {
                path: PathBuf::new(),
                reason: e.to_string(),
            })
    }

    /// Reads the PKCS#8 PEM form.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(Self::from_dalek)
            .map_err(|e| KeyError::Format {
                path: PathBuf::new(),
                reason: e.to_string(),
            })
    }

    /// Writes the key to `path` (mode 0600, atomically). Refuses to replace an existing
    /// file: losing a key cannot be undone.
    pub fn write_file(&self, path: &Path) -> Result<(), KeyError> {
        let pem = self.to_pkcs8_pem().map_err(|e| with_path(e, path))?;
        crate::fs::write_atomic(path, pem.as_bytes(), 0o600, false).map_err(|e| match e {
            crate::fs::WriteError::Exists { path } => KeyError::Exists { path },
            crate::fs::WriteError::Io { path, source } => KeyError::Io { path, source },
        })
    }

    /// Reads a key file, refusing one that group or others may read or write, and an
    /// encrypted one (`key.passphrase_needed`: use [`read_file_with`](Self::read_file_with)).
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        Self::read_file_with(path, None)
    }

    /// Reads a key file, plain or encrypted; an encrypted one needs `passphrase`.
    pub fn read_file_with(path: &Path, passphrase: Option<&Passphrase>) -> Result<Self, KeyError> {
        let text = read_key_text(path)?;
        if !sealed::is_sealed(&text) {
            return Self::from_pkcs8_pem(&text).map_err(|e| with_path(e, path));
        }
        let Some(pass) = passphrase else {
            return Err(KeyError::PassphraseNeeded {
                path: path.to_path_buf(),
            });
        };
        Self::from_encrypted_pem(&text, pass, KdfCost::MAX).map_err(|e| with_path(e, path))
    }

    /// Opens the text of an encrypted key file with `passphrase`, refusing costs above
    /// `max` before deriving anything (readers of files use [`KdfCost::MAX`]).
    pub fn from_encrypted_pem(
        text: &str,
        passphrase: &Passphrase,
        max: KdfCost,
    ) -> Result<Self, KeyError> {
        let (seed, public) =
            sealed::open(text, passphrase, max).map_err(|e| seal_error(e, Path::new("")))?;
        let key = Self::from_seed(&seed);
        if key.public_key().as_bytes() != &public {
            return Err(KeyError::Format {
                path: PathBuf::new(),
                reason: "the sealed key is not the public key the file names".into(),
            });
        }
        Ok(key)
    }

    /// The public key of a key file, plain or encrypted, without its passphrase (an
    /// encrypted file names its public key in clear; it is checked when the file is
    /// opened).
    pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyError> {
        let text = read_key_text(path)?;
        if !sealed::is_sealed(&text) {
            return Ok(Self::from_pkcs8_pem(&text)
                .map_err(|e| with_path(e, path))?
                .public_key());
        }
        let bytes = sealed::public_key(&text).map_err(|e| seal_error(e, path))?;
        PublicKey::from_bytes(&bytes).map_err(|e| with_path(e, path))
    }

    /// Whether the key file at `path` is encrypted (it is read, not opened).
    pub fn is_encrypted_file(path: &Path) -> Result<bool, KeyError> {
        Ok(sealed::is_sealed(&read_key_text(path)?))
    }

    /// The encrypted key-file form (a secret: zeroized on drop).
    pub fn to_encrypted_pem(
        &self,
        passphrase: &Passphrase,
        cost: KdfCost,
    ) -> Result<Zeroizing<String>, KeyError> {
        let seed = Zeroizing::new(self.inner.to_bytes());
        let public = *self.public_key().as_bytes();
        sealed::seal(&seed, &public, passphrase, cost, &crate::rand::SystemRandom)
            .map_err(|e| seal_error(e, Path::new("")))
    }

    /// Writes the key encrypted with `passphrase` (default costs) to `path` (mode 0600,
    /// atomically). `replace`: whether an existing file may be replaced (re-encrypting a
    /// key file in place); otherwise an existing file is refused.
    pub fn write_encrypted_file(
        &self,
        path: &Path,
        passphrase: &Passphrase,
        replace: bool,
    ) -> Result<(), KeyError> {
        let pem = self
            .to_encrypted_pem(passphrase, KdfCost::default())
            .map_err(|e| with_path(e, path))?;
        crate::fs::write_atomic(path, pem.as_bytes(), 0o600, replace).map_err(|e| match e {
            crate::fs::WriteError::Exists { path } => KeyError::Exists { path },
            crate::fs::WriteError::Io { path, source } => KeyError::Io { path, source },
        })
    }
}

/// A key file's text, permissions and size checked.
fn read_key_text(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    // A PEM Ed25519 key is about 120 bytes (encrypted: about 250); anything large is not
    // a key file. The read is bounded whatever the file claims (a FIFO claims 0 bytes and
    // never ends).
    const LIMIT: u64 = 16 * 1024;
    let bytes = crate::fs::read_bounded(path, LIMIT).map_err(|e| match e {
        crate::fs::ReadError::TooLarge { size, .. } => KeyError::Format {
            path: path.to_path_buf(),
            reason: format!("{size} bytes is too large for a key file"),
        },
        crate::fs::ReadError::NotAFile { .. } => KeyError::Format {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        },
        crate::fs::ReadError::Io { source, .. } => io(source),
    })?;
    String::from_utf8(bytes).map(Zeroizing::new).map_err(|e| {
        // The bytes may be a secret: wipe them.
        let mut b = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut b);
        KeyError::Format {
            path: path.to_path_buf(),
            reason: "not text".into(),
        }
    })
}

fn seal_error(e: sealed::SealError, path: &Path) -> KeyError {
    match e {
        sealed::SealError::Format(reason) => KeyError::Format {
            path: path.to_path_buf(),
            reason,
        },
        sealed::SealError::WrongPassphrase => KeyError::WrongPassphrase {
            path: path.to_path_buf(),
        },
        sealed::SealError::Rng => KeyError::Rng,
    }
}

fn with_path(e: KeyError, path: &Path) -> KeyError {
    match e {
        KeyError::Format { reason, .. } => KeyError::Format {
            path: path.to_path_buf(),
            reason,
        },
        KeyError::WrongPassphrase { .. } => KeyError::WrongPassphrase {
            path: path.to_path_buf(),
        },
        other => other,
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.id())
    }
}

/// Why a [`Signer`] could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key is not usable now (a hardware module that is absent or locked, a remote
    /// signer that does not answer); the text says why.
    #[error("signer unavailable: {0}")]
    Unavailable(String),
}

/// Something that signs with one key: an in-memory [`SigningKey`] today, a hardware
/// module or a GM/T SM2 key later. Object-safe, so logs, authorities and witnesses hold an
/// `Arc<dyn Signer>` without knowing where the secret lives.
///
/// Every signature TDS makes goes through this trait: COSE envelopes
/// ([`crate::cose::sign`] and friends), checkpoint notes and cosignatures.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The public key that verifies this signer's signatures.
    fn public_key(&self) -> PublicKey;

    /// The key id (`tds/participant/v1` hash of the public key), the COSE `kid` of
    /// everything this signer signs.
    fn key_id(&self) -> Hash256 {
        self.public_key().id()
    }

    /// Signs `message` (pure Ed25519 over the whole message).
    fn try_sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], SignError>;
}

impl Signer for SigningKey {
    fn public_key(&self) -> PublicKey {
        SigningKey::public_key(self)
    }

    fn key_id(&self) -> Hash256 {
        self.id
    }

    fn try_sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], SignError> {
        Ok(self.sign(message))
    }
}

impl From<SigningKey> for std::sync::Arc<dyn Signer> {
    fn from(key: SigningKey) -> Self {
        std::sync::Arc::new(key)
    }
}

impl<S: Signer + ?Sized> Signer for std::sync::Arc<S> {
    fn public_key(&self) -> PublicKey {
        (**self).public_key()
    }

    fn key_id(&self) -> Hash256 {
        (**self).key_id()
    }

    fn try_sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], SignError> {
        (**self).try_sign(message)
    }
}

impl<S: Signer + ?Sized> Signer for Box<S> {
    fn public_key(&self) -> PublicKey {
        (**self).public_key()
    }

    fn key_id(&self) -> Hash256 {
        (**self).key_id()
    }

    fn try_sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], SignError> {
        (**self).try_sign(message)
    }
}

/// An Ed25519 public key. Serialized as a 32-byte CBOR byte string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// From the 32-byte compressed point; refuses invalid and weak (small-order) keys.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        if let Some(k) = known_keys::get(bytes) {
            return Ok(PublicKey(k));
        }
        let k = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| KeyError::InvalidPublicKey("not a valid curve point"))?;
        if k.is_weak() {
            return Err(KeyError::InvalidPublicKey("small-order (weak) key"));
        }
        // RFC 8032 §5.1.3: a y coordinate of p or more is not a valid encoding. Such an
        // encoding would give one point two key ids, so only the canonical one is taken.
        if k.to_edwards().compress().as_bytes() != bytes {
            return Err(KeyError::InvalidPublicKey("non-canonical point encoding"));
        }
        known_keys::put(bytes, k);
        Ok(PublicKey(k))
    }

    /// From a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr = <[u8; 32]>::try_from(bytes)
            .map_err(|_| KeyError::InvalidPublicKey("an Ed25519 key is 32 bytes"))?;
        Self::from_bytes(&arr)
    }

    /// From 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let mut arr = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut arr)
            .map_err(|_| KeyError::InvalidPublicKey("expected 64 hex digits"))?;
        Self::from_bytes(&arr)
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Lowercase hex of the key bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// The key id: `tds/participant/v1` hash of the key bytes.
    pub fn id(&self) -> Hash256 {
        Domain::PARTICIPANT.hash(self.as_bytes())
    }

    /// Checks `signature` over `message` with Ed25519 `verify_strict` (no malleable
    /// signatures, no small-order components).
    ///
    /// In a fuzzing build only (`cfg(fuzzing)`) this compares against the cheap stand-in
    /// of `fuzzing_stand_in` instead (decision 0022), so fuzzers reach the logic behind
    /// signatures.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        #[cfg(fuzzing)]
        {
            if signature == fuzzing_stand_in(self.0.as_bytes(), message).as_slice() {
                Ok(())
            } else {
                Err(KeyError::BadSignature)
            }
        }
        #[cfg(not(fuzzing))]
        {
            let sig = ed25519_dalek::Signature::from_slice(signature)
                .map_err(|_| KeyError::BadSignature)?;
            self.0
                .verify_strict(message, &sig)
                .map_err(|_| KeyError::BadSignature)
        }
    }
}

/// The fuzzing-only signature stand-in (compiled only under `cfg(fuzzing)`, which cargo
/// fuzz sets; never in a normal build — a test of the normal build checks that such a
/// value is refused). It is `h ‖ h` with `h = SHA-256("tds/fuzzing-signature" ‖ 0x00 ‖
/// public key ‖ message)`: it binds the key and the message as a signature does (a
/// flipped bit still fails), costs one hash instead of a curve operation, and a signature
/// compare is a plain byte compare that libFuzzer's comparison tracing can solve. As with
/// rustls' fuzzing crypto provider, only the fuzzers see it.
#[cfg(fuzzing)]
pub fn fuzzing_stand_in(public_key: &[u8; 32], message: &[u8]) -> [u8; SIGNATURE_LEN] {
    let mut h = crate::hash::Hasher::plain();
    h.update(b"tds/fuzzing-signature\0");
    h.update(public_key);
    h.update(message);
    let digest = h.finish();
    let mut out = [0u8; SIGNATURE_LEN];
    let (a, b) = out.split_at_mut(32);
    a.copy_from_slice(digest.as_bytes());
    b.copy_from_slice(digest.as_bytes());
    out
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(self.as_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            PublicKey::from_hex(&s).map_err(serde::de::Error::custom)
        } else {
            let b = serde_bytes::ByteArray::<32>::deserialize(d)?;
            PublicKey::from_bytes(&b.into_array()).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject_tampering() {
        let k = SigningKey::from_seed(&[1; 32]);
        let sig = k.sign(b"hello");
        k.public_key().verify(b"hello", &sig).unwrap();
        assert!(matches!(
            k.public_key().verify(b"hellp", &sig),
            Err(KeyError::BadSignature)
        ));
        assert!(matches!(
            k.public_key().verify(b"hello", &sig[..63]),
            Err(KeyError::BadSignature)
        ));
        let other = SigningKey::from_seed(&[2; 32]);
        assert!(matches!(
            other.public_key().verify(b"hello", &sig),
            Err(KeyError::BadSignature)
        ));
    }

    /// The fuzzing stand-in (`fuzzing_stand_in`) exists only under `cfg(fuzzing)`: a normal
    /// build signs with Ed25519 and refuses the stand-in's value, so a value a fuzzer could
    /// forge is never a signature outside the fuzzers.
    #[test]
    #[cfg(not(fuzzing))]
    fn normal_builds_refuse_the_fuzzing_stand_in() {
        let k = SigningKey::from_seed(&[1; 32]);
        let mut h = crate::hash::Hasher::plain();
        h.update(b"tds/fuzzing-signature\0");
        h.update(k.public_key().as_bytes());
        h.update(b"hello");
        let d = h.finish();
        let stand_in = [d.as_bytes().as_slice(), d.as_bytes().as_slice()].concat();
        assert!(matches!(
            k.public_key().verify(b"hello", &stand_in),
            Err(KeyError::BadSignature)
        ));
        assert_ne!(k.sign(b"hello").as_slice(), stand_in.as_slice());
        // The spec vectors (COSE worked examples) pin `sign` to real Ed25519 bytes.
        const { assert!(!cfg!(fuzzing)) };
    }

    #[test]
    fn rfc8032_test_1_public_key() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let k = SigningKey::from_seed(&seed);
        assert_eq!(
            k.public_key().to_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            PublicKey::from_bytes(&identity),
            Err(KeyError::InvalidPublicKey("small-order (weak) key"))
        ));
        assert!(matches!(
            PublicKey::from_slice(&[0u8; 31]),
            Err(KeyError::InvalidPublicKey("an Ed25519 key is 32 bytes"))
        ));
        assert!(matches!(
            PublicKey::from_hex("zz"),
            Err(KeyError::InvalidPublicKey("expected 64 hex digits"))
        ));
        // y = 3 written as 3 + p: a valid point, but not its canonical encoding.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xf0;
        non_canonical[31] = 0x7f;
        let err = PublicKey::from_bytes(&non_canonical)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("non-canonical") || err.contains("curve point"),
            "{err}"
        );
    }

    #[test]
    fn pem_round_trip() {
        let k = SigningKey::generate().unwrap();
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public_key(), k.public_key());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_and_open_ones_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        let k = SigningKey::generate().unwrap();
        k.write_file(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(SigningKey::read_file(&p).unwrap().id(), k.id());
        assert!(matches!(k.write_file(&p), Err(KeyError::Exists { .. })));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = SigningKey::read_file(&p).unwrap_err();
        assert!(
            matches!(err, KeyError::Permissions { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn garbage_key_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.pem");
        std::fs::write(&p, "not a key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = SigningKey::read_file(&p).unwrap_err().to_string();
        assert!(err.contains("bad.pem"), "{err}");
    }
}

/// Keys that passed [`PublicKey::from_bytes`], by their bytes. Decoding a key (a square
/// root to decompress the point, an inversion to check its encoding is canonical) costs
/// about half a signature check, and a process meets the same few keys again and again
/// (its peers', in every agreement and envelope it reads). Only keys that passed every
/// check are kept; bounded, emptied when full.
mod known_keys {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock, PoisonError};

    /// Keys kept.
    const CAPACITY: usize = 4096;

    type Map = HashMap<[u8; 32], ed25519_dalek::VerifyingKey>;

    fn map() -> &'static Mutex<Map> {
        static KEYS: OnceLock<Mutex<Map>> = OnceLock::new();
        KEYS.get_or_init(|| Mutex::new(HashMap::new()))
    }

    pub(super) fn get(bytes: &[u8; 32]) -> Option<ed25519_dalek::VerifyingKey> {
        map()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(bytes)
            .copied()
    }

    pub(super) fn put(bytes: &[u8; 32], key: ed25519_dalek::VerifyingKey) {
        let mut m = map().lock().unwrap_or_else(PoisonError::into_inner);
        if m.len() >= CAPACITY {
            m.clear();
        }
        m.insert(*bytes, key);
    }
}
