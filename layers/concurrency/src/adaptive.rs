//! The adaptive limit: AIMD on latency.
//!
//! A fixed limit is a guess; the right one moves with the database, the downstream services and
//! the machine. [`AdaptiveLimit`] finds it from the latency of the requests it admits:
//!
//! - **baseline**: the lowest latency seen — the latency without queueing. It only goes down
//!   between probes, so congestion cannot drag it up. Every [`PROBE_EVERY`] samples the limit
//!   drops to `min` briefly (as Envoy's adaptive concurrency filter does) and the baseline is
//!   measured afresh from requests admitted during the probe, so a server that became slower
//!   for good gets a new baseline;
//! - **additive increase**: each time `limit` uncongested samples have been seen (about one
//!   round of the current limit), the limit grows by one;
//! - **multiplicative decrease**: a sample over `tolerance × baseline` (default 1.5), or an
//!   admitted request that timed out inside the limit, cuts the limit by `backoff` (default
//!   ×0.9), at most once per round, so one burst does not collapse it.
//!
//! # What counts as a signal
//!
//! Only the work the limit protects may steer it, or a client could steer it instead:
//!
//! - a **latency sample** is the time from admission to the last byte of the response body,
//!   and only for a *representative* request: the handler answered with a `2xx` status that
//!   no inner layer produced, and the body was produced to its end. A client that hangs up
//!   (the request cancelled, the body dropped before its end), a body that fails, a handler
//!   that fails or panics, and cheap answers — `304 Not Modified`, `404`, redirects, `4xx`
//!   and `5xx` — say nothing about how long the real work takes: a flood of them would pull
//!   the baseline down to near zero and make every real request look congested;
//! - a **congestion signal** is a representative latency over `tolerance × baseline`, or a
//!   request marked as timed out by a timeout layer inside the limit;
//! - **refusals and sheds are neither**: the limiter refusing a request (queue full, waited
//!   too long, a low-priority request shed) is the limit working, not the server slowing
//!   down. Counting them as congestion would lower the limit, which refuses more, which lowers
//!   it further. A probe, likewise, only counts requests admitted during the probe.
//!
//! The limit stays within `[min, max]`. This is the AIMD scheme of TCP and of Netflix's
//! concurrency-limits `AIMDLimit`, with a latency baseline in place of packet loss; it settles
//! in a saw-tooth just above the server's capacity (where latency starts to rise) and follows
//! it when the capacity changes.

use std::time::Duration;

use tokio::sync::Semaphore;

/// The default [`AdaptiveLimit::tolerance`].
const DEFAULT_TOLERANCE: f64 = 1.5;

/// The default [`AdaptiveLimit::backoff`].
const DEFAULT_BACKOFF: f64 = 0.9;

/// Settings of the adaptive limit.
///
/// The fields are public, so a struct literal can hold any value; none of them can make the
/// layer panic. [`ConcurrencyLimitLayer::adaptive`](crate::ConcurrencyLimitLayer::adaptive)
/// brings them into range the way [`new`](Self::new) does: `min` at least 1, `max` at least
/// `min`, both at most [`Semaphore::MAX_PERMITS`], `initial` within `[min, max]`; a NaN
/// `tolerance` or `backoff` takes its default, a `tolerance` below 1 becomes 1 and a `backoff`
/// outside `[0, 1]` the nearer end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveLimit {
    /// The lowest the limit goes (at least 1).
    pub min: usize,
    /// The highest the limit goes (at least `min`).
    pub max: usize,
    /// Where it starts (within `[min, max]`).
    pub initial: usize,
    /// Latency over `tolerance × baseline` counts as congestion (default 1.5, at least 1;
    /// infinity: latency never does).
    pub tolerance: f64,
    /// The factor a congestion signal cuts the limit by (default 0.9, within `[0, 1]`; 1:
    /// never cut).
    pub backoff: f64,
}

impl AdaptiveLimit {
    /// Between `min` and `max`, starting at `min`, with the default tolerance and backoff.
    /// `min` is at least 1 and `max` at least `min`, both at most [`Semaphore::MAX_PERMITS`].
    pub fn new(min: usize, max: usize) -> Self {
        Self {
            min,
            max,
            initial: min,
            tolerance: DEFAULT_TOLERANCE,
            backoff: DEFAULT_BACKOFF,
        }
        .normalized()
    }

    /// Starts at `initial` (kept within `[min, max]`).
    #[must_use]
    pub fn with_initial(mut self, initial: usize) -> Self {
        // Ordered first: a struct literal may hold `min > max`, and `clamp` panics on that.
        let bounds = self.normalized();
        self.initial = initial.clamp(bounds.min, bounds.max);
        self
    }

