//! The cost of one record, and of the layer per request over a bare service.
//!
//! `cargo bench -p vitals-latency --bench latency`: the layer as most users build it (default
//! features); add `--all-features` for the exporters' variants (the plain variant then carries
//! the compiled-in active-requests bookkeeping too).

use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, StatusCode};
use vitals_bench::{Comparison, RoutedBy, routed_request};
use vitals_core::route::{RouteLabel, RouteLabeler};
use vitals_core::semconv::{DURATION_BUCKETS_SECONDS, HTTP_SERVER_REQUEST_DURATION};
use vitals_latency::{LatencyLayer, LatencyRegistry};

/// Durations that spread over many buckets, as real traffic does.
fn durations() -> Vec<Duration> {
    (0..1024u64)
        .map(|i| Duration::from_nanos(50_000 + i * i * 997))
        .collect()
}

fn record(c: &mut Criterion) {
    let durations = durations();
    let mut group = c.benchmark_group("latency_record");
    let registry = LatencyRegistry::new();
    let handle = registry.series("/products/{id}", &Method::GET, StatusCode::OK);
    let now = Instant::now();
    group.bench_function("handle_record_at", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            handle.record_at(black_box(durations[i]), now, false);
        });
    });
    group.bench_function("handle_record_at_2_threads", |b| {
        b.iter_custom(|iterations| {
            let barrier = Barrier::new(2);
            let elapsed = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            let start = Instant::now();
                            for i in 0..iterations {
                                let duration = durations[(i & 1023) as usize];
                                handle.record_at(black_box(duration), now, false);
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().unwrap_or_default())
                    .max()
                    .unwrap_or_default()
            });
            // Wall time for `iterations` records on each of two threads at once.
            elapsed
        });
    });
    group.bench_function("registry_record_with_lookup_and_clock", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            registry.record(
                black_box("/products/{id}"),
                &Method::GET,
                StatusCode::OK,
                black_box(durations[i]),
                false,
            );
        });
    });
    // Peers, in the same run.
    group.bench_function("hdrhistogram_behind_a_mutex", |b| {
        let histogram = Mutex::new(
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 2)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            let nanos = u64::try_from(durations[i].as_nanos()).unwrap_or(u64::MAX);
            if let Ok(mut histogram) = histogram.lock() {
                histogram.saturating_record(black_box(nanos));
            }
        });
    });
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(HTTP_SERVER_REQUEST_DURATION.to_owned()),
            &DURATION_BUCKETS_SECONDS,
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .build_recorder();
    metrics::with_local_recorder(&recorder, || {
        let histogram =
            metrics::histogram!(HTTP_SERVER_REQUEST_DURATION, "http.route" => "/products/{id}");
        group.bench_function("metrics_exporter_prometheus_handle", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 1023;
                histogram.record(black_box(durations[i]).as_secs_f64());
            });
        });
    });
    group.finish();
}

fn labeler() -> RouteLabeler {
    RouteLabeler::from_extractor(|head: vitals_core::route::RequestHead<'_>| {
        head.extensions
            .get::<RoutedBy>()
            .map(|routed| RouteLabel::from_static(routed.0))
    })
}

fn per_request(c: &mut Criterion) {
    Comparison::with_request(c, "latency", routed_request)
        .layer(
            "latency",
            LatencyLayer::new(LatencyRegistry::new()).with_route_labeler(labeler()),
        )
        .finish();

    #[cfg(feature = "metrics")]
    exporters(c);
}

#[cfg(feature = "metrics")]
fn exporters(c: &mut Criterion) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(HTTP_SERVER_REQUEST_DURATION.to_owned()),
            &DURATION_BUCKETS_SECONDS,
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .build_recorder();
    metrics::with_local_recorder(&recorder, || {
        Comparison::with_request(c, "latency_metrics", routed_request)
            .layer(
                "latency_with_metrics_facade",
                LatencyLayer::new(LatencyRegistry::new()).with_route_labeler(labeler()),
            )
            .finish();
    });

    #[cfg(feature = "opentelemetry")]
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(
            opentelemetry_sdk::metrics::PeriodicReader::builder(
                opentelemetry_sdk::metrics::InMemoryMetricExporter::default(),
            )
            .build(),
        )
        .build();
    #[cfg(feature = "opentelemetry")]
    {
        use opentelemetry::metrics::MeterProvider;
        let registry = LatencyRegistry::builder()
            .with_meter(provider.meter("bench"))
            .build();
        Comparison::with_request(c, "latency_opentelemetry", routed_request)
            .layer(
                "latency_with_opentelemetry_sdk",
                LatencyLayer::new(registry).with_route_labeler(labeler()),
            )
            .finish();
        let _ = provider.shutdown();
    }
}

criterion_group!(benches, record, per_request);
criterion_main!(benches);
