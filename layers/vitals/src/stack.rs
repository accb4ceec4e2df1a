//! `VitalsLayer`: every part of Vitals, in the order of docs/architecture.md, behind one builder.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

#[cfg(feature = "cache-headers")]
use vitals_cache_headers::CacheHeadersLayer;
#[cfg(feature = "concurrency")]
use vitals_concurrency::{ConcurrencyLimitLayer, LimiterHandle, TimeoutLayer};
#[cfg(feature = "idempotency-stack")]
use vitals_idempotency::IdempotencyLayer;
#[cfg(feature = "latency")]
use vitals_latency::{LatencyLayer, LatencyRegistry};
#[cfg(feature = "queries")]
use vitals_queries::QueryTrackingLayer;
#[cfg(feature = "rate-limit")]
use vitals_rate_limit::{RateLimitHandle, RateLimitLayer};
#[cfg(feature = "response-cache-stack")]
use vitals_response_cache::{ResponseCacheHandle, ResponseCacheLayer};
#[cfg(feature = "timing")]
use vitals_timing::RequestTimingLayer;
#[cfg(feature = "trace-context")]
use vitals_trace_context::TraceContextLayer;

use vitals_core::findings::Findings;
use vitals_core::route::RouteLabeler;
use vitals_core::server_timing::ServerTimingMode;

use crate::plan::Plan;
use crate::routes::RouteSettings;
use crate::service::VitalsService;

/// The global concurrency limit of [`VitalsLayer::new`]: generous, so that only a real overload
/// meets it — and then it is refused with `503` + `Retry-After` instead of queueing without end.
pub const DEFAULT_CONCURRENCY_LIMIT: usize = 1024;

/// Every Vitals layer, in order (outermost first): trace context, request timing, latency,
/// concurrency limit, timeout, cache headers, query tracking — see docs/architecture.md for why
/// this order.
///
/// Add it with axum's `Router::layer`, so each part sees the matched route template. Clones
/// share their state (the limit, the latency registry).
///
/// ```
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use vitals::{RouteSettings, VitalsLayer};
/// use vitals::cache_headers::CachePolicy;
///
/// # fn main() -> Result<(), vitals::VitalsError> {
/// let vitals = VitalsLayer::builder()
///     .with_route(
///         "/products/{id}",
///         RouteSettings::new().with_cache_policy(CachePolicy::public(Duration::from_mins(1))),
///     )
///     .build()?;
/// let app: Router = Router::new()
///     .route("/products/{id}", get(|| async { "a product" }))
///     .layer(vitals.clone());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct VitalsLayer {
    plan: Arc<Plan>,
    #[cfg(feature = "latency")]
    latency: Option<LatencyRegistry>,
    #[cfg(feature = "concurrency")]
    limit: Option<ConcurrencyLimitLayer>,
    #[cfg(feature = "rate-limit")]
    rate_limit: Option<RateLimitLayer>,
    #[cfg(feature = "response-cache-stack")]
    response_cache: Option<ResponseCacheHandle>,
    findings: Option<Findings>,
}

impl VitalsLayer {
    /// Every part on, with its defaults: a global limit of [`DEFAULT_CONCURRENCY_LIMIT`], no
    /// deadline, no cache policy of its own (handlers' headers kept, errors `no-store`, ETags
    /// and 304s), a latency registry of its own.
    pub fn new() -> Self {
        let Ok(layer) = Self::builder().build() else {
            unreachable!("the default stack has no route settings to reject");
        };
        layer
    }

    /// A builder to configure or switch off each part, and to declare per-route settings.
    pub fn builder() -> VitalsBuilder {
        VitalsBuilder::new()
    }

    /// The latency registry the stack records into (for `/_vitals/latency`, or exports).
    #[cfg(feature = "latency")]
    pub fn latency(&self) -> Option<&LatencyRegistry> {
        self.latency.as_ref()
    }

    /// A handle on the global concurrency limit and the routes' own (their snapshots).
    #[cfg(feature = "concurrency")]
    pub fn limiter(&self) -> Option<LimiterHandle> {
        self.limit.as_ref().map(ConcurrencyLimitLayer::handle)
    }

    /// A handle on the rate limit's counts (`None` when no route has a quota).
    #[cfg(feature = "rate-limit")]
    pub fn rate_limit(&self) -> Option<RateLimitHandle> {
        self.rate_limit.as_ref().map(RateLimitLayer::handle)
    }

