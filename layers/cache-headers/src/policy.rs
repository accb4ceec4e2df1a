//! `CachePolicy`: what caches may do with a response, as a type, rendered by RFC 9111's grammar.

use std::fmt::Write as _;
use std::time::Duration;

use http::HeaderValue;

/// Who may store the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Public,
    Private,
    NoCache,
    /// `no-cache` for the user's cache only: what `no-cache` becomes on a response that sets a
    /// cookie.
    PrivateNoCache,
    NoStore,
}

/// A caching policy for a response: rendered as its `Cache-Control` header.
///
/// ```
/// use std::time::Duration;
/// use vitals_cache_headers::CachePolicy;
///
/// let policy = CachePolicy::public(Duration::from_secs(60))
///     .stale_while_revalidate(Duration::from_mins(5));
/// assert_eq!(policy.to_string(), "public, max-age=60, stale-while-revalidate=300");
/// assert_eq!(CachePolicy::no_store().to_string(), "no-store");
/// ```
///
/// The types keep contradictions out: `no-store` never comes with `max-age`, and `s-maxage`
/// (shared caches only) exists only on public policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    kind: Kind,
    max_age: u64,
    s_maxage: Option<u64>,
    stale_while_revalidate: Option<u64>,
    stale_if_error: Option<u64>,
    immutable: bool,
    must_revalidate: bool,
}

impl CachePolicy {
    const fn new(kind: Kind, max_age: u64) -> Self {
        Self {
            kind,
            max_age,
            s_maxage: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            immutable: false,
            must_revalidate: false,
        }
    }

    /// Any cache (browsers, CDNs, proxies) may store the response and serve it for `max_age`.
    pub fn public(max_age: Duration) -> Self {
        Self::new(Kind::Public, max_age.as_secs())
    }

    /// Only the user's own cache (the browser) may store it, for `max_age`: per-user data.
    pub fn private(max_age: Duration) -> Self {
        Self::new(Kind::Private, max_age.as_secs())
    }

    /// Caches may store it but must revalidate with the server before every use.
    pub const fn no_cache() -> Self {
        Self::new(Kind::NoCache, 0)
    }

    /// No cache may store it.
    pub const fn no_store() -> Self {
        Self::new(Kind::NoStore, 0)
    }

    /// Shared caches (CDNs) keep it for `max_age` instead (public policies only; ignored
    /// otherwise).
    #[must_use]
    pub fn s_maxage(mut self, max_age: Duration) -> Self {
        if self.kind == Kind::Public {
            self.s_maxage = Some(max_age.as_secs());
        }
        self
    }

    /// Once stale, may still be served for `window` while the cache revalidates it in the
    /// background (RFC 5861). Ignored on `no-store` and `no-cache`.
    #[must_use]
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        if self.stores_fresh() {
            self.stale_while_revalidate = Some(window.as_secs());
        }
        self
    }

    /// May be served stale for `window` when revalidation fails with an error (RFC 5861).
    /// Ignored on `no-store` and `no-cache`.
    #[must_use]
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        if self.stores_fresh() {
            self.stale_if_error = Some(window.as_secs());
        }
        self
    }

    /// Never changes while fresh: browsers skip revalidation on reload (versioned assets).
    #[must_use]
    pub fn immutable(mut self) -> Self {
        if self.stores_fresh() {
            self.immutable = true;
        }
        self
    }

    /// Once stale, must not be used without revalidation, even when the origin is down.
    #[must_use]
    pub fn must_revalidate(mut self) -> Self {
        if self.stores_fresh() {
            self.must_revalidate = true;
        }
        self
    }

    /// Whether shared caches may store the response.
    pub fn is_public(&self) -> bool {
        self.kind == Kind::Public
    }

    /// Whether no cache may store the response.
    pub fn is_no_store(&self) -> bool {
        self.kind == Kind::NoStore
    }

    /// Whether shared caches (CDNs, proxies) may store the response.
    pub fn shared_caches_may_store(&self) -> bool {
        matches!(self.kind, Kind::Public | Kind::NoCache)
    }

    fn stores_fresh(&self) -> bool {
        matches!(self.kind, Kind::Public | Kind::Private)
    }

    /// The same for the user's cache only: what a public policy becomes for an authenticated
    /// request, and what `public` or `no-cache` become on a response that sets a cookie.
    /// `s-maxage` goes (it is for shared caches).
    #[must_use]
    pub fn to_private(&self) -> Self {
        let kind = match self.kind {
            Kind::Public => Kind::Private,
            Kind::NoCache => Kind::PrivateNoCache,
            other => other,
        };
        Self {
            kind,
            s_maxage: None,
            ..self.clone()
        }
    }

    /// The header value.
    pub fn header_value(&self) -> HeaderValue {
        // Digits, letters, commas, spaces and `=`: always a valid header value.
        HeaderValue::from_str(&self.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("no-store"))
    }
}

