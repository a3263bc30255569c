//! Errors of manifests, receipts and catalogs.

use tds_core::cbor::CborError;
use tds_core::cose::CoseError;
use tds_core::ErrorCode;
use tds_identity::ParticipantId;

use crate::content::CommitmentError;

/// Why a manifest, a receipt or a registration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A field breaks a rule.
    #[error("manifest.{field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The content commitment's fields do not fit together. (The message carries the
    /// commitment error's own, so it is not also given as the source.)
    #[error("manifest.{0}")]
    Commitment(CommitmentError),
    /// The envelope was refused (not COSE, wrong content type, bad signature...).
    #[error(transparent)]
    Cose(#[from] CoseError),
    /// Bytes that are not canonical CBOR.
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// The envelope is larger than allowed.
    #[error("manifest: {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The signing key is not the owner key the manifest names.
    #[error("manifest: signed by {kid}, but the manifest names owner {owner}")]
    SignerNotOwner {
        /// The key id in the envelope.
        kid: ParticipantId,
        /// The owner the manifest names.
        owner: ParticipantId,
    },
    /// The manifest names another owner than the caller expected.
    #[error("manifest.owner_key: the manifest names owner {named}, not the expected {expected}")]
    UnexpectedOwner {
        /// The id of the key the caller expected.
        expected: ParticipantId,
        /// The owner the manifest names.
        named: ParticipantId,
    },
}

impl From<CommitmentError> for ManifestError {
    fn from(e: CommitmentError) -> Self {
        ManifestError::Commitment(e)
    }
}

impl ManifestError {
    pub(crate) fn field(field: &'static str, reason: impl Into<String>) -> Self {
        ManifestError::Field {
            field,
            reason: reason.into(),
        }
    }
}

/// Why a registration or a receipt was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The credential was not issued by this authority.
    #[error("credential: issued by {issuer}, not by this authority ({authority})")]
    ForeignCredential {
        /// The issuer.
        issuer: ParticipantId,
        /// This authority.
        authority: ParticipantId,
    },
    /// The credential's subject is not the manifest's owner.
    #[error("credential: its subject {subject} is not the manifest owner {owner}")]
    NotOwner {
        /// The credential's subject.
        subject: ParticipantId,
        /// The manifest's owner.
        owner: ParticipantId,
    },
    /// The credential is not valid at the registration time.
    #[error("credential: not valid at the registration time {now}")]
    CredentialNotValid {
        /// The registration time.
        now: tds_core::time::Timestamp,
    },
    /// The authority has revoked the credential.
    #[error("credential: serial {serial} is revoked")]
    Revoked {
        /// The credential's serial number.
        serial: u64,
    },
    /// A receipt field breaks a rule.
    #[error("receipt.{field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The envelope was refused.
    #[error(transparent)]
    Cose(#[from] CoseError),
    /// The receipt is for another manifest.
    #[error("receipt: it registers asset {receipt}, not {manifest}")]
    OtherAsset {
        /// The asset in the receipt.
        receipt: crate::AssetId,
        /// The asset of the manifest.
        manifest: crate::AssetId,
    },
}

/// The code of an envelope refusal, in the area `area` (`manifest` or `receipt`).
impl ErrorCode for ManifestError {
    fn code(&self) -> &'static str {
        match self {
            ManifestError::Field { .. } => "manifest.invalid_field",
            ManifestError::Commitment(e) => e.code(),
            // Envelope and CBOR refusals keep tds-core's codes (`cose.*`, `cbor.*`): one
            // vocabulary whatever the object.
            ManifestError::Cose(e) => e.code(),
            ManifestError::Cbor(e) => e.code(),
            ManifestError::TooLarge { .. } => "manifest.too_large",
            ManifestError::SignerNotOwner { .. } => "manifest.signer_not_owner",
            ManifestError::UnexpectedOwner { .. } => "manifest.unexpected_owner",
        }
    }
}

impl ErrorCode for ReceiptError {
    fn code(&self) -> &'static str {
        match self {
            ReceiptError::ForeignCredential { .. } => "receipt.foreign_credential",
            ReceiptError::NotOwner { .. } => "receipt.not_owner",
            ReceiptError::CredentialNotValid { .. } => "receipt.credential_not_valid",
            ReceiptError::Revoked { .. } => "receipt.credential_revoked",
            ReceiptError::Field { .. } => "receipt.invalid_field",
            ReceiptError::Cose(e) => e.code(),
            ReceiptError::OtherAsset { .. } => "receipt.other_asset",
        }
    }
}
