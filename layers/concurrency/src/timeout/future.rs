//! `TimeoutFuture`: the handler raced against its deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{HeaderValue, Response, header};
use http_body::Body;
use pin_project_lite::pin_project;
use vitals_core::deadline::RequestDeadline;

use super::body::{BoxError, DeadlineBody};
use crate::body::{LayerResponse, LimitBody};
use crate::deadline::Deadline;

pin_project! {
    /// The handler's future, until it is done or dropped at the deadline.
    #[project = HandlerProj]
    enum Handler<F> {
        Running { #[pin] future: F },
        Gone,
    }
}

pin_project! {
    /// The response future of [`Timeout`](crate::Timeout).
    pub struct TimeoutFuture<F> {
        // Dropped as soon as the deadline passes, so the handler's work stops.
        #[pin]
        inner: Handler<F>,
        deadline: Option<Deadline>,
        body_deadline: Option<tokio::time::Instant>,
        // With a watched request body: whether the handler waits for it, and the answer then.
        request_body: Option<Box<RequestBodyWatch>>,
    }
}

impl<F, B, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Data: From<Bytes> + Buf,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<LimitBody<DeadlineBody<B>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(watch) = this.request_body.as_ref() {
            // Only a body read left pending by this poll of the handler counts as waiting.
            watch.waiting.store(false, Ordering::Release);
        }
        // The handler's outgoing calls see the request's deadline while it is polled.
        let current = this.deadline.as_ref().map(Deadline::request_deadline);
        if let HandlerProj::Running { future } = this.inner.as_mut().project()
            && let Poll::Ready(result) = RequestDeadline::in_scope(current, || future.poll(cx))
        {
            this.inner.set(Handler::Gone);
            let deadline = *this.body_deadline;
            return Poll::Ready(result.map(|response| {
                response.map(|body| LimitBody::inner(DeadlineBody::new(body, deadline), None))
            }));
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.poll_elapsed(cx).is_ready()
        {
            // Read before the handler (and the body it holds) is dropped: the drop clears it.
            let waiting = this
                .request_body
                .as_ref()
                .is_some_and(|watch| watch.waiting.load(Ordering::Acquire));
            this.inner.set(Handler::Gone);
            let Some(deadline) = this.deadline.take() else {
                panic!("vitals_concurrency::TimeoutFuture polled after completion");
            };
            if let Some(watch) = this.request_body.take()
                && waiting
            {
                // The client was slow, not the server: a client error, not a timeout outcome.
                let mut response = watch.response.to_response(None);
                if watch.http1 {
                    // The rest of the body will not be read: the connection cannot be reused.
                    // (HTTP/2 has no connection header: the stream is reset instead.)
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                return Poll::Ready(Ok(response));
            }
            return Poll::Ready(Ok(deadline.into_response().map(LimitBody::own)));
        }
        Poll::Pending
    }
}

/// What the timeout needs to tell a stalled upload apart.
pub(crate) struct RequestBodyWatch {
    /// Set while the handler's latest read of the request body is left pending.
    pub(crate) waiting: Arc<AtomicBool>,
    pub(crate) response: LayerResponse,
    pub(crate) http1: bool,
}

impl<F> TimeoutFuture<F> {
    pub(crate) fn new(future: F, deadline: Option<Deadline>) -> Self {
        Self {
            inner: Handler::Running { future },
            body_deadline: deadline.as_ref().and_then(Deadline::body_deadline),
            deadline,
            request_body: None,
        }
    }

    /// The same future, answering `408` when the deadline passes while the handler waits for
    /// the request body.
    pub(crate) fn watching(mut self, watch: RequestBodyWatch) -> Self {
        self.request_body = Some(Box::new(watch));
        self
    }
}
