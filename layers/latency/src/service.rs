//! `Latency`: the service [`LatencyLayer`] makes.

use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::body::LatencyBody;
use crate::future::ResponseFuture;
use crate::layer::LatencyLayer;

/// The service made by [`LatencyLayer`].
#[derive(Clone, Debug)]
pub struct Latency<S> {
    inner: S,
    layer: LatencyLayer,
}

impl<S> Latency<S> {
    pub(crate) fn new(inner: S, layer: LatencyLayer) -> Self {
        Self { inner, layer }
    }

    vitals_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Latency<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<LatencyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let shared = self.layer.shared();
        let route = shared.labeler.label(&request);
        let in_flight = shared.part.start(request.method(), route, start);
        let future = self.inner.call(request);
        ResponseFuture::new(future, in_flight)
    }
}
