//! [`AuthorityService`]: the authority home served on the network, and the operator's
//! API (pending requests, approve, reject, revoke).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_core::time::{SystemClock, DAY_MS};
use tds_core::{cose, Clock, ErrorCode, PublicKey, Timestamp};
use tds_identity::store::{AuthorityStore, DirAuthorityStore};
use tds_identity::{
    Admission, Authority, IdentityError, Jurisdiction, ParticipantId, RevocationList, Role, Sector,
    VerifiedCredential,
};
use tds_protocol::join::AdmissionRequest;
use tds_protocol::Refusal;
use tds_provenance::log::origin_for;
use tds_provenance::note::{VerifierKey, TYPE_ED25519};
use tds_provenance::store::{FileStore, OpenOptions};
use tds_provenance::witness::{DirWitnessMemory, Refusal as WitnessRefusal, Witness};
use tds_provenance::{DirStorage, Log, WitnessError};
use tds_transport::join::VerifiedAdmissionRequest;
use tds_transport::{
    AdmissionHandler, AdmissionReply, JoinLimits, ServiceEndpoint, ServiceHandler, ServiceLimits,
    TransportConfig,
};

use crate::catalog::{check_item, Index};
use crate::error::AuthorityError;
use crate::message::{
    CosignRequest, CosignedReply, PublishedReply, Reply, Request, RevocationListReply,
};
use crate::records::{AdmissionRecord, Change, IssuedRecord, Records, Status};

/// The witness memory in the authority home (shared with `tds witness cosign`).
pub const WITNESS_STATE: &str = "witness.json";
/// The authority's own log in its home, where refused forks are raised as alerts.
pub const ALERT_LOG: &str = "log";
/// Longest operator reason (rejection, revocation), in bytes.
pub const MAX_REASON: usize = 1024;

/// How the service runs.
#[derive(Clone, Debug)]
pub struct AuthorityConfig {
    /// How long a signed revocation list is valid (`next_update - issued_at`). Members
    /// refuse peers whose authority's list is past its `next_update`, so this is the
    /// freshness members must keep: they fetch a new list before it runs out. The service
    /// signs a new list when less than half of this is left, and at every revocation.
    /// Default one day.
    pub crl_validity: Duration,
    /// Admission requests waiting at most. Default 10,000.
    pub max_pending: usize,
    /// Catalog entries at most. Default 100,000.
    pub max_catalog: usize,
    /// Catalog entries of one provider at most. Default 10,000.
    pub max_per_provider: usize,
    /// The admission path's limits.
    pub join_limits: JoinLimits,
    /// The service path's limits.
    pub service_limits: ServiceLimits,
    /// Timeouts and windows of the QUIC endpoint.
    pub transport: TransportConfig,
}

impl Default for AuthorityConfig {
    fn default() -> Self {
        AuthorityConfig {
            crl_validity: Duration::from_secs(24 * 3600),
            max_pending: 10_000,
            max_catalog: 100_000,
            max_per_provider: 10_000,
            join_limits: JoinLimits::default(),
            service_limits: ServiceLimits::default(),
            transport: TransportConfig::default(),
        }
    }
}

/// An admission request waiting for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    /// Its id (32 hex digits; any unique prefix of 8 or more digits names it too).
    pub id: String,
    /// The applicant's participant id.
    pub applicant: ParticipantId,
    /// The applicant's key.
    pub key: PublicKey,
    /// The name asked for.
    pub name: String,
    /// The sectors asked for, primary first.
    pub sectors: Vec<Sector>,
    /// The roles asked for.
    pub roles: Vec<Role>,
    /// The applicant's jurisdiction.
    pub jurisdiction: Jurisdiction,
    /// Validity asked for: start.
    pub not_before: Timestamp,
    /// Validity asked for: end (exclusive).
    pub not_after: Timestamp,
    /// When the applicant signed the request.
    pub time: Timestamp,
    /// When the service received it.
    pub received: Timestamp,
}

/// How long an approved credential is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// What the applicant asked for.
    Requested,
    /// From now, for this many days.
    Days(u64),
}

/// An approved request.
#[derive(Clone, Debug)]
pub struct Approved {
    /// The request id.
    pub id: String,
    /// The credential's serial.
    pub serial: u64,
    /// The new member.
    pub subject: ParticipantId,
    /// The signed credential (also handed to the applicant when it asks again).
    pub credential: Vec<u8>,
}

