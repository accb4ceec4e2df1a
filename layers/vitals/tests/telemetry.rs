//! vitals::telemetry: the Prometheus recorder gets every layer's families; a second install is
//! an error, not a panic. (Own test binary: telemetry is process-wide.)
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt;
use vitals::VitalsLayer;
use vitals::core::semconv::DURATION_BUCKETS_SECONDS;
use vitals::telemetry::TelemetryError;

#[tokio::test]
async fn installs_once_and_the_recorder_gets_the_layers_metrics() {
    // No log subscriber here: the test harness owns stdout.
    let telemetry = vitals::telemetry::builder()
        .without_logs()
        .without_otlp_from_env()
        .install()
        .unwrap();
    let again = vitals::telemetry::builder()
        .without_logs()
        .without_otlp_from_env()
        .install();
    assert_eq!(again.unwrap_err(), TelemetryError::AlreadyInstalled);
    assert_eq!(
        vitals::telemetry::init().unwrap_err(),
        TelemetryError::AlreadyInstalled
    );

    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .layer(VitalsLayer::new());
    for id in 0..3 {
        let request = Request::get(format!("/items/{id}"))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
    }
    let text = telemetry.prometheus().unwrap().render();
    for line in [
        r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/items/{id}",http_response_status_code="200",le="+Inf"} 3"#,
        r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/items/{id}",http_response_status_code="200"} 3"#,
        r#"vitals_concurrency_admitted_total{http_route="/items/{id}"} 3"#,
        r#"vitals_queries_per_request_count{http_route="/items/{id}"} 3"#,
        "# HELP vitals_concurrency_admitted_total",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    // The recorder was given the semconv buckets (a histogram, not a summary), and the counts
    // are cumulative: where each request falls depends on how fast this machine is, not that.
    let buckets: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|line| {
            line.strip_prefix(
                r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/items/{id}",http_response_status_code="200",le=""#,
            )
        })
        .map(|rest| {
            let (le, count) = rest.split_once("\"} ").unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (le, count.parse().unwrap())
        })
        .collect();
    let boundaries: Vec<f64> = buckets.iter().map(|&(le, _)| le).collect();
    let expected: Vec<f64> = DURATION_BUCKETS_SECONDS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .collect();
    assert_eq!(boundaries, expected, "{buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "not cumulative: {buckets:?}"
    );
    assert!(!telemetry.exports_traces());
    assert!(vitals::telemetry::prometheus().is_some());
}
