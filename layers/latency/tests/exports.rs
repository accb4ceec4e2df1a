//! Each export: the Prometheus text endpoint (checked by promtool), the JSON snapshot, the
//! `metrics` facade into metrics-exporter-prometheus, and an OpenTelemetry meter.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::get;
use http::{Method, StatusCode};
use tower::ServiceExt;
use vitals_core::semconv::DURATION_BUCKETS_SECONDS;
use vitals_latency::{LatencyLayer, LatencyRegistry};

/// How long `/pause` takes at least: past the 0.01 s boundary in seconds, past the largest
/// finite one (10) if it were recorded in milliseconds.
const PAUSE: Duration = Duration::from_millis(20);

fn shop_like(registry: &LatencyRegistry) -> Router {
    Router::new()
        .route("/products/{id}", get(|| async { "a product" }))
        .route(
            "/pause",
            get(|| async {
                tokio::time::sleep(PAUSE).await;
                "paused"
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .layer(LatencyLayer::new(registry.clone()))
        .route_service("/metrics", registry.prometheus_service())
        .route_service("/_vitals/latency", registry.json_service())
}

async fn call(app: &Router, path: &str) -> (StatusCode, String, Option<String>) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        String::from_utf8(body.to_vec()).unwrap(),
        content_type,
    )
}

/// The `_bucket` lines of the duration histogram's series with `labels`, as `(le, count)`, in
/// order.
fn buckets(text: &str, labels: &str) -> Vec<(String, u64)> {
    let prefix = format!("http_server_request_duration_seconds_bucket{{{labels},le=\"");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            let (le, count) = rest.split_once("\"} ").unwrap();
            (le.to_owned(), count.parse().unwrap())
        })
        .collect()
}

/// The series' buckets are the semconv boundaries and `+Inf`, cumulative (a count never
/// decreases as `le` grows), `+Inf` counting all `requests` — whatever each one took.
fn assert_cumulative_buckets(text: &str, labels: &str, requests: u64) -> Vec<(String, u64)> {
    let buckets = buckets(text, labels);
    let boundaries: Vec<f64> = buckets
        .iter()
        .filter(|(le, _)| le != "+Inf")
        .map(|(le, _)| le.parse().unwrap())
        .collect();
    assert_eq!(boundaries, DURATION_BUCKETS_SECONDS, "{buckets:?}");
    assert_eq!(
        buckets.last(),
        Some(&("+Inf".to_owned(), requests)),
        "{buckets:?}"
    );
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "not cumulative: {buckets:?}"
    );
    buckets
}

/// The count in the bucket `le`.
fn bucket(buckets: &[(String, u64)], le: &str) -> u64 {
    buckets
        .iter()
        .find(|(bound, _)| bound == le)
        .unwrap_or_else(|| panic!("no le={le:?} in {buckets:?}"))
        .1
}

