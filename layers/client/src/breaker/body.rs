//! `BreakerBody`: a response body that carries a gRPC call's verdict to its end.
//!
//! A gRPC response that streams messages says how the call went only in its trailers
//! (`grpc-status`), after the body: its head is HTTP 200 whatever happened. Such a call is booked
//! when the trailers come — a failure status, a body that breaks off, or one that ends without a
//! status are failures — and not at all when the caller drops the body first (no verdict, as
//! for a dropped call). Every other response was booked from its head; its body passes through.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::future::{GRPC_STATUS, Ticket, grpc_failure};

pin_project! {
    /// The response body of [`CircuitBreaker`](super::CircuitBreaker): the inner body, and for
    /// a streamed gRPC response the call's claim on the breaker until its trailers.
    pub struct BreakerBody<B> {
        #[pin]
        inner: B,
        // Boxed: every other response carries `None` in one word.
        verdict_pending: Option<Box<Ticket>>,
    }
}

impl<B> BreakerBody<B> {
    pub(crate) fn new(inner: B, verdict_pending: Option<Box<Ticket>>) -> Self {
        Self {
            inner,
            verdict_pending,
        }
    }

    /// The inner body. A verdict still to come is given up: the call is booked as neither a
    /// success nor a failure (as when the body is dropped).
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for BreakerBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerBody")
            .field("inner", &self.inner)
            .field("verdict_pending", &self.verdict_pending.is_some())
            .finish()
    }
}

/// Whether the trailers of a gRPC response say it failed: a failure status, or none at all
/// (a response without `grpc-status` broke the protocol).
fn trailers_failed(trailers: &HeaderMap) -> bool {
    !trailers.contains_key(GRPC_STATUS) || grpc_failure(trailers)
}

impl<B: Body> Body for BreakerBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(mut ticket) = this.verdict_pending.take() {
            match &frame {
                Some(Ok(frame)) => match frame.trailers_ref() {
                    Some(trailers) => ticket.book(trailers_failed(trailers)),
                    // A message: the verdict is still to come.
                    None => *this.verdict_pending = Some(ticket),
                },
                // Broke off, or ended without trailers (so without a status).
                Some(Err(_)) | None => ticket.book(true),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::BodyExt;

    use super::*;
    use crate::breaker::books::BreakerState;
    use crate::breaker::layer::Shared;
    use crate::{BreakerHandle, CircuitBreakerLayer};

    /// A body that yields the frames it was given, then ends.
    struct Frames(VecDeque<Result<Frame<Bytes>, &'static str>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    fn message_then(last: Option<Result<Frame<Bytes>, &'static str>>) -> Frames {
        let mut frames = VecDeque::from([Ok(Frame::data(Bytes::from_static(b"message")))]);
        frames.extend(last);
        Frames(frames)
    }

    fn trailers(status: &'static str) -> Frame<Bytes> {
        let mut trailers = HeaderMap::new();
        trailers.insert(GRPC_STATUS, http::HeaderValue::from_static(status));
        Frame::trailers(trailers)
    }

    /// A breaker that opens at its first failure, and a call admitted by it.
    fn breaker() -> (Arc<Shared>, BreakerHandle) {
        let layer = CircuitBreakerLayer::new("test").with_minimum_calls(1);
        (Arc::clone(&layer.shared), layer.handle())
    }

    fn ticket(shared: &Arc<Shared>) -> Ticket {
        let (admitted, generation) = shared.admit();
        Ticket::new(Arc::clone(shared), admitted, generation)
    }

    #[tokio::test]
    async fn the_trailers_decide_a_streamed_call() {
        // OK in the trailers: a success.
        let (shared, handle) = breaker();
        let body = BreakerBody::new(
            message_then(Some(Ok(trailers("0")))),
            Some(Box::new(ticket(&shared))),
        );
        body.collect().await.unwrap();
        assert_eq!(handle.window(), (1, 0));
        // UNAVAILABLE in the trailers: a failure (the breaker opens at its first).
        let body = BreakerBody::new(
            message_then(Some(Ok(trailers("14")))),
            Some(Box::new(ticket(&shared))),
        );
        body.collect().await.unwrap();
        assert_eq!(handle.state(), BreakerState::Open);
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_or_ends_without_a_status_is_a_failure() {
        for last in [Some(Err("reset")), None] {
            let (shared, handle) = breaker();
            let body = BreakerBody::new(message_then(last), Some(Box::new(ticket(&shared))));
            let _ = body.collect().await;
            assert_eq!(handle.state(), BreakerState::Open);
        }
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_trailers_is_no_verdict() {
        let (shared, handle) = breaker();
        let mut body = BreakerBody::new(
            message_then(Some(Ok(trailers("14")))),
            Some(Box::new(ticket(&shared))),
        );
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!(handle.window(), (0, 0));
        assert_eq!(handle.state(), BreakerState::Closed);
    }

    #[test]
    fn trailers_without_a_status_or_with_a_failure_status_fail() {
        let mut trailers = HeaderMap::new();
        assert!(trailers_failed(&trailers));
        trailers.insert(GRPC_STATUS, http::HeaderValue::from_static("0"));
        assert!(!trailers_failed(&trailers));
        // NOT_FOUND is the caller's business, not the downstream's failure.
        trailers.insert(GRPC_STATUS, http::HeaderValue::from_static("5"));
        assert!(!trailers_failed(&trailers));
        trailers.insert(GRPC_STATUS, http::HeaderValue::from_static("14"));
        assert!(trailers_failed(&trailers));
    }
}
