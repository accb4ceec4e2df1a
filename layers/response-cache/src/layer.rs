//! `ResponseCacheLayer`: configuration, per-route settings and the layer.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use tower_layer::Layer;
use vitals_core::route::{RequestHead, RouteLabel, RouteLabeler};
use vitals_core::route_table::RouteTable;

use crate::flight::Flights;
use crate::handle::ResponseCacheHandle;
use crate::key::KeyFn;
use crate::part::{Event, ResponseCachePart};
use crate::rules::Policy;
use crate::service::ResponseCache;
use crate::store::{DEFAULT_MAX_BYTES, MemoryStore, OnEvicted};
use crate::tally::Tallies;

/// How long a request waits for another request's fill of its key when not told otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// How long a background refresh (`stale-while-revalidate`) may take when not told otherwise,
/// its body included: past it, it is given up and the next stale answer starts another.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest body stored when not told otherwise: 1 MiB. A larger one (or a stream that
/// grows past it) passes through unstored.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// How much of a freshness lifetime jitter may take off when not told otherwise: up to 10%.
pub const DEFAULT_JITTER: f64 = 0.1;

/// The cache's name in `Cache-Status` when not told otherwise.
pub const DEFAULT_NAME: &str = "vitals";

/// The response header that names a response's tags (stripped before the client sees it).
pub const DEFAULT_TAG_HEADER: HeaderName = HeaderName::from_static("surrogate-key");

/// How long a stale response that can be revalidated (it has an `ETag` or `Last-Modified`) is
/// kept past its stale windows, so a `304` from the handler can refresh it.
pub const DEFAULT_REVALIDATION_GRACE: Duration = Duration::from_mins(1);

/// What a request does when its wait for another request's fill passes its limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitTimeout {
    /// Goes to the handler itself (the default).
    #[default]
    Handler,
    /// Is answered `503 Service Unavailable` with `Retry-After: 1`.
    ServiceUnavailable,
}

/// What one route template does differently from the layer, given to
/// [`ResponseCacheLayer::with_route`] (or set for every route with
/// [`ResponseCacheLayer::with_defaults`]). What it does not set follows the layer.
#[derive(Clone, Default)]
pub struct CacheSettings {
    off: Option<bool>,
    default_ttl: Option<Duration>,
    negative_ttl: Option<Duration>,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
    wait: Option<Duration>,
    on_wait_timeout: Option<WaitTimeout>,
    refresh_timeout: Option<Duration>,
    key: Option<KeyFn>,
    store_set_cookie: Option<bool>,
    share_cookie_requests: Option<bool>,
}

impl std::fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheSettings")
            .field("off", &self.off)
            .field("default_ttl", &self.default_ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("stale_while_revalidate", &self.stale_while_revalidate)
            .field("stale_if_error", &self.stale_if_error)
            .field("wait", &self.wait)
            .field("on_wait_timeout", &self.on_wait_timeout)
            .field("refresh_timeout", &self.refresh_timeout)
            .field("key", &self.key.as_ref().map(|_| "fn"))
            .finish_non_exhaustive()
    }
}

impl CacheSettings {
    /// Nothing set: the route follows the layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cache leaves the route alone: no lookup, no store, no `Cache-Status`.
    #[must_use]
    pub fn off(mut self) -> Self {
        self.off = Some(true);
        self
    }

