//! Queries per request and N+1 findings through the `metrics` facade (feature `metrics`).
//!
//! - `vitals.queries.per_request` — histogram of statements per request, by `http.route`;
//! - `vitals.queries.n_plus_one` — counter of N+1 findings, by `http.route`;
//! - `vitals.queries.over_budget` — counter of requests over their query budget, by `http.route`.
//!
//! Whatever recorder the application installed receives them (metrics-exporter-prometheus
//! renders `vitals_queries_per_request` and `vitals_queries_n_plus_one_total`).

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

pub(crate) fn over_budget(route: &RouteLabel) {
    metrics::counter!(OVER_BUDGET, HTTP_ROUTE => route.as_str().to_owned()).increment(1);
}

pub(crate) fn record(route: &RouteLabel, queries: u64, findings: usize) {
    let route = route.as_str().to_owned();
    #[allow(clippy::cast_precision_loss)]
    metrics::histogram!(QUERIES_PER_REQUEST, HTTP_ROUTE => route.clone()).record(queries as f64);
    if findings > 0 {
        metrics::counter!(N_PLUS_ONE_FINDINGS, HTTP_ROUTE => route)
            .increment(u64::try_from(findings).unwrap_or(u64::MAX));
    }
}
