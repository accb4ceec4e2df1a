//! What the fused service runs: the enabled parts, built once by `VitalsBuilder::build`.

use http::HeaderMap;
use vitals_core::route::RouteLabeler;

/// The parts of one [`VitalsLayer`](crate::VitalsLayer), each `None` when switched off.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plan {
    pub(crate) labeler: RouteLabeler,
    #[cfg(feature = "trace-context")]
    pub(crate) trace: Option<vitals_trace_context::part::TracePart>,
    #[cfg(feature = "timing")]
    pub(crate) timing: Option<vitals_timing::part::TimingPart>,
    #[cfg(feature = "latency")]
    pub(crate) latency: Option<vitals_latency::part::LatencyPart>,
    #[cfg(feature = "queries")]
    pub(crate) queries: Option<vitals_queries::part::QueriesPart>,
    #[cfg(feature = "concurrency")]
    pub(crate) limit: Option<vitals_concurrency::part::LimitPart>,
}

impl Plan {
    /// Whether any part reads the clock when the request arrives.
    pub(crate) fn uses_clock(&self) -> bool {
        let used = false;
        #[cfg(feature = "timing")]
        let used = used || self.timing.is_some();
        #[cfg(feature = "latency")]
        let used = used || self.latency.is_some();
        used
    }

    /// Whether any part adds to `Server-Timing`.
    pub(crate) fn uses_server_timing(&self) -> bool {
        let used = false;
        #[cfg(feature = "trace-context")]
        let used = used || self.trace.is_some();
        #[cfg(feature = "timing")]
        let used = used || self.timing.is_some();
        #[cfg(feature = "queries")]
        let used = used || self.queries.is_some();
        used
    }

    /// Whether the client of `headers` may see `Server-Timing`: when every part that adds to it
    /// allows it (the most restrictive mode wins, as with the layers stacked).
    #[allow(unused_variables)] // Every part may be compiled out.
    pub(crate) fn shows_server_timing(&self, headers: &HeaderMap) -> bool {
        let allowed = true;
        #[cfg(feature = "trace-context")]
        let allowed = allowed
            && self
                .trace
                .as_ref()
                .is_none_or(|part| part.shows_server_timing(headers));
        #[cfg(feature = "timing")]
        let allowed = allowed
            && self
                .timing
                .as_ref()
                .is_none_or(|part| part.shows_server_timing(headers));
        #[cfg(feature = "queries")]
        let allowed = allowed
            && self
                .queries
                .as_ref()
                .is_none_or(|part| part.shows_server_timing(headers));
        allowed
    }
}
