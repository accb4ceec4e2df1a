//! `vitals-trace-context`: W3C Trace Context (Level 2) in and out, request ids, and a request
//! span with OpenTelemetry's semantic conventions.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use vitals_trace_context::TraceContextLayer;
//!
//! let app: Router = Router::new()
//!     .route("/products/{id}", get(|| async { "a product" }))
//!     // Outermost: everything inside runs in the request's trace.
//!     .layer(TraceContextLayer::new());
//! ```
//!
//! - **In**: one valid `traceparent` continues the caller's trace (version `00` strictly; later
//!   versions by their first four fields; uppercase hex and all-zero ids are invalid), with its
//!   `tracestate` (at most 32 members by the key/value grammar, header lines combined, dropped
//!   whole when invalid). An invalid, missing or duplicated `traceparent` starts a new trace
//!   with a random trace id and the random flag set, and drops `tracestate`.
//! - **The request**: an INFO span (target `vitals_trace_context`) named `{method} {route}`
//!   through `otel.name`, with `otel.kind = "server"`, `http.request.method`, `http.route`,
//!   `url.path`, `url.scheme`, the server's address and port, the protocol version, the user
//!   agent, `http.response.status_code`, `otel.status_code = ERROR` for 5xx, `error.type`, and
//!   `request_id`. The trace and span ids are no fields: log lines read them from the request's
//!   scope (module `logs`), an exported span has them as its own. The [`TraceContext`] and
//!   vitals-core's `RequestIdentity` go into the request extensions.
//! - **Out, to the client**: the `trace` metric in `Server-Timing`
//!   (`trace;desc=00-<trace-id>-<span-id>-<flags>`, the W3C editor's draft that replaced
//!   `traceresponse`), in the same line as the other layers' metrics, and `x-request-id` (the
//!   client's if it is 1–128 visible ASCII characters, else a new one). Both can be turned off.
//! - **Out, downstream**: [`PropagateTraceContextLayer`] for `http::Request` clients (hyper-util,
//!   tonic channels) and [`inject`] for others (reqwest): each call gets a new client span id as
//!   its parent and the caller's `tracestate`.
//!
//! See `docs/trace-context.md`.

mod body;
pub mod client_span;
mod context;
mod future;
mod layer;
#[cfg(feature = "logs")]
pub mod logs;
#[cfg(feature = "opentelemetry")]
mod otel;
pub mod part;
mod propagate;
mod service;
mod traceparent;
mod tracestate;

#[cfg(test)]
mod props;

pub use body::TracedBody;
pub use client_span::{ClientSpan, ClientSpanFuture, ClientSpanLayer};
pub use context::{Scoped, TRACEPARENT, TRACESTATE, TraceContext, inject, inject_span};
pub use future::ResponseFuture;
pub use layer::{TraceContextLayer, X_REQUEST_ID};
#[cfg(feature = "opentelemetry")]
pub use otel::{RequestSpanEvents, export_request_spans, record_request_event};
pub use propagate::{PropagateTraceContext, PropagateTraceContextLayer};
pub use service::TraceContextService;
pub use traceparent::{TraceFlags, TraceParent};
pub use tracestate::{DEFAULT_TRACESTATE_LIMIT, MAX_MEMBERS, TraceState};
