//! `Timeout`: the service, with or without the request-body watch.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{Request, Response, Version};
use http_body::Body;
use tower_service::Service;

use super::body::{BoxError, DeadlineBody, WatchedBody};
use super::future::{RequestBodyWatch, TimeoutFuture};
use super::layer::{IgnoreRequestBody, WatchRequestBody};
use crate::body::LimitBody;
use crate::deadline::{Deadline, DeadlinePart};

/// The service made by [`TimeoutLayer`](crate::TimeoutLayer): a thin adapter over the
/// [deadline part](crate::deadline::DeadlinePart).
#[derive(Clone, Debug)]
pub struct Timeout<S, W = IgnoreRequestBody> {
    inner: S,
    part: DeadlinePart,
    request_body: W,
}

impl<S, W> Timeout<S, W> {
    pub(crate) fn new(inner: S, part: DeadlinePart, request_body: W) -> Self {
        Self {
            inner,
            part,
            request_body,
        }
    }

    /// The request's deadline (its route labelled only when needed).
    fn deadline<B>(&self, request: &Request<B>) -> Option<Deadline> {
        let route = self
            .part
            .wants_route()
            .then(|| self.part.route_labeler().label(request));
        self.part.start(route.as_ref())
    }

    vitals_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S, WatchRequestBody>
where
    S: Service<Request<WatchedBody<ReqBody>>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes> + Buf,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<LimitBody<DeadlineBody<ResBody>>>;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let waiting = Arc::new(AtomicBool::new(false));
        let http1 = request.version() <= Version::HTTP_11;
        let request = request.map(|body| WatchedBody::new(body, Arc::clone(&waiting)));
        let deadline = self.deadline(&request);
        let inner = self.inner.call(request);
        TimeoutFuture::new(inner, deadline).watching(RequestBodyWatch {
            waiting,
            response: self.request_body.response.clone(),
            http1,
        })
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S, IgnoreRequestBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes> + Buf,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<LimitBody<DeadlineBody<ResBody>>>;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let deadline = self.deadline(&request);
        let inner = self.inner.call(request);
        TimeoutFuture::new(inner, deadline)
    }
}