/// What to revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeTarget {
    /// One credential, by serial.
    Serial(u64),
    /// Every credential issued through the service to this participant.
    Participant(ParticipantId),
}

/// A revocation done.
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The serials revoked by this call (already revoked ones are left out).
    pub serials: Vec<u64>,
    /// The new signed revocation list.
    pub crl: Vec<u8>,
    /// Its sequence number.
    pub sequence: u64,
}

struct Crl {
    bytes: Vec<u8>,
    sequence: u64,
    next_update: Timestamp,
}

struct Inner {
    home: DirAuthorityStore,
    authority: Mutex<Authority>,
    records: Records,
    /// Serialises admission bookkeeping; holds the number of pending requests.
    admissions: Mutex<usize>,
    catalog: RwLock<Index>,
    crl: Mutex<Option<Crl>>,
    witness: DirWitnessMemory,
    alerts: Log<FileStore>,
    config: AuthorityConfig,
    clock: Arc<dyn Clock>,
}

/// The data-space authority as a service: admission (`tds-join/1`), and for members
/// (`tds-authority/1`) revocation lists, the federated catalog and witnessing. It sees
/// credentials, signed offers, manifests and checkpoints, never data. Cheap to clone.
#[derive(Clone)]
pub struct AuthorityService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthorityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityService")
            .field("home", &self.inner.home.dir())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn days(start: Timestamp, days: u64) -> Result<Timestamp, AuthorityError> {
    days.checked_mul(DAY_MS)
        .and_then(|ms| start.checked_add_millis(ms))
        .ok_or_else(|| AuthorityError::BadRequest(format!("{days} days: out of range")))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn check_reason(reason: &str) -> Result<(), AuthorityError> {
    if reason.len() > MAX_REASON {
        return Err(AuthorityError::TooLong {
            what: "reason",
            len: reason.len(),
            max: MAX_REASON,
        });
    }
    Ok(())
}

impl AuthorityService {
    /// Opens the service over an authority home (locked for as long as the service
    /// lives) with the system clock.
    pub fn open(home: DirAuthorityStore, config: AuthorityConfig) -> Result<Self, AuthorityError> {
        Self::open_with_clock(home, config, Arc::new(SystemClock))
    }

    /// Opens the service with `clock`.
    pub fn open_with_clock(
        home: DirAuthorityStore,
        config: AuthorityConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthorityError> {
        let authority = home.load()?;
        let dir = home.dir().to_path_buf();
        let records = Records::open(&dir)?;
        let pending = records
            .admissions()?
            .iter()
            .filter(|(_, r)| r.status == Status::Pending)
            .count();
        let catalog = Index::load(records.catalog()?);
        let crl = records.crl()?.and_then(|bytes| {
            let opened = cose::open::<RevocationList>(&bytes).ok()?;
            let (sequence, next_update) = (opened.value().sequence(), opened.value().next_update());
            Some(Crl {
                bytes,
                sequence,
                next_update,
            })
        });
        let log_dir = dir.join(ALERT_LOG);
        tds_core::fs::create_private_dir(&log_dir)
            .map_err(|e| AuthorityError::store("alert log", e))?;
        let store = FileStore::open(Arc::new(DirStorage::new(&log_dir)), OpenOptions::writer())
            .map_err(|e| AuthorityError::store("alert log", tds_core::code::full_message(&e)))?;
        let alerts = Log::new(store, authority.signer().clone());
        let service = AuthorityService {
            inner: Arc::new(Inner {
                witness: DirWitnessMemory::new(dir.join(WITNESS_STATE)),
                home,
                authority: Mutex::new(authority),
                records,
                admissions: Mutex::new(pending),
                catalog: RwLock::new(catalog),
                crl: Mutex::new(crl),
                alerts,
                config,
                clock,
            }),
        };
        // A current list exists from the start (signed now if the stored one is missing,
        // behind the state, or due).
        service.revocation_list()?;
        Ok(service)
    }

    /// Binds `addr` and serves admission (`tds-join/1`) and members (`tds-authority/1`)
    /// with the authority's key as the TLS key. Must run inside a tokio runtime; serving
    /// stops when the returned endpoint is closed or dropped.
    pub fn serve(&self, addr: SocketAddr) -> Result<ServiceEndpoint, AuthorityError> {
        let signer = lock(&self.inner.authority).signer().clone();
        let config = &self.inner.config;
        Ok(ServiceEndpoint::builder(signer)
            .config(config.transport.clone())
            .clock(self.inner.clock.clone())
            .admission(self.inner.clone(), config.join_limits.clone())
            .service(self.inner.clone(), config.service_limits.clone())
            .bind(addr)?)
    }

    /// The authority's public key (what members pin when they connect).
    pub fn public_key(&self) -> PublicKey {
        lock(&self.inner.authority).public_key()
    }

    /// Admission requests waiting for a decision, oldest id first.
    pub fn pending(&self) -> Result<Vec<PendingRequest>, AuthorityError> {
        let mut out = Vec::new();
        for (id, r) in self.inner.records.admissions()? {
            if r.status != Status::Pending {
                continue;
            }
            let req = open_request(&r)?;
            out.push(PendingRequest {
                id: hex(&id),
                applicant: ParticipantId::of(&req.applicant_key),
                key: req.applicant_key,
                name: req.name,
                sectors: req.sectors,
                roles: req.roles,
                jurisdiction: req.jurisdiction,
                not_before: req.not_before,
                not_after: req.not_after,
                time: req.time,
                received: r.received,
            });
        }
        Ok(out)
    }

    /// Approves a pending request: issues the credential (the serial is saved in the home
    /// before anything else), records it, and hands it to the applicant when it asks
    /// again.
    pub fn approve(&self, id: &str, validity: Validity) -> Result<Approved, AuthorityError> {
        let inner = &self.inner;
        let mut pending = lock(&inner.admissions);
        let (key, record) = self.find(id)?;
        decided(&key, &record)?;
        let req = open_request(&record)?;
        let now = inner.clock.now();
        let (not_before, not_after) = match validity {
            Validity::Requested => (req.not_before, req.not_after),
            Validity::Days(d) => (now, days(now, d)?),
        };
        let admission = Admission {
            subject_key: req.applicant_key,
            name: req.name.clone(),
            sectors: req.sectors.clone(),
            roles: req.roles.clone(),
            jurisdiction: req.jurisdiction.clone(),
            not_before,
            not_after,
        };
        let issued = {
            let mut authority = lock(&inner.authority);
            let issued = authority.admit(&admission, now)?;
            // The serial is used from here on, whatever happens below.
            inner.home.save(authority.state())?;
            issued
        };
        let serial = issued.value().serial();
        let credential = issued.into_envelope();
        let subject = ParticipantId::of(&req.applicant_key);
        inner.records.commit(
            Change::default()
                .admission(
                    key,
                    AdmissionRecord {
                        status: Status::Approved {
                            serial,
                            credential: ByteBuf::from(credential.clone()),
                            at: now,
                        },
                        ..record
                    },
                )
                .issued(
                    serial,
                    IssuedRecord {
                        subject,
                        request: ByteBuf::from(key.to_vec()),
                        revoked: None,
                    },
                ),
        )?;
        *pending = pending.saturating_sub(1);
        tracing::info!(id = %hex(&key), serial, %subject, "admission approved");
        Ok(Approved {
            id: hex(&key),
            serial,
            subject,
            credential,
        })
    }

    /// Rejects a pending request; the applicant is refused (`authority.rejected`, with
    /// `reason`) when it asks again.
    pub fn reject(&self, id: &str, reason: &str) -> Result<(), AuthorityError> {
        check_reason(reason)?;
        let inner = &self.inner;
        let mut pending = lock(&inner.admissions);
        let (key, record) = self.find(id)?;
        decided(&key, &record)?;
        inner.records.commit(Change::default().admission(
            key,
            AdmissionRecord {
                status: Status::Rejected {
                    reason: reason.to_owned(),
                    at: inner.clock.now(),
                },
                ..record
            },
        ))?;
        *pending = pending.saturating_sub(1);
        tracing::info!(id = %hex(&key), "admission rejected");
        Ok(())
    }

    /// Revokes a credential (or every credential issued through the service to a
    /// participant) and signs a new revocation list naming it.
    pub fn revoke(&self, target: RevokeTarget, reason: &str) -> Result<Revoked, AuthorityError> {
        check_reason(reason)?;
        let inner = &self.inner;
        let serials: Vec<u64> = match target {
            RevokeTarget::Serial(s) => vec![s],
            RevokeTarget::Participant(p) => {
                let found: Vec<u64> = inner
                    .records
                    .all_issued()?
                    .into_iter()
                    .filter(|(_, r)| r.subject == p)
                    .map(|(s, _)| s)
                    .collect();
                if found.is_empty() {
                    return Err(AuthorityError::UnknownMember(p.to_string()));
                }
                found
            }
        };
        let now = inner.clock.now();
        let mut authority = lock(&inner.authority);
        let mut newly = Vec::new();
        for s in &serials {
            if authority.revoke(*s)? {
                newly.push(*s);
            }
        }
        let list = authority.revocation_list(now, inner.next_update(now)?)?;
        inner.home.save(authority.state())?;
        drop(authority);
        let sequence = list.value().sequence();
        let next_update = list.value().next_update();
        let bytes = list.into_envelope();
        let mut change = Change::default().crl(bytes.clone());
        for s in &newly {
            if let Some(mut r) = inner.records.issued(*s)? {
                r.revoked = Some((reason.to_owned(), now));
                change = change.issued(*s, r);
            }
        }
        inner.records.commit(change)?;
        *lock(&inner.crl) = Some(Crl {
            bytes: bytes.clone(),
            sequence,
            next_update,
        });
        tracing::info!(?newly, sequence, "revoked");
        Ok(Revoked {
            serials: newly,
            crl: bytes,
            sequence,
        })
    }

    /// The current signed revocation list, signing a new one first when the held one is
    /// behind the authority's state or has less than half its validity left.
    pub fn revocation_list(&self) -> Result<Vec<u8>, AuthorityError> {
        self.inner.revocation_list()
    }

    /// The authority's state (name, serials, revocations, list sequence, earlier keys):
    /// what `tds authority show` prints while the service holds the home.
    pub fn state(&self) -> tds_identity::AuthorityState {
        lock(&self.inner.authority).state().clone()
    }

    /// The authority's current signer, for objects the service does not make itself
    /// (a public-data licence, `tds_policy::licence`). Held in memory like the service's
    /// own; a rollover makes a new one.
    pub fn signer(&self) -> std::sync::Arc<dyn tds_core::Signer> {
        lock(&self.inner.authority).signer().clone()
    }

    /// Signs a credential for `admission` directly (the operator's `tds authority admit`,
    /// not an admission request): the serial is saved in the home before the credential
    /// is returned (its signed bytes).
    pub fn admit(&self, admission: &Admission) -> Result<Vec<u8>, AuthorityError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut authority = lock(&inner.authority);
        let issued = authority.admit(admission, now)?;
        // The serial is used from here on, whatever happens below.
        inner.home.save(authority.state())?;
        tracing::info!(
            serial = issued.value().serial(),
            "credential issued by the operator"
        );
        Ok(issued.into_envelope())
    }

    /// Signs a new revocation list now, valid until `next_update` (the operator's `tds
    /// authority crl`); members are handed it from now on. Returns its signed bytes.
    pub fn sign_revocation_list(&self, next_update: Timestamp) -> Result<Vec<u8>, AuthorityError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut authority = lock(&inner.authority);
        let mut held = lock(&inner.crl);
        let list = authority.revocation_list(now, next_update)?;
        inner.home.save(authority.state())?;
        let sequence = list.value().sequence();
        let bytes = list.into_envelope();
        inner.records.commit(Change::default().crl(bytes.clone()))?;
        *held = Some(Crl {
            bytes: bytes.clone(),
            sequence,
            next_update,
        });
        Ok(bytes)
    }

    /// Entries in the federated catalog (expired offers included).
    pub fn catalog_len(&self) -> usize {
        self.inner
            .catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The request named by `id` (its 32 hex digits, or a unique prefix of at least 8).
    fn find(&self, id: &str) -> Result<([u8; 16], AdmissionRecord), AuthorityError> {
        let id = id.trim().to_ascii_lowercase();
        if id.len() < 8 || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthorityError::UnknownRequest(id));
        }
        let mut found = self
            .inner
            .records
            .admissions()?
            .into_iter()
            .filter(|(k, _)| hex(k).starts_with(&id));
        match (found.next(), found.next()) {
            (Some(one), None) => Ok(one),
            (None, _) => Err(AuthorityError::UnknownRequest(id)),
            (Some(_), Some(_)) => Err(AuthorityError::AmbiguousId(id)),
        }
    }
}

