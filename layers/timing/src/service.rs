//! `RequestTiming`: the service the layer wraps around yours.

use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use vitals_core::server_timing::ServerTiming;

use crate::body::TimedBody;
use crate::future::ResponseFuture;
use crate::part::TimingPart;

/// Times requests to the last byte; made by [`RequestTimingLayer`](crate::RequestTimingLayer).
#[derive(Clone, Debug)]
pub struct RequestTiming<S> {
    inner: S,
    part: TimingPart,
}

impl<S> RequestTiming<S> {
    pub(crate) fn new(inner: S, part: TimingPart) -> Self {
        Self { inner, part }
    }

    vitals_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestTiming<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<TimedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let route = self.part.config.labeler.label(&request);
        let allowed = self.part.shows_server_timing(request.headers());
        let server_timing = ServerTiming::attach_if(request.extensions_mut(), allowed);
        let owned = server_timing.clone().filter(ServerTiming::is_owner);
        let in_flight = self.part.start(&mut request, route, start, server_timing);
        ResponseFuture::new(self.inner.call(request), in_flight, owned)
    }
}
