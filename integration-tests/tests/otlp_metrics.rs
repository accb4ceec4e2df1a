//! vitals-latency's OpenTelemetry instruments leave through the OTLP exporter (HTTP/protobuf)
//! and arrive, decoded by the protocol's own types, at a real receiver.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use opentelemetry::metrics::MeterProvider;
use opentelemetry_otlp::{MetricExporter, WithExportConfig};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use tower::ServiceExt;
use vitals_core::semconv::DURATION_BUCKETS_SECONDS;
use vitals_integration_tests::otlp::OtlpReceiver;
use vitals_latency::{LatencyLayer, LatencyRegistry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_durations_reach_an_otlp_receiver_in_seconds_with_semconv_buckets() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = format!("{}/v1/metrics", receiver.endpoint());
    // The blocking client runs on the reader's own thread; build it off the async runtime.
    let provider = tokio::task::spawn_blocking(move || {
        let exporter = MetricExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()
            .expect("an OTLP exporter");
        SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter).build())
            .build()
    })
    .await
    .expect("the provider");

    let registry = LatencyRegistry::builder()
        .with_meter(provider.meter("shop"))
        .build();
    let app = Router::new()
        .route("/products/{id}", get(|| async { "a product" }))
        .layer(LatencyLayer::new(registry));
    for path in ["/products/1", "/products/2", "/products/3"] {
        let request = http::Request::get(path)
            .body(Body::empty())
            .expect("a request");
        let response = app.clone().oneshot(request).await.expect("a response");
        axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("the body");
    }
    tokio::task::spawn_blocking(move || {
        provider.force_flush().expect("the export");
        provider.shutdown().expect("a clean shutdown");
    })
    .await
    .expect("the flush");

    let metrics = receiver.metric_list();
    let duration = metrics
        .iter()
        .find(|m| m.name == "http.server.request.duration")
        .unwrap_or_else(|| panic!("no duration histogram in {metrics:#?}"));
    assert_eq!(duration.unit, "s");
    let Some(Data::Histogram(histogram)) = &duration.data else {
        panic!("not a histogram: {duration:#?}");
    };
    let point = histogram
        .data_points
        .iter()
        .find(|p| {
            p.attributes.iter().any(|kv| {
                kv.key == "http.route"
                    && kv.value.as_ref().and_then(|v| v.value.as_ref())
                        == Some(&AnyValue::StringValue("/products/{id}".to_owned()))
            })
        })
        .unwrap_or_else(|| panic!("no /products/{{id}} point in {histogram:#?}"));
    assert_eq!(point.count, 3);
    assert_eq!(point.explicit_bounds, DURATION_BUCKETS_SECONDS.to_vec());
    assert!(
        point.sum.is_some_and(|s| s > 0.0 && s < 1.0),
        "seconds: {point:?}"
    );
    let keys: Vec<_> = point.attributes.iter().map(|kv| kv.key.as_str()).collect();
    for key in [
        "http.request.method",
        "http.route",
        "http.response.status_code",
    ] {
        assert!(keys.contains(&key), "{key} missing: {keys:?}");
    }
    assert!(
        metrics
            .iter()
            .any(|m| m.name == "http.server.active_requests")
    );
}
