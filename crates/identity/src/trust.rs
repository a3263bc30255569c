//! Trust stores: which authority keys to believe, their revocation lists, and credential
//! verification.

use std::collections::BTreeMap;
use std::ops::Deref;

use tds_core::cose::{self, SignedObject};
use tds_core::hash::{Domain, Hash256};
use tds_core::{PublicKey, Timestamp};

use crate::credential::{Credential, RawCredential, MAX_CREDENTIAL_LEN};
use crate::crl::{RawRevocationList, RevocationList};
use crate::error::IdentityError;
use crate::participant::ParticipantId;
use crate::rollover::{KeyRollover, RawKeyRollover};

/// A trusted authority key.
#[derive(Clone, Debug)]
struct TrustedKey {
    key: PublicKey,
    /// Index into `TrustStore::authorities`: keys linked by rollovers share one.
    authority: usize,
    /// The authority's name, once a rollover statement has told it.
    name: Option<String>,
}

/// One authority: the keys linked by rollovers share its revocation list.
#[derive(Clone, Debug, Default)]
struct AuthorityEntry {
    crl: Option<RevocationList>,
}

/// The authorities a verifier believes, with their latest revocation lists.
///
/// Each key added with [`add_authority`](Self::add_authority) is a trust anchor for one
/// authority; keys reached from it through [`add_rollover`](Self::add_rollover) belong to
/// the same authority, and a revocation list signed by any of them covers credentials
/// signed by all of them (serial numbers are per authority).
///
/// By default the store is strict: a credential verifies only against a revocation list
/// of its authority, and a list past its `next_update` is refused, when added and when
/// used. [`dangerous`](Self::dangerous) gives the weaker options.
///
/// ```
/// use tds_core::{SigningKey, Timestamp};
/// use tds_identity::TrustStore;
///
/// let authority_key = SigningKey::from_seed(&[9; 32]).public_key();
/// let mut store = TrustStore::new();
/// let id = store.add_authority(authority_key);
/// assert!(store.is_trusted(&id));
/// assert!(store.requires_revocation_lists());
/// ```
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    keys: BTreeMap<ParticipantId, TrustedKey>,
    authorities: Vec<AuthorityEntry>,
    accept_stale_crls: bool,
    accept_missing_crls: bool,
}

/// Options that weaken a [`TrustStore`]'s checks, from [`TrustStore::dangerous`].
#[derive(Debug)]
pub struct DangerousTrustStore<'a> {
    store: &'a mut TrustStore,
}

impl DangerousTrustStore<'_> {
    /// Uses revocation lists past their `next_update` instead of refusing them: serials on
    /// a stale list are still refused, but a serial revoked since may pass. Only for
    /// verifiers that cannot reach the authority and accept that risk.
    pub fn accept_stale_revocation_lists(&mut self) -> &mut Self {
        self.store.accept_stale_crls = true;
        self
    }

    /// Lets credentials of an authority for which no revocation list has been added pass
    /// unchecked ([`VerifiedCredential::revocation_checked`] is then `false`): a revoked
    /// credential verifies. Only for offline tools that say so in their output.
    pub fn accept_missing_revocation_lists(&mut self) -> &mut Self {
        self.store.accept_missing_crls = true;
        self
    }
}

