//! Executor starvation: the runtime's threads waiting runnable for a CPU. Said once per
//! interval for the process, not once per request: it is the host's state, not a handler's.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The shortest interval between two starvation reports.
pub(crate) const REPORT_EVERY: Duration = Duration::from_mins(1);

/// A starvation report: how long the runtime's threads waited for a CPU, over how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Starved {
    pub(crate) waited: Duration,
    pub(crate) over: Duration,
}

/// The current interval, shared by every clone of a layer.
#[derive(Debug)]
pub(crate) struct Starvation {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    since: Instant,
    /// Run-queue wait seen in long polls since `since`.
    waited: Duration,
    /// The process-wide run-queue wait (every polling thread's) at `since`, where measured.
    total_at_since: Option<Duration>,
    last_report: Option<Instant>,
}

impl Default for Starvation {
    fn default() -> Self {
        Self {
            window: Mutex::new(Window {
                since: Instant::now(),
                waited: Duration::ZERO,
                total_at_since: crate::cpu::executor_cpu_wait(),
                last_report: None,
            }),
        }
    }
}

impl Starvation {
    /// Counts `waited` (run-queue wait in a request's long polls). Returns a report when the
    /// waits since the last one reach `threshold` and no report was made in the last
    /// [`REPORT_EVERY`]: the first as soon as starvation shows, then at most one a minute.
    pub(crate) fn observe(&self, waited: Duration, threshold: Duration) -> Option<Starved> {
        self.observe_at(
            waited,
            threshold,
            Instant::now(),
            crate::cpu::executor_cpu_wait(),
        )
    }

    fn observe_at(
        &self,
        waited: Duration,
        threshold: Duration,
        now: Instant,
        total: Option<Duration>,
    ) -> Option<Starved> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.waited = window.waited.saturating_add(waited);
        let due = window
            .last_report
            .is_none_or(|last| now.saturating_duration_since(last) >= REPORT_EVERY);
        if !due || window.waited < threshold {
            return None;
        }
        // The process-wide figure counts every polling thread's waits, not only the part that
        // fell inside long polls.
        let whole = match (total, window.total_at_since) {
            (Some(now_total), Some(then)) => now_total.saturating_sub(then).max(window.waited),
            _ => window.waited,
        };
        let starved = Starved {
            waited: whole,
            over: now.saturating_duration_since(window.since),
        };
        *window = Window {
            since: now,
            waited: Duration::ZERO,
            total_at_since: total,
            last_report: Some(now),
        };
        Some(starved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_once_the_waits_reach_the_threshold_then_at_most_once_a_minute() {
        let starvation = Starvation::default();
        let start = Instant::now();
        let ms = Duration::from_millis;
        let threshold = ms(10);
        assert_eq!(starvation.observe_at(ms(4), threshold, start, None), None);
        let first = starvation
            .observe_at(ms(7), threshold, start + ms(500), None)
            .expect("11 ms of waits reach 10 ms");
        assert_eq!(first.waited, ms(11));
        // Within the minute: counted, not reported.
        assert_eq!(
            starvation.observe_at(ms(500), threshold, start + ms(30_000), None),
            None
        );
        let second = starvation
            .observe_at(ms(5), threshold, start + ms(60_500), None)
            .expect("a minute later");
        assert_eq!(second.waited, ms(505));
        assert_eq!(second.over, ms(60_000));
        // The process-wide figure wins when it is larger.
        let starvation = Starvation::default();
        let total_then = starvation
            .window
            .lock()
            .unwrap()
            .total_at_since
            .unwrap_or_default();
        let report = starvation
            .observe_at(ms(10), threshold, start, Some(total_then + ms(250)))
            .expect("due");
        assert_eq!(report.waited, ms(250));
    }
}
