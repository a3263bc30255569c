//! The data-space authority: admits members, revokes them, signs revocation lists and
//! rolls its key over.

use std::collections::BTreeSet;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tds_core::{cose, PublicKey, Signer, Timestamp};

use crate::attributes::{check_name, Jurisdiction, Role, Sector};
use crate::credential::Credential;
use crate::crl::RevocationList;
use crate::error::{FieldError, IdentityError, Invalid};
use crate::participant::ParticipantId;
use crate::rollover::KeyRollover;
use crate::trust::{TrustStore, VerifiedCredential};

/// The authority-state format version this code reads and writes.
pub const STATE_VERSION: u64 = 1;

const STATE: &str = "authority state";

/// What an authority is asked to certify about a new member.
///
/// [`Authority::admit`] checks it (the same rules a decoder applies to a credential) and
/// signs a [`Credential`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The member's public key.
    pub subject_key: PublicKey,
    /// The member's display name (1 to 128 characters).
    pub name: String,
    /// The member's sectors, primary first (1 to 16, no repeats).
    pub sectors: Vec<Sector>,
    /// The member's roles (at least one, no repeats).
    pub roles: Vec<Role>,
    /// The member's jurisdiction.
    pub jurisdiction: Jurisdiction,
    /// Start of validity (inclusive).
    pub not_before: Timestamp,
    /// End of validity (exclusive); later than `not_before`.
    pub not_after: Timestamp,
}

/// A value and the COSE_Sign1 envelope an [`Authority`] signed it in.
#[derive(Clone, Debug)]
pub struct Signed<T> {
    value: T,
    envelope: Vec<u8>,
}

impl<T> Signed<T> {
    /// The value that was signed.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The envelope bytes, to store or send.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The envelope bytes, consuming `self`.
    pub fn into_envelope(self) -> Vec<u8> {
        self.envelope
    }
}

impl<T> Deref for Signed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

fn sign<T: cose::SignedObject>(key: &dyn Signer, value: T) -> Result<Signed<T>, IdentityError> {
    let envelope = cose::sign(key, &value)?;
    Ok(Signed { value, envelope })
}

/// What an authority must remember between runs, apart from its signing key: its name,
/// its current and earlier public keys, the next serial number, the revoked serials and
/// the sequence number of the last revocation list.
///
/// Serializable (CBOR or JSON) so a node can keep it in a file beside the key file; the
/// rules are checked again when it is read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawAuthorityState")]
pub struct AuthorityState {
    version: u64,
    name: String,
    public_key: PublicKey,
    previous_keys: Vec<PublicKey>,
    next_serial: u64,
    revoked: BTreeSet<u64>,
    crl_sequence: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorityState {
    version: u64,
    name: String,
    public_key: PublicKey,
    previous_keys: Vec<PublicKey>,
    next_serial: u64,
    revoked: Vec<u64>,
    crl_sequence: u64,
}

fn state_field(field: &'static str, reason: Invalid) -> FieldError {
    FieldError::new(STATE, field, reason)
}

impl TryFrom<RawAuthorityState> for AuthorityState {
    type Error = FieldError;

    fn try_from(raw: RawAuthorityState) -> Result<Self, FieldError> {
        if raw
            .revoked
            .windows(2)
            .any(|w| matches!(w, [a, b] if a >= b))
        {
            return Err(state_field("revoked", Invalid::NotSortedUnique));
        }
        let state = AuthorityState {
            version: raw.version,
            name: raw.name,
            public_key: raw.public_key,
            previous_keys: raw.previous_keys,
            next_serial: raw.next_serial,
            revoked: raw.revoked.into_iter().collect(),
            crl_sequence: raw.crl_sequence,
        };
        state.check()?;
        Ok(state)
    }
}

impl AuthorityState {
    fn check(&self) -> Result<(), FieldError> {
        if self.version != STATE_VERSION {
            return Err(state_field(
                "version",
                Invalid::UnsupportedVersion {
                    found: self.version,
                    expected: STATE_VERSION,
                },
            ));
        }
        check_name(&self.name).map_err(|e| state_field("name", e))?;
        if self.next_serial == 0 {
            return Err(state_field(
                "next_serial",
                Invalid::OutOfRange("must be at least 1"),
            ));
        }
        if self
            .revoked
            .iter()
            .any(|s| *s == 0 || *s >= self.next_serial)
        {
            return Err(state_field(
                "revoked",
                Invalid::OutOfRange("names a serial that was never issued"),
            ));
        }
        for (i, key) in self.previous_keys.iter().enumerate() {
            if *key == self.public_key || self.previous_keys.iter().take(i).any(|k| k == key) {
                return Err(state_field(
                    "previous_keys",
                    Invalid::Duplicate(key.to_hex()),
                ));
            }
        }
        Ok(())
    }

    /// The authority's display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Earlier public keys, oldest first.
    pub fn previous_keys(&self) -> &[PublicKey] {
        &self.previous_keys
    }

