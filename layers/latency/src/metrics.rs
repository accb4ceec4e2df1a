//! Recording through the `metrics` facade (feature `metrics`), so whatever recorder the
//! application installed (metrics-exporter-prometheus, …) gets the latency too.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `http.server.request.duration` | histogram, seconds | `http.request.method`, `http.route`, `http.response.status_code` |
//! | `http.server.active_requests` | gauge | `http.request.method` |
//! | `vitals.latency.cancelled_requests` | counter | `http.request.method`, `http.route` |
//! | `vitals.latency.overflow_requests` | counter | — |
//!
//! Handles are resolved once per series and per method (at their first use), not per request:
//! install the recorder before the first request. Give the histogram [`DURATION_BUCKETS_SECONDS`] in the recorder
//! (metrics-exporter-prometheus renders a summary otherwise) and call [`describe`] for HELP
//! texts and the seconds unit.
//!
//! [`DURATION_BUCKETS_SECONDS`]: vitals_core::semconv::DURATION_BUCKETS_SECONDS

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};
use vitals_core::semconv::{
    HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_SERVER_REQUEST_DURATION,
};

use crate::method::{LABELS, MethodIndex};
use crate::series::SeriesKey;

/// Requests whose client went away before the response ended.
pub const CANCELLED_REQUESTS: &str = "vitals.latency.cancelled_requests";
/// Requests counted in the overflow series.
pub const OVERFLOW_REQUESTS: &str = "vitals.latency.overflow_requests";

/// Registers HELP texts and units with the installed recorder.
pub fn describe() {
    metrics::describe_histogram!(
        HTTP_SERVER_REQUEST_DURATION,
        Unit::Seconds,
        "Duration of HTTP server requests, to the last byte of the response body."
    );
    metrics::describe_gauge!(
        HTTP_SERVER_ACTIVE_REQUESTS,
        "HTTP server requests being served."
    );
    metrics::describe_counter!(
        CANCELLED_REQUESTS,
        "Requests whose client went away before the response ended."
    );
    metrics::describe_counter!(
        OVERFLOW_REQUESTS,
        "Requests counted in the overflow series because the series cap was reached."
    );
}

/// The handles of one series, resolved at its first record (a series made before the recorder
/// was installed, like the overflow series, still reaches it).
pub(crate) struct SeriesHandles {
    duration: OnceLock<Histogram>,
    /// Registered on the first cancellation: most series never see one.
    cancelled: OnceLock<Counter>,
}

impl SeriesHandles {
    pub(crate) fn new() -> Self {
        Self {
            duration: OnceLock::new(),
            cancelled: OnceLock::new(),
        }
    }

    pub(crate) fn record(&self, key: &SeriesKey, duration: Duration) {
        self.duration
            .get_or_init(|| {
                metrics::histogram!(
                    HTTP_SERVER_REQUEST_DURATION,
                    HTTP_REQUEST_METHOD => key.method,
                    HTTP_ROUTE => key.route.to_string(),
                    HTTP_RESPONSE_STATUS_CODE => key.status.to_string(),
                )
            })
            .record(duration.as_secs_f64());
    }

    pub(crate) fn record_cancelled(&self, key: &SeriesKey) {
        self.cancelled
            .get_or_init(|| {
                metrics::counter!(
                    CANCELLED_REQUESTS,
                    HTTP_REQUEST_METHOD => key.method,
                    HTTP_ROUTE => key.route.to_string(),
                )
            })
            .increment(1);
    }
}

pub(crate) fn record_overflow() {
    metrics::counter!(OVERFLOW_REQUESTS).increment(1);
}

/// The active-requests gauge per method, resolved on first use.
#[derive(Default)]
pub(crate) struct ActiveGauges {
    gauges: [OnceLock<Gauge>; LABELS.len()],
}

impl ActiveGauges {
    pub(crate) fn get(&self, method: MethodIndex) -> &Gauge {
        self.gauges[method.index()].get_or_init(
            || metrics::gauge!(HTTP_SERVER_ACTIVE_REQUESTS, HTTP_REQUEST_METHOD => method.label()),
        )
    }
}
