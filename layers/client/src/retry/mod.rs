//! Failed calls tried again — only those that can repeat, under a budget, never past the
//! request's deadline.
//!
//! - **What is retried**: an error of the inner service (a refused or reset connection, a call
//!   cut by its own timeout) or an answer `429`, `502`, `503` or `504`; never a call the
//!   [circuit breaker](crate::breaker) refused, nor one the request's deadline cut.
//! - **Which requests**: those that can be sent twice without doing twice the work — an
//!   idempotent method (`GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`) or a request
//!   carrying `Idempotency-Key`. A `POST` without the header is sent once, whatever happens.
//!   The body must be in memory to be sent again ([`ReplayBody`]: `Full<Bytes>`, `String`,
//!   `Bytes`, …, up to [`with_max_body`](RetryLayer::with_max_body), 64 KiB by default).
//! - **When**: after an exponential backoff with full jitter
//!   ([`with_backoff`](RetryLayer::with_backoff): a uniform draw from zero to 50 ms, 100 ms,
//!   … capped at 1 s), or after the downstream's `Retry-After` when it sends one — up to
//!   [`with_retry_after_cap`](RetryLayer::with_retry_after_cap) (2 s); a longer one means its
//!   answer stands. Never when the wait would reach the request's deadline.
//! - **How much**: at most [`with_max_attempts`](RetryLayer::with_max_attempts) attempts (3),
//!   and a retry budget shared by every service of the layer
//!   ([`with_budget`](RetryLayer::with_budget): 20% of the calls of the last 10 s plus 10 a
//!   second; the rule of tower's `TpsBudget`, kept without a lock, on the machine's coarse
//!   clock, which tokio's paused test clock does not move), so a downstream that fails every
//!   call gets about 1.2 times its load, not three times.
//!
//! Put the retry outside the breaker (each attempt counted by it, and an open breaker ends the
//! retries) and the per-attempt timeout inside:
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use vitals_client::{CircuitBreakerLayer, DeadlineLayer, RetryLayer};
//!
//! # fn client<S>(transport: S) -> impl Sized
//! # where S: tower::Service<http::Request<String>, Response = http::Response<String>> + Clone,
//! #       S::Error: Into<vitals_client::BoxError> {
//! let search = ServiceBuilder::new()
//!     .layer(RetryLayer::new())
//!     .layer(CircuitBreakerLayer::new("search"))
//!     .layer(DeadlineLayer::new().with_timeout(Duration::from_millis(300))) // per attempt
//!     .service(transport);
//! # search }
//! ```

mod body;
mod budget;
mod future;
mod layer;
mod replay;
mod rules;
mod service;

pub use body::ReplayBody;
pub use future::RetryFuture;
pub use layer::RetryLayer;
pub use service::Retry;
