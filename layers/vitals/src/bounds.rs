//! What [`VitalsService`](crate::VitalsService) asks of the types around it. Each part that
//! needs more than a plain tower service adds its bound only under its own feature, so a
//! build without it never pays for it (a tonic or hyper service keeps working):
//!
//! | feature | request body | inner service | response body |
//! |---|---|---|---|
//! | (none) | anything | `Clone` | `Body` |
//! | `idempotency-stack` | rebuilt from the bytes read to fingerprint it (`From<Bytes>`) | | |
//! | `response-cache-stack` | `Default + Send + 'static` (a refresh sends the request again, empty) | `Send + 'static`, its future `Send + 'static` (a refresh runs in the background) | `Send + 'static`, its data and error `Send` |
//!
//! axum's `Router` and `Body` meet every row. A service whose request body cannot be rebuilt
//! (hyper's `Incoming`, tonic's `Body`) uses the stack without those features, and the
//! standalone `IdempotencyLayer` or `ResponseCacheLayer` where it needs them.

#[cfg(feature = "idempotency-stack")]
use bytes::Bytes;
#[cfg(any(feature = "idempotency-stack", feature = "response-cache-stack"))]
use http_body::Body;
use tower_service::Service;

/// What a request body must be for [`VitalsService`](crate::VitalsService): see the
/// [module](self) for each feature's bound.
pub trait RequestBody: Rebuilt + Resent {}
impl<T: Rebuilt + Resent> RequestBody for T {}

/// A request body the idempotency part can rebuild from the bytes it read (feature
/// `idempotency-stack`; anything without it).
#[cfg(feature = "idempotency-stack")]
pub trait Rebuilt: Body + From<Bytes> {}
#[cfg(feature = "idempotency-stack")]
impl<T: Body + From<Bytes>> Rebuilt for T {}
/// A request body the idempotency part can rebuild from the bytes it read (feature
/// `idempotency-stack`; anything without it).
#[cfg(not(feature = "idempotency-stack"))]
pub trait Rebuilt {}
#[cfg(not(feature = "idempotency-stack"))]
impl<T> Rebuilt for T {}

/// A request body the response cache's background refresh can send again, empty (feature
/// `response-cache-stack`; anything without it).
#[cfg(feature = "response-cache-stack")]
pub trait Resent: Default + Send + 'static {}
#[cfg(feature = "response-cache-stack")]
impl<T: Default + Send + 'static> Resent for T {}
/// A request body the response cache's background refresh can send again, empty (feature
/// `response-cache-stack`; anything without it).
#[cfg(not(feature = "response-cache-stack"))]
pub trait Resent {}
#[cfg(not(feature = "response-cache-stack"))]
impl<T> Resent for T {}

/// What the inner service must be for [`VitalsService`](crate::VitalsService): `Clone` (a
/// request that waits takes a clone of its own); with feature `response-cache-stack`, also
/// runnable in the background.
#[cfg(feature = "response-cache-stack")]
pub trait InnerService<R>: Service<R, Future: Send + 'static> + Clone + Send + 'static {}
#[cfg(feature = "response-cache-stack")]
impl<R, T> InnerService<R> for T where T: Service<R, Future: Send + 'static> + Clone + Send + 'static
{}
/// What the inner service must be for [`VitalsService`](crate::VitalsService): `Clone` (a
/// request that waits takes a clone of its own); with feature `response-cache-stack`, also
/// runnable in the background.
#[cfg(not(feature = "response-cache-stack"))]
pub trait InnerService<R>: Service<R> + Clone {}
#[cfg(not(feature = "response-cache-stack"))]
impl<R, T: Service<R> + Clone> InnerService<R> for T {}

/// What the handler's response body must be for [`VitalsService`](crate::VitalsService): any
/// body; with feature `response-cache-stack`, one a background refresh can read to its end.
#[cfg(feature = "response-cache-stack")]
pub trait ResponseBody: Body<Data: Send, Error: Send> + Send + 'static {}
#[cfg(feature = "response-cache-stack")]
impl<T: Body<Data: Send, Error: Send> + Send + 'static> ResponseBody for T {}
/// What the handler's response body must be for [`VitalsService`](crate::VitalsService): any
/// body; with feature `response-cache-stack`, one a background refresh can read to its end.
#[cfg(not(feature = "response-cache-stack"))]
pub trait ResponseBody: http_body::Body {}
#[cfg(not(feature = "response-cache-stack"))]
impl<T: http_body::Body> ResponseBody for T {}
