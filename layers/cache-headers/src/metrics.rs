//! Counters through the `metrics` facade (feature `metrics`).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `vitals.cache.not_modified` | counter | `http.route` |
//! | `vitals.cache.etags_computed` | counter | `http.route` |

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

fn route(route: Option<&RouteLabel>) -> String {
    route.map_or_else(
        || vitals_core::route::UNMATCHED.to_owned(),
        |r| r.as_str().to_owned(),
    )
}

pub(crate) fn not_modified(label: Option<&RouteLabel>) {
    metrics::counter!(NOT_MODIFIED, HTTP_ROUTE => route(label)).increment(1);
}

pub(crate) fn etag_computed(label: Option<&RouteLabel>) {
    metrics::counter!(ETAGS_COMPUTED, HTTP_ROUTE => route(label)).increment(1);
}
