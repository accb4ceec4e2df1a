//! Request spans exported over OTLP/gRPC (opentelemetry-otlp's tonic exporter) arrive at the
//! receiver's gRPC trace service with the caller's trace id and parent.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;
use vitals_integration_tests::otlp::OtlpReceiver;
use vitals_trace_context::TraceContextLayer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_grpc_receiver() {
    let receiver = OtlpReceiver::start().await;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.grpc_endpoint())
        .build()
        .expect("a gRPC exporter");
    // The tonic exporter needs the async runtime: a batch processor that runs on it.
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("grpc-test")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber here");

    let app = Router::new()
        .route("/items/{id}", get(|| async { "an item" }))
        .layer(TraceContextLayer::new());
    let request = http::Request::get("/items/9")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())
        .expect("a request");
    let response = app.oneshot(request).await.expect("a response");
    axum::body::to_bytes(response.into_body(), 1024)
        .await
        .expect("the body");
    tokio::task::spawn_blocking(move || {
        provider.force_flush().expect("the export");
        provider.shutdown().expect("a clean shutdown");
    })
    .await
    .expect("the flush");

    let spans: Vec<Span> = receiver.spans();
    let span = spans
        .iter()
        .find(|s| s.name == "GET /items/{id}")
        .unwrap_or_else(|| panic!("no request span in {spans:#?}"));
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(
        span.trace_id,
        [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36
        ]
    );
    assert_eq!(
        span.parent_span_id,
        [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
}