    /// Freshness for a response that gives none (no `max-age`, `s-maxage` or `Expires`), for
    /// statuses that allow it (`200`, `203`, `204`, `300`, `301`, `308`, `404`, `405`, `410`,
    /// `414`, `501`): heuristic freshness (RFC 9111 §4.2.2), off by default. A response that
    /// says `no-store`, `private` or `no-cache` is never given it.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(bounded(ttl));
        self
    }

    /// Freshness for a `404` or `410` that gives none (negative caching: misses for keys that
    /// do not exist stop reaching the handler). Off by default.
    #[must_use]
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(bounded(ttl));
        self
    }

    /// `stale-while-revalidate` for responses that do not say it: past its freshness, a
    /// response is served at once for this long while one request refreshes it in the
    /// background.
    #[must_use]
    pub fn with_stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = Some(bounded(window));
        self
    }

    /// `stale-if-error` for responses that do not say it: past its freshness, a response
    /// answers for this long when the handler fails (an error, a 5xx, a deadline's 503/504).
    #[must_use]
    pub fn with_stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(bounded(window));
        self
    }

    /// How long a request waits for another request's fill of its key (5 s by default).
    /// Make it longer than a fill takes, so a burst of misses makes one handler call.
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// What a request does when its wait passes its limit.
    #[must_use]
    pub fn with_wait_timeout(mut self, then: WaitTimeout) -> Self {
        self.on_wait_timeout = Some(then);
        self
    }

    /// How long a background refresh of a stale response (`stale-while-revalidate`) may take,
    /// its body included (30 s by default): a refresh that hangs is given up, and the next
    /// stale answer starts another. Longer than the slowest fill, or it is never stored.
    #[must_use]
    pub fn with_refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = Some(timeout);
        self
    }

    /// The route's own key: what tells its responses apart, in place of the path and
    /// normalised query (the route template and the `Vary` headers still count). `None` from
    /// the function sends the request past the cache.
    #[must_use]
    pub fn with_key(
        mut self,
        key: impl Fn(RequestHead<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// Stores responses that carry `Set-Cookie`, without the cookie (by default they are not
    /// stored at all: a response that sets a cookie is usually one user's).
    #[must_use]
    pub fn with_set_cookie_responses_stored(mut self) -> Self {
        self.store_set_cookie = Some(true);
        self
    }

    /// Looks up and stores for requests that carry a `Cookie` (by default they go past the
    /// cache, as Varnish does: their response may depend on who they are). Only for routes
    /// whose responses never depend on a cookie, or say so with `Vary: Cookie`.
    #[must_use]
    pub fn with_cookie_requests_shared(mut self) -> Self {
        self.share_cookie_requests = Some(true);
        self
    }

    /// These settings, with what they leave unset taken from `base`.
    fn over(&self, base: &Resolved) -> Resolved {
        Resolved {
            off: self.off.unwrap_or(base.off),
            policy: Policy {
                default_ttl: self.default_ttl.or(base.policy.default_ttl),
                negative_ttl: self.negative_ttl.or(base.policy.negative_ttl),
                stale_while_revalidate: self
                    .stale_while_revalidate
                    .or(base.policy.stale_while_revalidate),
                stale_if_error: self.stale_if_error.or(base.policy.stale_if_error),
                store_set_cookie: self
                    .store_set_cookie
                    .unwrap_or(base.policy.store_set_cookie),
                share_cookie_requests: self
                    .share_cookie_requests
                    .unwrap_or(base.policy.share_cookie_requests),
            },
            wait: self.wait.unwrap_or(base.wait),
            on_wait_timeout: self.on_wait_timeout.unwrap_or(base.on_wait_timeout),
            refresh_timeout: self.refresh_timeout.unwrap_or(base.refresh_timeout),
            key: self.key.clone().or_else(|| base.key.clone()),
        }
    }
}

/// A duration as a response could give it at most (2^31 s, RFC 9111 §1.2.2): a setting of
/// `Duration::MAX` means "as long as possible", not an overflow.
fn bounded(duration: Duration) -> Duration {
    duration.min(Duration::from_secs(crate::directives::MAX_DELTA_SECONDS))
}

/// A route's settings with every default filled in.
#[derive(Clone)]
pub(crate) struct Resolved {
    pub(crate) off: bool,
    pub(crate) policy: Policy,
    pub(crate) wait: Duration,
    pub(crate) on_wait_timeout: WaitTimeout,
    pub(crate) refresh_timeout: Duration,
    pub(crate) key: Option<KeyFn>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("off", &self.off)
            .field("policy", &self.policy)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Default for Resolved {
    fn default() -> Self {
        Self {
            off: false,
            policy: Policy::default(),
            wait: DEFAULT_WAIT,
            on_wait_timeout: WaitTimeout::Handler,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            key: None,
        }
    }
}

/// What every copy of the layer shares: the store, the flights, the counters.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    pub(crate) store: MemoryStore,
    pub(crate) flights: Arc<Flights>,
    /// Background refreshes in flight (one per key; nobody waits on them).
    pub(crate) refreshes: Arc<Flights>,
    pub(crate) tallies: Arc<Tallies>,
}

impl Shared {
    fn new(max_bytes: u64, grace: Duration) -> Self {
        let tallies = Arc::new(Tallies::default());
        #[cfg(feature = "metrics")]
        let on_evicted: Option<OnEvicted> = {
            let tallies = Arc::clone(&tallies);
            Some(Arc::new(move |entry: &crate::entry::Entry| {
                tallies.evicted(entry.route.as_str());
            }))
        };
        #[cfg(not(feature = "metrics"))]
        let on_evicted: Option<OnEvicted> = None;
        Self {
            store: MemoryStore::new(max_bytes, grace, on_evicted),
            flights: Arc::default(),
            refreshes: Arc::default(),
            tallies,
        }
    }
}

/// The configuration a part runs with.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) defaults: Resolved,
    pub(crate) routes: RouteTable<Resolved>,
    /// Off for every route: the part passes every request at once.
    pub(crate) off_everywhere: bool,
    pub(crate) tag_header: HeaderName,
    pub(crate) max_body: usize,
    pub(crate) jitter: f64,
    pub(crate) store: MemoryStore,
    pub(crate) flights: Arc<Flights>,
    pub(crate) refreshes: Arc<Flights>,
    pub(crate) tallies: Arc<Tallies>,
    /// The fleet's shared store, behind this instance's memory.
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<crate::RedisStore>,
    /// How long the memory keeps an entry at most: the shared store's local TTL, if any.
    pub(crate) local_keep: Duration,
}

