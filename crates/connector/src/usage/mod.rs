//! Consumer-side usage control: the [`UsageGuard`] decides each local use of data received
//! under an agreement, counts the uses durably, and tracks the agreement's duties
//! (delete within, report every, pay) with their deadlines.
//!
//! The provider checks an agreement when it delivers (`tds-protocol`'s transfer re-check);
//! what the consumer then does with its copy is checked here, on the consumer's side, by
//! the same engine over the same signed agreement: both policies of the agreement must
//! permit the use ([`VerifiedAgreement::decide`]), asked with the consumer's own facts
//! (participant, sector, roles, jurisdiction, where processing happens), the number of
//! uses so far, the time since the agreement, and what is known of the data (its
//! classification, personal-information level and size, from the manifest registered with
//! it).
//!
//! **Counting.** A `count lteq N` policy permits exactly `N` uses, also when many threads
//! ask at once. Each agreement's uses are decided one at a time inside the process (a
//! sharded mutex, held only for the decision, not for the disk): a decision sees every
//! use granted or still being committed, reserves the next use number, then commits the
//! counter increment. The grant is returned only once that increment is durable, so the
//! count survives a restart. Commits of different uses (of one agreement or many) go to
//! the store concurrently and share its group commits. A commit that fails (or an async
//! check dropped before its commit ended) keeps its reserved number until the process
//! restarts: the guard then refuses a use it could have allowed, never the reverse.
//!
//! The exact count relies on one [`UsageGuard`] (and its clones) per store: the counter
//! is in the store, but the serialisation of decisions is in the process. Replicas
//! sharing one database would need a conditional write in the store (decision 0015).
//!
//! **Duties.** [`UsageGuard::register`] (called when data under an agreement arrives)
//! records every duty of the agreement's rules (agreed policy first, then the offer's;
//! each once) with its deadline, durably in `Table::Duties`:
//!
//! | duty | deadline | after [`UsageGuard::fulfil`] |
//! |---|---|---|
//! | `delete(within D)` | received + D | fulfilled ([`UsageGuard::mark_deleted`] fulfils it too) |
//! | `report-usage(every I)` | agreed + I | due again at the next multiple of I after the agreement that is later than both the old deadline and the fulfilment |
//! | `pay(..)` | received (payment is owed from the start; metering fulfils it) | fulfilled |
//! | `attribute`, `notify`, `anonymize`, `obtain-consent` | none (recorded, informational) | fulfilled |
//!
//! A duty's [`DutyState`] at a time `now`: `Fulfilled` once fulfilled (never for a
//! recurring duty, which always has a next deadline); `Overdue` when `now` is past its
//! deadline; `Due` when the deadline is at most the [`DueWindow`] ahead (by default the
//! larger of a tenth of the duty's interval and one hour: a 30-day deletion is due in its
//! last 3 days, a daily report in its last 2.4 hours, a payment from the start); else
//! `Pending`. [`UsageGuard::next_deadline`] gives the earliest open deadline so a
//! connector can sleep until it instead of polling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tds_core::{Clock, ErrorCode, Hash256, Timestamp};
use tds_policy::contract::VerifiedAgreement;
use tds_policy::{
    Action, Classification, Duty, Effect, PersonalInfo, Purpose, Reason, ReasonCode, Region,
    Request, Text, Token,
};

use crate::store::{Batch, Store, StoreError, Table};

mod duties;
mod record;

use record::AgreementRecord;

/// Where the guard finds agreements and learns of their termination. The connector
/// implements it over its agreement store; [`MemoryAgreements`] is a simple one.
pub trait AgreementLookup: Send + Sync {
    /// The verified agreement with this id, if this side holds it.
    fn agreement(&self, id: &Hash256) -> Option<Arc<VerifiedAgreement>>;
    /// Whether the agreement was terminated (by either party).
    fn is_terminated(&self, id: &Hash256) -> bool;
}

/// An [`AgreementLookup`] in memory (tests, small embeddings).
#[derive(Debug, Default)]
pub struct MemoryAgreements {
    inner: RwLock<HashMap<Hash256, (Arc<VerifiedAgreement>, bool)>>,
}

impl MemoryAgreements {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an agreement (again: replaces it, keeping its termination); returns its id.
    pub fn insert(&self, agreement: impl Into<Arc<VerifiedAgreement>>) -> Hash256 {
        let a = agreement.into();
        let id = a.id();
        let mut m = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let terminated = m.get(&id).is_some_and(|(_, t)| *t);
        m.insert(id, (a, terminated));
        id
    }

