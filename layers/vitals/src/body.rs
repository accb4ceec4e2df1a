//! The response body of [`VitalsService`](crate::VitalsService): one wrapper for every part —
//! polled inside the request span with the ledger current, its end told once to each part.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Buf;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use vitals_core::body::{BodyEnd, BodyObserver, CompletionBody, EitherBody};

use crate::admission::Permit;

/// What each part does when the body ends.
pub(crate) struct Finish {
    /// The concurrency limit's permit: given back here, with a latency sample when completed.
    pub(crate) permit: Option<Permit>,
    #[cfg(feature = "latency")]
    pub(crate) latency: Option<vitals_latency::part::LatencyFinish>,
    #[cfg(feature = "timing")]
    pub(crate) timing: Option<vitals_timing::part::TimingFinish>,
    #[cfg(feature = "queries")]
    pub(crate) queries: Option<vitals_queries::part::QueriesFinish>,
}

impl BodyObserver for Finish {
    #[allow(unused_variables)] // Every part reading trailers may be compiled out.
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        #[cfg(feature = "latency")]
        if let Some(latency) = &mut self.latency {
            latency.on_trailers(trailers);
        }
        #[cfg(feature = "timing")]
        if let Some(timing) = &mut self.timing {
            timing.on_trailers(trailers);
        }
    }

    #[allow(unused_variables)] // Every part may be compiled out.
    fn on_end(self, end: BodyEnd) {
        #[cfg(feature = "queries")]
        if let Some(queries) = self.queries {
            queries.on_end(end);
        }
        if let Some(permit) = self.permit {
            #[cfg(feature = "concurrency")]
            permit.on_end(end);
            #[cfg(not(feature = "concurrency"))]
            match permit {}
        }
        // One clock read for every part.
        let now = Instant::now();
        #[cfg(feature = "latency")]
        if let Some(latency) = self.latency {
            latency.ended_at(end, now);
        }
        #[cfg(feature = "timing")]
        if let Some(timing) = self.timing {
            timing.ended_at(end, now);
        }
        let _ = now;
    }
}

/// What the body's polls run inside.
pub(crate) struct BodyScope {
    #[cfg(feature = "trace-context")]
    pub(crate) trace: Option<vitals_trace_context::part::TraceScope>,
    pub(crate) span: Option<tracing::Span>,
    #[cfg(feature = "queries")]
    pub(crate) ledger: Option<vitals_queries::QueryLedger>,
}

impl BodyScope {
    fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "trace-context")]
        if let Some(trace) = &self.trace {
            return trace.in_scope(|| self.with_ledger(f));
        }
        let _entered = self.span.as_ref().map(tracing::Span::enter);
        self.with_ledger(f)
    }

    fn with_ledger<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "queries")]
        if let Some(ledger) = &self.ledger {
            return ledger.in_scope(f);
        }
        f()
    }

    fn on_error(&self) {
        #[cfg(feature = "trace-context")]
        if let Some(trace) = &self.trace {
            trace.on_body_error();
        }
    }
}

pin_project! {
    /// The response body of [`VitalsService`](crate::VitalsService): the handler's body (or
    /// the queries part's N+1 report), unchanged, watched to its last byte.
    pub struct VitalsBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: CompletionBody<EitherBody<B>, Finish>,
        scope: BodyScope,
    }
}

impl<B: Body> VitalsBody<B> {
    pub(crate) fn new(body: EitherBody<B>, finish: Finish, scope: BodyScope) -> Self {
        Self {
            inner: CompletionBody::new(body, finish),
            scope,
        }
    }
}

impl<B> Body for VitalsBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let inner = this.inner;
        let polled = this.scope.in_scope(|| inner.poll_frame(cx));
        if let Poll::Ready(Some(Err(_))) = &polled {
            this.scope.on_error();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> std::fmt::Debug for VitalsBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VitalsBody")
            .field("ended", &self.inner.has_ended())
            .finish_non_exhaustive()
    }
}
