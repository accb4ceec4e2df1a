//! `TimeoutLayer`: the deadlines (the layer's and each route's), the answers, the watches.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tower_layer::Layer;
use vitals_core::route::RouteLabeler;
use vitals_core::route_table::RouteTable;

use super::service::Timeout;
use crate::body::LayerResponse;
use crate::deadline::{DeadlineConfig, DeadlinePart};

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
    routes: Arc<RouteTable<Option<Duration>>>,
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
    pub(super) response: LayerResponse,
}

impl TimeoutLayer {
    /// A deadline of `timeout` for the handler, answered with `503`. A deadline too far away
    /// to put on the clock (`Duration::MAX`) means no deadline.
    pub fn new(timeout: Duration) -> Self {
        Self::with_default(Some(timeout))
    }

    /// No deadline of its own: only the routes given
    /// [`with_route`](TimeoutLayer::with_route) get one.
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
    /// The inner service then sees the request body wrapped in a [`WatchedBody`](crate::WatchedBody) (same data
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
    /// fails with [`BodyDeadlineElapsed`](crate::BodyDeadlineElapsed), so the server aborts the response (a client sees a
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
    ///     .with_route("/report", Duration::from_secs(30))
    ///     .with_route("/events", None);
    /// ```
    #[must_use]
    pub fn with_route(mut self, route: &str, timeout: impl Into<Option<Duration>>) -> Self {
        Arc::make_mut(&mut self.routes).insert(route, timeout.into());
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
        Timeout::new(inner, self.part(), self.request_body.clone())
    }
}
