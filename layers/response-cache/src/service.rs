//! The standalone service: the part, driven around one inner service.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use vitals_core::route::RouteLabeler;

use crate::body::ResponseCacheBody;
use crate::future::ResponseFuture;
use crate::part::{Arrival, ResponseCachePart};

/// The service [`ResponseCacheLayer`](crate::ResponseCacheLayer) makes.
#[derive(Clone, Debug)]
pub struct ResponseCache<S> {
    inner: S,
    part: ResponseCachePart,
    labeler: RouteLabeler,
}

impl<S> ResponseCache<S> {
    pub(crate) fn new(inner: S, part: ResponseCachePart, labeler: RouteLabeler) -> Self {
        Self {
            inner,
            part,
            labeler,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, the layer taken off.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for ResponseCache<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Default + Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseCacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !self.part.may_apply(request.method()) {
            return ResponseFuture::running(self.inner.call(request), None);
        }
        let route = self.labeler.label(&request);
        let (mut head, body) = request.into_parts();
        match self.part.arrival(&mut head, &route) {
            Arrival::Pass => {
                ResponseFuture::running(self.inner.call(Request::from_parts(head, body)), None)
            }
            Arrival::Forward(fill) => ResponseFuture::running(
                self.inner.call(Request::from_parts(head, body)),
                Some(fill),
            ),
            Arrival::Answer(response, refresh) => {
                if let Some(refresh) = refresh {
                    refresh.spawn(self.inner.clone());
                }
                ResponseFuture::answered(response)
            }
            Arrival::Wait(waiter) => {
                // The service `poll_ready` readied goes with the request; a clone stays.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(waiter, self.part.clone(), route, head, body, ready)
            }
        }
    }
}
