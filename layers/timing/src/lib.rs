//! `vitals-timing`: where did the time go? Request timing to the last byte, `Server-Timing`,
//! slow-request and blocking-poll warnings.
//!
//! [`RequestTimingLayer`] measures, for every request:
//!
//! - **head**: from the call to the response head (what tower-http's `TraceLayer` reports as
//!   latency);
//! - **total**: from the call to the last byte of the body — or to the body's error, or to the
//!   moment the client went away — with the [`Outcome`](vitals_core::outcome::Outcome);
//! - **executor time** of the handler future: the sum of its polls and its longest single poll.
//!   A poll longer than the blocking threshold (10 ms) means CPU-heavy or blocking work ran on
//!   the async executor, stalling every other task on that thread: the layer logs one WARN
//!   event for the request.
//!
//! It adds `total;dur=<ms>` (time to head) to the `Server-Timing` response header, shared with
//! the other Vitals layers' entries through vitals-core's collector, and logs a WARN event for
//! requests slower than the slow threshold (1 s) with everything the layers measured. A
//! sampled INFO event per finished request is available, off by default.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use vitals_timing::{RequestTimingLayer, RouteTiming};
//!
//! let app: Router = Router::new()
//!     .route("/orders", get(|| async { "[]" }))
//!     .route("/report", get(|| async { "{}" }))
//!     .layer(
//!         RequestTimingLayer::new()
//!             .with_slow_threshold(Duration::from_millis(500))
//!             .with_route("/report", RouteTiming::new().with_slow_threshold(Duration::from_secs(5))),
//!     );
//! ```
//!
//! Events are logged with target `vitals_timing`; field names follow the OpenTelemetry
//! conventions (`http.request.method`, `http.route`, `http.response.status_code`). See
//! `docs/timing.md` for how to read them.

mod body;
mod config;
pub mod cpu;
mod future;
mod layer;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod part;
mod report;
mod service;
mod starvation;

pub use body::TimedBody;
pub use config::{
    DEFAULT_BLOCKING_THRESHOLD, DEFAULT_SLOW_THRESHOLD, RouteTiming, ServerTimingMode,
};
pub use future::ResponseFuture;
pub use layer::RequestTimingLayer;
pub use report::TimingReport;
pub use service::RequestTiming;
