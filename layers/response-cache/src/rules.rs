//! The rules of a shared cache (RFC 9111, RFC 5861), as pure functions: whether a response may
//! be stored and for how long, and whether a stored one may answer a request now.

use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::{HeaderMap, Method, StatusCode};

use crate::directives::{CacheControl, SurrogateControl, explicit_lifetime, pragma_no_cache};
use crate::key::{Vary, vary};

/// What a route's cache policy adds to what responses say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Freshness for a response that gives none (heuristic freshness, RFC 9111 §4.2.2), for the
    /// statuses that allow it. `None`: such a response is not stored.
    pub default_ttl: Option<Duration>,
    /// Freshness for a `404` or `410` that gives none (negative caching). `None`: not stored.
    pub negative_ttl: Option<Duration>,
    /// `stale-while-revalidate` for a response that does not say it.
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` for a response that does not say it.
    pub stale_if_error: Option<Duration>,
    /// Store responses with `Set-Cookie` (the cookie itself is never stored).
    pub store_set_cookie: bool,
    /// Look up and store for requests with a `Cookie` (else they go past the cache: their
    /// response may be that user's).
    pub share_cookie_requests: bool,
}

/// What a request asks of the cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestRules {
    /// The request's `Cache-Control`.
    pub directives: CacheControl,
    /// `no-cache` (or `Pragma: no-cache`): a stored response must be revalidated first.
    pub no_cache: bool,
    /// The request carries `Authorization` (RFC 9111 §3.5).
    pub authorized: bool,
}

/// Why a request goes past the cache without looking up or storing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bypass {
    /// Not `GET` or `HEAD`.
    Method,
    /// The request said `no-store`.
    NoStore,
    /// The request carries a `Cookie` and the route does not share cookie requests.
    Cookie,
    /// The route's key function sent it past.
    Key,
}

/// What a request allows, or why it goes past the cache.
pub fn request_rules(
    method: &Method,
    headers: &HeaderMap,
    policy: &Policy,
) -> Result<RequestRules, Bypass> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Bypass::Method);
    }
    let directives = CacheControl::of(headers);
    if directives.no_store {
        return Err(Bypass::NoStore);
    }
    if !policy.share_cookie_requests && headers.contains_key(COOKIE) {
        return Err(Bypass::Cookie);
    }
    let no_cache = directives.no_cache || pragma_no_cache(headers);
    Ok(RequestRules {
        directives,
        no_cache,
        authorized: headers.contains_key(AUTHORIZATION),
    })
}

/// Why a response is not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStored {
    /// A `HEAD`'s answer (it has no body to store).
    Head,
    /// A status the cache does not store (`206`, `304`, a `1xx`), or one it does not
    /// understand under `must-understand`.
    Status,
    /// `no-store`.
    NoStore,
    /// `private`: for one user.
    Private,
    /// A request with `Authorization`, and a response that does not say it may be shared
    /// (`public`, `s-maxage`, `must-revalidate`: RFC 9111 §3.5).
    Authorization,
    /// `Set-Cookie`, and the route does not store such responses.
    SetCookie,
    /// `Vary: *`, or a `Vary` that cannot be matched.
    Vary,
    /// No freshness (no `max-age`, `s-maxage` or `Expires`, no route default) and nothing to
    /// revalidate with.
    NoFreshness,
    /// The body is larger than the cache keeps.
    TooLarge,
}

impl NotStored {
    /// A short name, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Status => "status",
            Self::NoStore => "no-store",
            Self::Private => "private",
            Self::Authorization => "authorization",
            Self::SetCookie => "set-cookie",
            Self::Vary => "vary",
            Self::NoFreshness => "no-freshness",
            Self::TooLarge => "too-large",
        }
    }
}

/// How long a stored response may serve, and what it allows once stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// The freshness lifetime (before jitter).
    pub lifetime: Duration,
    /// How long past it the response may be served while one request refreshes it.
    pub stale_while_revalidate: Duration,
    /// How long past it the response may be served when the handler fails.
    pub stale_if_error: Duration,
    /// `no-cache`: every use is revalidated with the handler first.
    pub no_cache: bool,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`: never served stale.
    pub forbids_stale: bool,
    /// The headers a request's values must match (from `Vary`).
    pub vary: Vec<http::HeaderName>,
}

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether a response to a `GET` may be stored by a shared cache (RFC 9111 §3), and its
/// freshness if so. A `Surrogate-Control` aimed at this cache (named `target`) decides over
/// `Cache-Control`: its `no-store` stops the store, its `max-age` is the lifetime.
pub fn storable(
    request: &RequestRules,
    status: StatusCode,
    headers: &HeaderMap,
    policy: &Policy,
    target: &str,
) -> Result<Freshness, NotStored> {
    let mut directives = CacheControl::of(headers);
    let code = status.as_u16();
    if code < 200 || code == 206 || code == 304 {
        return Err(NotStored::Status);
    }
    if let Some(surrogate) = SurrogateControl::of(headers, target) {
        if surrogate.no_store {
            return Err(NotStored::NoStore);
        }
        if let Some(max_age) = surrogate.max_age {
            // The origin's word to this cache on how long, over what `Cache-Control` tells
            // clients: a page can be `no-store` for browsers and cached here for a minute.
            // Whom it is for still comes from `Cache-Control`: `private` and §3.5 stand.
            directives.no_store = false;
            directives.s_maxage = None;
            directives.max_age = Some(max_age);
        }
    }
    // `must-understand` overrides `no-store` for a status the cache understands, and stops
    // the storing of one it does not (RFC 9111 §5.2.2.3).
    if directives.must_understand {
        if !heuristically_cacheable(status) && code != 302 && code != 307 {
            return Err(NotStored::Status);
        }
    } else if directives.no_store {
        return Err(NotStored::NoStore);
    }
    if directives.private {
        return Err(NotStored::Private);
    }
    if request.authorized
        && !(directives.public || directives.s_maxage.is_some() || directives.must_revalidate)
    {
        return Err(NotStored::Authorization);
    }
    if !policy.store_set_cookie && headers.contains_key(SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    let Vary::Names(vary) = vary(headers) else {
        return Err(NotStored::Vary);
    };
    let explicit = explicit_lifetime(&directives, headers);
    let lifetime = match explicit {
        Some(lifetime) => lifetime,
        None if matches!(code, 404 | 410) && policy.negative_ttl.is_some() => {
            policy.negative_ttl.unwrap_or_default()
        }
        None if heuristically_cacheable(status) && policy.default_ttl.is_some() => {
            policy.default_ttl.unwrap_or_default()
        }
        // Stored stale, to be revalidated, when there is something to revalidate with.
        None if has_validator(headers) && (directives.no_cache || directives.public) => {
            Duration::ZERO
        }
        None => return Err(NotStored::NoFreshness),
    };
    let seconds = |value: Option<u64>| value.map(Duration::from_secs);
    Ok(Freshness {
        lifetime,
        stale_while_revalidate: seconds(directives.stale_while_revalidate)
            .or(policy.stale_while_revalidate)
            .unwrap_or_default(),
        stale_if_error: seconds(directives.stale_if_error)
            .or(policy.stale_if_error)
            .unwrap_or_default(),
        no_cache: directives.no_cache,
        forbids_stale: directives.forbids_stale(),
        vary,
    })
}

/// Whether the response has a validator (`ETag`, `Last-Modified`) to revalidate it with.
pub fn has_validator(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::ETAG) || headers.contains_key(http::header::LAST_MODIFIED)
}

