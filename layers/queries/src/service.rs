//! `QueryTracking`: the service, and its response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower_service::Service;
use tracing::Instrument;
use tracing::instrument::Instrumented;
use vitals_core::server_timing::ServerTiming;

use crate::body::QueryBody;
use crate::ledger::QueryLedger;
use crate::part::{QueriesInFlight, QueriesPart};
use crate::scope;

/// Tracks the queries of each request; made by
/// [`QueryTrackingLayer`](crate::QueryTrackingLayer).
#[derive(Clone, Debug)]
pub struct QueryTracking<S> {
    inner: S,
    part: QueriesPart,
}

impl<S> QueryTracking<S> {
    pub(crate) fn new(inner: S, part: QueriesPart) -> Self {
        Self { inner, part }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for QueryTracking<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes> + bytes::Buf,
{
    type Response = Response<QueryBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let route = self.part.config.labeler.label(&request);
        // Denied for this request: still add to an outer collector, for the slow-request log.
        let server_timing = ServerTiming::attach_for(&mut request, &self.part.config.server_timing);
        let owned = server_timing.clone().filter(ServerTiming::is_owner);
        let in_flight = self.part.start(&request, route, server_timing);
        // A span of our own carries the ledger to threads and tasks outside this one.
        let span = in_flight.own_span();
        let inner = span.in_scope(|| in_flight.scope(|| self.inner.call(request)));
        ResponseFuture {
            inner: scope::with_ledger(in_flight.ledger().clone(), inner).instrument(span.clone()),
            state: Some((in_flight, span, owned)),
        }
    }
}

pin_project! {
    /// The response future of [`QueryTracking`].
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
