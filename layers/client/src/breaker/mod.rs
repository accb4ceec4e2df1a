//! A circuit breaker for one downstream: when its calls keep failing, stop calling it for a
//! while and answer at once, instead of holding every request on a dependency that is down.
//!
//! - **Closed**: calls go through; each outcome is counted in a sliding window
//!   ([`with_window`](CircuitBreakerLayer::with_window), 10 s by default, kept as ten
//!   buckets). A failure is an error from the inner service (connect errors, timeouts —
//!   [`DeadlineExceeded`](crate::DeadlineExceeded) included) or a response the classifier calls
//!   one (5xx by default; a 4xx is the caller's fault, not the downstream's; a gRPC
//!   `grpc-status` of `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN` or `DATA_LOSS`,
//!   in the response head or — for a streamed answer — in its trailers, read as the body
//!   ([`BreakerBody`]) ends).
//! - **Open**: once the window holds at least [`with_minimum_calls`](CircuitBreakerLayer::with_minimum_calls)
//!   calls (20) and at least [`with_failure_ratio`](CircuitBreakerLayer::with_failure_ratio)
//!   of them (0.5) failed, calls fail at once with [`BreakerOpen`](crate::BreakerOpen) for
//!   [`with_open_for`](CircuitBreakerLayer::with_open_for) (5 s) — the inner service is not
//!   called, not even asked for readiness, so no connection is made.
//! - **Half-open**: then up to [`with_probes`](CircuitBreakerLayer::with_probes) calls (1) go
//!   through as probes while every other call is refused; the first probe that succeeds closes
//!   the breaker, one that fails opens it again.
//!
//! One `CircuitBreakerLayer` is one breaker: every service it wraps, and every clone of them,
//! shares its state. Build one per downstream (the payment service, the search cluster) and
//! name it for the logs — or, for one client shared by many downstreams, make it
//! [`per_host`](CircuitBreakerLayer::per_host): a breaker per host, made on its first call.
//! Opening and closing are logged once each (WARN, INFO, target `vitals_client`). The tower
//! contract is kept: readiness is reserved per clone and never carried to a clone, and an open
//! breaker never polls the inner service (per host, the breaker is known only in `call`:
//! `poll_ready` asks the inner service first, and a refused call leaves that readiness with the
//! clone).
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use vitals_client::{BreakerOpen, BreakerState, CircuitBreakerLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let breaker = CircuitBreakerLayer::new("payment")
//!     .with_minimum_calls(5)
//!     .with_open_for(Duration::from_secs(10));
//! let handle = breaker.handle();
//! let failing = tower::service_fn(|_: http::Request<()>| async {
//!     let mut response = http::Response::new(());
//!     *response.status_mut() = http::StatusCode::BAD_GATEWAY;
//!     Ok::<_, std::io::Error>(response)
//! });
//! let mut client = ServiceBuilder::new().layer(breaker).service(failing);
//! for _ in 0..5 {
//!     let response = client.ready().await.unwrap().call(http::Request::new(())).await;
//!     assert_eq!(response.unwrap().status(), 502);
//! }
//! assert_eq!(handle.state(), BreakerState::Open);
//! let refused = client.ready().await.unwrap().call(http::Request::new(())).await;
//! assert!(refused.unwrap_err().is::<BreakerOpen>());
//! # }
//! ```

mod body;
mod books;
mod future;
mod hosts;
mod layer;
mod service;

pub use body::BreakerBody;
pub use books::BreakerState;
pub use future::BreakerFuture;
pub use layer::{BreakerHandle, CircuitBreakerLayer, HostBreakers};
pub use service::CircuitBreaker;