impl Config {
    /// Stores `entry` under `key`: in memory, and in the shared store (in the background;
    /// with a fill's lock `token`, only if no newer fill or invalidation came since).
    #[cfg_attr(not(feature = "redis"), allow(clippy::needless_pass_by_value))]
    pub(crate) fn put(
        &self,
        key: u128,
        entry: Arc<crate::entry::Entry>,
        token: Option<crate::flight::Hold>,
    ) {
        self.store.put(key, Arc::clone(&entry), self.local_keep);
        #[cfg(feature = "redis")]
        if let Some(redis) = self.redis.clone() {
            let keep = entry.keep_for(std::time::Instant::now(), self.store.grace());
            let namespace = self.namespace.clone();
            crate::redis_store::in_background(async move {
                if let Ok(false) = redis
                    .store(&namespace, key, &entry, keep, token.as_ref())
                    .await
                {
                    tracing::debug!(
                        target: "vitals_response_cache",
                        route = entry.route.as_str(),
                        "a fill was overtaken (its lease ended, or its key was invalidated): not stored in Redis"
                    );
                }
            });
        }
        #[cfg(not(feature = "redis"))]
        let _ = token;
    }

    /// Forgets what `key` holds, in memory and in the shared store.
    pub(crate) fn remove(&self, key: u128) {
        self.store.remove(key);
        #[cfg(feature = "redis")]
        if let Some(redis) = self.redis.clone() {
            let namespace = self.namespace.clone();
            crate::redis_store::in_background(async move {
                let _ = redis.remove(&namespace, key).await;
            });
        }
    }

