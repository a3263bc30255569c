//! One session's application: what the connector does with each protocol event, where
//! chunks are written and read. It runs inside the session's driver task; anything that
//! waits for the disk (durable commits, log appends, file syncs) is spawned off it and
//! comes back to the session through its [`Driver`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tds_core::hash::Hash256;
use tds_core::{ErrorCode, Timestamp};
use tds_policy::contract::VerifiedAgreement;
use tds_protocol::session::{CatalogResult, Event, OutId, PlacedChunk, Session};
use tds_protocol::signed::{transfer_id, VerifiedTransferReceipt};
use tds_protocol::state::Role;
use tds_protocol::{Pid, Refusal};
use tds_provenance::event::{EventBody, SignedObject};
use tds_transport::{Driver, Endpoint, SessionApp};
use tokio::sync::oneshot;

use crate::core::{code, lock, Core};
use crate::error::ConnectorError;
use crate::events::{AlertKind, ConnectorEvent};
use crate::records::{self, AgreementRecord, FetchRecord, MeterRecord, Side};
use crate::store::{Batch, Table};

/// Progress of a fetch: bytes verified and written so far (resumed ones included) of
/// the asset's total.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// How a transfer of this consumer ended.
pub(crate) enum FetchEnd {
    Completed {
        bytes: u64,
        complete: bool,
        receipt: Option<Box<VerifiedTransferReceipt>>,
    },
    Terminated {
        code: String,
        reason: String,
        /// Bytes verified and written by this transfer before it ended.
        bytes: u64,
    },
}

/// A fetch in progress on this session.
pub(crate) struct Fetch {
    pub(crate) agreement: Arc<VerifiedAgreement>,
    pub(crate) out: PathBuf,
    pub(crate) file: Arc<dyn crate::source::DataSink>,
    pub(crate) done: Option<oneshot::Sender<FetchEnd>>,
    pub(crate) progress: Option<ProgressFn>,
    /// Bytes verified before this transfer (resumed).
    pub(crate) resumed: u64,
    /// Bytes verified in this transfer.
    pub(crate) bytes: u64,
    pub(crate) total: u64,
    pub(crate) since_sync: u64,
    pub(crate) syncing: bool,
    /// Held while the resume state is synced and stored, so an older state never
    /// overwrites a newer one (shared by every transfer of one fetch call).
    pub(crate) saves: Arc<tokio::sync::Mutex<()>>,
}

/// What callers of one session wait for.
#[derive(Default)]
pub(crate) struct Waiters {
    pub(crate) negotiations:
        HashMap<Pid, oneshot::Sender<Result<Arc<VerifiedAgreement>, ConnectorError>>>,
    pub(crate) fetches: HashMap<Pid, Fetch>,
    pub(crate) catalogs: HashMap<OutId, oneshot::Sender<Result<CatalogPage, ConnectorError>>>,
    pub(crate) deliveries: HashMap<OutId, oneshot::Sender<Result<(), ConnectorError>>>,
}

/// A page of a peer's catalog.
#[derive(Clone, Debug)]
pub struct CatalogPage {
    /// The entries, each offer and manifest verified.
    pub items: Vec<CatalogResult>,
    /// The cursor of the next page, if there is one.
    pub next: Option<Vec<u8>>,
}

pub(crate) struct App {
    pub(crate) core: Arc<Core>,
    pub(crate) no: u64,
    pub(crate) peer: Hash256,
    pub(crate) waiters: Arc<Mutex<Waiters>>,
    pub(crate) driver: Arc<OnceLock<Driver>>,
    pub(crate) endpoint: Endpoint,
    pub(crate) sync_every: u64,
    /// The peer's address (for an outgoing session: where it listens).
    pub(crate) addr: std::net::SocketAddr,
    /// Violations of the peer on this connection so far (the first
    /// [`MAX_VIOLATION_ALERTS`] are alerted).
    pub(crate) violations: u32,
}

/// The most `violation` alerts one connection raises: a member flooding malformed
/// messages is told no each time, but fills neither the operator's alerts nor its logs.
pub(crate) const MAX_VIOLATION_ALERTS: u32 = 16;

impl App {
    fn driver(&self) -> Option<Driver> {
        self.driver.get().cloned()
    }