    /// Marks an agreement terminated; returns whether it is known.
    pub fn terminate(&self, id: &Hash256) -> bool {
        let mut m = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        match m.get_mut(id) {
            Some((_, t)) => {
                *t = true;
                true
            }
            None => false,
        }
    }
}

impl AgreementLookup for MemoryAgreements {
    fn agreement(&self, id: &Hash256) -> Option<Arc<VerifiedAgreement>> {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        m.get(id).map(|(a, _)| a.clone())
    }

    fn is_terminated(&self, id: &Hash256) -> bool {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        m.get(id).is_some_and(|(_, t)| *t)
    }
}

/// What the consumer says about itself in every use request (the fields of a
/// [`Request`] the policy's `recipient`, `industry`, `recipientRole`, `spatial`,
/// `consentRef` and `exportAssessmentRef` constraints look at).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerFacts {
    /// This consumer's participant id: the agreements it uses must name it as consumer.
    pub participant: Hash256,
    /// Its sector (the first of its credential's).
    pub sector: Option<Token>,
    /// Its roles.
    pub roles: Vec<Token>,
    /// Its jurisdiction (informational for the policy).
    pub jurisdiction: Option<Region>,
    /// Where processing happens (`spatial` constraints); unknown when absent, so a
    /// policy that restricts the location refuses.
    pub location: Option<Region>,
    /// A consent reference it presents (`consentRef`, `obtain-consent` duties).
    pub consent_ref: Option<Text>,
    /// An export-assessment reference it presents (`exportAssessmentRef`).
    pub export_assessment_ref: Option<Text>,
}

impl ConsumerFacts {
    /// A participant that says nothing else about itself.
    pub fn new(participant: Hash256) -> Self {
        ConsumerFacts {
            participant,
            sector: None,
            roles: Vec::new(),
            jurisdiction: None,
            location: None,
            consent_ref: None,
            export_assessment_ref: None,
        }
    }

    /// The facts a membership credential states (participant, first sector, roles,
    /// jurisdiction); the processing location and references stay unset.
    pub fn from_credential(c: &tds_identity::Credential) -> Self {
        ConsumerFacts {
            sector: c.sector().and_then(|s| s.as_str().parse().ok()),
            roles: c
                .roles()
                .iter()
                .filter_map(|r| r.as_str().parse().ok())
                .collect(),
            jurisdiction: c.jurisdiction().as_str().parse().ok(),
            ..ConsumerFacts::new(*c.subject().as_hash())
        }
    }
}

/// What the guard knows about the data received under an agreement (the request fields
/// `classification`, `personalInfo` and `volume`). Unknown fields leave constraints on
/// them undecided, which refuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataFacts {
    /// The data's classification.
    pub classification: Option<Classification>,
    /// The data's personal-information level.
    pub personal_info: Option<PersonalInfo>,
    /// Bytes received under the agreement.
    pub volume: Option<u64>,
}

impl DataFacts {
    /// What a manifest states: classification, personal-information level, content size.
    pub fn from_manifest(m: &tds_manifest::Manifest) -> Self {
        DataFacts {
            classification: Classification::from_word(m.classification.as_str()),
            personal_info: PersonalInfo::from_word(m.personal.as_str()),
            volume: Some(m.content.size),
        }
    }
}

/// How long before its deadline a duty counts as [`DutyState::Due`]: the larger of
/// `per_mille` thousandths of the duty's interval (`delete` within, `report-usage`
/// every; 0 for `pay`) and `min_ms`. Default: a tenth, at least one hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueWindow {
    /// Thousandths of the duty's interval.
    pub per_mille: u64,
    /// The least window, in milliseconds.
    pub min_ms: u64,
}

impl Default for DueWindow {
    fn default() -> Self {
        DueWindow {
            per_mille: 100,
            min_ms: 60 * 60 * 1000,
        }
    }
}

impl DueWindow {
    /// The window, in milliseconds, for a duty of this interval.
    pub fn for_interval(&self, interval_ms: u64) -> u64 {
        let part = u128::from(interval_ms) * u128::from(self.per_mille) / 1000;
        u64::try_from(part).unwrap_or(u64::MAX).max(self.min_ms)
    }
}

/// A use the guard granted: durably counted before this was returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UseGrant {
    /// The agreement.
    pub agreement: Hash256,
    /// This use's number under the agreement (1 for the first).
    pub use_number: u64,
    /// The duties the decision attached (both policies', without repeats).
    pub duties: Vec<Duty>,
    /// The time the use was decided at.
    pub time: Timestamp,
}

