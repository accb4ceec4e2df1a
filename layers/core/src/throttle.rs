//! Failures of a backend (Redis, a database) counted, and said at most once an interval: a
//! sick backend makes one WARN a minute, with how many failed since, not one per request.
//!
//! ```
//! use std::time::Duration;
//! use vitals_core::throttle::Throttle;
//!
//! let redis = Throttle::new(Duration::from_mins(1));
//! assert_eq!(redis.failed(), Some(1), "the first failure is said");
//! assert_eq!(redis.failed(), None, "the next ones wait for the minute");
//! assert_eq!(redis.failures(), 2);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Counts failures and says when one should be logged; see the [module documentation](self).
#[derive(Debug)]
pub struct Throttle {
    interval: u64,
    failures: AtomicU64,
    said: AtomicU64,
    said_at: AtomicU64,
}

impl Throttle {
    /// Says at most once every `interval` (whole seconds, at least one).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval: interval.as_secs().max(1),
            failures: AtomicU64::new(0),
            said: AtomicU64::new(0),
            said_at: AtomicU64::new(0),
        }
    }

    /// Counts one failure: `Some(failures since it was last said)` when it is time to say so
    /// (the first failure, then at most once an interval), else `None`.
    pub fn failed(&self) -> Option<u64> {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
            .max(1);
        let last = self.said_at.load(Ordering::Relaxed);
        let due = last == 0 || now >= last.saturating_add(self.interval);
        if due
            && self
                .said_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let before = self.said.swap(failures, Ordering::Relaxed);
            return Some(failures.saturating_sub(before));
        }
        None
    }

    /// Failures since the start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_failures_are_all_counted_and_said_once() {
        let throttle = Throttle::new(Duration::from_mins(1));
        let said = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        if throttle.failed().is_some() {
                            said.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(throttle.failures(), 8_000);
        assert_eq!(said.load(Ordering::Relaxed), 1);
    }
}
