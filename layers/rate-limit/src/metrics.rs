//! The rate limit's decisions through the `metrics` facade (feature `metrics`).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `vitals.rate_limit.allowed` | counter | `http.route` |
//! | `vitals.rate_limit.refused` | counter | `http.route`, `vitals.quota` |
//! | `vitals.rate_limit.shadow_refused` | counter | `http.route`, `vitals.quota` |
//! | `vitals.rate_limit.store_failures` | counter | `http.route`, `vitals.decision` (`allowed`/`refused`) |
//! | `vitals.rate_limit.store.duration` | histogram (s) | — |
//!
//! Keys never become labels: the series stay as many as routes × quotas, whatever the
//! clients.

use metrics::Counter;
use vitals_core::per_route::PerRoute;
use vitals_core::route::RouteLabel;
use vitals_core::semconv::HTTP_ROUTE;

use crate::quota::Quota;

/// Requests a rate limit allowed.
pub const ALLOWED: &str = "vitals.rate_limit.allowed";
/// Requests a rate limit refused (429).
pub const REFUSED: &str = "vitals.rate_limit.refused";
/// Requests a rate limit in shadow mode would have refused.
pub const SHADOW_REFUSED: &str = "vitals.rate_limit.shadow_refused";
/// Requests decided without the quotas' store (Redis) because it failed or timed out.
pub const STORE_FAILURES: &str = "vitals.rate_limit.store_failures";
/// The time each call to the quotas' store (Redis) took, in seconds, answered or not.
pub const STORE_DURATION: &str = "vitals.rate_limit.store.duration";
/// The label naming the quota that refused.
pub const QUOTA: &str = "vitals.quota";
/// The label saying what a store failure did: `allowed` (fail open) or `refused` (closed).
pub const DECISION: &str = "vitals.decision";

/// HELP text for this crate's families (call once, after installing the recorder).
pub fn describe() {
    use metrics::describe_counter;
    describe_counter!(ALLOWED, "Requests a rate limit allowed.");
    describe_counter!(
        REFUSED,
        "Requests a rate limit refused (429 Too Many Requests)."
    );
    describe_counter!(
        SHADOW_REFUSED,
        "Requests a rate limit in shadow mode would have refused."
    );
    metrics::describe_histogram!(
        STORE_DURATION,
        metrics::Unit::Seconds,
        "Time of each call to a rate limit's store (Redis), answered or not."
    );
    describe_counter!(
        STORE_FAILURES,
        "Requests a rate limit decided without its store (Redis), which failed or timed out."
    );
}

fn route_of(route: Option<&RouteLabel>) -> &str {
    route.map_or(vitals_core::route::UNMATCHED, RouteLabel::as_str)
}

/// A limit's counters per route, resolved at a route's first request (install the recorder
/// before it).
#[derive(Debug, Default)]
pub(crate) struct Handles {
    allowed: PerRoute<Counter>,
}

impl Handles {
    pub(crate) fn allowed(&self, route: Option<&RouteLabel>) {
        let route = route_of(route);
        self.allowed.with(
            route,
            || metrics::counter!(ALLOWED, HTTP_ROUTE => route.to_owned()),
            |counter| counter.increment(1),
        );
    }

    /// A request decided without the store.
    #[allow(clippy::unused_self)] // A method beside `allowed`, for when failures get handles too.
    pub(crate) fn store_failed(&self, route: Option<&RouteLabel>, closed: bool) {
        metrics::counter!(
            STORE_FAILURES,
            HTTP_ROUTE => route_of(route).to_owned(),
            DECISION => if closed { "refused" } else { "allowed" }
        )
        .increment(1);
    }

    /// A refusal (or one shadow mode let through): rare enough to resolve its series on use.
    #[allow(clippy::unused_self)] // A method beside `allowed`, for when refusals get handles too.
    pub(crate) fn refused(&self, route: Option<&RouteLabel>, quota: &Quota, shadow: bool) {
        let name = if shadow { SHADOW_REFUSED } else { REFUSED };
        metrics::counter!(
            name,
            HTTP_ROUTE => route_of(route).to_owned(),
            QUOTA => quota.name().to_owned()
        )
        .increment(1);
    }
}
