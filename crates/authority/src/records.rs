//! The service's durable records: one redb file in the authority home
//! (`<home>/authority.redb`), values canonical CBOR (`spec/authority.md` §6).
//!
//! The authority's key and state (serials, revoked serials, revocation-list sequence)
//! stay in the home's own files (`tds_identity::store::DirAuthorityStore`) and are saved
//! first: a serial or sequence number used is never used again, whatever happens to these
//! records afterwards. The witness memory stays in `<home>/witness.json`, shared with
//! `tds witness cosign`.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tds_core::cbor;
use tds_core::hash::Hash256;
use tds_core::Timestamp;
use tds_identity::ParticipantId;

use crate::error::AuthorityError;

/// The records file in the authority home.
pub const FILE_NAME: &str = "authority.redb";

/// Admission requests by id (16 bytes).
const ADMISSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("admissions");
/// Applicant participant id (32 bytes) → admission request id.
const APPLICANTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("applicants");
/// Credentials issued through the service, by serial (8 bytes, big-endian).
const ISSUED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("issued");
/// Catalog entries by offer id (32 bytes).
const CATALOG: TableDefinition<&[u8], &[u8]> = TableDefinition::new("catalog");
/// Single values: `crl` (the latest signed revocation list).
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");

const CRL_KEY: &[u8] = b"crl";

/// Where an admission request stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Status {
    /// Waiting for the operator.
    Pending,
    /// Approved: the credential issued.
    Approved {
        /// Its serial.
        serial: u64,
        /// The signed credential.
        credential: ByteBuf,
        /// When.
        at: Timestamp,
    },
    /// Rejected.
    Rejected {
        /// The operator's reason.
        reason: String,
        /// When.
        at: Timestamp,
    },
}

/// One admission request as kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionRecord {
    /// The applicant's signed request (COSE_Sign1, verified when received).
    pub envelope: ByteBuf,
    /// When it was received.
    pub received: Timestamp,
    /// Where it stands.
    pub status: Status,
}

/// A credential issued through the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedRecord {
    /// Its subject.
    pub subject: ParticipantId,
    /// The admission request it answered (16 bytes).
    pub request: ByteBuf,
    /// Set once revoked: the operator's reason and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<(String, Timestamp)>,
}

/// A catalog entry as kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRecord {
    /// The provider-signed offer.
    pub offer: ByteBuf,
    /// The owner-signed manifest.
    pub manifest: ByteBuf,
    /// When it was (last) published.
    pub published: Timestamp,
}

fn encode<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, AuthorityError> {
    cbor::encode(v).map_err(|e| AuthorityError::store(what, e))
}

fn decode<T: serde::de::DeserializeOwned + Serialize>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, AuthorityError> {
    cbor::decode(bytes).map_err(|e| AuthorityError::store(what, e))
}

/// The records file.
pub(crate) struct Records {
    db: Database,
}

/// A change to several tables, committed at once.
#[derive(Default)]
pub(crate) struct Change {
    admissions: Vec<([u8; 16], AdmissionRecord)>,
    applicants: Vec<(ParticipantId, [u8; 16])>,
    issued: Vec<(u64, IssuedRecord)>,
    catalog: Vec<(Hash256, CatalogRecord)>,
    crl: Option<Vec<u8>>,
}

impl Change {
    pub(crate) fn admission(mut self, id: [u8; 16], r: AdmissionRecord) -> Self {
        self.admissions.push((id, r));
        self
    }
    pub(crate) fn applicant(mut self, who: ParticipantId, id: [u8; 16]) -> Self {
        self.applicants.push((who, id));
        self
    }
    pub(crate) fn issued(mut self, serial: u64, r: IssuedRecord) -> Self {
        self.issued.push((serial, r));
        self
    }
    pub(crate) fn catalog(mut self, id: Hash256, r: CatalogRecord) -> Self {
        self.catalog.push((id, r));
        self
    }
    pub(crate) fn crl(mut self, bytes: Vec<u8>) -> Self {
        self.crl = Some(bytes);
        self
    }
}

