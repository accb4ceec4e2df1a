//! The request's deadline, carried into the calls its handler makes.
//!
//! On the server side, a deadline (`vitals_concurrency::TimeoutLayer`, the preset's route
//! deadlines) is the request's *current* deadline while its handler runs
//! ([`RequestDeadline`](vitals_core::deadline::RequestDeadline)). [`DeadlineLayer`] on the client
//! side reads it for every outgoing call:
//!
//! - the call's time is the smaller of its own timeout ([`DeadlineLayer::with_timeout`]) and
//!   what the request has left (less [`DeadlineLayer::with_reserve`], the time kept to answer
//!   after a failed call); past it the call is cut — its future dropped, so its connection
//!   closes — and fails with [`DeadlineExceeded`](crate::DeadlineExceeded);
//! - a call started with no time left fails at once, without asking the inner service for
//!   readiness or a connection;
//! - a gRPC call (`content-type: application/grpc…`) carries the time as `grpc-timeout`, so the
//!   callee stops working for a caller that has given up (the smaller of it and any
//!   `grpc-timeout` the request already has).
//!
//! The time is read once per call, when `poll_ready` returns ready (`call` decides the limit at
//! that time). A caller that waits between the two (`ServiceExt::ready`, then other awaits,
//! then `call`) has its own timeout counted from readiness, and a deadline that passes in
//! between is no longer refused before the call starts: the call's timer cuts it at its first
//! poll instead. `tower`'s `oneshot`, `Buffer` and the clients built on them call in the same
//! poll as readiness.
//!
//! A deadline can also travel on the outgoing request itself: a
//! [`RequestDeadline`](vitals_core::deadline::RequestDeadline) in its extensions counts like the
//! current one (for calls made outside the handler's task).
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use vitals_client::{DeadlineExceeded, DeadlineLayer};
//! use vitals_core::deadline::RequestDeadline;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Any client service: hyper-util's, a tonic `Channel`, … — here one that never answers.
//! let slow = tower::service_fn(|_: http::Request<()>| async {
//!     std::future::pending::<Result<http::Response<()>, std::io::Error>>().await
//! });
//! let mut client = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new().with_timeout(Duration::from_secs(2)))
//!     .service(slow);
//! // The server side set a deadline 50 ms away for the request being handled.
//! let deadline = RequestDeadline::after(Duration::from_millis(50)).unwrap();
//! let call = async move {
//!     client.ready().await?.call(http::Request::new(())).await
//! };
//! let error = deadline.scope(call).await.unwrap_err();
//! let exceeded = error.downcast_ref::<DeadlineExceeded>().unwrap();
//! assert!(exceeded.by_request_deadline() && exceeded.call_started());
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use future::DeadlineFuture;
pub use layer::DeadlineLayer;
pub use service::Deadline;