    /// A fill that held `key`'s lock in the shared store stored nothing: the key is free for
    /// another instance at once, not at the lease's end.
    #[cfg_attr(not(feature = "redis"), allow(clippy::unused_self))]
    pub(crate) fn release(&self, key: u128, token: Option<crate::flight::Hold>) {
        #[cfg(feature = "redis")]
        if let (Some(redis), Some(hold)) = (self.redis.clone(), token) {
            let namespace = self.namespace.clone();
            crate::redis_store::in_background(async move {
                redis.release(&namespace, key, hold.nonce).await;
            });
        }
        #[cfg(not(feature = "redis"))]
        let _ = (key, token);
    }

    pub(crate) fn settings(&self, route: &RouteLabel) -> &Resolved {
        self.routes.get(route).unwrap_or(&self.defaults)
    }

    pub(crate) fn count(&self, route: &RouteLabel, event: Event) {
        self.tallies.count(route.as_str(), event);
    }
}

/// A shared HTTP cache in front of the handlers: RFC 9111's rules for `GET` and `HEAD`, one
/// handler call per key however many requests miss at once, stale responses served on
/// purpose (`stale-while-revalidate`, `stale-if-error`), bounded in bytes. See the [crate
/// documentation](crate).
#[derive(Clone)]
pub struct ResponseCacheLayer {
    labeler: RouteLabeler,
    name: String,
    namespace: String,
    defaults: CacheSettings,
    routes: RouteTable<CacheSettings>,
    tag_header: HeaderName,
    max_body: usize,
    max_bytes: u64,
    jitter: f64,
    grace: Duration,
    only_listed: bool,
    shared: Shared,
    #[cfg(feature = "redis")]
    redis: Option<crate::RedisStore>,
}

impl std::fmt::Debug for ResponseCacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCacheLayer")
            .field("name", &self.name)
            .field("defaults", &self.defaults)
            .field("routes", &self.routes)
            .field("max_body", &self.max_body)
            .field("max_bytes", &self.max_bytes)
            .field("store", &self.shared.store)
            .finish_non_exhaustive()
    }
}

impl Default for ResponseCacheLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// A setting of [`ResponseCacheLayer`] that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSetting(String);

impl std::fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidSetting {}

