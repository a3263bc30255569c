//! Registration (产权登记): the authority countersigns a manifest after checking the owner's
//! membership credential, and issues a receipt anyone can check with its key.

use serde::{Deserialize, Serialize};
use tds_core::cose::{self, SignedObject, Verified};
use tds_core::hash::Hash256;
use tds_core::key::PublicKey;
use tds_core::time::Timestamp;
use tds_identity::{Authority, ParticipantId, VerifiedCredential};

use std::ops::Deref;

use crate::envelope::SelfSignedManifest;
use crate::error::ReceiptError;
use crate::model::AssetId;

/// The receipt format version.
pub const RECEIPT_VERSION: u64 = 1;

/// Largest receipt envelope accepted.
pub const MAX_RECEIPT_LEN: usize = 4096;

/// A registration receipt: the authority states that `owner` registered `asset` at
/// `registered`, holding the credential `credential`. Signed by the authority as a
/// COSE_Sign1 with content type `application/tds.receipt+cbor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Format version ([`RECEIPT_VERSION`]).
    pub version: u64,
    /// The registered asset.
    pub asset: AssetId,
    /// The owner's participant id.
    pub owner: ParticipantId,
    /// The owner's public key.
    pub owner_key: PublicKey,
    /// The id of the owner's credential that was checked.
    pub credential: Hash256,
    /// The authority's participant id (the signer).
    pub authority: ParticipantId,
    /// When the registration was made.
    pub registered: Timestamp,
}

impl SignedObject for Receipt {
    const CONTENT_TYPE: &'static str = "application/tds.receipt+cbor";
}

/// Registers `manifest` with `authority`: checks that `credential` was issued by this
/// authority (under its current or an earlier key), names the manifest's owner key as its
/// subject, is valid at `now` and is not revoked in the authority's own records, then
/// signs a [`Receipt`] with the authority's current key. Returns the receipt and its envelope.
///
/// A self-signed manifest is enough: the credential is what binds the owner key to a
/// member (pass [`VerifiedManifest::as_self_signed`](crate::VerifiedManifest::as_self_signed)
/// for an authenticated one).
pub fn register(
    authority: &Authority,
    manifest: &SelfSignedManifest,
    credential: &VerifiedCredential,
    now: Timestamp,
) -> Result<(Receipt, Vec<u8>), ReceiptError> {
    let cred = credential.credential();
    if !authority.state().is_own_key(&cred.issuer()) {
        return Err(ReceiptError::ForeignCredential {
            issuer: cred.issuer(),
            authority: authority.id(),
        });
    }
    if *cred.subject_key() != manifest.owner_key {
        return Err(ReceiptError::NotOwner {
            subject: cred.subject(),
            owner: manifest.owner,
        });
    }
    if !cred.is_valid_at(now) {
        return Err(ReceiptError::CredentialNotValid { now });
    }
    if authority.is_revoked(cred.serial()) {
        return Err(ReceiptError::Revoked {
            serial: cred.serial(),
        });
    }
    let receipt = Receipt {
        version: RECEIPT_VERSION,
        asset: manifest.id(),
        owner: manifest.owner,
        owner_key: manifest.owner_key,
        credential: credential.id(),
        authority: authority.id(),
        registered: now,
    };
    let envelope = cose::sign(&**authority.signer(), &receipt)?;
    Ok((receipt, envelope))
}

/// A receipt that passed every check of [`verify_receipt`]: signed by the authority key
/// the caller gave, of the supported version, its `authority` the id of that key and its
/// `owner` the id of `owner_key`. Only [`verify_receipt`] makes one; a plain COSE
/// open-and-verify gives a `Verified<Receipt>`, not this.
#[derive(Clone, Debug)]
pub struct VerifiedReceipt {
    verified: Verified<Receipt>,
}

impl VerifiedReceipt {
    /// The receipt.
    pub fn receipt(&self) -> &Receipt {
        self.verified.value()
    }

    /// The receipt id: the `tds/receipt/v1` hash of the signed payload.
    pub fn id(&self) -> tds_core::Hash256 {
        tds_core::Domain::RECEIPT.hash(self.verified.payload())
    }

    /// The envelope bytes as received.
    pub fn envelope(&self) -> &[u8] {
        self.verified.envelope()
    }

    /// The proof-carrying envelope form from `tds-core`.
    pub fn as_verified(&self) -> &Verified<Receipt> {
        &self.verified
    }
}

impl Deref for VerifiedReceipt {
    type Target = Receipt;
    fn deref(&self) -> &Receipt {
        self.verified.value()
    }
}

/// Checks a receipt envelope with the authority's key.
pub fn verify_receipt(
    bytes: &[u8],
    authority_key: &PublicKey,
) -> Result<VerifiedReceipt, ReceiptError> {
    if bytes.len() > MAX_RECEIPT_LEN {
        return Err(ReceiptError::Field {
            field: "envelope",
            reason: format!(
                "{} bytes exceeds the limit of {MAX_RECEIPT_LEN}",
                bytes.len()
            ),
        });
    }
    let verified = cose::open::<Receipt>(bytes)?.verify(authority_key)?;
    let r = verified.value();
    if r.version != RECEIPT_VERSION {
        return Err(ReceiptError::Field {
            field: "version",
            reason: format!("version {} is not supported", r.version),
        });
    }
    if !r.authority.is_id_of(authority_key) {
        return Err(ReceiptError::Field {
            field: "authority",
            reason: "is not the id of the signing key".into(),
        });
    }
    if !r.owner.is_id_of(&r.owner_key) {
        return Err(ReceiptError::Field {
            field: "owner",
            reason: "is not the id of owner_key".into(),
        });
    }
    Ok(VerifiedReceipt { verified })
}

impl Receipt {
    /// Checks that this receipt registers `manifest` (same asset id and owner key).
    pub fn check_covers(&self, manifest: &SelfSignedManifest) -> Result<(), ReceiptError> {
        if self.asset != manifest.id() {
            return Err(ReceiptError::OtherAsset {
                receipt: self.asset,
                manifest: manifest.id(),
            });
        }
        if self.owner_key != manifest.owner_key {
            return Err(ReceiptError::NotOwner {
                subject: self.owner,
                owner: manifest.owner,
            });
        }
        Ok(())
    }
}
