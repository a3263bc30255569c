//! What a start repairs after a crash.
//!
//! An agreement is stored and logged in one step whose two halves commit concurrently
//! (the record in the store, the `agreement_concluded` event in the log: see
//! `app::store_agreement`); FINALIZED goes out, or `negotiate` returns, only once both
//! are durable. A crash between the two commits, or a write that failed on one side only
//! (a full disk), leaves one half without the other. The agreement is signed by both
//! parties by then, so the start completes the missing half instead of undoing the
//! other:
//!
//! - a record without its event: the event is appended (from the stored agreement, with
//!   the record's time);
//! - an event without its record: the record is restored from the agreement the event
//!   embeds (no FINALIZED notice, no peer address: neither was stored).
//!
//! So every agreement record has its event and every event its record once the
//! connector has started.
//!
//! A termination is stored and logged the same way (the `terminations` record, the
//! `agreement_terminated` event), and is completed alike: a record without its event gets
//! the event (its code and time from the record); an event without its record gets a
//! record (no signed termination: the event does not hold one; ended by this side, or by
//! the peer when the code is `terminated_by_peer`), so an agreement the log says ended is
//! never served again after a crash.
//!
//! A publication commits its records (the asset, its offers) first and appends its events
//! (`asset_published`, `offer_published`) after: a crash between leaves records without
//! events, and the start appends the missing events (the asset's time of publication
//! from its record), so everything served has its publication logged. Costs: one index lookup per agreement record, and one decode
//! per log entry appended since the previous start (the store's `meta/log_checked` holds
//! that size; a store without it has the whole log read once).

use tds_core::hash::Hash256;
use tds_policy::contract::{verify_agreement, VerifiedAgreement};
use tds_provenance::event::{Event, EventBody};

use crate::core::{ConnectorLog, Core};
use crate::error::ConnectorError;
use crate::records::{self, AgreementRecord, AssetRecord, OfferRecord, Side, TerminationRecord};
use crate::store::{Batch, Store, Table};

/// The meta key of the log size up to which events have been matched with records.
const LOG_CHECKED: &[u8] = b"log_checked";

/// Records and events a start restored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Repaired {
    /// `agreement_concluded` events appended for records that had none.
    pub(crate) events: u64,
    /// Agreement records restored from events that had none.
    pub(crate) records: u64,
    /// `agreement_terminated` events appended for termination records that had none.
    pub(crate) termination_events: u64,
    /// Termination records restored from events that had none.
    pub(crate) termination_records: u64,
    /// `asset_published` and `offer_published` events appended for records that had none.
    pub(crate) publication_events: u64,
}

