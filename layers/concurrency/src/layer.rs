//! `ConcurrencyLimitLayer`: a shared limit, a bounded queue, and `503` + `Retry-After` beyond.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tower_layer::Layer;
use vitals_core::findings::Findings;
use vitals_core::route::{RequestHead, RouteLabeler};

use crate::adaptive::{AdaptiveLimit, Aimd};
use crate::body::LayerResponse;
use crate::limiter::{
    Classes, DEFAULT_NAME, Limiter, LimiterSnapshot, RouteLimits, Settings, lock,
};
use crate::part::LimitPart;
use crate::service::ConcurrencyLimit;

/// Limits how many requests are served at once; see the [crate documentation](crate).
///
/// Every clone shares one limit: add it with `Router::layer` for a global limit, or with
/// `route_layer` on one route for that route's own.
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitLayer {
    limiter: Arc<Limiter>,
    classes: Arc<Classes>,
    labeler: RouteLabeler,
    routes: Arc<RouteLimits>,
}

impl ConcurrencyLimitLayer {
    /// At most `limit` requests at once (at least 1); as many may wait, each at most
    /// [`DEFAULT_MAX_WAIT`].
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self::build(Settings::new(limit, limit, None))
    }

    /// A limit that finds itself between `settings.min` and `settings.max` from the latency of
    /// the requests it admits (see [`crate::adaptive`]). The queue holds up to `settings.max`.
    ///
    /// Settings out of range (a struct literal with `min > max`, a NaN factor, …) are brought
    /// into range as [`AdaptiveLimit`] describes, never panicked on.
    pub fn adaptive(settings: AdaptiveLimit) -> Self {
        let aimd = Aimd::new(settings);
        let max = aimd.settings().max;
        Self::build(Settings::new(aimd.limit(), max, Some(aimd)))
    }

    fn build(settings: Settings) -> Self {
        let seed = u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos(),
        );
        let Settings {
            limit,
            max_queued,
            max_wait,
            retry_after,
            rejection,
            adaptive,
            name,
            findings,
        } = settings;
        Self {
            classes: Arc::new(Classes::default()),
            labeler: RouteLabeler::new(),
            routes: Arc::default(),
            limiter: Arc::new(Limiter {
                semaphore: Arc::new(Semaphore::new(limit)),
                limit,
                max_queued,
                max_wait,
                retry_after,
                rejection,
                queued: AtomicUsize::new(0),
                admitted: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                longest_wait_nanos: AtomicU64::new(0),
                jitter: AtomicU64::new(seed),
                current: AtomicUsize::new(limit),
                debt: AtomicUsize::new(0),
                adaptive: adaptive.map(Mutex::new),
                name,
                #[cfg(feature = "metrics")]
                metrics: crate::metrics::Handles::default(),
                findings,
            }),
        }
    }

    /// The same layer with changed settings and a fresh limiter (builders run before the layer
    /// serves, so nothing is in flight).
    fn rebuild(self, change: impl FnOnce(&mut Settings)) -> Self {
        let l = &self.limiter;
        let mut settings = Settings {
            limit: l.limit,
            max_queued: l.max_queued,
            max_wait: l.max_wait,
            retry_after: l.retry_after,
            rejection: l.rejection.clone(),
            adaptive: l.adaptive.as_ref().map(|aimd| lock(aimd).clone()),
            name: l.name.clone(),
            findings: l.findings.clone(),
        };
        change(&mut settings);
        Self {
            classes: Arc::clone(&self.classes),
            labeler: self.labeler.clone(),
            routes: Arc::clone(&self.routes),
            ..Self::build(settings)
        }
    }

    /// The `vitals.limiter` label of this limiter's gauges (default `"default"`; a route's own
    /// limiter given to [`with_route`](Self::with_route) unnamed is named after its route).
    #[must_use]
    pub fn with_name(self, name: &'static str) -> Self {
        self.rebuild(|s| s.name = Cow::Borrowed(name))
    }

    /// Requests for which `rule` is true skip the limit entirely: health checks and admin
    /// endpoints that must answer even when the service is saturated.
    ///
    /// ```
    /// use vitals_concurrency::ConcurrencyLimitLayer;
    /// use vitals_core::route::{RequestHead, RouteLabel, RouteLabeler};
    ///
    /// let limit = ConcurrencyLimitLayer::new(64)
    ///     .with_bypass(|head: RequestHead<'_>| head.uri.path() == "/healthz");
    /// ```
    #[must_use]
    pub fn with_bypass(
        mut self,
        rule: impl Fn(RequestHead<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.classes).bypass = Some(Arc::new(rule));
        self
    }

    /// Requests for which `rule` is true are shed first: admitted only while less than
    /// `share` (0–1) of the limit is in use, and never queued. Batch jobs, prefetches,
    /// anything a user is not waiting for.
    #[must_use]
    pub fn with_low_priority(
        mut self,
        rule: impl Fn(RequestHead<'_>) -> bool + Send + Sync + 'static,
        share: f64,
    ) -> Self {
        let share = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        Arc::make_mut(&mut self.classes).low_priority = Some((Arc::new(rule), share));
        self
    }

    /// How many requests may wait for a permit (default: the limit). `0` refuses at once;
    /// `usize::MAX` never refuses for a full queue.
    #[must_use]
    pub fn with_max_queued(self, max_queued: usize) -> Self {
        self.rebuild(|s| s.max_queued = max_queued)
    }

    /// How long a request may wait for a permit (default [`DEFAULT_MAX_WAIT`]). A wait too
    /// long to put on the clock (`Duration::MAX`) means no limit on the wait.
    #[must_use]
    pub fn with_max_wait(self, max_wait: Duration) -> Self {
        self.rebuild(|s| s.max_wait = max_wait)
    }

    /// The `Retry-After` base, in whole seconds (at least 1): refusals say base to 2 × base.
    /// The arithmetic saturates: a base near `u64::MAX` seconds (`Duration::MAX`) gives
    /// `Retry-After` values up to `u64::MAX`, never an overflow.
    #[must_use]
    pub fn with_retry_after(self, base: Duration) -> Self {
        self.rebuild(|s| s.retry_after = base)
    }

    /// The refusal's status and body (default: 503, `{"error": "..."}`). `Retry-After` is
    /// added to it.
    #[must_use]
    pub fn with_rejection(self, rejection: LayerResponse) -> Self {
        self.rebuild(|s| s.rejection = rejection)
    }

    /// How requests get their `http.route` label in the `metrics` output (default: axum's
    /// `MatchedPath`, else `unmatched`).
    #[must_use]
    pub fn with_route_labeler(mut self, labeler: RouteLabeler) -> Self {
        self.labeler = labeler;
        self
    }

    /// Counts refusals per route in `findings`, for a live view such as the dashboard.
    #[must_use]
    ///
    /// Route limiters already given to [`with_route`](Self::with_route) without findings of
    /// their own report there too.
    pub fn with_findings(self, findings: Findings) -> Self {
        let routes: RouteLimits = self
            .routes
            .iter()
            .map(|(route, (limiter, classes))| {
                let part = if limiter.findings.is_some() {
                    (Arc::clone(limiter), Arc::clone(classes))
                } else {
                    let own = Self {
                        limiter: Arc::clone(limiter),
                        classes: Arc::clone(classes),
                        labeler: self.labeler.clone(),
                        routes: Arc::default(),
                    }
                    .rebuild(|s| s.findings = Some(findings.clone()));
                    (own.limiter, own.classes)
                };
                (route.clone(), part)
            })
            .collect();
        let mut layer = self.rebuild(|s| s.findings = Some(findings));
        layer.routes = Arc::new(routes);
        layer
    }

    /// No limit of its own: only the routes given [`with_route`](Self::with_route) are
    /// limited, each by its own limiter; every other request passes straight through.
    pub fn unlimited() -> Self {
        Self::new(Semaphore::MAX_PERMITS).with_bypass(|_: RequestHead<'_>| true)
    }

    /// Requests for the route template `route` (`"/slow"`) are limited by `layer`'s limiter
    /// (its limit, queue, classes and refusal) instead of this one: a bulkhead, so a flood on
    /// one slow route cannot take the permits every other route needs. The route is found
    /// through the route label (axum's `MatchedPath`), so one layer holds a table of limits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use vitals_concurrency::ConcurrencyLimitLayer;
    ///
    /// let limit = ConcurrencyLimitLayer::new(256).with_route(
    ///     "/slow",
    ///     ConcurrencyLimitLayer::new(8)
    ///         .with_max_wait(Duration::from_millis(100))
    ///         .with_name("slow"),
    /// );
    /// assert_eq!(limit.route_snapshot("/slow").map(|s| s.limit), Some(8));
    /// ```
    #[must_use]
    pub fn with_route(mut self, route: &str, layer: ConcurrencyLimitLayer) -> Self {
        // An unnamed route limiter is named after its route, so its gauges are its own.
        let layer = if layer.limiter.name == DEFAULT_NAME {
            let name = route.to_owned();
            layer.rebuild(|s| s.name = Cow::Owned(name))
        } else {
            layer
        };
        Arc::make_mut(&mut self.routes).insert(route.into(), (layer.limiter, layer.classes));
        self
    }

    /// The limit as a part, for drivers that run several parts in one service (the fused
    /// `vitals` stack); [`ConcurrencyLimit`] is its standalone driver.
    pub fn part(&self) -> LimitPart {
        LimitPart {
            limiter: Arc::clone(&self.limiter),
            classes: Arc::clone(&self.classes),
            routes: Arc::clone(&self.routes),
            labeler: self.labeler.clone(),
        }
    }

    /// The limiter's state now.
    pub fn snapshot(&self) -> LimiterSnapshot {
        self.limiter.snapshot()
    }

    /// The state of the limiter of `route`, if it has one of its own.
    pub fn route_snapshot(&self, route: &str) -> Option<LimiterSnapshot> {
        self.routes
            .get(route)
            .map(|(limiter, _)| limiter.snapshot())
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit::new(inner, self.part())
    }
}
