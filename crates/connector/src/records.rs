//! The connector's typed records on the [`Store`]: what each table holds, encoded as
//! canonical CBOR and decoded strictly (a record that does not decode is
//! `kv.corrupt`, never a panic).
//!
//! | table | key | value |
//! |---|---|---|
//! | `assets` | asset id text (`sha256:...` of the manifest) | [`AssetRecord`] |
//! | `offers` | offer id (32 bytes) | [`OfferRecord`] |
//! | `agreements` | agreement id (32 bytes) | [`AgreementRecord`] |
//! | `terminations` | agreement id | [`TerminationRecord`] |
//! | `usage` | `served/` + agreement id + `/transfers` or `/bytes` | counter (provider) |
//! | `usage` | `meter/` + agreement id + `/` + record id | [`MeterRecord`] |
//! | `nonces` | consumer id + nonce (48 bytes) | request time (u64 BE) |
//! | `transfers` | agreement id | [`FetchRecord`] (consumer resume state) |
//! | `meta` | `version` | the record format version |
//! | `meta` | `catalog` | counter: changes of the offers (every batch that writes an offer adds 1; the in-memory catalog is rebuilt when it moved) |

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tds_core::hash::Hash256;
use tds_core::Timestamp;

use crate::store::{Store, StoreError, Table};

/// The version of these records; kept under `meta/version`.
pub const RECORDS_VERSION: u64 = 1;

/// Encodes a record.
pub(crate) fn encode<T: Serialize>(table: Table, value: &T) -> Result<Vec<u8>, StoreError> {
    tds_core::cbor::encode(value)
        .map_err(|e| StoreError::Corrupt(format!("a {table} record does not encode: {e}")))
}

/// Decodes a record read back from `table` under `key`.
pub(crate) fn decode<T: DeserializeOwned + Serialize>(
    table: Table,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    tds_core::cbor::decode(bytes).map_err(|e| {
        StoreError::Corrupt(format!(
            "record {table}/{} does not decode: {e}",
            hex::encode(key)
        ))
    })
}

/// Reads and decodes one record.
pub(crate) fn get<T: DeserializeOwned + Serialize>(
    store: &dyn Store,
    table: Table,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match store.get(table, key)? {
        Some(bytes) => decode(table, key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Where a published asset's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceRecord {
    /// One regular file.
    File {
        /// Its absolute path.
        path: String,
    },
    /// The regular files of a directory, concatenated in byte order of their relative
    /// paths (see [`crate::source::DirSource`]).
    Dir {
        /// Its absolute path.
        path: String,
    },
    /// An integrator's source, registered again under this name after a restart.
    Custom {
        /// The name.
        name: String,
    },
}

/// An asset this connector serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetRecord {
    /// The owner-signed manifest.
    #[serde(with = "serde_bytes")]
    pub manifest: Vec<u8>,
    /// Where its bytes are.
    pub source: SourceRecord,
    /// The chunk tree file (absolute path), when kept on disk.
    pub tree: Option<String>,
    /// When it was published.
    pub published: Timestamp,
}

/// An offer this connector made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferRecord {
    /// The provider-signed offer.
    #[serde(with = "serde_bytes")]
    pub offer: Vec<u8>,
    /// The asset id text it offers.
    pub asset: String,
    /// Withdrawn (no longer in the catalog, no new negotiations).
    pub withdrawn: bool,
}

/// Which side of an agreement this connector is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The provider.
    Provider,
    /// The consumer.
    Consumer,
}

/// An agreement in force (or ended: see the terminations table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementRecord {
    /// The two-party signed agreement.
    #[serde(with = "serde_bytes")]
    pub agreement: Vec<u8>,
    /// This connector's side.
    pub side: Side,
    /// The provider's signed FINALIZED notice.
    #[serde(with = "serde_bytes")]
    pub notice: Vec<u8>,
    /// When it was stored.
    pub stored: Timestamp,
    /// Consumer: the provider's address (where usage reports and deletion receipts go).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_addr: Option<String>,
}

