//! `TraceContextService`: the service [`TraceContextLayer`](crate::TraceContextLayer) wraps
//! around yours, a thin adapter over [`TracePart`].

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use vitals_core::server_timing::ServerTiming;

use crate::body::TracedBody;
use crate::future::ResponseFuture;
use crate::part::TracePart;

/// The service made by [`TraceContextLayer`](crate::TraceContextLayer).
#[derive(Clone, Debug)]
pub struct TraceContextService<S> {
    inner: S,
    part: TracePart,
}

impl<S> TraceContextService<S> {
    pub(crate) fn new(inner: S, part: TracePart) -> Self {
        Self { inner, part }
    }

    vitals_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TraceContextService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let route = self.part.route_labeler().label(&request);
        let allowed = self.part.shows_server_timing(request.headers());
        let timing = ServerTiming::attach_if(request.extensions_mut(), allowed).filter(|_| allowed);
        let in_flight = self.part.start(&mut request, &route, timing.as_ref());
        let inner = in_flight.in_scope(|| self.inner.call(request));
        ResponseFuture::new(inner, in_flight, timing.filter(ServerTiming::is_owner))
    }
}
