//! [`RateLimitLayer`]: the builder.

use std::sync::{Arc, OnceLock};

use tower_layer::Layer;
use vitals_core::findings::Findings;
use vitals_core::route::RouteLabeler;
use vitals_core::route_table::RouteTable;

use crate::handle::RateLimitHandle;
use crate::key::Key;
use crate::part::{Enforced, RateLimitPart, Reports};
use crate::quota::Quota;
use crate::service::RateLimit;
use crate::settings::RateLimitSettings;

/// How many keys each quota holds state for, by default (see [`RateLimitLayer::with_max_keys`]).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Rate limits per client; see the [crate documentation](crate).
///
/// Every clone shares the quotas' state: add it with `Router::layer` (routes' own limits with
/// [`with_route`](Self::with_route)) and every route's copy counts against the same quotas.
/// The state is made when the layer is first used; a setter called after that starts afresh.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    default: Option<RateLimitSettings>,
    routes: RouteTable<RateLimitSettings>,
    labeler: RouteLabeler,
    max_keys: usize,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis_store::RedisStore>,
    findings: Option<Findings>,
    visible_keys: bool,
    built: Arc<OnceLock<RateLimitPart>>,
}

impl RateLimitLayer {
    /// Every route limited by `quota`, per client address (no proxy trusted), with the
    /// `RateLimit` headers.
    pub fn new(quota: Quota) -> Self {
        Self::from_settings(RateLimitSettings::new(quota))
    }

    /// Every route limited by `settings`.
    pub fn from_settings(settings: RateLimitSettings) -> Self {
        Self {
            default: Some(settings),
            ..Self::per_route()
        }
    }

    /// No limit but the routes' own, given with [`with_route`](Self::with_route).
    pub fn per_route() -> Self {
        Self {
            default: None,
            routes: RouteTable::new(),
            labeler: RouteLabeler::new(),
            max_keys: DEFAULT_MAX_KEYS,
            #[cfg(feature = "redis")]
            redis: None,
            findings: None,
            visible_keys: false,
            built: Arc::default(),
        }
    }

    fn changed(mut self, change: impl FnOnce(&mut Self)) -> Self {
        change(&mut self);
        self.built = Arc::default();
        self
    }

    fn change_default(self, change: impl FnOnce(RateLimitSettings) -> RateLimitSettings) -> Self {
        self.changed(|layer| layer.default = layer.default.take().map(change))
    }

    /// One more quota for the routes without their own limit (see
    /// [`RateLimitSettings::with_quota`]).
    #[must_use]
    pub fn with_quota(self, quota: Quota) -> Self {
        self.change_default(|settings| settings.with_quota(quota))
    }

    /// The key rules of the routes without their own limit (see
    /// [`RateLimitSettings::with_keys`]).
    #[must_use]
    pub fn with_keys(self, keys: impl IntoIterator<Item = Key>) -> Self {
        let keys: Vec<Key> = keys.into_iter().collect();
        self.change_default(|settings| settings.with_keys(keys))
    }

    /// Shadow mode for the routes without their own limit (see
    /// [`RateLimitSettings::with_shadow_mode`]).
    #[must_use]
    pub fn with_shadow_mode(self) -> Self {
        self.change_default(RateLimitSettings::with_shadow_mode)
    }

    /// No `RateLimit` headers on the routes without their own limit.
    #[must_use]
    pub fn without_headers(self) -> Self {
        self.change_default(RateLimitSettings::without_headers)
    }

    /// A route template's own limit, in place of the layer's.
    #[must_use]
    pub fn with_route(self, route: &str, settings: RateLimitSettings) -> Self {
        self.changed(|layer| {
            layer.routes.insert(route, settings);
        })
    }

    /// How the route of a request is found (axum's `MatchedPath` by default).
    #[must_use]
    pub fn with_route_labeler(self, labeler: RouteLabeler) -> Self {
        self.changed(|layer| layer.labeler = labeler)
    }

    /// How many keys each quota holds state for (default [`DEFAULT_MAX_KEYS`], at least 16):
    /// memory stays under ~64 bytes a key. Past it, keys that are fresh again are dropped
    /// first; when more distinct clients than this spend a quota at once, the ones closest to
    /// fresh are dropped early (counted in [`RateLimitSnapshot::evicted_early`](crate::RateLimitSnapshot)).
    #[must_use]
    pub fn with_max_keys(self, max_keys: usize) -> Self {
        self.changed(|layer| layer.max_keys = max_keys.max(16))
    }

    /// The layer's behaviour as a part, for the fused `vitals` stack. Clones share its state.
    pub fn part(&self) -> RateLimitPart {
        self.built
            .get_or_init(|| RateLimitPart {
                default: self
                    .default
                    .clone()
                    .map(|settings| self.enforce(settings, "*")),
                routes: Arc::new(
                    self.routes
                        .map(|route, settings| self.enforce(settings.clone(), route)),
                ),
                labeler: self.labeler.clone(),
                #[cfg(feature = "redis")]
                remote: self.redis.is_some(),
                #[cfg(not(feature = "redis"))]
                remote: false,
            })
            .clone()
    }

    /// Keeps every quota in Redis, shared by every instance using the same store and key
    /// prefix (feature `redis`; see [`RedisStore`](crate::RedisStore)). Each request is then
    /// decided by one round trip, unless this instance already knows its key is refused.
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn with_redis(self, store: crate::redis_store::RedisStore) -> Self {
        self.changed(|layer| layer.redis = Some(store))
    }

    fn enforce(&self, settings: RateLimitSettings, limit: &str) -> Arc<Enforced> {
        Arc::new(Enforced::new(
            settings,
            self.max_keys,
            limit,
            #[cfg(feature = "redis")]
            self.redis.clone(),
            self.findings
                .clone()
                .map(|findings| Reports::new(findings, self.visible_keys)),
        ))
    }

    /// Reports refused clients to `findings` (the dashboard's "Clients refused most"): each
    /// client at most every 10 seconds, with its refusals since, its key hashed unless
    /// [`with_visible_keys`](Self::with_visible_keys).
    #[must_use]
    pub fn with_findings(self, findings: Findings) -> Self {
        self.changed(|layer| layer.findings = Some(findings))
    }

    /// Shows refused clients' keys in the findings as they are (an address, an API key's
    /// value) instead of a hash. API keys are secrets: only where the dashboard's readers may
    /// see them.
    #[must_use]
    pub fn with_visible_keys(self) -> Self {
        self.changed(|layer| layer.visible_keys = true)
    }

    /// A read-only view of the counts.
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle { part: self.part() }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.part())
    }
}
