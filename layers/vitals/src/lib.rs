//! Vitals: every layer in the right order behind one builder, and one call to set up what they
//! report into.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use vitals::{RouteSettings, VitalsLayer};
//! use vitals::cache_headers::CachePolicy;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Logs as JSON lines with trace ids, a Prometheus recorder, OTLP spans when
//! // OTEL_EXPORTER_OTLP_ENDPOINT is set (feature `otlp`). Keep the guard: dropping it flushes.
//! let telemetry = vitals::telemetry::init()?;
//! let vitals = VitalsLayer::builder()
//!     .with_route("/products/{id}", RouteSettings::new().with_cache_policy(CachePolicy::public(Duration::from_mins(1))))
//!     .with_route("/slow", RouteSettings::new().with_timeout(Duration::from_secs(5)))
//!     .build()?;
//! let app = Router::new()
//!     .route("/products/{id}", get(|| async { "a product" }))
//!     .route("/slow", get(|| async { "eventually" }))
//!     .layer(vitals);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # drop(telemetry); Ok(()) }
//! ```
//!
//! Each layer crate is re-exported under a feature of the same name (all on by default):
//! [`timing`], [`queries`], [`latency`], [`trace_context`], [`cache_headers`],
//! [`concurrency`]; [`core`] always. Feature `telemetry` (default) adds [`telemetry`];
//! `otlp` adds OTLP span export to it; `dashboard` adds the live `/_vitals` page
//! (`dashboard`, and [`VitalsLayer::dashboard`]); `client` adds `client`, the stack for
//! outgoing calls (the request's deadline carried into them, a circuit breaker);
//! `idempotency` adds `idempotency`, the `Idempotency-Key` layer; `response-cache` adds
//! `response_cache`, the shared response cache (a standalone layer for now, not yet a part of
//! the fused stack).

pub use vitals_core as core;

#[cfg(feature = "cache-headers")]
pub use vitals_cache_headers as cache_headers;
#[cfg(feature = "client")]
pub use vitals_client as client;
#[cfg(feature = "concurrency")]
pub use vitals_concurrency as concurrency;
#[cfg(feature = "dashboard")]
pub use vitals_dashboard as dashboard;
#[cfg(feature = "idempotency")]
pub use vitals_idempotency as idempotency;
#[cfg(feature = "jobs")]
pub use vitals_jobs as jobs;
#[cfg(feature = "latency")]
pub use vitals_latency as latency;
#[cfg(feature = "queries")]
pub use vitals_queries as queries;
#[cfg(feature = "rate-limit")]
pub use vitals_rate_limit as rate_limit;
#[cfg(feature = "response-cache")]
pub use vitals_response_cache as response_cache;
#[cfg(feature = "timing")]
pub use vitals_timing as timing;
#[cfg(feature = "trace-context")]
pub use vitals_trace_context as trace_context;

mod admission;
mod body;
pub mod bounds;
mod future;
mod plan;
mod response_cache_part;
mod routes;
mod scope;
mod service;
mod stack;
mod state;
#[cfg(feature = "telemetry")]
pub mod telemetry;
pub mod toggle;

pub use body::VitalsBody;
pub use bounds::RequestBody;
pub use future::ResponseFuture;
pub use routes::RouteSettings;
pub use service::VitalsService;
pub use stack::{DEFAULT_CONCURRENCY_LIMIT, VitalsBuilder, VitalsError, VitalsLayer};
pub use vitals_core::server_timing::ServerTimingMode;

// The guides in docs/*.md, compiled and run as doctests of this crate, so their Rust blocks stay
// true to the code (`cargo test --workspace --all-features --doc`). Each module needs the
// features its guide's blocks use.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/architecture.md")]
mod architecture_md {}
#[cfg(all(doctest, feature = "timing"))]
#[doc = include_str!("../../../docs/benchmarks.md")]
mod benchmarks_md {}
#[cfg(all(doctest, feature = "cache-headers"))]
#[doc = include_str!("../../../docs/cache-headers.md")]
mod cache_headers_md {}
#[cfg(all(doctest, feature = "client", feature = "concurrency"))]
#[doc = include_str!("../../../docs/client.md")]
mod client_md {}
#[cfg(all(doctest, feature = "concurrency"))]
#[doc = include_str!("../../../docs/concurrency.md")]
mod concurrency_md {}
#[cfg(all(doctest, feature = "dashboard", feature = "telemetry"))]
#[doc = include_str!("../../../docs/dashboard.md")]
mod dashboard_md {}
#[cfg(doctest)]
#[doc = include_str!("../../../docs/development.md")]
mod development_md {}
#[cfg(all(doctest, feature = "idempotency-stack"))]
#[doc = include_str!("../../../docs/idempotency.md")]
mod idempotency_md {}
#[cfg(all(doctest, feature = "response-cache-stack", feature = "redis"))]
#[doc = include_str!("../../../docs/response-cache.md")]
mod response_cache_md {}
#[cfg(all(doctest, feature = "jobs", feature = "sqlite"))]
#[doc = include_str!("../../../docs/jobs.md")]
mod jobs_md {}
#[cfg(all(doctest, feature = "latency", feature = "telemetry"))]
#[doc = include_str!("../../../docs/latency.md")]
mod latency_md {}
#[cfg(all(doctest, feature = "queries", feature = "telemetry"))]
#[doc = include_str!("../../../docs/queries.md")]
mod queries_md {}
#[cfg(all(doctest, feature = "rate-limit"))]
#[doc = include_str!("../../../docs/rate-limit.md")]
mod rate_limit_md {}
#[cfg(doctest)]
#[doc = include_str!("../../../docs/shop.md")]
mod shop_md {}
#[cfg(all(doctest, feature = "timing"))]
#[doc = include_str!("../../../docs/timing.md")]
mod timing_md {}
#[cfg(all(doctest, feature = "otlp"))]
#[doc = include_str!("../../../docs/trace-context.md")]
mod trace_context_md {}
#[cfg(all(doctest, feature = "otlp"))]
#[doc = include_str!("../../../docs/vitals.md")]
mod vitals_md {}
