//! The shop's Prometheus endpoint: one recorder for every layer's `metrics` output.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use vitals_core::semconv::{DURATION_BUCKETS_SECONDS, HTTP_SERVER_REQUEST_DURATION};

/// Buckets of the queries-per-request histogram: 1 is the ideal, tens mean trouble.
const QUERY_COUNT_BUCKETS: [f64; 10] = [0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0];

/// The process-wide Prometheus recorder, installed on first use. Several shops in one process
/// (tests) share it; if another recorder was installed first, `/metrics` says so.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(
            || match recorder().and_then(PrometheusBuilder::install_recorder) {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "no Prometheus recorder: another one is installed");
                    None
                }
            },
        )
        .clone()
}

/// Recommended Prometheus naming (`_total` on counters), and histograms (which aggregate
/// across instances) rather than the exporter's default summaries.
fn recorder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets_for_metric(
            Matcher::Full(vitals_queries::metrics::QUERIES_PER_REQUEST.to_owned()),
            &QUERY_COUNT_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(HTTP_SERVER_REQUEST_DURATION.to_owned()),
            &DURATION_BUCKETS_SECONDS,
        )
}

/// HELP text for every family the shop's layers report.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    use vitals_concurrency::metrics as concurrency;
    use vitals_queries::metrics as queries;

    describe_counter!(
        concurrency::ADMITTED,
        "Requests admitted by a concurrency limit."
    );
    describe_counter!(
        concurrency::REJECTED,
        "Requests refused by a concurrency limit (503)."
    );
    describe_counter!(concurrency::TIMED_OUT, "Requests answered by a timeout.");
    describe_gauge!(
        concurrency::IN_FLIGHT,
        "Requests holding a concurrency permit."
    );
    describe_gauge!(
        concurrency::QUEUED,
        "Requests waiting for a concurrency permit."
    );
    describe_gauge!(concurrency::LIMIT, "The concurrency limit in force.");
    describe_histogram!(
        queries::QUERIES_PER_REQUEST,
        "Database statements per request."
    );
    describe_counter!(queries::N_PLUS_ONE_FINDINGS, "N+1 query findings.");
    vitals_latency::metrics::describe();
    vitals_cache_headers::metrics::describe();
}
