//! `RouteSettings`: what one route template does differently, declared in one place.

#[cfg(any(feature = "timing", feature = "concurrency"))]
use std::time::Duration;

#[cfg(feature = "cache-headers")]
use vitals_cache_headers::{CacheHeadersLayer, CachePolicy};
#[cfg(feature = "concurrency")]
use vitals_concurrency::ConcurrencyLimitLayer;

/// One route's settings, given to [`VitalsBuilder::route`](crate::VitalsBuilder::route) under
/// its route template (`"/products/{id}"`). Every part of the stack finds them through the
/// request's route label (axum's `MatchedPath`), so a route's cache policy, limit, deadline,
/// query budget and slow threshold sit together instead of in one `route_layer` each.
///
/// What a route does not set, it takes from the stack's defaults.
///
/// ```
/// use std::time::Duration;
/// use vitals::RouteSettings;
/// use vitals::cache_headers::CachePolicy;
/// use vitals::concurrency::ConcurrencyLimitLayer;
///
/// let slow = RouteSettings::new()
///     .limit(ConcurrencyLimitLayer::new(8).with_max_wait(Duration::from_millis(100)))
///     .timeout(Duration::from_secs(5))
///     .slow_threshold(Duration::from_secs(10));
/// let catalogue = RouteSettings::new()
///     .cache(CachePolicy::public(Duration::from_mins(1)))
///     .query_budget(2);
/// ```
#[derive(Clone, Debug, Default)]
// `Option<Option<_>>`: whether the route sets it at all, then its value, where `None` switches
// the check off for the route.
#[allow(clippy::option_option)]
pub struct RouteSettings {
    #[cfg(feature = "cache-headers")]
    pub(crate) cache: Option<RouteCache>,
    #[cfg(feature = "concurrency")]
    pub(crate) limit: Option<ConcurrencyLimitLayer>,
    #[cfg(feature = "concurrency")]
    pub(crate) timeout: Option<Option<Duration>>,
    #[cfg(feature = "queries")]
    pub(crate) query_budget: Option<Option<u64>>,
    #[cfg(feature = "timing")]
    pub(crate) slow_threshold: Option<Option<Duration>>,
    #[cfg(feature = "timing")]
    pub(crate) blocking_threshold: Option<Option<Duration>>,
}

/// A route's caching: a policy on top of the stack's cache settings, or settings of its own.
#[cfg(feature = "cache-headers")]
#[derive(Clone, Debug)]
pub(crate) enum RouteCache {
    Policy(CachePolicy),
    Layer(CacheHeadersLayer),
}

impl RouteSettings {
    /// Nothing set: the route follows the stack's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The policy for the route's successful responses; everything else (authorization
    /// safety, error responses, ETags) follows the stack's cache settings — including a
    /// `policy_by` rule there, which still decides first when it returns a policy.
    #[cfg(feature = "cache-headers")]
    #[must_use]
    pub fn cache(mut self, policy: CachePolicy) -> Self {
        self.cache = Some(RouteCache::Policy(policy));
        self
    }

    /// Cache settings of the route's own (for example a policy for its `404`s too).
    #[cfg(feature = "cache-headers")]
    #[must_use]
    pub fn cache_headers(mut self, layer: CacheHeadersLayer) -> Self {
        self.cache = Some(RouteCache::Layer(layer));
        self
    }

    /// A concurrency limit of the route's own — its own permits, queue and refusals, so a flood
    /// on it cannot take the permits the other routes need.
    #[cfg(feature = "concurrency")]
    #[must_use]
    pub fn limit(mut self, limit: ConcurrencyLimitLayer) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The handler's deadline on this route (`None`: no deadline, whatever the default).
    #[cfg(feature = "concurrency")]
    #[must_use]
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = Some(timeout.into());
        self
    }

    /// Statements a request on this route may make before it is reported (`None`: none).
    #[cfg(feature = "queries")]
    #[must_use]
    pub fn query_budget(mut self, max_queries: impl Into<Option<u64>>) -> Self {
        self.query_budget = Some(max_queries.into());
        self
    }

    /// The total time from which a request on this route is logged as slow (`None`: never).
    #[cfg(feature = "timing")]
    #[must_use]
    pub fn slow_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.slow_threshold = Some(threshold.into());
        self
    }

    /// The single poll that counts as blocking the executor on this route (`None`: no check).
    #[cfg(feature = "timing")]
    #[must_use]
    pub fn blocking_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.blocking_threshold = Some(threshold.into());
        self
    }
}
