//! What the fused service runs: the enabled parts, built once by `VitalsBuilder::build`.

use std::time::Instant;

use http::{HeaderMap, Request};
#[cfg(feature = "concurrency")]
use vitals_concurrency::part::Admission;
#[cfg(any(feature = "concurrency", feature = "rate-limit"))]
use vitals_core::route::RouteLabel;
use vitals_core::route::RouteLabeler;
use vitals_core::server_timing::ServerTiming;

#[cfg(feature = "concurrency")]
use crate::admission::DeadlinePart;
use crate::state::RequestState;

/// The parts of one [`VitalsLayer`](crate::VitalsLayer), each `None` when switched off.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plan {
    pub(crate) labeler: RouteLabeler,
    #[cfg(feature = "trace-context")]
    pub(crate) trace: Option<vitals_trace_context::part::TracePart>,
    #[cfg(feature = "timing")]
    pub(crate) timing: Option<vitals_timing::part::TimingPart>,
    #[cfg(feature = "latency")]
    pub(crate) latency: Option<vitals_latency::part::LatencyPart>,
    #[cfg(feature = "queries")]
    pub(crate) queries: Option<vitals_queries::part::QueriesPart>,
    #[cfg(feature = "rate-limit")]
    pub(crate) rate_limit: Option<vitals_rate_limit::part::RateLimitPart>,
    #[cfg(feature = "concurrency")]
    pub(crate) limit: Option<vitals_concurrency::part::LimitPart>,
    #[cfg(feature = "concurrency")]
    pub(crate) deadline: Option<vitals_concurrency::deadline::DeadlinePart>,
    #[cfg(feature = "cache-headers")]
    pub(crate) cache: Option<vitals_cache_headers::part::CachePart>,
    #[cfg(feature = "idempotency-stack")]
    pub(crate) idempotency: Option<vitals_idempotency::part::IdempotencyPart>,
    #[cfg(feature = "response-cache-stack")]
    pub(crate) response_cache: Option<vitals_response_cache::part::ResponseCachePart>,
    /// What a stale answer's background refresh runs: the parts inside the response cache.
    #[cfg(feature = "response-cache-stack")]
    pub(crate) refresh: Option<std::sync::Arc<Plan>>,
    /// A plan for requests no client waits on (the refresh's): no `Server-Timing` collector,
    /// so nothing is rendered into a response that is stored.
    pub(crate) background: bool,
}

/// What was decided before the parts started: the route, the arrival time, and the rate
/// limit's decision once its store (Redis) answered.
#[cfg(feature = "rate-limit")]
pub(crate) struct Early {
    pub(crate) route: RouteLabel,
    pub(crate) arrived: Option<Instant>,
    pub(crate) decision: vitals_rate_limit::part::Decision,
}

/// Nothing is decided early without the rate limit.
#[cfg(not(feature = "rate-limit"))]
pub(crate) enum Early {}

/// The rate limit's decision, when taken before the parts start.
#[cfg(feature = "rate-limit")]
type EarlyDecision = vitals_rate_limit::part::Decision;
#[cfg(not(feature = "rate-limit"))]
type EarlyDecision = std::convert::Infallible;

/// What the limit decided on a request, with (for a queued request) what its deadline will be
/// read from once admitted.
#[cfg(feature = "concurrency")]
pub(crate) type Admitting = Option<(Admission, Option<(DeadlinePart, RouteLabel)>)>;
#[cfg(not(feature = "concurrency"))]
pub(crate) type Admitting = Option<std::convert::Infallible>;

/// What the parts inside the rate limit start from: the route and the `Server-Timing`
/// collector. Kept while a request with an `Idempotency-Key` is read and claimed.
pub(crate) struct Inside {
    pub(crate) route: vitals_core::route::RouteLabel,
    pub(crate) collector: Option<ServerTiming>,
}

/// A request with an `Idempotency-Key`, whose body is read and key claimed before the parts
/// inside the idempotency part start.
#[cfg(feature = "idempotency-stack")]
pub(crate) type KeyedRequest = (vitals_idempotency::part::Keyed, Inside);
#[cfg(not(feature = "idempotency-stack"))]
pub(crate) type KeyedRequest = std::convert::Infallible;

