//! The standalone service: the part, driven around one inner service.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use vitals_core::route::{RequestHead, RouteLabeler};

use crate::body::IdempotencyBody;
use crate::future::ResponseFuture;
use crate::part::{Arrival, IdempotencyPart};

/// The service [`IdempotencyLayer`](crate::IdempotencyLayer) makes.
#[derive(Clone, Debug)]
pub struct Idempotency<S> {
    inner: S,
    part: IdempotencyPart,
    labeler: RouteLabeler,
}

impl<S> Idempotency<S> {
    pub(crate) fn new(inner: S, part: IdempotencyPart, labeler: RouteLabeler) -> Self {
        Self {
            inner,
            part,
            labeler,
        }
    }
}

impl<S, B, ResBody> Service<Request<B>> for Idempotency<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    B: Body + From<Bytes>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<IdempotencyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !self.part.may_apply(request.method(), request.headers()) {
            return ResponseFuture::running(self.inner.call(request), None);
        }
        let route = self.labeler.label(&request);
        let (head, body) = request.into_parts();
        match self.part.arrival(RequestHead::of_parts(&head), &route) {
            Arrival::Pass => {
                ResponseFuture::running(self.inner.call(Request::from_parts(head, body)), None)
            }
            Arrival::Answer(response) => ResponseFuture::answered(response),
            Arrival::Collect(keyed) => {
                // The service `poll_ready` readied goes with the request; a clone stays.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::collecting(keyed, head, body, ready)
            }
        }
    }
}
