//! The bodies behind a `TimeoutLayer`: the watched request body and the deadlined response body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

pin_project! {
    /// The request body as the handler sees it behind
    /// [`TimeoutLayer::with_request_body_watch`](crate::TimeoutLayer::with_request_body_watch): unchanged, but the layer knows whether the
    /// handler is waiting for more of it.
    pub struct WatchedBody<B> {
        #[pin]
        inner: B,
        waiting: Arc<AtomicBool>,
    }

    impl<B> PinnedDrop for WatchedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // A handler that dropped the body waits for it no more.
            this.waiting.store(false, Ordering::Release);
        }
    }
}

impl<B> WatchedBody<B> {
    pub(crate) fn new(inner: B, waiting: Arc<AtomicBool>) -> Self {
        Self { inner, waiting }
    }
}

impl<B: Body> Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        this.waiting.store(polled.is_pending(), Ordering::Release);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for WatchedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedBody")
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The error type of bodies behind [`TimeoutLayer`](crate::TimeoutLayer).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a body fails with when the [body deadline](crate::TimeoutLayer::with_body_deadline)
/// passes before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDeadlineElapsed;

impl std::fmt::Display for BodyDeadlineElapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the response body did not end before the deadline")
    }
}

impl std::error::Error for BodyDeadlineElapsed {}

pin_project! {
    /// The handler's body, failed with [`BodyDeadlineElapsed`] if it is still streaming when
    /// the deadline passes (only with [`TimeoutLayer::with_body_deadline`](crate::TimeoutLayer::with_body_deadline)).
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> DeadlineBody<B> {
    /// `inner`, failed with [`BodyDeadlineElapsed`] if it has not ended by `deadline` (none:
    /// passed through).
    #[inline]
    pub fn new(inner: B, deadline: Option<tokio::time::Instant>) -> Self {
        Self {
            inner,
            sleep: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if let Some(sleep) = this.sleep.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(BodyDeadlineElapsed))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for DeadlineBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineBody")
            .field("deadline", &self.sleep.as_ref().map(|s| s.deadline()))
            .finish_non_exhaustive()
    }
}
