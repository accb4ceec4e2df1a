//! `RouteSettings`: what one route template does differently, declared in one place.

#[cfg(any(feature = "timing", feature = "concurrency", feature = "queries"))]
use std::time::Duration;

#[cfg(feature = "cache-headers")]
use vitals_cache_headers::{CachePolicy, CacheSettings};
#[cfg(feature = "concurrency")]
use vitals_concurrency::Limit;
#[cfg(feature = "idempotency-stack")]
use vitals_idempotency::IdempotencySettings;
#[cfg(feature = "queries")]
use vitals_queries::{NPlusOneAction, RouteQueries};
#[cfg(feature = "rate-limit")]
use vitals_rate_limit::RateLimitSettings;
#[cfg(feature = "timing")]
use vitals_timing::RouteTiming;

/// One route's settings, given to [`VitalsBuilder::with_route`](crate::VitalsBuilder::with_route)
/// under its route template (`"/products/{id}"`). Every part of the stack finds them through
/// the request's route label (axum's `MatchedPath`), so a route's cache policy, limit, deadline,
/// query budget and slow threshold sit together instead of in one `route_layer` each. Each
/// setting becomes the route's entry in its part's own table (the `with_route` of that layer
/// crate).
///
/// What a route does not set, it takes from the stack's defaults.
///
/// ```
/// use std::time::Duration;
/// use vitals::RouteSettings;
/// use vitals::cache_headers::CachePolicy;
/// use vitals::concurrency::Limit;
///
/// let slow = RouteSettings::new()
///     .with_limit(Limit::new(8).with_max_wait(Duration::from_millis(100)))
///     .with_timeout(Duration::from_secs(5))
///     .with_slow_threshold(Duration::from_secs(10));
/// let catalogue = RouteSettings::new()
///     .with_cache_policy(CachePolicy::public(Duration::from_mins(1)))
///     .with_query_budget(2);
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct RouteSettings {
    #[cfg(feature = "cache-headers")]
    pub(crate) cache: Option<RouteCache>,
    #[cfg(feature = "concurrency")]
    pub(crate) limit: Option<Limit>,
    /// Whether the route sets a deadline at all, then its value (`None`: no deadline).
    #[cfg(feature = "concurrency")]
    #[allow(clippy::option_option)]
    pub(crate) timeout: Option<Option<Duration>>,
    #[cfg(feature = "rate-limit")]
    pub(crate) rate_limit: Option<RateLimitSettings>,
    #[cfg(feature = "idempotency-stack")]
    pub(crate) idempotency: Option<IdempotencySettings>,
    #[cfg(feature = "response-cache-stack")]
    pub(crate) response_cache: Option<vitals_response_cache::CacheSettings>,
    #[cfg(feature = "queries")]
    pub(crate) queries: Option<RouteQueries>,
    #[cfg(feature = "timing")]
    pub(crate) timing: Option<RouteTiming>,
}

/// A route's caching: a policy on top of the stack's cache settings, or settings of its own.
#[cfg(feature = "cache-headers")]
#[derive(Clone, Debug)]
pub(crate) enum RouteCache {
    Policy(CachePolicy),
    Settings(CacheSettings),
}

impl RouteSettings {
    /// Nothing set: the route follows the stack's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The policy for the route's successful responses; everything else (authorization
    /// safety, error responses, ETags) follows the stack's cache settings — including a
    /// policy rule there, which still decides first when it returns a policy.
    #[cfg(feature = "cache-headers")]
    pub fn with_cache_policy(mut self, policy: CachePolicy) -> Self {
        self.cache = Some(RouteCache::Policy(policy));
        self
    }

    /// Cache settings of the route's own, in place of the stack's (for example a policy for
    /// its `404`s too).
    #[cfg(feature = "cache-headers")]
    pub fn with_cache(mut self, settings: CacheSettings) -> Self {
        self.cache = Some(RouteCache::Settings(settings));
        self
    }