    /// Provider: the countersigned agreement is stored and logged before FINALIZED goes
    /// out, so every agreement a consumer holds is one this provider holds.
    fn store_then_finalize(&self, pid: Pid, agreement: Arc<VerifiedAgreement>) {
        let core = self.core.clone();
        let driver = self.driver();
        tokio::spawn(async move {
            let stored = store_agreement(&core, &agreement, Side::Provider, Vec::new(), None).await;
            if let Err(e) = &stored {
                core.alert(
                    AlertKind::Storage,
                    e.code(),
                    format!(
                        "an agreement could not be stored and logged, so it was not concluded: {e}"
                    ),
                    Some(agreement.id()),
                    None,
                );
            }
            let Some(driver) = driver else { return };
            let _ = driver
                .call(move |s, now| match stored {
                    Ok(()) => {
                        if let Err(e) = s.finalize(now, pid) {
                            tracing::warn!(error = %e, "finalize");
                        }
                    }
                    Err(e) => {
                        let _ = s.terminate_negotiation(
                            now,
                            pid,
                            e.code(),
                            "the provider could not store the agreement",
                        );
                    }
                })
                .await;
        });
    }

    fn consumer_finalized(&self, pid: Pid, agreement: Arc<VerifiedAgreement>, notice: Vec<u8>) {
        let core = self.core.clone();
        let waiter = lock(&self.waiters).negotiations.remove(&pid);
        let peer = self.peer;
        let addr = self.addr;
        tokio::spawn(async move {
            let stored =
                store_agreement(&core, &agreement, Side::Consumer, notice, Some(addr)).await;
            if stored.is_ok() {
                core.emit(ConnectorEvent::AgreementConcluded {
                    agreement: agreement.id(),
                    side: Side::Consumer,
                    peer,
                });
            }
            if let Some(w) = waiter {
                let _ = w.send(stored.map(|()| agreement));
            }
        });
    }

    fn provider_transfer_ended(&self, pid: Pid, session: &Session, ended: Ended) {
        let Some(agreement) = self.core.transfer_ended(self.no, pid) else {
            return;
        };
        let consumer_pid = session.transfer(pid).and_then(|v| v.peer_pid);
        let core = self.core.clone();
        let no = self.no;
        let peer = self.peer;
        tokio::spawn(async move {
            let transfer = consumer_pid.map(|c| transfer_id(&agreement, &c));
            let bytes = ended.bytes();
            let mut b = Batch::new();
            core.count_use(&mut b, &agreement, bytes);
            let counted = core.store.commit_async(b).await;
            if counted.is_ok() {
                core.transfer_counted(no, pid);
            }
            // Not durable (a full disk, say): the use keeps counting from memory for
            // as long as this process runs, so the lost write does not hand it out again.
            if let Err(e) = counted {
                core.alert(
                    AlertKind::Storage,
                    e.code(),
                    e.to_string(),
                    Some(agreement),
                    Some(peer),
                );
            }
            let Some(transfer) = transfer else { return };
            match ended {
                Ended::Completed { bytes, receipt } => {
                    let root = core
                        .agreement(&agreement)
                        .and_then(|a| core.served_asset(a.terms().asset.as_str()))
                        .map(|s| s.asset.commitment().root)
                        .unwrap_or(Hash256::from_bytes([0; 32]));
                    let body = EventBody::TransferCompleted {
                        transfer,
                        agreement,
                        root,
                        bytes,
                        receipt: receipt.as_ref().map(|r| SignedObject {
                            kind: code("transfer-receipt"),
                            id: r.id(),
                            bytes: r.envelope().to_vec(),
                        }),
                    };
                    match core.record(body).await {
                        Ok(_) => core.emit(ConnectorEvent::TransferCompleted {
                            agreement,
                            transfer,
                            side: Side::Provider,
                            bytes,
                        }),
                        Err(e) => core.alert(
                            AlertKind::Storage,
                            e.code(),
                            e.to_string(),
                            Some(agreement),
                            None,
                        ),
                    }
                    meter(&core, &agreement, transfer, bytes).await;
                }
                Ended::Terminated {
                    code: c, reason, ..
                } => {
                    let body = EventBody::TransferFailed {
                        transfer,
                        agreement,
                        reason: code(&c),
                    };
                    if let Err(e) = core.record(body).await {
                        core.alert(
                            AlertKind::Storage,
                            e.code(),
                            e.to_string(),
                            Some(agreement),
                            None,
                        );
                    }
                    core.emit(ConnectorEvent::TransferFailed {
                        agreement,
                        side: Side::Provider,
                        code: c,
                        reason,
                    });
                }
            }
        });
    }

