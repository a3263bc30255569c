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
        self.finish(true)
    }

    /// Checks the signature against the owner key the manifest itself names. This proves
    /// the manifest is intact and signed by the key it names, not who that key belongs
    /// to: [`VerifiedManifest::owner_authenticated`] is `false`.
    pub fn verify_named_owner(self) -> Result<VerifiedManifest, ManifestError> {
        self.finish(false)
    }

    fn finish(self, authenticated: bool) -> Result<VerifiedManifest, ManifestError> {
        let key = self.inner.value().owner_key;
        let kid = self.inner.kid();
        if kid != key.id() {
            return Err(ManifestError::SignerNotOwner {
                kid: ParticipantId::from_hash(kid),
                owner: self.inner.value().owner,
            });
        }
        let verified = self.inner.verify(&key)?;
        Ok(VerifiedManifest {
            verified,
            id: self.id,
            authenticated,
        })
    }
}

/// A manifest whose owner signature has been checked. Only
/// [`UnverifiedManifest::verify`] and [`UnverifiedManifest::verify_named_owner`] make one.
#[derive(Clone, Debug)]
pub struct VerifiedManifest {
    verified: Verified<Manifest>,
    id: AssetId,
    authenticated: bool,
}

impl VerifiedManifest {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        self.verified.value()
    }

    /// The proof-carrying form from `tds-core`.
    pub fn as_verified(&self) -> &Verified<Manifest> {
        &self.verified
    }

    /// The proof-carrying form from `tds-core`, consuming `self`.
    pub fn into_verified(self) -> Verified<Manifest> {
        self.verified
    }

    /// The asset id.
    pub fn id(&self) -> AssetId {
        self.id
    }

    /// Whether the caller supplied the owner's key (`true`), or the signature was only
    /// checked against the key the manifest names (`false`).
    pub fn owner_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The envelope bytes as received.
    pub fn envelope(&self) -> &[u8] {
        self.verified.envelope()
    }
}

impl Deref for VerifiedManifest {
    type Target = Manifest;
    fn deref(&self) -> &Manifest {
        self.verified.value()
    }
}
