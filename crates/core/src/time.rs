//! Time as TDS carries it: `u64` milliseconds since the Unix epoch, UTC.
//!
//! Protocol code never reads the system clock itself; it is handed a [`Clock`], so tests
//! drive time explicitly with a [`ManualClock`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Milliseconds since 1970-01-01T00:00:00Z. Encoded as a CBOR unsigned integer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

/// Milliseconds in one day.
pub const DAY_MS: u64 = 86_400_000;

impl Timestamp {
    /// The epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From milliseconds since the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// From whole seconds since the epoch (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(&self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch.
    pub const fn as_secs(&self) -> u64 {
        self.0 / 1000
    }

    /// `self + ms`, or `None` on overflow.
    pub const fn checked_add_millis(&self, ms: u64) -> Option<Timestamp> {
        match self.0.checked_add(ms) {
            Some(v) => Some(Timestamp(v)),
            None => None,
        }
    }

    /// `self + ms`, saturating at the largest timestamp.
    pub const fn saturating_add_millis(&self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn millis_since(&self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The system clock now.
    pub fn now() -> Timestamp {
        SystemClock.now()
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2027-03-01T00:00:00.000Z`.
    pub fn to_rfc3339(&self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let fmt = time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
                );
                t.format(&fmt).unwrap_or_else(|_| format!("@{}ms", self.0))
            }
            Err(_) => format!("@{}ms", self.0),
        }
    }

    /// Parses RFC 3339 (`2027-03-01T00:00:00Z`, with or without fraction or offset).
    /// Times before the epoch are refused.
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, TimeError> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| TimeError::Parse(s.chars().take(64).collect(), e.to_string()))?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        u64::try_from(ms)
            .map(Timestamp)
            .map_err(|_| TimeError::BeforeEpoch)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Why a time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// Not RFC 3339.
    #[error("time {0:?} is not RFC 3339: {1}")]
    Parse(String, String),
    /// Before 1970.
    #[error("time is before the Unix epoch")]
    BeforeEpoch,
}

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // A system clock set before 1970 reads as the epoch: every validity window then
        // fails closed (not yet valid), rather than the process failing.
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to, for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock standing at `t`.
    pub fn new(t: Timestamp) -> Self {
        ManualClock(AtomicU64::new(t.0))
    }

    /// Sets the time.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_add(ms))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2027-03-01T00:00:00Z").unwrap();
        assert_eq!(t.as_millis(), 1_803_859_200_000);
        assert_eq!(t.to_rfc3339(), "2027-03-01T00:00:00.000Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
    }

    #[test]
    fn rfc3339_refuses_garbage_and_pre_epoch() {
        assert!(matches!(
            Timestamp::parse_rfc3339("yesterday"),
            Err(TimeError::Parse(..))
        ));
        assert_eq!(
            Timestamp::parse_rfc3339("1969-12-31T23:59:59Z"),
            Err(TimeError::BeforeEpoch)
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::from_secs(10));
        assert_eq!(c.now(), Timestamp::from_millis(10_000));
        c.advance(5);
        assert_eq!(c.now().as_millis(), 10_005);
        c.set(Timestamp::EPOCH);
        assert_eq!(c.now(), Timestamp::EPOCH);
    }

    #[test]
    fn encodes_as_unsigned_integer() {
        let b = crate::cbor::encode(&Timestamp::from_millis(1000)).unwrap();
        assert_eq!(b, vec![0x19, 0x03, 0xe8]);
    }
}
