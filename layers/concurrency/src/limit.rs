//! `ConcurrencyLimitLayer`: a shared limit, a bounded queue, and `503` + `Retry-After` beyond.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::RETRY_AFTER;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
// tokio's clock: the real one in production, a paused one in simulations and tests.
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;
use vitals_core::findings::Findings;
use vitals_core::outcome::OutcomeHint;
use vitals_core::route::{RequestHead, RouteLabel, RouteLabeler};

use crate::adaptive::{AdaptiveLimit, Aimd, Signal};
use crate::body::{LayerResponse, LimitBody};

/// The default name of a limiter (its gauges' `vitals.limiter` label).
pub const DEFAULT_NAME: &str = "default";

/// The default longest wait in the queue.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);

/// The default `Retry-After` base: clients are told 1–2 s, spread so they do not come back at
/// once.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a limiter holds now and has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimiterSnapshot {
    /// The limit.
    pub limit: usize,
    /// Requests holding a permit (until their response body ends).
    pub in_flight: usize,
    /// Requests waiting for a permit.
    pub queued: usize,
    /// Requests admitted, directly or after waiting.
    pub admitted: u64,
    /// Requests refused: queue full, or waited too long.
    pub rejected: u64,
    /// The longest wait of an admitted request.
    pub longest_admitted_wait: Duration,
    /// Permits free right now (`limit - in_flight` when the books balance).
    pub available: usize,
}

/// The state every clone of a layer shares.
#[derive(Debug)]
struct Limiter {
    semaphore: Arc<Semaphore>,
    limit: usize,
    max_queued: usize,
    max_wait: Duration,
    retry_after: Duration,
    rejection: LayerResponse,
    queued: AtomicUsize,
    admitted: AtomicU64,
    rejected: AtomicU64,
    longest_wait_nanos: AtomicU64,
    jitter: AtomicU64,
    /// The limit in force (changes only when adaptive).
    current: AtomicUsize,
    /// Permits to forget as they come back, after the adaptive limit went down. Changes only
    /// under the adaptive lock.
    debt: AtomicUsize,
    adaptive: Option<Mutex<Aimd>>,
    /// The `vitals.limiter` label of the gauges.
    name: Cow<'static, str>,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Handles,
    /// Where refusals are counted per route for a live view, if anywhere.
    findings: Option<Findings>,
}

/// A held permit. Given back when dropped (the response body ended, the request was cancelled,
/// the handler panicked). With an adaptive limit, only [`completed`](Self::completed) reports
/// the request's latency first, and only for a representative request (see
/// [`crate::adaptive`]): a permit merely dropped says nothing about how long the work takes.
#[derive(Debug)]
pub(crate) struct Permit {
    held: Option<OwnedSemaphorePermit>,
    limiter: Arc<Limiter>,
    feedback: Option<Feedback>,
}

/// When and under which adaptive epoch the request was admitted.
#[derive(Debug)]
struct Feedback {
    admitted: Instant,
    epoch: u64,
}

impl Permit {
    fn new(permit: OwnedSemaphorePermit, limiter: &Arc<Limiter>) -> Self {
        let feedback = limiter.adaptive.as_ref().map(|aimd| Feedback {
            admitted: Instant::now(),
            epoch: lock(aimd).epoch(),
        });
        Self {
            held: Some(permit),
            limiter: Arc::clone(limiter),
            feedback,
        }
    }

    /// A permit granted to a request that is refused anyway (it waited past `max_wait`): it goes
    /// back through the books without a latency sample.
    fn unused(permit: OwnedSemaphorePermit, limiter: &Arc<Limiter>) -> Self {
        Self {
            held: Some(permit),
            limiter: Arc::clone(limiter),
            feedback: None,
        }
    }

    /// The request timed out inside: a congestion signal rather than a latency.
    pub(crate) fn timed_out(&mut self) {
        if let Some(feedback) = self.feedback.take() {
            self.limiter.feedback(Signal::TimedOut, feedback.epoch);
        }
    }

    /// The answer is not representative of the work the limit protects (not a `2xx` of the
    /// handler's): its latency is no sample, however its body ends.
    pub(crate) fn unrepresentative(&mut self) {
        self.feedback = None;
    }

    /// The response body produced its last byte: the time since admission is a latency sample
    /// (unless the answer was unrepresentative or timed out), then the permit goes back.
    pub(crate) fn completed(mut self) {
        let sample = self
            .feedback
            .take()
            .map(|feedback| (Signal::Latency(feedback.admitted.elapsed()), feedback.epoch));
        self.release(sample);
    }

    fn release(&mut self, sample: Option<(Signal, u64)>) {
        let Some(permit) = self.held.take() else {
            return;
        };
        self.limiter.give_back(permit, sample);
        #[cfg(feature = "metrics")]
        self.limiter
            .metrics
            .gauges(&self.limiter.name, &self.limiter.snapshot());
    }
}

