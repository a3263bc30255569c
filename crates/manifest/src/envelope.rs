//! Signing and verifying manifests (COSE_Sign1, content type
//! `application/tds.manifest+cbor`), and asset ids.

use std::ops::Deref;

use tds_core::cbor;
use tds_core::cose::{self, SignedObject, Unverified, Verified};
use tds_core::hash::Domain;
use tds_core::key::{PublicKey, SigningKey};
use tds_identity::ParticipantId;

use crate::error::ManifestError;
use crate::model::{AssetId, Manifest};

/// Largest manifest envelope accepted: 256 KiB (the field limits keep real ones far
/// smaller).
pub const MAX_MANIFEST_LEN: usize = 256 * 1024;

impl SignedObject for Manifest {
    const CONTENT_TYPE: &'static str = "application/tds.manifest+cbor";
}

impl Manifest {
    /// The canonical CBOR payload that is signed and hashed.
    pub fn to_canonical(&self) -> Result<Vec<u8>, ManifestError> {
        Ok(cbor::encode(self)?)
    }

    /// The asset id: the `tds/manifest/v1` hash of the canonical payload.
    pub fn asset_id(&self) -> Result<AssetId, ManifestError> {
        Ok(AssetId::from_hash(
            Domain::MANIFEST.hash(&self.to_canonical()?),
        ))
    }

    /// Checks the fields and signs the manifest with the owner's key, giving the
    /// COSE_Sign1 envelope. `key` must be the key the manifest names as `owner_key`.
    pub fn sign(&self, key: &SigningKey) -> Result<Vec<u8>, ManifestError> {
        self.check()?;
        if key.public_key() != self.owner_key {
            return Err(ManifestError::SignerNotOwner {
                kid: ParticipantId::of(&key.public_key()),
                owner: self.owner,
            });
        }
        Ok(cose::sign(key, self)?)
    }
}

/// A manifest envelope that has been parsed and whose fields follow the rules, but whose
/// signature has not been checked.
#[derive(Debug)]
pub struct UnverifiedManifest {
    inner: Unverified<Manifest>,
    id: AssetId,
}

/// Parses a manifest envelope and checks every rule except the signature.
pub fn open(bytes: &[u8]) -> Result<UnverifiedManifest, ManifestError> {
    if bytes.len() > MAX_MANIFEST_LEN {
        return Err(ManifestError::TooLarge {
            size: bytes.len(),
            limit: MAX_MANIFEST_LEN,
        });
    }
    let inner = cose::open::<Manifest>(bytes)?;
    inner.value().check()?;
    let id = AssetId::from_hash(Domain::MANIFEST.hash(inner.payload()));
    Ok(UnverifiedManifest { inner, id })
}

impl UnverifiedManifest {
    /// The claimed manifest, not yet authenticated.
    pub fn manifest(&self) -> &Manifest {
        self.inner.value()
    }

    /// The asset id.
    pub fn id(&self) -> AssetId {
        self.id
    }

    /// Checks that the manifest names `owner_key` as its owner and that it signed it. The
    /// owner is then authenticated: the caller knew its key.
    pub fn verify(self, owner_key: &PublicKey) -> Result<VerifiedManifest, ManifestError> {
        let named = self.inner.value().owner_key;
        if named != *owner_key {
            return Err(ManifestError::UnexpectedOwner {
                expected: ParticipantId::of(owner_key),
                named: ParticipantId::of(&named),
            });
        }
        Ok(VerifiedManifest {
            inner: self.verify_self_signed()?,
        })
    }

    /// Checks the signature against the owner key the manifest itself names. This proves
    /// the manifest is intact and signed by the key it names, not who that key belongs
    /// to: the result is a [`SelfSignedManifest`], not a [`VerifiedManifest`]. Use it
    /// where the owner is established another way (a registration receipt, a membership
    /// credential naming the key) or where the output says the owner is not authenticated.
    pub fn verify_self_signed(self) -> Result<SelfSignedManifest, ManifestError> {
        let key = self.inner.value().owner_key;
        let kid = self.inner.kid();
        if kid != key.id() {
            return Err(ManifestError::SignerNotOwner {
                kid: ParticipantId::from_hash(kid),
                owner: self.inner.value().owner,
            });
        }
        let verified = self.inner.verify(&key)?;
        Ok(SelfSignedManifest {
            verified,
            id: self.id,
        })
    }
}

