//! `TraceContextLayer`: the builder of the server side (the behaviour is in `part.rs`).

use std::sync::Arc;

use http::header::HeaderName;
use tower_layer::Layer;
use vitals_core::route::RouteLabeler;
use vitals_core::server_timing::ServerTimingMode;

use crate::part::TracePart;
use crate::service::TraceContextService;
use crate::tracestate::DEFAULT_TRACESTATE_LIMIT;

/// The default request-id header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) request_id_header: Option<HeaderName>,
    pub(crate) server_timing: ServerTimingMode,
    pub(crate) tracestate_limit: usize,
    pub(crate) labeler: RouteLabeler,
}

/// Continues the caller's W3C trace (or starts one), runs the request in an INFO span named
/// `{method} {route}` with OpenTelemetry semantic-convention fields, makes the context current
/// for [`inject`](crate::inject), and answers with the `trace` Server-Timing metric and the
/// request id. See the [crate documentation](crate).
#[derive(Clone, Debug)]
pub struct TraceContextLayer {
    config: Arc<Config>,
}

impl Default for TraceContextLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl TraceContextLayer {
    /// `x-request-id` kept or made, the `trace` Server-Timing metric on.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                request_id_header: Some(X_REQUEST_ID),
                server_timing: ServerTimingMode::Always,
                tracestate_limit: DEFAULT_TRACESTATE_LIMIT,
                labeler: RouteLabeler::new(),
            }),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Reads and answers the request id under `name` instead of `x-request-id`.
    #[must_use]
    pub fn with_request_id_header(mut self, name: HeaderName) -> Self {
        self.config().request_id_header = Some(name);
        self
    }

    /// No request id: none read, none made, none sent back.
    #[must_use]
    pub fn without_request_id(mut self) -> Self {
        self.config().request_id_header = None;
        self
    }

    /// Which requests may see a `Server-Timing` header, and with it the `trace` metric (the
    /// server's traceparent). A request this mode denies gets no `Server-Timing` from any
    /// Vitals layer: the most restrictive layer wins.
    #[must_use]
    pub fn with_server_timing(mut self, mode: impl Into<ServerTimingMode>) -> Self {
        self.config().server_timing = mode.into();
        self
    }

    /// No `Server-Timing` header on any response, from any Vitals layer
    /// (`with_server_timing(ServerTimingMode::Off)`).
    #[must_use]
    pub fn without_server_timing(self) -> Self {
        self.with_server_timing(ServerTimingMode::Off)
    }

    /// The longest incoming `tracestate` carried on, in characters (default
    /// [`DEFAULT_TRACESTATE_LIMIT`], 512: what the spec says to propagate at least). A longer
    /// one loses whole members — those over 128 characters first, then from the end — before
    /// the request span, the logs or any outgoing call see it.
    #[must_use]
    pub fn with_tracestate_limit(mut self, limit: usize) -> Self {
        self.config().tracestate_limit = limit;
        self
    }

    /// Labels requests with `labeler` (default: axum's `MatchedPath`).
    #[must_use]
    pub fn with_route_labeler(mut self, labeler: RouteLabeler) -> Self {
        self.config().labeler = labeler;
        self
    }
}

impl TraceContextLayer {
    /// This layer's behaviour as a part, for a driver that runs several parts in one pass
    /// (the `vitals` stack).
    pub fn part(&self) -> TracePart {
        TracePart {
            config: Arc::clone(&self.config),
        }
    }
}

impl<S> Layer<S> for TraceContextLayer {
    type Service = TraceContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService::new(inner, self.part())
    }
}
