//! `vitals-concurrency`: limits, bounded queues and timeouts that answer with a response.
//!
//! When traffic exceeds capacity a service must say "not now" quickly and keep serving what it
//! admitted, instead of queueing without bound until everything times out.
//!
//! - [`ConcurrencyLimitLayer`]: at most N requests at once, shared by every clone of the layer;
//!   a bounded queue (how many may wait, and how long); beyond either, an immediate
//!   `503 Service Unavailable` with a jittered `Retry-After`. The permit is held until the
//!   response body ends (or the client goes away), not just until the head.
//! - [`TimeoutLayer`]: a deadline for the handler, answered with `503` (or `504`) and the
//!   handler's future dropped; optionally covering the response body, and answering `408` when
//!   the handler was still waiting for the request body.
//!
//! Both answer with a `Response` and keep the inner service's error type, so axum needs no
//! `HandleErrorLayer`; both mark what they answered (`rejected`, `timeout`) for the outer
//! Vitals layers. Each is a thin adapter over a part — [`part::LimitPart`] (admit, queue or
//! refuse; the [`Permit`] held to the body's end) and [`deadline::DeadlinePart`] — which the
//! fused `vitals` stack drives too.
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use vitals_concurrency::{ConcurrencyLimitLayer, TimeoutLayer};
//!
//! let app: Router = Router::new()
//!     .route(
//!         "/slow",
//!         get(|| async { "done" }).route_layer(
//!             ConcurrencyLimitLayer::new(8)
//!                 .with_max_queued(16)
//!                 .with_max_wait(Duration::from_millis(100)),
//!         ),
//!     )
//!     .route("/healthz", get(|| async { "ok" }))
//!     // A global limit: every route's copy shares it.
//!     .layer(ConcurrencyLimitLayer::new(512));
//! # let _ = TimeoutLayer::new(Duration::from_secs(5));
//! ```

pub mod adaptive;
mod body;
pub mod deadline;
mod future;
mod handle;
mod layer;
mod limiter;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod part;
mod service;
mod settings;
mod timeout;

pub use adaptive::AdaptiveLimit;
pub use body::{LayerResponse, LimitBody};
pub use future::ResponseFuture;
pub use handle::LimiterHandle;
pub use layer::ConcurrencyLimitLayer;
pub use limiter::{DEFAULT_MAX_WAIT, DEFAULT_NAME, DEFAULT_RETRY_AFTER, LimiterSnapshot, Permit};
pub use service::ConcurrencyLimit;
pub use settings::Limit;
pub use timeout::{
    BodyDeadlineElapsed, BoxError, DeadlineBody, IgnoreRequestBody, Timeout, TimeoutFuture,
    TimeoutLayer, WatchRequestBody, WatchedBody,
};
