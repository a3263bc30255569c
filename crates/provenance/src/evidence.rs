//! Evidence bundles: everything an arbiter needs to check, offline and trusting only the
//! authority's key, what a log says about one agreement.
//!
//! A bundle (canonical CBOR, [`Bundle`]) holds the log's verifier key, one checkpoint note
//! with the authority's cosignature, every event about the agreement with its inclusion
//! proof into that checkpoint, and the membership credentials of the keys involved.
//! [`verify`] checks, in order:
//!
//! 1. the bundle decodes strictly and within [`MAX_BUNDLE_BYTES`] and [`MAX_EVENTS`];
//! 2. the log key is a TDS log key, named after its key ([`crate::log::check_log_key`]),
//!    and the checkpoint is signed by it;
//! 3. the checkpoint carries a valid cosignature of the witness key
//!    ([`crate::witness::witness_key`]) of an authority key the caller's [`TrustStore`]
//!    trusts;
//! 4. each credential verifies in that trust store at the checkpoint's cosigning time, and
//!    one of them is for the log key, issued by the authority whose witness cosigned: a
//!    log counts as evidence only if it belongs to a member;
//! 5. each event decodes strictly, in increasing log order;
//! 6. every signed object embedded in an event is of the kind its field holds (an
//!    `asset_published` holds the manifest of that asset, an `agreement_concluded` the
//!    agreement, ...), has the id the event names, and verifies through the caller's
//!    [`ObjectVerifier`] (which knows agreements and manifests; an object of a kind it
//!    does not know fails the bundle);
//! 7. every `agreement_concluded` event embeds the bundle's agreement, whose parties are
//!    exactly the event's provider and consumer, and the log belongs to one of them;
//! 8. each event concerns the agreement (or publishes an asset the agreement covers or a
//!    transfer of it moved, owned by the agreement's provider), and its inclusion proof
//!    leads to the checkpoint's root.
//!
//! Only [`verify`] makes a [`VerifiedEvidence`].

use serde::{Deserialize, Serialize};
use tds_core::cbor::{self, CborError, Limits};
use tds_core::hash::Hash256;
use tds_core::merkle::{self, MerkleError};
use tds_core::{ErrorCode, Timestamp};
use tds_identity::{IdentityError, ParticipantId, TrustStore};

