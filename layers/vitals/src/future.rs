//! The response future of [`VitalsService`](crate::VitalsService): one state for every part,
//! entered once per poll.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::time::Instant;

use bytes::{Buf, Bytes};
use http::Response;
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;
use vitals_core::body::EitherBody;
use vitals_core::server_timing::ServerTiming;

use crate::admission::{Permit, Refusal, Waiting};
use crate::body::{BodyScope, Finish, VitalsBody};

#[cfg(feature = "queries")]
use vitals_queries::QueryLedger;
#[cfg(feature = "queries")]
use vitals_queries::part::QueriesFinish;
/// Nothing to finish without the queries part.
#[cfg(not(feature = "queries"))]
type QueriesFinish = std::convert::Infallible;
/// No ledger without the queries part.
#[cfg(not(feature = "queries"))]
type QueryLedger = std::convert::Infallible;

/// Every enabled part's state for one request, until its response head.
pub(crate) struct InFlight {
    #[cfg(feature = "trace-context")]
    pub(crate) trace: Option<vitals_trace_context::part::TraceInFlight>,
    /// The queries part's own span, when there is no request span to carry its ledger.
    pub(crate) span: Option<tracing::Span>,
    #[cfg(feature = "timing")]
    pub(crate) timing: Option<vitals_timing::part::TimingInFlight>,
    #[cfg(feature = "latency")]
    pub(crate) latency: Option<vitals_latency::part::LatencyInFlight>,
    #[cfg(feature = "queries")]
    pub(crate) queries: Option<vitals_queries::part::QueriesInFlight>,
    /// The concurrency limit's permit, held to the end of the body.
    pub(crate) permit: Option<Permit>,
    /// The collector this service inserted, and so renders.
    pub(crate) server_timing: Option<ServerTiming>,
}

impl InFlight {
    /// Runs `f` inside the request span, with the trace context and the query ledger current:
    /// the span is entered once, whatever the parts.
    pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "trace-context")]
        if let Some(trace) = &self.trace {
            return trace.in_scope(|| self.with_ledger(f));
        }
        let _entered = self.span.as_ref().map(tracing::Span::enter);
        self.with_ledger(f)
    }

    fn with_ledger<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "queries")]
        if let Some(queries) = &self.queries {
            return queries.scope(f);
        }
        f()
    }

    /// The handler answered: each part sees the head, innermost first (queries may replace
    /// the response; the limit learns whether it measured real work; latency and timing
    /// classify what the client gets; the span records it).
    fn on_response<B>(self, response: Response<B>, now: Option<Instant>) -> Response<VitalsBody<B>>
    where
        B: Body,
        B::Data: From<Bytes> + Buf,
    {
        #[cfg(feature = "queries")]
        {
            let mut this = self;
            if let Some(queries) = this.queries.take() {
                let ledger = queries.ledger().clone();
                let (response, finish) = queries.on_response(response);
                return this.finish_head(response, Some(finish), Some(ledger), now);
            }
            this.finish_head(response.map(EitherBody::inner), None, None, now)
        }
        #[cfg(not(feature = "queries"))]
        self.finish_head(response.map(EitherBody::inner), None, None, now)
    }

    /// The limit refused the request (the handler never ran, nor did the queries part).
    #[cfg_attr(not(feature = "concurrency"), allow(dead_code))]
    fn on_refusal<B>(
        self,
        response: Response<Full<B::Data>>,
        now: Option<Instant>,
    ) -> Response<VitalsBody<B>>
    where
        B: Body,
        B::Data: From<Bytes> + Buf,
    {
        #[cfg(feature = "queries")]
        let this = Self {
            queries: None,
            ..self
        };
        #[cfg(not(feature = "queries"))]
        let this = self;
        this.finish_head(response.map(EitherBody::own), None, None, now)
    }

    fn finish_head<B>(
        self,
        mut response: Response<EitherBody<B>>,
        queries: Option<QueriesFinish>,
        ledger: Option<QueryLedger>,
        #[allow(unused_variables)] now: Option<Instant>,
    ) -> Response<VitalsBody<B>>
    where
        B: Body,
        B::Data: From<Bytes> + Buf,
    {
        let mut permit = self.permit;
        if let Some(permit) = permit.as_mut() {
            #[cfg(feature = "concurrency")]
            permit.on_response(&response);
            #[cfg(not(feature = "concurrency"))]
            match *permit {}
        }
        let finish = Finish {
            permit,
            #[cfg(feature = "latency")]
            latency: self.latency.map(|latency| latency.on_response(&response)),
            #[cfg(feature = "timing")]
            timing: self.timing.map(|timing| timing.on_response(&response, now)),
            #[cfg(feature = "queries")]
            queries,
        };
        #[cfg(not(feature = "queries"))]
        let _ = queries;
        let scope = BodyScope {
            #[cfg(feature = "trace-context")]
            trace: self.trace.map(|trace| trace.on_response(&mut response)),
            span: self.span,
            #[cfg(feature = "queries")]
            ledger,
        };
        #[cfg(not(feature = "queries"))]
        let _ = ledger;
        if let Some(timing) = self.server_timing {
            timing.append_to(response.headers_mut());
        }
        response.map(|body| VitalsBody::new(body, finish, scope))
    }

    fn on_error(self, #[allow(unused_variables)] now: Option<Instant>) {
        #[cfg(feature = "latency")]
        if let Some(latency) = self.latency {
            latency.on_error();
        }
        #[cfg(feature = "timing")]
        if let Some(timing) = self.timing {
            timing.on_error(now);
        }
        #[cfg(feature = "trace-context")]
        if let Some(trace) = self.trace {
            trace.on_error();
        }
    }

    fn on_drop(self, #[allow(unused_variables)] while_polling: bool) {
        #[cfg(feature = "latency")]
        if let Some(latency) = self.latency {
            latency.on_drop(while_polling);
        }
        #[cfg(feature = "timing")]
        if let Some(timing) = self.timing {
            timing.on_drop(while_polling);
        }
    }
}