/// Runs `promtool check metrics` on `text`. Without promtool the check is skipped, unless
/// `VITALS_REQUIRE_PROMTOOL` is set (scripts/ci sets it), which makes a missing promtool fail.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var_os("VITALS_REQUIRE_PROMTOOL").is_none(),
                "promtool is required: {error}"
            );
            eprintln!("skipped: promtool not found ({error})");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_prometheus_endpoint_renders_histograms_promtool_accepts() {
    let registry = LatencyRegistry::new();
    let app = shop_like(&registry);
    for path in [
        "/products/1",
        "/products/2",
        "/products/3",
        "/fail",
        "/nope",
    ] {
        call(&app, path).await;
    }
    registry.record_cancelled("/products/{id}", &Method::GET, Some(StatusCode::OK));
    let (status, text, content_type) = call(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let labels =
        r#"http_request_method="GET",http_route="/products/{id}",http_response_status_code="200""#;
    for line in [
        "# TYPE http_server_request_duration_seconds histogram".to_owned(),
        format!(r#"http_server_request_duration_seconds_bucket{{{labels},le="+Inf"}} 3"#),
        format!("http_server_request_duration_seconds_count{{{labels}}} 3"),
        r#"vitals_latency_cancelled_requests_total{http_request_method="GET",http_route="/products/{id}"} 1"#.to_owned(),
        "vitals_latency_series 3".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    // One bucket line per boundary and +Inf, cumulative.
    assert_cumulative_buckets(&text, labels, 3);
    assert!(text.contains(r#"http_route="unmatched",http_response_status_code="404""#));
    promtool_check(&text);
}

#[tokio::test]
async fn the_json_endpoint_has_every_field_and_rejects_bad_queries() {
    let registry = LatencyRegistry::new();
    let app = shop_like(&registry);
    for _ in 0..4 {
        call(&app, "/products/7").await;
    }
    call(&app, "/fail").await;
    let (status, body, content_type) = call(&app, "/_vitals/latency").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["window"], "1m");
    let series = json["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    let products = series
        .iter()
        .find(|s| s["route"] == "/products/{id}")
        .unwrap();
    for field in [
        "method",
        "route",
        "status",
        "count",
        "rate_per_s",
        "error_rate",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
    ] {
        assert!(
            products.get(field).is_some(),
            "{field} missing in {products}"
        );
    }
    assert_eq!(products["count"], 4);
    assert_eq!(products["status"], 200);

    let (_, body, _) = call(&app, "/_vitals/latency?window=5m&group=route").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["window"], "5m");
    let fail = json["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["route"] == "/fail")
        .unwrap();
    assert_eq!(fail["error_rate"], 1.0);
    assert!(fail["status"].is_null());

    let (status, body, _) = call(&app, "/_vitals/latency?window=1h").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("\"error\""));
}

#[test]
fn the_metrics_facade_feeds_a_prometheus_recorder_with_semconv_histograms() {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

    let recorder = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets_for_metric(
            Matcher::Full(vitals_core::semconv::HTTP_SERVER_REQUEST_DURATION.to_owned()),
            &DURATION_BUCKETS_SECONDS,
        )
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    let registry = LatencyRegistry::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        vitals_latency::metrics::describe();
        let app = shop_like(&registry);
        runtime.block_on(async {
            for path in ["/products/1", "/products/2", "/fail", "/pause"] {
                call(&app, path).await;
            }
            // A request dropped mid-flight must bring the active gauge back down too.
            let hang = Router::new()
                .route(
                    "/hang",
                    get(|| async {
                        tokio::time::sleep(Duration::from_mins(1)).await;
                        "late"
                    }),
                )
                .layer(LatencyLayer::new(registry.clone()));
            let call = hang.oneshot(Request::get("/hang").body(Body::empty()).unwrap());
            assert!(
                tokio::time::timeout(Duration::from_millis(10), call)
                    .await
                    .is_err()
            );
        });
    });
    let text = handle.render();
    let labels =
        r#"http_request_method="GET",http_route="/products/{id}",http_response_status_code="200""#;
    for line in [
        "# TYPE http_server_request_duration_seconds histogram".to_owned(),
        format!("http_server_request_duration_seconds_count{{{labels}}} 2"),
        r#"http_server_active_requests{http_request_method="GET"} 0"#.to_owned(),
        r#"vitals_latency_cancelled_requests_total{http_request_method="GET",http_route="/hang"} 1"#.to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("/products/1"), "a series per id:\n{text}");
    // The recorder got the semconv buckets and every request, however long each took.
    assert_cumulative_buckets(&text, labels, 2);
    // Seconds: the pause of at least 20 ms is past le=0.01, and (unless this machine stalled
    // for 10 s) within le=10, where 20 milliseconds would not be.
    let pause = assert_cumulative_buckets(
        &text,
        r#"http_request_method="GET",http_route="/pause",http_response_status_code="200""#,
        1,
    );
    assert_eq!(bucket(&pause, "0.01"), 0, "{pause:?}");
    assert_eq!(bucket(&pause, "10"), 1, "{pause:?}");
    promtool_check(&text);
}

#[test]
fn an_opentelemetry_meter_gets_the_semconv_instruments_in_seconds() {
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let registry = LatencyRegistry::builder()
        .with_meter(provider.meter("vitals-latency-test"))
        .build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = shop_like(&registry);
    runtime.block_on(async {
        for path in ["/products/1", "/products/2", "/fail", "/pause"] {
            call(&app, path).await;
        }
    });
    provider.force_flush().unwrap();
    let finished = exporter.get_finished_metrics().unwrap();
    let metrics: Vec<_> = finished
        .iter()
        .flat_map(opentelemetry_sdk::metrics::data::ResourceMetrics::scope_metrics)
        .flat_map(opentelemetry_sdk::metrics::data::ScopeMetrics::metrics)
        .collect();
    let duration = metrics
        .iter()
        .find(|m| m.name() == "http.server.request.duration")
        .expect("the duration histogram");
    assert_eq!(duration.unit(), "s");
    let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = duration.data() else {
        panic!("not an f64 histogram: {:?}", duration.data());
    };
    let points: Vec<_> = histogram.data_points().collect();
    assert_eq!(points.len(), 3);
    let route = |route: &str| {
        *points
            .iter()
            .find(|p| {
                p.attributes()
                    .any(|kv| kv.key.as_str() == "http.route" && kv.value.as_str() == route)
            })
            .unwrap()
    };
    let products = route("/products/{id}");
    assert_eq!(products.count(), 2);
    assert_eq!(products.bucket_counts().sum::<u64>(), 2);
    assert_eq!(
        products.bounds().collect::<Vec<_>>(),
        DURATION_BUCKETS_SECONDS.to_vec()
    );
    // Seconds, not milliseconds: the pause of at least 20 ms is 0.02 or more, and (unless
    // this machine stalled for 10 s) below 10, where 20 milliseconds would not be.
    let pause = route("/pause");
    assert_eq!(pause.count(), 1);
    assert!(
        (PAUSE.as_secs_f64()..10.0).contains(&pause.sum()),
        "{}",
        pause.sum()
    );
    let keys: Vec<_> = products
        .attributes()
        .map(|kv| kv.key.as_str().to_owned())
        .collect();
    for key in [
        "http.request.method",
        "http.route",
        "http.response.status_code",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing: {keys:?}");
    }
    assert!(
        metrics
            .iter()
            .any(|m| m.name() == "http.server.active_requests")
    );
    provider.shutdown().unwrap();
}
