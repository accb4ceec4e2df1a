//! The Prometheus recorder every layer's `metrics` output goes to.

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::TelemetryError;

/// Buckets of the queries-per-request histogram: 1 is the ideal, tens mean trouble.
#[cfg(feature = "queries")]
const QUERY_COUNT_BUCKETS: [f64; 10] = [0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0];

/// Buckets of the rate limit's store round trips (Redis on a network: a fraction of a
/// millisecond to its timeout).
#[cfg(feature = "redis")]
const STORE_DURATION_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Recommended Prometheus naming (`_total` on counters), and histograms (which aggregate
/// across instances) rather than the exporter's default summaries.
pub(super) fn recorder() -> Result<PrometheusRecorder, TelemetryError> {
    let mut builder = PrometheusBuilder::new().with_recommended_naming(true);
    for (name, buckets) in histogram_buckets() {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .map_err(|e| TelemetryError::Recorder(e.to_string()))?;
    }
    Ok(builder.build_recorder())
}

/// The bucket boundaries of each histogram the enabled layers record.
#[allow(clippy::vec_init_then_push)] // Each push is behind a feature.
fn histogram_buckets() -> Vec<(&'static str, &'static [f64])> {
    #[allow(unused_mut)] // Each push is behind a feature.
    let mut buckets: Vec<(&'static str, &'static [f64])> = Vec::new();
    #[cfg(feature = "latency")]
    buckets.push((
        vitals_core::semconv::HTTP_SERVER_REQUEST_DURATION,
        &vitals_core::semconv::DURATION_BUCKETS_SECONDS,
    ));
    #[cfg(feature = "client")]
    buckets.push((
        vitals_core::semconv::HTTP_CLIENT_REQUEST_DURATION,
        &vitals_core::semconv::DURATION_BUCKETS_SECONDS,
    ));
    #[cfg(feature = "queries")]
    buckets.push((
        vitals_queries::metrics::QUERIES_PER_REQUEST,
        &QUERY_COUNT_BUCKETS,
    ));
    #[cfg(feature = "queries")]
    buckets.push((
        vitals_queries::metrics::STATEMENT_DURATION,
        &vitals_queries::metrics::STATEMENT_BUCKETS,
    ));
    #[cfg(feature = "queries")]
    buckets.push((
        vitals_queries::metrics::CONNECTION_WAIT_TIME,
        &vitals_queries::metrics::WAIT_BUCKETS,
    ));
    #[cfg(feature = "redis")]
    buckets.push((
        vitals_rate_limit::metrics::STORE_DURATION,
        &STORE_DURATION_BUCKETS,
    ));
    #[cfg(feature = "jobs")]
    buckets.push((
        vitals_jobs::metrics::WAIT_TIME,
        &vitals_jobs::metrics::DURATION_BUCKETS,
    ));
    #[cfg(feature = "jobs")]
    buckets.push((
        vitals_jobs::metrics::RUN_TIME,
        &vitals_jobs::metrics::DURATION_BUCKETS,
    ));
    #[cfg(feature = "response-cache")]
    buckets.push((
        vitals_response_cache::metrics::WAIT_DURATION,
        vitals_response_cache::metrics::WAIT_BUCKETS,
    ));
    // Defined whether or not Redis is on: a family never reported costs nothing.
    #[cfg(feature = "response-cache")]
    buckets.push((
        vitals_response_cache::metrics::BACKEND_DURATION,
        vitals_response_cache::metrics::WAIT_BUCKETS,
    ));
    buckets
}

/// Installs `recorder` as the global one and describes every family the layers report.
pub(super) fn install(recorder: PrometheusRecorder) -> Result<PrometheusHandle, TelemetryError> {
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| TelemetryError::Recorder(e.to_string()))?;
    let _ = super::PROMETHEUS.set(handle.clone());
    #[cfg(feature = "latency")]
    vitals_latency::metrics::describe();
    #[cfg(feature = "queries")]
    vitals_queries::metrics::describe();
    #[cfg(feature = "timing")]
    vitals_timing::metrics::describe();
    #[cfg(feature = "concurrency")]
    vitals_concurrency::metrics::describe();
    #[cfg(feature = "rate-limit")]
    vitals_rate_limit::metrics::describe();
    #[cfg(feature = "idempotency")]
    vitals_idempotency::metrics::describe();
    #[cfg(feature = "jobs")]
    vitals_jobs::metrics::describe();
    #[cfg(feature = "response-cache")]
    vitals_response_cache::metrics::describe();
    #[cfg(feature = "cache-headers")]
    vitals_cache_headers::metrics::describe();
    #[cfg(feature = "client")]
    vitals_client::metrics::describe();
    Ok(handle)
}
