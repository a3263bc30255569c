//! Group commit: appenders queue framed records and wait; the committer thread writes the
//! whole queue, calls `fdatasync` once and wakes the appenders of that batch. Whoever
//! writes `events` (the committer, or a marker, flush or checkpoint write) holds the
//! leader role, so only one party does I/O on it at a time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tds_core::merkle;

use super::file::{Shared, State, Waiter};
use super::format::{
    frame, Header, CHECKPOINT_DOMAIN, EVENTS, EVENT_DOMAIN, MAX_RECORD, PREALLOCATE, RECORD_HEADER,
};
use super::sync::{lock, wait, MutexGuard};
use super::{io, StoreError};

/// Zeros written ahead of the records, a megabyte at a time.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Fails the store when a panic unwinds out of log I/O (a bug in a
/// [`Storage`](crate::storage::Storage) implementation, say): every waiting appender is
/// woken to see the failure, and the leader role is given up if this party held it.
/// Nobody waits for a party that is gone. Declared before any lock guard of the same
/// function, so it runs after they are dropped.
pub(super) struct FailOnPanic<'a> {
    shared: &'a Shared,
    pub(super) holds_leader: bool,
}

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut st = lock(&self.shared.state);
        if st.failed.is_none() {
            st.failed = Some("a panic during log I/O; reopen the log".into());
        }
        if self.holds_leader {
            st.leader = false;
        }
        let all = std::mem::take(&mut st.waiters);
        drop(st);
        all.into_iter().for_each(|(_, w)| w.wake());
        self.shared.cond.notify_all();
        self.shared.work.notify_all();
    }
}

/// The leader role held by a party that does no log I/O under it: given up when dropped.
struct Leading<'a>(&'a Shared);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.0.state);
        self.0.release_leader(&mut st);
    }
}

/// Writes `len` zero bytes at `at`.
fn write_zeros(f: &dyn crate::storage::StorageFile, at: u64, len: u64) -> std::io::Result<()> {
    let mut pos = at;
    let end = at + len;
    while pos < end {
        let n = (end - pos).min(ZEROS.len() as u64);
        // `n` is at most ZEROS.len(), so the prefix always exists.
        let (z, _) = ZEROS.split_at(n as usize);
        f.write_all_at(z, pos)?;
        pos += n;
    }
    Ok(())
}

