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
use crate::scope::BodyScope;

/// The handler's body as the cache-headers part hands it on (passed through, buffered for its
/// entity tag, or none for a `304`).
#[cfg(feature = "cache-headers")]
pub(crate) type Cached<B> = vitals_cache_headers::CacheBody<B>;
#[cfg(not(feature = "cache-headers"))]
pub(crate) type Cached<B> = B;

/// The body under the deadline, when it covers the body.
#[cfg(feature = "concurrency")]
pub(crate) type Deadlined<B> = vitals_concurrency::DeadlineBody<B>;
#[cfg(not(feature = "concurrency"))]
pub(crate) type Deadlined<B> = B;

/// What [`VitalsBody`] wraps: the handler's body (or an answer of the parts'), as each part
/// that may change it left it.
pub(crate) type Inner<B> = Deadlined<Cached<EitherBody<B>>>;

/// `body` as the cache-headers part passes it on untouched.
pub(crate) fn uncached<B: Body>(body: B) -> Cached<B> {
    #[cfg(feature = "cache-headers")]
    return vitals_cache_headers::CacheBody::passthrough(body);
    #[cfg(not(feature = "cache-headers"))]
    body
}

/// When a body must have ended (the deadline's clock: tokio's, so tests can pause it).
#[cfg(feature = "concurrency")]
pub(crate) type DeadlineAt = tokio::time::Instant;
#[cfg(not(feature = "concurrency"))]
pub(crate) type DeadlineAt = Instant;

/// `body`, failed if it has not ended by `deadline` (none: untouched).
pub(crate) fn deadlined<B>(
    body: B,
    #[allow(unused_variables)] deadline: Option<DeadlineAt>,
) -> Deadlined<B> {
    #[cfg(feature = "concurrency")]
    return vitals_concurrency::DeadlineBody::new(body, deadline);
    #[cfg(not(feature = "concurrency"))]
    body
}

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

pin_project! {
    /// The response body of [`VitalsService`](crate::VitalsService): the handler's body (or
    /// the answer a part made: a refusal, a timeout, a `304`, the queries part's N+1 report),
    /// watched to its last byte.
    pub struct VitalsBody<B>
    where
        B: Body,
        Inner<B>: Body,
    {
        #[pin]
        inner: CompletionBody<Inner<B>, Finish>,
        scope: BodyScope,
    }
}

impl<B: Body> VitalsBody<B>
where
    Inner<B>: Body,
{
    pub(crate) fn new(body: Inner<B>, finish: Finish, scope: BodyScope) -> Self {
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
    Inner<B>: Body<Data = B::Data>,
{
    type Data = B::Data;
    type Error = <Inner<B> as Body>::Error;

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

impl<B: Body> std::fmt::Debug for VitalsBody<B>
where
    Inner<B>: Body,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VitalsBody")
            .field("ended", &self.inner.has_ended())
            .finish_non_exhaustive()
    }
}
