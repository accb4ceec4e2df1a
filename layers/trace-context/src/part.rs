//! The trace-context part: the server side — extract or start the trace, the request span, the
//! request id, and what goes back on the response — written once and driven two ways: by
//! [`TraceContextService`](crate::TraceContextService), and by the fused `vitals` stack.
//!
//! ```
//! use http::{Request, Response};
//! use vitals_core::route::RouteLabel;
//! use vitals_trace_context::{TraceContext, TraceContextLayer};
//!
//! let part = TraceContextLayer::new().part();
//! let mut request = Request::new(());
//! let in_flight = part.start(&mut request, &RouteLabel::from_static("/items"), None);
//! // The context is current while the handler runs, for `inject` and logs.
//! let current = in_flight.in_scope(TraceContext::current);
//! assert_eq!(current.map(|c| c.trace_id), request.extensions().get::<TraceContext>().map(|c| c.trace_id));
//! let mut response = Response::new(());
//! let _finish = in_flight.on_response(&mut response);
//! assert!(response.headers().contains_key("x-request-id"));
//! ```

use std::sync::Arc;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request, Response};
use tracing::Span;
use tracing::field::Empty;
use vitals_core::identity::{RequestId, RequestIdentity};
use vitals_core::route::RouteLabel;
use vitals_core::semconv::{self, method_label};
use vitals_core::server_timing::{Metric, ServerTiming};

use crate::context::{CurrentScope, TraceContext, enter};
use crate::layer::Config;

/// The trace-context part of a [`TraceContextLayer`](crate::TraceContextLayer) (see
/// [`TraceContextLayer::part`](crate::TraceContextLayer::part)). Cheap to clone.
#[derive(Clone, Debug)]
pub struct TracePart {
    pub(crate) config: Arc<Config>,
}

impl TracePart {
    /// Whether this part's `Server-Timing` mode lets the client of `headers` see timings.
    #[inline]
    pub fn shows_server_timing(&self, headers: &HeaderMap) -> bool {
        self.config.server_timing.allows(headers)
    }

    /// The route labeler the layer was given.
    pub fn route_labeler(&self) -> &vitals_core::route::RouteLabeler {
        &self.config.labeler
    }

    /// A request for `route` arrived: its trace context (continued or new), request id and
    /// span; the context and the [`RequestIdentity`] go into its extensions, for the parts and
    /// the handler. `server_timing` is the request's collector when the client may see
    /// timings: the `trace` entry goes to it.
    pub fn start<B>(
        &self,
        request: &mut Request<B>,
        route: &RouteLabel,
        server_timing: Option<&ServerTiming>,
    ) -> TraceInFlight {
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
                .or_else(|| Some(RequestId::from_u128(fastrand::u128(..))))
        });
        let method = method_label(request.method());
        let (uri, headers) = (request.uri(), request.headers());
        let server = semconv::server_address(uri, headers);
        let span = tracing::info_span!(
            target: vitals_core::identity::REQUEST_SPAN_TARGET,
            "request",
            request_id = request_id.as_ref().map(RequestId::as_str),
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            http.request.method = method,
            http.route = route.as_str(),
            url.path = uri.path(),
            url.scheme = uri.scheme_str().unwrap_or("http"),
            server.address = server.map(|(host, _)| host),
            server.port = server.map(|(_, port)| i64::from(port)),
            network.protocol.version = semconv::protocol_version(request.version()),
            user_agent.original = semconv::user_agent(headers),
            http.response.status_code = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        // With OpenTelemetry, the exported span's ids are the request's. The ids are no span
        // fields: log lines read them from the request's scope, and an exported span has them
        // as its own ids, not again as attributes.
        // Exported directly when a tracer was given for it, else through tracing-opentelemetry.
        #[cfg(feature = "opentelemetry")]
        let (otel, context) = if crate::otel::exports_directly() {
            use opentelemetry::KeyValue;
            let mut attributes = Vec::with_capacity(10);
            attributes.push(KeyValue::new("http.request.method", method));
            attributes.push(KeyValue::new("http.route", route.as_str().to_owned()));
            attributes.push(KeyValue::new("url.path", uri.path().to_owned()));
            // The usual schemes without a copy.
            attributes.push(match uri.scheme_str() {
                None | Some("http") => KeyValue::new("url.scheme", "http"),
                Some("https") => KeyValue::new("url.scheme", "https"),
                Some(other) => KeyValue::new("url.scheme", other.to_owned()),
            });
            if let Some((host, port)) = server {
                attributes.push(KeyValue::new("server.address", host.to_owned()));
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
            if let Some(version) = semconv::protocol_version(request.version()) {
                attributes.push(KeyValue::new("network.protocol.version", version));
            }
            if let Some(agent) = semconv::user_agent(headers) {
                attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
            }
            if let Some(id) = &request_id {
                attributes.push(KeyValue::new("request_id", id.as_str().to_owned()));
            }
            crate::otel::start_server_span(format!("{method} {route}"), attributes, context)
        } else if span.is_disabled() {
            (None, context)
        } else {
            (None, crate::otel::bridge(&span, context))
        };
        if let Some(timing) = server_timing.filter(|_| self.shows_server_timing(request.headers()))
        {
            let encoded = context.traceparent().encode();
            timing.add(Metric::new("trace").with_copied_description_bytes(&encoded));
        }
        let extensions = request.extensions_mut();
        extensions.insert(RequestIdentity {
            trace_id: Some(context.trace_id),
            span_id: Some(context.span_id),
            request_id: request_id.clone(),
        });
        extensions.insert(context.clone());
        let response_id = request_id.as_ref().map(|id| id.header_value().clone());
        TraceInFlight {
            scope: TraceScope {
                span,
                #[cfg(feature = "opentelemetry")]
                otel,
                current: Arc::new(CurrentScope {
                    context,
                    request_id,
                }),
            },
            request_id: response_id,
            request_id_header: config.request_id_header.clone(),
        }
    }
}

