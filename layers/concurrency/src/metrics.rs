//! The limiter's state through the `metrics` facade (feature `metrics`).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `vitals.concurrency.admitted` | counter | `http.route` |
//! | `vitals.concurrency.rejected` | counter | `http.route` |
//! | `vitals.concurrency.timed_out` | counter | `http.route` |
//! | `vitals.concurrency.in_flight` | gauge | `vitals.limiter` |
//! | `vitals.concurrency.queued` | gauge | `vitals.limiter` |
//! | `vitals.concurrency.limit` | gauge | `vitals.limiter` |
//!
//! Counters are per route (the route of the request); gauges are per limiter, since one global
//! limiter serves every route (name a limiter with
//! [`with_name`](crate::ConcurrencyLimitLayer::with_name)).

use std::sync::OnceLock;

use metrics::{Counter, Gauge};
use vitals_core::per_route::PerRoute;
use vitals_core::route::RouteLabel;
use vitals_core::semconv::HTTP_ROUTE;

use crate::LimiterSnapshot;

/// Requests admitted.
pub const ADMITTED: &str = "vitals.concurrency.admitted";
/// Requests refused (queue full, waited too long, low priority shed).
pub const REJECTED: &str = "vitals.concurrency.rejected";
/// Requests answered by the timeout layer.
pub const TIMED_OUT: &str = "vitals.concurrency.timed_out";
/// Requests holding a permit.
pub const IN_FLIGHT: &str = "vitals.concurrency.in_flight";
/// Requests waiting for a permit.
pub const QUEUED: &str = "vitals.concurrency.queued";
/// The limit in force.
pub const LIMIT: &str = "vitals.concurrency.limit";
/// The label naming a limiter.
pub const LIMITER: &str = "vitals.limiter";

/// HELP text for this crate's families (call once, after installing the recorder).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(ADMITTED, "Requests admitted by a concurrency limit.");
    describe_counter!(REJECTED, "Requests refused by a concurrency limit (503).");
    describe_counter!(TIMED_OUT, "Requests answered by a timeout.");
    describe_gauge!(IN_FLIGHT, "Requests holding a concurrency permit.");
    describe_gauge!(QUEUED, "Requests waiting for a concurrency permit.");
    describe_gauge!(LIMIT, "The concurrency limit in force.");
}

fn route_of(route: Option<&RouteLabel>) -> &str {
    route.map_or(vitals_core::route::UNMATCHED, RouteLabel::as_str)
}

/// A limiter's metric handles, resolved at first use (install the recorder before the first
/// request): the per-request work is then a few atomic operations, not label strings and
/// recorder lookups.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    gauges: OnceLock<Gauges>,
    routes: PerRoute<RouteCounters>,
}

#[derive(Debug)]
struct Gauges {
    in_flight: Gauge,
    queued: Gauge,
    limit: Gauge,
}

#[derive(Debug)]
struct RouteCounters {
    admitted: Counter,
    rejected: Counter,
}

impl RouteCounters {
    fn of(route: &str) -> Self {
        Self {
            admitted: metrics::counter!(ADMITTED, HTTP_ROUTE => route.to_owned()),
            rejected: metrics::counter!(REJECTED, HTTP_ROUTE => route.to_owned()),
        }
    }
}

impl Handles {
    pub(crate) fn admitted(
        &self,
        name: &str,
        snapshot: &LimiterSnapshot,
        route: Option<&RouteLabel>,
    ) {
        self.count(route, |counters| &counters.admitted);
        self.gauges(name, snapshot);
    }

    pub(crate) fn rejected(
        &self,
        name: &str,
        snapshot: &LimiterSnapshot,
        route: Option<&RouteLabel>,
    ) {
        self.count(route, |counters| &counters.rejected);
        self.gauges(name, snapshot);
    }

    /// One more on `route`'s counter that `which` picks.
    fn count(&self, route: Option<&RouteLabel>, which: fn(&RouteCounters) -> &Counter) {
        let route = route_of(route);
        self.routes.with(
            route,
            || RouteCounters::of(route),
            |counters| which(counters).increment(1),
        );
    }

    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn gauges(&self, name: &str, snapshot: &LimiterSnapshot) {
        let gauges = self.gauges.get_or_init(|| Gauges {
            in_flight: metrics::gauge!(IN_FLIGHT, LIMITER => name.to_owned()),
            queued: metrics::gauge!(QUEUED, LIMITER => name.to_owned()),
            limit: metrics::gauge!(LIMIT, LIMITER => name.to_owned()),
        });
        gauges.in_flight.set(snapshot.in_flight as f64);
        gauges.queued.set(snapshot.queued as f64);
        gauges.limit.set(snapshot.limit as f64);
    }
}

/// A timeout answered (rare: resolved per use).
pub(crate) fn timed_out(route: Option<&RouteLabel>) {
    metrics::counter!(TIMED_OUT, HTTP_ROUTE => route_of(route).to_owned()).increment(1);
}