use crate::event::{Event, EventBody, EventError, SignedObject};
use crate::log::check_log_key;
use crate::note::{self, Note, NoteError, VerifierKey};
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
    #[error("evidence")]
    Cbor(#[from] CborError),
    /// The checkpoint or the log key is bad.
    #[error("evidence: checkpoint")]
    Note(#[from] NoteError),
    /// A check failed; [`Invalid`] says which.
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

impl ErrorCode for EvidenceError {
    fn code(&self) -> &'static str {
        match self {
            EvidenceError::Cbor(e) => e.code(),
            EvidenceError::Note(e) => e.code(),
            EvidenceError::Invalid(i) => i.code(),
        }
    }
}

/// Which check of a bundle failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// The bundle is larger than [`MAX_BUNDLE_BYTES`].
    #[error("evidence: bundle: {size} bytes is over the limit of {MAX_BUNDLE_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// A bundle format version this code does not know.
    #[error("evidence: v: unsupported version {0}")]
    Version(u64),
    /// More than [`MAX_EVENTS`] events.
    #[error("evidence: events: more than {MAX_EVENTS}")]
    TooManyEvents,
    /// No cosignature by a trusted authority's witness key.
    #[error("evidence: checkpoint: not cosigned by the witness key of a trusted authority")]
    NotCosigned,
    /// A credential does not verify.
    #[error("evidence: credentials[{index}]")]
    Credential {
        /// Its position.
        index: usize,
        /// Why.
        #[source]
        source: IdentityError,
    },
    /// The log key's credential comes from another authority than the witness's.
    #[error("evidence: credentials: the log key's credential is not issued by the authority whose witness cosigned")]
    OtherAuthority,
    /// No credential for the log's key: the log is not shown to belong to a member.
    #[error("evidence: credentials: none is for the log's key (the log is not shown to belong to a member)")]
    NoLogKeyCredential,
    /// An event does not decode.
    #[error("evidence: events[{position}]")]
    Event {
        /// Its position in the bundle.
        position: usize,
        /// Why.
        #[source]
        source: EventError,
    },
    /// Events out of log order.
    #[error(
        "evidence: events[{position}] (index {index}): events are not in increasing log order"
    )]
    Order {
        /// Its position in the bundle.
        position: usize,
        /// Its log index.
        index: u64,
    },
    /// An embedded object does not verify.
    #[error("evidence: events[{position}] (index {index}): embedded {kind}")]
    Object {
        /// Its event's position in the bundle.
        position: usize,
        /// Its event's log index.
        index: u64,
        /// The object's kind.
        kind: String,
        /// Why.
        #[source]
        source: ObjectError,
    },
    /// An embedded object of another kind than its field holds.
    #[error("evidence: events[{position}] (index {index}): holds a {found} where the event's field holds a {expected}")]
    ObjectKind {
        /// Its event's position.
        position: usize,
        /// Its event's log index.
        index: u64,
        /// The kind the field holds.
        expected: &'static str,
        /// The kind found.
        found: String,
    },
    /// An `agreement_concluded` event of the bundle's agreement without the agreement.
    #[error("evidence: events[{position}] (index {index}): agreement_concluded does not embed the signed agreement")]
    NotEmbedded {
        /// Its position.
        position: usize,
        /// Its log index.
        index: u64,
    },
    /// The log's owner is neither party of the agreement.
    #[error("evidence: log: its key is neither the provider's nor the consumer's (the log is not a party's)")]
    LogNotParty,
    /// A published asset of the agreement whose manifest another key signed than the
    /// agreement's provider.
    #[error("evidence: events[{position}] (index {index}): the manifest of asset {asset} is not signed by the agreement's provider")]
    AssetOwner {
        /// Its position.
        position: usize,
        /// Its log index.
        index: u64,
        /// The asset.
        asset: Hash256,
    },
    /// An embedded object is not the one its event names.
    #[error("evidence: events[{position}] (index {index}): embedded {kind} is {found}, the event says {claimed}")]
    ObjectId {
        /// Its event's position.
        position: usize,
        /// Its event's log index.
        index: u64,
        /// The object's kind.
        kind: String,
        /// The id the object has.
        found: Hash256,
        /// The id the event claims.
        claimed: Hash256,
    },
    /// An `agreement_concluded` event whose agreement is not the bundle's, or whose
    /// parties are not the embedded agreement's.
    #[error("evidence: events[{position}] (index {index}): {reason}")]
    Concluded {
        /// Its position.
        position: usize,
        /// Its log index.
        index: u64,
        /// What does not match.
        reason: &'static str,
    },
    /// No `agreement_concluded` event embedding the bundle's agreement.
    #[error("evidence: events: no agreement_concluded event embedding the signed agreement")]
    NotConcluded,
    /// An event that does not concern the agreement.
    #[error("evidence: events[{position}] (index {index}): does not concern the agreement")]
    Unrelated {
        /// Its position.
        position: usize,
        /// Its log index.
        index: u64,
    },
    /// An inclusion proof that does not lead to the checkpoint's root.
    #[error("evidence: events[{position}] (index {index}): inclusion proof")]
    Inclusion {
        /// Its position.
        position: usize,
        /// Its log index.
        index: u64,
        /// Why.
        #[source]
        source: MerkleError,
    },
}

impl ErrorCode for Invalid {
    fn code(&self) -> &'static str {
        match self {
            Invalid::TooLarge { .. } => "evidence.too_large",
            Invalid::Version(_) => "evidence.version",
            Invalid::TooManyEvents => "evidence.too_many_events",
            Invalid::NotCosigned => "evidence.not_cosigned",
            Invalid::Credential { .. } => "evidence.credential",
            Invalid::NoLogKeyCredential => "evidence.no_log_key_credential",
            Invalid::OtherAuthority => "evidence.other_authority",
            Invalid::Event { .. } => "evidence.event",
            Invalid::Order { .. } => "evidence.order",
            Invalid::Object { .. } => "evidence.object",
            Invalid::ObjectId { .. } => "evidence.object_id",
            Invalid::ObjectKind { .. } => "evidence.object_kind",
            Invalid::NotEmbedded { .. } => "evidence.not_embedded",
            Invalid::LogNotParty => "evidence.log_not_party",
            Invalid::AssetOwner { .. } => "evidence.asset_owner",
            Invalid::Concluded { .. } => "evidence.concluded",
            Invalid::NotConcluded => "evidence.not_concluded",
            Invalid::Unrelated { .. } => "evidence.unrelated",
            Invalid::Inclusion { .. } => "evidence.inclusion",
        }
    }
}

/// Why an embedded signed object did not verify: a code and the underlying error.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ObjectError {
    /// The code (the object crate's own, or `evidence.object.unknown_kind`).
    pub code: &'static str,
    /// The reason, in words.
    pub message: String,
}

