//! Membership credentials.

use serde::{Deserialize, Serialize};
use tds_core::cose::SignedObject;
use tds_core::hash::{Domain, Hash256};
use tds_core::{cbor, PublicKey, Timestamp};

use crate::attributes::{check_name, Jurisdiction, Role, Sector, MAX_SECTORS};
use crate::error::{FieldError, Invalid};
use crate::participant::ParticipantId;

/// The credential format version this code reads and writes.
pub const CREDENTIAL_VERSION: u64 = 1;

/// Largest credential envelope a trust store accepts (a real one is well under 2 KiB).
pub const MAX_CREDENTIAL_LEN: usize = 64 * 1024;

const OBJECT: &str = "credential";

/// A membership credential: the data-space authority's statement that the holder of
/// `subject_key` is a member, with a name, sectors, roles and a jurisdiction, for a window
/// of time.
///
/// Every `Credential` value is valid: one is only made by an [`Authority`](crate::Authority)
/// (which checks the fields before signing) or by decoding (which checks them again). The
/// rules are in `spec/identity.md`. Whether a credential is *trusted* is a different
/// question, answered by [`TrustStore::verify`](crate::TrustStore::verify).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawCredential")]
pub struct Credential {
    version: u64,
    serial: u64,
    issuer: ParticipantId,
    issuer_key: PublicKey,
    subject: ParticipantId,
    subject_key: PublicKey,
    name: String,
    sectors: Vec<Sector>,
    roles: Vec<Role>,
    jurisdiction: Jurisdiction,
    not_before: Timestamp,
    not_after: Timestamp,
    issued_at: Timestamp,
}

impl SignedObject for Credential {
    const CONTENT_TYPE: &'static str = "application/tds.credential+cbor";
}

/// The wire form before its fields are checked: what the decoder produces first, so that
/// field errors come out typed instead of through serde's string errors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RawCredential {
    pub(crate) version: u64,
    pub(crate) serial: u64,
    pub(crate) issuer: ParticipantId,
    pub(crate) issuer_key: PublicKey,
    pub(crate) subject: ParticipantId,
    pub(crate) subject_key: PublicKey,
    pub(crate) name: String,
    pub(crate) sectors: Vec<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) jurisdiction: String,
    pub(crate) not_before: Timestamp,
    pub(crate) not_after: Timestamp,
    pub(crate) issued_at: Timestamp,
}

impl SignedObject for RawCredential {
    const CONTENT_TYPE: &'static str = Credential::CONTENT_TYPE;
}

fn field(field: &'static str, reason: Invalid) -> FieldError {
    FieldError::new(OBJECT, field, reason)
}

impl TryFrom<RawCredential> for Credential {
    type Error = FieldError;

    fn try_from(raw: RawCredential) -> Result<Self, FieldError> {
        // Check the version first: a future version may change every other field.
        check_version(raw.version)?;
        let sectors = raw
            .sectors
            .iter()
            .map(|s| s.parse::<Sector>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| field("sectors", e))?;
        let roles = raw
            .roles
            .iter()
            .map(|s| s.parse::<Role>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| field("roles", e))?;
        let jurisdiction = raw
            .jurisdiction
            .parse::<Jurisdiction>()
            .map_err(|e| field("jurisdiction", e))?;
        let credential = Credential {
            version: raw.version,
            serial: raw.serial,
            issuer: raw.issuer,
            issuer_key: raw.issuer_key,
            subject: raw.subject,
            subject_key: raw.subject_key,
            name: raw.name,
            sectors,
            roles,
            jurisdiction,
            not_before: raw.not_before,
            not_after: raw.not_after,
            issued_at: raw.issued_at,
        };
        credential.check()?;
        Ok(credential)
    }
}

fn check_version(version: u64) -> Result<(), FieldError> {
    if version != CREDENTIAL_VERSION {
        return Err(field(
            "version",
            Invalid::UnsupportedVersion {
                found: version,
                expected: CREDENTIAL_VERSION,
            },
        ));
    }
    Ok(())
}