    /// The serial the next credential will get (serials start at 1).
    pub fn next_serial(&self) -> u64 {
        self.next_serial
    }

    /// The revoked serials, ascending.
    pub fn revoked(&self) -> impl Iterator<Item = u64> + '_ {
        self.revoked.iter().copied()
    }

    /// The sequence number of the last revocation list signed (0 if none).
    pub fn crl_sequence(&self) -> u64 {
        self.crl_sequence
    }

    /// Whether `id` is the current or an earlier key of this authority.
    pub fn is_own_key(&self, id: &ParticipantId) -> bool {
        id.is_id_of(&self.public_key) || self.previous_keys.iter().any(|k| id.is_id_of(k))
    }
}

/// The data-space authority: its signing key and [`AuthorityState`].
///
/// Methods that change the state (`admit`, `revoke`, `revocation_list`, `rollover`,
/// `rotate_subject_key`) change it only when they succeed; the caller persists
/// [`Authority::state`] afterwards, before handing out what was signed, so that a serial
/// or sequence number is never used twice.
///
/// ```
/// use tds_core::{SigningKey, Timestamp};
/// use tds_identity::{Admission, Authority, Role, Sector};
///
/// let mut authority = Authority::new("Shanxi Energy Data Space", SigningKey::generate()?)?;
/// let now = Timestamp::from_secs(1_800_000_000);
/// let member = SigningKey::generate()?;
/// let issued = authority.admit(
///     &Admission {
///         subject_key: member.public_key(),
///         name: "Taiyuan Grid".into(),
///         sectors: vec![Sector::POWER],
///         roles: vec![Role::Provider],
///         jurisdiction: "CN-SX".parse()?,
///         not_before: now,
///         not_after: now.saturating_add_millis(365 * tds_core::time::DAY_MS),
///     },
///     now,
/// )?;
/// assert_eq!(issued.serial(), 1);
/// assert_eq!(authority.state().next_serial(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Authority {
    key: Arc<dyn Signer>,
    state: AuthorityState,
}

impl Authority {
    /// A new authority named `name` with signing key `key` and nothing issued yet.
    pub fn new(name: &str, key: impl Into<Arc<dyn Signer>>) -> Result<Self, IdentityError> {
        let key = key.into();
        let state = AuthorityState {
            version: STATE_VERSION,
            name: name.to_owned(),
            public_key: key.public_key(),
            previous_keys: Vec::new(),
            next_serial: 1,
            revoked: BTreeSet::new(),
            crl_sequence: 0,
        };
        state.check()?;
        Ok(Authority { key, state })
    }

    /// An authority from a stored key and state; the key must be the one the state names.
    pub fn from_parts(
        key: impl Into<Arc<dyn Signer>>,
        state: AuthorityState,
    ) -> Result<Self, IdentityError> {
        let key = key.into();
        if key.public_key() != state.public_key {
            return Err(IdentityError::KeyMismatch {
                key: ParticipantId::of(&key.public_key()),
                state: ParticipantId::of(&state.public_key),
            });
        }
        Ok(Authority { key, state })
    }

    /// The key and state, to store.
    pub fn into_parts(self) -> (Arc<dyn Signer>, AuthorityState) {
        (self.key, self.state)
    }

    /// The state, to persist after every change.
    pub fn state(&self) -> &AuthorityState {
        &self.state
    }