impl ObjectError {
    /// An error with `code` from any error (its whole chain becomes the message).
    pub fn new(code: &'static str, error: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = error.to_string();
        let mut cause = error.source();
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        ObjectError { code, message }
    }
}

/// What an [`ObjectVerifier`] found in one embedded object.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckedObject {
    /// The object's id, computed from its signed bytes.
    pub id: Hash256,
    /// For an agreement: its provider and consumer participant ids.
    pub parties: Option<(Hash256, Hash256)>,
    /// For a single-signer object: its signer's participant id (a manifest's owner, an
    /// offer's provider, a receipt's authority).
    pub signer: Option<Hash256>,
    /// The assets it covers (an agreement's asset; a manifest's own id).
    pub assets: Vec<Hash256>,
    /// What was checked, in words (`signatures of both parties verified`).
    pub check: &'static str,
}

impl CheckedObject {
    /// A checked object.
    pub fn new(
        id: Hash256,
        parties: Option<(Hash256, Hash256)>,
        assets: Vec<Hash256>,
        check: &'static str,
    ) -> Self {
        CheckedObject {
            id,
            parties,
            signer: None,
            assets,
            check,
        }
    }

    /// The same, signed by the participant `signer`.
    pub fn signed_by(mut self, signer: Hash256) -> Self {
        self.signer = Some(signer);
        self
    }
}

/// Verifies the signed objects events embed. This crate keeps them as opaque bytes; the
/// crate that knows policies and manifests (`tds-objects`) implements this for agreements
/// and manifests. An implementation must refuse kinds it does not know.
pub trait ObjectVerifier {
    /// Verifies `object` (its signatures and rules) and returns what it found.
    fn verify_object(&self, object: &SignedObject) -> Result<CheckedObject, ObjectError>;
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
            return Err(Invalid::TooLarge { size: bytes.len() }.into());
        }
        let b: Bundle = cbor::decode_with(bytes, &limits())?;
        if b.v != BUNDLE_VERSION {
            return Err(Invalid::Version(b.v).into());
        }
        if b.events.len() > MAX_EVENTS {
            return Err(Invalid::TooManyEvents.into());
        }
        Ok(b)
    }
}

/// One embedded object of a verified bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSummary {
    /// The log index of the event that embeds it.
    pub event: u64,
    /// Its kind.
    pub kind: String,
    /// Its id.
    pub id: Hash256,
    /// What was checked.
    pub check: &'static str,
}

/// A bundle that passed every check of [`verify`]; only [`verify`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEvidence {
    agreement: Hash256,
    origin: String,
    tree_size: u64,
    root: Hash256,
    cosigned_at: Timestamp,
    events: Vec<(u64, String)>,
    credentials: Vec<(Hash256, String)>,
    revocation_checked: bool,
    objects: Vec<ObjectSummary>,
}

impl VerifiedEvidence {
    /// The agreement.
    pub fn agreement(&self) -> Hash256 {
        self.agreement
    }
    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }
    /// The checkpoint's tree size.
    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }
    /// The checkpoint's root.
    pub fn root(&self) -> Hash256 {
        self.root
    }
    /// When the authority's witness cosigned (whole seconds).
    pub fn cosigned_at(&self) -> Timestamp {
        self.cosigned_at
    }
    /// `(log index, kind)` of each event.
    pub fn events(&self) -> &[(u64, String)] {
        &self.events
    }
    /// Credential ids checked, with the member names.
    pub fn credentials(&self) -> &[(Hash256, String)] {
        &self.credentials
    }
    /// Whether every credential was checked against a revocation list.
    pub fn revocation_checked(&self) -> bool {
        self.revocation_checked
    }
    /// The embedded objects and what was checked of each.
    pub fn objects(&self) -> &[ObjectSummary] {
        &self.objects
    }
}

