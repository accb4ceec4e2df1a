//! The rate-limit part: find the request's key, spend one request of each quota, and allow or
//! refuse — written once and driven by [`RateLimit`](crate::RateLimit) (and by the fused
//! `vitals` stack, which answers its refusal like the concurrency limit's).
//!
//! ```
//! use std::net::IpAddr;
//! use http::{Request, Response};
//! use vitals_rate_limit::{PeerAddr, Quota, RateLimitLayer};
//! use vitals_rate_limit::part::Decision;
//!
//! let part = RateLimitLayer::new(Quota::per_second(1)).part();
//! let mut request = Request::new(());
//! request.extensions_mut().insert(PeerAddr("192.0.2.1".parse::<IpAddr>()?));
//! let Decision::Allowed(grant) = part.check(&request, None) else {
//!     unreachable!("the first request of the second");
//! };
//! let mut response = Response::new(());
//! grant.on_response(&mut response);
//! assert_eq!(response.headers()["ratelimit"], r#""per-second";r=0;t=1"#);
//! let Decision::Refused(refusal) = part.check(&request, None) else {
//!     unreachable!("the second request of the same second");
//! };
//! let refused: Response<http_body_util::Full<bytes::Bytes>> = refusal.into_response();
//! assert_eq!(refused.status(), 429);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hashbrown::HashMap;

use bytes::{Buf, Bytes};
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use vitals_core::findings::{Finding, Findings};
use vitals_core::identity::RequestIdentity;
use vitals_core::route::{RouteLabel, RouteLabeler};
use vitals_core::route_table::RouteTable;

use crate::headers::{self, Left, RATELIMIT, RATELIMIT_POLICY};
use crate::key::Key;
use crate::limiter::{QuotaLimiter, Verdict};
use crate::quota::Quota;
use crate::settings::RateLimitSettings;

/// The digest requests with no key share (a real key's xxh3 digest is 0 with probability
/// 2⁻¹²⁸).
const UNKEYED: u128 = 0;

/// The rate-limit part of a [`RateLimitLayer`](crate::RateLimitLayer) (see
/// [`RateLimitLayer::part`](crate::RateLimitLayer::part)). Cheap to clone; clones share the
/// quotas' state.
#[derive(Clone, Debug)]
pub struct RateLimitPart {
    pub(crate) default: Option<Arc<Enforced>>,
    pub(crate) routes: Arc<RouteTable<Arc<Enforced>>>,
    pub(crate) labeler: RouteLabeler,
    /// Whether the quotas live in Redis (decided once, read per request).
    pub(crate) remote: bool,
}

/// What the limit decided for a request.
#[derive(Debug)]
pub enum Decision {
    /// The route has no rate limit.
    Unlimited,
    /// Allowed: give the response its headers with [`Grant::on_response`].
    Allowed(Grant),
    /// Refused: answer with [`Refusal::into_response`].
    Refused(Refusal),
    /// The quotas live in Redis: await [`Checking`] for the decision (never `Pending` again).
    Pending(Checking),
}

/// A quota check on its way to Redis and back (feature `redis`).
pub struct Checking(Pin<Box<dyn Future<Output = Decision> + Send>>);

impl Future for Checking {
    type Output = Decision;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Decision> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Checking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checking(..)")
    }
}

/// An allowed request's `RateLimit-Policy` and `RateLimit` headers, for its response.
#[derive(Debug)]
pub struct Grant {
    headers: Option<(HeaderValue, HeaderValue)>,
}

impl Grant {
    /// Adds the headers to the response (nothing when they are off or in shadow mode).
    pub fn on_response<B>(self, response: &mut Response<B>) {
        if let Some((policy, remaining)) = self.headers {
            let headers = response.headers_mut();
            headers.insert(RATELIMIT_POLICY, policy);
            headers.insert(RATELIMIT, remaining);
        }
    }
}

/// A refused request: its `429` with `Retry-After` (or, when the quotas' store failed and a
/// quota fails closed, its `503`).
#[derive(Debug)]
pub struct Refusal {
    reason: Reason,
    headers: Option<(HeaderValue, HeaderValue)>,
}

#[derive(Debug)]
enum Reason {
    OverQuota {
        retry_after: Duration,
        violated: Quota,
    },
    StoreFailed,
}