fn check_unique<T: PartialEq + std::fmt::Display>(
    name: &'static str,
    items: &[T],
    max: usize,
) -> Result<(), FieldError> {
    if items.is_empty() {
        return Err(field(name, Invalid::Empty));
    }
    if items.len() > max {
        return Err(field(
            name,
            Invalid::TooMany {
                count: items.len(),
                max,
            },
        ));
    }
    for (i, item) in items.iter().enumerate() {
        if items.iter().take(i).any(|earlier| earlier == item) {
            return Err(field(name, Invalid::Duplicate(item.to_string())));
        }
    }
    Ok(())
}

impl Credential {
    /// Assembles a credential and checks every field rule.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per credential field"
    )]
    pub(crate) fn new(
        serial: u64,
        issuer_key: PublicKey,
        subject_key: PublicKey,
        name: String,
        sectors: Vec<Sector>,
        roles: Vec<Role>,
        jurisdiction: Jurisdiction,
        not_before: Timestamp,
        not_after: Timestamp,
        issued_at: Timestamp,
    ) -> Result<Self, FieldError> {
        let credential = Credential {
            version: CREDENTIAL_VERSION,
            serial,
            issuer: ParticipantId::of(&issuer_key),
            issuer_key,
            subject: ParticipantId::of(&subject_key),
            subject_key,
            name,
            sectors,
            roles,
            jurisdiction,
            not_before,
            not_after,
            issued_at,
        };
        credential.check()?;
        Ok(credential)
    }

    /// The rules that involve more than one field's type.
    fn check(&self) -> Result<(), FieldError> {
        check_version(self.version)?;
        // No revocation list can name serial 0 (list serials start at 1), so a credential
        // with it could never be revoked.
        if self.serial == 0 {
            return Err(field("serial", Invalid::OutOfRange("serials start at 1")));
        }
        if !self.issuer.is_id_of(&self.issuer_key) {
            return Err(field("issuer", Invalid::NotKeyId("issuer_key")));
        }
        if !self.subject.is_id_of(&self.subject_key) {
            return Err(field("subject", Invalid::NotKeyId("subject_key")));
        }
        check_name(&self.name).map_err(|e| field("name", e))?;
        check_unique("sectors", &self.sectors, MAX_SECTORS)?;
        check_unique("roles", &self.roles, Role::ALL.len())?;
        if self.not_after <= self.not_before {
            return Err(field("not_after", Invalid::NotLater("not_before")));
        }
        Ok(())
    }

    /// The credential id: the `tds/credential/v1` hash of its canonical CBOR (the signed
    /// payload).
    pub fn id(&self) -> Result<Hash256, cbor::CborError> {
        Ok(Domain::CREDENTIAL.hash(&cbor::encode(self)?))
    }

    /// The format version ([`CREDENTIAL_VERSION`]).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The serial number the authority assigned; revocation lists name it.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// The id of the authority key that signed the credential.
    pub fn issuer(&self) -> ParticipantId {
        self.issuer
    }

    /// The authority key that signed the credential.
    pub fn issuer_key(&self) -> &PublicKey {
        &self.issuer_key
    }

    /// The member's id.
    pub fn subject(&self) -> ParticipantId {
        self.subject
    }

    /// The member's public key.
    pub fn subject_key(&self) -> &PublicKey {
        &self.subject_key
    }

    /// The member's display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The member's sectors, the primary one first (never empty).
    pub fn sectors(&self) -> &[Sector] {
        &self.sectors
    }

    /// The primary sector (the first listed; a valid credential always has one).
    pub fn sector(&self) -> Option<&Sector> {
        self.sectors.first()
    }

    /// Whether the member belongs to `sector`.
    pub fn in_sector(&self, sector: &Sector) -> bool {
        self.sectors.contains(sector)
    }

    /// The member's roles (never empty, no repeats).
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// Whether the member holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The member's jurisdiction.
    pub fn jurisdiction(&self) -> &Jurisdiction {
        &self.jurisdiction
    }

    /// Start of validity (inclusive).
    pub fn not_before(&self) -> Timestamp {
        self.not_before
    }

    /// End of validity (exclusive).
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }

    /// When the authority signed it.
    pub fn issued_at(&self) -> Timestamp {
        self.issued_at
    }

    /// Whether `now` is inside the validity window: `not_before <= now < not_after`.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.not_before <= now && now < self.not_after
    }
}
