//! `CacheSettings`: what the layer does with a response — its policies, who may share it, which
//! bodies get an `ETag` — as one plain value, for the layer's defaults and each route's own.

use std::sync::Arc;

use http::StatusCode;
use vitals_core::route::RequestHead;

use crate::layer::DEFAULT_ETAG_LIMIT;
use crate::policy::{CachePolicy, Rendered};

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

/// The cache rules of a [`CacheHeadersLayer`](crate::CacheHeadersLayer) (its setters change
/// its own) or of one route ([`CacheHeadersLayer::with_route`](crate::CacheHeadersLayer::with_route)).
/// A route's settings replace the layer's for that route; start from
/// [`CacheHeadersLayer::settings`](crate::CacheHeadersLayer::settings) to change one thing.
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use vitals_cache_headers::{CachePolicy, CacheSettings};
///
/// let catalogue = CacheSettings::new()
///     .with_policy(CachePolicy::public(Duration::from_secs(60)))
///     .with_status_policy(StatusCode::NOT_FOUND, CachePolicy::public(Duration::from_secs(10)))
///     .with_private_cookie("session");
/// ```
#[derive(Clone)]
pub struct CacheSettings {
    pub(crate) policy: Option<Rendered>,
    pub(crate) rule: Option<Arc<dyn PolicyRule>>,
    pub(crate) status_policies: Vec<(StatusCode, Rendered)>,
    pub(crate) public_even_if_authorized: bool,
    pub(crate) private_cookies: Vec<String>,
    pub(crate) handler_wins: bool,
    pub(crate) etag_limit: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            policy: None,
            rule: None,
            status_policies: Vec::new(),
            public_even_if_authorized: false,
            private_cookies: Vec::new(),
            handler_wins: true,
            etag_limit: DEFAULT_ETAG_LIMIT,
        }
    }
}

impl std::fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheSettings")
            .field("policy", &self.policy)
            .field("rule", &self.rule.is_some())
            .field("status_policies", &self.status_policies)
            .field("public_even_if_authorized", &self.public_even_if_authorized)
            .field("private_cookies", &self.private_cookies)
            .field("handler_wins", &self.handler_wins)
            .field("etag_limit", &self.etag_limit)
            .finish()
    }
}

impl CacheSettings {
    /// No policy for successful responses (they keep what the handler set), `no-store` for
    /// errors, `ETag`s computed for bodies up to 1 MiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// The policy for successful (2xx) responses.
    #[must_use]
    pub fn with_policy(mut self, policy: CachePolicy) -> Self {
        self.policy = Some(policy.into());
        self
    }

    /// Chooses the policy for successful responses per request (by path, method, headers);
    /// `None` falls back to [`with_policy`](Self::with_policy)'s.
    #[must_use]
    pub fn with_policy_rule(mut self, rule: impl PolicyRule) -> Self {
        self.rule = Some(Arc::new(rule));
        self
    }

    /// The policy for responses with `status` — e.g. a short public lifetime for `404` on a
    /// catalogue. Without one, every status from 400 up gets `no-store`.
    #[must_use]
    pub fn with_status_policy(mut self, status: StatusCode, policy: CachePolicy) -> Self {
        self.status_policies.retain(|(s, _)| *s != status);
        self.status_policies.push((status, policy.into()));
        self
    }

    /// Keep public policies for requests with `Authorization` (or a private cookie): only for
    /// responses that do not depend on who asks.
    #[must_use]
    pub fn with_public_even_if_authorized(mut self) -> Self {
        self.public_even_if_authorized = true;
        self
    }

    /// Treat a request carrying cookie `name` (a session cookie) like one with
    /// `Authorization`: public policies become private, and `Vary: Cookie` is added.
    #[must_use]
    pub fn with_private_cookie(mut self, name: impl Into<String>) -> Self {
        self.private_cookies.push(name.into());
        self
    }

    /// Replace a `Cache-Control` the handler set, instead of keeping it.
    #[must_use]
    pub fn with_handler_override(mut self) -> Self {
        self.handler_wins = false;
        self
    }

    /// Compute `ETag`s for bodies up to `bytes` (default 1 MiB); `0` turns computing off.
    /// Larger bodies and bodies of unknown length pass through unbuffered.
    #[must_use]
    pub fn with_etag_limit(mut self, bytes: usize) -> Self {
        self.etag_limit = bytes;
        self
    }
}
