//! Queries per request and N+1 findings through the `metrics` facade (feature `metrics`).
//!
//! - `vitals.queries.per_request` — histogram of statements per request, by `http.route`;
//! - `vitals.queries.n_plus_one` — counter of N+1 findings, by `http.route`;
//! - `vitals.queries.over_budget` — counter of requests over their query budget, by `http.route`.
//!
//! Whatever recorder the application installed receives them (metrics-exporter-prometheus
//! renders `vitals_queries_per_request` and `vitals_queries_n_plus_one_total`).

use metrics::{Counter, Histogram};
use vitals_core::per_route::PerRoute;
use vitals_core::route::RouteLabel;
use vitals_core::semconv::HTTP_ROUTE;

/// The histogram of statements per request.
pub const QUERIES_PER_REQUEST: &str = "vitals.queries.per_request";
/// The counter of N+1 findings.
pub const N_PLUS_ONE_FINDINGS: &str = "vitals.queries.n_plus_one";
/// The counter of requests over their query budget.
pub const OVER_BUDGET: &str = "vitals.queries.over_budget";

/// HELP text for this crate's families (call once, after installing the recorder).
pub fn describe() {
    metrics::describe_histogram!(QUERIES_PER_REQUEST, "Database statements per request.");
    metrics::describe_counter!(N_PLUS_ONE_FINDINGS, "N+1 query findings.");
    metrics::describe_counter!(OVER_BUDGET, "Requests over their query budget.");
}

/// A layer's handles per route, resolved at a route's first use (install the recorder before
/// the first request): a request then records without building label strings or looking keys
/// up in the recorder.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    routes: PerRoute<RouteHandles>,
}

#[derive(Debug)]
struct RouteHandles {
    per_request: Histogram,
    n_plus_one: Counter,
    over_budget: Counter,
}

impl Handles {
    fn with(&self, route: &RouteLabel, record: impl FnOnce(&RouteHandles)) {
        let route = route.as_str();
        self.routes.with(
            route,
            || RouteHandles {
                per_request: metrics::histogram!(QUERIES_PER_REQUEST, HTTP_ROUTE => route.to_owned()),
                n_plus_one: metrics::counter!(N_PLUS_ONE_FINDINGS, HTTP_ROUTE => route.to_owned()),
                over_budget: metrics::counter!(OVER_BUDGET, HTTP_ROUTE => route.to_owned()),
            },
            record,
        );
    }

    pub(crate) fn record(&self, route: &RouteLabel, queries: u64, findings: usize) {
        self.with(route, |handles| {
            #[allow(clippy::cast_precision_loss)]
            handles.per_request.record(queries as f64);
            if findings > 0 {
                handles
                    .n_plus_one
                    .increment(u64::try_from(findings).unwrap_or(u64::MAX));
            }
        });
    }

    pub(crate) fn over_budget(&self, route: &RouteLabel) {
        self.with(route, |handles| handles.over_budget.increment(1));
    }
}
