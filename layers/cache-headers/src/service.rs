//! The service made by [`CacheHeadersLayer`](crate::CacheHeadersLayer): a thin adapter over
//! the [cache-headers part](crate::part::CachePart).

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::body::CacheBody;
use crate::future::ResponseFuture;
use crate::part::CachePart;

/// The service made by [`CacheHeadersLayer`](crate::CacheHeadersLayer).
#[derive(Clone)]
pub struct CacheHeaders<S> {
    inner: S,
    part: CachePart,
}

impl<S> CacheHeaders<S> {
    pub(crate) fn new(inner: S, part: CachePart) -> Self {
        Self { inner, part }
    }

    vitals_core::inner_service_accessors!();
}

impl<S: std::fmt::Debug> std::fmt::Debug for CacheHeaders<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheHeaders")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<CacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The route label is needed to find a route's own settings, and for the metrics.
        let route = self
            .part
            .wants_route()
            .then(|| self.part.route_labeler().label(&request));
        let in_flight = self.part.start(&request, route.as_ref());
        ResponseFuture::new(self.inner.call(request), in_flight)
    }
}