impl TrustStore {
    /// An empty store that trusts nothing and requires a fresh revocation list of the
    /// issuing authority for every credential.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options that weaken the store's checks.
    pub fn dangerous(&mut self) -> DangerousTrustStore<'_> {
        DangerousTrustStore { store: self }
    }

    /// Whether credentials of an authority without a revocation list are refused (the
    /// default; see [`DangerousTrustStore::accept_missing_revocation_lists`]).
    pub fn requires_revocation_lists(&self) -> bool {
        !self.accept_missing_crls
    }

    /// Whether `a` and `b` are trusted keys of one authority (the same key, or keys linked
    /// by rollover statements).
    pub fn same_authority(&self, a: &ParticipantId, b: &ParticipantId) -> bool {
        match (self.keys.get(a), self.keys.get(b)) {
            (Some(x), Some(y)) => x.authority == y.authority,
            _ => false,
        }
    }

    /// Whether a revocation list is held for the authority of key `id`.
    pub fn has_revocation_list(&self, id: &ParticipantId) -> bool {
        self.revocation_list(id).is_some()
    }

    /// Trusts `key` as an authority key (a trust anchor). Adding a key already trusted
    /// changes nothing. Returns its id.
    pub fn add_authority(&mut self, key: PublicKey) -> ParticipantId {
        let id = ParticipantId::of(&key);
        if !self.keys.contains_key(&id) {
            let authority = self.authorities.len();
            self.authorities.push(AuthorityEntry::default());
            self.keys.insert(
                id,
                TrustedKey {
                    key,
                    authority,
                    name: None,
                },
            );
        }
        id
    }

    /// Trusts `keys` as the keys of one authority (an authority's own store).
    pub(crate) fn add_authority_keys(&mut self, keys: &[PublicKey]) {
        let authority = self.authorities.len();
        self.authorities.push(AuthorityEntry::default());
        for key in keys {
            self.keys
                .entry(ParticipantId::of(key))
                .or_insert(TrustedKey {
                    key: *key,
                    authority,
                    name: None,
                });
        }
    }

    /// Whether `id` is a trusted authority key.
    pub fn is_trusted(&self, id: &ParticipantId) -> bool {
        self.keys.contains_key(id)
    }

    /// The trusted key with this id.
    pub fn key(&self, id: &ParticipantId) -> Option<&PublicKey> {
        self.keys.get(id).map(|k| &k.key)
    }

    /// The authority name a rollover statement gave for this key, if any.
    pub fn authority_name(&self, id: &ParticipantId) -> Option<&str> {
        self.keys.get(id).and_then(|k| k.name.as_deref())
    }

    /// Every trusted key, by id.
    pub fn keys(&self) -> impl Iterator<Item = (&ParticipantId, &PublicKey)> {
        self.keys.iter().map(|(id, k)| (id, &k.key))
    }

    /// The revocation list held for the authority that `id` belongs to.
    pub fn revocation_list(&self, id: &ParticipantId) -> Option<&RevocationList> {
        let entry = self.keys.get(id)?;
        self.authorities.get(entry.authority)?.crl.as_ref()
    }

    fn trusted(&self, object: &'static str, kid: Hash256) -> Result<&TrustedKey, IdentityError> {
        let kid = ParticipantId::from_hash(kid);
        self.keys
            .get(&kid)
            .ok_or(IdentityError::UntrustedSigner { object, kid })
    }

    /// Follows an authority key rollover: if the statement is signed by a trusted key (its
    /// `old_key`), its `new_key` becomes trusted for the same authority. Apply a chain of
    /// rollovers oldest first. Returns the new key's id.
    pub fn add_rollover(&mut self, envelope: &[u8]) -> Result<ParticipantId, IdentityError> {
        const OBJECT: &str = "key rollover";
        let unverified = cose::open::<RawKeyRollover>(envelope)?;
        let signer = self.trusted(OBJECT, unverified.kid())?;
        let (signer_key, authority) = (signer.key, signer.authority);
        let rollover = KeyRollover::try_from(unverified.verify(&signer_key)?.into_value())?;
        if *rollover.old_key() != signer_key {
            return Err(IdentityError::SignerMismatch {
                object: OBJECT,
                named: rollover.old_id(),
                kid: ParticipantId::of(&signer_key),
            });
        }
        let new = rollover.new_id();
        match self.keys.get(&new) {
            Some(existing) if existing.authority != authority => {
                return Err(IdentityError::RolloverConflict { new });
            }
            Some(_) => {}
            None => {
                self.keys.insert(
                    new,
                    TrustedKey {
                        key: *rollover.new_key(),
                        authority,
                        name: None,
                    },
                );
            }
        }
        for id in [rollover.old_id(), new] {
            if let Some(k) = self.keys.get_mut(&id) {
                k.name = Some(rollover.authority().to_owned());
            }
        }
        Ok(new)
    }

    /// Verifies a revocation list and holds it for its authority, replacing an older one.
    ///
    /// Refused: a list not signed by a trusted key, one whose `issuer` is not its signer,
    /// a stale one (unless [`DangerousTrustStore::accept_stale_revocation_lists`]), one
    /// older than the list held, or a different list with the held sequence number.
    pub fn add_revocation_list(
        &mut self,
        envelope: &[u8],
        now: Timestamp,
    ) -> Result<&RevocationList, IdentityError> {
        const OBJECT: &str = "revocation list";
        let unverified = cose::open::<RawRevocationList>(envelope)?;
        let signer = self.trusted(OBJECT, unverified.kid())?;
        let (signer_key, authority) = (signer.key, signer.authority);
        let list = RevocationList::try_from(unverified.verify(&signer_key)?.into_value())?;
        let kid = ParticipantId::of(&signer_key);
        if list.issuer() != kid {
            return Err(IdentityError::SignerMismatch {
                object: OBJECT,
                named: list.issuer(),
                kid,
            });
        }
        if list.is_stale(now) && !self.accept_stale_crls {
            return Err(IdentityError::StaleRevocationList {
                next_update: list.next_update(),
                now,
            });
        }
        let entry = self
            .authorities
            .get_mut(authority)
            .ok_or(IdentityError::UntrustedSigner {
                object: OBJECT,
                kid,
            })?;
        match &entry.crl {
            Some(held) if held.sequence() > list.sequence() => {
                return Err(IdentityError::OlderRevocationList {
                    offered: list.sequence(),
                    held: held.sequence(),
                });
            }
            Some(held) if held.sequence() == list.sequence() && *held != list => {
                return Err(IdentityError::ConflictingRevocationList {
                    sequence: list.sequence(),
                });
            }
            _ => {}
        }
        Ok(entry.crl.insert(list))
    }

    /// Verifies a credential envelope at time `now`, in this order:
    ///
    /// 1. the envelope: at most [`MAX_CREDENTIAL_LEN`] bytes, a TDS COSE_Sign1 with content
    ///    type `application/tds.credential+cbor` and a canonical CBOR payload;
    /// 2. the `kid` names a trusted authority key, and the signature verifies with it;
    /// 3. the fields follow the credential rules, and `issuer` is the signing key's id;
    /// 4. `not_before <= now < not_after`;
    /// 5. a revocation list is held for the issuing authority, the serial is not on it,
    ///    and the list is fresh (unless stale lists are accepted); a credential of an
    ///    authority without a list is refused unless
    ///    [`DangerousTrustStore::accept_missing_revocation_lists`] was called.
    pub fn verify(
        &self,
        envelope: &[u8],
        now: Timestamp,
    ) -> Result<VerifiedCredential, IdentityError> {
        const OBJECT: &str = "credential";
        if envelope.len() > MAX_CREDENTIAL_LEN {
            return Err(IdentityError::TooLarge {
                object: OBJECT,
                size: envelope.len(),
                limit: MAX_CREDENTIAL_LEN,
            });
        }
        let unverified = cose::open::<RawCredential>(envelope)?;
        let signer = self.trusted(OBJECT, unverified.kid())?;
        let verified = unverified.verify(&signer.key)?;
        let id = Domain::CREDENTIAL.hash(verified.payload());
        let credential = Credential::try_from(verified.into_value())?;
        let kid = ParticipantId::of(&signer.key);
        if credential.issuer() != kid {
            return Err(IdentityError::SignerMismatch {
                object: OBJECT,
                named: credential.issuer(),
                kid,
            });
        }
        if now < credential.not_before() {
            return Err(IdentityError::NotYetValid {
                not_before: credential.not_before(),
                now,
            });
        }
        if now >= credential.not_after() {
            return Err(IdentityError::Expired {
                not_after: credential.not_after(),
                now,
            });
        }
        let crl = self
            .authorities
            .get(signer.authority)
            .and_then(|a| a.crl.as_ref());
        let crl_sequence = match crl {
            Some(list) => {
                // A serial on a list stays revoked even when the list is stale.
                if list.is_revoked(credential.serial()) {
                    return Err(IdentityError::Revoked {
                        serial: credential.serial(),
                        sequence: list.sequence(),
                    });
                }
                if list.is_stale(now) && !self.accept_stale_crls {
                    return Err(IdentityError::StaleRevocationList {
                        next_update: list.next_update(),
                        now,
                    });
                }
                Some(list.sequence())
            }
            None if !self.accept_missing_crls => {
                return Err(IdentityError::RevocationListMissing {
                    issuer: credential.issuer(),
                });
            }
            None => None,
        };
        Ok(VerifiedCredential {
            credential,
            id,
            envelope: envelope.to_vec(),
            checked_at: now,
            crl_sequence,
        })
    }
}

