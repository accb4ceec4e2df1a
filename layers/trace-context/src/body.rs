//! The response body of [`TraceContextService`](crate::TraceContextService).

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::part::TraceScope;

pin_project! {
    /// The response body of [`TraceContextService`](crate::TraceContextService): the handler's
    /// body, polled inside the request span with the request's context current.
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        scope: TraceScope,
    }
}

impl<B> TracedBody<B> {
    pub(crate) fn new(inner: B, scope: TraceScope) -> Self {
        Self { inner, scope }
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let inner = this.inner;
        let polled = this.scope.in_scope(|| inner.poll_frame(cx));
        if let Poll::Ready(Some(Err(_))) = &polled {
            this.scope.on_body_error();
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

impl<B> std::fmt::Debug for TracedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedBody").finish_non_exhaustive()
    }
}
