//! `Retry<S>`: the client service that tries failed calls again.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::body::ReplayBody;
use super::future::RetryFuture;
use super::layer::Shared;
use super::replay::Replay;
use super::rules;
use crate::error::BoxError;

/// A client service whose failed calls are tried again (see
/// [`RetryLayer`](super::RetryLayer)).
#[derive(Debug)]
pub struct Retry<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Retry<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> Retry<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    vitals_core::inner_service_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    B: ReplayBody,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = RetryFuture<S, B, S::Future, Response<ResB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.shared.budget.deposit();
        // A copy for the next attempt, only of a request that can repeat.
        let replay = (self.shared.max_attempts > 1
            && rules::may_repeat(request.method(), request.headers()))
        .then(|| Replay::of(&request, self.shared.max_body))
        .flatten();
        // The first attempt uses the readiness this service was given; later ones a clone's own.
        let retry_with = replay.as_ref().map(|_| self.inner.clone());
        let first = self.inner.call(request);
        RetryFuture::new(first, replay, retry_with, Arc::clone(&self.shared))
    }
}