impl Refusal {
    /// The `429 Too Many Requests` response (marked as a rejection for the outer parts); the
    /// `503` of a store failure on a quota that fails closed.
    pub fn into_response<D: From<Bytes> + Buf>(self) -> Response<Full<D>> {
        let mut response = match &self.reason {
            Reason::OverQuota {
                retry_after,
                violated,
            } => headers::too_many_requests(*retry_after, &[violated]),
            Reason::StoreFailed => headers::store_unavailable(),
        };
        Grant {
            headers: self.headers,
        }
        .on_response(&mut response);
        response
    }

    /// How long until the quota allows the client again.
    pub fn retry_after(&self) -> Duration {
        match &self.reason {
            Reason::OverQuota { retry_after, .. } => *retry_after,
            Reason::StoreFailed => Duration::from_secs(1),
        }
    }
}

/// A rate limit in force: the settings, each quota's state, the counts.
#[derive(Debug)]
pub(crate) struct Enforced {
    pub(crate) settings: RateLimitSettings,
    keyed: Quotas,
    unkeyed: Option<Quotas>,
    pub(crate) books: Books,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Handles,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis_store::RedisStore>,
    reports: Option<Reports>,
}

/// Refused clients reported to the findings: at most every [`REPORT_EVERY`] per client, with
/// the refusals since; at most [`MAX_REPORTED`] clients remembered.
#[derive(Debug)]
pub(crate) struct Reports {
    findings: Findings,
    visible_keys: bool,
    clients: Mutex<HashMap<u128, (Instant, u64)>>,
}

const REPORT_EVERY: Duration = Duration::from_secs(10);
const MAX_REPORTED: usize = 1_000;

/// Who a request was, for the findings: its key's digest, the key shown (when the limit shows
/// keys), the trace id.
#[derive(Debug)]
pub(crate) struct Seen {
    digest: u128,
    shown: Option<String>,
    trace_id: Option<String>,
}

impl Reports {
    pub(crate) fn new(findings: Findings, visible_keys: bool) -> Self {
        Self {
            findings,
            visible_keys,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a refusal of `seen`; reports it when its client was not reported recently.
    fn refused(&self, route: Option<&RouteLabel>, quota: &Quota, seen: &Seen) {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.len() >= MAX_REPORTED && !clients.contains_key(&seen.digest) {
            clients.retain(|_, (last, _)| now.duration_since(*last) < REPORT_EVERY);
            if clients.len() >= MAX_REPORTED {
                // More clients refused within ten seconds than are remembered: the ones
                // already reported stand for the flood; this one is not reported.
                return;
            }
        }
        let refused = match clients.get_mut(&seen.digest) {
            Some((last, count)) if now.duration_since(*last) < REPORT_EVERY => {
                *count += 1;
                return;
            }
            Some((last, count)) => {
                let refused = *count + 1;
                *last = now;
                *count = 0;
                refused
            }
            None => {
                clients.insert(seen.digest, (now, 0));
                1
            }
        };
        drop(clients);
        let key = seen.shown.clone().unwrap_or_else(|| {
            // A hash of the key's digest: stable, and no key in the clear.
            #[allow(clippy::cast_possible_truncation)] // The high half, on purpose.
            let high = (seen.digest >> 64) as u64;
            format!("#{high:016x}")
        });
        self.findings.push(Finding::RateLimited {
            route: route
                .map_or(vitals_core::route::UNMATCHED, RouteLabel::as_str)
                .to_owned(),
            quota: quota.name().to_owned(),
            key,
            refused,
            trace_id: seen.trace_id.clone(),
        });
    }
}

/// Quotas and the `RateLimit-Policy` they advertise.
#[derive(Debug)]
pub(crate) struct Quotas {
    pub(crate) limiters: Vec<QuotaLimiter>,
    policy: Option<HeaderValue>,
    #[cfg(feature = "redis")]
    pub(crate) remote: crate::remote::RemoteQuotas,
}

impl Quotas {
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))] // The limit names Redis keys.
    fn new(quotas: &[Quota], max_keys: usize, limit: &str) -> Self {
        Self {
            limiters: quotas
                .iter()
                .map(|quota| QuotaLimiter::new(quota.clone(), max_keys))
                .collect(),
            policy: headers::policy(quotas),
            #[cfg(feature = "redis")]
            remote: crate::remote::RemoteQuotas::new(quotas, limit),
        }
    }

    /// Spends one request of each quota in process, in order; when one refuses, the quotas
    /// before it get their share back (a refused request spends nothing).
    fn check_here(&self, key: u128) -> Checked {
        let mut checked = Checked::default();
        for (i, limiter) in self.limiters.iter().enumerate() {
            match limiter.check(key) {
                Verdict::Allowed { remaining, reset } => checked.push(Left { remaining, reset }),
                Verdict::Refused { wait } => {
                    for earlier in &self.limiters[..i] {
                        earlier.refund(key);
                    }
                    checked.refused = Some((i, wait));
                    break;
                }
            }
        }
        checked
    }
}