pin_project! {
    /// The response future of [`VitalsService`](crate::VitalsService).
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        phase: Phase<S, Req>,
        // One allocation for every part's state: the future stays small as it is moved.
        state: Option<Box<InFlight>>,
        polling: bool,
    }

    impl<S, Req> PinnedDrop for ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(state) = this.state.take() {
                state.on_drop(*this.polling);
            }
        }
    }
}

pin_project! {
    #[project = PhaseProj]
    enum Phase<S, Req>
    where
        S: Service<Req>,
    {
        // The handler runs (the common case, and the only phase when the limit admits at once).
        Running {
            #[pin]
            future: S::Future,
        },
        // Waiting in the limit's queue.
        Queued {
            waiting: Box<Waiting<S, Req>>,
        },
        // The limit refused: answered on the first poll.
        Refused {
            refusal: Option<Refusal>,
        },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) fn running(future: S::Future, state: InFlight) -> Self {
        Self::new(Phase::Running { future }, state)
    }

    #[cfg_attr(not(feature = "concurrency"), allow(dead_code))]
    pub(crate) fn queued(waiting: Waiting<S, Req>, state: InFlight) -> Self {
        Self::new(
            Phase::Queued {
                waiting: Box::new(waiting),
            },
            state,
        )
    }

    #[cfg_attr(not(feature = "concurrency"), allow(dead_code))]
    pub(crate) fn refused(refusal: Refusal, state: InFlight) -> Self {
        Self::new(
            Phase::Refused {
                refusal: Some(refusal),
            },
            state,
        )
    }

    fn new(phase: Phase<S, Req>, state: InFlight) -> Self {
        Self {
            phase,
            state: Some(Box::new(state)),
            polling: false,
        }
    }
}

fn completed() -> ! {
    panic!("vitals::ResponseFuture polled after completion")
}

impl<S, Req, B> Future for ResponseFuture<S, Req>
where
    S: Service<Req, Response = Response<B>>,
    B: Body,
    B::Data: From<Bytes> + Buf,
{
    type Output = Result<Response<VitalsBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.phase.as_mut().project() {
                PhaseProj::Running { future } => {
                    #[allow(unused_mut)] // Mutated by the timing part only.
                    let Some(state) = this.state.as_mut() else {
                        completed();
                    };
                    #[cfg(feature = "timing")]
                    let clock = state
                        .timing
                        .as_ref()
                        .map(vitals_timing::part::TimingInFlight::poll_begins);
                    *this.polling = true;
                    let polled = state.in_scope(|| future.poll(cx));
                    *this.polling = false;
                    #[cfg(feature = "timing")]
                    let now = match (state.timing.as_mut(), clock) {
                        (Some(timing), Some(clock)) => timing.poll_ends(clock, polled.is_ready()),
                        _ => None,
                    };
                    #[cfg(not(feature = "timing"))]
                    let now = None;
                    let Poll::Ready(result) = polled else {
                        return Poll::Pending;
                    };
                    let Some(state) = this.state.take() else {
                        completed();
                    };
                    return Poll::Ready(match result {
                        Ok(response) => Ok(state.on_response(response, now)),
                        Err(error) => {
                            state.on_error(now);
                            Err(error)
                        }
                    });
                }
                PhaseProj::Refused { refusal } => {
                    let (Some(refusal), Some(state)) = (refusal.take(), this.state.take()) else {
                        completed();
                    };
                    #[cfg(feature = "concurrency")]
                    return Poll::Ready(Ok(state.on_refusal(refusal.into_response(), None)));
                    #[cfg(not(feature = "concurrency"))]
                    match (refusal, state) {}
                }
                PhaseProj::Queued { waiting } => {
                    #[cfg(not(feature = "concurrency"))]
                    match waiting.queued {}
                    #[cfg(feature = "concurrency")]
                    {
                        if waiting.permit.is_none() {
                            match std::task::ready!(waiting.queued.poll_admit(cx)) {
                                Ok(permit) => waiting.permit = Some(permit),
                                Err(refusal) => {
                                    this.phase.set(Phase::Refused {
                                        refusal: Some(refusal),
                                    });
                                    continue;
                                }
                            }
                        }
                        if let Err(error) = std::task::ready!(waiting.service.poll_ready(cx)) {
                            if let Some(state) = this.state.take() {
                                state.on_error(None);
                            }
                            return Poll::Ready(Err(error));
                        }
                        let (Some(request), Some(state)) =
                            (waiting.request.take(), this.state.as_mut())
                        else {
                            completed();
                        };
                        state.permit = waiting.permit.take();
                        let service = &mut waiting.service;
                        let future = state.in_scope(|| service.call(request));
                        this.phase.set(Phase::Running { future });
                    }
                }
            }
        }
    }
}
