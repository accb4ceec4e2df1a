//! The service made by [`RateLimitLayer`](crate::RateLimitLayer): a thin adapter over the
//! [rate-limit part](crate::part::RateLimitPart).

use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use vitals_core::body::EitherBody;

use crate::future::ResponseFuture;
use crate::part::{Decision, RateLimitPart};

/// The service made by [`RateLimitLayer`](crate::RateLimitLayer).
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    part: RateLimitPart,
}

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, part: RateLimitPart) -> Self {
        Self { inner, part }
    }

    vitals_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body,
    ResBody::Data: From<Bytes> + Buf,
{
    type Response = Response<EitherBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let route = self
            .part
            .wants_route()
            .then(|| self.part.route_labeler().label(&request));
        match self.part.check(&request, route.as_ref()) {
            Decision::Unlimited => ResponseFuture::running(self.inner.call(request), None),
            Decision::Allowed(grant) => {
                ResponseFuture::running(self.inner.call(request), Some(grant))
            }
            Decision::Refused(refusal) => ResponseFuture::refused(refusal.into_response()),
            Decision::Pending(checking) => {
                // The clone that is ready goes with the request; this service keeps the fresh
                // one.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(checking, inner, request)
            }
        }
    }
}