    /// The settings brought into range (see the type's documentation): whatever a struct
    /// literal holds, the controller never panics on it.
    pub(crate) fn normalized(self) -> Self {
        let min = self.min.clamp(1, Semaphore::MAX_PERMITS);
        let max = self.max.clamp(min, Semaphore::MAX_PERMITS);
        Self {
            min,
            max,
            initial: self.initial.clamp(min, max),
            tolerance: if self.tolerance.is_nan() {
                DEFAULT_TOLERANCE
            } else {
                self.tolerance.max(1.0)
            },
            backoff: if self.backoff.is_nan() {
                DEFAULT_BACKOFF
            } else {
                self.backoff.clamp(0.0, 1.0)
            },
        }
    }
}

/// What one admitted request tells the controller (see the [module documentation](self) for
/// what never does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Signal {
    /// A representative request ended after this long: a latency sample.
    Latency(Duration),
    /// The request timed out inside the limit: congestion, with no latency worth learning.
    TimedOut,
}

/// The controller's state: fed samples, it answers with the limit.
#[derive(Clone, Debug)]
pub(crate) struct Aimd {
    settings: AdaptiveLimit,
    limit: usize,
    baseline: Option<f64>,
    good_since_increase: usize,
    samples_since_decrease: usize,
    samples_since_probe: u64,
    congested_at_min: usize,
    probe: Option<Probe>,
    epoch: u64,
}

/// Congested samples at the minimum limit after which the baseline is taken to be stale and
/// probed at once.
const STALE_AT_MIN: usize = 50;

/// Samples between two baseline probes.
pub const PROBE_EVERY: u64 = 20_000;

/// A baseline measurement at the minimum limit.
#[derive(Clone, Copy, Debug)]
struct Probe {
    /// Samples still wanted from requests admitted during the probe.
    remaining: usize,
    restore: usize,
    best: f64,
}

