//! `IdempotencyLayer`: configuration and the layer.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use tower_layer::Layer;
use vitals_core::route::{RequestHead, RouteLabeler};
use vitals_core::route_table::RouteTable;

use crate::key::DEFAULT_MAX_KEY_LEN;
use crate::part::{IdempotencyPart, default_methods};
use crate::service::Idempotency;
use crate::store::{DEFAULT_MAX_BYTES, DEFAULT_MAX_KEYS, MemoryStore};

/// How long a completed key's record (and response) is kept when not told otherwise: 24 h.
pub const DEFAULT_RETENTION: Duration = Duration::from_hours(24);

/// The most request body read to fingerprint a request, and the most response body stored to
/// replay it, when not told otherwise: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// Who a request comes from, for keys scoped per client.
pub type Principal = Arc<dyn Fn(RequestHead<'_>) -> Option<String> + Send + Sync>;

/// What a stored response keeps that it would not by default.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Keep {
    /// 5xx answers are stored (else they free the key).
    pub(crate) server_errors: bool,
    /// `Set-Cookie` is replayed.
    pub(crate) set_cookie: bool,
}

pub(crate) struct Config {
    pub(crate) labeler: RouteLabeler,
    pub(crate) methods: Vec<Method>,
    pub(crate) required: bool,
    /// Whether the layer or any route requires a key (else a request without one passes at
    /// once).
    pub(crate) any_required: bool,
    pub(crate) routes: RouteTable<IdempotencySettings>,
    pub(crate) max_key_len: usize,
    pub(crate) max_request_body: usize,
    pub(crate) max_stored_body: usize,
    pub(crate) keep: Keep,
    pub(crate) fingerprint_headers: Vec<HeaderName>,
    pub(crate) principal: Option<Principal>,
    pub(crate) store: Arc<MemoryStore>,
    #[cfg(feature = "metrics")]
    pub(crate) counters: Arc<crate::metrics::Counters>,
    /// Keys shared by a fleet, instead of the memory store.
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<crate::RedisStore>,
    pub(crate) retention: Duration,
    max_keys: usize,
    max_bytes: usize,
}

impl Clone for Config {
    fn clone(&self) -> Self {
        Self {
            labeler: self.labeler.clone(),
            methods: self.methods.clone(),
            required: self.required,
            any_required: self.any_required,
            routes: self.routes.clone(),
            max_key_len: self.max_key_len,
            max_request_body: self.max_request_body,
            max_stored_body: self.max_stored_body,
            keep: self.keep,
            fingerprint_headers: self.fingerprint_headers.clone(),
            principal: self.principal.clone(),
            store: Arc::clone(&self.store),
            #[cfg(feature = "metrics")]
            counters: Arc::clone(&self.counters),
            #[cfg(feature = "redis")]
            redis: self.redis.clone(),
            retention: self.retention,
            max_keys: self.max_keys,
            max_bytes: self.max_bytes,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("methods", &self.methods)
            .field("required", &self.required)
            .field("retention", &self.retention)
            .field("max_keys", &self.max_keys)
            .field("keys", &self.store.len())
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            labeler: RouteLabeler::new(),
            methods: default_methods(),
            required: false,
            any_required: false,
            routes: RouteTable::new(),
            max_key_len: DEFAULT_MAX_KEY_LEN,
            max_request_body: DEFAULT_MAX_BODY,
            max_stored_body: DEFAULT_MAX_BODY,
            keep: Keep::default(),
            fingerprint_headers: Vec::new(),
            principal: None,
            store: Arc::new(MemoryStore::new(
                DEFAULT_RETENTION,
                DEFAULT_MAX_KEYS,
                DEFAULT_MAX_BYTES,
            )),
            #[cfg(feature = "metrics")]
            counters: Arc::default(),
            #[cfg(feature = "redis")]
            redis: None,
            retention: DEFAULT_RETENTION,
            max_keys: DEFAULT_MAX_KEYS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What one route template does differently from the layer, given to
/// [`IdempotencyLayer::with_route`]. What it does not set follows the layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdempotencySettings {
    pub(crate) required: Option<bool>,
    pub(crate) off: Option<bool>,
}

impl IdempotencySettings {
    /// Nothing set: the route follows the layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests on this route must bring a key (400 without one).
    #[must_use]
    pub fn required(mut self) -> Self {
        self.required = Some(true);
        self
    }

    /// Requests on this route may come without a key (they run unprotected).
    #[must_use]
    pub fn optional(mut self) -> Self {
        self.required = Some(false);
        self
    }

    /// The layer leaves this route alone, key or not.
    #[must_use]
    pub fn off(mut self) -> Self {
        self.off = Some(true);
        self
    }
}

/// `Idempotency-Key` for unsafe methods; see the [crate documentation](crate). Clones share
/// one configuration and one store.
#[derive(Clone, Debug, Default)]
pub struct IdempotencyLayer {
    config: Arc<Config>,
}

impl IdempotencyLayer {
    /// Defaults: `POST` and `PATCH` with a key are protected, a key is optional, records are
    /// kept 24 h (100,000 keys, 64 MiB of responses at most), bodies up to 1 MiB, a 5xx frees
    /// the key, `Set-Cookie` is never replayed.
    pub fn new() -> Self {
        Self::default()
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    fn new_store(&mut self) {
        let config = self.config();
        config.store = Arc::new(MemoryStore::new(
            config.retention,
            config.max_keys,
            config.max_bytes,
        ));
    }

    /// The methods protected (default `POST` and `PATCH`).
    #[must_use]
    pub fn with_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.config().methods = methods.into_iter().collect();
        self
    }

    /// Every protected request must bring a key: 400 (a problem document) without one.
    #[must_use]
    pub fn with_key_required(mut self) -> Self {
        let config = self.config();
        config.required = true;
        config.any_required = true;
        self
    }

    /// How long a completed key is remembered and its response replayed (default 24 h).
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.config().retention = retention;
        self.new_store();
        self
    }

    /// Keeps the keys in Redis, shared by every instance given the same store (feature
    /// `redis`; see [`RedisStore`](crate::RedisStore)) — a retry that reaches another instance
    /// is still a replay. The memory store's bounds do not apply; Redis expires the records.
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn with_redis(mut self, store: crate::RedisStore) -> Self {
        self.config().redis = Some(store);
        self
    }

    /// Keys remembered at most (default 100,000); past it the oldest completed ones are
    /// forgotten first, and a request that finds every slot in flight gets 503.
    #[must_use]
    pub fn with_max_keys(mut self, keys: usize) -> Self {
        self.config().max_keys = keys.max(1);
        self.new_store();
        self
    }

    /// Bytes of stored responses kept at most (default 64 MiB).
    #[must_use]
    pub fn with_max_stored_bytes(mut self, bytes: usize) -> Self {
        self.config().max_bytes = bytes;
        self.new_store();
        self
    }

    /// The most request body read to fingerprint a request (default 1 MiB; larger: 413), and
    /// the most response body kept to replay it (larger: recorded as not replayable, and a
    /// retry gets 409).
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        let config = self.config();
        config.max_request_body = bytes;
        config.max_stored_body = bytes;
        self
    }

