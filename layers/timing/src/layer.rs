//! `RequestTimingLayer`: the builder and the layer.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use vitals_core::route::RouteLabeler;

use crate::config::{Config, RouteTiming, Sampler, ServerTimingMode};
use crate::part::TimingPart;
use crate::report::TimingReport;
use crate::service::RequestTiming;

/// Times every request to the last byte of its body; see the [crate documentation](crate).
///
/// Cheap to clone: clones (axum makes one per route) share one configuration.
#[derive(Clone, Debug, Default)]
pub struct RequestTimingLayer {
    config: Arc<Config>,
}

impl RequestTimingLayer {
    /// Production defaults: `Server-Timing` on every response, poll timing on, blocking
    /// threshold 10 ms, slow threshold 1 s, no per-request completion events.
    pub fn new() -> Self {
        Self::default()
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Which requests may see a `Server-Timing` header (see [`ServerTimingMode`] for the
    /// trade-off). A request this mode denies gets no `Server-Timing` from any Vitals layer,
    /// not only no `total` entry: the most restrictive layer wins.
    #[must_use]
    pub fn with_server_timing(mut self, mode: impl Into<ServerTimingMode>) -> Self {
        self.config().server_timing = mode.into();
        self
    }

    /// No `Server-Timing` header on any response, from any Vitals layer
    /// (`with_server_timing(ServerTimingMode::Off)`).
    #[must_use]
    pub fn without_server_timing(self) -> Self {
        self.with_server_timing(ServerTimingMode::Off)
    }

    /// Does not measure the handler future's polls (executor time, longest poll), measured by
    /// default: the layer then reads the clock three times per request whatever the handler
    /// does, instead of two more times per poll after the first. Blocking polls go unseen.
    #[must_use]
    pub fn without_poll_timing(mut self) -> Self {
        self.config().poll_timing = false;
        self
    }

    /// A single poll at least this long is reported as blocking the executor (default 10 ms).
    /// `None` switches the check off.
    #[must_use]
    pub fn with_blocking_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.config().blocking.set_default(threshold.into());
        self
    }

    /// A request whose total time reaches this is logged as slow (default 1 s). `None`
    /// switches the check off.
    #[must_use]
    pub fn with_slow_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.config().slow.set_default(threshold.into());
        self
    }

    /// Requests for the route template `route` (`"/report"`) follow what `settings` sets
    /// instead of the layer's thresholds (found through the route label, axum's
    /// `MatchedPath`). A route given twice keeps what the later settings set, and the rest of
    /// the earlier ones.
    #[must_use]
    pub fn with_route(mut self, route: &str, settings: RouteTiming) -> Self {
        let config = self.config();
        if let Some(threshold) = settings.slow_threshold {
            config.slow.set_route(route, threshold);
        }
        if let Some(threshold) = settings.blocking_threshold {
            config.blocking.set_route(route, threshold);
        }
        self
    }

    /// Logs an INFO `request finished` event for this share of requests (0.0–1.0, evenly
    /// spread). Off by default: an event per request is not free.
    #[must_use]
    pub fn with_completion_events(mut self, sample_rate: f64) -> Self {
        self.config().completion_events = Sampler::new(sample_rate);
        self
    }

    /// How requests get their route label (default: axum's `MatchedPath`, else `unmatched`).
    #[must_use]
    pub fn with_route_labeler(mut self, labeler: RouteLabeler) -> Self {
        self.config().labeler = labeler;
        self
    }

    /// Calls `hook` with every finished request's [`TimingReport`], after the layer's own
    /// events. Runs on the request path: keep it short.
    #[must_use]
    pub fn on_finish<F>(mut self, hook: F) -> Self
    where
        F: Fn(&TimingReport<'_>) + Send + Sync + 'static,
    {
        self.config().on_finish = Some(Arc::new(hook));
        self
    }

    /// Pushes slow requests (with their `Server-Timing` breakdown and trace id) and blocking
    /// polls to `findings`, for a live view such as the dashboard.
    #[must_use]
    pub fn with_findings(mut self, findings: vitals_core::findings::Findings) -> Self {
        self.config().findings = Some(findings);
        self
    }
}

impl RequestTimingLayer {
    /// This layer's behaviour as a part, for a driver that runs several parts in one pass
    /// (the `vitals` stack): the same rules, the same reports.
    pub fn part(&self) -> TimingPart {
        TimingPart {
            config: Arc::clone(&self.config),
        }
    }
}

impl<S> Layer<S> for RequestTimingLayer {
    type Service = RequestTiming<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTiming::new(inner, self.part())
    }
}
