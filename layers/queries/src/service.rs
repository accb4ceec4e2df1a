//! `QueryTracking`: the service.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use tracing::Instrument;
use vitals_core::server_timing::ServerTiming;

use crate::body::QueryBody;
use crate::future::ResponseFuture;
use crate::part::QueriesPart;
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

    vitals_core::inner_service_accessors!();
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
        ResponseFuture::new(
            scope::with_ledger(in_flight.ledger().clone(), inner).instrument(span.clone()),
            in_flight,
            span,
            owned,
        )
    }
}