/// What a stored response may do for a request, at its current age.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usable {
    /// Fresh (for this request): served.
    Fresh,
    /// Stale, inside `stale-while-revalidate`: served, and refreshed in the background.
    StaleWhileRevalidate,
    /// Stale, and the request's `max-stale` accepts it: served.
    StaleAccepted,
    /// Must be revalidated with the handler (or replaced) before it serves again.
    Revalidate,
}

/// The facts about a stored response that its use depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its age now.
    pub age: Duration,
    /// Its freshness lifetime (after jitter).
    pub lifetime: Duration,
    /// Its `stale-while-revalidate` window.
    pub stale_while_revalidate: Duration,
    /// `no-cache`.
    pub no_cache: bool,
    /// Never served stale.
    pub forbids_stale: bool,
}

/// Whether a stored response may answer `request` (RFC 9111 §4.2, §5.2.1; RFC 5861 §3).
pub fn usable(stored: Stored, request: &RequestRules) -> Usable {
    if request.no_cache || stored.no_cache {
        return Usable::Revalidate;
    }
    let directives = &request.directives;
    let age = stored.age.as_secs();
    let lifetime = stored.lifetime;
    // The request's own limits on age: stricter than the response's, never looser.
    if directives.max_age.is_some_and(|max_age| age > max_age) {
        return Usable::Revalidate;
    }
    if stored.age < lifetime {
        let left = lifetime.saturating_sub(stored.age);
        if directives
            .min_fresh
            .is_some_and(|min_fresh| left.as_secs() < min_fresh)
        {
            return Usable::Revalidate;
        }
        return Usable::Fresh;
    }
    if stored.forbids_stale {
        return Usable::Revalidate;
    }
    let stale_for = stored.age.saturating_sub(lifetime);
    match directives.max_stale {
        Some(None) => return Usable::StaleAccepted,
        Some(Some(max_stale)) if stale_for.as_secs() <= max_stale => {
            return Usable::StaleAccepted;
        }
        _ => {}
    }
    if stale_for < stored.stale_while_revalidate {
        return Usable::StaleWhileRevalidate;
    }
    Usable::Revalidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn request(lines: &[(&'static str, &'static str)]) -> RequestRules {
        request_rules(&Method::GET, &headers(lines), &Policy::default()).unwrap_or_default()
    }

    #[test]
    fn explicit_freshness_is_stored_and_private_or_no_store_never() {
        let ok = |lines| {
            storable(
                &request(&[]),
                StatusCode::OK,
                &headers(lines),
                &Policy::default(),
                "vitals",
            )
        };
        assert_eq!(
            ok(&[("cache-control", "max-age=60")]).map(|f| f.lifetime),
            Ok(Duration::from_mins(1))
        );
        assert_eq!(
            ok(&[("cache-control", "private, max-age=60")]),
            Err(NotStored::Private)
        );
        assert_eq!(
            ok(&[("cache-control", "no-store, max-age=60")]),
            Err(NotStored::NoStore)
        );
        assert_eq!(ok(&[]), Err(NotStored::NoFreshness));
        assert_eq!(
            ok(&[("cache-control", "max-age=60"), ("vary", "*")]),
            Err(NotStored::Vary)
        );
        assert_eq!(
            ok(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]),
            Err(NotStored::SetCookie)
        );
    }

    #[test]
    fn authorization_needs_the_response_to_say_it_is_shared() {
        let authorized = request(&[("authorization", "Bearer x")]);
        let with = |lines| {
            storable(
                &authorized,
                StatusCode::OK,
                &headers(lines),
                &Policy::default(),
                "vitals",
            )
        };
        assert_eq!(
            with(&[("cache-control", "max-age=60")]),
            Err(NotStored::Authorization)
        );
        assert!(with(&[("cache-control", "public, max-age=60")]).is_ok());
        assert!(with(&[("cache-control", "s-maxage=60")]).is_ok());
    }

    #[test]
    fn route_defaults_fill_in_only_what_the_response_leaves_out() {
        let policy = Policy {
            default_ttl: Some(Duration::from_secs(5)),
            negative_ttl: Some(Duration::from_secs(2)),
            stale_if_error: Some(Duration::from_secs(30)),
            ..Policy::default()
        };
        let none = HeaderMap::new();
        let of = |status| storable(&request(&[]), status, &none, &policy, "vitals");
        assert_eq!(
            of(StatusCode::OK).map(|f| f.lifetime),
            Ok(Duration::from_secs(5))
        );
        assert_eq!(
            of(StatusCode::NOT_FOUND).map(|f| f.lifetime),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            of(StatusCode::INTERNAL_SERVER_ERROR),
            Err(NotStored::NoFreshness)
        );
        assert_eq!(of(StatusCode::PARTIAL_CONTENT), Err(NotStored::Status));
        let given = storable(
            &request(&[]),
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=9, stale-if-error=3")]),
            &policy,
            "vitals",
        );
        assert_eq!(given.map(|f| f.stale_if_error), Ok(Duration::from_secs(3)));
    }

    fn stored(age: u64, lifetime: u64) -> Stored {
        Stored {
            age: Duration::from_secs(age),
            lifetime: Duration::from_secs(lifetime),
            stale_while_revalidate: Duration::from_secs(10),
            no_cache: false,
            forbids_stale: false,
        }
    }

    #[test]
    fn a_stored_response_serves_while_fresh_then_within_its_stale_rules() {
        let plain = request(&[]);
        assert_eq!(usable(stored(5, 60), &plain), Usable::Fresh);
        assert_eq!(usable(stored(65, 60), &plain), Usable::StaleWhileRevalidate);
        assert_eq!(usable(stored(75, 60), &plain), Usable::Revalidate);
        let strict = Stored {
            forbids_stale: true,
            ..stored(65, 60)
        };
        assert_eq!(
            usable(strict, &request(&[("cache-control", "max-stale")])),
            Usable::Revalidate
        );
        assert_eq!(
            usable(
                stored(75, 60),
                &request(&[("cache-control", "max-stale=20")])
            ),
            Usable::StaleAccepted
        );
        assert_eq!(
            usable(stored(30, 60), &request(&[("cache-control", "max-age=10")])),
            Usable::Revalidate
        );
        assert_eq!(
            usable(
                stored(50, 60),
                &request(&[("cache-control", "min-fresh=20")])
            ),
            Usable::Revalidate
        );
        assert_eq!(
            usable(stored(1, 60), &request(&[("pragma", "no-cache")])),
            Usable::Revalidate
        );
    }

    #[test]
    fn surrogate_control_aimed_at_this_cache_decides_over_cache_control() {
        let of = |lines| {
            storable(
                &request(&[]),
                StatusCode::OK,
                &headers(lines),
                &Policy::default(),
                "vitals",
            )
            .map(|freshness| freshness.lifetime)
        };
        assert_eq!(
            of(&[
                ("cache-control", "no-store"),
                ("surrogate-control", "max-age=30")
            ]),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            of(&[
                ("cache-control", "max-age=60"),
                ("surrogate-control", "no-store")
            ]),
            Err(NotStored::NoStore)
        );
        assert_eq!(
            of(&[
                ("cache-control", "max-age=60"),
                ("surrogate-control", "no-store;edge")
            ]),
            Ok(Duration::from_mins(1)),
            "aimed at another cache"
        );
        assert_eq!(
            of(&[("surrogate-control", "max-age=30;vitals")]),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            of(&[
                ("cache-control", "private"),
                ("surrogate-control", "max-age=30")
            ]),
            Err(NotStored::Private),
            "one user's response stays one user's"
        );
    }

    #[test]
    fn requests_that_go_past_the_cache() {
        let policy = Policy::default();
        let of = |method: Method, lines| request_rules(&method, &headers(lines), &policy);
        assert_eq!(of(Method::POST, &[]), Err(Bypass::Method));
        assert_eq!(
            of(Method::GET, &[("cache-control", "no-store")]),
            Err(Bypass::NoStore)
        );
        assert_eq!(
            of(Method::GET, &[("cookie", "session=1")]),
            Err(Bypass::Cookie)
        );
        assert!(of(Method::HEAD, &[]).is_ok());
    }
}