    /// The longest key accepted (default 255 characters).
    #[must_use]
    pub fn with_max_key_len(mut self, chars: usize) -> Self {
        self.config().max_key_len = chars.max(1);
        self
    }

    /// Server errors are stored and replayed too (default: a 5xx frees the key, so the client
    /// can retry the operation).
    #[must_use]
    pub fn with_server_errors_stored(mut self) -> Self {
        self.config().keep.server_errors = true;
        self
    }

    /// `Set-Cookie` is replayed with the rest of the response (default: removed).
    #[must_use]
    pub fn with_set_cookie_replayed(mut self) -> Self {
        self.config().keep.set_cookie = true;
        self
    }

    /// Request headers that are part of the fingerprint (besides method, route, path, query and
    /// body): a retry must send them unchanged.
    #[must_use]
    pub fn with_fingerprint_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.config().fingerprint_headers = names.into_iter().collect();
        self
    }

    /// Who a request comes from (an API key, a user id from the session): keys are scoped per
    /// principal, so two clients cannot collide on a key or read each other's answers. Without
    /// it, keys are shared by every client — set it whenever clients are told apart.
    #[must_use]
    pub fn with_principal(
        mut self,
        principal: impl Fn(RequestHead<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.config().principal = Some(Arc::new(principal));
        self
    }

    /// Requests for the route template `route` follow `settings` where it sets something.
    #[must_use]
    pub fn with_route(mut self, route: &str, settings: IdempotencySettings) -> Self {
        let routes = &mut self.config().routes;
        let merged = match routes.get_str(route) {
            Some(earlier) => IdempotencySettings {
                required: settings.required.or(earlier.required),
                off: settings.off.or(earlier.off),
            },
            None => settings,
        };
        routes.insert(route, merged);
        if merged.required == Some(true) {
            self.config().any_required = true;
        }
        self
    }

    /// How requests get their route label (default: axum's `MatchedPath`, else `unmatched`).
    #[must_use]
    pub fn with_route_labeler(mut self, labeler: RouteLabeler) -> Self {
        self.config().labeler = labeler;
        self
    }

    /// Keys remembered now (in flight or completed).
    pub fn keys(&self) -> usize {
        self.config.store.len()
    }

    /// This layer's behaviour as a part, for a driver that runs several parts in one pass.
    pub fn part(&self) -> IdempotencyPart {
        IdempotencyPart {
            config: Arc::clone(&self.config),
        }
    }

    pub(crate) fn labeler(&self) -> &RouteLabeler {
        &self.config.labeler
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency::new(inner, self.part(), self.labeler().clone())
    }
}