/// Why the guard failed to read or write its records.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// The store failed (its code: `kv.*`).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record read back does not decode (not the canonical encoding of its kind, another
    /// version, a malformed key).
    #[error("{what} record {key} is corrupt: {reason}")]
    Corrupt {
        /// The record kind.
        what: &'static str,
        /// Its key (the text prefix, then hex).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// [`UsageGuard::fulfil`] of a duty that was never registered.
    #[error("agreement {agreement} has no registered duty {index}")]
    UnknownDuty {
        /// The agreement.
        agreement: Hash256,
        /// The duty index asked for.
        index: u32,
    },
}

impl ErrorCode for GuardError {
    fn code(&self) -> &'static str {
        match self {
            GuardError::Store(e) => e.code(),
            GuardError::Corrupt { .. } => "guard.corrupt_record",
            GuardError::UnknownDuty { .. } => "guard.unknown_duty",
        }
    }
}

/// Why the guard refused a use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UseDenied {
    /// This side holds no agreement with this id.
    #[error("no agreement {agreement}")]
    UnknownAgreement {
        /// The agreement asked for.
        agreement: Hash256,
    },
    /// The agreement names another consumer.
    #[error("agreement {agreement} is not for this consumer")]
    NotParty {
        /// The agreement.
        agreement: Hash256,
    },
    /// The agreement was terminated.
    #[error("agreement {agreement} was terminated")]
    Terminated {
        /// The agreement.
        agreement: Hash256,
    },
    /// The local copy of the data was deleted ([`UsageGuard::mark_deleted`]).
    #[error("the data of agreement {agreement} was deleted at {at}")]
    Deleted {
        /// The agreement.
        agreement: Hash256,
        /// When it was deleted.
        at: Timestamp,
    },
    /// The agreement's policies do not permit the use.
    #[error("agreement {agreement} does not permit this use: {}", join(reasons))]
    Denied {
        /// The agreement.
        agreement: Hash256,
        /// Deny or not applicable.
        effect: Effect,
        /// The policy engine's reasons, rule by rule, the agreed policy's then the
        /// offer's ([`VerifiedAgreement::explain`]).
        reasons: Vec<Reason>,
    },
    /// The guard could not read or write its records; nothing was granted (the code is
    /// the failure's: `kv.*`, `guard.corrupt_record`).
    #[error(transparent)]
    Failed(GuardError),
}

fn join(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl UseDenied {
    /// The policy engine's reasons (empty unless [`UseDenied::Denied`]).
    pub fn reasons(&self) -> &[Reason] {
        match self {
            UseDenied::Denied { reasons, .. } => reasons,
            _ => &[],
        }
    }

    /// The code of the policy conclusion that refused (`policy.deny.not_granted`,
    /// `policy.deny.prohibited`, ...), for [`UseDenied::Denied`]: the agreed policy's
    /// when it refuses, else the offer's.
    pub fn policy_code(&self) -> Option<&'static str> {
        self.reasons()
            .iter()
            .find(|r| {
                matches!(
                    r.code,
                    ReasonCode::ConflictProhibit
                        | ReasonCode::ConflictInvalid
                        | ReasonCode::Prohibited
                        | ReasonCode::NoneGranted
                        | ReasonCode::NotApplicable
                        | ReasonCode::ObligationUnmet
                )
            })
            .map(|r| r.code.as_str())
    }
}

impl ErrorCode for UseDenied {
    fn code(&self) -> &'static str {
        match self {
            UseDenied::UnknownAgreement { .. } => "guard.unknown_agreement",
            UseDenied::NotParty { .. } => "guard.not_party",
            UseDenied::Terminated { .. } => "guard.terminated",
            UseDenied::Deleted { .. } => "guard.deleted",
            UseDenied::Denied { .. } => "guard.denied",
            UseDenied::Failed(e) => e.code(),
        }
    }
}

impl From<GuardError> for UseDenied {
    fn from(e: GuardError) -> Self {
        UseDenied::Failed(e)
    }
}

impl From<StoreError> for UseDenied {
    fn from(e: StoreError) -> Self {
        UseDenied::Failed(GuardError::Store(e))
    }
}

/// Where a duty stands at some time (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DutyState {
    /// Open, deadline (if any) not yet near.
    Pending,
    /// The deadline is within the [`DueWindow`].
    Due,
    /// The deadline has passed.
    Overdue,
    /// Done (one-off duties only).
    Fulfilled,
}

