//! Counters through the `metrics` facade (feature `metrics`).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `vitals.cache.not_modified` | counter | `http.route` |
//! | `vitals.cache.etags_computed` | counter | `http.route` |

use metrics::Counter;
use vitals_core::per_route::PerRoute;
use vitals_core::route::RouteLabel;
use vitals_core::semconv::HTTP_ROUTE;

/// `304 Not Modified` answers: body transfers saved.
pub const NOT_MODIFIED: &str = "vitals.cache.not_modified";
/// Entity tags computed from a buffered body.
pub const ETAGS_COMPUTED: &str = "vitals.cache.etags_computed";

/// Registers HELP texts with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        NOT_MODIFIED,
        "Conditional requests answered 304 Not Modified."
    );
    metrics::describe_counter!(
        ETAGS_COMPUTED,
        "Entity tags computed from a buffered response body."
    );
}

fn route_of(route: Option<&RouteLabel>) -> &str {
    route.map_or(vitals_core::route::UNMATCHED, RouteLabel::as_str)
}

/// A layer's counters per route, resolved at a route's first use (install the recorder before
/// the first request): a request then costs an atomic add, not label strings and a lookup.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    routes: PerRoute<RouteCounters>,
}

#[derive(Debug)]
struct RouteCounters {
    not_modified: Counter,
    etags_computed: Counter,
}

impl Handles {
    fn with(&self, label: Option<&RouteLabel>, count: impl FnOnce(&RouteCounters)) {
        let route = route_of(label);
        self.routes.with(
            route,
            || RouteCounters {
                not_modified: metrics::counter!(NOT_MODIFIED, HTTP_ROUTE => route.to_owned()),
                etags_computed: metrics::counter!(ETAGS_COMPUTED, HTTP_ROUTE => route.to_owned()),
            },
            count,
        );
    }

    pub(crate) fn not_modified(&self, label: Option<&RouteLabel>) {
        self.with(label, |c| c.not_modified.increment(1));
    }

    pub(crate) fn etag_computed(&self, label: Option<&RouteLabel>) {
        self.with(label, |c| c.etags_computed.increment(1));
    }
}
