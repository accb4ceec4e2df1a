//! `vitals-latency`: every request's duration per route, to the last byte of its body, with
//! local p50/p90/p95/p99/p99.9 over sliding windows and histograms that aggregate across
//! instances.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use vitals_latency::{LatencyLayer, LatencyRegistry};
//!
//! let registry = LatencyRegistry::new();
//! let app: Router = Router::new()
//!     .route("/products/{id}", get(|| async { "a product" }))
//!     .layer(LatencyLayer::new(registry.clone()))
//!     // Outside the layer, so the endpoints are not measured themselves.
//!     .route_service("/metrics", registry.prometheus_service())
//!     .route_service("/_vitals/latency", registry.json_service());
//! ```
//!
//! - **What is recorded**: one series per route template (axum's `MatchedPath`; `unmatched`
//!   for 404s, never the raw path), method (`_OTHER` for unknown ones) and status code. The
//!   duration runs from the call to the end of the response body (vitals-core's completion
//!   body), so streaming responses count in full. Requests whose client went away are counted
//!   as *cancelled*, never mixed into the latency.
//! - **Histogram**: 2,048 atomic log-linear buckets from 0 to 137 s; every quantile is within
//!   1/128 (0.78%) of the exact nearest-rank value over 1 µs – 100 s. Recording is a few
//!   relaxed atomic additions; the only lock is taken once per series every 30 s, by the
//!   first record of a new window slot, to recycle it.
//! - **Windows**: cumulative counters for export; a ring of 30-second slots for the last minute
//!   (60–90 s of data) and the last five minutes (300–330 s), for local quantiles
//!   ([`LatencyRegistry::snapshot`]).
//! - **Memory**: at most ~91 KiB per series with its windows (slots allocate on first use);
//!   [`LatencyRegistry::memory`] says what is held now.
//! - **Cardinality guard**: at most 2,000 series by default; requests of new series beyond the
//!   cap count in one [`OVERFLOW_ROUTE`] series, and [`LatencyRegistry::overflowed`] says how many.
//! - **Exports**: [`render_prometheus`](LatencyRegistry::render_prometheus) and a service for it
//!   (feature `prometheus`), a JSON snapshot service (feature `json`), the `metrics` facade
//!   (feature `metrics`), an OpenTelemetry meter (feature `opentelemetry`).
//!
//! Quantiles are computed here, for local views; exports are histograms, which aggregate across
//! instances (summaries do not). See `docs/latency.md`.

mod body;
mod cache;
mod future;
mod histogram;
mod layer;
mod method;
pub mod part;
mod registry;
mod series;
mod service;
mod shards;
mod snapshot;
mod window;

#[cfg(feature = "json")]
mod json;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "opentelemetry")]
mod otel;
#[cfg(feature = "prometheus")]
pub mod prometheus;

pub use body::LatencyBody;
pub use future::ResponseFuture;
pub use layer::LatencyLayer;
pub use registry::{
    DEFAULT_MAX_SERIES, LatencyRegistry, LatencyRegistryBuilder, OVERFLOW_ROUTE, SeriesHandle,
};
pub use service::Latency;
pub use snapshot::{CumulativeSeries, SeriesSnapshot, Snapshot};
pub use window::Window;

#[cfg(feature = "json")]
pub use json::JsonSnapshotService;
#[cfg(feature = "prometheus")]
pub use prometheus::PrometheusService;
