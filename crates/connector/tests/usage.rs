//! The usage guard (consumer-side usage control) against both store backends: exact
//! counting (also racing threads and tasks), refusals, duty deadlines under a manual
//! clock, and a restart of the redb store.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use std::collections::BTreeSet;
use std::sync::Arc;

#[path = "shared/full_store.rs"]
mod full_store;
use full_store::FullStore;
use tds_connector::store::{Batch, CommitFuture, MemoryStore, RedbStore, Store, StoreError, Table};
use tds_connector::usage::{
    ConsumerFacts, DataFacts, DutyState, MemoryAgreements, UsageGuard, UseDenied,
};
use tds_core::time::{ManualClock, DAY_MS};
use tds_core::{cose, Clock, ErrorCode, Hash256, Signer, SigningKey, Timestamp};
use tds_policy::contract::{
    narrow_to_purpose, verify_agreement, AgreementTerms, VerifiedAgreement,
};
use tds_policy::{parse, Action, Classification, Constraint, Duty, Operand, Purpose, ReasonCode};

const T0: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;
const ASSET: &str = "urn:tds:asset:meter";

fn provider() -> SigningKey {
    SigningKey::from_seed(&[1; 32])
}

fn consumer() -> SigningKey {
    SigningKey::from_seed(&[2; 32])
}

fn purpose(p: &str) -> Purpose {
    p.parse().unwrap()
}

/// An agreement between `provider()` and `consumer`, signed by both: the offer's policy
/// is `policy offer target ASSET;` followed by `rules`, the agreed policy that narrowed
/// to `grid/planning` (as the CLI requests it).
fn agreement_for(consumer: &SigningKey, rules: &str, agreed_at: u64) -> VerifiedAgreement {
    let p = provider();
    let offer_policy = parse(
        "offer",
        &format!("policy offer target \"{ASSET}\";\n{rules}"),
    )
    .unwrap();
    let declared = purpose("grid/planning");
    let terms = AgreementTerms {
        offer: Hash256::sha256(b"offer"),
        request: Hash256::sha256(b"request"),
        asset: ASSET.parse().unwrap(),
        provider: p.id(),
        provider_key: p.public_key(),
        consumer: consumer.id(),
        consumer_key: consumer.public_key(),
        policy: narrow_to_purpose(&offer_policy, &declared),
        offer_policy,
        purpose: declared,
        price: None,
        agreed_at: Timestamp::from_millis(agreed_at),
    };
    let signers: [&dyn Signer; 2] = [&p, consumer];
    verify_agreement(&cose::sign_multi(&signers, &terms).unwrap()).unwrap()
}

fn agreement(rules: &str) -> VerifiedAgreement {
    agreement_for(&consumer(), rules, T0)
}

fn facts() -> ConsumerFacts {
    let mut f = ConsumerFacts::new(consumer().id());
    f.sector = Some("power".parse().unwrap());
    f.roles = vec!["consumer".parse().unwrap()];
    f.jurisdiction = Some("CN-SX".parse().unwrap());
    f.location = Some("CN-SX".parse().unwrap());
    f
}

/// A store, the directory holding it (redb) and how to open it again.
struct Backend {
    store: Option<Arc<dyn Store>>,
    dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn memory() -> Backend {
        Backend {
            store: Some(Arc::new(MemoryStore::new())),
            dir: None,
        }
    }

    fn redb() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
        Backend {
            store: Some(store),
            dir: Some(dir),
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().unwrap()
    }

    /// Closes the store and opens it again (redb; the caller has dropped its guards).
    fn reopen(&mut self) {
        let old = self.store.take().unwrap();
        assert_eq!(Arc::strong_count(&old), 1, "the store is still in use");
        drop(old);
        let dir = self.dir.as_ref().unwrap().path();
        self.store = Some(Arc::new(RedbStore::open(dir).unwrap()));
    }
}

/// A guard over the backend's store with a manual clock at `T0`.
struct Env {
    agreements: Arc<MemoryAgreements>,
    clock: Arc<ManualClock>,
    guard: UsageGuard,
}

