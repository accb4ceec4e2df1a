//! `vitals-cache-headers`: an explicit caching policy per route, entity tags, and conditional
//! requests answered with `304`/`412` — with defaults that keep one user's data out of shared
//! caches.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use vitals_cache_headers::{CacheHeadersLayer, CachePolicy};
//!
//! let catalogue = CacheHeadersLayer::new().with_policy(
//!     CachePolicy::public(Duration::from_secs(60))
//!         .stale_while_revalidate(Duration::from_secs(300)),
//! );
//! let app: Router = Router::new()
//!     .route("/products/{id}", get(|| async { "a product" }).route_layer(catalogue))
//!     .route("/me", get(|| async { "you" }))
//!     // Everything else: errors get `no-store`, bodies get ETags, conditional GETs get 304s.
//!     .layer(CacheHeadersLayer::new());
//! ```
//!
//! - **Policies** ([`CachePolicy`]) render by RFC 9111's grammar; a `Cache-Control` the handler
//!   set wins unless [`with_handler_override`](CacheHeadersLayer::with_handler_override) says otherwise
//!   (an unparsable one is left alone and logged — unless the response is for one user).
//! - **Safe defaults**: a response for one user — to a request with `Authorization` (or a
//!   [configured cookie](CacheHeadersLayer::with_private_cookie)), unless the route says
//!   [`with_public_even_if_authorized`](CacheHeadersLayer::with_public_even_if_authorized), or one that
//!   sets a cookie — never leaves the layer storable by a shared cache, in any mode and whoever
//!   wrote its `Cache-Control`: what would let one store it (`public`, `s-maxage`,
//!   `must-revalidate` for credentials; anything but `private`/`no-store` with `Set-Cookie`) is
//!   made `private`, an unreadable value `no-store`. Public routes say `Vary: Authorization`;
//!   errors get `no-store` unless a policy names their status; `Vary` is merged, never
//!   duplicated, and gets `Accept-Encoding` when an inner compression layer encoded the body.
//! - **Entity tags**: for a `200` to `GET`/`HEAD` without a validator of the handler's (`ETag`,
//!   `Last-Modified`), a
//!   strong `ETag` (XXH3-128 of the body; the content coding is part of the tag) for bodies of
//!   known length up to 1 MiB; larger and streaming bodies pass through unbuffered.
//! - **Conditional requests** (RFC 9110 §13): `If-None-Match` (weak comparison, `*`, lists) and
//!   `If-Modified-Since` answer `304` with the headers a 304 must carry and no body;
//!   `If-Match`/`If-Unmodified-Since` answer `412`. For state-changing methods,
//!   [`PreconditionLayer`] checks them *before* the handler runs, against the resource's
//!   current validators. Malformed conditionals are ignored on reads (an unreadable `If-Match`
//!   fails a write closed), never a panic or a 500.
//! - **One behaviour, two drivers**: [`part::CachePart`] holds the rules (request facts when it
//!   arrives; at the head the policy, the preconditions, or the body to buffer for its tag);
//!   [`CacheHeaders`] is its standalone driver, the fused `vitals` stack the other.
//!
//! See `docs/cache-headers.md`.

mod body;
mod conditional;
mod directives;
mod etag;
mod future;
mod grammar;
mod layer;
pub mod part;
mod policy;
mod precondition;
mod privacy;
mod rules;
mod service;
mod settings;
mod vary;

#[cfg(test)]
mod props;

#[cfg(feature = "metrics")]
pub mod metrics;

pub use body::CacheBody;
pub use conditional::{Preconditions, Validators, Verdict};
pub use etag::EntityTag;
pub use future::ResponseFuture;
pub use layer::{CacheHeadersLayer, DEFAULT_ETAG_LIMIT};
pub use policy::CachePolicy;
pub use precondition::{CurrentValidators, Precondition, PreconditionFuture, PreconditionLayer};
pub use service::CacheHeaders;
pub use settings::{CacheSettings, PolicyRule};