    fn consumer_transfer_ended(&self, pid: Pid, session: &Session, ended: Ended) {
        let Some(mut fetch) = lock(&self.waiters).fetches.remove(&pid) else {
            return;
        };
        let state = session.verifier_state(pid);
        let consumer_pid = pid;
        let core = self.core.clone();
        let peer = self.peer;
        tokio::spawn(async move {
            let agreement = fetch.agreement.id();
            let transfer = transfer_id(&agreement, &consumer_pid);
            // The bytes first, then the record that says they are there; after any
            // periodic save of this transfer (its state is older).
            let saving = fetch.saves.clone();
            let saving = saving.lock().await;
            let file = fetch.file.clone();
            let synced = tokio::task::spawn_blocking(move || file.sync())
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
            let (complete, receipt) = match &ended {
                Ended::Completed { receipt, .. } => (
                    receipt.as_ref().is_some_and(|r| r.receipt().complete),
                    receipt.as_ref().map(|r| r.envelope().to_vec()),
                ),
                Ended::Terminated { .. } => (false, None),
            };
            let saved = match (synced, state) {
                (Ok(()), Some(state)) => {
                    save_fetch(&core, &fetch, &state, complete, receipt.clone()).await
                }
                (Ok(()), None) => Ok(()),
                (Err(e), _) => Err(ConnectorError::io(&fetch.out, e)),
            };
            drop(saving);
            if let Err(e) = &saved {
                core.alert(
                    AlertKind::Storage,
                    e.code(),
                    e.to_string(),
                    Some(agreement),
                    Some(peer),
                );
            }
            let end = match ended {
                Ended::Completed { bytes, receipt } => {
                    let body = EventBody::TransferCompleted {
                        transfer,
                        agreement,
                        root: receipt
                            .as_ref()
                            .map_or(Hash256::from_bytes([0; 32]), |r| r.receipt().root),
                        bytes,
                        receipt: receipt.as_ref().map(|r| SignedObject {
                            kind: code("transfer-receipt"),
                            id: r.id(),
                            bytes: r.envelope().to_vec(),
                        }),
                    };
                    if let Err(e) = core.record(body).await {
                        core.alert(
                            AlertKind::Storage,
                            e.code(),
                            e.to_string(),
                            Some(agreement),
                            None,
                        );
                    }
                    core.emit(ConnectorEvent::TransferCompleted {
                        agreement,
                        transfer,
                        side: Side::Consumer,
                        bytes,
                    });
                    if complete {
                        if let Some(g) = core.guard.get() {
                            match g.register(&fetch.agreement, core.now()) {
                                Ok(_) => core.duty_wake.notify_one(),
                                Err(e) => core.alert(
                                    AlertKind::Storage,
                                    e.code(),
                                    e.to_string(),
                                    Some(agreement),
                                    None,
                                ),
                            }
                        }
                        meter(&core, &agreement, transfer, bytes).await;
                    }
                    FetchEnd::Completed {
                        bytes,
                        complete,
                        receipt,
                    }
                }
                Ended::Terminated {
                    code: c,
                    reason,
                    verify,
                } => {
                    let body = EventBody::TransferFailed {
                        transfer,
                        agreement,
                        reason: code(&c),
                    };
                    if let Err(e) = core.record(body).await {
                        core.alert(
                            AlertKind::Storage,
                            e.code(),
                            e.to_string(),
                            Some(agreement),
                            None,
                        );
                    }
                    if verify {
                        core.alert(
                            AlertKind::Violation,
                            &c,
                            format!("the provider sent data that does not verify: {reason}"),
                            Some(agreement),
                            Some(peer),
                        );
                    }
                    core.emit(ConnectorEvent::TransferFailed {
                        agreement,
                        side: Side::Consumer,
                        code: c.clone(),
                        reason: reason.clone(),
                    });
                    FetchEnd::Terminated {
                        code: c,
                        reason,
                        bytes: fetch.bytes,
                    }
                }
            };
            if let Some(done) = fetch.done.take() {
                let _ = done.send(end);
            }
        });
    }

