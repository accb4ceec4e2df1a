//! The clock of the books kept per bucket of time (the retry budget's one-second slots, the
//! breaker's window of ten buckets).
//!
//! Those books are booked on every call, and their buckets are coarse (a second for the budget,
//! a tenth of the window for the breaker: a second by default): the precise monotonic clock
//! (~30 ns a read on these machines, the largest single cost of a closed breaker and of a
//! retry's deposit) is more than they need. The kernel's coarse clock is read in ~9 ns, to its
//! tick (1–10 ms), which is then the resolution of a breaker's window and open time.
//!
//! It is the machine's clock: tokio's paused test clock (`tokio::time::pause`) does not move it.

use std::time::Duration;

use tokio::time::Instant;

/// A coarse clock, started when made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CoarseClock {
    start: coarsetime::Instant,
    /// `Instant::now()` at the same moment: [`CoarseClock::now`] answers as an `Instant` that
    /// compares with `Instant::now()` to within a tick (while tokio's clock is not paused).
    start_instant: Instant,
}

/// The coarse clock, read without writing coarsetime's process-wide cache of the last reading
/// (`Instant::now` stores it: a write every call of every thread would share one cache line).
fn coarse_now() -> coarsetime::Instant {
    coarsetime::Instant::now_without_cache_update()
}

impl CoarseClock {
    pub(crate) fn new() -> Self {
        Self {
            start: coarse_now(),
            start_instant: Instant::now(),
        }
    }

    /// When the clock was made, as an `Instant`.
    pub(crate) fn start(&self) -> Instant {
        self.start_instant
    }

    /// Time since the clock was made, to the kernel's tick.
    pub(crate) fn elapsed(&self) -> Duration {
        coarse_now().duration_since(self.start).into()
    }

    /// Now, to the kernel's tick, as an `Instant` counted from [`CoarseClock::start`].
    pub(crate) fn now(&self) -> Instant {
        self.start_instant + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_precise_clock_within_a_few_ticks() {
        let clock = CoarseClock::new();
        std::thread::sleep(Duration::from_millis(50));
        let coarse = clock.now();
        let precise = Instant::now();
        let apart = if coarse > precise {
            coarse - precise
        } else {
            precise - coarse
        };
        assert!(apart < Duration::from_millis(25), "{apart:?} apart");
        assert!(clock.elapsed() >= Duration::from_millis(25));
    }
}