fn env(b: &Backend) -> Env {
    let agreements = Arc::new(MemoryAgreements::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let guard = UsageGuard::new(b.store(), agreements.clone(), clock.clone(), facts());
    Env {
        agreements,
        clock,
        guard,
    }
}

fn planning() -> Purpose {
    purpose("grid/planning")
}

/// Is `d` refused because a `count` constraint failed?
fn refused_for_count(d: &UseDenied) -> bool {
    d.reasons().iter().any(|r| {
        r.code == ReasonCode::NotGranted
            && matches!(
                r.constraint(),
                Some(Constraint::Atom {
                    operand: Operand::Count,
                    ..
                })
            )
    })
}

const COUNTED: &str =
    "permit use when purpose isA grid and count lteq 100 duty attribute(\"SGCC\");";

// ---- behaviours, each run against both backends ----

fn count_lteq_100_permits_exactly_100(b: Backend) {
    let e = env(&b);
    let id = e.agreements.insert(agreement(COUNTED));
    for n in 1..=100 {
        let g = e.guard.check_use(&id, Action::Read, &planning()).unwrap();
        assert_eq!(g.use_number, n);
        assert_eq!(g.agreement, id);
        assert_eq!(g.duties, vec![Duty::Attribute("SGCC".parse().unwrap())]);
        assert_eq!(g.time, Timestamp::from_millis(T0));
    }
    assert_eq!(e.guard.uses(&id).unwrap(), 100);
    for _ in 0..2 {
        let d = e
            .guard
            .check_use(&id, Action::Read, &planning())
            .unwrap_err();
        assert_eq!(d.code(), "guard.denied");
        assert_eq!(d.policy_code(), Some("policy.deny.not_granted"));
        assert!(refused_for_count(&d), "{d}");
        let text = d.to_string();
        assert!(
            text.contains("count must be at most 100, actual: use number 101 (100 so far)"),
            "{text}"
        );
    }
    // Refusals are not counted.
    assert_eq!(e.guard.uses(&id).unwrap(), 100);
}

fn racing_threads_get_exactly_100(b: Backend) {
    let e = env(&b);
    let id = e.agreements.insert(agreement(COUNTED));
    // Another agreement used at the same time shares the store and the shards.
    let other = e
        .agreements
        .insert(agreement_for(&consumer(), COUNTED, T0 + 1));
    let numbers: Vec<Vec<u64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let guard = e.guard.clone();
                s.spawn(move || {
                    let mut mine = Vec::new();
                    let agreement = if i % 4 == 3 { other } else { id };
                    loop {
                        match guard.check_use(&agreement, Action::Read, &planning()) {
                            Ok(g) if agreement == id => mine.push(g.use_number),
                            Ok(_) => {}
                            Err(d) => {
                                assert!(refused_for_count(&d), "{d}");
                                return mine;
                            }
                        }
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<u64> = numbers.into_iter().flatten().collect();
    assert_eq!(all.len(), 100, "grants of the first agreement");
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct, (1..=100).collect::<BTreeSet<u64>>());
    assert_eq!(e.guard.uses(&id).unwrap(), 100);
    assert_eq!(e.guard.uses(&other).unwrap(), 100);
}

fn racing_tasks_get_exactly_100(b: Backend) {
    let e = env(&b);
    let id = e.agreements.insert(agreement(COUNTED));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let granted: u64 = rt.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let guard = e.guard.clone();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while guard
                        .check_use_async(&id, Action::Read, &planning())
                        .await
                        .is_ok()
                    {
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    assert_eq!(granted, 100);
    assert_eq!(e.guard.uses(&id).unwrap(), 100);
}

fn refusals_carry_their_codes(b: Backend) {
    let e = env(&b);
    let id = e.agreements.insert(agreement(COUNTED));
    // Within the agreed purpose (grid/planning) and below it: permitted.
    e.guard.check_use(&id, Action::Read, &planning()).unwrap();
    e.guard
        .check_use(&id, Action::Analyze, &purpose("grid/planning/load"))
        .unwrap();
    // Within the offer's purpose (grid) but outside the agreed one: refused by the agreed
    // policy; another action than the offer grants: not applicable.
    let d = e
        .guard
        .check_use(&id, Action::Read, &purpose("grid/operations"))
        .unwrap_err();
    assert_eq!(d.code(), "guard.denied");
    assert_eq!(d.policy_code(), Some("policy.deny.not_granted"));
    assert!(
        d.to_string()
            .contains("purpose must be within grid/planning"),
        "{d}"
    );
    let d = e
        .guard
        .check_use(&id, Action::Distribute, &planning())
        .unwrap_err();
    assert_eq!(d.code(), "guard.denied");
    assert_eq!(d.policy_code(), Some("policy.not_applicable"));
    assert_eq!(e.guard.uses(&id).unwrap(), 2);
    // Unknown, someone else's, terminated.
    let d = e
        .guard
        .check_use(&Hash256::sha256(b"nothing"), Action::Read, &planning())
        .unwrap_err();
    assert_eq!(d.code(), "guard.unknown_agreement");
    let theirs = e
        .agreements
        .insert(agreement_for(&SigningKey::from_seed(&[3; 32]), COUNTED, T0));
    let d = e
        .guard
        .check_use(&theirs, Action::Read, &planning())
        .unwrap_err();
    assert_eq!(d.code(), "guard.not_party");
    assert!(e.agreements.terminate(&id));
    let d = e
        .guard
        .check_use(&id, Action::Read, &planning())
        .unwrap_err();
    assert_eq!(d.code(), "guard.terminated");
    assert!(d.reasons().is_empty() && d.policy_code().is_none());
    assert_eq!(e.guard.uses(&id).unwrap(), 2);
}

fn time_and_data_facts_reach_the_policy(b: Backend) {
    let e = env(&b);
    let a = agreement(
        "permit use when purpose isA grid and elapsedTime lteq 30d and classification lteq important and spatial isPartOf CN;",
    );
    let id = e.agreements.insert(a.clone());
    // The classification is unknown until the data is registered with its facts.
    let d = e
        .guard
        .check_use(&id, Action::Read, &planning())
        .unwrap_err();
    assert_eq!(d.code(), "guard.denied");
    let data = DataFacts {
        classification: Some(Classification::General),
        ..DataFacts::default()
    };
    assert!(e
        .guard
        .register_with(&a, Timestamp::from_millis(T0), &data)
        .unwrap());
    e.guard.check_use(&id, Action::Read, &planning()).unwrap();
    // 31 days after the agreement: too late.
    e.clock.advance(31 * DAY_MS);
    let d = e
        .guard
        .check_use(&id, Action::Read, &planning())
        .unwrap_err();
    assert!(
        d.to_string().contains("elapsedTime must be at most 30d"),
        "{d}"
    );
    // Processing outside CN is refused.
    let mut elsewhere = facts();
    elsewhere.location = Some("DE".parse().unwrap());
    e.clock.set(Timestamp::from_millis(T0));
    let g = UsageGuard::new(b.store(), e.agreements.clone(), e.clock.clone(), elsewhere);
    let d = g.check_use(&id, Action::Read, &planning()).unwrap_err();
    assert!(d.to_string().contains("spatial must be within CN"), "{d}");
}

fn delete_duty_becomes_overdue(b: Backend) {
    let e = env(&b);
    let a =
        agreement("permit use when purpose isA grid duty delete(within 1d), attribute(\"SGCC\");");
    let id = e.agreements.insert(a.clone());
    let received = Timestamp::from_millis(T0 + HOUR);
    e.clock.set(received);
    assert_eq!(e.guard.next_deadline().unwrap(), None);
    assert!(e.guard.register(&a, received).unwrap());
    // Again: nothing changes.
    assert!(!e
        .guard
        .register(&a, Timestamp::from_millis(T0 + 5 * HOUR))
        .unwrap());
    let due = Timestamp::from_millis(T0 + HOUR + DAY_MS);
    let all = e.guard.duties(received).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].agreement, id);
    assert_eq!(all[0].index, 0);
    assert_eq!(all[0].duty, Duty::Delete { within: DAY_MS });
    assert_eq!(all[0].due, Some(due));
    assert_eq!(all[0].state, DutyState::Pending);
    assert_eq!(all[1].duty, Duty::Attribute("SGCC".parse().unwrap()));
    assert_eq!((all[1].due, all[1].state), (None, DutyState::Pending));
    assert_eq!(e.guard.next_deadline().unwrap(), Some(due));
    assert_eq!(e.guard.next_deadline_after(received).unwrap(), Some(due));
    assert_eq!(e.guard.next_deadline_after(due).unwrap(), None);
    // 22 hours on: within the last tenth of the day (2.4 h), due.
    let at = |h: u64| Timestamp::from_millis(T0 + HOUR + h * HOUR);
    assert_eq!(
        e.guard.duties_of(&id, at(22)).unwrap()[0].state,
        DutyState::Due
    );
    assert!(e.guard.overdue(at(22)).unwrap().is_empty());
    // 25 hours on: overdue, and the deadline is still the one to wake for.
    e.clock.advance(25 * HOUR);
    let now = e.clock.now();
    assert_eq!(
        e.guard.duties_of(&id, now).unwrap()[0].state,
        DutyState::Overdue
    );
    let overdue = e.guard.overdue(now).unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!((overdue[0].agreement, overdue[0].index), (id, 0));
    assert_eq!(overdue[0].state, DutyState::Overdue);
    assert_eq!(e.guard.next_deadline().unwrap(), Some(due));
    // Uses are still possible until the copy is deleted; after, refused.
    e.guard.check_use(&id, Action::Read, &planning()).unwrap();
    e.guard.mark_deleted(&id).unwrap();
    let d = e
        .guard
        .check_use(&id, Action::Read, &planning())
        .unwrap_err();
    assert_eq!(d.code(), "guard.deleted");
    assert!(matches!(d, UseDenied::Deleted { at, .. } if at == now));
    let after = e.guard.duties_of(&id, now).unwrap();
    assert_eq!(after[0].state, DutyState::Fulfilled);
    assert_eq!(after[0].fulfilled, Some(now));
    assert!(e.guard.overdue(now).unwrap().is_empty());
    assert_eq!(e.guard.next_deadline().unwrap(), None);
    // Deleting again changes nothing.
    e.clock.advance(HOUR);
    e.guard.mark_deleted(&id).unwrap();
    assert_eq!(e.guard.duties_of(&id, now).unwrap()[0].fulfilled, Some(now));
}

fn report_usage_recurs(b: Backend) {
    let e = env(&b);
    let a = agreement(
        "permit use when purpose isA grid duty report-usage(every 7d), pay(2 CNY per use);",
    );
    let id = e.agreements.insert(a.clone());
    let received = Timestamp::from_millis(T0 + DAY_MS);
    assert!(e.guard.register(&a, received).unwrap());
    let week = 7 * DAY_MS;
    let t = |ms: u64| Timestamp::from_millis(T0 + ms);
    let report = |now| e.guard.duties_of(&id, now).unwrap()[0].clone();
    let pay = |now| e.guard.duties_of(&id, now).unwrap()[1].clone();
    // The first report is due a week after the agreement; the payment at once.
    assert_eq!(report(received).due, Some(t(week)));
    assert_eq!(report(received).state, DutyState::Pending);
    assert_eq!(pay(received).due, Some(received));
    assert_eq!(pay(received).state, DutyState::Due);
    assert_eq!(pay(t(DAY_MS + 1)).state, DutyState::Overdue);
    assert_eq!(e.guard.next_deadline().unwrap(), Some(received));
    e.guard.fulfil(&id, 1, t(DAY_MS + 10)).unwrap();
    assert_eq!(pay(t(DAY_MS + 10)).state, DutyState::Fulfilled);
    assert_eq!(e.guard.next_deadline().unwrap(), Some(t(week)));
    // Due in the last tenth of the week, then reported: due a week later.
    assert_eq!(report(t(week - 16 * HOUR)).state, DutyState::Due);
    assert_eq!(report(t(week - 17 * HOUR)).state, DutyState::Pending);
    e.guard.fulfil(&id, 0, t(week - HOUR)).unwrap();
    let r = report(t(week));
    assert_eq!(
        (r.due, r.state, r.fulfilled),
        (Some(t(2 * week)), DutyState::Pending, Some(t(week - HOUR)))
    );
    // The same fulfilment again changes nothing.
    e.guard.fulfil(&id, 0, t(week - HOUR)).unwrap();
    assert_eq!(report(t(week)).due, Some(t(2 * week)));
    assert_eq!(e.guard.next_deadline().unwrap(), Some(t(2 * week)));
    // Missed for two periods: overdue; reported late, the next is the first deadline after.
    let late = t(4 * week + DAY_MS);
    assert_eq!(report(late).state, DutyState::Overdue);
    assert_eq!(e.guard.overdue(late).unwrap().len(), 1);
    e.guard.fulfil(&id, 0, late).unwrap();
    assert_eq!(report(late).due, Some(t(5 * week)));
    assert!(e.guard.overdue(late).unwrap().is_empty());
    assert_eq!(e.guard.next_deadline().unwrap(), Some(t(5 * week)));
    // Deleting the data does not end the reporting.
    e.guard.mark_deleted(&id).unwrap();
    assert_eq!(e.guard.next_deadline().unwrap(), Some(t(5 * week)));
    // An index the agreement does not have.
    let err = e.guard.fulfil(&id, 2, late).unwrap_err();
    assert_eq!(err.code(), "guard.unknown_duty");
}

fn corrupt_records_are_errors(b: Backend) {
    let e = env(&b);
    let a = agreement("permit use when purpose isA grid duty delete(within 1d);");
    let id = e.agreements.insert(a.clone());
    e.guard.register(&a, Timestamp::from_millis(T0)).unwrap();
    let store = b.store();
    // The key layout of the record module's docs.
    let mut state = b"guard/state/".to_vec();
    state.extend_from_slice(id.as_bytes());
    let mut duty = b"duty/rec/".to_vec();
    duty.extend_from_slice(id.as_bytes());
    duty.extend_from_slice(&0u32.to_be_bytes());
    let good_state = store.get(Table::Usage, &state).unwrap().unwrap();
    for bad in [&b""[..], b"\xff", &good_state[..good_state.len() - 1]] {
        let mut batch = Batch::new();
        batch.put(Table::Usage, state.clone(), bad.to_vec());
        batch.put(Table::Duties, duty.clone(), bad.to_vec());
        store.commit(batch).unwrap();
        let d = e
            .guard
            .check_use(&id, Action::Read, &planning())
            .unwrap_err();
        assert_eq!(d.code(), "guard.corrupt_record", "{d}");
        assert!(
            d.to_string()
                .starts_with("agreement state record guard/state/"),
            "{d}"
        );
        let err = e.guard.duties(Timestamp::from_millis(T0)).unwrap_err();
        assert_eq!(err.code(), "guard.corrupt_record");
        assert!(
            err.to_string().starts_with("duty record duty/rec/"),
            "{err}"
        );
        assert_eq!(
            e.guard
                .overdue(Timestamp::from_millis(T0 + 2 * DAY_MS))
                .unwrap_err()
                .code(),
            "guard.corrupt_record"
        );
        assert_eq!(
            e.guard
                .fulfil(&id, 0, Timestamp::from_millis(T0))
                .unwrap_err()
                .code(),
            "guard.corrupt_record"
        );
        assert_eq!(
            e.guard.mark_deleted(&id).unwrap_err().code(),
            "guard.corrupt_record"
        );
    }
    // A use counter that is not a counter.
    let mut uses = b"guard/uses/".to_vec();
    uses.extend_from_slice(id.as_bytes());
    let mut batch = Batch::new();
    batch.delete(Table::Usage, state);
    batch.put(Table::Usage, uses, b"abc".to_vec());
    store.commit(batch).unwrap();
    let d = e
        .guard
        .check_use(&id, Action::Read, &planning())
        .unwrap_err();
    assert_eq!(d.code(), "kv.not_counter");
    assert_eq!(e.guard.uses(&id).unwrap_err().code(), "kv.not_counter");
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $name() { super::$name(super::Backend::memory()) })*
        }
        mod redb {
            $(#[test] fn $name() { super::$name(super::Backend::redb()) })*
        }
    };
}