impl Drop for Permit {
    /// A permit dropped without [`completed`](Permit::completed) — the request cancelled, the
    /// body dropped before its end or failed, the handler failed or panicked — goes back
    /// without a sample: a client that hung up after a microsecond must not teach the adaptive
    /// limit that requests take a microsecond.
    fn drop(&mut self) {
        self.release(None);
    }
}

fn lock(aimd: &Mutex<Aimd>) -> std::sync::MutexGuard<'_, Aimd> {
    aimd.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Limiter {
    /// Feeds the adaptive limit and resizes the semaphore to what it answers.
    fn feedback(&self, signal: Signal, epoch: u64) {
        let Some(aimd) = &self.adaptive else { return };
        self.resize(&mut lock(aimd), signal, epoch);
    }

    /// Returns a permit. With an adaptive limit that went down while permits were out, the
    /// permit pays that debt (it is forgotten) instead of freeing a slot. Resizing and paying
    /// happen under one lock: a permit released between another thread's debt check and its
    /// shrink would otherwise leave the books one permit over the limit.
    fn give_back(&self, permit: OwnedSemaphorePermit, sample: Option<(Signal, u64)>) {
        let Some(aimd) = &self.adaptive else {
            drop(permit);
            return;
        };
        let mut aimd = lock(aimd);
        if let Some((signal, epoch)) = sample {
            self.resize(&mut aimd, signal, epoch);
        }
        let debt = self.debt.load(Ordering::Acquire);
        if debt > 0 {
            self.debt.store(debt - 1, Ordering::Release);
            permit.forget();
        } else {
            drop(permit);
        }
    }

    /// Asks the adaptive limit for its answer to one sample and moves the semaphore to it.
    /// Callers hold the adaptive lock, so `current` and `debt` only change under it.
    fn resize(&self, aimd: &mut Aimd, signal: Signal, epoch: u64) {
        let wanted = aimd.on_sample(signal, epoch);
        let current = self.current.load(Ordering::Acquire);
        if wanted > current {
            // Cancel debt first: those permits were never forgotten.
            let debt = self.debt.load(Ordering::Acquire);
            let cancelled = debt.min(wanted - current);
            self.debt.store(debt - cancelled, Ordering::Release);
            self.semaphore.add_permits(wanted - current - cancelled);
        } else if wanted < current {
            let shrink = current - wanted;
            let forgotten = self.semaphore.forget_permits(shrink);
            self.debt.fetch_add(shrink - forgotten, Ordering::AcqRel);
        }
        self.current.store(wanted, Ordering::Release);
    }

    fn snapshot(&self) -> LimiterSnapshot {
        LimiterSnapshot {
            limit: self.current.load(Ordering::Acquire),
            // Permits owed (the adaptive limit went down while they were out) are still held.
            in_flight: (self.current.load(Ordering::Acquire) + self.debt.load(Ordering::Acquire))
                .saturating_sub(self.semaphore.available_permits()),
            queued: self.queued.load(Ordering::Relaxed),
            admitted: self.admitted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            longest_admitted_wait: Duration::from_nanos(
                self.longest_wait_nanos.load(Ordering::Relaxed),
            ),
            available: self.semaphore.available_permits(),
        }
    }

    fn admitted_after(&self, waited: Duration, route: Option<&RouteLabel>) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.admitted(&self.name, &self.snapshot(), route);
        #[cfg(not(feature = "metrics"))]
        let _ = route;
        if !waited.is_zero() {
            let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.longest_wait_nanos.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// The refusal: 503, `Retry-After` spread over [base, 2 × base] whole seconds.
    ///
    /// A refusal is no signal for an adaptive limit: it is the limit doing its job, not the
    /// server slowing down. Counted as congestion, refusals (and low-priority sheds) would lower
    /// the limit, which refuses more, which lowers it further; during a probe they would use up
    /// the samples meant for admitted requests, so the baseline would never be measured afresh.
    fn reject<B>(&self, route: Option<&RouteLabel>) -> Response<LimitBody<B>>
    where
        B: Body,
        B::Data: From<Bytes>,
    {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        if let Some(findings) = &self.findings {
            findings
                .count_rejection(route.map_or(vitals_core::route::UNMATCHED, RouteLabel::as_str));
        }
        #[cfg(feature = "metrics")]
        self.metrics.rejected(&self.name, &self.snapshot(), route);
        #[cfg(not(feature = "metrics"))]
        let _ = route;
        let mut response = self.rejection.to_response(Some(OutcomeHint::Rejected));
        // Saturating: a base near `u64::MAX` seconds says "not soon", it must not overflow.
        let base = self.retry_after.as_secs().max(1);
        let seconds = base.saturating_add(self.next_jitter() % base.saturating_add(1));
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
        response
    }

    /// A cheap pseudo-random number (xorshift on a shared state): jitter, not security.
    fn next_jitter(&self) -> u64 {
        let mut x = self
            .jitter
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
}

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

/// Route templates with a limiter of their own, and that limiter's request classes.
type RouteLimits = HashMap<Box<str>, (Arc<Limiter>, Arc<Classes>)>;

/// A rule that picks requests out by their head.
type Rule = Arc<dyn Fn(RequestHead<'_>) -> bool + Send + Sync>;

/// Requests treated apart: some bypass the limit, some are shed first.
#[derive(Clone, Default)]
struct Classes {
    bypass: Option<Rule>,
    low_priority: Option<(Rule, f64)>,
}

impl std::fmt::Debug for Classes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classes")
            .field("bypass", &self.bypass.is_some())
            .field(
                "low_priority_share",
                &self.low_priority.as_ref().map(|(_, s)| *s),
            )
            .finish()
    }
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

/// What a limiter is built from.
struct Settings {
    limit: usize,
    max_queued: usize,
    max_wait: Duration,
    retry_after: Duration,
    rejection: LayerResponse,
    adaptive: Option<Aimd>,
    name: Cow<'static, str>,
    findings: Option<Findings>,
}

impl Settings {
    fn new(limit: usize, max_queued: usize, adaptive: Option<Aimd>) -> Self {
        Self {
            limit,
            max_queued,
            max_wait: DEFAULT_MAX_WAIT,
            retry_after: DEFAULT_RETRY_AFTER,
            rejection: default_rejection(),
            adaptive,
            name: Cow::Borrowed(DEFAULT_NAME),
            findings: None,
        }
    }
}

fn default_rejection() -> LayerResponse {
    LayerResponse::json(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is at capacity, retry later",
    )
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            limiter: Arc::clone(&self.limiter),
            classes: Arc::clone(&self.classes),
            labeler: self.labeler.clone(),
            routes: Arc::clone(&self.routes),
        }
    }
}

