//! The response body: polled inside the request's query scope, reporting at its end.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use vitals_core::body::{CompletionBody, EitherBody};

use crate::ledger::QueryLedger;
use crate::part::QueriesFinish;
use crate::scope;

pin_project! {
    /// The response body of [`QueryTracking`](crate::QueryTracking): the handler's body, or
    /// the JSON report of an N+1 failure ([`NPlusOneAction::Fail`](crate::NPlusOneAction)).
    /// Queries run while it streams still land in the request's ledger.
    pub struct QueryBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: CompletionBody<EitherBody<B>, QueriesFinish>,
        span: tracing::Span,
        ledger: QueryLedger,
    }
}

impl<B: Body> QueryBody<B> {
    pub(crate) fn new(
        body: EitherBody<B>,
        span: tracing::Span,
        ledger: QueryLedger,
        finish: QueriesFinish,
    ) -> Self {
        Self {
            inner: CompletionBody::new(body, finish),
            span,
            ledger,
        }
    }
}

impl<B> Body for QueryBody<B>
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
        let _entered = this.span.enter();
        scope::sync_with_ledger(this.ledger, || this.inner.poll_frame(cx))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> std::fmt::Debug for QueryBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryBody")
            .field("ended", &self.inner.has_ended())
            .finish_non_exhaustive()
    }
}