/// A request the parts started on: their state, and what was decided — the rate limit's
/// refusal, the idempotency part's answer or claim to make, or where the parts inside start.
pub(crate) struct Started {
    pub(crate) state: Box<RequestState>,
    /// The rate limit's refusal: answered at once, nothing inside it started.
    #[cfg(feature = "rate-limit")]
    pub(crate) rate_refusal: Option<vitals_rate_limit::part::Refusal>,
    /// The idempotency part's answer from the head (a missing or malformed key).
    #[cfg(feature = "idempotency-stack")]
    pub(crate) key_refusal: Option<http::Response<bytes::Bytes>>,
    /// A request with a key: nothing inside the idempotency part started yet.
    pub(crate) keyed: Option<KeyedRequest>,
    /// Neither answered nor keyed: the parts from the response cache inward start next.
    pub(crate) inside: Option<Inside>,
}

impl Plan {
    /// A request arrived: every enabled part starts on it, outermost first, as
    /// docs/architecture.md orders them — trace context, timing, latency, the rate limit,
    /// idempotency; then, unless one of those answered or a key is to be claimed first, the
    /// parts from the response cache inward (`future::inward`). The route is labelled once,
    /// and the `Server-Timing` decision made once.
    pub(crate) fn start<B>(&self, request: &mut Request<B>, early: Option<Early>) -> Started {
        #[allow(unused_variables)] // The arrival is read by the timing and latency parts only.
        let (start, route, decided) = self.arrival(request, early);
        let server_timing = self.attach_server_timing(request);
        // The state is allocated first and each part's state written into its place: built
        // on the stack and boxed at the end, the whole state (and each part's) was copied.
        // Made by `Box::default`, which writes the empty state in the allocation: built on the
        // stack and boxed (`Box::new`), its 1,448 bytes were copied.
        let mut state = Box::<RequestState>::default();
        #[cfg(feature = "trace-context")]
        if let Some(part) = &self.trace {
            let shown = server_timing
                .as_ref()
                .filter(|(_, allowed)| *allowed)
                .map(|(timing, _)| timing);
            // `insert`, not `= Some(…)`: the state is then written in place, not built beside
            // it and copied (measured; the same below).
            let _ = state.scope.trace.insert(part.start(request, &route, shown));
        }
        #[cfg(feature = "timing")]
        if let (Some(part), Some(start)) = (&self.timing, start) {
            // Only the queries part, inside, adds to the collector: no reference taken without it.
            #[cfg(feature = "queries")]
            let collector = server_timing
                .as_ref()
                .filter(|_| self.queries.is_some())
                .map(|(timing, _)| timing.clone());
            #[cfg(not(feature = "queries"))]
            let collector = None;
            let _ = state
                .parts
                .timing
                .insert(part.start(request, route.clone(), start, collector));
        }
        #[cfg(feature = "latency")]
        if let (Some(part), Some(start)) = (&self.latency, start) {
            let _ = state
                .parts
                .latency
                .insert(part.start(request.method(), route.clone(), start));
        }
        // A request over its quota never reaches the parts inside the rate limit.
        #[cfg(feature = "rate-limit")]
        let (rate_limit, rate_refusal) = self.check_quota(request, &route, decided);
        #[cfg(feature = "rate-limit")]
        let within_quota = rate_refusal.is_none();
        #[cfg(not(feature = "rate-limit"))]
        let (rate_limit, within_quota) = (None, true);
        state.parts.rate_limit = rate_limit;
        let collector = server_timing.as_ref().map(|(timing, _)| timing.clone());
        state.parts.server_timing = server_timing
            .map(|(timing, _)| timing)
            .filter(ServerTiming::is_owner);
        let mut started = Started {
            state,
            #[cfg(feature = "rate-limit")]
            rate_refusal,
            #[cfg(feature = "idempotency-stack")]
            key_refusal: None,
            keyed: None,
            inside: None,
        };
        if !within_quota {
            return started;
        }
        let inside = Inside { route, collector };
        #[cfg(feature = "idempotency-stack")]
        if let Some(part) = self
            .idempotency
            .as_ref()
            .filter(|part| part.may_apply(request.method(), request.headers()))
        {
            use vitals_idempotency::part::Arrival;
            match part.arrival(vitals_core::route::RequestHead::of(request), &inside.route) {
                Arrival::Pass => {}
                Arrival::Answer(refusal) => {
                    started.key_refusal = Some(refusal);
                    return started;
                }
                Arrival::Collect(keyed) => {
                    started.keyed = Some((keyed, inside));
                    return started;
                }
            }
        }
        started.inside = Some(inside);
        started
    }