    /// Every `sync_every` bytes: the verified set as of now, the output file synced,
    /// then the set stored (so a restart resumes from it).
    fn maybe_sync(&self, pid: Pid) {
        let (file, agreement, out, resumed, total, saves) = {
            let mut w = lock(&self.waiters);
            let Some(f) = w.fetches.get_mut(&pid) else {
                return;
            };
            if f.syncing || f.since_sync < self.sync_every {
                return;
            }
            f.syncing = true;
            f.since_sync = 0;
            (
                f.file.clone(),
                f.agreement.clone(),
                f.out.clone(),
                f.resumed,
                f.total,
                f.saves.clone(),
            )
        };
        let Some(driver) = self.driver() else { return };
        let core = self.core.clone();
        let waiters = self.waiters.clone();
        let sync_every = self.sync_every;
        tokio::spawn(async move {
            loop {
                let saving = saves.lock().await;
                // A transfer that ended is saved by its end, with its final state.
                if !lock(&waiters).fetches.contains_key(&pid) {
                    return;
                }
                let state = driver
                    .call(move |s, _| s.verifier_state(pid))
                    .await
                    .ok()
                    .flatten();
                if let Some(state) = state {
                    let f = file.clone();
                    let synced = tokio::task::spawn_blocking(move || f.sync()).await;
                    if matches!(synced, Ok(Ok(()))) {
                        let fetch = Fetch {
                            agreement: agreement.clone(),
                            out: out.clone(),
                            file: file.clone(),
                            done: None,
                            progress: None,
                            resumed,
                            bytes: 0,
                            total,
                            since_sync: 0,
                            syncing: false,
                            saves: saves.clone(),
                        };
                        if let Err(e) = save_fetch(&core, &fetch, &state, false, None).await {
                            core.alert(
                                AlertKind::Storage,
                                e.code(),
                                e.to_string(),
                                Some(fetch.agreement.id()),
                                None,
                            );
                        }
                    }
                }
                drop(saving);
                let mut w = lock(&waiters);
                let Some(f) = w.fetches.get_mut(&pid) else {
                    return;
                };
                if f.since_sync < sync_every {
                    f.syncing = false;
                    return;
                }
                // Chunks verified while this sync ran: sync them now, not at the next
                // chunk, which may be long in coming.
                f.since_sync = 0;
            }
        });
    }
}

/// How a transfer ended, for recording.
enum Ended {
    Completed {
        bytes: u64,
        receipt: Option<Box<VerifiedTransferReceipt>>,
    },
    Terminated {
        code: String,
        reason: String,
        /// Ended because data did not verify.
        verify: bool,
    },
}

impl Ended {
    fn bytes(&self) -> u64 {
        match self {
            Ended::Completed { bytes, .. } => *bytes,
            Ended::Terminated { .. } => 0,
        }
    }
}

/// Stores and logs an agreement; resolves once both are durable.
pub(crate) async fn store_agreement(
    core: &Arc<Core>,
    agreement: &Arc<VerifiedAgreement>,
    side: Side,
    notice: Vec<u8>,
    peer_addr: Option<std::net::SocketAddr>,
) -> Result<(), ConnectorError> {
    let rec = AgreementRecord {
        agreement: agreement.envelope().to_vec(),
        side,
        notice,
        stored: core.now(),
        peer_addr: peer_addr.map(|a| a.to_string()),
    };
    let key = agreement.id().as_bytes().to_vec();
    let mut b = Batch::new();
    b.put(
        Table::Agreements,
        key.clone(),
        records::encode(Table::Agreements, &rec)?,
    );
    let event = tds_objects::record::agreement_concluded(agreement, core.me, core.now())
        .map_err(|e| ConnectorError::invalid("agreement event", &e))?;
    // Stored and logged together: a backup holds both or neither.
    let _paired = core.paired.read().await;
    let stored = core.store.commit_async(b);
    let logged = core.log.append_async(&event);
    let (stored, logged) = tokio::join!(stored, logged);
    if let (Ok(()), Err(_)) = (&stored, &logged) {
        // Never an agreement in the store that the log does not hold: it would be served
        // (looked up by id) though it was never recorded. Take the record back; if that
        // fails too, the caller's storage alert says the state needs a look.
        let mut undo = Batch::new();
        undo.delete(Table::Agreements, key);
        let _ = core.store.commit_async(undo).await;
    }
    stored?;
    logged?;
    // Known to transfers only once stored and logged.
    core.cache_agreement(agreement.clone());
    Ok(())
}