/// The service made by [`ConcurrencyLimitLayer`].
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
    classes: Arc<Classes>,
    labeler: RouteLabeler,
    routes: Arc<RouteLimits>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ConcurrencyLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body,
    ResBody::Data: From<Bytes> + Buf,
{
    type Response = Response<LimitBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Capacity is decided per request in `call`: routers call services with `oneshot`, so
        // back-pressure through `poll_ready` would never reach them.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The route picks a route's own limiter, and labels the `metrics` output.
        let route = (cfg!(feature = "metrics")
            || !self.routes.is_empty()
            || self.limiter.findings.is_some())
        .then(|| self.labeler.label(&request));
        let (limiter, classes) = match route
            .as_ref()
            .and_then(|route| self.routes.get(route.as_str()))
        {
            Some((limiter, classes)) => (limiter, classes),
            None => (&self.limiter, &self.classes),
        };
        let route = route.filter(|_| cfg!(feature = "metrics") || limiter.findings.is_some());
        let mut low_priority = false;
        if classes.bypass.is_some() || classes.low_priority.is_some() {
            let head = RequestHead::of(&request);
            if classes.bypass.as_ref().is_some_and(|rule| rule(head)) {
                return ResponseFuture::unlimited(self.inner.call(request));
            }
            if let Some((rule, share)) = &classes.low_priority
                && rule(head)
            {
                low_priority = true;
                let snapshot = limiter.snapshot();
                #[allow(clippy::cast_precision_loss)]
                let crowded = snapshot.in_flight as f64 >= share * snapshot.limit as f64;
                if crowded {
                    return ResponseFuture::rejected(limiter, route);
                }
            }
        }
        if let Ok(permit) = Arc::clone(&limiter.semaphore).try_acquire_owned() {
            limiter.admitted_after(Duration::ZERO, route.as_ref());
            let permit = Permit::new(permit, limiter);
            return ResponseFuture::running(self.inner.call(request), permit);
        }
        let slot = if low_priority {
            None
        } else {
            QueueSlot::take(limiter)
        };
        let Some(guard) = slot else {
            return ResponseFuture::rejected(limiter, route);
        };
        // The clone that is ready goes with the request; this service keeps the fresh one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let semaphore = Arc::clone(&limiter.semaphore);
        let acquire = tokio::time::timeout(limiter.max_wait, semaphore.acquire_owned());
        ResponseFuture::waiting(Box::pin(acquire), inner, request, guard, route)
    }
}

/// A place in the queue, given back when the request leaves it (admitted, refused, or gone).
struct QueueSlot {
    limiter: Arc<Limiter>,
    since: Instant,
}