/// A manifest signed by the owner key it names, and nothing more: it is intact, but
/// anyone can make a key and name it. Only [`UnverifiedManifest::verify_self_signed`] (and
/// [`VerifiedManifest::into_self_signed`]) make one; [`authenticate`](Self::authenticate)
/// turns it into a [`VerifiedManifest`] once the owner's key is known.
#[derive(Clone, Debug)]
pub struct SelfSignedManifest {
    verified: Verified<Manifest>,
    id: AssetId,
}

impl SelfSignedManifest {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        self.verified.value()
    }

    /// The proof-carrying form from `tds-core`: the envelope verifies with the key whose
    /// id is its `kid` (here the key the manifest names).
    pub fn as_verified(&self) -> &Verified<Manifest> {
        &self.verified
    }

    /// The asset id.
    pub fn id(&self) -> AssetId {
        self.id
    }

    /// The envelope bytes as received.
    pub fn envelope(&self) -> &[u8] {
        self.verified.envelope()
    }

    /// Authenticates the owner: checks that the manifest names `owner_key` (the
    /// signature was already checked with the key it names).
    pub fn authenticate(self, owner_key: &PublicKey) -> Result<VerifiedManifest, ManifestError> {
        let named = self.verified.value().owner_key;
        if named != *owner_key {
            return Err(ManifestError::UnexpectedOwner {
                expected: ParticipantId::of(owner_key),
                named: ParticipantId::of(&named),
            });
        }
        Ok(VerifiedManifest { inner: self })
    }

    /// Every field as JSON, as `tds manifest show` prints it (ids as `sha256:<hex>`, keys
    /// as hex, times twice), with `"owner_authenticated": false`.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::json::manifest_json(self.manifest(), self.id, false)
    }
}

impl Deref for SelfSignedManifest {
    type Target = Manifest;
    fn deref(&self) -> &Manifest {
        self.verified.value()
    }
}

/// A manifest whose owner is authenticated: it names the key the caller expected, and
/// that key signed it. Only [`UnverifiedManifest::verify`] and
/// [`SelfSignedManifest::authenticate`] make one.
#[derive(Clone, Debug)]
pub struct VerifiedManifest {
    inner: SelfSignedManifest,
}

impl VerifiedManifest {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        self.inner.manifest()
    }

    /// The proof-carrying form from `tds-core`.
    pub fn as_verified(&self) -> &Verified<Manifest> {
        self.inner.as_verified()
    }

    /// The proof-carrying form from `tds-core`, consuming `self`.
    pub fn into_verified(self) -> Verified<Manifest> {
        self.inner.verified
    }

    /// The weaker view (every authenticated manifest is also self-signed), for APIs that
    /// need only that.
    pub fn as_self_signed(&self) -> &SelfSignedManifest {
        &self.inner
    }

    /// The weaker view, consuming `self`.
    pub fn into_self_signed(self) -> SelfSignedManifest {
        self.inner
    }

    /// The asset id.
    pub fn id(&self) -> AssetId {
        self.inner.id
    }

    /// The envelope bytes as received.
    pub fn envelope(&self) -> &[u8] {
        self.inner.envelope()
    }

    /// Every field as JSON, as `tds manifest show --owner-key` would print it, with
    /// `"owner_authenticated": true`.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::json::manifest_json(self.manifest(), self.inner.id, true)
    }
}

impl Deref for VerifiedManifest {
    type Target = Manifest;
    fn deref(&self) -> &Manifest {
        self.inner.manifest()
    }
}

impl From<VerifiedManifest> for SelfSignedManifest {
    fn from(v: VerifiedManifest) -> Self {
        v.inner
    }
}