on_both!(
    count_lteq_100_permits_exactly_100,
    racing_threads_get_exactly_100,
    racing_tasks_get_exactly_100,
    refusals_carry_their_codes,
    time_and_data_facts_reach_the_policy,
    delete_duty_becomes_overdue,
    report_usage_recurs,
    corrupt_records_are_errors,
);

// ---- redb only ----

#[test]
fn restart_keeps_counts_and_duties() {
    let mut b = Backend::redb();
    let counted = agreement(COUNTED);
    let dutiful = agreement_for(
        &consumer(),
        "permit use when purpose isA grid duty delete(within 1d), report-usage(every 7d);",
        T0 + 7,
    );
    let (id, before) = {
        let e = env(&b);
        let id = e.agreements.insert(counted.clone());
        for _ in 0..40 {
            e.guard.check_use(&id, Action::Read, &planning()).unwrap();
        }
        let d = e.agreements.insert(dutiful.clone());
        e.guard
            .register(&dutiful, Timestamp::from_millis(T0))
            .unwrap();
        e.guard
            .fulfil(&d, 1, Timestamp::from_millis(T0 + DAY_MS))
            .unwrap();
        e.guard.check_use(&d, Action::Read, &planning()).unwrap();
        e.guard.mark_deleted(&d).unwrap();
        (
            id,
            e.guard
                .duties(Timestamp::from_millis(T0 + 2 * DAY_MS))
                .unwrap(),
        )
    };
    b.reopen();
    let e = env(&b);
    e.agreements.insert(counted);
    let d = e.agreements.insert(dutiful.clone());
    assert_eq!(e.guard.uses(&id).unwrap(), 40);
    assert_eq!(e.guard.uses(&d).unwrap(), 1);
    assert_eq!(
        e.guard
            .duties(Timestamp::from_millis(T0 + 2 * DAY_MS))
            .unwrap(),
        before
    );
    assert_eq!(before.len(), 2);
    assert_eq!(before[0].state, DutyState::Fulfilled);
    assert_eq!(
        before[1].due,
        Some(Timestamp::from_millis(T0 + 7 + 14 * DAY_MS))
    );
    assert_eq!(
        e.guard.next_deadline().unwrap(),
        Some(Timestamp::from_millis(T0 + 7 + 14 * DAY_MS))
    );
    assert!(!e
        .guard
        .register(&dutiful, Timestamp::from_millis(T0 + DAY_MS))
        .unwrap());
    assert_eq!(
        e.guard
            .check_use(&d, Action::Read, &planning())
            .unwrap_err()
            .code(),
        "guard.deleted"
    );
    // The count goes on from 40 to exactly 100.
    let mut n = 40;
    while let Ok(g) = e.guard.check_use(&id, Action::Read, &planning()) {
        n += 1;
        assert_eq!(g.use_number, n);
    }
    assert_eq!(n, 100);
    assert_eq!(e.guard.uses(&id).unwrap(), 100);
}

