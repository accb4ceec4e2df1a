//! vitals::telemetry: the Prometheus recorder gets every layer's families; a second install is
//! an error, not a panic. (Own test binary: telemetry is process-wide.)
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt;
use vitals::VitalsLayer;
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
        r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/items/{id}",http_response_status_code="200",le="0.005"} 3"#,
        r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/items/{id}",http_response_status_code="200"} 3"#,
        r#"vitals_concurrency_admitted_total{http_route="/items/{id}"} 3"#,
        r#"vitals_queries_per_request_count{http_route="/items/{id}"} 3"#,
        "# HELP vitals_concurrency_admitted_total",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(!telemetry.exports_traces());
    assert!(vitals::telemetry::prometheus().is_some());
}