    /// A handle on the response cache's store — purge by target, route or tag; each route's
    /// hit ratio — (`None` when the stack has no response cache).
    #[cfg(feature = "response-cache-stack")]
    pub fn response_cache(&self) -> Option<ResponseCacheHandle> {
        self.response_cache.clone()
    }

    /// The findings sink the parts push to, when one was given.
    pub fn findings(&self) -> Option<&Findings> {
        self.findings.as_ref()
    }

    /// A dashboard builder showing this stack: its latency registry, global limiter, rate
    /// limit, response cache and findings (see [`VitalsBuilder::with_findings`]).
    #[cfg(feature = "dashboard")]
    pub fn dashboard(&self) -> vitals_dashboard::DashboardBuilder {
        let mut builder = vitals_dashboard::Dashboard::builder();
        #[cfg(feature = "latency")]
        if let Some(registry) = &self.latency {
            builder = builder.with_latency(registry.clone());
        }
        #[cfg(feature = "concurrency")]
        if let Some(limiter) = self.limiter() {
            builder = builder.with_limiter(limiter);
        }
        if let Some(rate_limit) = self.rate_limit() {
            builder = builder.with_rate_limit(rate_limit);
        }
        #[cfg(feature = "response-cache-stack")]
        if let Some(cache) = self.response_cache() {
            builder = builder.with_response_cache(cache);
        }
        if let Some(findings) = &self.findings {
            builder = builder.with_findings(findings.clone());
        }
        builder
    }
}

impl Default for VitalsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for VitalsLayer {
    type Service = VitalsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VitalsService::new(inner, Arc::clone(&self.plan))
    }
}

/// Configures each part of a [`VitalsLayer`]: each `with_<part>` replaces a part's layer,
/// each `without_<part>` switches it off, and the stack-wide settings (`Server-Timing`, the
/// route labeler, findings, the route table) reach every part at once.
#[derive(Debug)]
#[must_use]
pub struct VitalsBuilder {
    #[cfg(feature = "trace-context")]
    trace_context: Option<TraceContextLayer>,
    #[cfg(feature = "timing")]
    timing: Option<RequestTimingLayer>,
    #[cfg(feature = "latency")]
    latency: Option<LatencyLayer>,
    #[cfg(feature = "rate-limit")]
    rate_limit: Option<RateLimitLayer>,
    #[cfg(feature = "idempotency-stack")]
    idempotency: Option<IdempotencyLayer>,
    #[cfg(feature = "response-cache-stack")]
    response_cache: Option<ResponseCacheLayer>,
    #[cfg(feature = "concurrency")]
    limit: Option<ConcurrencyLimitLayer>,
    #[cfg(feature = "concurrency")]
    timeout: Option<TimeoutLayer>,
    #[cfg(feature = "cache-headers")]
    cache_headers: Option<CacheHeadersLayer>,
    #[cfg(feature = "queries")]
    queries: Option<QueryTrackingLayer>,
    routes: Vec<(String, RouteSettings)>,
    findings: Option<Findings>,
    server_timing: Option<ServerTimingMode>,
    labeler: Option<RouteLabeler>,
}

impl VitalsBuilder {
    fn new() -> Self {
        Self {
            #[cfg(feature = "trace-context")]
            trace_context: Some(TraceContextLayer::new()),
            #[cfg(feature = "timing")]
            timing: Some(RequestTimingLayer::new()),
            #[cfg(feature = "latency")]
            latency: Some(LatencyLayer::new(LatencyRegistry::new())),
            #[cfg(feature = "rate-limit")]
            rate_limit: None,
            #[cfg(feature = "idempotency-stack")]
            idempotency: None,
            #[cfg(feature = "response-cache-stack")]
            response_cache: None,
            #[cfg(feature = "concurrency")]
            limit: Some(ConcurrencyLimitLayer::new(DEFAULT_CONCURRENCY_LIMIT)),
            #[cfg(feature = "concurrency")]
            timeout: None,
            #[cfg(feature = "cache-headers")]
            cache_headers: Some(CacheHeadersLayer::new()),
            #[cfg(feature = "queries")]
            queries: Some(QueryTrackingLayer::new()),
            routes: Vec::new(),
            findings: None,
            server_timing: None,
            labeler: None,
        }
    }

