//! The committer's hand-off between appenders and the leader role, run under thread
//! schedules that shuttle chooses (uniformly at random, and by PCT, which finds any bug
//! of depth <= 3 with a known probability) and replays from a seed on failure. Under
//! `cfg(test)` the store's Mutex, Condvar, atomics and threads are shuttle's
//! (`sync.rs`); the storage is simulated. Decision 0009 says why shuttle and not loom.

use std::sync::Arc;

use shuttle::thread;

use super::{FileStore, LogStore, OpenOptions};
use crate::storage::{SimStorage, Storage};

/// Schedules per test: a few hundred by default, many more with `TDS_TEST_SCALE=full`.
fn iterations() -> usize {
    match std::env::var("TDS_TEST_SCALE").as_deref() {
        Ok("full") => 5_000,
        _ => 150,
    }
}

/// Two threads appending (one record, then two at once), one async task appending, and a
/// party taking the leader role for a marker, a checkpoint and a flush, all at once.
/// Whatever the schedule: nothing hangs (shuttle reports a deadlock), every append gets
/// its own index and reads back, the store's size counts them all, and after the store is
/// dropped and the power fails every acknowledged record is still there.
fn hand_off() {
    let sim = SimStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(sim.clone());
    let s =
        Arc::new(FileStore::open(storage.clone(), OpenOptions::writer().flush_every(64)).unwrap());
    let mut appenders = Vec::new();
    for t in 0..2u8 {
        let s = s.clone();
        appenders.push(thread::spawn(move || {
            let one = [b'a', t];
            let i = s.append(&one).unwrap();
            let two = [[b'b', t], [b'c', t]];
            let j = s.append_many(&[&two[0], &two[1]]).unwrap();
            vec![
                (i, one.to_vec()),
                (j, two[0].to_vec()),
                (j + 1, two[1].to_vec()),
            ]
        }));
    }
    {
        let s = s.clone();
        appenders.push(thread::spawn(move || {
            let r = b"task".to_vec();
            let i = shuttle::future::block_on(s.append_durable(&[&r])).unwrap();
            vec![(i, r)]
        }));
    }
    let leader = {
        let s = s.clone();
        thread::spawn(move || {
            s.sync_marker().unwrap();
            s.add_checkpoint(b"checkpoint").unwrap();
            s.flush().unwrap();
        })
    };
    let mut acked: Vec<(u64, Vec<u8>)> = appenders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    leader.join().unwrap();
    acked.sort();
    let indexes: Vec<u64> = acked.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        indexes,
        (0..7).collect::<Vec<_>>(),
        "each append has its own index"
    );
    assert_eq!(s.size(), 7);
    for (i, r) in &acked {
        assert_eq!(&s.read(*i).unwrap(), r);
    }
    assert_eq!(s.checkpoints().unwrap(), vec![b"checkpoint".to_vec()]);
    drop(s);
    sim.power_loss(7);
    let s = FileStore::open(storage, OpenOptions::reader()).unwrap();
    assert_eq!(s.size(), 7);
    for (i, r) in &acked {
        assert_eq!(&s.read(*i).unwrap(), r);
    }
}

#[test]
fn committer_hand_off_under_random_schedules() {
    shuttle::check_random(hand_off, iterations());
}

#[test]
fn committer_hand_off_under_pct_schedules() {
    shuttle::check_pct(hand_off, iterations(), 3);
}