/// One duty of an agreement and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DutyStatus {
    /// The agreement.
    pub agreement: Hash256,
    /// The duty's index among the agreement's duties (what [`UsageGuard::fulfil`] takes).
    pub index: u32,
    /// The duty.
    pub duty: Duty,
    /// Its (next) deadline, if it has one.
    pub due: Option<Timestamp>,
    /// Where it stands.
    pub state: DutyState,
    /// When it was (last) fulfilled.
    pub fulfilled: Option<Timestamp>,
}

/// Shards of the per-agreement decision locks.
const SHARDS: usize = 64;

/// Uses of one agreement being decided or committed in this process.
#[derive(Debug)]
struct Tally {
    /// Uses durably counted plus uses reserved and not yet committed.
    reserved: u64,
    /// Reservations whose commit has not ended.
    in_flight: u64,
    /// A commit failed or was abandoned: whether it was applied is unknown, so `reserved`
    /// is kept (it can only be too high) until the process restarts.
    stale: bool,
}

type Shard = Mutex<HashMap<Hash256, Tally>>;

/// Consumer-side usage control over one store (see the [module docs](self)). Cheap to
/// clone; clones share their state. Keep one per store.
#[derive(Clone)]
pub struct UsageGuard {
    store: Arc<dyn Store>,
    agreements: Arc<dyn AgreementLookup>,
    clock: Arc<dyn Clock>,
    facts: Arc<ConsumerFacts>,
    due_window: DueWindow,
    shards: Arc<[Shard; SHARDS]>,
}

impl std::fmt::Debug for UsageGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageGuard")
            .field("facts", &self.facts)
            .field("due_window", &self.due_window)
            .finish_non_exhaustive()
    }
}

/// A use reserved under the shard lock, waiting for its counter commit. Dropped without
/// [`Reservation::finish`] (an async check cancelled mid-commit), it marks the tally
/// stale.
struct Reservation<'a> {
    guard: &'a UsageGuard,
    agreement: Hash256,
    armed: bool,
}

impl Reservation<'_> {
    fn finish(
        mut self,
        committed: Result<(), StoreError>,
        grant: UseGrant,
    ) -> Result<UseGrant, UseDenied> {
        self.armed = false;
        self.guard.end_commit(&self.agreement, committed.is_ok());
        committed?;
        Ok(grant)
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.guard.end_commit(&self.agreement, false);
        }
    }
}

impl UsageGuard {
    /// A guard over `store` for the consumer `facts` describe, with the default
    /// [`DueWindow`].
    pub fn new(
        store: Arc<dyn Store>,
        agreements: Arc<dyn AgreementLookup>,
        clock: Arc<dyn Clock>,
        facts: ConsumerFacts,
    ) -> Self {
        UsageGuard {
            store,
            agreements,
            clock,
            facts: Arc::new(facts),
            due_window: DueWindow::default(),
            shards: Arc::new(std::array::from_fn(|_| Shard::default())),
        }
    }

    /// The same guard with another due window.
    pub fn with_due_window(mut self, window: DueWindow) -> Self {
        self.due_window = window;
        self
    }

    /// The consumer's facts.
    pub fn facts(&self) -> &ConsumerFacts {
        &self.facts
    }

    /// Decides a use of the data of `agreement` now, for `action` and `purpose`; when
    /// permitted, counts it durably and returns the grant with its use number and duties.
    /// Blocks the calling thread until the count is durable.
    pub fn check_use(
        &self,
        agreement: &Hash256,
        action: Action,
        purpose: &Purpose,
    ) -> Result<UseGrant, UseDenied> {
        let (reservation, grant, batch) = self.reserve(agreement, action, purpose)?;
        let committed = self.store.commit(batch);
        reservation.finish(committed, grant)
    }

    /// [`UsageGuard::check_use`] for async code: the decision is made at once (its store
    /// reads are point reads), then the count's commit is awaited without blocking the
    /// thread. Dropping the future before it ends loses the use (it stays reserved).
    pub async fn check_use_async(
        &self,
        agreement: &Hash256,
        action: Action,
        purpose: &Purpose,
    ) -> Result<UseGrant, UseDenied> {
        let (reservation, grant, batch) = self.reserve(agreement, action, purpose)?;
        let committed = self.store.commit_async(batch).await;
        reservation.finish(committed, grant)
    }