    /// Which requests may see a `Server-Timing` header — with the `trace`, `total`, `db` and
    /// `db-pool` entries every part adds — set on every part at once (default:
    /// [`ServerTimingMode::Always`]). `Off` closes the side channel entirely; `when_header`
    /// shows timings only to clients that send the token:
    ///
    /// ```
    /// use http::{HeaderName, HeaderValue};
    /// use vitals::{ServerTimingMode, VitalsLayer};
    ///
    /// # fn main() -> Result<(), vitals::VitalsError> {
    /// let vitals = VitalsLayer::builder()
    ///     .with_server_timing(ServerTimingMode::when_header(
    ///         HeaderName::from_static("x-debug-timing"),
    ///         HeaderValue::from_static("s3cret"),
    ///     ))
    ///     .build()?;
    /// # let _ = vitals; Ok(()) }
    /// ```
    ///
    /// This replaces the mode of any part layer given to the builder; without it, each part
    /// keeps its own, and the most restrictive one on a request wins.
    pub fn with_server_timing(mut self, mode: impl Into<ServerTimingMode>) -> Self {
        self.server_timing = Some(mode.into());
        self
    }

    /// How every part labels a request's route — its metrics, its spans, and where it finds
    /// the route's settings (default: axum's `MatchedPath`, else `unmatched`). One labeler for
    /// the whole stack, given once: a tonic server's [`GrpcMethodRoute`](vitals_core::route::GrpcMethodRoute),
    /// a router other than axum's. It replaces the labeler of every part's layer, including
    /// layers given to the builder before or after this call.
    ///
    /// ```
    /// use vitals::VitalsLayer;
    /// use vitals::core::route::{GrpcMethodRoute, RouteLabeler};
    ///
    /// # fn main() -> Result<(), vitals::VitalsError> {
    /// let labeler = RouteLabeler::from_extractor(GrpcMethodRoute::new(["/shop.Orders/List"]));
    /// let vitals = VitalsLayer::builder().with_route_labeler(labeler).build()?;
    /// # let _ = vitals; Ok(()) }
    /// ```
    pub fn with_route_labeler(mut self, labeler: RouteLabeler) -> Self {
        self.labeler = Some(labeler);
        self
    }

    /// No `Server-Timing` header on any response
    /// (`with_server_timing(ServerTimingMode::Off)`).
    pub fn without_server_timing(self) -> Self {
        self.with_server_timing(ServerTimingMode::Off)
    }

    /// Where the parts report what they notice, for a live view (the dashboard): timing its
    /// slow requests and blocking polls, queries its N+1 findings and queries per request, the
    /// limits (the global one and each route's) their refusals per route.
    pub fn with_findings(mut self, findings: Findings) -> Self {
        self.findings = Some(findings);
        self
    }

    /// The trace-context layer (default: [`TraceContextLayer::new`]).
    #[cfg(feature = "trace-context")]
    pub fn with_trace_context(mut self, layer: TraceContextLayer) -> Self {
        self.trace_context = Some(layer);
        self
    }

    /// No trace context: no request span, ids or `traceparent` handling.
    #[cfg(feature = "trace-context")]
    pub fn without_trace_context(mut self) -> Self {
        self.trace_context = None;
        self
    }

    /// The timing layer (default: [`RequestTimingLayer::new`]).
    #[cfg(feature = "timing")]
    pub fn with_timing(mut self, layer: RequestTimingLayer) -> Self {
        self.timing = Some(layer);
        self
    }

    /// No request timing, `Server-Timing` or slow/blocking warnings.
    #[cfg(feature = "timing")]
    pub fn without_timing(mut self) -> Self {
        self.timing = None;
        self
    }

    /// Record latency into `registry` (default: a registry of the stack's own).
    #[cfg(feature = "latency")]
    pub fn with_latency(mut self, registry: LatencyRegistry) -> Self {
        self.latency = Some(LatencyLayer::new(registry));
        self
    }

    /// No latency histograms.
    #[cfg(feature = "latency")]
    pub fn without_latency(mut self) -> Self {
        self.latency = None;
        self
    }

