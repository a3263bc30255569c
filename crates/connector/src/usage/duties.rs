//! Duty tracking: registration, deadlines, fulfilment, deletion.

use tds_core::{Hash256, Timestamp};
use tds_policy::contract::VerifiedAgreement;
use tds_policy::{Duty, Policy, RuleKind};

use super::record::{self, AgreementRecord, DutyRecord};
use super::{DataFacts, DutyState, DutyStatus, GuardError, UsageGuard};
use crate::store::{Batch, Table, MAX_SCAN};

/// How a duty's deadline behaves.
enum Schedule {
    /// No deadline (recorded for information).
    None,
    /// One deadline, this long after it starts.
    Once(u64),
    /// A deadline every interval.
    Every(u64),
}

fn schedule(d: &Duty) -> Schedule {
    match d {
        Duty::Delete { within } => Schedule::Once(*within),
        Duty::Pay { .. } => Schedule::Once(0),
        // A zero interval would never move on; one millisecond is the shortest period.
        Duty::ReportUsage { every } => Schedule::Every((*every).max(1)),
        Duty::Attribute(_) | Duty::Anonymize | Duty::Notify(_) | Duty::ObtainConsent(_) => {
            Schedule::None
        }
    }
}

/// Every duty of the rules (permissions and obligations) about the agreement's asset,
/// the agreed policy's first, then the offer's, each once.
fn agreement_duties(a: &VerifiedAgreement) -> Vec<Duty> {
    let t = a.terms();
    let mut out: Vec<Duty> = Vec::new();
    let mut add = |p: &Policy| {
        for r in &p.rules {
            let target = r.target.as_ref().or(p.target.as_ref());
            if r.kind == RuleKind::Prohibition || target.is_some_and(|x| *x != t.asset) {
                continue;
            }
            for d in &r.duties {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
    };
    add(&t.policy);
    add(&t.offer_policy);
    out
}

/// The first deadline of the recurrence `start + k * every` (k ≥ 1) after both `due` and
/// `at`.
fn next_due(due: Timestamp, every: u64, at: Timestamp) -> Timestamp {
    let every = every.max(1);
    let from = due.max(at);
    let periods = from.millis_since(due) / every + 1;
    match periods.checked_mul(every) {
        Some(ms) => due.saturating_add_millis(ms),
        None => Timestamp::from_millis(u64::MAX),
    }
}

impl UsageGuard {
    /// Records the duties of `agreement` with their deadlines, counted from
    /// `received_at` (see the [module docs](super)); called when data under it arrives.
    /// Idempotent: returns `false`, changing nothing, if it was registered before.
    pub fn register(
        &self,
        agreement: &VerifiedAgreement,
        received_at: Timestamp,
    ) -> Result<bool, GuardError> {
        self.register_with(agreement, received_at, &DataFacts::default())
    }

    /// [`UsageGuard::register`], with what is known of the data (from its manifest:
    /// [`DataFacts::from_manifest`]); later use requests carry it.
    pub fn register_with(
        &self,
        agreement: &VerifiedAgreement,
        received_at: Timestamp,
        data: &DataFacts,
    ) -> Result<bool, GuardError> {
        let id = agreement.id();
        let _lock = crate::store::lock(self.shard(&id));
        let before = self.state(&id)?;
        if before.as_ref().is_some_and(|s| s.received.is_some()) {
            return Ok(false);
        }
        let deleted = before.and_then(|s| s.deleted);
        let agreed_at = agreement.terms().agreed_at;
        let duties = agreement_duties(agreement);
        let mut batch = Batch::new();
        let mut count = 0u32;
        for (index, duty) in (0u32..).zip(duties) {
            let due = match schedule(&duty) {
                Schedule::None => None,
                Schedule::Once(after) => Some(received_at.saturating_add_millis(after)),
                Schedule::Every(every) => Some(agreed_at.saturating_add_millis(every)),
            };
            // Data deleted before it was registered: its delete duties are done.
            let fulfilled = deleted.filter(|_| matches!(duty, Duty::Delete { .. }));
            let rec = DutyRecord {
                v: record::VERSION,
                duty,
                due,
                fulfilled,
            };
            let key = record::duty_key(&id, index);
            batch.put(Table::Duties, key.clone(), record::encode(&key, &rec)?);
            if let (Some(due), None) = (due, fulfilled) {
                batch.put(Table::Duties, record::due_key(due, &id, index), Vec::new());
            }
            count = index.saturating_add(1);
        }
        let state = AgreementRecord {
            v: record::VERSION,
            received: Some(received_at),
            deleted,
            duties: count,
            classification: data.classification,
            personal: data.personal_info,
            volume: data.volume,
        };
        let key = record::state_key(&id);
        batch.put(Table::Usage, key.clone(), record::encode(&key, &state)?);
        self.store.commit(batch)?;
        Ok(true)
    }

    /// Every registered duty of every agreement and where it stands at `now`, by
    /// agreement and index.
    pub fn duties(&self, now: Timestamp) -> Result<Vec<DutyStatus>, GuardError> {
        self.duties_under(record::DUTY_REC, now)
    }

    /// The registered duties of one agreement and where they stand at `now`.
    pub fn duties_of(
        &self,
        agreement: &Hash256,
        now: Timestamp,
    ) -> Result<Vec<DutyStatus>, GuardError> {
        self.duties_under(&record::duty_prefix(agreement), now)
    }

    fn duties_under(&self, prefix: &[u8], now: Timestamp) -> Result<Vec<DutyStatus>, GuardError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page =
                self.store
                    .scan_prefix_after(Table::Duties, prefix, after.as_deref(), MAX_SCAN)?;
            let full = page.len() >= MAX_SCAN;
            for (key, value) in &page {
                let (agreement, index) = record::parse_duty_key(key)?;
                let rec: DutyRecord = record::decode(key, value)?;
                out.push(self.status(agreement, index, rec, now));
            }
            match page.into_iter().last() {
                Some((k, _)) if full => after = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// The open duties whose deadline is before `now`, earliest first (from the deadline
    /// index: only those are read).
    pub fn overdue(&self, now: Timestamp) -> Result<Vec<DutyStatus>, GuardError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.store.scan_prefix_after(
                Table::Duties,
                record::DUTY_DUE,
                after.as_deref(),
                MAX_SCAN,
            )?;
            let full = page.len() >= MAX_SCAN;
            for (key, _) in &page {
                let (due, agreement, index) = record::parse_due_key(key)?;
                if due >= now {
                    return Ok(out);
                }
                let rec = self.duty(&agreement, index)?;
                out.push(self.status(agreement, index, rec, now));
            }
            match page.into_iter().last() {
                Some((k, _)) if full => after = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// The earliest open deadline (possibly past: an overdue duty), if any: the connector
    /// sleeps until then instead of polling.
    pub fn next_deadline(&self) -> Result<Option<Timestamp>, GuardError> {
        self.first_deadline(None)
    }

    /// The earliest open deadline after `now`, if any (the next duty to become overdue).
    pub fn next_deadline_after(&self, now: Timestamp) -> Result<Option<Timestamp>, GuardError> {
        self.first_deadline(Some(&record::due_after(now)))
    }

    fn first_deadline(&self, after: Option<&[u8]>) -> Result<Option<Timestamp>, GuardError> {
        let first = self
            .store
            .scan_prefix_after(Table::Duties, record::DUTY_DUE, after, 1)?;
        match first.first() {
            None => Ok(None),
            Some((key, _)) => Ok(Some(record::parse_due_key(key)?.0)),
        }
    }

    /// Records that duty `index` of `agreement` was fulfilled at `at`: a one-off duty is
    /// then fulfilled (again: nothing changes); a recurring one is due again at its next
    /// deadline (the same `at` again: nothing changes).
    pub fn fulfil(&self, agreement: &Hash256, index: u32, at: Timestamp) -> Result<(), GuardError> {
        let _lock = crate::store::lock(self.shard(agreement));
        let mut rec = self.duty(agreement, index)?;
        let mut batch = Batch::new();
        match (schedule(&rec.duty), rec.due) {
            (Schedule::Every(every), Some(due)) => {
                if rec.fulfilled == Some(at) {
                    return Ok(());
                }
                let next = next_due(due, every, at);
                batch.delete(Table::Duties, record::due_key(due, agreement, index));
                batch.put(
                    Table::Duties,
                    record::due_key(next, agreement, index),
                    Vec::new(),
                );
                rec.due = Some(next);
            }
            _ => {
                if rec.fulfilled.is_some() {
                    return Ok(());
                }
                if let Some(due) = rec.due {
                    batch.delete(Table::Duties, record::due_key(due, agreement, index));
                }
            }
        }
        rec.fulfilled = Some(at);
        let key = record::duty_key(agreement, index);
        batch.put(Table::Duties, key.clone(), record::encode(&key, &rec)?);
        self.store.commit(batch)?;
        Ok(())
    }

    /// Records that the local copy of the data of `agreement` was deleted (now, by the
    /// guard's clock): later uses are refused (`guard.deleted`) and its delete duties are
    /// fulfilled. Again: nothing changes. A use decided before this call, whose count was
    /// still being committed, is granted when its commit ends (it happened before the
    /// deletion); every use decided after is refused.
    pub fn mark_deleted(&self, agreement: &Hash256) -> Result<(), GuardError> {
        let _lock = crate::store::lock(self.shard(agreement));
        let mut state = self.state(agreement)?.unwrap_or(AgreementRecord {
            v: record::VERSION,
            ..AgreementRecord::default()
        });
        if state.deleted.is_some() {
            return Ok(());
        }
        let now = self.clock.now();
        state.deleted = Some(now);
        let mut batch = Batch::new();
        let key = record::state_key(agreement);
        batch.put(Table::Usage, key.clone(), record::encode(&key, &state)?);
        let prefix = record::duty_prefix(agreement);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page =
                self.store
                    .scan_prefix_after(Table::Duties, &prefix, after.as_deref(), MAX_SCAN)?;
            let full = page.len() >= MAX_SCAN;
            for (key, value) in &page {
                let (_, index) = record::parse_duty_key(key)?;
                let mut rec: DutyRecord = record::decode(key, value)?;
                if !matches!(rec.duty, Duty::Delete { .. }) || rec.fulfilled.is_some() {
                    continue;
                }
                if let Some(due) = rec.due {
                    batch.delete(Table::Duties, record::due_key(due, agreement, index));
                }
                rec.fulfilled = Some(now);
                batch.put(Table::Duties, key.clone(), record::encode(key, &rec)?);
            }
            match page.into_iter().last() {
                Some((k, _)) if full => after = Some(k),
                _ => break,
            }
        }
        self.store.commit(batch)?;
        Ok(())
    }

    /// The record of one duty.
    fn duty(&self, agreement: &Hash256, index: u32) -> Result<DutyRecord, GuardError> {
        let key = record::duty_key(agreement, index);
        match self.store.get(Table::Duties, &key)? {
            Some(bytes) => record::decode(&key, &bytes),
            None => Err(GuardError::UnknownDuty {
                agreement: *agreement,
                index,
            }),
        }
    }

    fn status(
        &self,
        agreement: Hash256,
        index: u32,
        rec: DutyRecord,
        now: Timestamp,
    ) -> DutyStatus {
        let (recurring, interval) = match schedule(&rec.duty) {
            Schedule::None => (false, 0),
            Schedule::Once(i) => (false, i),
            Schedule::Every(i) => (true, i),
        };
        let state = match rec.due {
            _ if !recurring && rec.fulfilled.is_some() => DutyState::Fulfilled,
            None => DutyState::Pending,
            Some(due) if now > due => DutyState::Overdue,
            Some(due) if due.millis_since(now) <= self.due_window.for_interval(interval) => {
                DutyState::Due
            }
            Some(_) => DutyState::Pending,
        };
        DutyStatus {
            agreement,
            index,
            duty: rec.duty,
            due: rec.due,
            state,
            fulfilled: rec.fulfilled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_due_is_the_next_period_after_both() {
        let t = Timestamp::from_millis;
        // On time or early: one period on.
        assert_eq!(next_due(t(100), 100, t(90)), t(200));
        assert_eq!(next_due(t(100), 100, t(100)), t(200));
        // Late, even by several periods: the first deadline after the fulfilment.
        assert_eq!(next_due(t(100), 100, t(150)), t(200));
        assert_eq!(next_due(t(100), 100, t(200)), t(300));
        assert_eq!(next_due(t(100), 100, t(1_050)), t(1_100));
        // Near the end of time: saturates.
        assert_eq!(next_due(t(u64::MAX - 10), 100, t(0)), t(u64::MAX));
        assert_eq!(next_due(t(0), u64::MAX, t(5)), t(u64::MAX));
    }
}