/// The request's span and context, made current together while its work runs.
pub struct TraceScope {
    span: Span,
    /// The exported server span's context, when it is exported directly.
    #[cfg(feature = "opentelemetry")]
    otel: Option<opentelemetry::Context>,
    /// The context and request id, current while the request's work runs: for
    /// [`inject`](crate::inject) and for the ids on log lines (no per-span copy of them).
    current: Arc<CurrentScope>,
}

impl std::fmt::Debug for TraceScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceScope")
            .field("trace_id", &self.current.context.trace_id)
            .finish_non_exhaustive()
    }
}

impl TraceScope {
    /// The request span.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Runs `f` inside the request span, with the request's context current (for
    /// [`inject`](crate::inject) and logs). Drivers call it around each poll of the handler and
    /// of the body: once, whatever other parts do inside.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _entered = self.span.enter();
        // Spans the work creates with `tracing` nest under the exported server span.
        #[cfg(feature = "opentelemetry")]
        let _otel = self.otel.as_ref().map(|otel| otel.clone().attach());
        enter(&self.current, f)
    }

    /// The body failed: the span is marked as an error.
    pub fn on_body_error(&self) {
        self.span.record("otel.status_code", "ERROR");
        self.span.record("error.type", "body_error");
        #[cfg(feature = "opentelemetry")]
        self.fail_export("body_error");
    }

    /// Marks the directly exported span as failed with `error_type`.
    #[cfg(feature = "opentelemetry")]
    fn fail_export(&self, error_type: &'static str) {
        use opentelemetry::trace::TraceContextExt as _;
        if let Some(otel) = &self.otel {
            let span = otel.span();
            span.set_status(opentelemetry::trace::Status::error(""));
            span.set_attribute(opentelemetry::KeyValue::new("error.type", error_type));
        }
    }
}

#[cfg(feature = "opentelemetry")]
impl Drop for TraceScope {
    fn drop(&mut self) {
        use opentelemetry::trace::TraceContextExt as _;
        // The request ends with its body (or when it is dropped): so does its exported span.
        if let Some(otel) = &self.otel {
            otel.span().end();
        }
    }
}

/// A request the trace-context part follows: until its response head in the standalone layer
/// ([`on_response`](Self::on_response) hands on its [`TraceScope`]), to the end of the body
/// in the fused stack ([`respond`](Self::respond) leaves it in place).
#[derive(Debug)]
pub struct TraceInFlight {
    scope: TraceScope,
    request_id: Option<HeaderValue>,
    request_id_header: Option<HeaderName>,
}

impl TraceInFlight {
    /// The request span.
    pub fn span(&self) -> &Span {
        &self.scope.span
    }

    /// See [`TraceScope::in_scope`].
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        self.scope.in_scope(f)
    }

    /// The span and context the request's work runs in.
    pub fn scope(&self) -> &TraceScope {
        &self.scope
    }

    /// The handler answered: the status goes on the span (an error for `5xx`), the request id
    /// on the response. Returns the scope the body runs in.
    pub fn on_response<B>(mut self, response: &mut Response<B>) -> TraceScope {
        self.respond(response);
        self.scope
    }

    /// [`on_response`](Self::on_response) for a caller that keeps this state to the end of
    /// the body (and runs the body in [`scope`](Self::scope)): nothing is moved. Called once;
    /// a second call records the status again and adds no request id.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use vitals_core::route::RouteLabel;
    /// use vitals_trace_context::{TraceContext, TraceContextLayer};
    ///
    /// let part = TraceContextLayer::new().part();
    /// let mut request = Request::new(());
    /// let mut in_flight = part.start(&mut request, &RouteLabel::from_static("/items"), None);
    /// let mut response = Response::new(());
    /// in_flight.respond(&mut response);
    /// assert!(response.headers().contains_key("x-request-id"));
    /// // The body runs in the same scope.
    /// assert!(in_flight.in_scope(TraceContext::current).is_some());
    /// let mut again = Response::new(());
    /// in_flight.respond(&mut again);
    /// assert!(!again.headers().contains_key("x-request-id"));
    /// ```
    pub fn respond<B>(&mut self, response: &mut Response<B>) {
        let status = response.status();
        let span = &self.scope.span;
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", status.as_str());
        }
        #[cfg(feature = "opentelemetry")]
        if let Some(otel) = &self.scope.otel {
            use opentelemetry::trace::TraceContextExt as _;
            let exported = otel.span();
            exported.set_attribute(opentelemetry::KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
            if status.is_server_error() {
                exported.set_status(opentelemetry::trace::Status::error(""));
                exported.set_attribute(opentelemetry::KeyValue::new(
                    "error.type",
                    status.as_str().to_owned(),
                ));
            }
        }
        if let (Some(name), Some(value)) = (self.request_id_header.take(), self.request_id.take()) {
            response.headers_mut().insert(name, value);
        }
    }

    /// The handler failed with an error instead of a response.
    pub fn on_error(self) {
        self.scope.span.record("otel.status_code", "ERROR");
        self.scope.span.record("error.type", "service_error");
        #[cfg(feature = "opentelemetry")]
        self.scope.fail_export("service_error");
    }
}