impl ResponseCacheLayer {
    /// Every route, by the responses' own `Cache-Control`: nothing is stored that does not
    /// say it may be (no heuristic freshness), 64 MiB in memory, bodies up to 1 MiB, waits of
    /// 5 s for another request's fill, up to 10% jitter off each lifetime.
    pub fn new() -> Self {
        Self {
            labeler: RouteLabeler::new(),
            name: DEFAULT_NAME.to_owned(),
            namespace: String::new(),
            defaults: CacheSettings::new(),
            routes: RouteTable::new(),
            tag_header: DEFAULT_TAG_HEADER,
            max_body: DEFAULT_MAX_BODY,
            max_bytes: DEFAULT_MAX_BYTES,
            jitter: DEFAULT_JITTER,
            grace: DEFAULT_REVALIDATION_GRACE,
            only_listed: false,
            shared: Shared::new(DEFAULT_MAX_BYTES, DEFAULT_REVALIDATION_GRACE),
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// Settings for every route (a route's own, from [`with_route`](Self::with_route), win).
    #[must_use]
    pub fn with_defaults(mut self, settings: CacheSettings) -> Self {
        self.defaults = settings;
        self
    }

    /// Settings for one route template (`/products/{id}`).
    #[must_use]
    pub fn with_route(mut self, route: &str, settings: CacheSettings) -> Self {
        self.routes.insert(route, settings);
        self
    }

    /// Caches only the routes given to [`with_route`](Self::with_route): every other route is
    /// left alone.
    #[must_use]
    pub fn only_listed_routes(mut self) -> Self {
        self.only_listed = true;
        self
    }

    /// The largest body stored (1 MiB by default); larger ones pass through unstored.
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The memory the store may hold, bodies and headers (64 MiB by default). Past it the
    /// least useful keys are evicted (moka's TinyLFU).
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self.shared = Shared::new(bytes, self.grace);
        self
    }

    /// How much of each freshness lifetime may be taken off at random (0.1 by default, at most
    /// 1): entries filled together do not all expire together. Jitter only ever shortens.
    #[must_use]
    pub fn with_jitter(mut self, share: f64) -> Self {
        self.jitter = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The cache's name in `Cache-Status` (`vitals` by default): a structured-field token.
    pub fn with_name(mut self, name: &str) -> Result<Self, InvalidSetting> {
        if !crate::status::valid_name(name) {
            return Err(InvalidSetting(format!(
                "response cache name {name:?}: not a structured-field token"
            )));
        }
        name.clone_into(&mut self.name);
        Ok(self)
    }

    /// Keeps this layer's keys apart from another's in a shared store (empty by default).
    #[must_use]
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        namespace.clone_into(&mut self.namespace);
        self
    }

    /// The response header that names a response's tags, space-separated (`Surrogate-Key` by
    /// default). It is read when the response is stored and removed before the client sees it.
    #[must_use]
    pub fn with_tag_header(mut self, name: HeaderName) -> Self {
        self.tag_header = name;
        self
    }

    /// Shares the cache with every instance of the service through Redis (feature `redis`):
    /// what one instance stored answers on all, a key is filled by one instance at a time
    /// however many miss it together, and a purge reaches them all. This instance's memory
    /// stays in front, keeping what it read for the store's
    /// [local TTL](crate::RedisStore::with_local_ttl). When Redis fails or is slow, requests go
    /// to the handler. See [`RedisStore`](crate::RedisStore).
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn with_redis(mut self, store: crate::RedisStore) -> Self {
        self.redis = Some(store);
        self
    }

    /// Labels routes with `labeler` instead of axum's `MatchedPath`.
    #[must_use]
    pub fn with_labeler(mut self, labeler: RouteLabeler) -> Self {
        self.labeler = labeler;
        self
    }

    /// A handle to the store every copy of this layer shares: purge by key, route or tag.
    /// Take it after [`with_max_bytes`](Self::with_max_bytes), which makes a new store.
    pub fn handle(&self) -> ResponseCacheHandle {
        ResponseCacheHandle::new(
            self.shared.store.clone(),
            Arc::clone(&self.shared.flights),
            Arc::clone(&self.shared.tallies),
            self.namespace.clone(),
            #[cfg(feature = "redis")]
            self.redis.clone(),
        )
    }

    /// The part, for a driver of its own (a composed stack). With Redis, it opens the
    /// connection and loads the scripts in the background (on the current runtime).
    pub fn part(&self) -> ResponseCachePart {
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            redis.warm();
        }
        let base = Resolved::default();
        let mut defaults = self.defaults.over(&base);
        let routes = self.routes.map(|_, settings| {
            let mut resolved = settings.over(&defaults);
            if self.only_listed && settings.off.is_none() {
                resolved.off = false;
            }
            resolved
        });
        if self.only_listed {
            defaults.off = true;
        }
        let off_everywhere = defaults.off && routes.iter().all(|(_, settings)| settings.off);
        ResponseCachePart {
            config: Arc::new(Config {
                name: self.name.clone(),
                namespace: self.namespace.clone(),
                defaults,
                routes,
                off_everywhere,
                tag_header: self.tag_header.clone(),
                max_body: self.max_body,
                jitter: self.jitter,
                store: self.shared.store.clone(),
                flights: Arc::clone(&self.shared.flights),
                refreshes: Arc::clone(&self.shared.refreshes),
                tallies: Arc::clone(&self.shared.tallies),
                #[cfg(feature = "redis")]
                redis: self.redis.clone(),
                local_keep: self.local_keep(),
            }),
        }
    }
}

impl ResponseCacheLayer {
    #[cfg_attr(not(feature = "redis"), allow(clippy::unused_self))]
    fn local_keep(&self) -> Duration {
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            return redis.local_ttl();
        }
        Duration::MAX
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCache::new(inner, self.part(), self.labeler.clone())
    }
}
