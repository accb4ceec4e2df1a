//! `TraceContextLayer`: the server side — extract or start the trace, the request span, the
//! request id, and what goes back on the response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HeaderName;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;
use vitals_core::identity::{RequestId, RequestIdentity};
use vitals_core::route::RouteLabeler;
use vitals_core::semconv::method_label;
use vitals_core::server_timing::{Metric, ServerTiming, ServerTimingMode};

use crate::context::{TraceContext, enter};
use crate::traceparent::hex_into;
use crate::tracestate::DEFAULT_TRACESTATE_LIMIT;

/// The default request-id header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Debug)]
struct Config {
    request_id_header: Option<HeaderName>,
    server_timing: ServerTimingMode,
    tracestate_limit: usize,
    labeler: RouteLabeler,
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

impl<S> Layer<S> for TraceContextLayer {
    type Service = TraceContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service made by [`TraceContextLayer`].
#[derive(Clone, Debug)]
pub struct TraceContextService<S> {
    inner: S,
    config: Arc<Config>,
}

/// A new request id: 32 random hex digits.
fn new_request_id() -> Option<RequestId> {
    let mut text = [0u8; 32];
    hex_into(&fastrand::u128(..).to_be_bytes(), &mut text);
    RequestId::new(HeaderValue::from_bytes(&text).ok()?)
}

/// The ids as hex text on the stack, for span fields.
struct Ids {
    trace: [u8; 32],
    span: [u8; 16],
}

impl Ids {
    fn of(context: &TraceContext) -> Self {
        let mut ids = Self {
            trace: [0; 32],
            span: [0; 16],
        };
        hex_into(&context.trace_id.to_bytes(), &mut ids.trace);
        hex_into(&context.span_id.to_bytes(), &mut ids.span);
        ids
    }

    fn trace(&self) -> &str {
        std::str::from_utf8(&self.trace).unwrap_or_default()
    }

    fn span(&self) -> &str {
        std::str::from_utf8(&self.span).unwrap_or_default()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TraceContextService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let context =
            TraceContext::from_headers_limited(request.headers(), config.tracestate_limit);
        // Kept if it is 1–128 visible ASCII characters, else replaced: a client's CR/LF or
        // 10 KB never reaches a log line or a response header.
        let request_id = config.request_id_header.as_ref().and_then(|name| {
            request
                .headers()
                .get(name)
                .and_then(|value| RequestId::new(value.clone()))
                .or_else(new_request_id)
        });
        let route = config.labeler.label(&request);
        let method = method_label(request.method());
        let ids = Ids::of(&context);
        let span = tracing::info_span!(
            target: "vitals_trace_context",
            "request",
            trace_id = ids.trace(),
            span_id = ids.span(),
            request_id = request_id.as_ref().map(RequestId::as_str),
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            http.request.method = method,
            http.route = route.as_str(),
            url.path = request.uri().path(),
            url.scheme = request.uri().scheme_str().unwrap_or("http"),
            http.response.status_code = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        // With OpenTelemetry, the exported span's ids are the request's.
        #[cfg(feature = "opentelemetry")]
        let context = if span.is_disabled() {
            context
        } else {
            let bridged = crate::otel::bridge(&span, context.clone());
            if bridged.span_id != context.span_id {
                let ids = Ids::of(&bridged);
                span.record("trace_id", ids.trace());
                span.record("span_id", ids.span());
            }
            bridged
        };
        let allowed = config.server_timing.allows(request.headers());
        let extensions = request.extensions_mut();
        let timing = ServerTiming::attach_if(extensions, allowed).filter(|_| allowed);
        if let Some(timing) = &timing {
            let encoded = context.traceparent().encode();
            let description = std::str::from_utf8(&encoded)
                .map(str::to_owned)
                .unwrap_or_default();
            timing.add(Metric::new("trace").with_description(description));
        }
        extensions.insert(RequestIdentity {
            trace_id: Some(context.trace_id),
            span_id: Some(context.span_id),
            request_id: request_id.clone(),
        });
        extensions.insert(context.clone());
        let context = Arc::new(context);
        let inner = {
            let _entered = span.enter();
            enter(&context, || self.inner.call(request))
        };
        ResponseFuture {
            inner,
            state: Some(Box::new(State {
                span,
                context,
                timing,
                request_id: request_id.map(|id| id.header_value().clone()),
                request_id_header: config.request_id_header.clone(),
            })),
        }
    }
}

struct State {
    span: Span,
    context: Arc<TraceContext>,
    /// The request's Server-Timing collector, rendered here if this layer inserted it.
    timing: Option<ServerTiming>,
    request_id: Option<HeaderValue>,
    request_id_header: Option<HeaderName>,
}

pin_project! {
    /// The response future of [`TraceContextService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<Box<State>>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<TracedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Taken once, and put back while the handler is pending: no branch that could find
        // it missing and return `Pending` without a wake-up.
        let Some(state) = this.state.take() else {
            panic!("vitals_trace_context::ResponseFuture polled after completion");
        };
        let polled = {
            let _entered = state.span.enter();
            let inner = this.inner;
            enter(&state.context, || inner.poll(cx))
        };
        let Poll::Ready(result) = polled else {
            *this.state = Some(state);
            return Poll::Pending;
        };
        let State {
            span,
            context,
            timing,
            request_id,
            request_id_header,
        } = *state;
        Poll::Ready(match result {
            Ok(mut response) => {
                let status = response.status();
                span.record("http.response.status_code", status.as_u16());
                if status.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", status.as_str());
                }
                let headers = response.headers_mut();
                if let Some(timing) = timing.filter(ServerTiming::is_owner) {
                    timing.append_to(headers);
                }
                if let (Some(name), Some(value)) = (request_id_header, request_id) {
                    headers.insert(name, value);
                }
                Ok(response.map(|body| TracedBody {
                    inner: body,
                    span,
                    context,
                }))
            }
            Err(error) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", "service_error");
                Err(error)
            }
        })
    }
}

pin_project! {
    /// The response body, polled inside the request span (which ends with it) and with the
    /// request's context current.
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        span: Span,
        context: Arc<TraceContext>,
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let _entered = this.span.enter();
        let inner = this.inner;
        let polled = enter(this.context, || inner.poll_frame(cx));
        if let Poll::Ready(Some(Err(_))) = &polled {
            this.span.record("otel.status_code", "ERROR");
            this.span.record("error.type", "body_error");
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for TracedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedBody").finish_non_exhaustive()
    }
}
