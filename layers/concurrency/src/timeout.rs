//! `TimeoutLayer`: a deadline for the handler, answered with a response, not an error.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;
use vitals_core::route::RouteLabeler;

use crate::body::{LayerResponse, LimitBody};
use crate::deadline::{Deadline, DeadlineConfig, DeadlinePart};

/// Gives the handler `timeout` to answer; past it the handler's future is dropped (its work
/// stops at its next `.await`) and the client gets `503` (configurable: `504`, or any
/// [`LayerResponse`]). Outer Vitals layers see the outcome `timeout`.
///
/// With [`with_request_body_watch`](TimeoutLayer::with_request_body_watch), a deadline that
/// passes while the handler is still waiting for the client's request body is answered
/// `408 Request Timeout` instead: the client was slow, not the server.
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
pub struct TimeoutLayer<W = IgnoreRequestBody> {
    /// The deadline of routes without one of their own; `None`: no deadline.
    timeout: Option<Duration>,
    /// Route templates with a deadline of their own (`None`: none for that route).
    routes: Arc<HashMap<Box<str>, Option<Duration>>>,
    labeler: RouteLabeler,
    response: LayerResponse,
    body_deadline: bool,
    request_body: W,
}

/// The default of [`TimeoutLayer`]: the request body passes untouched, and a deadline is a
/// deadline whatever the handler waits on.
#[derive(Clone, Copy, Debug, Default)]
pub struct IgnoreRequestBody;

/// Set by [`TimeoutLayer::with_request_body_watch`]: the request body is watched, and a
/// deadline that passes while the handler waits for it is answered with this response (`408`).
#[derive(Clone, Debug)]
pub struct WatchRequestBody {
    response: LayerResponse,
}

impl TimeoutLayer {
    /// A deadline of `timeout` for the handler, answered with `503`. A deadline too far away
    /// to put on the clock (`Duration::MAX`) means no deadline.
    pub fn new(timeout: Duration) -> Self {
        Self::with_default(Some(timeout))
    }

    /// No deadline of its own: only the routes given
    /// [`with_route_timeout`](TimeoutLayer::with_route_timeout) get one.
    pub fn per_route() -> Self {
        Self::with_default(None)
    }

    fn with_default(timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            routes: Arc::default(),
            labeler: RouteLabeler::new(),
            response: LayerResponse::json(
                StatusCode::SERVICE_UNAVAILABLE,
                "the request took too long and was stopped",
            ),
            body_deadline: false,
            request_body: IgnoreRequestBody,
        }
    }

    /// Answer `408 Request Timeout` (with `Connection: close`) when the deadline passes while
    /// the handler is waiting for the request body — a slow or stalled upload — and the
    /// configured status otherwise.
    ///
    /// The inner service then sees the request body wrapped in a [`WatchedBody`] (same data
    /// and errors), which axum routers and handlers accept like any body. It costs one small
    /// allocation per request.
    pub fn with_request_body_watch(self) -> TimeoutLayer<WatchRequestBody> {
        TimeoutLayer {
            timeout: self.timeout,
            routes: self.routes,
            labeler: self.labeler,
            response: self.response,
            body_deadline: self.body_deadline,
            request_body: WatchRequestBody {
                response: LayerResponse::json(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                ),
            },
        }
    }
}

impl TimeoutLayer<WatchRequestBody> {
    /// Answer a stalled upload with `response` instead of the default `408` JSON.
    #[must_use]
    pub fn with_request_body_response(mut self, response: LayerResponse) -> Self {
        self.request_body.response = response;
        self
    }
}

impl<W> TimeoutLayer<W> {
    /// Let the deadline cover the response body too: a body still streaming when it passes
    /// fails with [`BodyDeadlineElapsed`], so the server aborts the response (a client sees a
    /// truncated response, never one that looks complete).
    #[must_use]
    pub fn with_body_deadline(mut self) -> Self {
        self.body_deadline = true;
        self
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

    /// How requests get their route label for per-route deadlines and the timed-out counter
    /// (default: axum's `MatchedPath`, else `unmatched`).
    #[must_use]
    pub fn with_route_labeler(mut self, labeler: RouteLabeler) -> Self {
        self.labeler = labeler;
        self
    }

    /// The deadline for the route template `route` (`"/report"`) instead of the layer's;
    /// `None` lets that route run without one, as does a deadline too far away to put on the
    /// clock (`Duration::MAX`). The route is found through the route label (axum's
    /// `MatchedPath`), so one layer holds a table of deadlines.
    ///
    /// ```
    /// use std::time::Duration;
    /// use vitals_concurrency::TimeoutLayer;
    ///
    /// let timeouts = TimeoutLayer::new(Duration::from_secs(10))
    ///     .with_route_timeout("/report", Duration::from_secs(30))
    ///     .with_route_timeout("/events", None);
    /// ```
    #[must_use]
    pub fn with_route_timeout(mut self, route: &str, timeout: impl Into<Option<Duration>>) -> Self {
        Arc::make_mut(&mut self.routes).insert(route.into(), timeout.into());
        self
    }
}

impl<W> TimeoutLayer<W> {
    /// The deadline as a part, for drivers that run several parts in one service (the fused
    /// `vitals` stack); [`Timeout`] is its standalone driver (which adds the request-body
    /// watch, when asked for).
    pub fn part(&self) -> DeadlinePart {
        DeadlinePart {
            config: Arc::new(DeadlineConfig {
                timeout: self.timeout,
                routes: Arc::clone(&self.routes),
                labeler: self.labeler.clone(),
                response: self.response.clone(),
                body_deadline: self.body_deadline,
            }),
        }
    }
}

impl<S, W: Clone> Layer<S> for TimeoutLayer<W> {
    type Service = Timeout<S, W>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            part: self.part(),
            request_body: self.request_body.clone(),
        }
    }
}

