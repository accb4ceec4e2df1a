//! The service made by [`ConcurrencyLimitLayer`](crate::ConcurrencyLimitLayer): a thin
//! adapter over the [limit part](crate::part::LimitPart).

use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::body::LimitBody;
use crate::future::ResponseFuture;
use crate::part::{Admission, LimitPart};

/// The service made by [`ConcurrencyLimitLayer`](crate::ConcurrencyLimitLayer).
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    part: LimitPart,
}

impl<S> ConcurrencyLimit<S> {
    pub(crate) fn new(inner: S, part: LimitPart) -> Self {
        Self { inner, part }
    }

    vitals_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ConcurrencyLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body,
    ResBody::Data: From<Bytes> + Buf,
{
    type Response = Response<LimitBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Capacity is decided per request in `call`: routers call services with `oneshot`, so
        // back-pressure through `poll_ready` would never reach them.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The route picks a route's own limiter, and labels the `metrics` output.
        let route = self
            .part
            .wants_route()
            .then(|| self.part.route_labeler().label(&request));
        match self.part.admit(&request, route.as_ref()) {
            Admission::Admitted(permit) => {
                ResponseFuture::running(self.inner.call(request), permit)
            }
            Admission::Refused(refusal) => ResponseFuture::refused(refusal),
            Admission::Queued(queued) => {
                // The clone that is ready goes with the request; this service keeps the fresh
                // one.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(queued, inner, request)
            }
        }
    }
}
