//! What the part decided about one request, counted when the `metrics` feature is on.

use vitals_core::route::RouteLabel;

use crate::layer::Config;

/// What the part decided about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    FirstRun,
    Replay,
    Conflict,
    Mismatch,
    Refused,
    #[cfg(feature = "redis")]
    StoreError,
}

impl Config {
    /// Counts `outcome` for `route` (nothing without the `metrics` feature).
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn count(&self, route: &RouteLabel, outcome: Outcome) {
        #[cfg(feature = "metrics")]
        self.counters.count(route.as_str(), outcome);
        #[cfg(not(feature = "metrics"))]
        let _ = (route, outcome);
    }
}
