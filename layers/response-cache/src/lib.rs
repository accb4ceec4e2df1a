//! `vitals-response-cache`: a shared HTTP response cache in front of your handlers that never
//! stampedes.
//!
//! Caching is the usual fix for a slow database, and it brings outages of its own: a popular
//! entry expires and every request rebuilds it at once; a cache keyed on the path alone hands
//! one user's page to the next. [`ResponseCacheLayer`] follows the rules of a shared cache
//! (RFC 9111) for `GET` and `HEAD`, and adds what operators expect of Varnish or nginx:
//!
//! | | |
//! |---|---|
//! | what is stored | responses that say so: `s-maxage`, `max-age` or `Expires`, or a route's default; never `no-store`, `private`, `Vary: *`, `Set-Cookie` (by default), a `206`, or an answer to a request with `Authorization` unless `public`, `s-maxage` or `must-revalidate` allow it (§3.5) |
//! | what goes past | requests with `no-store` or (by default) a `Cookie`; methods other than `GET`/`HEAD` — and a successful unsafe method drops what was stored for its target (§4.4) |
//! | the key | the path and the query with its parameters in a stable order, matched with the request's host and the request headers the response's `Vary` names; or a route's own key function (scoped by the route) |
//! | one fill per key | concurrent misses for one key make one handler call; the others wait (5 s by default, then go to the handler or get `503`, as the route says); a key whose response cannot be stored is not waited on for 10 s ([`PASS_FOR`]) |
//! | stale on purpose | `stale-while-revalidate`: answer stale at once, refresh once in the background; `stale-if-error`: answer stale when the handler fails or answers 5xx |
//! | revalidation | a stale response with an `ETag` or `Last-Modified` is revalidated with the handler; its `304` refreshes it; a client's own conditional request gets `304` from the store |
//! | what the client sees | `Age` on stored answers; `Cache-Status` (RFC 9211) on every response of a cached route; a `cache` entry in a shared `Server-Timing` |
//! | bounds | bodies over 1 MiB pass through unstored; the store is bounded in bytes (64 MiB, moka's TinyLFU) |
//! | invalidation | by target, by route, by tag (named by the handler in `Surrogate-Key`, which the client never sees): [`ResponseCacheHandle`] |
//! | a fleet | with feature `redis`, [`ResponseCacheLayer::with_redis`]: every instance shares one cache in Redis, one instance fills a key at a time (a lock with a lease and a fencing token), memory in front for a short local TTL, and a sick Redis sends requests to the handler |
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use vitals_response_cache::{CacheSettings, ResponseCacheLayer};
//! # async fn reviews() -> ([(&'static str, &'static str); 1], &'static str) {
//! #     ([("cache-control", "public, max-age=60")], "[]")
//! # }
//!
//! let cache = ResponseCacheLayer::new().with_route(
//!     "/products/{id}/reviews",
//!     CacheSettings::new()
//!         .with_stale_while_revalidate(Duration::from_secs(30))
//!         .with_stale_if_error(Duration::from_secs(300)),
//! );
//! let purge = cache.handle();
//! let app: Router = Router::new()
//!     .route("/products/{id}/reviews", get(reviews))
//!     .layer(cache);
//! ```
//!
//! The layer's request body must be `Default` (a background refresh sends the request again
//! with an empty body), as axum's is.

pub mod directives;
pub mod key;
pub mod part;
pub mod rules;
pub mod status;

#[cfg(feature = "metrics")]
pub mod metrics;

mod body;
mod entry;
mod flight;
mod future;
mod handle;
mod layer;
mod service;
mod store;
mod tally;

#[cfg(feature = "redis")]
mod fleet;
#[cfg(feature = "redis")]
mod redis_store;

pub use body::ResponseCacheBody;
pub use future::ResponseFuture;
pub use handle::ResponseCacheHandle;
pub use layer::{
    CacheSettings, DEFAULT_JITTER, DEFAULT_MAX_BODY, DEFAULT_NAME, DEFAULT_REFRESH_TIMEOUT,
    DEFAULT_REVALIDATION_GRACE, DEFAULT_TAG_HEADER, DEFAULT_WAIT, InvalidSetting,
    ResponseCacheLayer, WaitTimeout,
};
pub use service::ResponseCache;
pub use status::CACHE_STATUS;
pub use store::{DEFAULT_MAX_BYTES, MAX_VARIANTS, PASS_FOR};
pub use tally::CacheSnapshot;

#[cfg(feature = "redis")]
pub use redis_store::{
    DEFAULT_LEASE, DEFAULT_LOCAL_TTL, DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_TIMEOUT, RedisStore,
    RedisStoreError,
};