fn decided(key: &[u8; 16], r: &AdmissionRecord) -> Result<(), AuthorityError> {
    let status = match r.status {
        Status::Pending => return Ok(()),
        Status::Approved { .. } => "approved",
        Status::Rejected { .. } => "rejected",
    };
    Err(AuthorityError::AlreadyDecided {
        id: hex(key),
        status,
    })
}

/// The request kept in a record (verified when it was received).
fn open_request(r: &AdmissionRecord) -> Result<AdmissionRequest, AuthorityError> {
    cose::open::<AdmissionRequest>(&r.envelope)
        .map(|u| u.value().clone())
        .map_err(|e| AuthorityError::store("admission", e))
}

impl Inner {
    /// The current signed revocation list, signing a new one first when the held one is
    /// behind the authority's state or has less than half its validity left.
    fn revocation_list(&self) -> Result<Vec<u8>, AuthorityError> {
        let inner = self;
        let now = inner.clock.now();
        let mut authority = lock(&inner.authority);
        let mut held = lock(&inner.crl);
        let half = millis(inner.config.crl_validity) / 2;
        if let Some(c) = held.as_ref() {
            if c.sequence == authority.state().crl_sequence()
                && now.saturating_add_millis(half) < c.next_update
            {
                return Ok(c.bytes.clone());
            }
        }
        let list = authority.revocation_list(now, inner.next_update(now)?)?;
        inner.home.save(authority.state())?;
        let sequence = list.value().sequence();
        let next_update = list.value().next_update();
        let bytes = list.into_envelope();
        inner.records.commit(Change::default().crl(bytes.clone()))?;
        *held = Some(Crl {
            bytes: bytes.clone(),
            sequence,
            next_update,
        });
        Ok(bytes)
    }