    /// The current signer (shared: the authority's log and witness sign with it too).
    pub fn signer(&self) -> &Arc<dyn Signer> {
        &self.key
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The current public key.
    pub fn public_key(&self) -> PublicKey {
        self.state.public_key
    }

    /// The id of the current key.
    pub fn id(&self) -> ParticipantId {
        ParticipantId::of(&self.state.public_key)
    }

    /// A trust store that trusts this authority's current and earlier keys (as one
    /// authority), for checking credentials it issued. It holds no revocation list and
    /// accepts credentials without one: the authority checks revocation against its own
    /// records ([`Authority::is_revoked`]), as [`Authority::check_member`] does.
    pub fn trust_store(&self) -> TrustStore {
        let mut store = TrustStore::new();
        store.dangerous().accept_missing_revocation_lists();
        let keys: Vec<PublicKey> = self
            .state
            .previous_keys
            .iter()
            .copied()
            .chain(std::iter::once(self.state.public_key))
            .collect();
        store.add_authority_keys(&keys);
        store
    }

    /// Verifies a member's credential envelope as this authority: issued under its current
    /// or an earlier key, valid at `now`, and not revoked in its own records (which are
    /// always current, so no revocation list is needed). What the witness and the
    /// registration desk use before they act for a member.
    pub fn check_member(
        &self,
        envelope: &[u8],
        now: Timestamp,
    ) -> Result<VerifiedCredential, IdentityError> {
        let verified = self.trust_store().verify(envelope, now)?;
        if self.is_revoked(verified.serial()) {
            return Err(IdentityError::RevokedHere {
                serial: verified.serial(),
            });
        }
        Ok(verified)
    }

    /// Checks `admission` and signs a credential for it with the next serial number.
    pub fn admit(
        &mut self,
        admission: &Admission,
        now: Timestamp,
    ) -> Result<Signed<Credential>, IdentityError> {
        let serial = self.state.next_serial;
        let next = serial
            .checked_add(1)
            .ok_or(IdentityError::Exhausted("serial"))?;
        let credential = Credential::new(
            serial,
            self.state.public_key,
            admission.subject_key,
            admission.name.clone(),
            admission.sectors.clone(),
            admission.roles.clone(),
            admission.jurisdiction.clone(),
            admission.not_before,
            admission.not_after,
            now,
        )?;
        let signed = sign(&*self.key, credential)?;
        self.state.next_serial = next;
        Ok(signed)
    }

    fn check_issued(&self, serial: u64) -> Result<(), IdentityError> {
        if serial == 0 || serial >= self.state.next_serial {
            return Err(IdentityError::UnknownSerial {
                serial,
                last: self.state.next_serial.saturating_sub(1),
            });
        }
        Ok(())
    }

    /// Revokes `serial`. Returns `false` if it was already revoked. The next revocation
    /// list names it.
    pub fn revoke(&mut self, serial: u64) -> Result<bool, IdentityError> {
        self.check_issued(serial)?;
        Ok(self.state.revoked.insert(serial))
    }

    /// Whether `serial` is revoked.
    pub fn is_revoked(&self, serial: u64) -> bool {
        self.state.revoked.contains(&serial)
    }

    /// Signs the current revocation list with the next sequence number, valid until
    /// `next_update` (which must be later than `now`).
    pub fn revocation_list(
        &mut self,
        now: Timestamp,
        next_update: Timestamp,
    ) -> Result<Signed<RevocationList>, IdentityError> {
        let sequence = self
            .state
            .crl_sequence
            .checked_add(1)
            .ok_or(IdentityError::Exhausted("revocation list sequence"))?;
        let list = RevocationList::new(
            self.state.public_key,
            sequence,
            now,
            next_update,
            self.state.revoked.iter().copied().collect(),
        )?;
        let signed = sign(&*self.key, list)?;
        self.state.crl_sequence = sequence;
        Ok(signed)
    }

    /// Key rotation for a member: signs a credential for `new_subject_key` with the same
    /// name, sectors, roles, jurisdiction and end of validity as `old`, valid from `now`,
    /// and revokes `old`'s serial. Publish a new revocation list afterwards.
    ///
    /// `old` must be a verified credential of this authority, so a member cannot obtain
    /// attributes it was never given by presenting a forged credential.
    pub fn rotate_subject_key(
        &mut self,
        old: &VerifiedCredential,
        new_subject_key: PublicKey,
        now: Timestamp,
    ) -> Result<Signed<Credential>, IdentityError> {
        if !self.state.is_own_key(&old.issuer()) {
            return Err(IdentityError::NotIssuedHere {
                serial: old.serial(),
                issuer: old.issuer(),
            });
        }
        self.check_issued(old.serial())?;
        if new_subject_key == *old.subject_key() {
            return Err(FieldError::new(
                "credential",
                "subject_key",
                Invalid::NotDifferent("the old credential's subject_key"),
            )
            .into());
        }
        let admission = Admission {
            subject_key: new_subject_key,
            name: old.name().to_owned(),
            sectors: old.sectors().to_vec(),
            roles: old.roles().to_vec(),
            jurisdiction: old.jurisdiction().clone(),
            not_before: now,
            not_after: old.not_after(),
        };
        let signed = self.admit(&admission, now)?;
        self.state.revoked.insert(old.serial());
        Ok(signed)
    }

    /// Authority key rollover: signs, with the current key, a [`KeyRollover`] naming
    /// `new_key`, then makes `new_key` the current key. Returns the signed statement (to
    /// publish to every trust store) and the old signing key (to archive or destroy).
    ///
    /// Serial and sequence numbers continue across the rollover, and later revocation
    /// lists (signed by the new key) cover credentials signed by the old one.
    pub fn rollover(
        &mut self,
        new_key: impl Into<Arc<dyn Signer>>,
        now: Timestamp,
    ) -> Result<(Signed<KeyRollover>, Arc<dyn Signer>), IdentityError> {
        let new_key = new_key.into();
        let new_public = new_key.public_key();
        if self.state.previous_keys.contains(&new_public) {
            return Err(FieldError::new(
                "key rollover",
                "new_key",
                Invalid::NotDifferent("every earlier key of the authority"),
            )
            .into());
        }
        let rollover = KeyRollover::new(
            self.state.name.clone(),
            self.state.public_key,
            new_public,
            now,
        )?;
        let signed = sign(&*self.key, rollover)?;
        self.state.previous_keys.push(self.state.public_key);
        self.state.public_key = new_public;
        let old = std::mem::replace(&mut self.key, new_key);
        Ok((signed, old))
    }
}