impl QueueSlot {
    fn take(limiter: &Arc<Limiter>) -> Option<Self> {
        let taken = limiter
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < limiter.max_queued).then_some(queued + 1)
            })
            .is_ok();
        #[cfg(feature = "metrics")]
        limiter.metrics.gauges(&limiter.name, &limiter.snapshot());
        taken.then(|| Self {
            limiter: Arc::clone(limiter),
            since: Instant::now(),
        })
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.limiter.queued.fetch_sub(1, Ordering::AcqRel);
        #[cfg(feature = "metrics")]
        self.limiter
            .metrics
            .gauges(&self.limiter.name, &self.limiter.snapshot());
    }
}

type Acquire = Pin<
    Box<
        dyn Future<
                Output = Result<
                    Result<OwnedSemaphorePermit, tokio::sync::AcquireError>,
                    tokio::time::error::Elapsed,
                >,
            > + Send,
    >,
>;

pin_project! {
    /// The response future of [`ConcurrencyLimit`].
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Waiting {
            acquire: Acquire,
            service: S,
            request: Option<Req>,
            slot: Option<QueueSlot>,
            permit: Option<Permit>,
            route: Option<RouteLabel>,
        },
        Running {
            #[pin]
            future: S::Future,
            permit: Option<Permit>,
        },
        Refused {
            limiter: Option<Arc<Limiter>>,
            route: Option<RouteLabel>,
        },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    fn running(future: S::Future, permit: Permit) -> Self {
        Self {
            state: State::Running {
                future,
                permit: Some(permit),
            },
        }
    }

    fn unlimited(future: S::Future) -> Self {
        Self {
            state: State::Running {
                future,
                permit: None,
            },
        }
    }

    fn rejected(limiter: &Arc<Limiter>, route: Option<RouteLabel>) -> Self {
        Self {
            state: State::Refused {
                limiter: Some(Arc::clone(limiter)),
                route,
            },
        }
    }

    fn waiting(
        acquire: Acquire,
        service: S,
        request: Req,
        slot: QueueSlot,
        route: Option<RouteLabel>,
    ) -> Self {
        Self {
            state: State::Waiting {
                acquire,
                service,
                request: Some(request),
                slot: Some(slot),
                permit: None,
                route,
            },
        }
    }
}

impl<S, Req, ResBody> Future for ResponseFuture<S, Req>
where
    S: Service<Req, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes> + Buf,
{
    type Output = Result<Response<LimitBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused { limiter, route } => {
                    let Some(limiter) = limiter.take() else {
                        panic!("vitals_concurrency::ResponseFuture polled after completion");
                    };
                    return Poll::Ready(Ok(limiter.reject(route.as_ref())));
                }
                StateProj::Waiting {
                    acquire,
                    service,
                    request,
                    slot,
                    permit,
                    route,
                } => {
                    if permit.is_none() {
                        let acquired = ready!(acquire.as_mut().poll(cx));
                        let Some(taken) = slot.take() else {
                            panic!("vitals_concurrency::ResponseFuture polled after completion");
                        };
                        let waited = taken.since.elapsed();
                        let limiter = Arc::clone(&taken.limiter);
                        drop(taken);
                        match acquired {
                            // Measured here, not trusted to the timer: no request is admitted
                            // after waiting longer than the limit allows.
                            Ok(Ok(granted)) if waited <= limiter.max_wait => {
                                limiter.admitted_after(waited, route.as_ref());
                                *permit = Some(Permit::new(granted, &limiter));
                            }
                            Ok(Ok(granted)) => {
                                // Too late to admit; the permit still goes back through the books.
                                drop(Permit::unused(granted, &limiter));
                                return Poll::Ready(Ok(limiter.reject(route.as_ref())));
                            }
                            _ => return Poll::Ready(Ok(limiter.reject(route.as_ref()))),
                        }
                    }
                    ready!(service.poll_ready(cx))?;
                    let Some(request) = request.take() else {
                        panic!("vitals_concurrency::ResponseFuture polled after completion");
                    };
                    let future = service.call(request);
                    let permit = permit.take();
                    this.state.set(State::Running { future, permit });
                }
                StateProj::Running { future, permit } => {
                    let response = ready!(future.poll(cx))?;
                    let mut permit = permit.take();
                    if let Some(permit) = permit.as_mut() {
                        match OutcomeHint::of(&response) {
                            Some(OutcomeHint::Timeout) => permit.timed_out(),
                            None if response.status().is_success() => {}
                            // Only the handler's own success measures the work the limit
                            // protects: a 304, a 404 or a fast error is cheap, and a refusal
                            // by an inner limiter is no work at all.
                            _ => permit.unrepresentative(),
                        }
                    }
                    return Poll::Ready(Ok(response.map(|body| LimitBody::inner(body, permit))));
                }
            }
        }
    }
}