    fn next_update(&self, now: Timestamp) -> Result<Timestamp, AuthorityError> {
        now.checked_add_millis(millis(self.config.crl_validity).max(1))
            .ok_or_else(|| AuthorityError::BadRequest("crl_validity: out of range".into()))
    }

    fn admission(
        &self,
        request: &VerifiedAdmissionRequest,
    ) -> Result<AdmissionReply, AuthorityError> {
        let who = request.applicant();
        let now = self.clock.now();
        let mut pending = lock(&self.admissions);
        if let Some(key) = self.records.applicant(&who)? {
            let record = self.records.admission(&key)?.ok_or_else(|| {
                AuthorityError::store("admission", "an applicant's request is missing")
            })?;
            return Ok(match record.status {
                Status::Pending => AdmissionReply::Pending(hex(&key)),
                Status::Approved { credential, .. } => {
                    // Handed out only while it is still good: not revoked, not expired.
                    match lock(&self.authority).check_member(&credential, now) {
                        Ok(_) => AdmissionReply::Admitted(credential.into_vec()),
                        Err(e) => AdmissionReply::Refused(Refusal::new(
                            e.code(),
                            tds_core::code::full_message(&e),
                        )),
                    }
                }
                Status::Rejected { reason, .. } => AdmissionReply::Refused(Refusal::new(
                    "authority.rejected",
                    format!("the authority rejected the request: {reason}"),
                )),
            });
        }
        if *pending >= self.config.max_pending {
            return Err(AuthorityError::QueueFull {
                max: self.config.max_pending,
            });
        }
        let hash = Hash256::sha256(request.envelope());
        let mut key = [0u8; 16];
        key.copy_from_slice(hash.as_bytes().get(..16).unwrap_or(&[0u8; 16]));
        self.records.commit(
            Change::default()
                .admission(
                    key,
                    AdmissionRecord {
                        envelope: ByteBuf::from(request.envelope().to_vec()),
                        received: now,
                        status: Status::Pending,
                    },
                )
                .applicant(who, key),
        )?;
        *pending += 1;
        tracing::info!(id = %hex(&key), applicant = %who, source = %request.source(), "admission request queued");
        Ok(AdmissionReply::Pending(hex(&key)))
    }