    /// Uses of `agreement` durably counted so far.
    pub fn uses(&self, agreement: &Hash256) -> Result<u64, StoreError> {
        self.store
            .counter(Table::Usage, &record::uses_key(agreement))
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "an index modulo the array's length is always in range"
    )]
    fn shard(&self, id: &Hash256) -> &Shard {
        // Agreement ids are hashes: their first byte spreads them evenly.
        let [first, ..] = *id.as_bytes();
        &self.shards[usize::from(first) % SHARDS]
    }

    /// The agreement's state record, if any.
    fn state(&self, id: &Hash256) -> Result<Option<AgreementRecord>, GuardError> {
        let key = record::state_key(id);
        match self.store.get(Table::Usage, &key)? {
            None => Ok(None),
            Some(bytes) => record::decode(&key, &bytes).map(Some),
        }
    }

    /// The checks and the decision, under the agreement's lock; reserves the use.
    fn reserve(
        &self,
        id: &Hash256,
        action: Action,
        purpose: &Purpose,
    ) -> Result<(Reservation<'_>, UseGrant, Batch), UseDenied> {
        let a = self
            .agreements
            .agreement(id)
            .ok_or(UseDenied::UnknownAgreement { agreement: *id })?;
        if a.terms().consumer != self.facts.participant {
            return Err(UseDenied::NotParty { agreement: *id });
        }
        if self.agreements.is_terminated(id) {
            return Err(UseDenied::Terminated { agreement: *id });
        }
        let mut tallies = crate::store::lock(self.shard(id));
        let state = self.state(id)?;
        if let Some(at) = state.as_ref().and_then(|s| s.deleted) {
            return Err(UseDenied::Deleted { agreement: *id, at });
        }
        let tally = match tallies.entry(*id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let durable = self.store.counter(Table::Usage, &record::uses_key(id))?;
                e.insert(Tally {
                    reserved: durable,
                    in_flight: 0,
                    stale: false,
                })
            }
        };
        let now = self.clock.now();
        let req = self.request(&a, action, purpose, now, tally.reserved, state.as_ref());
        let decision = a.decide(&req);
        if decision.effect != Effect::Permit {
            if tally.in_flight == 0 && !tally.stale {
                tallies.remove(id);
            }
            drop(tallies);
            return Err(UseDenied::Denied {
                agreement: *id,
                effect: decision.effect,
                reasons: a.explain(&req).reasons,
            });
        }
        tally.reserved = tally.reserved.saturating_add(1);
        tally.in_flight = tally.in_flight.saturating_add(1);
        let use_number = tally.reserved;
        drop(tallies);
        let mut batch = Batch::new();
        batch.add(Table::Usage, record::uses_key(id), 1);
        Ok((
            Reservation {
                guard: self,
                agreement: *id,
                armed: true,
            },
            UseGrant {
                agreement: *id,
                use_number,
                duties: decision.duties,
                time: now,
            },
            batch,
        ))
    }

    /// A reserved use's commit ended (`ok`: durably counted).
    fn end_commit(&self, id: &Hash256, ok: bool) {
        let mut tallies = crate::store::lock(self.shard(id));
        if let Some(t) = tallies.get_mut(id) {
            t.in_flight = t.in_flight.saturating_sub(1);
            t.stale |= !ok;
            // With nothing in flight and every commit applied, the store's counter is the
            // count again: the entry is not needed.
            if t.in_flight == 0 && !t.stale {
                tallies.remove(id);
            }
        }
    }

    /// The policy request for a use now, as the provider's transfer re-check builds it,
    /// with the consumer's own facts.
    fn request(
        &self,
        a: &VerifiedAgreement,
        action: Action,
        purpose: &Purpose,
        now: Timestamp,
        uses: u64,
        state: Option<&AgreementRecord>,
    ) -> Request {
        let t = a.terms();
        let f = &*self.facts;
        let mut req = Request::new(action);
        req.target = Some(t.asset.clone());
        req.purpose = Some(purpose.clone());
        req.time = Some(now);
        req.elapsed = Some(now.millis_since(t.agreed_at));
        req.recipient = Some(f.participant);
        req.sector.clone_from(&f.sector);
        req.roles.clone_from(&f.roles);
        req.jurisdiction.clone_from(&f.jurisdiction);
        req.location.clone_from(&f.location);
        req.consent_ref.clone_from(&f.consent_ref);
        req.export_assessment_ref
            .clone_from(&f.export_assessment_ref);
        req.uses = Some(uses);
        if let Some(s) = state {
            req.classification = s.classification;
            req.personal_info = s.personal;
            req.volume = s.volume;
        }
        req
    }
}
