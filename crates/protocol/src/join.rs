//! The one object of the admission path (`tds-join/1`, `spec/transport.md` §8): what a
//! participant without a credential asks the authority to certify. The transport carries
//! it; the authority decides.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;
use tds_core::cose::{self, SignedObject};
use tds_core::{PublicKey, Signer, Timestamp};
use tds_identity::{check_name, FieldError, Invalid, Jurisdiction, Role, Sector, MAX_SECTORS};

use crate::signed::SignedError;

/// The admission-request format version.
pub const ADMISSION_REQUEST_VERSION: u64 = 1;

/// What an applicant asks the authority to certify, signed by the applicant's key
/// (COSE_Sign1, content type `application/tds.admission-request+cbor`).
///
/// The signer must be `applicant_key`, and on `tds-join/1` it must also be the key the
/// applicant proved in TLS. `time` and `nonce` make each request distinct; the server
/// refuses requests whose `time` is further than its allowed skew (`tds_transport`'s
/// `JoinLimits::max_skew`) from its clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionRequest {
    /// [`ADMISSION_REQUEST_VERSION`].
    pub version: u64,
    /// The key the credential is for.
    pub applicant_key: PublicKey,
    /// The display name asked for.
    pub name: String,
    /// The sectors asked for, primary first.
    pub sectors: Vec<Sector>,
    /// The roles asked for.
    pub roles: Vec<Role>,
    /// The applicant's jurisdiction.
    pub jurisdiction: Jurisdiction,
    /// Requested start of validity.
    pub not_before: Timestamp,
    /// Requested end of validity (exclusive).
    pub not_after: Timestamp,
    /// When the request was made.
    pub time: Timestamp,
    /// 16 random bytes.
    pub nonce: ByteArray<16>,
}

impl SignedObject for AdmissionRequest {
    const CONTENT_TYPE: &'static str = "application/tds.admission-request+cbor";
}

const OBJECT: &str = "admission request";

fn field(name: &'static str, reason: Invalid) -> FieldError {
    FieldError {
        object: OBJECT,
        field: name,
        reason,
    }
}

impl AdmissionRequest {
    /// Checks the fields: version, name, at least one sector (at most
    /// [`MAX_SECTORS`]) and role, no repeats, `not_after` later than `not_before`.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.version != ADMISSION_REQUEST_VERSION {
            return Err(field(
                "version",
                Invalid::UnsupportedVersion {
                    found: self.version,
                    expected: ADMISSION_REQUEST_VERSION,
                },
            ));
        }
        check_name(&self.name).map_err(|r| field("name", r))?;
        if self.sectors.is_empty() {
            return Err(field("sectors", Invalid::Empty));
        }
        if self.sectors.len() > MAX_SECTORS {
            return Err(field(
                "sectors",
                Invalid::TooMany {
                    count: self.sectors.len(),
                    max: MAX_SECTORS,
                },
            ));
        }
        for (i, s) in self.sectors.iter().enumerate() {
            if self.sectors.iter().take(i).any(|t| t == s) {
                return Err(field("sectors", Invalid::Duplicate(s.to_string())));
            }
        }
        if self.roles.is_empty() {
            return Err(field("roles", Invalid::Empty));
        }
        for (i, r) in self.roles.iter().enumerate() {
            if self.roles.iter().take(i).any(|t| t == r) {
                return Err(field("roles", Invalid::Duplicate(r.to_string())));
            }
        }
        if self.not_after <= self.not_before {
            return Err(field("not_after", Invalid::NotLater("not_before")));
        }
        Ok(())
    }

    /// Signs the request with the applicant's key.
    pub fn sign(&self, key: &dyn Signer) -> Result<Vec<u8>, SignedError> {
        if key.public_key() != self.applicant_key {
            return Err(SignedError::WrongParty {
                what: OBJECT,
                named: self.applicant_key.id(),
                peer: key.key_id(),
            });
        }
        Ok(cose::sign(key, self)?)
    }
}