/// Matches agreement records with `agreement_concluded` events (module docs). Blocking:
/// run it where the thread may wait for the disk.
pub(crate) fn agreements(core: &Core) -> Result<Repaired, ConnectorError> {
    let store = core.store.as_ref();
    let log = core.log.as_ref();
    let mut repaired = Repaired::default();
    // Records first: their events are looked up through the log's index.
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = store.scan_prefix_after(Table::Agreements, b"", after.as_deref(), 512)?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.clone());
        for (key, value) in rows {
            let Ok(id) = <[u8; 32]>::try_from(key.as_slice()).map(Hash256::from_bytes) else {
                continue;
            };
            if concluded_in_log(log, &id)? {
                continue;
            }
            let rec: AgreementRecord = records::decode(Table::Agreements, &key, &value)?;
            let agreement = verify_agreement(&rec.agreement)
                .map_err(|e| ConnectorError::invalid("stored agreement", &e))?;
            let event = tds_objects::record::agreement_concluded(&agreement, core.me, rec.stored)
                .map_err(|e| ConnectorError::invalid("agreement event", &e))?;
            log.append(&event)?;
            repaired.events += 1;
        }
    }
    // Termination records, likewise.
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = store.scan_prefix_after(Table::Terminations, b"", after.as_deref(), 512)?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.clone());
        for (key, value) in rows {
            let Ok(id) = <[u8; 32]>::try_from(key.as_slice()).map(Hash256::from_bytes) else {
                continue;
            };
            if terminated_in_log(log, &id)? {
                continue;
            }
            let rec: TerminationRecord = records::decode(Table::Terminations, &key, &value)?;
            let event = Event::new(
                rec.time,
                core.me,
                EventBody::AgreementTerminated {
                    agreement: id,
                    reason: crate::core::code(&rec.code),
                },
            );
            log.append(&event)?;
            repaired.termination_events += 1;
        }
    }
    repaired.publication_events = publications(core)?;
    // Then the events appended since the last start.
    let from = store.counter(Table::Meta, LOG_CHECKED)?;
    let size = log.size();
    for index in from..size {
        let event = log.event(index)?;
        if let EventBody::AgreementTerminated {
            agreement: id,
            reason,
        } = &event.body
        {
            if store.get(Table::Terminations, id.as_bytes())?.is_none() {
                restore_termination(store, core.me, id, reason.as_str(), event.time)?;
                repaired.termination_records += 1;
            }
            continue;
        }
        let EventBody::AgreementConcluded {
            agreement: id,
            object: Some(object),
            ..
        } = event.body
        else {
            continue;
        };
        if store.get(Table::Agreements, id.as_bytes())?.is_some() {
            continue;
        }
        let agreement = verify_agreement(&object.bytes)
            .map_err(|e| ConnectorError::invalid("logged agreement", &e))?;
        if agreement.id() != id {
            return Err(ConnectorError::Invalid {
                what: "logged agreement",
                message: format!("entry {index} names {id} but embeds {}", agreement.id()),
                code: "store.corrupt",
            });
        }
        restore(store, core.me, &agreement, event.time)?;
        repaired.records += 1;
    }
    let mut b = Batch::new();
    b.add(Table::Meta, LOG_CHECKED.to_vec(), size.saturating_sub(from));
    store.commit(b)?;
    Ok(repaired)
}

/// A termination record from its event: ended by the peer when the code says so (the
/// other party of the stored agreement), else by this side.
fn restore_termination(
    store: &dyn Store,
    me: Hash256,
    id: &Hash256,
    code: &str,
    time: tds_core::Timestamp,
) -> Result<(), ConnectorError> {
    let mut by = me;
    if code == "terminated_by_peer" {
        if let Some(value) = store.get(Table::Agreements, id.as_bytes())? {
            let rec: AgreementRecord = records::decode(Table::Agreements, id.as_bytes(), &value)?;
            if let Ok(a) = verify_agreement(&rec.agreement) {
                let t = a.terms();
                by = if t.provider == me {
                    t.consumer
                } else {
                    t.provider
                };
            }
        }
    }
    let rec = TerminationRecord {
        by,
        code: code.to_owned(),
        termination: Vec::new(),
        time,
    };
    let mut b = Batch::new();
    b.put(
        Table::Terminations,
        id.as_bytes().to_vec(),
        records::encode(Table::Terminations, &rec)?,
    );
    store.commit(b)?;
    Ok(())
}

