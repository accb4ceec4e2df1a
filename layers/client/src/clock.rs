//! The clock of the books kept per second (the retry budget's slots, the breaker's window).
//!
//! Those books are booked on every call, and their buckets are a second long (a tenth of a
//! window): the precise monotonic clock (~30 ns a read on these machines, the largest single
//! cost of a closed breaker and of a retry's deposit) is more than they need. The kernel's
//! coarse clock is read in ~9 ns, to its tick (1–10 ms).

use std::time::Duration;

use tokio::time::Instant;

/// A coarse clock, started when made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CoarseClock {
    start: coarsetime::Instant,
    /// The precise clock at the same moment: [`CoarseClock::now`] answers on its timeline, so
    /// its readings compare with `Instant::now()` within a tick.
    start_instant: Instant,
}

impl CoarseClock {
    pub(crate) fn new() -> Self {
        Self {
            start: coarsetime::Instant::now(),
            start_instant: Instant::now(),
        }
    }

    /// When the clock was made, on `Instant::now()`'s timeline.
    pub(crate) fn start(&self) -> Instant {
        self.start_instant
    }

    /// Time since the clock was made, to the kernel's tick.
    pub(crate) fn elapsed(&self) -> Duration {
        coarsetime::Instant::now().duration_since(self.start).into()
    }

    /// Now, to the kernel's tick, on `Instant::now()`'s timeline.
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
        std::thread::sleep(Duration::from_millis(30));
        let coarse = clock.now();
        let precise = Instant::now();
        let apart = if coarse > precise {
            coarse - precise
        } else {
            precise - coarse
        };
        assert!(apart < Duration::from_millis(25), "{apart:?} apart");
        assert!(clock.elapsed() >= Duration::from_millis(20));
    }
}