impl Shared {
    /// A guard that fails the store if a panic unwinds past it (see [`FailOnPanic`]).
    pub(super) fn fail_on_panic(&self) -> FailOnPanic<'_> {
        FailOnPanic {
            shared: self,
            holds_leader: false,
        }
    }

    /// Waits for the leader role and takes it.
    pub(super) fn become_leader(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let mut st = lock(&self.state);
        loop {
            if let Some(f) = &st.failed {
                return Err(StoreError::Failed(f.clone()));
            }
            if !st.leader {
                st.leader = true;
                return Ok(st);
            }
            st.leader_waiters += 1;
            st = wait(&self.cond, st);
            st.leader_waiters -= 1;
        }
    }

    /// Gives up the leader role: wakes the committer and anyone waiting to lead.
    pub(super) fn release_leader(&self, st: &mut State) {
        st.leader = false;
        if st.leader_waiters > 0 {
            self.cond.notify_all();
        }
        self.work.notify_one();
    }

    /// The committer gives up the leader role (it waits for work itself, so only those
    /// waiting to lead are told).
    fn end_commit(&self, st: &mut State, guard: &mut FailOnPanic<'_>) {
        st.leader = false;
        guard.holds_leader = false;
        if st.leader_waiters > 0 {
            self.cond.notify_all();
        }
    }

    /// Writes a marker to its slot and syncs it; leader only.
    pub(super) fn write_header(&self, h: &Header) -> Result<(), StoreError> {
        let events = &self.files.events;
        events
            .write_all_at(&h.encode(), h.slot())
            .map_err(io(EVENTS))?;
        events.sync_data().map_err(io(EVENTS))
    }

    /// Writes a commit marker covering everything durable and syncs it, so no acknowledged
    /// record is left after the marker (called on open, after checkpoints and on drop).
    pub(super) fn sync_marker(&self) -> Result<(), StoreError> {
        if !self.write {
            return Err(StoreError::ReadOnly);
        }
        let mut guard = self.fail_on_panic();
        let mut st = self.become_leader()?;
        guard.holds_leader = true;
        let mut h = st.header;
        if h.committed_entries == st.size && h.committed_bytes == st.end {
            self.release_leader(&mut st);
            guard.holds_leader = false;
            return Ok(());
        }
        h.seq += 1;
        h.committed_entries = st.size;
        h.committed_bytes = st.end;
        drop(st);
        let r = self.write_header(&h);
        let mut st = lock(&self.state);
        self.release_leader(&mut st);
        guard.holds_leader = false;
        match r {
            Ok(()) => {
                st.header = h;
                Ok(())
            }
            Err(e) => {
                st.failed = Some(tds_core::code::full_message(&e));
                Err(e)
            }
        }
    }

    /// The durable size and checkpoints, with `at_cut` run while this party holds the
    /// leader role (see [`LogStore::cut`](super::LogStore::cut)).
    pub(super) fn cut(&self, at_cut: &mut dyn FnMut()) -> Result<super::LogCut, StoreError> {
        let st = self.become_leader()?;
        // Released however `at_cut` ends, a panic included: it does no log I/O, so a
        // panic in it is no reason to fail the store.
        let leading = Leading(self);
        let cut = super::LogCut {
            size: st.size,
            checkpoints: st.checkpoints.clone(),
        };
        drop(st);
        at_cut();
        drop(leading);
        Ok(cut)
    }

    /// Cuts the zeros preallocated after the last record off `events` (a copy that is
    /// archived: a reader stops at the file's end as at a zero length, and a writer
    /// extends the file again before its next batch).
    pub(super) fn trim_events(&self) -> Result<(), StoreError> {
        if !self.write {
            return Err(StoreError::ReadOnly);
        }
        let st = self.become_leader()?;
        let leading = Leading(self);
        let end = st.end;
        drop(st);
        let events = &self.files.events;
        events
            .set_len(end)
            .and_then(|()| events.sync_data())
            .map_err(io(EVENTS))?;
        lock(&self.state).alloc = end;
        drop(leading);
        Ok(())
    }

    /// Writes the derived files and a fresh commit marker now.
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        if !self.write {
            return Err(StoreError::ReadOnly);
        }
        let mut guard = self.fail_on_panic();
        let st = self.become_leader()?;
        guard.holds_leader = true;
        let mut st = self.flush_derived(st);
        self.release_leader(&mut st);
        guard.holds_leader = false;
        if let Some(f) = &st.failed {
            return Err(StoreError::Failed(f.clone()));
        }
        drop(st);
        self.sync_marker()
    }

    /// The committer thread: writes and syncs the queue in batches until shutdown, then
    /// wakes the appenders of each batch.
    pub(super) fn run_committer(&self) {
        let mut guard = self.fail_on_panic();
        let mut st = lock(&self.state);
        loop {
            if st.failed.is_some() && !st.waiters.is_empty() {
                // Nothing will be committed again: every waiter learns of the failure.
                let all = std::mem::take(&mut st.waiters);
                drop(st);
                all.into_iter().for_each(|(_, w)| w.wake());
                st = lock(&self.state);
                continue;
            }
            let has_work = st.failed.is_none() && !st.queue_leaves.is_empty();
            if !has_work || st.leader {
                if st.shutdown && !has_work {
                    return;
                }
                st.committer_idle = true;
                st = wait(&self.work, st);
                st.committer_idle = false;
                continue;
            }
            st.leader = true;
            guard.holds_leader = true;
            st = self.commit(st);
            // Acknowledge the batch before any flush of the derived files.
            let size = st.size;
            let mut ready = Vec::new();
            for (need, w) in std::mem::take(&mut st.waiters) {
                if need <= size {
                    ready.push(w);
                } else {
                    st.waiters.push((need, w));
                }
            }
            let flush = st.failed.is_none() && size - st.header.derived_entries >= self.flush_every;
            if !flush {
                self.end_commit(&mut st, &mut guard);
            }
            drop(st);
            ready.into_iter().for_each(Waiter::wake);
            st = lock(&self.state);
            if flush {
                st = self.flush_derived(st);
                self.end_commit(&mut st, &mut guard);
            }
        }
    }

    /// Writes the queue as one batch; called by the leader with the lock held.
    fn commit<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let batch = std::mem::take(&mut st.queue);
        let leaves = std::mem::take(&mut st.queue_leaves);
        let offsets = std::mem::take(&mut st.queue_offsets);
        if leaves.is_empty() {
            return st;
        }
        let start = st.end;
        let end = start + batch.len() as u64;
        let mut h = st.header;
        h.seq += 1;
        h.committed_entries = st.size;
        h.committed_bytes = st.end;
        let alloc = st.alloc;
        let new_alloc = if end > alloc {
            end.div_ceil(PREALLOCATE) * PREALLOCATE + PREALLOCATE
        } else {
            alloc
        };
        drop(st);
        let events = &self.files.events;
        let r = (|| -> Result<(), StoreError> {
            if new_alloc > alloc {
                write_zeros(events.as_ref(), alloc, new_alloc - alloc).map_err(io(EVENTS))?;
            }
            events
                .write_all_at(&h.encode(), h.slot())
                .map_err(io(EVENTS))?;
            events.write_all_at(&batch, start).map_err(io(EVENTS))?;
            events.sync_data().map_err(io(EVENTS))
        })();
        let mut st = lock(&self.state);
        match r {
            Ok(()) => {
                for (leaf, off) in leaves.into_iter().zip(offsets) {
                    if let Err(e) = st.push_leaf(leaf) {
                        st.failed = Some(tds_core::code::full_message(&e));
                        return st;
                    }
                    st.idx_mem.push(off);
                }
                st.end = end;
                st.header = h;
                st.alloc = new_alloc;
                self.durable.store(st.size, Ordering::Release);
            }
            Err(e) => st.failed = Some(tds_core::code::full_message(&e)),
        }
        st
    }

    /// Queues `records` for the committer; returns the index of the first and the size
    /// at which all are durable. `waiter` is woken once they are.
    fn enqueue(&self, records: &[&[u8]], waiter: Option<Waiter>) -> Result<(u64, u64), StoreError> {
        if !self.write {
            return Err(StoreError::ReadOnly);
        }
        let mut leaves = Vec::with_capacity(records.len());
        for r in records {
            if r.is_empty() || r.len() > MAX_RECORD {
                return Err(StoreError::RecordSize(r.len()));
            }
            leaves.push(merkle::leaf_hash(r));
        }
        let mut st = lock(&self.state);
        if let Some(f) = &st.failed {
            return Err(StoreError::Failed(f.clone()));
        }
        let first = st.next_index;
        let mut q = std::mem::take(&mut st.queue);
        for (r, leaf) in records.iter().zip(leaves) {
            let me = st.next_index;
            st.next_index += 1;
            let at = st.next_offset;
            st.next_offset += RECORD_HEADER + r.len() as u64;
            frame(&mut q, EVENT_DOMAIN, me, r, &leaf);
            st.queue_leaves.push(leaf);
            st.queue_offsets.push(at);
        }
        st.queue = q;
        let last = st.next_index;
        if let Some(w) = waiter {
            st.waiters.push((last, w));
        }
        if st.committer_idle {
            st.committer_idle = false;
            self.work.notify_one();
        }
        Ok((first, last))
    }

    /// Appends `records` from a thread: parks it until they are durable.
    pub(super) fn append_many(&self, records: &[&[u8]]) -> Result<u64, StoreError> {
        let me = super::sync::thread::current();
        let (first, last) = self.enqueue(records, Some(Waiter::Thread(me)))?;
        loop {
            if self.durable.load(Ordering::Acquire) >= last {
                return Ok(first);
            }
            super::sync::thread::park();
            if self.durable.load(Ordering::Acquire) >= last {
                return Ok(first);
            }
            // Woken without the records durable: a failure, or a spurious wake-up.
            let st = lock(&self.state);
            if st.size >= last {
                return Ok(first);
            }
            if let Some(f) = &st.failed {
                return Err(StoreError::Failed(f.clone()));
            }
        }
    }

    /// Appends `records` from a task: queues them now, resolves once they are durable.
    pub(super) fn append_async(&self, records: &[&[u8]]) -> Appending<'_> {
        match self.enqueue(records, None) {
            Ok((first, last)) => Appending {
                shared: Some(self),
                first,
                last,
                error: None,
                id: None,
            },
            Err(e) => Appending {
                shared: None,
                first: 0,
                last: 0,
                error: Some(e),
                id: None,
            },
        }
    }

    /// Appends a checkpoint note durably (after a marker covering everything durable).
    pub(super) fn add_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        if !self.write {
            return Err(StoreError::ReadOnly);
        }
        if note.is_empty() || note.len() > MAX_RECORD {
            return Err(StoreError::RecordSize(note.len()));
        }
        let ckpt = self
            .files
            .checkpoints
            .clone()
            .ok_or_else(|| super::corrupt("checkpoints", "not open for writing"))?;
        self.sync_marker()?;
        let mut guard = self.fail_on_panic();
        let mut st = self.become_leader()?;
        guard.holds_leader = true;
        let n = st.checkpoints.len() as u64;
        let at = st.checkpoints_end;
        let mut rec = Vec::with_capacity(note.len() + RECORD_HEADER as usize);
        frame(
            &mut rec,
            CHECKPOINT_DOMAIN,
            n,
            note,
            &merkle::leaf_hash(note),
        );
        drop(st);
        let r = ckpt
            .write_all_at(&rec, at)
            .and_then(|()| ckpt.sync_data())
            .map_err(io("checkpoints"))
            .and_then(|()| self.files.storage.sync_dir().map_err(io(".")));
        st = lock(&self.state);
        self.release_leader(&mut st);
        guard.holds_leader = false;
        match r {
            Ok(()) => {
                st.checkpoints.push(note.to_vec());
                st.checkpoints_end = at + rec.len() as u64;
                Ok(())
            }
            Err(e) => {
                st.failed = Some(tds_core::code::full_message(&e));
                Err(e)
            }
        }
    }
}

