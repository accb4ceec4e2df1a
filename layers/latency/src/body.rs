//! The response body: records the request when its last byte is produced.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use vitals_core::body::CompletionBody;

use crate::part::LatencyFinish;

pin_project! {
    /// The response body of [`Latency`](crate::Latency): the handler's body, unchanged, timed
    /// to its last byte.
    pub struct LatencyBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: CompletionBody<B, LatencyFinish>,
    }
}

impl<B: Body> LatencyBody<B> {
    pub(crate) fn new(body: B, finish: LatencyFinish) -> Self {
        Self {
            inner: CompletionBody::new(body, finish),
        }
    }
}

impl<B: Body> Body for LatencyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> std::fmt::Debug for LatencyBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyBody").finish_non_exhaustive()
    }
}