/// Appends the publication events that asset and offer records lack (module docs); the
/// number appended.
fn publications(core: &Core) -> Result<u64, ConnectorError> {
    let store = core.store.as_ref();
    let log = core.log.as_ref();
    let mut appended = 0u64;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = store.scan_prefix_after(Table::Offers, b"", after.as_deref(), 512)?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.clone());
        for (key, value) in rows {
            let Ok(offer) = <[u8; 32]>::try_from(key.as_slice()).map(Hash256::from_bytes) else {
                continue;
            };
            let rec: OfferRecord = records::decode(Table::Offers, &key, &value)?;
            // The usual case first, and cheaply (every start runs this): both events are
            // in the log, found through its index by the asset id the record names; no
            // record is read and no manifest verified.
            let named = rec.asset.parse::<Hash256>().ok();
            let mut found = match named {
                Some(asset) => publication_in_log(log, &asset, &offer)?,
                None => (false, false),
            };
            if found == (true, true) {
                continue;
            }
            let Some(asset_value) = store.get(Table::Assets, rec.asset.as_bytes())? else {
                continue;
            };
            let asset_rec: AssetRecord =
                records::decode(Table::Assets, rec.asset.as_bytes(), &asset_value)?;
            let verified = tds_manifest::open(&asset_rec.manifest)
                .and_then(|m| m.verify(&core.signer.public_key()))
                .map_err(|e| ConnectorError::invalid("stored manifest", &e))?;
            let asset = *verified.id().as_hash();
            if named != Some(asset) {
                found = publication_in_log(log, &asset, &offer)?;
            }
            let (asset_logged, offer_logged) = found;
            if !asset_logged {
                let event = tds_objects::record::asset_published(
                    verified.as_self_signed(),
                    core.me,
                    asset_rec.published,
                )
                .map_err(|e| ConnectorError::invalid("asset event", &e))?;
                log.append(&event)?;
                appended += 1;
            }
            if !offer_logged {
                let event = Event::new(
                    asset_rec.published,
                    core.me,
                    EventBody::OfferPublished {
                        offer,
                        asset,
                        object: Some(tds_provenance::event::SignedObject {
                            kind: crate::core::code("offer"),
                            id: offer,
                            bytes: rec.offer,
                        }),
                    },
                );
                log.append(&event)?;
                appended += 1;
            }
        }
    }
    Ok(appended)
}

/// Whether the log holds `asset`'s `asset_published` and `offer`'s `offer_published`
/// (one pass over the entries naming the asset).
fn publication_in_log(
    log: &ConnectorLog,
    asset: &Hash256,
    offer: &Hash256,
) -> Result<(bool, bool), ConnectorError> {
    let (mut asset_logged, mut offer_logged) = (false, false);
    for index in log.events_for(asset)? {
        match log.event(index)?.body {
            EventBody::AssetPublished { asset: a, .. } if a == *asset => asset_logged = true,
            EventBody::OfferPublished { offer: o, .. } if o == *offer => offer_logged = true,
            _ => {}
        }
        if asset_logged && offer_logged {
            break;
        }
    }
    Ok((asset_logged, offer_logged))
}

/// Whether some entry naming `id` is its `agreement_concluded` (normally the first).
fn concluded_in_log(log: &ConnectorLog, id: &Hash256) -> Result<bool, ConnectorError> {
    logged(
        log,
        id,
        |body| matches!(body, EventBody::AgreementConcluded { agreement, .. } if agreement == id),
    )
}

/// Whether some entry naming `id` is an `agreement_terminated` of it.
fn terminated_in_log(log: &ConnectorLog, id: &Hash256) -> Result<bool, ConnectorError> {
    logged(
        log,
        id,
        |body| matches!(body, EventBody::AgreementTerminated { agreement, .. } if agreement == id),
    )
}

/// Whether some entry naming `id` (the log's index) is one `is` picks.
fn logged(
    log: &ConnectorLog,
    id: &Hash256,
    is: impl Fn(&EventBody) -> bool,
) -> Result<bool, ConnectorError> {
    for index in log.events_for(id)? {
        if is(&log.event(index)?.body) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn restore(
    store: &dyn Store,
    me: Hash256,
    agreement: &VerifiedAgreement,
    time: tds_core::Timestamp,
) -> Result<(), ConnectorError> {
    let side = if agreement.terms().provider == me {
        Side::Provider
    } else {
        Side::Consumer
    };
    let rec = AgreementRecord {
        agreement: agreement.envelope().to_vec(),
        side,
        notice: Vec::new(),
        stored: time,
        peer_addr: None,
    };
    let mut b = Batch::new();
    b.put(
        Table::Agreements,
        agreement.id().as_bytes().to_vec(),
        records::encode(Table::Agreements, &rec)?,
    );
    store.commit(b)?;
    Ok(())
}