impl Aimd {
    pub(crate) fn new(settings: AdaptiveLimit) -> Self {
        let settings = settings.normalized();
        Self {
            limit: settings.initial,
            settings,
            baseline: None,
            good_since_increase: 0,
            samples_since_decrease: usize::MAX,
            samples_since_probe: 0,
            congested_at_min: 0,
            probe: None,
            epoch: 0,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The settings in use, brought into range.
    pub(crate) fn settings(&self) -> &AdaptiveLimit {
        &self.settings
    }

    /// Changes when a probe starts: requests remember it at admission, so a probe measures
    /// only requests admitted at the minimum limit.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    fn start_probe(&mut self) {
        self.samples_since_probe = 0;
        self.congested_at_min = 0;
        self.epoch += 1;
        self.probe = Some(Probe {
            remaining: self.settings.min.saturating_mul(2),
            restore: self.limit,
            best: f64::INFINITY,
        });
        self.limit = self.settings.min;
    }

    /// What one admitted request told (its latency, or that it timed out), and the limit to
    /// use from now on. Refusals never come here: they are not the server's answer.
    pub(crate) fn on_sample(&mut self, signal: Signal, admitted_in: u64) -> usize {
        if let Some(probe) = &mut self.probe {
            if admitted_in != self.epoch {
                // Admitted before the probe, at the old limit: not a no-queue sample.
                return self.limit;
            }
            if let Signal::Latency(latency) = signal {
                probe.best = probe.best.min(latency.as_secs_f64());
            }
            probe.remaining = probe.remaining.saturating_sub(1);
            if probe.remaining == 0 {
                let probe = *probe;
                self.probe = None;
                if probe.best.is_finite() {
                    self.baseline = Some(probe.best);
                }
                self.limit = probe.restore;
            }
            return self.limit;
        }
        self.samples_since_probe += 1;
        if self.samples_since_probe >= PROBE_EVERY || self.congested_at_min >= STALE_AT_MIN {
            self.start_probe();
            return self.limit;
        }
        self.samples_since_decrease = self.samples_since_decrease.saturating_add(1);
        let congested = match signal {
            Signal::TimedOut => true,
            Signal::Latency(latency) => {
                let seconds = latency.as_secs_f64();
                let baseline = self.baseline.map_or(seconds, |b| b.min(seconds));
                self.baseline = Some(baseline);
                seconds > baseline * self.settings.tolerance
            }
        };
        if congested && self.limit == self.settings.min {
            self.congested_at_min += 1;
        } else {
            self.congested_at_min = 0;
        }
        if congested {
            // At most one cut per round of the limit: a burst of slow answers is one signal.
            if self.samples_since_decrease >= self.limit {
                self.decrease();
            }
        } else {
            self.good_since_increase += 1;
            if self.good_since_increase >= self.limit {
                self.good_since_increase = 0;
                self.limit = (self.limit + 1).min(self.settings.max);
            }
        }
        self.limit
    }

    fn decrease(&mut self) {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let cut = (self.limit as f64 * self.settings.backoff).floor() as usize;
        self.limit = cut.clamp(self.settings.min, self.settings.max);
        self.good_since_increase = 0;
        self.samples_since_decrease = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that serves `capacity` requests at once in `base`; more wait their turn, so
    /// latency grows with the excess. Clients always want more than the limit (a closed loop
    /// under overload). One step = one round: `limit` requests complete.
    fn simulate(aimd: &mut Aimd, capacity: usize, steps: usize) -> Vec<usize> {
        let base = 0.010;
        let mut limits = Vec::with_capacity(steps);
        for _ in 0..steps {
            let in_flight = aimd.limit();
            #[allow(clippy::cast_precision_loss)]
            let latency = base * (in_flight as f64 / capacity as f64).max(1.0);
            let epoch = aimd.epoch();
            for _ in 0..in_flight {
                aimd.on_sample(Signal::Latency(Duration::from_secs_f64(latency)), epoch);
            }
            limits.push(aimd.limit());
        }
        limits
    }

    fn mean(limits: &[usize]) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let mean = limits.iter().sum::<usize>() as f64 / limits.len() as f64;
        mean
    }

    #[test]
    fn converges_to_capacity_and_follows_it_when_it_halves() {
        let mut aimd = Aimd::new(AdaptiveLimit::new(1, 1_000));
        let first = simulate(&mut aimd, 40, 600);
        let settled = mean(&first[400..]);
        assert!(
            (40.0..=60.0).contains(&settled),
            "settled at {settled}, capacity 40"
        );
        assert!(
            first[400..].iter().all(|&l| (30..=62).contains(&l)),
            "{:?}",
            &first[400..]
        );

        // The database got slower: half the capacity.
        let second = simulate(&mut aimd, 20, 600);
        let settled = mean(&second[400..]);
        assert!(
            (20.0..=30.0).contains(&settled),
            "settled at {settled}, capacity 20"
        );
    }

    #[test]
    fn stays_within_bounds_and_backs_off_on_timeouts() {
        let mut aimd = Aimd::new(AdaptiveLimit::new(5, 8).with_initial(8));
        for _ in 0..100 {
            aimd.on_sample(Signal::Latency(Duration::from_millis(1)), 0);
        }
        assert_eq!(aimd.limit(), 8, "never above max");
        for _ in 0..40 {
            aimd.on_sample(Signal::TimedOut, 0);
        }
        assert_eq!(aimd.limit(), 5, "never below min");
    }

    #[test]
    fn probes_relearn_the_baseline_of_a_server_that_got_slower() {
        let mut aimd = Aimd::new(AdaptiveLimit::new(1, 1_000));
        simulate(&mut aimd, 40, 300);
        // Every request now takes three times as long, at any load.
        let mut limits = Vec::new();
        for _ in 0..3_000 {
            let in_flight = aimd.limit();
            #[allow(clippy::cast_precision_loss)]
            let latency = 0.030 * (in_flight as f64 / 40.0).max(1.0);
            let epoch = aimd.epoch();
            for _ in 0..in_flight {
                aimd.on_sample(Signal::Latency(Duration::from_secs_f64(latency)), epoch);
            }
            limits.push(aimd.limit());
        }
        let settled = mean(&limits[2_500..]);
        assert!(
            (30.0..=62.0).contains(&settled),
            "settled at {settled}, capacity 40"
        );
    }

    #[test]
    fn one_burst_is_one_cut() {
        let mut aimd = Aimd::new(AdaptiveLimit::new(1, 100).with_initial(50));
        aimd.on_sample(Signal::Latency(Duration::from_millis(10)), 0);
        for _ in 0..10 {
            aimd.on_sample(Signal::Latency(Duration::from_millis(100)), 0);
        }
        assert_eq!(aimd.limit(), 45);
    }

    #[test]
    fn struct_literals_out_of_range_are_brought_into_range_not_panicked_on() {
        // `min > max` once panicked in `clamp`; the fields are public, so nothing stops it.
        let literal = AdaptiveLimit {
            min: 10,
            max: 2,
            initial: 0,
            tolerance: f64::NAN,
            backoff: -3.0,
        };
        let aimd = Aimd::new(literal.with_initial(7));
        assert_eq!(
            *aimd.settings(),
            AdaptiveLimit {
                min: 10,
                max: 10,
                initial: 10,
                tolerance: DEFAULT_TOLERANCE,
                backoff: 0.0,
            }
        );
        assert_eq!(aimd.limit(), 10);

        let huge = Aimd::new(AdaptiveLimit::new(usize::MAX, usize::MAX));
        assert_eq!(huge.limit(), Semaphore::MAX_PERMITS);
    }
}