/// What each quota checked said: the remaining burst of those that allowed, and the one that
/// refused. Up to four quotas without an allocation.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    inline: [Left; 4],
    more: Vec<Left>,
    allowed: usize,
    pub(crate) refused: Option<(usize, Duration)>,
    /// The first quota the `RateLimit` header shows (the ones before it were not asked).
    pub(crate) shown_from: usize,
}

impl Checked {
    pub(crate) fn push(&mut self, left: Left) {
        match self.inline.get_mut(self.allowed) {
            Some(slot) => *slot = left,
            None => self.more.push(left),
        }
        self.allowed += 1;
    }

    /// Quota `i`'s state for the `RateLimit` header.
    fn left(&self, i: usize) -> Left {
        if let Some((at, wait)) = self.refused
            && at == i
        {
            return Left {
                remaining: 0,
                reset: wait,
            };
        }
        self.inline
            .get(i)
            .copied()
            .or_else(|| self.more.get(i - self.inline.len()).copied())
            .unwrap_or_default()
    }

    /// How many quotas were checked (the allowed ones and the one that refused).
    fn count(&self) -> usize {
        self.allowed + usize::from(self.refused.is_some())
    }
}

/// A counter spread over cache lines, one per thread (modulo [`STRIPES`]): adding touches only
/// the thread's own line; reading sums them.
#[derive(Debug, Default)]
pub(crate) struct StripedCount([Stripe; STRIPES]);

/// One cache line's worth of counter.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

const STRIPES: usize = 8;

thread_local! {
    /// This thread's stripe, handed out in turn.
    static STRIPE: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        #[allow(clippy::cast_possible_truncation)] // Taken modulo a small number.
        let stripe = NEXT.fetch_add(1, Ordering::Relaxed) as usize % STRIPES;
        stripe
    };
}

