//! The breaker's books: its state and the recent calls' outcomes, as plain rules over the
//! time they are given (no clock read here, no I/O), so each rule is tested by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The sliding window is kept as this many buckets of equal length.
const BUCKETS: u32 = 10;

/// The breaker's settings, validated (see [`CircuitBreakerLayer`](super::CircuitBreakerLayer)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Settings {
    pub(crate) window: Duration,
    pub(crate) minimum_calls: u32,
    pub(crate) failure_ratio: f64,
    pub(crate) open_for: Duration,
    pub(crate) probes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            minimum_calls: 20,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(5),
            probes: 1,
        }
    }
}

impl Settings {
    /// Each setting brought into its range: a window of at least 10 ms, at least one call and
    /// one probe, a ratio in `[0.01, 1]` (NaN: the default).
    pub(crate) fn validated(self) -> Self {
        let failure_ratio = if self.failure_ratio.is_nan() {
            Self::default().failure_ratio
        } else {
            self.failure_ratio.clamp(0.01, 1.0)
        };
        Self {
            window: self.window.max(Duration::from_millis(10)),
            minimum_calls: self.minimum_calls.max(1),
            failure_ratio,
            open_for: self.open_for,
            probes: self.probes.max(1),
        }
    }
}

/// The state a breaker is in, as its handle reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; their outcomes are counted.
    Closed,
    /// The downstream failed too often: calls are refused without calling it.
    Open,
    /// The open time is over: a bounded number of probe calls go through; the first that
    /// succeeds closes the breaker, one that fails opens it again.
    HalfOpen,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32 },
}

/// What a call may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Go through, counted in the window.
    Call,
    /// Go through as one of the half-open probes.
    Probe,
    /// Refused; a probe may go in this long.
    Refuse(Duration),
}

/// A change of state worth saying once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Opened after `failures` of `calls` failed in the window.
    Opened { calls: u32, failures: u32 },
    /// A probe failed: open again, for the whole open time.
    Reopened,
    /// A probe succeeded.
    Closed,
}

/// The successful calls of the window's buckets, counted without the books' lock: a closed
/// breaker books a success with one atomic update (the books' lock is taken for failures,
/// probes and changes of state). Each bucket holds its epoch's low 32 bits and its count in one
/// word. (A bucket last written exactly 2³² epochs ago would count again: 49 days of a 10 ms
/// window with no call in that bucket — a stale count of successes, which can only make the
/// breaker slower to open.)
#[derive(Debug, Default)]
pub(crate) struct Successes {
    buckets: [AtomicU64; BUCKETS as usize],
}

impl Successes {
    /// One more success in `epoch`'s bucket. A bucket already on a later epoch (booked by a
    /// caller that read the clock later: this one was paused in between) is added to, never
    /// wiped — wiping it would lose the later epoch's successes and could open the breaker.
    pub(crate) fn add(&self, epoch: u64) {
        let bucket = &self.buckets[usize::try_from(epoch % u64::from(BUCKETS)).unwrap_or_default()];
        // The low 32 bits of the epoch (truncation meant).
        #[allow(clippy::cast_possible_truncation)]
        let tag = epoch as u32;
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let (held, count) = split(current);
            // `held` is ahead when `tag` is "before" it on the wrapping count.
            let (onto, count) = if held == tag || tag.wrapping_sub(held).cast_signed() < 0 {
                (held, count.saturating_add(1))
            } else {
                (tag, 1)
            };
            match bucket.compare_exchange_weak(
                current,
                (u64::from(onto) << 32) | u64::from(count),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// Successes in the window ending in `epoch`.
    fn in_window(&self, epoch: u64) -> u32 {
        #[allow(clippy::cast_possible_truncation)]
        let tag = epoch as u32;
        self.buckets
            .iter()
            .map(|bucket| split(bucket.load(Ordering::Relaxed)))
            .filter(|&(held, _)| tag.wrapping_sub(held) < BUCKETS)
            .fold(0_u32, |sum, (_, count)| sum.saturating_add(count))
    }

    pub(crate) fn clear(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
    }
}

/// A bucket's epoch tag and count.
fn split(bucket: u64) -> (u32, u32) {
    (
        u32::try_from(bucket >> 32).unwrap_or(u32::MAX),
        u32::try_from(bucket & u64::from(u32::MAX)).unwrap_or(u32::MAX),
    )
}

/// The window's bucket `since` (the time since the books began) falls in.
pub(crate) fn epoch(since: Duration, settings: &Settings) -> u64 {
    // In 64 bits (a 128-bit division costs tens of nanoseconds on every call): 584 years of
    // nanoseconds since the breaker was made before this saturates.
    let bucket =
        (u64::try_from(settings.window.as_nanos()).unwrap_or(u64::MAX) / u64::from(BUCKETS)).max(1);
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX) / bucket
}

/// The failed calls of one bucket (the successes are in [`Successes`]).
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    epoch: u64,
    failures: u32,
}