/// The object kinds an event's embedded-object field may hold (as one text for messages
/// and as the list), the id the event gives it (if it names one), and the object.
#[expect(clippy::type_complexity, reason = "a private helper's tuple")]
fn embedded(
    body: &EventBody,
) -> (
    Option<(&'static str, &'static [&'static str], Option<Hash256>)>,
    Option<&SignedObject>,
) {
    match body {
        EventBody::AssetPublished { asset, object } => (
            Some(("manifest", &["manifest"], Some(*asset))),
            object.as_ref(),
        ),
        EventBody::OfferPublished { offer, object, .. } => {
            (Some(("offer", &["offer"], Some(*offer))), object.as_ref())
        }
        EventBody::AgreementConcluded {
            agreement, object, ..
        } => (
            Some(("agreement", &["agreement"], Some(*agreement))),
            object.as_ref(),
        ),
        // A consumer's usage report, or a side's signed metering record.
        EventBody::UsageReported { report, object, .. } => (
            Some((
                "usage-report or usage-record",
                &["usage-report", "usage-record"],
                Some(*report),
            )),
            object.as_ref(),
        ),
        EventBody::TransferCompleted { receipt, .. } => (
            Some(("transfer-receipt", &["transfer-receipt"], None)),
            receipt.as_ref(),
        ),
        // The receipt of a fulfilled duty: a deletion receipt for `delete`.
        EventBody::DutyFulfilled { receipt, .. } => (
            Some(("deletion-receipt", &["deletion-receipt"], None)),
            receipt.as_ref(),
        ),
        _ => (None, None),
    }
}

/// Verifies a bundle (see the [module docs](self) for the steps), trusting the authority
/// keys and revocation lists in `trust` and checking embedded objects with `objects`.
pub fn verify(
    bytes: &[u8],
    trust: &TrustStore,
    objects: &dyn ObjectVerifier,
) -> Result<VerifiedEvidence, EvidenceError> {
    let b = Bundle::decode(bytes)?;
    let log_key = VerifierKey::parse(&b.log_key)?;
    check_log_key(&log_key)?;
    let cp = note::verify_checkpoint(b.checkpoint.as_bytes(), &log_key)?;
    // The cosignature of any trusted authority key's witness.
    let mut cosigned: Option<(Timestamp, ParticipantId)> = None;
    for (id, key) in trust.keys() {
        let wk = witness::witness_key(key)?;
        if let Ok(t) = note::verify_cosignature(cp.note(), &wk) {
            if cosigned.as_ref().is_none_or(|(c, _)| t > *c) {
                cosigned = Some((t, *id));
            }
        }
    }
    let (cosigned_at, witness) = cosigned.ok_or(Invalid::NotCosigned)?;
    let size = cp.checkpoint().size;
    let root = cp.checkpoint().root;

    // The cosignature has one-second resolution: check at the end of that second.
    let at = cosigned_at.saturating_add_millis(999);
    let mut credentials = Vec::new();
    let mut log_key_credential = None;
    let mut revocation_checked = true;
    for (index, env) in b.credentials.iter().enumerate() {
        let v = trust
            .verify(env, at)
            .map_err(|source| Invalid::Credential { index, source })?;
        if v.credential().subject_key() == &log_key.key {
            log_key_credential = Some(v.credential().issuer());
        }
        revocation_checked &= v.revocation_checked();
        credentials.push((v.id(), v.credential().name().to_owned()));
    }
    let issuer = log_key_credential.ok_or(Invalid::NoLogKeyCredential)?;
    // The witnessing authority's own member: another trusted authority's credential must
    // not stand in for one it revoked.
    if !trust.same_authority(&issuer, &witness) {
        return Err(Invalid::OtherAuthority.into());
    }

    let mut decoded = Vec::with_capacity(b.events.len());
    let mut prev: Option<u64> = None;
    for (position, be) in b.events.iter().enumerate() {
        if prev.is_some_and(|p| be.index <= p) {
            return Err(Invalid::Order {
                position,
                index: be.index,
            }
            .into());
        }
        prev = Some(be.index);
        let e = Event::decode(&be.event).map_err(|source| Invalid::Event { position, source })?;
        decoded.push(e);
    }

    // Every embedded object, of the kind and id its field names, checked; every
    // agreement_concluded embeds the bundle's agreement, which names its parties and
    // assets.
    let log_owner = log_key.key.id();
    let mut summaries = Vec::new();
    let mut assets: Vec<Hash256> = Vec::new();
    let mut parties: Option<(Hash256, Hash256)> = None;
    let mut manifest_owners: Vec<(usize, u64, Hash256, Option<Hash256>)> = Vec::new();
    for (position, (be, e)) in b.events.iter().zip(&decoded).enumerate() {
        let index = be.index;
        let (slot, object) = embedded(&e.body);
        if let (EventBody::AgreementConcluded { .. }, None) = (&e.body, object) {
            return Err(Invalid::NotEmbedded { position, index }.into());
        }
        let (Some((expected, allowed, named)), Some(o)) = (slot, object) else {
            continue;
        };
        let kind = o.kind.as_str().to_owned();
        if !allowed.contains(&kind.as_str()) {
            return Err(Invalid::ObjectKind {
                position,
                index,
                expected,
                found: kind,
            }
            .into());
        }
        let checked = objects.verify_object(o).map_err(|source| Invalid::Object {
            position,
            index,
            kind: kind.clone(),
            source,
        })?;
        for claimed in [Some(o.id), named].into_iter().flatten() {
            if checked.id != claimed {
                return Err(Invalid::ObjectId {
                    position,
                    index,
                    kind,
                    found: checked.id,
                    claimed,
                }
                .into());
            }
        }
        summaries.push(ObjectSummary {
            event: index,
            kind,
            id: o.id,
            check: checked.check,
        });
        match &e.body {
            EventBody::AgreementConcluded {
                agreement,
                provider,
                consumer,
                ..
            } => {
                let concluded_here = |reason| Invalid::Concluded {
                    position,
                    index,
                    reason,
                };
                if *agreement != b.agreement {
                    return Err(
                        concluded_here("concludes another agreement than the bundle's").into(),
                    );
                }
                if checked.parties != Some((*provider, *consumer)) {
                    return Err(concluded_here(
                        "its provider and consumer are not the embedded agreement's parties",
                    )
                    .into());
                }
                parties = Some((*provider, *consumer));
                assets.extend(checked.assets.iter().copied());
            }
            EventBody::AssetPublished { asset, .. } => {
                manifest_owners.push((position, index, *asset, checked.signer));
            }
            _ => {}
        }
    }
    let (provider, consumer) = parties.ok_or(Invalid::NotConcluded)?;
    if log_owner != provider && log_owner != consumer {
        return Err(Invalid::LogNotParty.into());
    }
    // Assets moved by transfers of this agreement: their publication is related too.
    assets.extend(decoded.iter().filter_map(|e| match &e.body {
        EventBody::TransferStarted {
            agreement, asset, ..
        } if *agreement == b.agreement => Some(*asset),
        _ => None,
    }));
    // An asset of the agreement is the provider's: a manifest of it signed by anyone else
    // is not the asset agreed on.
    for (position, index, asset, owner) in manifest_owners {
        if assets.contains(&asset) && owner != Some(provider) {
            return Err(Invalid::AssetOwner {
                position,
                index,
                asset,
            }
            .into());
        }
    }

    let mut events = Vec::new();
    for (position, (be, e)) in b.events.iter().zip(&decoded).enumerate() {
        let related = e.agreement() == Some(&b.agreement)
            || matches!(&e.body, EventBody::AssetPublished { asset, .. } if assets.contains(asset));
        if !related {
            return Err(Invalid::Unrelated {
                position,
                index: be.index,
            }
            .into());
        }
        merkle::verify_inclusion(
            &merkle::leaf_hash(&be.event),
            be.index,
            size,
            &be.proof,
            &root,
        )
        .map_err(|source| Invalid::Inclusion {
            position,
            index: be.index,
            source,
        })?;
        events.push((be.index, e.kind().to_owned()));
    }
    Ok(VerifiedEvidence {
        agreement: b.agreement,
        origin: cp.checkpoint().origin.clone(),
        tree_size: size,
        root,
        cosigned_at,
        events,
        credentials,
        revocation_checked,
        objects: summaries,
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
        return Err(crate::log::VerifyError::ForeignCheckpoint { size }.into());
    }
    // Only the events the log's index names: the agreement's, then the publications of
    // its assets (those given and those its transfers moved).
    let mut chosen: std::collections::BTreeMap<u64, Vec<u8>> = std::collections::BTreeMap::new();
    let mut assets: Vec<Hash256> = assets.to_vec();
    for i in log.events_for(agreement)?.into_iter().filter(|i| *i < size) {
        let bytes = log.store().read(i)?;
        let e = Event::decode(&bytes)?;
        if e.agreement() != Some(agreement) {
            continue;
        }
        if let EventBody::TransferStarted { asset, .. } = &e.body {
            assets.push(*asset);
        }
        chosen.insert(i, bytes);
    }
    assets.sort_unstable();
    assets.dedup();
    for asset in &assets {
        for i in log.events_for(asset)?.into_iter().filter(|i| *i < size) {
            let bytes = log.store().read(i)?;
            if matches!(&Event::decode(&bytes)?.body, EventBody::AssetPublished { asset: a, .. } if a == asset)
            {
                chosen.insert(i, bytes);
            }
        }
    }
    let mut events = Vec::with_capacity(chosen.len());
    for (i, bytes) in chosen {
        let proof = log.store().inclusion_proof(i, size)?;
        events.push(BundleEvent {
            index: i,
            event: bytes,
            proof,
        });
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