/// A policy with its header value rendered once (layers keep their configured policies so).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub(crate) policy: CachePolicy,
    pub(crate) value: HeaderValue,
}

impl From<CachePolicy> for Rendered {
    fn from(policy: CachePolicy) -> Self {
        let value = policy.header_value();
        Self { policy, value }
    }
}

impl std::fmt::Display for CachePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::with_capacity(64);
        match self.kind {
            Kind::NoStore => return f.write_str("no-store"),
            Kind::NoCache => return f.write_str("no-cache"),
            Kind::PrivateNoCache => return f.write_str("private, no-cache"),
            Kind::Public => out.push_str("public"),
            Kind::Private => out.push_str("private"),
        }
        let _ = write!(out, ", max-age={}", self.max_age);
        if let Some(s) = self.s_maxage {
            let _ = write!(out, ", s-maxage={s}");
        }
        if let Some(s) = self.stale_while_revalidate {
            let _ = write!(out, ", stale-while-revalidate={s}");
        }
        if let Some(s) = self.stale_if_error {
            let _ = write!(out, ", stale-if-error={s}");
        }
        if self.must_revalidate {
            out.push_str(", must-revalidate");
        }
        if self.immutable {
            out.push_str(", immutable");
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_mins(1);

    #[test]
    fn policies_render_by_the_grammar() {
        let full = CachePolicy::public(MINUTE)
            .s_maxage(Duration::from_mins(10))
            .stale_while_revalidate(Duration::from_mins(5))
            .stale_if_error(Duration::from_hours(24))
            .must_revalidate()
            .immutable();
        assert_eq!(
            full.to_string(),
            "public, max-age=60, s-maxage=600, stale-while-revalidate=300, \
             stale-if-error=86400, must-revalidate, immutable"
        );
        assert_eq!(
            CachePolicy::private(MINUTE).to_string(),
            "private, max-age=60"
        );
        assert_eq!(CachePolicy::no_cache().to_string(), "no-cache");
    }

    #[test]
    fn no_store_never_carries_freshness() {
        let policy = CachePolicy::no_store()
            .s_maxage(MINUTE)
            .stale_while_revalidate(MINUTE)
            .stale_if_error(MINUTE)
            .immutable()
            .must_revalidate();
        assert_eq!(policy.to_string(), "no-store");
        assert_eq!(policy.header_value(), "no-store");
    }

    #[test]
    fn private_drops_what_only_shared_caches_read() {
        let public = CachePolicy::public(MINUTE)
            .s_maxage(Duration::from_mins(10))
            .stale_while_revalidate(MINUTE);
        assert_eq!(
            public.to_private().to_string(),
            "private, max-age=60, stale-while-revalidate=60"
        );
        assert_eq!(
            CachePolicy::private(MINUTE).s_maxage(MINUTE).to_string(),
            "private, max-age=60"
        );
    }
}
