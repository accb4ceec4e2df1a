//! The trace-context layer per request over a bare service — without a subscriber, with the
//! log-correlation layer, and (feature `opentelemetry`) through tracing-opentelemetry with a
//! no-op tracer and with the SDK's batch processor — and parsing/formatting `traceparent`.
//!
//! `cargo bench -p vitals-trace-context --bench trace_context` (`--all-features` for the
//! OpenTelemetry variants).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::Full;
use tracing_subscriber::layer::SubscriberExt;
use vitals_bench::{Comparison, RoutedBy, routed_request};
use vitals_core::route::{RouteLabel, RouteLabeler};
use vitals_trace_context::{TraceContextLayer, TraceParent};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// `routed_request()` with a caller's `traceparent`.
fn traced_request() -> Request<Full<Bytes>> {
    let mut request = routed_request();
    request
        .headers_mut()
        .insert("traceparent", http::HeaderValue::from_static(PARENT));
    request
}

fn layer() -> TraceContextLayer {
    TraceContextLayer::new().with_route_labeler(RouteLabeler::from_extractor(
        |head: vitals_core::route::RequestHead<'_>| {
            head.extensions
                .get::<RoutedBy>()
                .map(|routed| RouteLabel::from_static(routed.0))
        },
    ))
}

fn per_request(c: &mut Criterion) {
    Comparison::with_request(c, "trace_context", traced_request)
        .layer("no_subscriber", layer())
        .finish();

    // What a service with logs has: the registry creates the request span.
    let logs = tracing_subscriber::registry().with(TraceIdsLayer);
    tracing::subscriber::with_default(logs, || {
        Comparison::with_request(c, "trace_context_registry", traced_request)
            .layer("with_log_correlation", layer())
            .finish();
    });

    #[cfg(feature = "opentelemetry")]
    opentelemetry_variants(c);
}

#[cfg(feature = "logs")]
use vitals_trace_context::logs::TraceIdsLayer;

/// Without the `logs` feature, the registry alone.
#[cfg(not(feature = "logs"))]
#[derive(Clone, Copy)]
struct TraceIdsLayer;
#[cfg(not(feature = "logs"))]
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TraceIdsLayer {}

#[cfg(feature = "opentelemetry")]
fn opentelemetry_variants(c: &mut Criterion) {
    use opentelemetry::trace::TracerProvider as _;

    let noop = tracing_subscriber::registry().with(
        tracing_opentelemetry::layer().with_tracer(opentelemetry::trace::noop::NoopTracer::new()),
    );
    tracing::subscriber::with_default(noop, || {
        Comparison::with_request(c, "trace_context_otel_noop", traced_request)
            .layer("bridge_noop_tracer", layer())
            .finish();
    });

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    let sdk = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")));
    tracing::subscriber::with_default(sdk, || {
        Comparison::with_request(c, "trace_context_otel_sdk", traced_request)
            .layer("bridge_sdk_batch", layer())
            .finish();
    });
    let _ = provider.shutdown();
}

/// An exporter that drops every batch: the SDK's cost without any I/O.
#[cfg(feature = "opentelemetry")]
#[derive(Debug)]
struct Discard;

#[cfg(feature = "opentelemetry")]
impl opentelemetry_sdk::trace::SpanExporter for Discard {
    async fn export(
        &self,
        _: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("traceparent");
    group.bench_function("parse", |b| {
        b.iter(|| TraceParent::parse(black_box(PARENT.as_bytes())));
    });
    let parent = TraceParent::parse(PARENT.as_bytes());
    group.bench_function("format", |b| {
        b.iter(|| black_box(parent).map(|p| p.to_string()));
    });
    group.finish();
}

criterion_group!(benches, per_request, parsing);
criterion_main!(benches);
