//! What the trace-context test binaries share: a caller's `traceparent` and a small app.
#![allow(dead_code, clippy::unwrap_used)] // Each binary uses part of it; test code.

use axum::Router;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::routing::get;
use vitals_trace_context::{TraceContext, TraceContextLayer, inject};

pub(crate) const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// `/items/{id}` answers its trace id, span id and the `traceparent` a downstream call gets;
/// `/downstream-state` answers the `tracestate` a downstream call gets; `/fails` answers 500.
pub(crate) fn app() -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(|Extension(context): Extension<TraceContext>| async move {
                let mut downstream = http::HeaderMap::new();
                let child = inject(&mut downstream).unwrap();
                assert_eq!(child.parent_id, Some(context.span_id));
                format!(
                    "{} {} {}",
                    context.trace_id,
                    context.span_id,
                    downstream["traceparent"].to_str().unwrap()
                )
            }),
        )
        .route(
            "/downstream-state",
            get(|| async {
                let mut downstream = http::HeaderMap::new();
                inject(&mut downstream).unwrap();
                downstream
                    .get("tracestate")
                    .map(|value| value.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            }),
        )
        .route(
            "/fails",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .layer(TraceContextLayer::new())
}
