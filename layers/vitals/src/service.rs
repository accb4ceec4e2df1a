//! `VitalsService`: the one service [`VitalsLayer`](crate::VitalsLayer) builds — the route
//! labelled once, one request state, every enabled part called at each phase.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use vitals_core::server_timing::ServerTiming;

#[cfg(feature = "concurrency")]
use vitals_concurrency::part::Admission;

#[cfg(feature = "concurrency")]
use crate::admission::Waiting;
use crate::body::VitalsBody;
use crate::future::{InFlight, ResponseFuture};
use crate::plan::Plan;

/// The service made by [`VitalsLayer`](crate::VitalsLayer): the trace-context, timing,
/// latency, concurrency-limit and queries parts run in one pass around `S` (the deadline and
/// the cache headers, inner layers).
#[derive(Clone, Debug)]
pub struct VitalsService<S> {
    inner: S,
    plan: Arc<Plan>,
}

impl<S> VitalsService<S> {
    pub(crate) fn new(inner: S, plan: Arc<Plan>) -> Self {
        Self { inner, plan }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VitalsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body,
    ResBody::Data: From<Bytes> + Buf,
{
    type Response = Response<VitalsBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let plan = &*self.plan;
        #[allow(unused_variables)] // Read by the timing and latency parts only.
        let start = plan.uses_clock().then(Instant::now);
        let route = plan.labeler.label(&request);
        // One decision for every part; the collector this service inserts, it renders.
        let server_timing = if plan.uses_server_timing() {
            let allowed = plan.shows_server_timing(request.headers());
            ServerTiming::attach_if(request.extensions_mut(), allowed)
                .map(|timing| (timing, allowed))
        } else {
            None
        };
        #[cfg(feature = "trace-context")]
        let trace = plan.trace.as_ref().map(|part| {
            let shown = server_timing
                .as_ref()
                .filter(|(_, allowed)| *allowed)
                .map(|(timing, _)| timing);
            part.start(&mut request, &route, shown)
        });
        #[cfg(feature = "timing")]
        let timing = plan.timing.as_ref().zip(start).map(|(part, start)| {
            let collector = server_timing.as_ref().map(|(timing, _)| timing.clone());
            part.start(&mut request, route.clone(), start, collector)
        });
        #[cfg(feature = "latency")]
        let latency = plan
            .latency
            .as_ref()
            .zip(start)
            .map(|(part, start)| part.start(request.method(), route.clone(), start));
        // The limit decides before the parts inside it start: a refused request never reaches
        // the queries part (nor the deadline and cache headers, inner layers).
        #[cfg(feature = "concurrency")]
        let admission = plan
            .limit
            .as_ref()
            .map(|part| part.admit(&request, Some(&route)));
        #[cfg(feature = "concurrency")]
        let refused = matches!(admission, Some(Admission::Refused(_)));
        #[cfg(not(feature = "concurrency"))]
        let refused = false;
        #[cfg(feature = "queries")]
        let queries = plan.queries.as_ref().filter(|_| !refused).map(|part| {
            let collector = server_timing.as_ref().map(|(timing, _)| timing.clone());
            part.start(&request, route, collector)
        });
        #[cfg(not(feature = "queries"))]
        let _ = (route, refused);
        #[allow(unused_mut)] // Only the queries part may open a span of its own.
        let mut span = None;
        #[cfg(feature = "queries")]
        if let Some(queries) = &queries {
            #[cfg(feature = "trace-context")]
            let request_span = trace
                .as_ref()
                .map(vitals_trace_context::part::TraceInFlight::span);
            #[cfg(not(feature = "trace-context"))]
            let request_span: Option<&tracing::Span> = None;
            match request_span {
                Some(request_span) => queries.attach_to(request_span),
                None => span = Some(queries.own_span()),
            }
        }
        #[allow(unused_mut)] // Set by the limit only.
        let mut state = InFlight {
            #[cfg(feature = "trace-context")]
            trace,
            span,
            #[cfg(feature = "timing")]
            timing,
            #[cfg(feature = "latency")]
            latency,
            #[cfg(feature = "queries")]
            queries,
            permit: None,
            server_timing: server_timing
                .map(|(timing, _)| timing)
                .filter(ServerTiming::is_owner),
        };
        #[cfg(feature = "concurrency")]
        match admission {
            None => {}
            Some(Admission::Admitted(permit)) => state.permit = permit,
            Some(Admission::Refused(refusal)) => return ResponseFuture::refused(refusal, state),
            Some(Admission::Queued(queued)) => {
                // The clone that is ready goes with the request; this service keeps the fresh
                // one.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                let waiting = Waiting {
                    queued,
                    service,
                    request: Some(request),
                    permit: None,
                };
                return ResponseFuture::queued(waiting, state);
            }
        }
        let inner = state.in_scope(|| self.inner.call(request));
        ResponseFuture::running(inner, state)
    }
}
