//! `CacheHeadersLayer`: the builder and its configuration.

use std::collections::HashMap;
use std::sync::Arc;

use http::StatusCode;
use tower_layer::Layer;
use vitals_core::route::{RequestHead, RouteLabeler};

use crate::part::CachePart;
use crate::policy::{CachePolicy, Rendered};
use crate::service::CacheHeaders;

/// Route templates with a configuration of their own.
pub(crate) type RouteConfigs = HashMap<Box<str>, Arc<Config>>;

/// Chooses a policy from the request (a rule instead of a fixed policy).
pub trait PolicyRule: Send + Sync + 'static {
    /// The policy for this request's successful responses, if any.
    fn policy(&self, head: RequestHead<'_>) -> Option<CachePolicy>;
}

impl<F> PolicyRule for F
where
    F: Fn(RequestHead<'_>) -> Option<CachePolicy> + Send + Sync + 'static,
{
    fn policy(&self, head: RequestHead<'_>) -> Option<CachePolicy> {
        self(head)
    }
}

/// The shared configuration.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) policy: Option<Rendered>,
    pub(crate) rule: Option<Arc<dyn PolicyRule>>,
    pub(crate) status_policies: Vec<(StatusCode, Rendered)>,
    pub(crate) public_even_if_authorized: bool,
    pub(crate) private_cookies: Vec<String>,
    pub(crate) handler_wins: bool,
    pub(crate) etag_limit: usize,
    pub(crate) labeler: RouteLabeler,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Arc<crate::metrics::Handles>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: None,
            rule: None,
            status_policies: Vec::new(),
            public_even_if_authorized: false,
            private_cookies: Vec::new(),
            handler_wins: true,
            etag_limit: DEFAULT_ETAG_LIMIT,
            labeler: RouteLabeler::new(),
            #[cfg(feature = "metrics")]
            metrics: Arc::default(),
        }
    }
}

/// Bodies up to this size (1 MiB) get a computed `ETag` by default.
pub const DEFAULT_ETAG_LIMIT: usize = 1 << 20;

/// Sets `Cache-Control` by policy, computes `ETag`s and answers conditional requests with
/// `304`/`412`; see the [crate documentation](crate).
///
/// Cheap to clone: clones (axum makes one per route) share one configuration.
#[derive(Clone)]
pub struct CacheHeadersLayer {
    config: Arc<Config>,
    /// Route templates with a configuration of their own.
    routes: Arc<RouteConfigs>,
}

impl std::fmt::Debug for CacheHeadersLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheHeadersLayer")
            .field("policy", &self.config.policy)
            .field("rule", &self.config.rule.is_some())
            .field("status_policies", &self.config.status_policies)
            .field(
                "public_even_if_authorized",
                &self.config.public_even_if_authorized,
            )
            .field("private_cookies", &self.config.private_cookies)
            .field("handler_wins", &self.config.handler_wins)
            .field("etag_limit", &self.config.etag_limit)
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
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
            config: Arc::new(Config::default()),
            routes: Arc::default(),
        }
    }

    /// [`new`](Self::new) with `policy` for successful (2xx) responses.
    pub fn with_policy(policy: CachePolicy) -> Self {
        Self::new().policy(policy)
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The policy for successful (2xx) responses.
    #[must_use]
    pub fn policy(mut self, policy: CachePolicy) -> Self {
        self.config().policy = Some(policy.into());
        self
    }

    /// Chooses the policy for successful responses per request (by path, method, headers);
    /// `None` falls back to [`policy`](Self::policy).
    #[must_use]
    pub fn policy_by(mut self, rule: impl PolicyRule) -> Self {
        self.config().rule = Some(Arc::new(rule));
        self
    }

    /// The policy for responses with `status` — e.g. a short public lifetime for `404` on a
    /// catalogue. Without one, every status from 400 up gets `no-store`.
    #[must_use]
    pub fn policy_for_status(mut self, status: StatusCode, policy: CachePolicy) -> Self {
        let config = self.config();
        config.status_policies.retain(|(s, _)| *s != status);
        config.status_policies.push((status, policy.into()));
        self
    }

    /// Keep public policies for requests with `Authorization` (or a private cookie): only for
    /// responses that do not depend on who asks.
    #[must_use]
    pub fn public_even_if_authorized(mut self) -> Self {
        self.config().public_even_if_authorized = true;
        self
    }

    /// Treat a request carrying cookie `name` (a session cookie) like one with
    /// `Authorization`: public policies become private, and `Vary: Cookie` is added.
    #[must_use]
    pub fn private_when_cookie(mut self, name: impl Into<String>) -> Self {
        self.config().private_cookies.push(name.into());
        self
    }

    /// Replace a `Cache-Control` the handler set, instead of keeping it.
    #[must_use]
    pub fn override_handler(mut self) -> Self {
        self.config().handler_wins = false;
        self
    }

    /// Compute `ETag`s for bodies up to `bytes` (default 1 MiB); `0` turns computing off.
    /// Larger bodies and bodies of unknown length pass through unbuffered.
    #[must_use]
    pub fn etag_limit(mut self, bytes: usize) -> Self {
        self.config().etag_limit = bytes;
        self
    }

    /// Labels requests for the metrics and the per-route settings with `labeler` (default:
    /// axum's `MatchedPath`).
    #[must_use]
    pub fn with_route_labeler(mut self, labeler: RouteLabeler) -> Self {
        self.config().labeler = labeler;
        self
    }

    /// Requests for the route template `route` (`"/products/{id}"`) follow `layer`'s settings
    /// instead of these — a route's policy kept in one table rather than in a `route_layer`
    /// per route. The route is found through the route label (axum's `MatchedPath`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use vitals_cache_headers::{CacheHeadersLayer, CachePolicy};
    ///
    /// let cache = CacheHeadersLayer::with_policy(CachePolicy::no_cache()).with_route(
    ///     "/products/{id}",
    ///     CacheHeadersLayer::with_policy(CachePolicy::public(Duration::from_secs(60))),
    /// );
    /// ```
    #[must_use]
    pub fn with_route(mut self, route: &str, layer: CacheHeadersLayer) -> Self {
        Arc::make_mut(&mut self.routes).insert(route.into(), layer.config);
        self
    }

    /// The cache headers as a part, for drivers that run several parts in one service (the
    /// fused `vitals` stack); [`CacheHeaders`] is its standalone driver.
    pub fn part(&self) -> CachePart {
        CachePart {
            config: Arc::clone(&self.config),
            routes: Arc::clone(&self.routes),
        }
    }
}

impl<S> Layer<S> for CacheHeadersLayer {
    type Service = CacheHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheHeaders::new(inner, self.part())
    }
}