    /// A rate limit for every route (none by default; routes can still have their own with
    /// [`RouteSettings::with_rate_limit`](crate::RouteSettings::with_rate_limit)). It runs
    /// after latency and before the concurrency limit: its `429`s are timed, counted and
    /// traced, and take no permit.
    #[cfg(feature = "rate-limit")]
    pub fn with_rate_limit(mut self, layer: RateLimitLayer) -> Self {
        self.rate_limit = Some(layer);
        self
    }

    /// No rate limit at all (routes may not declare quotas then).
    #[cfg(feature = "rate-limit")]
    pub fn without_rate_limit(mut self) -> Self {
        self.rate_limit = None;
        self
    }

    /// `Idempotency-Key` for unsafe methods (none by default; a route can ask for it with
    /// [`RouteSettings::with_idempotency`](crate::RouteSettings::with_idempotency)). It runs
    /// after the rate limit and before the concurrency limit: a replay or a `409` is timed,
    /// counted and traced, takes no permit, and is not counted twice against a quota's
    /// headers; a first run is stored with the headers the cache-headers part gave it.
    ///
    /// Feature `idempotency-stack`. With this part the request body must be rebuilt from the
    /// bytes read to fingerprint it (`From<Bytes>`, as axum's `Body` is: see
    /// [`RequestBody`](crate::RequestBody)).
    ///
    /// ```
    /// use vitals::VitalsLayer;
    /// use vitals::idempotency::{IdempotencyLayer, IdempotencySettings};
    ///
    /// let vitals = VitalsLayer::builder()
    ///     .with_idempotency(IdempotencyLayer::new())
    ///     .with_route(
    ///         "/orders",
    ///         vitals::RouteSettings::new().with_idempotency(IdempotencySettings::new().required()),
    ///     )
    ///     .build()
    ///     .expect("valid settings");
    /// # let _ = vitals;
    /// ```
    #[cfg(feature = "idempotency-stack")]
    pub fn with_idempotency(mut self, layer: IdempotencyLayer) -> Self {
        self.idempotency = Some(layer);
        self
    }

    /// No `Idempotency-Key` handling (the default).
    #[cfg(feature = "idempotency-stack")]
    pub fn without_idempotency(mut self) -> Self {
        self.idempotency = None;
        self
    }

    /// A response cache (none by default; a route can ask for one with
    /// [`RouteSettings::with_response_cache`](crate::RouteSettings::with_response_cache), and
    /// the stack then makes an in-memory cache of only the routes that ask). It runs after the
    /// rate limit and idempotency and before the concurrency limit: a hit, or a request waiting
    /// for another's fill, is timed, counted and traced, and takes no permit; a fill takes one,
    /// and what it stores is the response as cache headers made it — without the headers the
    /// outer parts add for one client. A stale answer's refresh runs in the background through
    /// the parts inside the cache (limit, deadline, cache headers, queries).
    ///
    /// Give a layer for settings beyond a route's own: every route by the responses' own
    /// `Cache-Control` (`ResponseCacheLayer::new()`, as the layer alone does), the store's
    /// size, Redis for a fleet (`with_redis`). The routes' settings are added to it.
    ///
    /// Feature `response-cache-stack`: see [`bounds`](crate::bounds) for what it asks of the
    /// service and its bodies.
    ///
    /// ```
    /// use std::time::Duration;
    /// use vitals::{RouteSettings, VitalsLayer};
    /// use vitals::cache_headers::CachePolicy;
    /// use vitals::response_cache::{CacheSettings, ResponseCacheLayer};
    ///
    /// let vitals = VitalsLayer::builder()
    ///     .with_response_cache(ResponseCacheLayer::new().only_listed_routes().with_max_bytes(16 << 20))
    ///     .with_route(
    ///         "/products/{id}",
    ///         RouteSettings::new()
    ///             .with_cache_policy(CachePolicy::public(Duration::from_mins(1)))
    ///             .with_response_cache(CacheSettings::new()),
    ///     )
    ///     .build()
    ///     .expect("valid settings");
    /// let purge = vitals.response_cache().expect("a response cache");
    /// # let _ = purge;
    /// ```
    #[cfg(feature = "response-cache-stack")]
    pub fn with_response_cache(mut self, layer: ResponseCacheLayer) -> Self {
        self.response_cache = Some(layer);
        self
    }

