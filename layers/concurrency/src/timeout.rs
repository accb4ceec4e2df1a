//! `TimeoutLayer`: a deadline for the handler, answered with a response, not an error.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;
use vitals_core::outcome::OutcomeHint;
use vitals_core::route::{RouteLabel, RouteLabeler};

use crate::body::{LayerResponse, LimitBody};

/// Gives the handler `timeout` to answer; past it the handler's future is dropped (its work
/// stops at its next `.await`) and the client gets `503` (configurable: `504`, or any
/// [`LayerResponse`]). Outer Vitals layers see the outcome `timeout`.
///
/// ```
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use vitals_concurrency::TimeoutLayer;
///
/// let app: Router = Router::new()
///     .route("/report", get(|| async { "done" }))
///     .route_layer(TimeoutLayer::new(Duration::from_secs(5)));
/// ```
#[derive(Clone, Debug)]
pub struct TimeoutLayer {
    timeout: Duration,
    response: LayerResponse,
}

impl TimeoutLayer {
    /// A deadline of `timeout` for the handler, answered with `503`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            response: LayerResponse::json(
                StatusCode::SERVICE_UNAVAILABLE,
                "the request took too long and was stopped",
            ),
        }
    }

    /// Answer with `504 Gateway Timeout` instead (for a service that mostly waits on others).
    #[must_use]
    pub fn with_gateway_timeout(self) -> Self {
        self.with_response(LayerResponse::json(
            StatusCode::GATEWAY_TIMEOUT,
            "the request took too long and was stopped",
        ))
    }

    /// Answer with `response`.
    #[must_use]
    pub fn with_response(mut self, response: LayerResponse) -> Self {
        self.response = response;
        self
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    layer: TimeoutLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes> + Buf,
{
    type Response = Response<LimitBody<ResBody>>;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let route = cfg!(feature = "metrics").then(|| RouteLabeler::new().label(&request));
        TimeoutFuture {
            route,
            inner: Handler::Running {
                future: self.inner.call(request),
            },
            sleep: tokio::time::sleep(self.layer.timeout),
            response: Some(self.layer.response.clone()),
        }
    }
}

pin_project! {
    /// The handler's future, until it is done or dropped at the deadline.
    #[project = HandlerProj]
    enum Handler<F> {
        Running { #[pin] future: F },
        Gone,
    }
}

pin_project! {
    /// The response future of [`Timeout`].
    pub struct TimeoutFuture<F> {
        // Dropped as soon as the deadline passes, so the handler's work stops.
        #[pin]
        inner: Handler<F>,
        #[pin]
        sleep: Sleep,
        response: Option<LayerResponse>,
        route: Option<RouteLabel>,
    }
}

impl<F, B, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Data: From<Bytes> + Buf,
{
    type Output = Result<Response<LimitBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let HandlerProj::Running { future } = this.inner.as_mut().project()
            && let Poll::Ready(result) = future.poll(cx)
        {
            this.inner.set(Handler::Gone);
            return Poll::Ready(result.map(|r| r.map(|body| LimitBody::inner(body, None))));
        }
        if this.sleep.poll(cx).is_ready() {
            this.inner.set(Handler::Gone);
            #[cfg(feature = "metrics")]
            crate::metrics::timed_out(this.route.as_ref());
            let Some(response) = this.response.take() else {
                panic!("vitals_concurrency::TimeoutFuture polled after completion");
            };
            return Poll::Ready(Ok(response.to_response(OutcomeHint::Timeout)));
        }
        Poll::Pending
    }
}