#[test]
fn facts_from_a_credential() {
    use tds_identity::{Admission, Authority, Role};
    let c = consumer();
    let mut authority = Authority::new("Authority", SigningKey::from_seed(&[200; 32])).unwrap();
    let signed = authority
        .admit(
            &Admission {
                subject_key: c.public_key(),
                name: "Consumer".into(),
                sectors: vec!["power".parse().unwrap()],
                roles: vec![Role::Consumer],
                jurisdiction: "CN-SX".parse().unwrap(),
                not_before: Timestamp::from_millis(T0 - DAY_MS),
                not_after: Timestamp::from_millis(T0 + DAY_MS),
            },
            Timestamp::from_millis(T0 - DAY_MS),
        )
        .unwrap();
    let f = ConsumerFacts::from_credential(&signed);
    let mut expected = facts();
    expected.location = None;
    assert_eq!(f, expected);
}

#[test]
fn a_failed_count_is_never_granted_and_never_given_back() {
    let store = Arc::new(FullStore::new(Arc::new(MemoryStore::new())));
    let agreements = Arc::new(MemoryAgreements::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let guard = UsageGuard::new(store.clone(), agreements.clone(), clock, facts());
    let id = agreements.insert(agreement(
        "permit use when purpose isA grid and count lteq 3;",
    ));
    assert_eq!(
        guard
            .check_use(&id, Action::Read, &planning())
            .unwrap()
            .use_number,
        1
    );
    store.set_full(true);
    let d = guard.check_use(&id, Action::Read, &planning()).unwrap_err();
    assert_eq!(d.code(), "kv.io");
    assert!(matches!(d, UseDenied::Failed(_)));
    assert!(store.refused() >= 1, "the guard wrote nothing");
    store.set_full(false);
    assert_eq!(guard.uses(&id).unwrap(), 1);
    // Whether the failed commit was applied is not known to the guard: its use stays
    // reserved, so the limit can only be reached early, never passed.
    assert_eq!(
        guard
            .check_use(&id, Action::Read, &planning())
            .unwrap()
            .use_number,
        3
    );
    let d = guard.check_use(&id, Action::Read, &planning()).unwrap_err();
    assert!(refused_for_count(&d), "{d}");
    assert_eq!(guard.uses(&id).unwrap(), 2);
    // A new guard (a restart) counts from the store again.
    let again = UsageGuard::new(
        store,
        agreements,
        Arc::new(ManualClock::new(Timestamp::from_millis(T0))),
        facts(),
    );
    assert_eq!(
        again
            .check_use(&id, Action::Read, &planning())
            .unwrap()
            .use_number,
        3
    );
    assert!(again.check_use(&id, Action::Read, &planning()).is_err());
}

/// A memory store whose async commits wait until the test applies them.
#[derive(Default)]
struct Parked {
    inner: MemoryStore,
    parked: std::sync::Mutex<Vec<(Batch, tds_connector::store::Completion)>>,
}

impl Parked {
    /// Applies and acknowledges the parked commits.
    fn release(&self) {
        for (batch, done) in std::mem::take(&mut *self.parked.lock().unwrap()) {
            done.complete(self.inner.commit(batch));
        }
    }
}

impl Store for Parked {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }

    fn scan_prefix_after(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan_prefix_after(table, prefix, after, limit)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.commit(batch)
    }

    fn commit_async(&self, batch: Batch) -> CommitFuture {
        let (fut, done) = CommitFuture::pending();
        self.parked.lock().unwrap().push((batch, done));
        fut
    }

    fn counter_add(&self, table: Table, key: &[u8], delta: u64) -> Result<u64, StoreError> {
        self.inner.counter_add(table, key, delta)
    }
}