    /// The parts inside the response cache start: the limit decides; for an admitted
    /// request, the deadline, cache headers and queries start too.
    #[allow(unused_variables)] // Every inner part may be compiled out.
    pub(crate) fn start_inside<B>(
        &self,
        state: &mut RequestState,
        request: &mut Request<B>,
        inside: Inside,
    ) -> Admitting {
        let Inside { route, collector } = inside;
        // A refused request never reaches the parts inside the limit.
        #[cfg(feature = "concurrency")]
        let admission = self
            .limit
            .as_ref()
            .map(|part| part.admit(request, Some(&route)));
        #[cfg(feature = "concurrency")]
        let admitted = !matches!(admission, Some(Admission::Refused(_)));
        #[cfg(not(feature = "concurrency"))]
        let admitted = true;
        #[cfg(feature = "cache-headers")]
        if let Some(part) = self.cache.as_ref().filter(|_| admitted) {
            let _ = state.parts.cache.insert(part.start(request, Some(&route)));
        }
        #[cfg(feature = "concurrency")]
        let later_deadline = {
            let (deadline, later) = self.deadline(admission.as_ref(), &route);
            state.parts.deadline = deadline;
            later
        };
        #[cfg(feature = "queries")]
        if let Some(part) = self.queries.as_ref().filter(|_| admitted) {
            let queries = state
                .parts
                .queries
                .insert(part.start(request, route, collector));
            state.scope.attach_queries(queries);
        }
        #[cfg(feature = "concurrency")]
        return admission.map(|admission| (admission, later_deadline));
        #[cfg(not(feature = "concurrency"))]
        None
    }

    /// When the request arrived, its route, and the rate limit's decision: from what was
    /// decided early, or now.
    #[allow(clippy::type_complexity)] // Three plain values, named where they are read.
    fn arrival<B>(
        &self,
        request: &Request<B>,
        early: Option<Early>,
    ) -> (
        Option<Instant>,
        vitals_core::route::RouteLabel,
        Option<EarlyDecision>,
    ) {
        match early {
            #[cfg(feature = "rate-limit")]
            Some(early) => (early.arrived, early.route, Some(early.decision)),
            #[cfg(not(feature = "rate-limit"))]
            Some(never) => match never {},
            None => (
                self.uses_clock().then(Instant::now),
                self.labeler.label(request),
                None,
            ),
        }
    }

    /// One `Server-Timing` decision for every part, and the collector (this service renders
    /// the one it inserts), with whether the client may see it.
    fn attach_server_timing<B>(&self, request: &mut Request<B>) -> Option<(ServerTiming, bool)> {
        if self.background || !self.uses_server_timing() {
            return None;
        }
        let allowed = self.shows_server_timing(request.headers());
        ServerTiming::attach_if(request.extensions_mut(), allowed).map(|timing| (timing, allowed))
    }

    /// The rate limit's decision: the headers for an allowed request's response, or the
    /// refusal.
    #[cfg(feature = "rate-limit")]
    fn check_quota<B>(
        &self,
        request: &Request<B>,
        route: &RouteLabel,
        decided: Option<vitals_rate_limit::part::Decision>,
    ) -> (
        Option<vitals_rate_limit::part::Grant>,
        Option<vitals_rate_limit::part::Refusal>,
    ) {
        use vitals_rate_limit::part::Decision;
        let decision = decided.or_else(|| {
            self.rate_limit
                .as_ref()
                .map(|part| part.check(request, Some(route)))
        });
        match decision {
            // A store's answer is awaited before the parts start (`early_decision`), so a
            // pending check is not seen here.
            None | Some(Decision::Unlimited | Decision::Pending(_)) => (None, None),
            Some(Decision::Allowed(grant)) => (Some(grant), None),
            Some(Decision::Refused(refusal)) => (None, Some(refusal)),
        }
    }

    /// For a rate limit whose quotas live in Redis: the route, the arrival time and the
    /// decision, taken before the parts start, so a request that must wait for Redis waits
    /// before anything is started for it (`Err`: the check to await). `None` for an
    /// in-process rate limit (decided inside [`start`](Self::start)) or none.
    #[cfg(feature = "rate-limit")]
    pub(crate) fn early_decision<B>(
        &self,
        request: &Request<B>,
    ) -> Option<Result<Early, (vitals_rate_limit::part::Checking, Early)>> {
        use vitals_rate_limit::part::Decision;
        let part = self.rate_limit.as_ref().filter(|part| part.is_remote())?;
        let arrived = self.uses_clock().then(Instant::now);
        let route = self.labeler.label(request);
        let decision = part.check(request, Some(&route));
        Some(match decision {
            Decision::Pending(checking) => Err((
                checking,
                Early {
                    route,
                    arrived,
                    decision: Decision::Unlimited,
                },
            )),
            decision => Ok(Early {
                route,
                arrived,
                decision,
            }),
        })
    }

