//! Provenance events made from verified objects, and recording them in a log.
//!
//! The log keeps the signed bytes of what it records, so evidence bundles carry them and
//! an arbiter can check them offline ([`crate::StandardVerifier`]).

use tds_core::hash::Hash256;
use tds_core::Timestamp;
use tds_manifest::SelfSignedManifest;
use tds_policy::contract::VerifiedAgreement;
use tds_provenance::event::{Code, Event, EventBody, EventError, SignedObject};
use tds_provenance::store::LogStore;
use tds_provenance::{Log, LogError};

use crate::Kind;

fn embedded(kind: Kind, id: Hash256, bytes: &[u8]) -> Result<SignedObject, EventError> {
    Ok(SignedObject {
        kind: Code::new(kind.name())?,
        id,
        bytes: bytes.to_vec(),
    })
}

/// `agreement_concluded` for a verified two-party agreement, embedding its signed bytes:
/// the event's provider and consumer are the agreement's, and its negotiation is the
/// agreement's request.
pub fn agreement_concluded(
    agreement: &VerifiedAgreement,
    actor: Hash256,
    time: Timestamp,
) -> Result<Event, EventError> {
    let t = agreement.terms();
    Ok(Event::new(
        time,
        actor,
        EventBody::AgreementConcluded {
            agreement: agreement.id(),
            negotiation: t.request,
            provider: t.provider,
            consumer: t.consumer,
            object: Some(embedded(
                Kind::Agreement,
                agreement.id(),
                agreement.envelope(),
            )?),
        },
    ))
}

/// `asset_published` for a manifest signed by the owner key it names, embedding its
/// signed bytes. The log records what was published; a self-signed manifest is what the
/// publisher can show (pass `VerifiedManifest::as_self_signed` for an authenticated one).
pub fn asset_published(
    manifest: &SelfSignedManifest,
    actor: Hash256,
    time: Timestamp,
) -> Result<Event, EventError> {
    let id = *manifest.id().as_hash();
    Ok(Event::new(
        time,
        actor,
        EventBody::AssetPublished {
            asset: id,
            object: Some(embedded(Kind::Manifest, id, manifest.envelope())?),
        },
    ))
}

/// What [`record_agreement`] and [`record_manifest`] appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The event's index in the log.
    pub index: u64,
    /// The event kind (`agreement_concluded`, `asset_published`).
    pub event: &'static str,
    /// The object's kind.
    pub kind: Kind,
    /// The object's id.
    pub id: Hash256,
}

/// Appends `agreement_concluded` for `agreement` to `log` at `now`, acted by the log's
/// owner; returns once durable.
pub fn record_agreement<S: LogStore>(
    log: &Log<S>,
    agreement: &VerifiedAgreement,
    now: Timestamp,
) -> Result<Recorded, LogError> {
    let e = agreement_concluded(agreement, log.signer().key_id(), now)?;
    Ok(Recorded {
        index: log.append(&e)?,
        event: e.kind(),
        kind: Kind::Agreement,
        id: agreement.id(),
    })
}

/// Appends `asset_published` for `manifest` to `log` at `now`, acted by the log's owner;
/// returns once durable.
pub fn record_manifest<S: LogStore>(
    log: &Log<S>,
    manifest: &SelfSignedManifest,
    now: Timestamp,
) -> Result<Recorded, LogError> {
    let e = asset_published(manifest, log.signer().key_id(), now)?;
    Ok(Recorded {
        index: log.append(&e)?,
        event: e.kind(),
        kind: Kind::Manifest,
        id: *manifest.id().as_hash(),
    })
}