#[test]
fn a_cancelled_async_check_keeps_its_use_reserved() {
    use std::future::Future;
    let store = Arc::new(Parked::default());
    let agreements = Arc::new(MemoryAgreements::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let guard = UsageGuard::new(store.clone(), agreements.clone(), clock, facts());
    let id = agreements.insert(agreement(
        "permit use when purpose isA grid and count lteq 2;",
    ));
    // Decided and reserved, its count queued; then the caller goes away.
    let declared = planning();
    let mut fut = Box::pin(guard.check_use_async(&id, Action::Read, &declared));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    drop(fut);
    // The queued count has not landed yet; the next use must still count it.
    assert_eq!(guard.uses(&id).unwrap(), 0);
    assert_eq!(
        guard
            .check_use(&id, Action::Read, &planning())
            .unwrap()
            .use_number,
        2
    );
    store.release();
    assert_eq!(guard.uses(&id).unwrap(), 2);
    let d = guard.check_use(&id, Action::Read, &planning()).unwrap_err();
    assert!(refused_for_count(&d), "{d}");
}

#[test]
fn deleted_before_registration() {
    let b = Backend::memory();
    let e = env(&b);
    let a = agreement("permit use when purpose isA grid duty delete(within 1d);");
    let id = e.agreements.insert(a.clone());
    e.guard.mark_deleted(&id).unwrap();
    assert!(e.guard.register(&a, Timestamp::from_millis(T0)).unwrap());
    let d = e.guard.duties_of(&id, Timestamp::from_millis(T0)).unwrap();
    assert_eq!(d[0].state, DutyState::Fulfilled);
    assert_eq!(e.guard.next_deadline().unwrap(), None);
    assert_eq!(
        e.guard
            .check_use(&id, Action::Read, &planning())
            .unwrap_err()
            .code(),
        "guard.deleted"
    );
}