async fn save_fetch(
    core: &Arc<Core>,
    fetch: &Fetch,
    state: &tds_manifest::content::VerifierState,
    complete: bool,
    receipt: Option<Vec<u8>>,
) -> Result<(), ConnectorError> {
    let id = fetch.agreement.id();
    let old: Option<FetchRecord> =
        records::get(core.store.as_ref(), Table::Transfers, id.as_bytes())?;
    let rec = FetchRecord {
        out: fetch.out.display().to_string(),
        manifest: old.as_ref().map(|o| o.manifest.clone()).unwrap_or_default(),
        verified: state
            .to_bytes()
            .map_err(|e| ConnectorError::invalid("verifier state", &e))?,
        complete,
        receipt: receipt
            .or_else(|| old.map(|o| o.receipt))
            .unwrap_or_default(),
        deleted: false,
    };
    let mut b = Batch::new();
    b.put(
        Table::Transfers,
        id.as_bytes().to_vec(),
        records::encode(Table::Transfers, &rec)?,
    );
    core.store.commit_async(b).await?;
    Ok(())
}

/// A priced agreement's usage record: stored and logged by this side.
async fn meter(core: &Arc<Core>, agreement: &Hash256, transfer: Hash256, bytes: u64) {
    let Some(a) = core.agreement(agreement) else {
        return;
    };
    let t = a.terms();
    let Some(price) = &t.price else { return };
    // A usage record signed by this side, so the metering either side exports is
    // provable to the other and to a clearing house.
    let now = core.now();
    let record = tds_protocol::signed::UsageRecord {
        agreement: *agreement,
        provider: t.provider,
        consumer: t.consumer,
        transfer: Some(transfer),
        uses: 1,
        bytes,
        amount: price.amount,
        currency: price.currency.clone(),
        time: now,
        recorder: core.me,
        recorder_key: core.signer.public_key(),
    };
    let signed = tds_protocol::signed::sign_usage_record(&*core.signer, &record).and_then(|b| {
        let v = tds_protocol::signed::verify_usage_record(&b, &core.signer.public_key())?;
        Ok((b, v.id()))
    });
    let (signed, record_id) = match signed {
        Ok(s) => s,
        Err(e) => {
            core.alert(
                AlertKind::Storage,
                e.code(),
                e.to_string(),
                Some(*agreement),
                None,
            );
            return;
        }
    };
    let body = EventBody::UsageReported {
        agreement: *agreement,
        report: record_id,
        object: Some(SignedObject {
            kind: code("usage-record"),
            id: record_id,
            bytes: signed.clone(),
        }),
    };
    // The usage event and the record naming its index: a backup holds both or neither.
    let _paired = core.paired.read().await;
    let index = match core.record(body).await {
        Ok(i) => i,
        Err(e) => {
            core.alert(
                AlertKind::Storage,
                e.code(),
                e.to_string(),
                Some(*agreement),
                None,
            );
            return;
        }
    };
    let rec = MeterRecord {
        agreement: *agreement,
        transfer,
        provider: t.provider,
        consumer: t.consumer,
        uses: 1,
        bytes,
        amount: price.amount.0,
        currency: price.currency.as_str().to_owned(),
        time: now,
        log_index: index,
        signed,
    };
    let mut key = records::meter_prefix(Some(agreement));
    key.extend_from_slice(transfer.as_bytes());
    let mut b = Batch::new();
    match records::encode(Table::Usage, &rec) {
        Ok(v) => b.put(Table::Usage, key, v),
        Err(e) => {
            core.alert(
                AlertKind::Storage,
                e.code(),
                e.to_string(),
                Some(*agreement),
                None,
            );
            return;
        }
    }
    if let Err(e) = core.store.commit_async(b).await {
        core.alert(
            AlertKind::Storage,
            e.code(),
            e.to_string(),
            Some(*agreement),
            None,
        );
    }
}

/// Reason codes that mean the provider sent data that does not verify: a chunk, or the
/// manifest it started the transfer with (not the agreement's asset, or its signature
/// broken).
fn is_verify_failure(code: &str) -> bool {
    code.starts_with("chunk.")
        || code.starts_with("manifest.")
        || code == "transfer.wrong_chunk"
        || code == "transfer.wrong_asset"
        || code.starts_with("merkle.")
        || code.starts_with("cose.")
}

