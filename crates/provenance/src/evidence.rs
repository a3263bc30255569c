//! Evidence bundles: everything an arbiter needs to check, offline and trusting only the
//! authority's key, what a log says about one agreement.
//!
//! A bundle (canonical CBOR, [`Bundle`]) holds the log's verifier key, one checkpoint note
//! with the authority's cosignature, every event about the agreement with its inclusion
//! proof into that checkpoint, and the membership credentials of the keys involved.
//! [`verify`] checks, in order:
//!
//! 1. the bundle decodes strictly and within [`MAX_BUNDLE_BYTES`] and [`MAX_EVENTS`];
//! 2. the checkpoint is signed by the log key (origin = key name);
//! 3. the checkpoint carries a valid cosignature of the authority's witness key
//!    ([`crate::witness::witness_key`] of the trusted authority key);
//! 4. each credential verifies under the authority key at the checkpoint's cosigning
//!    time; one of them must be for the log key (the log belongs to a member);
//! 5. each event decodes strictly, concerns the agreement (or publishes an asset a
//!    transfer of the agreement moved), and its inclusion proof leads to the
//!    checkpoint's root;
//! 6. at least one event is the agreement's `agreement_concluded`.

use serde::{Deserialize, Serialize};
use tds_core::cbor::{self, CborError, Limits};
use tds_core::hash::Hash256;
use tds_core::key::PublicKey;
use tds_core::merkle;
use tds_core::Timestamp;

use crate::event::{Event, EventBody};
use crate::note::{self, Note, NoteError, VerifierKey, TYPE_ED25519};
use crate::witness;

/// Bundle format version.
pub const BUNDLE_VERSION: u64 = 1;
/// Largest bundle in bytes.
pub const MAX_BUNDLE_BYTES: usize = 16 << 20;
/// Most events in one bundle.
pub const MAX_EVENTS: usize = 10_000;

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Not a canonical CBOR bundle.
    #[error("evidence: {0}")]
    Cbor(#[from] CborError),
    /// The checkpoint or a key is bad.
    #[error("evidence: checkpoint: {0}")]
    Note(#[from] NoteError),
    /// A check failed; the message names which.
    #[error("evidence: {field}: {reason}")]
    Invalid {
        /// What was being checked.
        field: String,
        /// Why it failed.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// One event with its proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEvent {
    /// Its index in the log.
    pub index: u64,
    /// Its canonical bytes.
    #[serde(with = "serde_bytes")]
    pub event: Vec<u8>,
    /// Its inclusion proof into the checkpoint.
    pub proof: Vec<Hash256>,
}

/// An evidence bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// [`BUNDLE_VERSION`].
    pub v: u64,
    /// The agreement id.
    pub agreement: Hash256,
    /// The log's verifier key (signed-note form).
    pub log_key: String,
    /// The checkpoint note, with the authority's cosignature.
    pub checkpoint: String,
    /// The events, in log order.
    pub events: Vec<BundleEvent>,
    /// Membership credentials (COSE envelopes).
    pub credentials: Vec<serde_bytes::ByteBuf>,
}

fn limits() -> Limits {
    Limits {
        max_depth: 8,
        max_size: MAX_BUNDLE_BYTES,
        ..Limits::DEFAULT
    }
}

impl Bundle {
    /// The canonical bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EvidenceError> {
        Ok(cbor::encode_with(self, &limits())?)
    }

    /// Decodes strictly (no size or count checks beyond the limits; [`verify`] checks).
    pub fn decode(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(invalid(
                "bundle",
                format!("{} bytes is over the limit", bytes.len()),
            ));
        }
        let b: Bundle = cbor::decode_with(bytes, &limits())?;
        if b.v != BUNDLE_VERSION {
            return Err(invalid("v", format!("unsupported version {}", b.v)));
        }
        if b.events.len() > MAX_EVENTS {
            return Err(invalid("events", format!("more than {MAX_EVENTS}")));
        }
        Ok(b)
    }
}

/// What a verified bundle shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The agreement.
    pub agreement: Hash256,
    /// The log's origin.
    pub origin: String,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The checkpoint's root.
    pub root: Hash256,
    /// When the authority cosigned (seconds since the epoch).
    pub cosigned_at: u64,
    /// `(index, kind)` of each event.
    pub events: Vec<(u64, String)>,
    /// Credential ids checked, with the member names.
    pub credentials: Vec<(Hash256, String)>,
    /// Whether a credential for the log key was among them.
    pub log_key_credential: bool,
}

/// Verifies a bundle trusting only `authority` (see the [module docs](self) for the
/// steps).
pub fn verify(bytes: &[u8], authority: &PublicKey) -> Result<Summary, EvidenceError> {
    verify_with_assets(bytes, authority, &[])
}