/// The future of [`LogStore::append_durable`](super::LogStore::append_durable) on a
/// [`FileStore`](super::FileStore): the records are queued when it is made; it resolves
/// to the index of the first once all are durable.
#[must_use = "the records are queued already; await this to know they are durable"]
pub struct Appending<'a> {
    shared: Option<&'a Shared>,
    first: u64,
    last: u64,
    error: Option<StoreError>,
    /// Set once the future has registered a waker.
    id: Option<u64>,
}

impl Future for Appending<'_> {
    type Output = Result<u64, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(sh) = this.shared else {
            return Poll::Ready(Err(this.error.take().unwrap_or_else(|| {
                StoreError::Failed("append polled after it ended".into())
            })));
        };
        if sh.durable.load(Ordering::Acquire) >= this.last {
            this.shared = None;
            return Poll::Ready(Ok(this.first));
        }
        let mut st = lock(&sh.state);
        if st.size >= this.last {
            this.shared = None;
            return Poll::Ready(Ok(this.first));
        }
        if let Some(f) = &st.failed {
            this.shared = None;
            return Poll::Ready(Err(StoreError::Failed(f.clone())));
        }
        if let Some(id) = this.id {
            // Polled again: update its waker rather than adding a second one.
            for (_, w) in st.waiters.iter_mut() {
                if let Waiter::Task(i, waker) = w {
                    if *i == id {
                        waker.clone_from(cx.waker());
                        return Poll::Pending;
                    }
                }
            }
        }
        let id = st.next_task;
        st.next_task += 1;
        this.id = Some(id);
        st.waiters
            .push((this.last, Waiter::Task(id, cx.waker().clone())));
        Poll::Pending
    }
}
