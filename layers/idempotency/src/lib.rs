//! `vitals-idempotency`: `Idempotency-Key` for unsafe methods — a retried payment is not a
//! second payment.
//!
//! Clients retry `POST`s: after a timeout, a dropped connection, a 502 from a proxy. Without a
//! key the server cannot tell a retry from a new order. With one
//! (draft-ietf-httpapi-idempotency-key-header), [`IdempotencyLayer`] makes the first request
//! run and every later one with the same key get its answer:
//!
//! | request with a key | answer |
//! |---|---|
//! | the first | runs; its response is stored when its body ends |
//! | the same request again, after the first completed | the stored response, with `Idempotent-Replayed: true` |
//! | the same key while the first still runs | `409 Conflict` (`Retry-After: 1`) |
//! | the same key with a different request (method, route, path, query, body, configured headers) | `422 Unprocessable Content` |
//! | none, on a route that requires one | `400 Bad Request` |
//! | a malformed key (not a structured-field string, repeated, longer than 255 characters) | `400 Bad Request` |
//!
//! Refusals are RFC 9457 problem documents (`application/problem+json`, `no-store`). A 5xx, a
//! 408, 425 or 429, or the inner service's error frees the key (the client can retry the
//! operation) unless [`with_server_errors_stored`](IdempotencyLayer::with_server_errors_stored)
//! keeps 5xx. A request whose handler was dropped before answering (the client left, a
//! timeout), a response too large to keep (1 MiB by default), or one whose body broke off, is
//! recorded as done and not replayable: a retry gets 409 — the handler may have done its work,
//! and must not run again. Records are kept 24 h, bounded in keys (100,000) and bytes (64 MiB:
//! past them the oldest completed records are forgotten first — size the bounds for your rate
//! of keys times the retention); keys are scoped per client with
//! [`with_principal`](IdempotencyLayer::with_principal), else by the request's credentials
//! (`Authorization`, `Cookie`).
//!
//! ```
//! use axum::{routing::post, Router};
//! use vitals_idempotency::{IdempotencyLayer, IdempotencySettings};
//! # async fn create_order() -> &'static str { "{}" }
//!
//! let app: Router = Router::new()
//!     .route("/orders", post(create_order))
//!     .route_layer(
//!         IdempotencyLayer::new()
//!             .with_route("/orders", IdempotencySettings::new().required())
//!             .with_principal(|head| {
//!                 let key = head.headers.get("x-api-key")?.to_str().ok()?;
//!                 Some(key.to_owned())
//!             }),
//!     );
//! ```
//!
//! The store is in process (one instance's keys), or in Redis with the `redis` feature
//! (`RedisStore`, `IdempotencyLayer::with_redis`): every instance of a service shares the keys,
//! and a retry that reaches another instance is still a replay.

pub mod fingerprint;
pub mod key;
pub mod part;
pub mod problem;
pub mod request_body;
pub mod store;

#[cfg(feature = "metrics")]
pub mod metrics;

mod body;
mod future;
mod layer;
mod outcome;
#[cfg(feature = "redis")]
mod redis_store;
mod service;

pub use body::IdempotencyBody;
pub use future::ResponseFuture;
pub use layer::{
    DEFAULT_MAX_BODY, DEFAULT_RETENTION, IdempotencyLayer, IdempotencySettings, Principal,
};
pub use part::IDEMPOTENT_REPLAYED;
#[cfg(feature = "redis")]
pub use redis_store::{
    DEFAULT_LEASE, DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_TIMEOUT, RedisStore, RedisStoreError,
};
pub use service::Idempotency;
