//! What the layer decided, through the `metrics` facade (feature `metrics`), by `http.route`:
//!
//! - `vitals.idempotency.first_runs` — requests with a new key, run;
//! - `vitals.idempotency.replays` — requests answered with a stored response;
//! - `vitals.idempotency.conflicts` — `409`s (the key's request still running, or done and not
//!   replayable);
//! - `vitals.idempotency.mismatches` — `422`s (the key used for another request);
//! - `vitals.idempotency.refused` — `400`s (missing or malformed key), `413`s and `503`s (the
//!   store full);
//! - `vitals.idempotency.store_errors` — requests whose key could not be checked because Redis
//!   failed (answered `503`, or run unprotected).

use metrics::Counter;
use vitals_core::per_route::PerRoute;
use vitals_core::semconv::HTTP_ROUTE;

use crate::outcome::Outcome;

/// Requests with a new key that ran.
pub const FIRST_RUNS: &str = "vitals.idempotency.first_runs";
/// Requests answered with a stored response.
pub const REPLAYS: &str = "vitals.idempotency.replays";
/// Requests answered `409`.
pub const CONFLICTS: &str = "vitals.idempotency.conflicts";
/// Requests answered `422`.
pub const MISMATCHES: &str = "vitals.idempotency.mismatches";
/// Requests refused before their key was looked up, or because the store was full.
pub const REFUSED: &str = "vitals.idempotency.refused";
/// Requests whose key could not be checked: the shared store (Redis) failed.
pub const STORE_ERRORS: &str = "vitals.idempotency.store_errors";

/// HELP text for this crate's families (call once, after installing the recorder).
pub fn describe() {
    metrics::describe_counter!(FIRST_RUNS, "Requests with a new Idempotency-Key that ran.");
    metrics::describe_counter!(
        REPLAYS,
        "Requests answered with the stored response of their key."
    );
    metrics::describe_counter!(
        CONFLICTS,
        "Requests answered 409: their key's request still ran, or was not replayable."
    );
    metrics::describe_counter!(
        MISMATCHES,
        "Requests answered 422: their key was used for another request."
    );
    metrics::describe_counter!(
        REFUSED,
        "Requests refused: a missing or malformed key, a body too large, a full store."
    );
    metrics::describe_counter!(
        STORE_ERRORS,
        "Requests whose key could not be checked: the shared store failed."
    );
}

#[derive(Debug)]
struct RouteCounters {
    first_runs: Counter,
    replays: Counter,
    conflicts: Counter,
    mismatches: Counter,
    refused: Counter,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // Only a remote store fails.
    store_errors: Counter,
}

/// The counters per route, made at a route's first use.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    routes: PerRoute<RouteCounters>,
}

impl Counters {
    pub(crate) fn count(&self, route: &str, outcome: Outcome) {
        self.routes.with(
            route,
            || RouteCounters {
                first_runs: metrics::counter!(FIRST_RUNS, HTTP_ROUTE => route.to_owned()),
                replays: metrics::counter!(REPLAYS, HTTP_ROUTE => route.to_owned()),
                conflicts: metrics::counter!(CONFLICTS, HTTP_ROUTE => route.to_owned()),
                mismatches: metrics::counter!(MISMATCHES, HTTP_ROUTE => route.to_owned()),
                refused: metrics::counter!(REFUSED, HTTP_ROUTE => route.to_owned()),
                store_errors: metrics::counter!(STORE_ERRORS, HTTP_ROUTE => route.to_owned()),
            },
            |counters| {
                let counter = match outcome {
                    Outcome::FirstRun => &counters.first_runs,
                    Outcome::Replay => &counters.replays,
                    Outcome::Conflict => &counters.conflicts,
                    Outcome::Mismatch => &counters.mismatches,
                    Outcome::Refused => &counters.refused,
                    #[cfg(feature = "redis")]
                    Outcome::StoreError => &counters.store_errors,
                };
                counter.increment(1);
            },
        );
    }
}