    /// The deadline of a request the limit decided on: counted from now when admitted at once
    /// (or when there is no limit); when it waits in the queue, what to start it from once
    /// admitted.
    #[cfg(feature = "concurrency")]
    #[allow(clippy::type_complexity)] // Both halves are named where they are used.
    fn deadline(
        &self,
        admission: Option<&Admission>,
        route: &RouteLabel,
    ) -> (
        Option<crate::admission::Deadline>,
        Option<(DeadlinePart, RouteLabel)>,
    ) {
        let Some(part) = &self.deadline else {
            return (None, None);
        };
        match admission {
            Some(Admission::Admitted(_)) | None => (part.start(Some(route)), None),
            Some(Admission::Queued(_)) => (None, Some((part.clone(), route.clone()))),
            Some(Admission::Refused(_)) => (None, None),
        }
    }

    /// Whether every part is off: the service then passes requests through untouched.
    pub(crate) fn is_empty(&self) -> bool {
        let on = self.uses_clock() || self.uses_server_timing();
        #[cfg(feature = "concurrency")]
        let on = on || self.limit.is_some() || self.deadline.is_some();
        #[cfg(feature = "rate-limit")]
        let on = on || self.rate_limit.is_some();
        #[cfg(feature = "cache-headers")]
        let on = on || self.cache.is_some();
        #[cfg(feature = "idempotency-stack")]
        let on = on || self.idempotency.is_some();
        #[cfg(feature = "response-cache-stack")]
        let on = on || self.response_cache.is_some();
        !on
    }

    /// The plan of a stale answer's background refresh: the parts inside the response cache
    /// (the limit, the deadline, cache headers, queries), so the refreshed response is made
    /// and stored as a fill's is — with a permit, under the deadline, its ETag computed, its
    /// queries counted.
    #[cfg(feature = "response-cache-stack")]
    pub(crate) fn for_refresh(&self) -> Self {
        Self {
            labeler: self.labeler.clone(),
            #[cfg(feature = "queries")]
            queries: self.queries.clone(),
            #[cfg(feature = "concurrency")]
            limit: self.limit.clone(),
            #[cfg(feature = "concurrency")]
            deadline: self.deadline.clone(),
            #[cfg(feature = "cache-headers")]
            cache: self.cache.clone(),
            background: true,
            ..Self::default()
        }
    }

    /// Whether any part reads the clock when the request arrives.
    pub(crate) fn uses_clock(&self) -> bool {
        let used = false;
        #[cfg(feature = "timing")]
        let used = used || self.timing.is_some();
        #[cfg(feature = "latency")]
        let used = used || self.latency.is_some();
        used
    }

    /// Whether any part adds to `Server-Timing`.
    pub(crate) fn uses_server_timing(&self) -> bool {
        let used = false;
        #[cfg(feature = "trace-context")]
        let used = used || self.trace.is_some();
        #[cfg(feature = "timing")]
        let used = used || self.timing.is_some();
        #[cfg(feature = "queries")]
        let used = used || self.queries.is_some();
        used
    }

    /// Whether the client of `headers` may see `Server-Timing`: when every part that adds to it
    /// allows it (the most restrictive mode wins, as with the layers stacked).
    #[allow(unused_variables)] // Every part may be compiled out.
    pub(crate) fn shows_server_timing(&self, headers: &HeaderMap) -> bool {
        let allowed = true;
        #[cfg(feature = "trace-context")]
        let allowed = allowed
            && self
                .trace
                .as_ref()
                .is_none_or(|part| part.shows_server_timing(headers));
        #[cfg(feature = "timing")]
        let allowed = allowed
            && self
                .timing
                .as_ref()
                .is_none_or(|part| part.shows_server_timing(headers));
        #[cfg(feature = "queries")]
        let allowed = allowed
            && self
                .queries
                .as_ref()
                .is_none_or(|part| part.shows_server_timing(headers));
        allowed
    }
}