impl SessionApp for App {
    fn event(&mut self, session: &mut Session, now: Timestamp, event: Event) {
        match event {
            Event::RequestReceived { pid } => {
                // The session checked the request (signatures, nonce, offer live, the
                // requested policy within the offer's): agree.
                if let Err(e) = session.agree(now, pid) {
                    let _ = session.terminate_negotiation(now, pid, &e.refusal.code, &e.refusal.reason);
                }
            }
            Event::AgreementVerified { pid } => {
                match session.negotiation(pid).and_then(|v| v.agreement) {
                    Some(a) => self.store_then_finalize(pid, a),
                    None => {
                        let _ = session.terminate_negotiation(
                            now,
                            pid,
                            "connector.no_agreement",
                            "the verified negotiation holds no agreement",
                        );
                    }
                }
            }
            Event::Finalized {
                pid,
                agreement,
                notice,
            } => match session.negotiation(pid).map(|v| v.role) {
                Some(Role::Consumer) => self.consumer_finalized(pid, agreement, notice),
                _ => self.core.emit(ConnectorEvent::AgreementConcluded {
                    agreement: agreement.id(),
                    side: Side::Provider,
                    peer: self.peer,
                }),
            },
            Event::NegotiationTerminated {
                pid, code: c, reason, ..
            } => {
                let refusal = Refusal::new(&c, &reason);
                if let Some(w) = lock(&self.waiters).negotiations.remove(&pid) {
                    let _ = w.send(Err(ConnectorError::Refused {
                        what: "negotiation",
                        refusal,
                    }));
                }
                self.core.emit(ConnectorEvent::NegotiationFailed {
                    peer: self.peer,
                    code: c,
                    reason,
                });
            }
            Event::Denied {
                agreement,
                offer,
                refusal,
                message,
            } => {
                let body = EventBody::AccessDenied {
                    requester: self.peer,
                    target: agreement.or(offer).unwrap_or(Hash256::from_bytes([0; 32])),
                    agreement,
                    reasons: vec![code(&refusal.code)],
                };
                // The denial's alert first: a storage alert for a denial that could not
                // be logged then always follows the denial it is about.
                self.core.alert(
                    AlertKind::Denial,
                    &refusal.code,
                    format!("{message} refused: {}", refusal.reason),
                    agreement,
                    Some(self.peer),
                );
                self.core.record_detached(body);
                self.core.emit(ConnectorEvent::Denied {
                    peer: self.peer,
                    agreement,
                    code: refusal.code,
                    reason: refusal.reason,
                });
            }
            Event::PeerViolation {
                message,
                pid,
                refusal,
            } => {
                self.violations = self.violations.saturating_add(1);
                if self.violations <= MAX_VIOLATION_ALERTS {
                    let more = if self.violations == MAX_VIOLATION_ALERTS {
                        "; further violations on this connection are refused without alerts"
                    } else {
                        ""
                    };
                    self.core.alert(
                        AlertKind::Violation,
                        &refusal.code,
                        format!("the peer's {message} was refused: {}{more}", refusal.reason),
                        None,
                        Some(self.peer),
                    );
                } else {
                    tracing::debug!(message, code = %refusal.code, "violation (not alerted)");
                }
                // A consumer that refuses its provider's agreement (terms not as asked, a
                // bad signature) does not wait for a better one: on this connection only
                // the provider can send it. The negotiation ends with that code, which is
                // what `negotiate` returns.
                if message == "contract_agreement" {
                    let ours = pid.filter(|p| {
                        session
                            .negotiation(*p)
                            .is_some_and(|n| n.role == Role::Consumer && !n.state.is_final())
                    });
                    if let Some(p) = ours {
                        let _ =
                            session.terminate_negotiation(now, p, &refusal.code, &refusal.reason);
                    }
                }
            }
            Event::Refused {
                message,
                refusal,
                query,
            } => {
                if message == "catalog_request" {
                    let mut w = lock(&self.waiters);
                    // The query refused (a refusal naming none: one waiting query).
                    let key = query.or_else(|| w.catalogs.keys().next().copied());
                    if let Some(tx) = key.and_then(|k| w.catalogs.remove(&k)) {
                        let _ = tx.send(Err(ConnectorError::Refused {
                            what: "catalog",
                            refusal,
                        }));
                    }
                } else {
                    tracing::info!(message, code = %refusal.code, reason = %refusal.reason, "the peer refused");
                }
            }
            Event::TransferRequested { pid, agreement } => {
                let size = session
                    .transfer(pid)
                    .and_then(|_| self.core.agreement(&agreement))
                    .and_then(|a| self.core.served_asset(a.terms().asset.as_str()))
                    .map_or(0, |s| s.asset.commitment().size);
                self.core.transfer_started(self.no, pid, agreement, size);
                match session.start_transfer(now, pid) {
                    Ok(()) => {
                        let consumer_pid = session.transfer(pid).and_then(|v| v.peer_pid);
                        let asset = self
                            .core
                            .agreement(&agreement)
                            .and_then(|a| a.terms().asset.as_str().parse::<tds_manifest::AssetId>().ok())
                            .map(|a| *a.as_hash())
                            .unwrap_or(Hash256::from_bytes([0; 32]));
                        if let Some(c) = consumer_pid {
                            let transfer = transfer_id(&agreement, &c);
                            self.core.record_detached(EventBody::TransferStarted {
                                transfer,
                                agreement,
                                asset,
                            });
                            self.core.emit(ConnectorEvent::TransferStarted {
                                agreement,
                                transfer,
                            });
                        }
                    }
                    Err(e) => {
                        self.core.transfer_ended(self.no, pid);
                        self.core.transfer_counted(self.no, pid);
                        let _ = session.terminate_transfer(now, pid, &e.refusal.code, &e.refusal.reason);
                    }
                }
            }
            Event::TransferCompleted {
                pid,
                role,
                bytes,
                receipt,
                ..
            } => {
                let ended = Ended::Completed { bytes, receipt };
                match role {
                    Role::Provider => self.provider_transfer_ended(pid, session, ended),
                    Role::Consumer => self.consumer_transfer_ended(pid, session, ended),
                }
            }
            Event::TransferTerminated {
                pid, by, code: c, reason, ..
            } => {
                let role = session.transfer(pid).map(|v| v.role);
                // This side ended it because what arrived did not verify.
                let verify = role == Some(by) && is_verify_failure(&c);
                let ended = Ended::Terminated {
                    code: c,
                    reason,
                    verify,
                };
                match role {
                    Some(Role::Provider) => self.provider_transfer_ended(pid, session, ended),
                    Some(Role::Consumer) => self.consumer_transfer_ended(pid, session, ended),
                    None => {}
                }
            }
            Event::CatalogPage { query, items, next } => {
                if let Some(tx) = lock(&self.waiters).catalogs.remove(&query) {
                    let _ = tx.send(Ok(CatalogPage { items, next }));
                }
            }
            Event::RevocationList { crl } => match self.endpoint.apply_revocation_list(&crl) {
                Ok(outcome) => {
                    self.core
                        .trust_generation
                        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    tracing::info!(sequence = outcome.sequence, "applied a revocation list a peer pushed");
                }
                Err(e) => tracing::info!(error = %e, "a pushed revocation list was not applied"),
            },
            Event::SplitView {
                old_size,
                new_size,
                ..
            } => self.core.alert(
                AlertKind::SplitView,
                "log.split_view",
                format!(
                    "the peer's log checkpoint of size {new_size} is not consistent with the one of size {old_size} it signed before"
                ),
                None,
                Some(self.peer),
            ),
            Event::Delivered { id, .. } => {
                if let Some(tx) = lock(&self.waiters).deliveries.remove(&id) {
                    let _ = tx.send(Ok(()));
                }
            }
            Event::Undelivered {
                id,
                message,
                refusal,
            } => {
                if let Some(tx) = lock(&self.waiters).deliveries.remove(&id) {
                    let _ = tx.send(Err(ConnectorError::Refused {
                        what: message,
                        refusal,
                    }));
                }
            }
            Event::AgreementTerminated {
                agreement,
                termination,
                ..
            } => {
                let core = self.core.clone();
                let peer = self.peer;
                core.mark_terminated(agreement);
                tokio::spawn(async move {
                    let rec = crate::records::TerminationRecord {
                        by: peer,
                        code: "terminated_by_peer".into(),
                        termination: termination.envelope().to_vec(),
                        time: core.now(),
                    };
                    let mut b = Batch::new();
                    match records::encode(Table::Terminations, &rec) {
                        Ok(v) => b.put(Table::Terminations, agreement.as_bytes().to_vec(), v),
                        Err(e) => core.alert(AlertKind::Storage, e.code(), e.to_string(), Some(agreement), None),
                    }
                    let paired = core.paired.read().await;
                    let stored = core.store.commit_async(b);
                    let logged = core.record(EventBody::AgreementTerminated {
                        agreement,
                        reason: code("terminated_by_peer"),
                    });
                    let (s, l) = tokio::join!(stored, logged);
                    drop(paired);
                    if let Err(e) = s {
                        core.alert(AlertKind::Storage, e.code(), e.to_string(), Some(agreement), None);
                    }
                    if let Err(e) = l {
                        core.alert(AlertKind::Storage, e.code(), e.to_string(), Some(agreement), None);
                    }
                    core.emit(ConnectorEvent::AgreementTerminated { agreement, by: peer });
                });
            }
            Event::DeletionReceipt { receipt } => {
                let r = receipt.receipt();
                let agreement = r.agreement;
                self.core.record_detached(EventBody::DutyFulfilled {
                    agreement,
                    duty: code("delete"),
                    receipt: Some(SignedObject {
                        kind: code("deletion-receipt"),
                        id: receipt.id(),
                        bytes: receipt.envelope().to_vec(),
                    }),
                });
                self.core.emit(ConnectorEvent::Deleted {
                    agreement,
                    receipt: receipt.id(),
                });
            }
            Event::UsageReport { report } => {
                let agreement = report.report().agreement;
                self.core.record_detached(EventBody::UsageReported {
                    agreement,
                    report: report.id(),
                    object: Some(SignedObject {
                        kind: code("usage-report"),
                        id: report.id(),
                        bytes: report.envelope().to_vec(),
                    }),
                });
                self.core.emit(ConnectorEvent::UsageReported {
                    agreement,
                    report: report.id(),
                });
            }
            other => tracing::trace!(?other, "session event"),
        }
    }