/// The service made by [`TimeoutLayer`]: a thin adapter over the
/// [deadline part](crate::deadline::DeadlinePart).
#[derive(Clone, Debug)]
pub struct Timeout<S, W = IgnoreRequestBody> {
    inner: S,
    part: DeadlinePart,
    request_body: W,
}

impl<S, W> Timeout<S, W> {
    /// The request's deadline (its route labelled only when needed).
    fn deadline<B>(&self, request: &Request<B>) -> Option<Deadline> {
        let route = self
            .part
            .wants_route()
            .then(|| self.part.route_labeler().label(request));
        self.part.start(route.as_ref())
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

fn timeout_future<F>(future: F, deadline: Option<Deadline>) -> TimeoutFuture<F> {
    TimeoutFuture {
        inner: Handler::Running { future },
        body_deadline: deadline.as_ref().and_then(Deadline::body_deadline),
        deadline,
        request_body: None,
    }
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
        let request = request.map(|body| WatchedBody {
            inner: body,
            waiting: Arc::clone(&waiting),
        });
        let deadline = self.deadline(&request);
        let inner = self.inner.call(request);
        let mut future = timeout_future(inner, deadline);
        future.request_body = Some(Box::new(RequestBodyWatch {
            waiting,
            response: self.request_body.response.clone(),
            http1,
        }));
        future
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
        timeout_future(inner, deadline)
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
        deadline: Option<Deadline>,
        body_deadline: Option<tokio::time::Instant>,
        // With a watched request body: whether the handler waits for it, and the answer then.
        request_body: Option<Box<RequestBodyWatch>>,
    }
}

impl<F, B, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Data: From<Bytes> + Buf,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<LimitBody<DeadlineBody<B>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(watch) = this.request_body.as_ref() {
            // Only a body read left pending by this poll of the handler counts as waiting.
            watch.waiting.store(false, Ordering::Release);
        }
        if let HandlerProj::Running { future } = this.inner.as_mut().project()
            && let Poll::Ready(result) = future.poll(cx)
        {
            this.inner.set(Handler::Gone);
            let deadline = *this.body_deadline;
            return Poll::Ready(result.map(|response| {
                response.map(|body| LimitBody::inner(DeadlineBody::new(body, deadline), None))
            }));
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.poll_elapsed(cx).is_ready()
        {
            // Read before the handler (and the body it holds) is dropped: the drop clears it.
            let waiting = this
                .request_body
                .as_ref()
                .is_some_and(|watch| watch.waiting.load(Ordering::Acquire));
            this.inner.set(Handler::Gone);
            let Some(deadline) = this.deadline.take() else {
                panic!("vitals_concurrency::TimeoutFuture polled after completion");
            };
            if let Some(watch) = this.request_body.take()
                && waiting
            {
                // The client was slow, not the server: a client error, not a timeout outcome.
                let mut response = watch.response.to_response(None);
                if watch.http1 {
                    // The rest of the body will not be read: the connection cannot be reused.
                    // (HTTP/2 has no connection header: the stream is reset instead.)
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                return Poll::Ready(Ok(response));
            }
            return Poll::Ready(Ok(deadline.into_response().map(LimitBody::own)));
        }
        Poll::Pending
    }
}

/// What the timeout needs to tell a stalled upload apart.
struct RequestBodyWatch {
    /// Set while the handler's latest read of the request body is left pending.
    waiting: Arc<AtomicBool>,
    response: LayerResponse,
    http1: bool,
}

pin_project! {
    /// The request body as the handler sees it behind
    /// [`TimeoutLayer::with_request_body_watch`]: unchanged, but the layer knows whether the
    /// handler is waiting for more of it.
    pub struct WatchedBody<B> {
        #[pin]
        inner: B,
        waiting: Arc<AtomicBool>,
    }

    impl<B> PinnedDrop for WatchedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // A handler that dropped the body waits for it no more.
            this.waiting.store(false, Ordering::Release);
        }
    }
}

impl<B: Body> Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        this.waiting.store(polled.is_pending(), Ordering::Release);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for WatchedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedBody")
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The error type of bodies behind [`TimeoutLayer`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a body fails with when the [body deadline](TimeoutLayer::with_body_deadline)
/// passes before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDeadlineElapsed;

impl std::fmt::Display for BodyDeadlineElapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the response body did not end before the deadline")
    }
}

impl std::error::Error for BodyDeadlineElapsed {}

pin_project! {
    /// The handler's body, failed with [`BodyDeadlineElapsed`] if it is still streaming when
    /// the deadline passes (only with [`TimeoutLayer::with_body_deadline`]).
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> DeadlineBody<B> {
    /// `inner`, failed with [`BodyDeadlineElapsed`] if it has not ended by `deadline` (none:
    /// passed through).
    pub fn new(inner: B, deadline: Option<tokio::time::Instant>) -> Self {
        Self {
            inner,
            sleep: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if let Some(sleep) = this.sleep.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(BodyDeadlineElapsed))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for DeadlineBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineBody")
            .field("deadline", &self.sleep.as_ref().map(|s| s.deadline()))
            .finish_non_exhaustive()
    }
}