    fn request(&self, peer: &VerifiedCredential, bytes: &[u8]) -> Result<Reply, AuthorityError> {
        let now = self.clock.now();
        match Request::decode(bytes)? {
            Request::RevocationList(_) => Ok(Reply::RevocationList(RevocationListReply {
                crl: ByteBuf::from(self.revocation_list()?),
            })),
            Request::Publish(p) => {
                let publisher = peer.subject();
                let checked = p
                    .items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| check_item(i, item, Some(publisher), Some(now)))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut index = self.catalog.write().unwrap_or_else(PoisonError::into_inner);
                let mut fresh: Vec<&Hash256> = checked
                    .iter()
                    .map(|(id, _)| id)
                    .filter(|id| !index.contains(id))
                    .collect();
                fresh.sort();
                fresh.dedup();
                if index.len().saturating_add(fresh.len()) > self.config.max_catalog {
                    return Err(AuthorityError::CatalogFull {
                        what: "all providers",
                        max: self.config.max_catalog,
                    });
                }
                if index
                    .provider_count(publisher.as_hash())
                    .saturating_add(fresh.len())
                    > self.config.max_per_provider
                {
                    return Err(AuthorityError::CatalogFull {
                        what: "this provider",
                        max: self.config.max_per_provider,
                    });
                }
                let change = checked.iter().fold(Change::default(), |c, (id, e)| {
                    c.catalog(*id, e.record.clone())
                });
                self.records.commit(change)?;
                let offers = checked.iter().map(|(id, _)| *id).collect();
                for (id, e) in checked {
                    index.insert(id, e);
                }
                Ok(Reply::Published(PublishedReply { offers }))
            }
            Request::Search(s) => Ok(Reply::Page(
                self.catalog
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .search(
                        &s.filter,
                        s.cursor.as_ref().map(|c| c.as_slice()),
                        s.limit,
                        now,
                    )?,
            )),
            Request::Cosign(c) => self.cosign(peer, c, now),
        }
    }

    fn cosign(
        &self,
        peer: &VerifiedCredential,
        c: CosignRequest,
        now: Timestamp,
    ) -> Result<Reply, AuthorityError> {
        let key = *peer.subject_key();
        let log_key = VerifierKey::new(&origin_for(&key), TYPE_ED25519, key)
            .map_err(|e| AuthorityError::Witness(Box::new(WitnessError::Note(e))))?;
        let proof = c.proof.map(tds_provenance::ConsistencyProof::from);
        let authority = lock(&self.authority);
        let witness = Witness::new(&**authority.signer(), &*authority, &self.witness)
            .with_alerts(&self.alerts);
        match witness.cosign(
            &log_key,
            c.checkpoint.as_bytes(),
            proof.as_ref(),
            peer.envelope(),
            now,
        ) {
            Ok(done) => Ok(Reply::Cosigned(CosignedReply { note: done.note })),
            Err(WitnessError::Refused(r))
                if matches!(
                    r.refusal,
                    WitnessRefusal::Forked
                        | WitnessRefusal::Inconsistent(_)
                        | WitnessRefusal::RolledBack { .. }
                ) || matches!(
                    r.refusal,
                    // A proof from the cosigned size but another root there: the log
                    // showed another history at that size.
                    WitnessRefusal::ProofStart { proof, cosigned } if proof == cosigned
                ) =>
            {
                tracing::warn!(origin = %r.origin, size = r.size, "split view refused");
                Err(AuthorityError::SplitView(Box::new(WitnessError::Refused(
                    r,
                ))))
            }
            Err(e) => Err(AuthorityError::Witness(Box::new(e))),
        }
    }
}

impl AdmissionHandler for Inner {
    fn handle(&self, request: VerifiedAdmissionRequest) -> AdmissionReply {
        match self.admission(&request) {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(error = %tds_core::code::full_message(&e), "admission request failed");
                AdmissionReply::Refused(e.to_refusal())
            }
        }
    }
}

impl ServiceHandler for Inner {
    fn check_member(
        &self,
        credential: &[u8],
        now: Timestamp,
    ) -> Result<VerifiedCredential, IdentityError> {
        lock(&self.authority).check_member(credential, now)
    }

    fn handle(&self, peer: &VerifiedCredential, request: &[u8]) -> Vec<u8> {
        let reply = self
            .request(peer, request)
            .unwrap_or_else(|e| Reply::Error(e.to_refusal()));
        reply
            .encode()
            .or_else(|e| Reply::Error(e.to_refusal()).encode())
            .unwrap_or_default()
    }
}