    fn chunk(&mut self, place: &PlacedChunk, pieces: &[Bytes]) -> Result<(), Refusal> {
        let file = lock(&self.waiters)
            .fetches
            .get(&place.pid)
            .map(|f| f.file.clone())
            .ok_or_else(|| {
                Refusal::new("connector.no_fetch", "no fetch waits for this transfer")
            })?;
        let mut offset = place.offset;
        for p in pieces {
            file.write_at(p, offset).map_err(|e| {
                Refusal::new(
                    "connector.write_failed",
                    format!("writing the output file: {e}"),
                )
            })?;
            offset = offset.saturating_add(p.len() as u64);
        }
        // Counted once written: a chunk that could not be stored is not verified.
        let (progress, bytes, total) = {
            let mut w = lock(&self.waiters);
            let f = w.fetches.get_mut(&place.pid).ok_or_else(|| {
                Refusal::new("connector.no_fetch", "no fetch waits for this transfer")
            })?;
            f.bytes = f.bytes.saturating_add(place.len);
            f.since_sync = f.since_sync.saturating_add(place.len);
            (
                f.progress.clone(),
                f.resumed.saturating_add(f.bytes),
                f.total,
            )
        };
        if let Some(p) = progress {
            p(bytes, total);
        }
        self.maybe_sync(place.pid);
        Ok(())
    }