    /// No response cache given (the default; a layer given before is dropped). A route that
    /// asks for one with
    /// [`RouteSettings::with_response_cache`](crate::RouteSettings::with_response_cache) still
    /// gets an in-memory cache of the routes that ask.
    #[cfg(feature = "response-cache-stack")]
    pub fn without_response_cache(mut self) -> Self {
        self.response_cache = None;
        self
    }

    /// The global concurrency limit (default: [`DEFAULT_CONCURRENCY_LIMIT`]).
    #[cfg(feature = "concurrency")]
    pub fn with_concurrency_limit(mut self, layer: ConcurrencyLimitLayer) -> Self {
        self.limit = Some(layer);
        self
    }

    /// No concurrency limit (routes may not declare limits then).
    #[cfg(feature = "concurrency")]
    pub fn without_concurrency_limit(mut self) -> Self {
        self.limit = None;
        self
    }

    /// A deadline for every handler (default: none; routes may still declare theirs).
    #[cfg(feature = "concurrency")]
    pub fn with_timeout(mut self, layer: TimeoutLayer) -> Self {
        self.timeout = Some(layer);
        self
    }

    /// The cache-headers layer (default: [`CacheHeadersLayer::new`]: no policy of its own).
    #[cfg(feature = "cache-headers")]
    pub fn with_cache_headers(mut self, layer: CacheHeadersLayer) -> Self {
        self.cache_headers = Some(layer);
        self
    }

    /// No cache headers, ETags or 304s.
    #[cfg(feature = "cache-headers")]
    pub fn without_cache_headers(mut self) -> Self {
        self.cache_headers = None;
        self
    }

    /// The query-tracking layer (default: [`QueryTrackingLayer::new`]).
    #[cfg(feature = "queries")]
    pub fn with_queries(mut self, layer: QueryTrackingLayer) -> Self {
        self.queries = Some(layer);
        self
    }

    /// No per-request query ledger.
    #[cfg(feature = "queries")]
    pub fn without_queries(mut self) -> Self {
        self.queries = None;
        self
    }

    /// Settings for the route template `route` (`"/products/{id}"`, as given to axum).
    pub fn with_route(mut self, route: impl Into<String>, settings: RouteSettings) -> Self {
        self.routes.push((route.into(), settings));
        self
    }

    /// The stack. Fails on a route template that is not one (empty, no leading `/`), on one
    /// declared twice, and on a route setting for a part that is switched off.
    pub fn build(mut self) -> Result<VitalsLayer, VitalsError> {
        if let Some(findings) = self.findings.clone() {
            self.report_to(&findings);
        }
        if let Some(mode) = self.server_timing.take() {
            self.set_server_timing(&mode);
        }
        let mut seen = HashSet::new();
        for (route, settings) in std::mem::take(&mut self.routes) {
            if !route.starts_with('/') {
                return Err(VitalsError::InvalidRoute(route));
            }
            if !seen.insert(route.clone()) {
                return Err(VitalsError::DuplicateRoute(route));
            }
            self.apply(&route, settings)?;
        }
        // After the route table: a timeout the table's deadlines made gets it too.
        if let Some(labeler) = self.labeler.take() {
            self.set_route_labeler(&labeler);
        }
        Ok(VitalsLayer {
            #[cfg(feature = "latency")]
            latency: self.latency.as_ref().map(|l| l.registry().clone()),
            #[cfg(feature = "concurrency")]
            limit: self.limit.clone(),
            #[cfg(feature = "rate-limit")]
            rate_limit: self.rate_limit.clone(),
            #[cfg(feature = "response-cache-stack")]
            response_cache: self.response_cache.as_ref().map(ResponseCacheLayer::handle),
            findings: self.findings.clone(),
            plan: Arc::new(self.plan()),
        })
    }

    /// Hands `findings` to the parts that report to it.
    #[allow(unused_variables)] // Every reporting part may be compiled out.
    fn report_to(&mut self, findings: &Findings) {
        #[cfg(feature = "timing")]
        {
            self.timing = self
                .timing
                .take()
                .map(|l| l.with_findings(findings.clone()));
        }
        #[cfg(feature = "queries")]
        {
            self.queries = self
                .queries
                .take()
                .map(|l| l.with_findings(findings.clone()));
        }
        #[cfg(feature = "concurrency")]
        {
            self.limit = self.limit.take().map(|l| l.with_findings(findings.clone()));
        }
        #[cfg(feature = "rate-limit")]
        {
            self.rate_limit = self
                .rate_limit
                .take()
                .map(|l| l.with_findings(findings.clone()));
        }
    }

