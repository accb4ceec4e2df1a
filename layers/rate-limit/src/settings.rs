//! [`RateLimitSettings`]: the quotas of a route (or of every route), whose they are, and how refusals
//! show — a plain settings value for `with_route`.

use http::HeaderName;

use crate::client_ip::ClientIp;
use crate::key::Key;
use crate::quota::Quota;

/// A route's rate limit: its quotas (all checked), the key rules (the first that finds a key
/// decides whose quota a request spends), the quotas of requests with no key, shadow mode and
/// the headers.
///
/// ```
/// use http::HeaderName;
/// use vitals_rate_limit::{ClientIp, Key, Quota, RateLimitSettings};
///
/// // 5 a second (10 at once) and 1,000 an hour per API key; without one, per client address.
/// let limit = RateLimitSettings::new(Quota::per_second(5).with_burst(10))
///     .with_quota(Quota::per_hour(1_000))
///     .with_keys([
///         Key::header(HeaderName::from_static("x-api-key")),
///         Key::client_ip(ClientIp::new()),
///     ]);
/// assert_eq!(limit.quotas().len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitSettings {
    pub(crate) quotas: Vec<Quota>,
    pub(crate) keys: Vec<Key>,
    pub(crate) unkeyed: Option<Vec<Quota>>,
    pub(crate) shadow: bool,
    pub(crate) headers: bool,
}

impl RateLimitSettings {
    /// One quota per client address (no proxy trusted; see [`ClientIp`]), enforced, with the
    /// `RateLimit` headers on every response of the route.
    pub fn new(quota: Quota) -> Self {
        Self {
            quotas: vec![quota],
            keys: vec![Key::client_ip(ClientIp::new())],
            unkeyed: None,
            shadow: false,
            headers: true,
        }
    }

    /// One more quota, checked after the others (a per-second burst and an hourly budget).
    /// A request one quota refuses spends none of the others.
    #[must_use]
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quotas.push(quota);
        self
    }

    /// The key rules, tried in order, replacing the default (the client address).
    #[must_use]
    pub fn with_keys(mut self, keys: impl IntoIterator<Item = Key>) -> Self {
        self.keys = keys.into_iter().collect();
        self
    }

    /// Keys by a request header (`X-Api-Key`) alone: [`with_keys`](Self::with_keys) with one
    /// rule.
    #[must_use]
    pub fn with_key_header(self, name: HeaderName) -> Self {
        self.with_keys([Key::header(name)])
    }

    /// The quota that requests with no key share (a request no rule finds a key for). By
    /// default they share the route's own quotas as one client: never unlimited.
    #[must_use]
    pub fn with_unkeyed_quota(mut self, quota: Quota) -> Self {
        self.unkeyed.get_or_insert_with(Vec::new).push(quota);
        self
    }

    /// Counts and logs what the quotas would refuse, refusing nothing (and sending no
    /// `RateLimit` headers): for rolling a quota out.
    #[must_use]
    pub fn with_shadow_mode(mut self) -> Self {
        self.shadow = true;
        self
    }

    /// No `RateLimit-Policy` and `RateLimit` headers on the route's responses (a refusal
    /// still carries `Retry-After`).
    #[must_use]
    pub fn without_headers(mut self) -> Self {
        self.headers = false;
        self
    }

    /// The quotas, in the order they are checked.
    pub fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// Whether the limit only counts what it would refuse.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }
}
