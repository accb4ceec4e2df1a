//! The response body of [`VitalsService`](crate::VitalsService): one wrapper for every part —
//! polled inside the request span with the ledger current, its end told once to each part.
//! When it ended is decided by the rules every body wrapper here follows
//! ([`BodyEnd::after`], [`BodyEnd::at_drop`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use vitals_core::body::{BodyEnd, EitherBody};

use crate::state::RequestState;

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
pub(crate) type DeadlineAt = std::time::Instant;

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

pin_project! {
    /// The response body of [`VitalsService`](crate::VitalsService): the handler's body (or
    /// the answer a part made: a refusal, a timeout, a `304`, the queries part's N+1 report),
    /// watched to its last byte. Every part's state is in one box (none when every part is
    /// off), so the body moves as a small value.
    pub struct VitalsBody<B>
    where
        B: Body,
        Inner<B>: Body,
    {
        #[pin]
        inner: Inner<B>,
        // Until the end is told to the parts; `None` after, or when every part is off.
        state: Option<Box<RequestState>>,
        // Set while the inner body is polled: still set at drop means its poll panicked.
        polling: bool,
    }

    impl<B> PinnedDrop for VitalsBody<B>
    where
        B: Body,
        Inner<B>: Body,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(finish) = this.state.as_mut().and_then(|state| state.finish.take()) {
                finish.on_end(BodyEnd::at_drop(*this.polling, this.inner.is_end_stream()));
            }
        }
    }
}

impl<B: Body> VitalsBody<B>
where
    Inner<B>: Body,
{
    pub(crate) fn new(inner: Inner<B>, state: Option<Box<RequestState>>) -> Self {
        Self {
            inner,
            state,
            polling: false,
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
        let mut inner = this.inner;
        let Some(state) = this.state.as_mut() else {
            return inner.poll_frame(cx);
        };
        let polling = this.polling;
        let RequestState { scope, finish, .. } = &mut **state;
        // The span entered once; the parts told of the end inside it, so what they log is
        // labelled with the request.
        #[allow(unused_assignments)] // `polling` is read at drop, should the poll panic.
        let (polled, ended) = scope.in_scope(|| {
            *polling = true;
            let polled = inner.as_mut().poll_frame(cx);
            *polling = false;
            let Poll::Ready(frame) = polled else {
                return (Poll::Pending, false);
            };
            if let (Some(Ok(frame)), Some(finish)) = (&frame, finish.as_mut()) {
                if let Some(data) = frame.data_ref() {
                    finish.on_data(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    finish.on_trailers(trailers);
                }
            }
            let end = BodyEnd::after(&frame, inner.is_end_stream());
            if let Some(end) = end {
                if end == BodyEnd::Errored {
                    scope.on_body_error();
                }
                if let Some(finish) = finish.take() {
                    finish.on_end(end);
                }
            }
            (Poll::Ready(frame), end.is_some())
        });
        if ended {
            // The span closes here, after its last poll.
            *this.state = None;
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
            .field(
                "ended",
                &self
                    .state
                    .as_ref()
                    .is_none_or(|state| state.finish.is_none()),
            )
            .finish_non_exhaustive()
    }
}