    fn read_chunk(
        &mut self,
        asset: &str,
        index: u64,
        offset: u64,
        len: u64,
    ) -> Result<(Bytes, Vec<Hash256>), Refusal> {
        let served = self.core.served_asset(asset).ok_or_else(|| {
            Refusal::new(
                "transfer.unknown_asset",
                format!("asset {asset} is not served here"),
            )
        })?;
        let c = served.asset.commitment();
        if c.chunk_len(index) != Some(len) || c.chunk_offset(index) != offset {
            return Err(Refusal::new(
                "transfer.bad_chunk_request",
                format!("chunk {index} is not {len} bytes at {offset}"),
            ));
        }
        let n = usize::try_from(len)
            .map_err(|_| Refusal::new("transfer.bad_chunk_request", "chunk too large"))?;
        let buf = served.source.read_bytes(offset, n).map_err(|e| {
            Refusal::new("transfer.source_failed", format!("reading the asset: {e}"))
        })?;
        if buf.len() != n {
            return Err(Refusal::new(
                "transfer.source_failed",
                format!("the source gave {} bytes for a chunk of {n}", buf.len()),
            ));
        }
        let path = served
            .tree
            .path(index)
            .map_err(|e| Refusal::new("transfer.source_failed", format!("the chunk tree: {e}")))?;
        Ok((buf, path))
    }
}
