//! `vitals-client`: outgoing calls that cannot take the service down with them.
//!
//! A slow or failing dependency is how a healthy service goes down: every request waits on it,
//! the waits hold connections and tasks, and the service stops answering the requests that did
//! not need the dependency at all. The server-side limit and deadline stop the bleeding at the
//! door; these layers stop it at the cause, on the client stack of each outgoing call — over
//! hyper-util's client, a tonic `Channel`, or any tower `Service<http::Request<B>>`:
//!
//! - [`DeadlineLayer`]: the incoming request's deadline carried into the call — the call ends
//!   when the request has no time left (or at its own timeout, whichever is first), a call
//!   started with no time left fails at once, and a gRPC call tells the callee as
//!   `grpc-timeout`;
//! - [`CircuitBreakerLayer`]: a downstream that keeps failing is not called for a while — calls
//!   fail at once, then a probe finds out whether it is back;
//! - [`BulkheadLayer`]: at most so many calls to one downstream at once; the rest fail at once
//!   instead of piling up behind a slow dependency;
//! - [`ServerTimingLayer`]: each call's time in the incoming request's `Server-Timing`
//!   (`payment;dur=182.4`);
//! - [`RetryLayer`]: a failed call that can repeat is tried again, after a jittered backoff or
//!   the downstream's `Retry-After`, under a retry budget, never past the deadline.
//!
//! Put the breaker outside the deadline, so that a call cut by the deadline counts as the
//! downstream's failure (a call refused for lack of time does not: the downstream was never
//! asked):
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use vitals_client::{CircuitBreakerLayer, DeadlineLayer};
//!
//! # fn client<S>(transport: S) -> impl Sized
//! # where S: tower::Service<http::Request<String>, Response = http::Response<String>>,
//! #       S::Error: Into<vitals_client::BoxError> {
//! let payment = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new("payment"))
//!     .layer(DeadlineLayer::new().with_timeout(Duration::from_secs(2)))
//!     .service(transport); // hyper-util's client, a tonic Channel, …
//! # payment }
//! ```
//!
//! See docs/client.md for the defaults and why, deadline propagation across services, and how
//! this compares with tower's retry, tower-resilience, failsafe and recloser.

pub mod breaker;
pub mod bulkhead;
mod clock;
pub mod deadline;
mod error;
mod findings;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod retry;
pub mod server_timing;

pub use breaker::{BreakerBody, BreakerHandle, BreakerState, CircuitBreakerLayer, HostBreakers};
pub use bulkhead::BulkheadLayer;
pub use deadline::DeadlineLayer;
pub use error::{BoxError, BreakerOpen, BulkheadFull, DeadlineExceeded};
#[cfg(feature = "metrics")]
pub use metrics::ClientMetricsLayer;
pub use retry::{ReplayBody, RetryLayer};
pub use server_timing::ServerTimingLayer;