impl Records {
    /// Opens (or creates) the records in `home`.
    pub(crate) fn open(home: &Path) -> Result<Records, AuthorityError> {
        let path = home.join(FILE_NAME);
        let db = Database::create(&path)
            .map_err(|e| AuthorityError::store("open", format!("{}: {e}", path.display())))?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        for t in [ADMISSIONS, APPLICANTS, ISSUED, CATALOG, META] {
            txn.open_table(t)?;
        }
        txn.commit()?;
        Ok(Records { db })
    }

    /// Applies `change` in one durable transaction.
    pub(crate) fn commit(&self, change: Change) -> Result<(), AuthorityError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut t = txn.open_table(ADMISSIONS)?;
            for (id, r) in &change.admissions {
                t.insert(&id[..], &encode("admission", r)?[..])?;
            }
            let mut t = txn.open_table(APPLICANTS)?;
            for (who, id) in &change.applicants {
                t.insert(&who.as_bytes()[..], &id[..])?;
            }
            let mut t = txn.open_table(ISSUED)?;
            for (serial, r) in &change.issued {
                t.insert(&serial.to_be_bytes()[..], &encode("issued", r)?[..])?;
            }
            let mut t = txn.open_table(CATALOG)?;
            for (id, r) in &change.catalog {
                t.insert(&id.as_bytes()[..], &encode("catalog", r)?[..])?;
            }
            if let Some(crl) = &change.crl {
                let mut t = txn.open_table(META)?;
                t.insert(CRL_KEY, &crl[..])?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub(crate) fn admission(
        &self,
        id: &[u8; 16],
    ) -> Result<Option<AdmissionRecord>, AuthorityError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ADMISSIONS)?;
        let v = t.get(&id[..])?;
        v.map(|g| decode("admission", g.value())).transpose()
    }

    /// Every admission request, in id order.
    pub(crate) fn admissions(&self) -> Result<Vec<([u8; 16], AdmissionRecord)>, AuthorityError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ADMISSIONS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let id: [u8; 16] = k
                .value()
                .try_into()
                .map_err(|_| AuthorityError::store("admission", "a key is not 16 bytes"))?;
            out.push((id, decode("admission", v.value())?));
        }
        Ok(out)
    }

    pub(crate) fn applicant(
        &self,
        who: &ParticipantId,
    ) -> Result<Option<[u8; 16]>, AuthorityError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(APPLICANTS)?;
        let v = t.get(&who.as_bytes()[..])?;
        v.map(|g| {
            g.value()
                .try_into()
                .map_err(|_| AuthorityError::store("applicant", "a value is not 16 bytes"))
        })
        .transpose()
    }

    pub(crate) fn issued(&self, serial: u64) -> Result<Option<IssuedRecord>, AuthorityError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ISSUED)?;
        let v = t.get(&serial.to_be_bytes()[..])?;
        v.map(|g| decode("issued", g.value())).transpose()
    }

    /// Every credential issued through the service, in serial order.
    pub(crate) fn all_issued(&self) -> Result<Vec<(u64, IssuedRecord)>, AuthorityError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ISSUED)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let serial: [u8; 8] = k
                .value()
                .try_into()
                .map_err(|_| AuthorityError::store("issued", "a key is not 8 bytes"))?;
            out.push((u64::from_be_bytes(serial), decode("issued", v.value())?));
        }
        Ok(out)
    }

    /// Every catalog entry, in offer-id order.
    pub(crate) fn catalog(&self) -> Result<Vec<(Hash256, CatalogRecord)>, AuthorityError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(CATALOG)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let id = Hash256::from_slice(k.value())
                .ok_or_else(|| AuthorityError::store("catalog", "a key is not 32 bytes"))?;
            out.push((id, decode("catalog", v.value())?));
        }
        Ok(out)
    }

    pub(crate) fn crl(&self) -> Result<Option<Vec<u8>>, AuthorityError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(META)?;
        let v = t.get(CRL_KEY)?;
        Ok(v.map(|g| g.value().to_vec()))
    }
}
