//! `CacheHeadersLayer`: its default settings, each route's, and the layer.

use std::sync::Arc;

use http::StatusCode;
use tower_layer::Layer;
use vitals_core::route::RouteLabeler;
use vitals_core::route_table::RouteTable;

use crate::part::CachePart;
use crate::policy::CachePolicy;
use crate::service::CacheHeaders;
use crate::settings::{CacheSettings, PolicyRule};

/// Bodies up to this size (1 MiB) get a computed `ETag` by default.
pub const DEFAULT_ETAG_LIMIT: usize = 1 << 20;

/// Sets `Cache-Control` by policy, computes `ETag`s and answers conditional requests with
/// `304`/`412`; see the [crate documentation](crate).
///
/// Its setters change its default [`CacheSettings`]; [`with_route`](Self::with_route) gives a
/// route template settings of its own. Cheap to clone: clones (axum makes one per route) share
/// one configuration.
#[derive(Clone, Debug)]
pub struct CacheHeadersLayer {
    settings: Arc<CacheSettings>,
    routes: Arc<RouteTable<Arc<CacheSettings>>>,
    labeler: RouteLabeler,
    #[cfg(feature = "metrics")]
    metrics: Arc<crate::metrics::Handles>,
}

impl Default for CacheHeadersLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheHeadersLayer {
    /// No policy for successful responses (they keep what the handler set), `no-store` for
    /// errors, `ETag`s computed for bodies up to 1 MiB, and `304`s for conditional `GET`s.
    pub fn new() -> Self {
        Self {
            settings: Arc::default(),
            routes: Arc::default(),
            labeler: RouteLabeler::new(),
            #[cfg(feature = "metrics")]
            metrics: Arc::default(),
        }
    }

    /// The layer's default settings (what a route without its own follows).
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Replaces the layer's default settings with `settings`.
    #[must_use]
    pub fn with_settings(mut self, settings: CacheSettings) -> Self {
        self.settings = Arc::new(settings);
        self
    }

    fn change(mut self, change: impl FnOnce(CacheSettings) -> CacheSettings) -> Self {
        let settings = Arc::unwrap_or_clone(self.settings);
        self.settings = Arc::new(change(settings));
        self
    }

    /// The policy for successful (2xx) responses ([`CacheSettings::with_policy`]).
    #[must_use]
    pub fn with_policy(self, policy: CachePolicy) -> Self {
        self.change(|s| s.with_policy(policy))
    }

    /// Chooses the policy for successful responses per request
    /// ([`CacheSettings::with_policy_rule`]).
    #[must_use]
    pub fn with_policy_rule(self, rule: impl PolicyRule) -> Self {
        self.change(|s| s.with_policy_rule(rule))
    }

    /// The policy for responses with `status` ([`CacheSettings::with_status_policy`]).
    #[must_use]
    pub fn with_status_policy(self, status: StatusCode, policy: CachePolicy) -> Self {
        self.change(|s| s.with_status_policy(status, policy))
    }

    /// Keep public policies for authenticated requests
    /// ([`CacheSettings::with_public_even_if_authorized`]).
    #[must_use]
    pub fn with_public_even_if_authorized(self) -> Self {
        self.change(CacheSettings::with_public_even_if_authorized)
    }

    /// Treat cookie `name` like `Authorization` ([`CacheSettings::with_private_cookie`]).
    #[must_use]
    pub fn with_private_cookie(self, name: impl Into<String>) -> Self {
        self.change(|s| s.with_private_cookie(name))
    }

    /// Replace a `Cache-Control` the handler set ([`CacheSettings::with_handler_override`]).
    #[must_use]
    pub fn with_handler_override(self) -> Self {
        self.change(CacheSettings::with_handler_override)
    }

    /// The largest body that gets a computed `ETag` ([`CacheSettings::with_etag_limit`]).
    #[must_use]
    pub fn with_etag_limit(self, bytes: usize) -> Self {
        self.change(|s| s.with_etag_limit(bytes))
    }

    /// Labels requests for the metrics and the per-route settings with `labeler` (default:
    /// axum's `MatchedPath`).
    #[must_use]
    pub fn with_route_labeler(mut self, labeler: RouteLabeler) -> Self {
        self.labeler = labeler;
        self
    }

    /// Requests for the route template `route` (`"/products/{id}"`) follow `settings` instead
    /// of the layer's — a route's policy kept in one table rather than in a `route_layer` per
    /// route. The route is found through the route label (axum's `MatchedPath`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use vitals_cache_headers::{CacheHeadersLayer, CachePolicy, CacheSettings};
    ///
    /// let cache = CacheHeadersLayer::new()
    ///     .with_policy(CachePolicy::no_cache())
    ///     .with_route(
    ///         "/products/{id}",
    ///         CacheSettings::new().with_policy(CachePolicy::public(Duration::from_secs(60))),
    ///     );
    /// ```
    #[must_use]
    pub fn with_route(mut self, route: &str, settings: CacheSettings) -> Self {
        Arc::make_mut(&mut self.routes).insert(route, Arc::new(settings));
        self
    }

    /// The cache headers as a part, for drivers that run several parts in one service (the
    /// fused `vitals` stack); [`CacheHeaders`] is its standalone driver.
    pub fn part(&self) -> CachePart {
        CachePart {
            settings: Arc::clone(&self.settings),
            routes: Arc::clone(&self.routes),
            labeler: self.labeler.clone(),
            #[cfg(feature = "metrics")]
            metrics: Arc::clone(&self.metrics),
        }
    }
}

impl<S> Layer<S> for CacheHeadersLayer {
    type Service = CacheHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheHeaders::new(inner, self.part())
    }
}