/// State and window of one breaker.
#[derive(Debug)]
pub(crate) struct Books {
    mode: Mode,
    origin: Instant,
    buckets: [Bucket; BUCKETS as usize],
    pub(crate) times_opened: u64,
    /// Bumped at every change of mode: an outcome booked against another generation than the
    /// one its call was admitted in (a slow call from before the breaker opened, a probe from
    /// an earlier half-open period) decides nothing.
    generation: u64,
}

impl Books {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            mode: Mode::Closed,
            origin: now,
            buckets: [Bucket::default(); BUCKETS as usize],
            times_opened: 0,
            generation: 0,
        }
    }

    /// The current generation (see the field).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The generation, while closed: a closed breaker admits calls without its lock.
    pub(crate) fn closed_generation(&self) -> Option<u64> {
        matches!(self.mode, Mode::Closed).then_some(self.generation)
    }

    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match self.mode {
            Mode::Closed => BreakerState::Closed,
            Mode::Open { until } if now < until => BreakerState::Open,
            Mode::Open { .. } | Mode::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go now.
    pub(crate) fn admit(&mut self, now: Instant, settings: &Settings) -> Admit {
        if let Mode::Open { until } = self.mode {
            if now < until {
                return Admit::Refuse(until - now);
            }
            self.mode = Mode::HalfOpen { in_flight: 0 };
            self.generation += 1;
        }
        match &mut self.mode {
            Mode::Closed => Admit::Call,
            Mode::HalfOpen { in_flight } if *in_flight < settings.probes => {
                *in_flight += 1;
                Admit::Probe
            }
            Mode::HalfOpen { .. } | Mode::Open { .. } => Admit::Refuse(Duration::ZERO),
        }
    }

    /// A call admitted as `admitted` in `generation` ended, failed or not; the successes of the
    /// window are in `successes`.
    pub(crate) fn record(
        &mut self,
        admitted: Admit,
        generation: u64,
        failed: bool,
        now: Instant,
        settings: &Settings,
        successes: &Successes,
    ) -> Option<Transition> {
        if generation != self.generation {
            // Admitted before the state changed: its outcome no longer decides anything.
            return None;
        }
        match (admitted, self.mode) {
            (Admit::Probe, Mode::HalfOpen { .. }) if failed => {
                self.open(now, settings, 1, 1, successes);
                Some(Transition::Reopened)
            }
            (Admit::Probe, Mode::HalfOpen { .. }) => {
                self.mode = Mode::Closed;
                self.generation += 1;
                self.buckets = [Bucket::default(); BUCKETS as usize];
                successes.clear();
                Some(Transition::Closed)
            }
            (Admit::Call, Mode::Closed) => {
                let epoch = self.epoch(now, settings);
                if !failed {
                    // A success never opens the breaker: the window's totals are not needed.
                    successes.add(epoch);
                    return None;
                }
                let slot = usize::try_from(epoch % u64::from(BUCKETS)).unwrap_or_default();
                let bucket = &mut self.buckets[slot];
                if bucket.epoch != epoch {
                    *bucket = Bucket {
                        epoch,
                        ..Bucket::default()
                    };
                }
                bucket.failures = bucket.failures.saturating_add(1);
                let (calls, failures) = self.totals(epoch, successes);
                let ratio = f64::from(failures) / f64::from(calls.max(1));
                (calls >= settings.minimum_calls && ratio >= settings.failure_ratio)
                    .then(|| self.open(now, settings, calls, failures, successes))
            }
            _ => None,
        }
    }

    /// A probe of `generation` ended without a verdict (dropped, or its readiness failed): its
    /// slot is free — if it still holds one (not a probe of an earlier half-open period).
    pub(crate) fn abandon_probe(&mut self, generation: u64) {
        if generation != self.generation {
            return;
        }
        if let Mode::HalfOpen { in_flight } = &mut self.mode {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// Calls and failures in the window ending at `now`.
    pub(crate) fn window(
        &self,
        now: Instant,
        settings: &Settings,
        successes: &Successes,
    ) -> (u32, u32) {
        self.totals(self.epoch(now, settings), successes)
    }

    fn open(
        &mut self,
        now: Instant,
        settings: &Settings,
        calls: u32,
        failures: u32,
        successes: &Successes,
    ) -> Transition {
        self.mode = Mode::Open {
            until: now.checked_add(settings.open_for).unwrap_or(now),
        };
        self.buckets = [Bucket::default(); BUCKETS as usize];
        successes.clear();
        self.times_opened += 1;
        self.generation += 1;
        Transition::Opened { calls, failures }
    }

    fn epoch(&self, now: Instant, settings: &Settings) -> u64 {
        epoch(now.saturating_duration_since(self.origin), settings)
    }

    fn totals(&self, epoch: u64, successes: &Successes) -> (u32, u32) {
        self.buckets
            .iter()
            .filter(|b| b.failures > 0 && b.epoch + u64::from(BUCKETS) > epoch)
            .fold(
                (successes.in_window(epoch), 0_u32),
                |(calls, failures), b| {
                    (
                        calls.saturating_add(b.failures),
                        failures.saturating_add(b.failures),
                    )
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            window: Duration::from_secs(10),
            minimum_calls: 4,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(5),
            probes: 2,
        }
    }

    #[test]
    fn opens_at_the_ratio_once_the_window_has_the_minimum_of_calls() {
        let s = settings();
        let t0 = Instant::now();
        let mut books = Books::new(t0);
        let ok = Successes::default();
        // Three failures: below the minimum of four calls.
        for _ in 0..3 {
            assert_eq!(books.admit(t0, &s), Admit::Call);
            assert_eq!(
                books.record(Admit::Call, books.generation(), true, t0, &s, &ok),
                None
            );
        }
        assert_eq!(books.state(t0), BreakerState::Closed);
        // The fourth call succeeds: 3 of 4 failed, but a success never opens it.
        assert_eq!(
            books.record(Admit::Call, books.generation(), false, t0, &s, &ok),
            None
        );
        let opened = books.record(Admit::Call, books.generation(), true, t0, &s, &ok);
        assert_eq!(
            opened,
            Some(Transition::Opened {
                calls: 5,
                failures: 4
            })
        );
        assert_eq!(books.state(t0), BreakerState::Open);
        assert_eq!(
            books.admit(t0 + Duration::from_secs(1), &s),
            Admit::Refuse(Duration::from_secs(4))
        );
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let s = settings();
        let t0 = Instant::now();
        let mut books = Books::new(t0);
        let ok = Successes::default();
        for _ in 0..3 {
            books.record(Admit::Call, books.generation(), true, t0, &s, &ok);
        }
        // Eleven seconds later the three failures are out of the 10 s window.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(books.window(later, &s, &ok), (0, 0));
        assert_eq!(
            books.record(Admit::Call, books.generation(), true, later, &s, &ok),
            None
        );
        assert_eq!(books.window(later, &s, &ok), (1, 1));
        // Within the window they add up.
        let soon = later + Duration::from_secs(2);
        for _ in 0..2 {
            books.record(Admit::Call, books.generation(), false, soon, &s, &ok);
        }
        assert_eq!(
            books.record(Admit::Call, books.generation(), true, soon, &s, &ok),
            Some(Transition::Opened {
                calls: 4,
                failures: 2
            })
        );
    }

    #[test]
    fn half_open_lets_the_probes_through_and_the_first_verdict_decides() {
        let s = settings();
        let t0 = Instant::now();
        let mut books = Books::new(t0);
        let ok = Successes::default();
        for _ in 0..4 {
            books.record(Admit::Call, books.generation(), true, t0, &s, &ok);
        }
        let after = t0 + Duration::from_secs(5);
        assert_eq!(books.state(after), BreakerState::HalfOpen);
        assert_eq!(books.admit(after, &s), Admit::Probe);
        assert_eq!(books.admit(after, &s), Admit::Probe);
        assert_eq!(books.admit(after, &s), Admit::Refuse(Duration::ZERO));
        // One probe dropped: its slot is free again.
        books.abandon_probe(books.generation());
        assert_eq!(books.admit(after, &s), Admit::Probe);
        // A failed probe opens it again, for the whole open time.
        assert_eq!(
            books.record(Admit::Probe, books.generation(), true, after, &s, &ok),
            Some(Transition::Reopened)
        );
        assert_eq!(
            books.admit(after, &s),
            Admit::Refuse(Duration::from_secs(5))
        );
        // Then a successful probe closes it, with an empty window.
        let later = after + Duration::from_secs(5);
        assert_eq!(books.admit(later, &s), Admit::Probe);
        let probing = books.generation();
        assert_eq!(
            books.record(Admit::Probe, books.generation(), false, later, &s, &ok),
            Some(Transition::Closed)
        );
        assert_eq!(books.state(later), BreakerState::Closed);
        assert_eq!(books.window(later, &s, &ok), (0, 0));
        // Late verdicts of an earlier period decide nothing: the other probe's, and a slow
        // call admitted before the breaker first opened.
        assert_eq!(
            books.record(Admit::Probe, probing, true, later, &s, &ok),
            None
        );
        assert_eq!(books.record(Admit::Call, 0, true, later, &s, &ok), None);
        assert_eq!(books.window(later, &s, &ok), (0, 0));
        books.abandon_probe(probing);
        assert_eq!(books.state(later), BreakerState::Closed);
        assert_eq!(books.times_opened, 2);
    }

    #[test]
    fn successes_count_for_the_window_of_their_bucket() {
        let ok = Successes::default();
        for epoch in [0, 0, 3, 9, 12] {
            ok.add(epoch);
        }
        assert_eq!(ok.in_window(9), 4);
        // At epoch 12 the successes of epoch 0 are gone, and epoch 12's bucket (that of 2)
        // counts afresh.
        assert_eq!(ok.in_window(12), 3);
        assert_eq!(ok.in_window(25), 0);
        // Epochs past 32 bits: compared by their low bits, across the wrap.
        let ok = Successes::default();
        ok.add(u64::from(u32::MAX));
        ok.add(u64::from(u32::MAX) + 2);
        assert_eq!(ok.in_window(u64::from(u32::MAX) + 3), 2);
        ok.clear();
        assert_eq!(ok.in_window(u64::from(u32::MAX) + 3), 0);
        // A late success of epoch 3, after epoch 13 took its bucket: booked onto 13, which
        // keeps its count.
        let ok = Successes::default();
        ok.add(13);
        ok.add(3);
        assert_eq!(ok.in_window(13), 2);
        assert_eq!(ok.in_window(3), 0, "the bucket is epoch 13's");
    }

    #[test]
    fn settings_out_of_range_are_brought_into_it() {
        let odd = Settings {
            window: Duration::ZERO,
            minimum_calls: 0,
            failure_ratio: f64::NAN,
            open_for: Duration::ZERO,
            probes: 0,
        }
        .validated();
        assert_eq!(odd.window, Duration::from_millis(10));
        assert_eq!((odd.minimum_calls, odd.probes), (1, 1));
        assert!((odd.failure_ratio - 0.5).abs() < f64::EPSILON);
        let over = Settings {
            failure_ratio: 7.0,
            ..Settings::default()
        }
        .validated();
        assert!((over.failure_ratio - 1.0).abs() < f64::EPSILON);
    }
}
