//! What the timing layer is told: thresholds, the `Server-Timing` policy, sampling, the hook.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vitals_core::route::{RouteLabel, RouteLabeler};
use vitals_core::route_table::RouteTable;
pub use vitals_core::server_timing::ServerTimingMode;

use crate::report::TimingReport;

/// The default blocking-poll threshold: a single poll longer than this blocked the executor.
pub const DEFAULT_BLOCKING_THRESHOLD: Duration = Duration::from_millis(10);

/// The default slow-request threshold, on the total time to the last byte.
pub const DEFAULT_SLOW_THRESHOLD: Duration = Duration::from_secs(1);

/// A threshold with per-route overrides; `None` switches the check off.
#[derive(Clone, Debug)]
pub(crate) struct Threshold {
    default: Option<Duration>,
    per_route: RouteTable<Option<Duration>>,
    /// The lowest threshold of any route, kept up to date: a poll shorter than it needs no
    /// closer look whatever its route.
    lowest: Option<Duration>,
}

impl Threshold {
    pub(crate) fn new(default: Duration) -> Self {
        Self {
            default: Some(default),
            per_route: RouteTable::new(),
            lowest: Some(default),
        }
    }

    pub(crate) fn set_default(&mut self, threshold: Option<Duration>) {
        self.default = threshold;
        self.update_lowest();
    }

    pub(crate) fn set_route(&mut self, route: &str, threshold: Option<Duration>) {
        self.per_route.insert(route, threshold);
        self.update_lowest();
    }

    fn update_lowest(&mut self) {
        self.lowest = self
            .per_route
            .iter()
            .map(|(_, threshold)| threshold)
            .chain([&self.default])
            .filter_map(|threshold| *threshold)
            .min();
    }

    /// The lowest threshold of any route; `None` when every route has the check off.
    pub(crate) fn lowest(&self) -> Option<Duration> {
        self.lowest
    }

    /// The threshold for `route`: its override, else the default.
    pub(crate) fn for_route(&self, route: &RouteLabel) -> Option<Duration> {
        self.per_route.get(route).copied().unwrap_or(self.default)
    }
}

/// What one route template does differently from the layer's defaults, given to
/// [`RequestTimingLayer::with_route`](crate::RequestTimingLayer::with_route). What it does not
/// set follows the layer.
///
/// ```
/// use std::time::Duration;
/// use vitals_timing::{RequestTimingLayer, RouteTiming};
///
/// let timing = RequestTimingLayer::new()
///     .with_route("/report", RouteTiming::new().with_slow_threshold(Duration::from_secs(5)))
///     .with_route("/export", RouteTiming::new().with_blocking_threshold(None));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
// `Option<Option<_>>`: whether the route sets it at all, then its value (`None`: check off).
#[allow(clippy::option_option)]
pub struct RouteTiming {
    pub(crate) slow_threshold: Option<Option<Duration>>,
    pub(crate) blocking_threshold: Option<Option<Duration>>,
}

impl RouteTiming {
    /// Nothing set: the route follows the layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The total time from which a request on this route is logged as slow (`None`: never).
    #[must_use]
    pub fn with_slow_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.slow_threshold = Some(threshold.into());
        self
    }

    /// The single poll that counts as blocking the executor on this route (`None`: no check).
    #[must_use]
    pub fn with_blocking_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.blocking_threshold = Some(threshold.into());
        self
    }
}

/// Picks an exact share of requests, evenly spread: rate 0.25 logs every fourth request.
/// One relaxed atomic add per request, no randomness to pay for.
#[derive(Debug)]
pub(crate) struct Sampler {
    rate: f64,
    seen: AtomicU64,
}

impl Sampler {
    pub(crate) fn new(rate: f64) -> Option<Self> {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        (rate > 0.0).then(|| Self {
            rate,
            seen: AtomicU64::new(0),
        })
    }

    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    pub(crate) fn sample(&self) -> bool {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.rate).floor() > (n * self.rate).floor()
    }
}

impl Clone for Sampler {
    fn clone(&self) -> Self {
        Self {
            rate: self.rate,
            seen: AtomicU64::new(self.seen.load(Ordering::Relaxed)),
        }
    }
}

/// A callback that receives every finished request's [`TimingReport`].
pub(crate) type OnFinish = Arc<dyn Fn(&TimingReport<'_>) + Send + Sync>;

/// The layer's configuration, shared by every clone of the layer and its services.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) labeler: RouteLabeler,
    pub(crate) server_timing: ServerTimingMode,
    pub(crate) poll_timing: bool,
    pub(crate) blocking: Threshold,
    pub(crate) slow: Threshold,
    pub(crate) completion_events: Option<Sampler>,
    pub(crate) on_finish: Option<OnFinish>,
    pub(crate) findings: Option<vitals_core::findings::Findings>,
    /// Shared by every clone: the process's starvation reports are rate-limited together.
    pub(crate) starvation: Arc<crate::starvation::Starvation>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            labeler: RouteLabeler::new(),
            server_timing: ServerTimingMode::Always,
            poll_timing: true,
            blocking: Threshold::new(DEFAULT_BLOCKING_THRESHOLD),
            slow: Threshold::new(DEFAULT_SLOW_THRESHOLD),
            completion_events: None,
            on_finish: None,
            findings: None,
            starvation: Arc::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("labeler", &self.labeler)
            .field("server_timing", &self.server_timing)
            .field("poll_timing", &self.poll_timing)
            .field("blocking", &self.blocking)
            .field("slow", &self.slow)
            .field(
                "completion_event_rate",
                &self.completion_events.as_ref().map(Sampler::rate),
            )
            .field("on_finish", &self.on_finish.is_some())
            .field("findings", &self.findings)
            .field("starvation", &self.starvation)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_picks_an_exact_evenly_spread_share() {
        let sampler = Sampler::new(0.25).unwrap();
        let picks: Vec<bool> = (0..8).map(|_| sampler.sample()).collect();
        assert_eq!(
            picks,
            [false, false, false, true, false, false, false, true]
        );

        let all = Sampler::new(1.0).unwrap();
        assert!((0..100).all(|_| all.sample()));
        let third = Sampler::new(1.0 / 3.0).unwrap();
        assert_eq!((0..300).filter(|_| third.sample()).count(), 100);

        assert!(Sampler::new(0.0).is_none());
        assert!(Sampler::new(-1.0).is_none());
        assert!(Sampler::new(f64::NAN).is_none());
        assert!((Sampler::new(7.0).unwrap().rate() - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn thresholds_have_per_route_overrides() {
        let mut threshold = Threshold::new(Duration::from_secs(1));
        let report = RouteLabel::from_static("/report");
        let other = RouteLabel::from_static("/other");
        assert_eq!(threshold.for_route(&report), Some(Duration::from_secs(1)));
        threshold.set_route("/report", Some(Duration::from_secs(5)));
        threshold.set_route("/healthz", None);
        assert_eq!(threshold.for_route(&report), Some(Duration::from_secs(5)));
        assert_eq!(
            threshold.for_route(&RouteLabel::from_static("/healthz")),
            None
        );
        assert_eq!(threshold.for_route(&other), Some(Duration::from_secs(1)));
        threshold.set_default(None);
        assert_eq!(threshold.for_route(&other), None);
    }
}