/// The last usage report a consumer sent for an agreement (`usage` table, key
/// `report/` + agreement id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRecord {
    /// The end of the period it covered.
    pub to: Timestamp,
    /// The guard's use count at that time.
    pub uses: u64,
    /// The report id.
    pub report: Hash256,
}

/// Key of an agreement's last usage report.
pub(crate) fn report_key(agreement: &Hash256) -> Vec<u8> {
    let mut k = b"report/".to_vec();
    k.extend_from_slice(agreement.as_bytes());
    k
}

/// An agreement that ended before its time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminationRecord {
    /// Who ended it (participant id).
    pub by: Hash256,
    /// The reason code.
    pub code: String,
    /// The signed termination, when there is one.
    #[serde(with = "serde_bytes")]
    pub termination: Vec<u8>,
    /// When it was recorded.
    pub time: Timestamp,
}

/// A consumer's fetch of an agreement's asset: where the bytes go and which chunks are
/// verified and durable there, so a restart resumes without asking for them again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchRecord {
    /// The output file (absolute path).
    pub out: String,
    /// The manifest of the asset, once the provider named it.
    #[serde(with = "serde_bytes")]
    pub manifest: Vec<u8>,
    /// The verified set (`VerifierState` bytes) as of the last sync of the output file.
    #[serde(with = "serde_bytes")]
    pub verified: Vec<u8>,
    /// Whether every chunk is verified.
    pub complete: bool,
    /// The consumer's signed transfer receipt, once complete.
    #[serde(with = "serde_bytes")]
    pub receipt: Vec<u8>,
    /// Whether the local copy was deleted.
    pub deleted: bool,
}

/// One metering record (priced agreements): what a transfer delivered and what it costs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterRecord {
    /// The agreement.
    pub agreement: Hash256,
    /// The transfer.
    pub transfer: Hash256,
    /// The provider.
    pub provider: Hash256,
    /// The consumer.
    pub consumer: Hash256,
    /// Uses (transfers) metered.
    pub uses: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// The amount due, in the currency's minor units as the price states them.
    pub amount: u64,
    /// The currency.
    pub currency: String,
    /// When.
    pub time: Timestamp,
    /// The log index of the event that recorded it.
    pub log_index: u64,
    /// The signed usage record (`application/tds.usage-record+cbor`, signed by this
    /// side) the log event carries; empty in records written before it was signed.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    pub signed: Vec<u8>,
}

/// Key of a provider-side usage counter.
pub(crate) fn served_key(agreement: &Hash256, what: &str) -> Vec<u8> {
    let mut k = b"served/".to_vec();
    k.extend_from_slice(agreement.as_bytes());
    k.push(b'/');
    k.extend_from_slice(what.as_bytes());
    k
}

/// Prefix of an agreement's metering records.
pub(crate) fn meter_prefix(agreement: Option<&Hash256>) -> Vec<u8> {
    let mut k = b"meter/".to_vec();
    if let Some(a) = agreement {
        k.extend_from_slice(a.as_bytes());
        k.push(b'/');
    }
    k
}

/// Checks (or writes, on a new store) the records version.
pub(crate) fn check_version(store: &dyn Store) -> Result<(), StoreError> {
    match store.get(Table::Meta, b"version")? {
        None => {
            let mut b = crate::store::Batch::new();
            b.put(Table::Meta, b"version".to_vec(), RECORDS_VERSION.to_be_bytes());
            store.commit(b)
        }
        Some(v) if v == RECORDS_VERSION.to_be_bytes() => Ok(()),
        Some(v) => Err(StoreError::Corrupt(format!(
            "the store holds records of version {} and this connector reads version {RECORDS_VERSION}",
            <[u8; 8]>::try_from(v.as_slice()).map_or_else(
                |_| format!("({} bytes)", v.len()),
                |b| u64::from_be_bytes(b).to_string()
            )
        ))),
    }
}
