//! The response future of [`VitalsService`](crate::VitalsService): one state for every part,
//! entered once per poll.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use vitals_core::body::EitherBody;
use vitals_core::server_timing::ServerTiming;

use crate::body::{BodyScope, Finish, VitalsBody};

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
    /// the response; latency and timing classify what the client gets; the span records it).
    fn on_response<B>(
        self,
        response: Response<B>,
        #[allow(unused_variables)] now: Option<std::time::Instant>,
    ) -> Response<VitalsBody<B>>
    where
        B: Body,
        B::Data: From<Bytes> + Buf,
    {
        #[cfg(feature = "queries")]
        let (mut response, queries, ledger) = match self.queries {
            Some(queries) => {
                let ledger = queries.ledger().clone();
                let (response, finish) = queries.on_response(response);
                (response, Some(finish), Some(ledger))
            }
            None => (response.map(EitherBody::inner), None, None),
        };
        #[cfg(not(feature = "queries"))]
        let mut response = response.map(EitherBody::inner);
        let finish = Finish {
            #[cfg(feature = "latency")]
            latency: self.latency.map(|latency| latency.on_response(&response)),
            #[cfg(feature = "timing")]
            timing: self.timing.map(|timing| timing.on_response(&response, now)),
            #[cfg(feature = "queries")]
            queries,
        };
        let scope = BodyScope {
            #[cfg(feature = "trace-context")]
            trace: self.trace.map(|trace| trace.on_response(&mut response)),
            span: self.span,
            #[cfg(feature = "queries")]
            ledger,
        };
        if let Some(timing) = self.server_timing {
            timing.append_to(response.headers_mut());
        }
        response.map(|body| VitalsBody::new(body, finish, scope))
    }

    fn on_error(self, #[allow(unused_variables)] now: Option<std::time::Instant>) {
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
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // One allocation for every part's state: the future stays small as it is moved.
        state: Option<Box<InFlight>>,
        polling: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(state) = this.state.take() {
                state.on_drop(*this.polling);
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, state: InFlight) -> Self {
        Self {
            inner,
            state: Some(Box::new(state)),
            polling: false,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Data: From<Bytes> + Buf,
{
    type Output = Result<Response<VitalsBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        #[allow(unused_mut)] // Mutated by the timing part only.
        let Some(state) = this.state.as_mut() else {
            panic!("vitals::ResponseFuture polled after completion");
        };
        #[cfg(feature = "timing")]
        let clock = state
            .timing
            .as_ref()
            .map(vitals_timing::part::TimingInFlight::poll_begins);
        *this.polling = true;
        let inner = this.inner;
        let polled = state.in_scope(|| inner.poll(cx));
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
            panic!("vitals::ResponseFuture polled after completion");
        };
        Poll::Ready(match result {
            Ok(response) => Ok(state.on_response(response, now)),
            Err(error) => {
                state.on_error(now);
                Err(error)
            }
        })
    }
}