impl StripedCount {
    pub(crate) fn add_one(&self) {
        let stripe = STRIPE.with(|stripe| *stripe);
        self.0[stripe].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0
            .iter()
            .map(|stripe| stripe.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// A limit's counts since it started.
#[derive(Debug, Default)]
pub(crate) struct Books {
    /// Striped: every allowed request counts, and threads counting on one line would pass it
    /// between their cores on each request.
    pub(crate) allowed: StripedCount,
    pub(crate) refused: AtomicU64,
    pub(crate) shadow_refused: AtomicU64,
    /// Requests decided without the quotas' store because it failed (allowed or refused as
    /// the quotas fail).
    pub(crate) store_failures: AtomicU64,
    /// The second (since the epoch) shadow refusals were last logged in.
    shadow_logged: AtomicU64,
}

impl Enforced {
    pub(crate) fn new(
        settings: RateLimitSettings,
        max_keys: usize,
        limit: &str,
        #[cfg(feature = "redis")] redis: Option<crate::redis_store::RedisStore>,
        reports: Option<Reports>,
    ) -> Self {
        let keyed = Quotas::new(&settings.quotas, max_keys, limit);
        let unkeyed = settings
            .unkeyed
            .as_deref()
            .map(|quotas| Quotas::new(quotas, max_keys, &format!("{limit}:unkeyed")));
        Self {
            keyed,
            unkeyed,
            settings,
            books: Books::default(),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Handles::default(),
            #[cfg(feature = "redis")]
            redis,
            reports,
        }
    }

    /// Who the request is, for the findings (only when they are kept): `rule` is the key rule
    /// that found its key (none: an unkeyed request).
    fn seen<B>(&self, request: &Request<B>, digest: u128, rule: Option<&Key>) -> Option<Seen> {
        let reports = self.reports.as_ref()?;
        let shown = match rule {
            Some(rule) if reports.visible_keys => rule.describe(request),
            Some(_) => None,
            None => Some("(no key)".to_owned()),
        };
        Some(Seen {
            digest,
            shown,
            trace_id: RequestIdentity::of(request.extensions())
                .trace_id
                .map(|id| id.to_string()),
        })
    }

    /// Keys stored, keys dropped early and the stores' bytes, summed over the quotas.
    pub(crate) fn keys(&self) -> (usize, u64, usize) {
        let all = self.keyed.limiters.iter().chain(
            self.unkeyed
                .iter()
                .flat_map(|quotas| quotas.limiters.iter()),
        );
        all.fold((0, 0, 0), |(stored, early, bytes), limiter| {
            (
                stored + limiter.store.len(),
                early + limiter.store.evicted_early(),
                bytes + limiter.store.allocated_bytes(),
            )
        })
    }

    pub(crate) fn quotas(&self, unkeyed: bool) -> &Quotas {
        match (&self.unkeyed, unkeyed) {
            (Some(quotas), true) => quotas,
            _ => &self.keyed,
        }
    }

    fn check<B>(self: &Arc<Self>, request: &Request<B>, route: Option<&RouteLabel>) -> Decision {
        let found = self
            .settings
            .keys
            .iter()
            .find_map(|rule| rule.digest(request).map(|digest| (rule, digest)));
        let (unkeyed, key, rule) = match found {
            Some((rule, key)) => (false, key, Some(rule)),
            None => (true, UNKEYED, None),
        };
        let quotas = self.quotas(unkeyed);
        // Who the client is matters only for a refusal (worked out then, but before a round
        // trip to Redis, which leaves the request behind).
        let seen_if =
            |checked: &Checked| checked.refused.and_then(|_| self.seen(request, key, rule));
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            if let Some(checked) = quotas.remote.refused_here(key) {
                return self.decide(quotas, &checked, route, seen_if(&checked).as_ref());
            }
            let check = crate::remote::check(
                Arc::clone(self),
                redis.clone(),
                (unkeyed, key),
                route.cloned(),
                self.seen(request, key, rule),
            );
            return Decision::Pending(Checking(Box::pin(check)));
        }
        let checked = quotas.check_here(key);
        self.decide(quotas, &checked, route, seen_if(&checked).as_ref())
    }

    /// The decision on what the quotas said: the headers, the counts, the refusal.
    pub(crate) fn decide(
        &self,
        quotas: &Quotas,
        checked: &Checked,
        route: Option<&RouteLabel>,
        seen: Option<&Seen>,
    ) -> Decision {
        let shadow = self.settings.shadow;
        let headers = (self.settings.headers && !shadow)
            .then(|| {
                let remaining = headers::remaining(
                    quotas.limiters[..checked.count()]
                        .iter()
                        .enumerate()
                        .skip(checked.shown_from)
                        .map(|(i, limiter)| (&limiter.quota, checked.left(i))),
                )?;
                Some((quotas.policy.clone()?, remaining))
            })
            .flatten();
        let Some((at, wait)) = checked.refused else {
            self.books.allowed.add_one();
            #[cfg(feature = "metrics")]
            self.metrics.allowed(route);
            #[cfg(not(feature = "metrics"))]
            let _ = route;
            return Decision::Allowed(Grant { headers });
        };
        let violated = &quotas.limiters[at].quota;
        #[cfg(feature = "metrics")]
        self.metrics.refused(route, violated, shadow);
        if shadow {
            self.books.shadow_refused.fetch_add(1, Ordering::Relaxed);
            self.log_shadow(route, violated);
            return Decision::Allowed(Grant { headers: None });
        }
        self.books.refused.fetch_add(1, Ordering::Relaxed);
        if let (Some(reports), Some(seen)) = (&self.reports, seen) {
            reports.refused(route, violated, seen);
        }
        tracing::debug!(
            http.route = route.map_or(vitals_core::route::UNMATCHED, RouteLabel::as_str),
            quota = violated.name(),
            retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "rate limit: request refused"
        );
        Decision::Refused(Refusal {
            reason: Reason::OverQuota {
                retry_after: wait,
                violated: violated.clone(),
            },
            headers,
        })
    }

    /// The store failed for a request: allowed without headers, unless a quota fails closed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn store_failed(&self, quotas: &Quotas, route: Option<&RouteLabel>) -> Decision {
        self.books.store_failures.fetch_add(1, Ordering::Relaxed);
        let closed = quotas
            .limiters
            .iter()
            .any(|limiter| limiter.quota.fails_closed());
        #[cfg(feature = "metrics")]
        self.metrics.store_failed(route, closed);
        #[cfg(not(feature = "metrics"))]
        let _ = route;
        if closed {
            return Decision::Refused(Refusal {
                reason: Reason::StoreFailed,
                headers: None,
            });
        }
        Decision::Allowed(Grant { headers: None })
    }

    /// Shadow refusals are logged at most once a second per limit, with the count so far.
    fn log_shadow(&self, route: Option<&RouteLabel>, quota: &Quota) {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let last = self.books.shadow_logged.load(Ordering::Relaxed);
        if last != second
            && self
                .books
                .shadow_logged
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::info!(
                http.route = route.map_or(vitals_core::route::UNMATCHED, RouteLabel::as_str),
                quota = quota.name(),
                would_have_refused = self.books.shadow_refused.load(Ordering::Relaxed),
                "rate limit (shadow mode): would refuse this request"
            );
        }
    }
}

