//! `RequestTiming`: the service the layer wraps around yours.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use vitals_core::identity::RequestIdentity;
use vitals_core::server_timing::ServerTiming;

use crate::body::TimedBody;
use crate::config::Config;
use crate::future::{InFlight, ResponseFuture};

/// Times requests to the last byte; made by [`RequestTimingLayer`](crate::RequestTimingLayer).
#[derive(Clone, Debug)]
pub struct RequestTiming<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RequestTiming<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
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
        let config = &self.config;
        let start = Instant::now();
        // The first poll is measured from here.
        if config.poll_timing && config.blocking.lowest().is_some() {
            crate::cpu::poll_starts(start);
        }
        let route = config.labeler.label(&request);
        // With the header denied for this request, still look at an outer layer's collector:
        // the slow-request warning reports what the other layers measured.
        let adds_total = config.server_timing.allows(request.headers());
        let server_timing = ServerTiming::attach_if(request.extensions_mut(), adds_total);
        let identity = request
            .extensions()
            .get::<RequestIdentity>()
            .map(|identity| Box::new(identity.clone()));
        let method = request.method().clone();
        let inner = self.inner.call(request);
        ResponseFuture::new(
            inner,
            InFlight {
                config: Arc::clone(config),
                start,
                method,
                route,
                identity,
                server_timing,
                adds_total,
            },
        )
    }
}