    /// Gives every part that adds to `Server-Timing` the same mode.
    #[allow(unused_variables)] // Every such part may be compiled out.
    fn set_server_timing(&mut self, mode: &ServerTimingMode) {
        #[cfg(feature = "trace-context")]
        {
            self.trace_context = self
                .trace_context
                .take()
                .map(|l| l.with_server_timing(mode.clone()));
        }
        #[cfg(feature = "timing")]
        {
            self.timing = self
                .timing
                .take()
                .map(|l| l.with_server_timing(mode.clone()));
        }
        #[cfg(feature = "queries")]
        {
            self.queries = self
                .queries
                .take()
                .map(|l| l.with_server_timing(mode.clone()));
        }
    }

    /// Gives every part the same route labeler.
    #[allow(unused_variables)] // Every part may be compiled out.
    fn set_route_labeler(&mut self, labeler: &RouteLabeler) {
        #[cfg(feature = "trace-context")]
        {
            self.trace_context = self
                .trace_context
                .take()
                .map(|l| l.with_route_labeler(labeler.clone()));
        }
        #[cfg(feature = "timing")]
        {
            self.timing = self
                .timing
                .take()
                .map(|l| l.with_route_labeler(labeler.clone()));
        }
        #[cfg(feature = "latency")]
        {
            self.latency = self
                .latency
                .take()
                .map(|l| l.with_route_labeler(labeler.clone()));
        }
        #[cfg(feature = "concurrency")]
        {
            self.limit = self
                .limit
                .take()
                .map(|l| l.with_route_labeler(labeler.clone()));
            self.timeout = self
                .timeout
                .take()
                .map(|l| l.with_route_labeler(labeler.clone()));
        }
        #[cfg(feature = "cache-headers")]
        {
            self.cache_headers = self
                .cache_headers
                .take()
                .map(|l| l.with_route_labeler(labeler.clone()));
        }
        #[cfg(feature = "rate-limit")]
        {
            self.rate_limit = self
                .rate_limit
                .take()
                .map(|l| l.with_route_labeler(labeler.clone()));
        }
        #[cfg(feature = "queries")]
        {
            self.queries = self
                .queries
                .take()
                .map(|l| l.with_route_labeler(labeler.clone()));
        }
    }

    /// Hands one route's settings to the parts that read them.
    #[allow(clippy::needless_pass_by_value, unused_variables)] // Fields move out per feature.
    fn apply(&mut self, route: &str, settings: RouteSettings) -> Result<(), VitalsError> {
        let off = |setting: &'static str, part: &'static str| VitalsError::PartOff {
            route: route.to_owned(),
            setting,
            part,
        };
        #[cfg(feature = "cache-headers")]
        if let Some(cache) = settings.cache {
            let global = self
                .cache_headers
                .take()
                .ok_or_else(|| off("cache", "cache headers"))?;
            let own = match cache {
                crate::routes::RouteCache::Policy(policy) => {
                    global.settings().clone().with_policy(policy)
                }
                crate::routes::RouteCache::Settings(settings) => settings,
            };
            self.cache_headers = Some(global.with_route(route, own));
        }
        #[cfg(feature = "concurrency")]
        {
            if let Some(limit) = settings.limit {
                let global = self
                    .limit
                    .take()
                    .ok_or_else(|| off("limit", "concurrency limit"))?;
                self.limit = Some(global.with_route(route, limit));
            }
            if let Some(timeout) = settings.timeout {
                let layer = self.timeout.take().unwrap_or_else(TimeoutLayer::per_route);
                self.timeout = Some(layer.with_route(route, timeout));
            }
        }
        #[cfg(feature = "rate-limit")]
        if let Some(quotas) = settings.rate_limit {
            let layer = self.rate_limit.take().unwrap_or_else(|| {
                let layer = RateLimitLayer::per_route();
                match &self.findings {
                    Some(findings) => layer.with_findings(findings.clone()),
                    None => layer,
                }
            });
            self.rate_limit = Some(layer.with_route(route, quotas));
        }
        #[cfg(feature = "idempotency-stack")]
        if let Some(own) = settings.idempotency {
            let layer = self.idempotency.take().unwrap_or_default();
            self.idempotency = Some(layer.with_route(route, own));
        }
        #[cfg(feature = "response-cache-stack")]
        if let Some(own) = settings.response_cache {
            let layer = self
                .response_cache
                .take()
                .unwrap_or_else(|| ResponseCacheLayer::new().only_listed_routes());
            self.response_cache = Some(layer.with_route(route, own));
        }
        #[cfg(feature = "queries")]
        if let Some(own) = settings.queries {
            let layer = self
                .queries
                .take()
                .ok_or_else(|| off("query budget or N+1 action", "queries"))?;
            self.queries = Some(layer.with_route(route, own));
        }
        #[cfg(feature = "timing")]
        if let Some(own) = settings.timing {
            let layer = self
                .timing
                .take()
                .ok_or_else(|| off("slow or blocking threshold", "timing"))?;
            self.timing = Some(layer.with_route(route, own));
        }
        Ok(())
    }

