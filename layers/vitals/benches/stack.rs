//! The whole Vitals stack per request over bare axum, in one run: with no subscriber, with the
//! logs a service runs (our JSON log layer at INFO through a registry with the query events and
//! trace ids), and (feature `otlp`) with the OpenTelemetry bridge and the SDK's batch processor.
//!
//! `cargo bench -p vitals --bench stack --all-features`; figures in docs/benchmarks.md.

use criterion::{Criterion, criterion_group, criterion_main};
#[cfg(feature = "telemetry")]
use tracing_subscriber::{Layer as _, layer::SubscriberExt};
use vitals::VitalsLayer;
use vitals_bench::{Comparison, RESPONSE_JSON};

/// The benchmark's app: one JSON route, like `vitals_bench::BareService`'s answer.
fn router() -> axum::Router {
    axum::Router::new().route(
        "/products/{id}",
        axum::routing::get(|| async {
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                RESPONSE_JSON,
            )
        }),
    )
}

/// Bare axum, then axum with the whole stack (defaults: every part on).
fn compare(c: &mut Criterion, group: &str) {
    let vitals = router().layer(VitalsLayer::new());
    Comparison::new(c, group)
        .service("bare_axum", &router())
        .service("vitals", &vitals)
        .finish();
}

/// What a service's `vitals::telemetry` installs, writing its JSON lines nowhere.
#[cfg(feature = "telemetry")]
fn json_logs() -> impl tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync {
    vitals::telemetry::JsonLogLayer::new(
        std::io::sink,
        tracing_subscriber::EnvFilter::new(vitals::telemetry::DEFAULT_FILTER),
    )
}

/// The stack with one part off at a time: what each part costs inside it.
fn each_part(c: &mut Criterion) {
    let without = |label: &str, build: fn(vitals::VitalsBuilder) -> vitals::VitalsBuilder| {
        let Ok(layer) = build(VitalsLayer::builder()).build() else {
            panic!("{label}: the stack builds");
        };
        (label.to_owned(), router().layer(layer))
    };
    let variants = [
        without(
            "without_trace_context",
            vitals::VitalsBuilder::without_trace_context,
        ),
        without("without_timing", vitals::VitalsBuilder::without_timing),
        without("without_latency", vitals::VitalsBuilder::without_latency),
        without(
            "without_limit",
            vitals::VitalsBuilder::without_concurrency_limit,
        ),
        without(
            "without_cache_headers",
            vitals::VitalsBuilder::without_cache_headers,
        ),
        without("without_queries", vitals::VitalsBuilder::without_queries),
        without("all_off", |b| {
            b.without_trace_context()
                .without_timing()
                .without_latency()
                .without_concurrency_limit()
                .without_cache_headers()
                .without_queries()
        }),
    ];
    let mut comparison = Comparison::new(c, "stack_parts")
        .service("bare_axum", &router())
        .service("vitals", &router().layer(VitalsLayer::new()));
    for (label, app) in &variants {
        comparison = comparison.service(label, app);
    }
    comparison.finish();
}

/// The idempotency part on a `POST` without a key: the check alone (the stack's own cost is
/// the same on both sides).
#[cfg(feature = "idempotency-stack")]
fn idempotency_check(c: &mut Criterion) {
    use vitals::idempotency::IdempotencyLayer;
    let post = || {
        http::Request::post("/products/42")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                br#"{"quantity":2}"#,
            )))
            .unwrap_or_default()
    };
    let app = || {
        axum::Router::new().route(
            "/products/{id}",
            axum::routing::post(|| async { RESPONSE_JSON }),
        )
    };
    let Ok(with_part) = VitalsLayer::builder()
        .with_idempotency(IdempotencyLayer::new())
        .build()
    else {
        panic!("the stack builds");
    };
    Comparison::with_request(c, "stack_idempotency_no_key", post)
        .service("vitals", &app().layer(VitalsLayer::new()))
        .service("vitals_idempotency", &app().layer(with_part))
        .finish();
}

/// The response-cache part: the stack with the handler answering, and the stack answering the
/// same `GET` from memory (a hit: no permit, no handler; the outer parts still time, count and
/// trace it).
#[cfg(feature = "response-cache-stack")]
fn response_cache_hit(c: &mut Criterion) {
    use std::time::Duration;
    use vitals::RouteSettings;
    use vitals::cache_headers::CachePolicy;
    use vitals::response_cache::CacheSettings;
    let Ok(cached) = VitalsLayer::builder()
        .with_route(
            "/products/{id}",
            RouteSettings::new()
                .with_cache_policy(CachePolicy::public(Duration::from_hours(1)))
                .with_response_cache(CacheSettings::new()),
        )
        .build()
    else {
        panic!("the stack builds");
    };
    Comparison::new(c, "stack_response_cache_hit")
        .service("vitals", &router().layer(VitalsLayer::new()))
        .service("vitals_response_cache_hit", &router().layer(cached))
        .finish();
}

fn per_request(c: &mut Criterion) {
    compare(c, "stack_no_subscriber");
    #[cfg(feature = "idempotency-stack")]
    idempotency_check(c);
    #[cfg(feature = "response-cache-stack")]
    response_cache_hit(c);
    each_part(c);
    #[cfg(feature = "telemetry")]
    tracing::subscriber::with_default(tracing_subscriber::registry().with(json_logs()), || {
        compare(c, "stack_json_logs");
    });
    #[cfg(feature = "otlp")]
    otel(c);
}

#[cfg(feature = "otlp")]
fn otel(c: &mut Criterion) {
    use opentelemetry::trace::TracerProvider as _;

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    // As `vitals::telemetry` installs it: the request spans built and exported by the trace
    // part itself (the last benchmark of the process: this stays on); spans of the handler's
    // through tracing-opentelemetry without busy/idle time, location and thread, behind an INFO
    // filter that leaves the request span out; the log layer keeping INFO spans for it.
    vitals::trace_context::export_request_spans(opentelemetry::global::BoxedTracer::new(Box::new(
        provider.tracer("bench"),
    )));
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("bench"))
                .with_tracked_inactivity(false)
                .with_location(false)
                .with_threads(false)
                .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
                    *metadata.level() <= tracing::Level::INFO
                        && !(metadata.is_span()
                            && metadata.target() == vitals::core::identity::REQUEST_SPAN_TARGET)
                })),
        )
        .with(
            vitals::telemetry::JsonLogLayer::new(
                std::io::sink,
                tracing_subscriber::EnvFilter::new(vitals::telemetry::DEFAULT_FILTER),
            )
            .with_span_export(),
        );
    tracing::subscriber::with_default(subscriber, || compare(c, "stack_json_logs_otel"));
    let _ = provider.shutdown();
}

/// An exporter that drops every batch: the SDK's cost without any I/O.
#[cfg(feature = "otlp")]
#[derive(Debug)]
struct Discard;

#[cfg(feature = "otlp")]
impl opentelemetry_sdk::trace::SpanExporter for Discard {
    async fn export(
        &self,
        _: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

criterion_group!(benches, per_request);
criterion_main!(benches);