/// [`verify`], also accepting the `asset_published` events of `assets`: the assets the
/// agreement covers, which the caller reads from the agreement it has verified itself
/// (this crate does not parse agreements).
pub fn verify_with_assets(
    bytes: &[u8],
    authority: &PublicKey,
    assets: &[Hash256],
) -> Result<Summary, EvidenceError> {
    let extra_assets = assets;
    let b = Bundle::decode(bytes)?;
    let log_key = VerifierKey::parse(&b.log_key)?;
    if log_key.kind != TYPE_ED25519 {
        return Err(invalid("log_key", "not an Ed25519 note key"));
    }
    let cp = note::verify_checkpoint(b.checkpoint.as_bytes(), &log_key)?;
    let wk = witness::witness_key(authority)?;
    let cosigned_at = note::verify_cosignature(cp.note(), &wk).map_err(|e| {
        invalid(
            "checkpoint",
            format!("not cosigned by the authority's witness key {wk}: {e}"),
        )
    })?;
    let size = cp.checkpoint().size;
    let root = cp.checkpoint().root;

    let mut trust = tds_identity::TrustStore::new();
    trust.add_authority(*authority);
    trust.dangerous().accept_missing_revocation_lists();
    // The cosignature has one-second resolution: check at the end of that second.
    let at = Timestamp::from_secs(cosigned_at).saturating_add_millis(999);
    let mut credentials = Vec::new();
    let mut log_key_credential = false;
    for (i, env) in b.credentials.iter().enumerate() {
        let v = trust
            .verify(env, at)
            .map_err(|e| invalid(format!("credentials[{i}]"), e.to_string()))?;
        if v.credential().subject_key() == &log_key.key {
            log_key_credential = true;
        }
        credentials.push((v.id(), v.credential().name().to_owned()));
    }
    if !b.credentials.is_empty() && !log_key_credential {
        return Err(invalid(
            "credentials",
            "none is for the log's key (the log is not shown to belong to a member)",
        ));
    }

    // Assets moved by transfers of this agreement: their publication is related too.
    let mut decoded = Vec::with_capacity(b.events.len());
    for (k, be) in b.events.iter().enumerate() {
        let e =
            Event::decode(&be.event).map_err(|e| invalid(format!("events[{k}]"), e.to_string()))?;
        decoded.push(e);
    }
    let assets: Vec<Hash256> = extra_assets
        .iter()
        .copied()
        .chain(decoded.iter().filter_map(|e| match &e.body {
            EventBody::TransferStarted {
                agreement, asset, ..
            } if *agreement == b.agreement => Some(*asset),
            _ => None,
        }))
        .collect();
    let mut events = Vec::new();
    let mut concluded = false;
    let mut prev: Option<u64> = None;
    for (k, (be, e)) in b.events.iter().zip(&decoded).enumerate() {
        let field = format!("events[{k}] (index {})", be.index);
        if prev.is_some_and(|p| be.index <= p) {
            return Err(invalid(field, "events are not in increasing log order"));
        }
        prev = Some(be.index);
        let related = e.agreement() == Some(&b.agreement)
            || matches!(&e.body, EventBody::AssetPublished { asset, .. } if assets.contains(asset));
        if !related {
            return Err(invalid(field, "does not concern the agreement"));
        }
        if matches!(&e.body, EventBody::AgreementConcluded { agreement, .. } if *agreement == b.agreement)
        {
            concluded = true;
        }
        merkle::verify_inclusion(
            &merkle::leaf_hash(&be.event),
            be.index,
            size,
            &be.proof,
            &root,
        )
        .map_err(|err| invalid(field, format!("inclusion proof: {err}")))?;
        events.push((be.index, e.kind().to_owned()));
    }
    if !concluded {
        return Err(invalid(
            "events",
            "no agreement_concluded event for the agreement",
        ));
    }
    Ok(Summary {
        agreement: b.agreement,
        origin: cp.checkpoint().origin.clone(),
        tree_size: size,
        root,
        cosigned_at,
        events,
        credentials,
        log_key_credential,
    })
}

/// Builds a bundle for `agreement` from a log, proving into `checkpoint` (a note signed by
/// the log, ideally cosigned; its size must be within the log and its root the log's).
pub fn export<S: crate::store::LogStore>(
    log: &crate::Log<S>,
    agreement: &Hash256,
    checkpoint: &str,
    credentials: Vec<Vec<u8>>,
) -> Result<Bundle, crate::LogError> {
    export_with_assets(log, agreement, &[], checkpoint, credentials)
}

/// [`export`], also taking the `asset_published` events of `assets` (the assets the
/// agreement covers, which the caller reads from the agreement's terms: this crate does
/// not parse agreements). Assets named by the agreement's `transfer_started` events are
/// always taken.
pub fn export_with_assets<S: crate::store::LogStore>(
    log: &crate::Log<S>,
    agreement: &Hash256,
    assets: &[Hash256],
    checkpoint: &str,
    credentials: Vec<Vec<u8>>,
) -> Result<Bundle, crate::LogError> {
    let vk = log.verifier_key()?;
    let cp = note::verify_checkpoint(checkpoint.as_bytes(), &vk)?;
    let size = cp.checkpoint().size;
    if log.root(size)? != cp.checkpoint().root {
        return Err(crate::LogError::Verify(format!(
            "the checkpoint's root for size {size} is not this log's"
        )));
    }
    let mut chosen: Vec<(u64, Vec<u8>, Event)> = Vec::new();
    for i in 0..size {
        let bytes = log.store().read(i)?;
        let e = Event::decode(&bytes)?;
        chosen.push((i, bytes, e));
    }
    let assets: Vec<Hash256> = assets
        .iter()
        .copied()
        .chain(chosen.iter().filter_map(|(_, _, e)| match &e.body {
            EventBody::TransferStarted {
                agreement: a,
                asset,
                ..
            } if a == agreement => Some(*asset),
            _ => None,
        }))
        .collect();
    let mut events = Vec::new();
    for (i, bytes, e) in chosen {
        let related = e.agreement() == Some(agreement)
            || matches!(&e.body, EventBody::AssetPublished { asset, .. } if assets.contains(asset));
        if related {
            let proof = log.store().inclusion_proof(i, size)?;
            events.push(BundleEvent {
                index: i,
                event: bytes,
                proof,
            });
        }
    }
    // Keep the note exactly as given (with its cosignatures).
    let _ = Note::parse(checkpoint.as_bytes())?;
    Ok(Bundle {
        v: BUNDLE_VERSION,
        agreement: *agreement,
        log_key: vk.to_string(),
        checkpoint: checkpoint.to_owned(),
        events,
        credentials: credentials
            .into_iter()
            .map(serde_bytes::ByteBuf::from)
            .collect(),
    })
}