/// A credential whose signature, issuer, validity window and (where a list was held)
/// revocation status a [`TrustStore`] has checked. Only [`TrustStore::verify`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedCredential {
    credential: Credential,
    id: Hash256,
    envelope: Vec<u8>,
    checked_at: Timestamp,
    crl_sequence: Option<u64>,
}

impl VerifiedCredential {
    /// The credential.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The credential id (`tds/credential/v1` hash of the signed payload).
    pub fn id(&self) -> Hash256 {
        self.id
    }

    /// The envelope as received.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The time the checks were made for.
    pub fn checked_at(&self) -> Timestamp {
        self.checked_at
    }

    /// Whether a revocation list of the issuing authority was consulted.
    pub fn revocation_checked(&self) -> bool {
        self.crl_sequence.is_some()
    }

    /// The sequence number of the revocation list consulted, if any.
    pub fn crl_sequence(&self) -> Option<u64> {
        self.crl_sequence
    }

    /// The credential, consuming the proof.
    pub fn into_credential(self) -> Credential {
        self.credential
    }
}

impl Deref for VerifiedCredential {
    type Target = Credential;
    fn deref(&self) -> &Credential {
        &self.credential
    }
}

/// The content types of the objects this crate signs.
pub const CONTENT_TYPES: [&str; 3] = [
    Credential::CONTENT_TYPE,
    RevocationList::CONTENT_TYPE,
    KeyRollover::CONTENT_TYPE,
];
