//! `ConcurrencyLimitLayer`: a shared limit, a bounded queue, and `503` + `Retry-After` beyond.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tower_layer::Layer;
use vitals_core::findings::Findings;
use vitals_core::route::{RequestHead, RouteLabeler};
use vitals_core::route_table::RouteTable;

use crate::adaptive::AdaptiveLimit;
use crate::body::LayerResponse;
use crate::handle::LimiterHandle;
use crate::limiter::{Classes, DEFAULT_NAME, Limiter, RouteLimiter, Settings, lock};
use crate::part::LimitPart;
use crate::service::ConcurrencyLimit;
use crate::settings::Limit;

/// Limits how many requests are served at once; see the [crate documentation](crate).
///
/// Every clone shares one limit: add it with `Router::layer` for a global limit, or with
/// `route_layer` on one route for that route's own. Its setters change its own limiter's
/// [`Limit`] (they run before the layer serves, so nothing is in flight);
/// [`with_route`](Self::with_route) gives a route template a limiter of its own.
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitLayer {
    limiter: Arc<Limiter>,
    classes: Arc<Classes>,
    labeler: RouteLabeler,
    routes: Arc<RouteTable<RouteLimiter>>,
    findings: Option<Findings>,
}

/// A limiter made from `limit`, reporting to `findings`.
fn limiter(limit: Limit, findings: Option<Findings>) -> RouteLimiter {
    let seed = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos(),
    );
    let Limit { settings, classes } = limit;
    let Settings {
        limit,
        max_queued,
        max_wait,
        retry_after,
        rejection,
        adaptive,
        name,
    } = settings;
    RouteLimiter {
        classes: Arc::new(classes),
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

/// The settings `limiter` was made from.
fn limit_of(limiter: &Limiter, classes: &Classes) -> Limit {
    Limit {
        settings: Settings {
            limit: limiter.limit,
            max_queued: limiter.max_queued,
            max_wait: limiter.max_wait,
            retry_after: limiter.retry_after,
            rejection: limiter.rejection.clone(),
            adaptive: limiter.adaptive.as_ref().map(|aimd| lock(aimd).clone()),
            name: limiter.name.clone(),
        },
        classes: classes.clone(),
    }
}

impl ConcurrencyLimitLayer {
    /// At most `limit` requests at once (at least 1); as many may wait, each at most
    /// [`DEFAULT_MAX_WAIT`](crate::DEFAULT_MAX_WAIT).
    pub fn new(limit: usize) -> Self {
        Self::from_limit(Limit::new(limit))
    }

    /// A limit that finds itself from the latency of the requests it admits
    /// ([`Limit::adaptive`]).
    pub fn adaptive(settings: AdaptiveLimit) -> Self {
        Self::from_limit(Limit::adaptive(settings))
    }

    /// A layer whose own limiter is made from `limit`.
    pub fn from_limit(limit: Limit) -> Self {
        let RouteLimiter { limiter, classes } = limiter(limit, None);
        Self {
            limiter,
            classes,
            labeler: RouteLabeler::new(),
            routes: Arc::default(),
            findings: None,
        }
    }

    /// No limit of its own: only the routes given [`with_route`](Self::with_route) are
    /// limited, each by its own limiter; every other request passes straight through.
    pub fn unlimited() -> Self {
        Self::new(Semaphore::MAX_PERMITS).with_bypass(|_: RequestHead<'_>| true)
    }

    /// The same layer with its own limiter made again from its changed [`Limit`].
    fn change(self, change: impl FnOnce(Limit) -> Limit) -> Self {
        let limit = change(limit_of(&self.limiter, &self.classes));
        let RouteLimiter { limiter, classes } = limiter(limit, self.findings.clone());
        Self {
            limiter,
            classes,
            ..self
        }
    }

    /// See [`Limit::with_name`].
    #[must_use]
    pub fn with_name(self, name: &'static str) -> Self {
        self.change(|limit| limit.with_name(name))
    }

    /// Requests for which `rule` is true skip the limit entirely ([`Limit::with_bypass`]).
    ///
    /// ```
    /// use vitals_concurrency::ConcurrencyLimitLayer;
    /// use vitals_core::route::RequestHead;
    ///
    /// let limit = ConcurrencyLimitLayer::new(64)
    ///     .with_bypass(|head: RequestHead<'_>| head.uri.path() == "/healthz");
    /// ```
    #[must_use]
    pub fn with_bypass(
        self,
        rule: impl Fn(RequestHead<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.change(|limit| limit.with_bypass(rule))
    }

    /// Requests for which `rule` is true are shed first ([`Limit::with_low_priority`]).
    #[must_use]
    pub fn with_low_priority(
        self,
        rule: impl Fn(RequestHead<'_>) -> bool + Send + Sync + 'static,
        share: f64,
    ) -> Self {
        self.change(|limit| limit.with_low_priority(rule, share))
    }

    /// See [`Limit::with_max_queued`].
    #[must_use]
    pub fn with_max_queued(self, max_queued: usize) -> Self {
        self.change(|limit| limit.with_max_queued(max_queued))
    }

    /// See [`Limit::with_max_wait`].
    #[must_use]
    pub fn with_max_wait(self, max_wait: Duration) -> Self {
        self.change(|limit| limit.with_max_wait(max_wait))
    }

    /// See [`Limit::with_retry_after`].
    #[must_use]
    pub fn with_retry_after(self, base: Duration) -> Self {
        self.change(|limit| limit.with_retry_after(base))
    }

    /// See [`Limit::with_response`].
    #[must_use]
    pub fn with_response(self, rejection: LayerResponse) -> Self {
        self.change(|limit| limit.with_response(rejection))
    }

    /// How requests get their `http.route` label in the `metrics` output (default: axum's
    /// `MatchedPath`, else `unmatched`).
    #[must_use]
    pub fn with_route_labeler(mut self, labeler: RouteLabeler) -> Self {
        self.labeler = labeler;
        self
    }

    /// Counts refusals per route in `findings`, for a live view such as the dashboard — the
    /// refusals of every route's own limiter too.
    #[must_use]
    pub fn with_findings(mut self, findings: Findings) -> Self {
        self.findings = Some(findings);
        let routes = self.routes.map(|_, route| {
            limiter(
                limit_of(&route.limiter, &route.classes),
                self.findings.clone(),
            )
        });
        self.routes = Arc::new(routes);
        self.change(|limit| limit)
    }

    /// Requests for the route template `route` (`"/slow"`) are limited by a limiter of their
    /// own, made from `limit` (its size, queue, classes and refusal), instead of this one: a
    /// bulkhead, so a flood on one slow route cannot take the permits every other route needs.
    /// The route is found through the route label (axum's `MatchedPath`), so one layer holds a
    /// table of limits. A route limiter left unnamed is named after its route; a route given
    /// twice keeps the later limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// use vitals_concurrency::{ConcurrencyLimitLayer, Limit};
    ///
    /// let limit = ConcurrencyLimitLayer::new(256).with_route(
    ///     "/slow",
    ///     Limit::new(8).with_max_wait(Duration::from_millis(100)),
    /// );
    /// assert_eq!(limit.handle().route_snapshot("/slow").map(|s| s.limit), Some(8));
    /// ```
    #[must_use]
    pub fn with_route(mut self, route: &str, limit: Limit) -> Self {
        let limit = if limit.settings.name == DEFAULT_NAME {
            let mut limit = limit;
            limit.settings.name = Cow::Owned(route.to_owned());
            limit
        } else {
            limit
        };
        let made = limiter(limit, self.findings.clone());
        Arc::make_mut(&mut self.routes).insert(route, made);
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

    /// A handle that reads the state of this layer's limiters (its own and each route's).
    pub fn handle(&self) -> LimiterHandle {
        LimiterHandle {
            limiter: Arc::clone(&self.limiter),
            routes: Arc::clone(&self.routes),
        }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit::new(inner, self.part())
    }
}
