//! Recording through an OpenTelemetry `Meter` (feature `opentelemetry`): the same instruments as
//! the semantic conventions name them, with the bucket boundaries set explicitly (the SDK's
//! defaults are for milliseconds, ours are seconds).

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};
use vitals_core::semconv::{
    HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_SERVER_REQUEST_DURATION,
};

use crate::method::{LABELS, MethodIndex};
use crate::series::SeriesKey;

/// The instruments of one registry.
pub(crate) struct Instruments {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
    /// The active counter's attributes per method, built once.
    methods: [[KeyValue; 1]; LABELS.len()],
}

impl Instruments {
    pub(crate) fn new(meter: &Meter, boundaries: &[f64]) -> Self {
        Self {
            duration: meter
                .f64_histogram(HTTP_SERVER_REQUEST_DURATION)
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(boundaries.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter(HTTP_SERVER_ACTIVE_REQUESTS)
                .with_unit("{request}")
                .with_description("Number of active HTTP server requests.")
                .build(),
            methods: LABELS.map(|label| [KeyValue::new(HTTP_REQUEST_METHOD, label)]),
        }
    }

    pub(crate) fn record(&self, duration: Duration, attributes: &[KeyValue]) {
        self.duration.record(duration.as_secs_f64(), attributes);
    }

    pub(crate) fn active(&self, method: MethodIndex, delta: i64) {
        self.active.add(delta, &self.methods[method.index()]);
    }
}

/// The attributes of a series, built once.
pub(crate) fn attributes(key: &SeriesKey) -> Box<[KeyValue]> {
    Box::new([
        KeyValue::new(HTTP_REQUEST_METHOD, key.method),
        KeyValue::new(HTTP_ROUTE, key.route.to_string()),
        KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(key.status)),
    ])
}