impl RateLimitPart {
    /// Whether [`check`](Self::check) wants the request's route: to pick a route's own limit,
    /// or to label what it counts. When not, pass `None` and skip labelling.
    pub fn wants_route(&self) -> bool {
        cfg!(feature = "metrics") || !self.routes.is_empty()
    }

    /// The route labeler the layer was given.
    pub fn route_labeler(&self) -> &RouteLabeler {
        &self.labeler
    }

    /// Whether the quotas live in a store across the network (Redis), so that
    /// [`check`](Self::check) may answer [`Decision::Pending`].
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// Whether any route is limited at all.
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.routes.is_empty()
    }

    /// A request for `route` arrived: spend one request of each of its quotas under its key
    /// (in process: decided now; in Redis: [`Decision::Pending`]).
    pub fn check<B>(&self, request: &Request<B>, route: Option<&RouteLabel>) -> Decision {
        let limit = route
            .and_then(|route| self.routes.get(route))
            .or(self.default.as_ref());
        match limit {
            Some(limit) => limit.check(request, route),
            None => Decision::Unlimited,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use http::HeaderName;

    use super::*;
    use crate::key::{Key, PeerAddr};

    fn from(peer: &str) -> Request<()> {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(PeerAddr(peer.parse::<IpAddr>().expect("test address")));
        request
    }

    fn enforced(settings: RateLimitSettings) -> Arc<Enforced> {
        Arc::new(Enforced::new(
            settings,
            1_000,
            "*",
            #[cfg(feature = "redis")]
            None,
            None,
        ))
    }

    #[test]
    fn every_quota_is_checked_and_the_first_refusal_stops() {
        let limit = enforced(
            RateLimitSettings::new(Quota::per_second(2).named("fast"))
                .with_quota(Quota::per_hour(3).named("slow")),
        );
        let request = from("192.0.2.1");
        for _ in 0..2 {
            assert!(matches!(limit.check(&request, None), Decision::Allowed(_)));
        }
        // The per-second quota refuses: the hourly one is not spent.
        let Decision::Refused(refusal) = limit.check(&request, None) else {
            panic!("the third request of the second");
        };
        let response: Response<Full<Bytes>> = refusal.into_response();
        assert_eq!(response.headers()[RATELIMIT], r#""fast";r=0;t=1"#);
        assert_eq!(
            response.headers()[RATELIMIT_POLICY],
            r#""fast";q=2;w=1, "slow";q=3;w=3600"#
        );
        assert_eq!(limit.books.refused.load(Ordering::Relaxed), 1);

        // The other way round: the hourly budget refuses, and the per-second quota gets its
        // share back, so a refused request spends nothing at all.
        let limit = enforced(
            RateLimitSettings::new(Quota::per_second(2).named("fast"))
                .with_quota(Quota::per_hour(1).named("slow")),
        );
        let Decision::Allowed(_) = limit.check(&request, None) else {
            panic!("the first request");
        };
        for _ in 0..5 {
            assert!(matches!(limit.check(&request, None), Decision::Refused(_)));
        }
        assert_eq!(
            limit.keyed.limiters[0].check(1),
            Verdict::Allowed {
                remaining: 1,
                reset: Duration::from_millis(500),
            }
        );
        let Decision::Refused(refusal) = limit.check(&request, None) else {
            panic!("over the hourly budget");
        };
        let response: Response<Full<Bytes>> = refusal.into_response();
        // The fast quota spent one (the first request) and no more.
        assert_eq!(
            response.headers()[RATELIMIT],
            r#""fast";r=0;t=1, "slow";r=0;t=3600"#
        );
    }

    #[test]
    fn requests_without_a_key_share_one_quota() {
        let limit = enforced(
            RateLimitSettings::new(Quota::per_minute(1))
                .with_key_header(HeaderName::from_static("x-api-key")),
        );
        assert!(matches!(
            limit.check(&from("192.0.2.1"), None),
            Decision::Allowed(_)
        ));
        assert!(matches!(
            limit.check(&from("192.0.2.2"), None),
            Decision::Refused(_)
        ));
        let mut keyed = from("192.0.2.2");
        keyed
            .headers_mut()
            .insert("x-api-key", HeaderValue::from_static("k1"));
        assert!(matches!(limit.check(&keyed, None), Decision::Allowed(_)));
    }

    #[test]
    fn an_unkeyed_quota_of_its_own() {
        let limit = enforced(
            RateLimitSettings::new(Quota::per_minute(100))
                .with_keys([Key::header(HeaderName::from_static("x-api-key"))])
                .with_unkeyed_quota(Quota::per_minute(1).named("anonymous")),
        );
        let Decision::Allowed(grant) = limit.check(&from("192.0.2.1"), None) else {
            panic!("the first anonymous request");
        };
        let mut response = Response::new(());
        grant.on_response(&mut response);
        assert_eq!(
            response.headers()[RATELIMIT_POLICY],
            r#""anonymous";q=1;w=60"#
        );
        assert!(matches!(
            limit.check(&from("192.0.2.1"), None),
            Decision::Refused(_)
        ));
    }

    #[test]
    fn shadow_mode_refuses_nothing_and_counts() {
        let limit = enforced(RateLimitSettings::new(Quota::per_minute(1)).with_shadow_mode());
        let request = from("192.0.2.1");
        for _ in 0..3 {
            let Decision::Allowed(grant) = limit.check(&request, None) else {
                panic!("shadow mode refuses nothing");
            };
            let mut response = Response::new(());
            grant.on_response(&mut response);
            assert!(response.headers().get(RATELIMIT).is_none());
        }
        assert_eq!(limit.books.shadow_refused.load(Ordering::Relaxed), 2);
        assert_eq!(limit.books.refused.load(Ordering::Relaxed), 0);
    }

    /// One a minute, reporting to `findings`, keys shown or hashed.
    fn reporting(findings: &Findings, visible_keys: bool) -> Arc<Enforced> {
        Arc::new(Enforced::new(
            RateLimitSettings::new(Quota::per_minute(1)),
            1_000,
            "*",
            #[cfg(feature = "redis")]
            None,
            Some(Reports::new(findings.clone(), visible_keys)),
        ))
    }

    #[test]
    fn refused_clients_are_reported_at_most_every_ten_seconds() {
        let findings = Findings::new(16);
        let limit = reporting(&findings, true);
        let route = RouteLabel::from_static("/checkout");
        for _ in 0..4 {
            let _ = limit.check(&from("192.0.2.1"), Some(&route));
        }
        let _ = limit.check(&from("192.0.2.2"), Some(&route));
        let _ = limit.check(&from("192.0.2.2"), Some(&route));
        // Newest first: one finding per client, however often it was refused.
        let recent: Vec<Finding> = findings
            .recent()
            .into_iter()
            .rev()
            .map(|r| r.finding)
            .collect();
        assert_eq!(
            recent,
            [
                Finding::RateLimited {
                    route: "/checkout".to_owned(),
                    quota: "per-minute".to_owned(),
                    key: "192.0.2.1".to_owned(),
                    refused: 1,
                    trace_id: None,
                },
                Finding::RateLimited {
                    route: "/checkout".to_owned(),
                    quota: "per-minute".to_owned(),
                    key: "192.0.2.2".to_owned(),
                    refused: 1,
                    trace_id: None,
                },
            ]
        );
        // Hashed unless shown.
        let hashed = Findings::new(4);
        let limit = reporting(&hashed, false);
        let _ = limit.check(&from("192.0.2.1"), None);
        let _ = limit.check(&from("192.0.2.1"), None);
        let Some(Finding::RateLimited { key, .. }) = hashed.recent().pop().map(|r| r.finding)
        else {
            panic!("a finding");
        };
        assert!(
            key.starts_with('#') && key.len() == 17 && !key.contains("192"),
            "{key}"
        );
    }

    #[test]
    fn more_than_four_quotas() {
        let mut settings = RateLimitSettings::new(Quota::per_minute(10).named("q0"));
        for i in 1..6 {
            settings = settings.with_quota(Quota::per_minute(10).named(&format!("q{i}")));
        }
        let limit = enforced(settings);
        let Decision::Allowed(grant) = limit.check(&from("192.0.2.1"), None) else {
            panic!("allowed");
        };
        let mut response = Response::new(());
        grant.on_response(&mut response);
        let value = response.headers()[RATELIMIT].to_str().expect("ASCII");
        assert_eq!(value.matches(";r=9;").count(), 6, "{value}");
    }
}
