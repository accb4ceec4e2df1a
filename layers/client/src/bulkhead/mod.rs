//! A bulkhead: at most so many calls to one downstream at once, so that a slow dependency
//! cannot hold every task of the service — the calls past the limit fail at once with
//! [`BulkheadFull`](crate::BulkheadFull) instead of piling up behind it.
//!
//! A permit is taken in `poll_ready` (per clone, as the tower contract asks) and held until
//! the call's response head arrives or the call is dropped. A full bulkhead answers `poll_ready`
//! at once, without polling the inner service. Put it inside the breaker (a full bulkhead is not
//! the downstream's failure, and the breaker does not count it) and the retry (which does not
//! retry it):
//!
//! ```
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use vitals_client::{BulkheadFull, BulkheadLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let slow = tower::service_fn(|_: http::Request<()>| async {
//!     std::future::pending::<Result<http::Response<()>, std::io::Error>>().await
//! });
//! let mut client = ServiceBuilder::new()
//!     .layer(BulkheadLayer::new("inventory", 1))
//!     .service(slow);
//! let first = client.ready().await.unwrap().call(http::Request::new(()));
//! // The one permit is taken by the call under way: the next fails at once.
//! let error = client.ready().await.unwrap().call(http::Request::new(())).await.unwrap_err();
//! assert_eq!(error.downcast_ref::<BulkheadFull>().unwrap().limit(), 1);
//! drop(first);
//! # }
//! ```

mod future;
mod layer;
mod permits;
mod service;

pub use future::BulkheadFuture;
pub use layer::BulkheadLayer;
pub use service::Bulkhead;
