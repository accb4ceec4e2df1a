//! The response future of `QueryTracking`: the response head meets the ledger.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tracing::instrument::Instrumented;
use vitals_core::server_timing::ServerTiming;

use crate::body::QueryBody;
use crate::ledger::QueryLedger;
use crate::part::QueriesInFlight;

pin_project! {
    /// The response future of [`QueryTracking`](crate::QueryTracking).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<TaskLocalFuture<QueryLedger, F>>,
        state: Option<(QueriesInFlight, tracing::Span, Option<ServerTiming>)>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Data: From<Bytes> + bytes::Buf,
{
    type Output = Result<Response<QueryBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let Some((in_flight, span, owned)) = this.state.take() else {
            panic!("vitals_queries::ResponseFuture polled after completion");
        };
        let ledger = in_flight.ledger().clone();
        let (mut response, finish) = in_flight.on_response(response);
        if let Some(timing) = owned {
            timing.append_to(response.headers_mut());
        }
        Poll::Ready(Ok(
            response.map(|body| QueryBody::new(body, span, ledger, finish))
        ))
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: Instrumented<TaskLocalFuture<QueryLedger, F>>,
        in_flight: QueriesInFlight,
        span: tracing::Span,
        owned: Option<ServerTiming>,
    ) -> Self {
        Self {
            inner,
            state: Some((in_flight, span, owned)),
        }
    }
}
