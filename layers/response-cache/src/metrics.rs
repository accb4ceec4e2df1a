//! What the cache did, through the `metrics` facade (feature `metrics`), by `http.route`:
//!
//! - `vitals.response_cache.hits` — answered from a fresh stored response;
//! - `vitals.response_cache.stale` — answered from a stale one, by `reason`
//!   (`while_revalidate`: a request's `max-stale` or `stale-while-revalidate`; `if_error`: the
//!   handler failed);
//! - `vitals.response_cache.misses` — sent to the handler for want of a usable response (a
//!   request that waits for another's fill is not one, unless the wait ends without a
//!   response for it);
//! - `vitals.response_cache.collapsed` — answered from another request's fill, after a wait;
//! - `vitals.response_cache.wait.duration` — seconds waited for another request's fill;
//! - `vitals.response_cache.wait_refused` — waits past their limit answered `503`;
//! - `vitals.response_cache.bypassed` — requests that went past the cache (`no-store`, a
//!   cookie, the route's key function);
//! - `vitals.response_cache.stored` — responses stored (fills and revalidations);
//! - `vitals.response_cache.evictions` — stored responses pushed out to stay in bounds;
//! - `vitals.response_cache.backend.duration` — seconds a request's look at the fleet's store
//!   (Redis) took, polls for another instance's fill included (feature `redis`);
//! - `vitals.response_cache.backend.errors` — looks at the fleet's store that failed or timed
//!   out (the request went to the handler).

use metrics::{Counter, Histogram};
use vitals_core::semconv::HTTP_ROUTE;

use crate::part::Event;

/// Answered from a fresh stored response.
pub const HITS: &str = "vitals.response_cache.hits";
/// Answered from a stale stored response (label `reason`).
pub const STALE: &str = "vitals.response_cache.stale";
/// Sent to the handler for want of a usable stored response.
pub const MISSES: &str = "vitals.response_cache.misses";
/// Answered from another request's fill.
pub const COLLAPSED: &str = "vitals.response_cache.collapsed";
/// Seconds waited for another request's fill.
pub const WAIT_DURATION: &str = "vitals.response_cache.wait.duration";
/// Waits past their limit answered `503`.
pub const WAIT_REFUSED: &str = "vitals.response_cache.wait_refused";
/// Requests that went past the cache.
pub const BYPASSED: &str = "vitals.response_cache.bypassed";
/// Responses stored.
pub const STORED: &str = "vitals.response_cache.stored";
/// Stored responses evicted to stay within the store's bound.
pub const EVICTIONS: &str = "vitals.response_cache.evictions";

/// Seconds a request's look at the fleet's store took.
pub const BACKEND_DURATION: &str = "vitals.response_cache.backend.duration";
/// Looks at the fleet's store that failed or timed out.
pub const BACKEND_ERRORS: &str = "vitals.response_cache.backend.errors";

/// Bucket bounds (seconds) for [`WAIT_DURATION`]: from a fill that lands at once to one that
/// takes the whole default wait.
pub const WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// HELP text for this crate's families (call once, after installing the recorder).
pub fn describe() {
    metrics::describe_counter!(HITS, "Requests answered from a fresh stored response.");
    metrics::describe_counter!(
        STALE,
        "Requests answered from a stale stored response, by reason."
    );
    metrics::describe_counter!(
        MISSES,
        "Requests sent to the handler for want of a usable stored response."
    );
    metrics::describe_counter!(
        COLLAPSED,
        "Requests answered from another request's fill of their key."
    );
    metrics::describe_histogram!(
        WAIT_DURATION,
        metrics::Unit::Seconds,
        "Time requests waited for another request's fill of their key."
    );
    metrics::describe_counter!(
        WAIT_REFUSED,
        "Requests answered 503 because another request's fill took longer than their wait."
    );
    metrics::describe_counter!(BYPASSED, "Requests that went past the cache.");
    metrics::describe_counter!(STORED, "Responses stored.");
    metrics::describe_counter!(
        EVICTIONS,
        "Stored responses evicted to keep the store within its bound."
    );
    metrics::describe_histogram!(
        BACKEND_DURATION,
        metrics::Unit::Seconds,
        "Time a request's look at the fleet's shared store (Redis) took, polls for another instance's fill included."
    );
    metrics::describe_counter!(
        BACKEND_ERRORS,
        "Looks at the fleet's shared store (Redis) that failed or timed out; the request went to the handler."
    );
}

/// One route's families, made at its first use (kept with the route's tallies: one lookup per
/// event for both).
#[derive(Debug)]
pub(crate) struct RouteCounters {
    hits: Counter,
    stale_while_revalidate: Counter,
    stale_if_error: Counter,
    misses: Counter,
    collapsed: Counter,
    wait: Histogram,
    wait_refused: Counter,
    bypassed: Counter,
    stored: Counter,
    evictions: Counter,
    #[cfg(feature = "redis")]
    backend: Histogram,
    #[cfg(feature = "redis")]
    backend_errors: Counter,
}

impl RouteCounters {
    pub(crate) fn new(route: &str) -> Self {
        let label = || route.to_owned();
        Self {
            hits: metrics::counter!(HITS, HTTP_ROUTE => label()),
            stale_while_revalidate: metrics::counter!(STALE, HTTP_ROUTE => label(), "reason" => "while_revalidate"),
            stale_if_error: metrics::counter!(STALE, HTTP_ROUTE => label(), "reason" => "if_error"),
            misses: metrics::counter!(MISSES, HTTP_ROUTE => label()),
            collapsed: metrics::counter!(COLLAPSED, HTTP_ROUTE => label()),
            wait: metrics::histogram!(WAIT_DURATION, HTTP_ROUTE => label()),
            wait_refused: metrics::counter!(WAIT_REFUSED, HTTP_ROUTE => label()),
            bypassed: metrics::counter!(BYPASSED, HTTP_ROUTE => label()),
            stored: metrics::counter!(STORED, HTTP_ROUTE => label()),
            evictions: metrics::counter!(EVICTIONS, HTTP_ROUTE => label()),
            #[cfg(feature = "redis")]
            backend: metrics::histogram!(BACKEND_DURATION, HTTP_ROUTE => label()),
            #[cfg(feature = "redis")]
            backend_errors: metrics::counter!(BACKEND_ERRORS, HTTP_ROUTE => label()),
        }
    }
}

impl RouteCounters {
    /// Adds `event` to the route's families.
    pub(crate) fn count(&self, event: Event) {
        match event {
            Event::Hit => self.hits.increment(1),
            Event::Stale => self.stale_while_revalidate.increment(1),
            Event::StaleOnError => self.stale_if_error.increment(1),
            Event::Miss => self.misses.increment(1),
            Event::Collapsed => self.collapsed.increment(1),
            Event::Waited(waited) => self.wait.record(waited.as_secs_f64()),
            Event::WaitRefused => self.wait_refused.increment(1),
            Event::Bypass => self.bypassed.increment(1),
            Event::Stored => self.stored.increment(1),
            #[cfg(feature = "redis")]
            Event::Backend(took) => self.backend.record(took.as_secs_f64()),
            #[cfg(feature = "redis")]
            Event::BackendError => self.backend_errors.increment(1),
        }
    }

    /// A stored response of the route was evicted.
    pub(crate) fn evicted(&self) {
        self.evictions.increment(1);
    }
}
