//! `vitals-rate-limit`: per-client quotas that answer `429 Too Many Requests` with
//! `Retry-After`, and tell every client where it stands with the `RateLimit-Policy` and
//! `RateLimit` headers of the IETF httpapi draft (draft-ietf-httpapi-ratelimit-headers-10).
//!
//! A concurrency limit protects the service from the sum of its clients; a rate limit protects
//! it from one client.
//!
//! - [`Quota`]: a rate and a burst (GCRA, through the `governor` crate): over any window of
//!   length `T` a key gets at most `burst + T · rate` requests, and a client keeping to the
//!   rate is never refused. Several quotas on one route are all checked.
//! - [`Key`]: whose quota a request spends — the client address through a trusted-proxy rule
//!   ([`ClientIp`]: forwarded headers read from the right, never the forgeable leftmost value;
//!   IPv6 by /64), an API-key header (count only keys you issued: [`Key::header`]), a
//!   principal an earlier layer stored, or a rule of your own. Requests without a key share
//!   one quota; they are never unlimited.
//! - [`RateLimitSettings`]: a route's quotas, keys, shadow mode (count what would be refused,
//!   refuse nothing) and headers; per route with [`RateLimitLayer::with_route`].
//! - Memory stays bounded: each quota holds at most [`with_max_keys`](RateLimitLayer::with_max_keys)
//!   keys (default 100,000, under ~64 bytes each).
//! - Across a fleet (feature `redis`): `RedisStore` keeps the quotas in one Redis — one Lua
//!   script per request on Redis's clock, a local refusal once Redis refused a key, and a
//!   quota that fails open (or closed) when Redis does not answer in time.
//! - Refused clients reach the findings ([`RateLimitLayer::with_findings`]), at most every
//!   10 s per client, keys hashed unless shown.
//!
//! The layer answers with a `Response` and keeps the inner service's error type, so axum needs
//! no `HandleErrorLayer`; it marks its refusals `rejected` for the outer Vitals layers. It is a
//! thin adapter over [`part::RateLimitPart`].
//!
//! ```
//! use axum::{routing::{get, post}, Router};
//! use http::HeaderName;
//! use vitals_rate_limit::{ClientIp, Key, Quota, RateLimitLayer, RateLimitSettings};
//!
//! // (An API-key header counts only once checked: see `Key::header`.)
//! let checkout = RateLimitSettings::new(Quota::per_second(5).with_burst(10)).with_keys([
//!     Key::header(HeaderName::from_static("x-api-key")),
//!     Key::client_ip(ClientIp::new()),
//! ]);
//! let app: Router = Router::new()
//!     .route("/checkout", post(|| async { "paid" }))
//!     .route("/products", get(|| async { "[]" }))
//!     // 100 a minute per client everywhere; /checkout has its own quota.
//!     .layer(RateLimitLayer::new(Quota::per_minute(100)).with_route("/checkout", checkout));
//! // Serve with `into_make_service_with_connect_info::<SocketAddr>()` so the layer sees the
//! // peer address.
//! ```

mod client_ip;
mod future;
mod handle;
pub mod headers;
mod key;
mod layer;
mod limiter;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod part;
mod quota;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "redis")]
mod remote;
mod service;
mod settings;
mod store;

pub use client_ip::{ClientIp, DEFAULT_IPV6_PREFIX, InvalidProxy};
pub use future::ResponseFuture;
pub use handle::{RateLimitHandle, RateLimitSnapshot};
pub use key::{Key, PeerAddr};
pub use layer::{DEFAULT_MAX_KEYS, RateLimitLayer};
pub use quota::{Quota, QuotaError};
#[cfg(feature = "redis")]
pub use redis_store::{DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_TIMEOUT, RedisStore, RedisStoreError};
pub use service::RateLimit;
pub use settings::RateLimitSettings;