    /// A concurrency limit of the route's own — its own permits, queue and refusals, so a flood
    /// on it cannot take the permits the other routes need.
    #[cfg(feature = "concurrency")]
    pub fn with_limit(mut self, limit: Limit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The route's own rate limit: its quotas, keys and headers, in place of the stack's
    /// (see [`VitalsBuilder::with_rate_limit`](crate::VitalsBuilder::with_rate_limit)).
    ///
    /// ```
    /// use vitals::{RouteSettings, VitalsLayer};
    /// use vitals::rate_limit::{Quota, RateLimitSettings};
    ///
    /// # fn main() -> Result<(), vitals::VitalsError> {
    /// let vitals = VitalsLayer::builder()
    ///     .with_route(
    ///         "/checkout",
    ///         RouteSettings::new()
    ///             .with_rate_limit(RateLimitSettings::new(Quota::per_second(5).with_burst(10))),
    ///     )
    ///     .build()?;
    /// assert!(vitals.rate_limit().is_some());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "rate-limit")]
    pub fn with_rate_limit(mut self, settings: RateLimitSettings) -> Self {
        self.rate_limit = Some(settings);
        self
    }

    /// Whether the route requires an `Idempotency-Key`, takes one if given, or leaves it
    /// alone (the stack gets an in-memory idempotency part if it has none: see
    /// [`VitalsBuilder::with_idempotency`](crate::VitalsBuilder::with_idempotency)).
    #[cfg(feature = "idempotency-stack")]
    pub fn with_idempotency(mut self, settings: IdempotencySettings) -> Self {
        self.idempotency = Some(settings);
        self
    }

    /// Keeps this route's responses in the response cache (feature `response-cache-stack`),
    /// with these settings: one fill per key however many requests miss it together,
    /// `stale-while-revalidate` and `stale-if-error`, a hit answered without a permit. The
    /// stack gets an in-memory cache of only the routes that ask for it if it has none (see
    /// [`VitalsBuilder::with_response_cache`](crate::VitalsBuilder::with_response_cache)).
    ///
    /// What is stored is what the route's response says may be: pair it with a cache policy
    /// (`with_cache_policy(CachePolicy::public(..))`) or a route default in the settings.
    ///
    /// ```
    /// use std::time::Duration;
    /// use vitals::RouteSettings;
    /// use vitals::cache_headers::CachePolicy;
    /// use vitals::response_cache::CacheSettings;
    ///
    /// let catalogue = RouteSettings::new()
    ///     .with_cache_policy(CachePolicy::public(Duration::from_mins(1)))
    ///     .with_response_cache(
    ///         CacheSettings::new().with_stale_while_revalidate(Duration::from_secs(30)),
    ///     );
    /// ```
    #[cfg(feature = "response-cache-stack")]
    pub fn with_response_cache(mut self, settings: vitals_response_cache::CacheSettings) -> Self {
        self.response_cache = Some(settings);
        self
    }

    /// The handler's deadline on this route (`None`: no deadline, whatever the default).
    #[cfg(feature = "concurrency")]
    pub fn with_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = Some(timeout.into());
        self
    }

    /// Statements a request on this route may make before it is reported (`None`: none).
    #[cfg(feature = "queries")]
    pub fn with_query_budget(mut self, max_queries: impl Into<Option<u64>>) -> Self {
        self.queries = Some(
            self.queries
                .unwrap_or_default()
                .with_query_budget(max_queries),
        );
        self
    }

    /// Statements at least this long are reported slow on this route (`None`: never; the
    /// default is the queries layer's, 100 ms).
    #[cfg(feature = "queries")]
    pub fn with_slow_statement_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.queries = Some(
            self.queries
                .unwrap_or_default()
                .with_slow_statement_threshold(threshold),
        );
        self
    }

    /// What the route's N+1 findings do.
    #[cfg(feature = "queries")]
    pub fn with_n_plus_one_action(mut self, action: NPlusOneAction) -> Self {
        self.queries = Some(
            self.queries
                .unwrap_or_default()
                .with_n_plus_one_action(action),
        );
        self
    }

    /// The total time from which a request on this route is logged as slow (`None`: never).
    #[cfg(feature = "timing")]
    pub fn with_slow_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.timing = Some(
            self.timing
                .unwrap_or_default()
                .with_slow_threshold(threshold),
        );
        self
    }

    /// The single poll that counts as blocking the executor on this route (`None`: no check).
    #[cfg(feature = "timing")]
    pub fn with_blocking_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.timing = Some(
            self.timing
                .unwrap_or_default()
                .with_blocking_threshold(threshold),
        );
        self
    }
}