    /// The parts the fused service runs itself. The route labeler is the latency part's
    /// (`with_route_labeler` gives every part the same), else the trace-context part's, else
    /// axum's.
    fn plan(&self) -> Plan {
        #[allow(unused_mut)] // Every part may be compiled out.
        let mut labeler = vitals_core::route::RouteLabeler::new();
        #[cfg(feature = "trace-context")]
        if let Some(layer) = &self.trace_context {
            labeler = layer.part().route_labeler().clone();
        }
        #[cfg(feature = "latency")]
        if let Some(layer) = &self.latency {
            labeler = layer.route_labeler().clone();
        }
        #[allow(unused_mut)] // Only the response cache adds to the plan after it is made.
        let mut plan = Plan {
            labeler,
            #[cfg(feature = "trace-context")]
            trace: self.trace_context.as_ref().map(TraceContextLayer::part),
            #[cfg(feature = "timing")]
            timing: self.timing.as_ref().map(RequestTimingLayer::part),
            #[cfg(feature = "latency")]
            latency: self.latency.as_ref().map(LatencyLayer::part),
            #[cfg(feature = "queries")]
            queries: self.queries.as_ref().map(QueryTrackingLayer::part),
            #[cfg(feature = "rate-limit")]
            rate_limit: self.rate_limit.as_ref().map(RateLimitLayer::part),
            #[cfg(feature = "idempotency-stack")]
            idempotency: self.idempotency.as_ref().map(IdempotencyLayer::part),
            #[cfg(feature = "concurrency")]
            limit: self.limit.as_ref().map(ConcurrencyLimitLayer::part),
            #[cfg(feature = "concurrency")]
            deadline: self.timeout.as_ref().map(TimeoutLayer::part),
            #[cfg(feature = "cache-headers")]
            cache: self.cache_headers.as_ref().map(CacheHeadersLayer::part),
            #[cfg(feature = "response-cache-stack")]
            response_cache: self.response_cache.as_ref().map(ResponseCacheLayer::part),
            #[cfg(feature = "response-cache-stack")]
            refresh: None,
            background: false,
        };
        #[cfg(feature = "response-cache-stack")]
        if plan.response_cache.is_some() {
            plan.refresh = Some(Arc::new(plan.for_refresh()));
        }
        plan
    }
}

/// Why a [`VitalsBuilder`] refused its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VitalsError {
    /// A route template must start with `/` (as axum's do).
    InvalidRoute(String),
    /// The same route template was given settings twice.
    DuplicateRoute(String),
    /// A route set something a switched-off part would read.
    PartOff {
        /// The route template.
        route: String,
        /// The setting (`"limit"`, `"cache"`, …).
        setting: &'static str,
        /// The part that is off.
        part: &'static str,
    },
}

impl fmt::Display for VitalsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRoute(route) => write!(
                f,
                "route template {route:?} does not start with '/' (give it as axum's route)"
            ),
            Self::DuplicateRoute(route) => {
                write!(f, "route template {route:?} has settings twice")
            }
            Self::PartOff {
                route,
                setting,
                part,
            } => write!(
                f,
                "route {route:?} sets a {setting}, but the {part} part of the stack is off"
            ),
        }
    }
}

impl std::error::Error for VitalsError {}
