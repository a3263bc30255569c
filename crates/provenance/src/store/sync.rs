//! The synchronisation the file store's committer and appenders share: `std`'s, or
//! shuttle's under `cfg(test)`, so the unit tests can run the same code under schedules
//! a scheduler picks and replays (decision 0009).

#[cfg(not(test))]
pub(crate) use std::sync::atomic::AtomicU64;
#[cfg(not(test))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(test))]
pub(crate) use std::thread;

#[cfg(test)]
pub(crate) use shuttle::sync::atomic::AtomicU64;
#[cfg(test)]
pub(crate) use shuttle::sync::{Condvar, Mutex, MutexGuard};
#[cfg(test)]
pub(crate) use shuttle::thread;

/// Locks `m`. A panic while it was held does not poison the store: every holder of the
/// state lock leaves it consistent before anything that can panic, and a panic in I/O
/// fails the store through `FailOnPanic` instead.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits on `c` (see [`lock`] on poisoning).
pub(crate) fn wait<'a, T>(c: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    c.wait(g).unwrap_or_else(std::sync::PoisonError::into_inner)
}
