//! What the dashboard costs: per request, the findings counters the queries layer feeds (the
//! only per-request work when mounted); per call, `/api/summary` over 500 routes, and the
//! latency snapshot inside it.
//!
//! `cargo bench -p vitals-dashboard --bench dashboard`; figures in docs/benchmarks.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vitals_core::findings::Findings;

fn per_request(c: &mut Criterion) {
    let findings = Findings::default();
    let mut group = c.benchmark_group("dashboard");
    group.bench_function("count_queries_per_request", |b| {
        b.iter(|| findings.count_queries(black_box("/products/{id}"), black_box(1)));
    });
    group.finish();
}

fn summary_of_500_routes(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"));
    let latency = vitals_latency::LatencyRegistry::new();
    let findings = Findings::default();
    for route in 0..500 {
        let route = format!("/route/{route}");
        findings.count_queries(&route, 3);
        let handle = latency.series(&route, &http::Method::GET, http::StatusCode::OK);
        for ms in 1..50 {
            handle.record(std::time::Duration::from_millis(ms), false);
        }
    }
    let dashboard = runtime.block_on(async {
        vitals_dashboard::Dashboard::builder()
            .with_latency(latency)
            .with_findings(findings)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    });
    let app = dashboard.router();
    let mut group = c.benchmark_group("dashboard");
    group.bench_function("api_summary_500_routes", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let request = axum::http::Request::get("/_vitals/api/summary")
                    .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                        [127, 0, 0, 1],
                        1,
                    ))))
                    .body(axum::body::Body::empty())
                    .unwrap_or_else(|e| panic!("{e}"));
                let response = tower::ServiceExt::oneshot(app.clone(), request).await;
                black_box(response.ok())
            })
        });
    });
    group.finish();
}

criterion_group!(benches, per_request, summary_of_500_routes, snapshot_only);
criterion_main!(benches);

/// The latency registry's part of the summary: the one-minute snapshot of 500 routes.
fn snapshot_only(c: &mut Criterion) {
    let latency = vitals_latency::LatencyRegistry::new();
    for route in 0..500 {
        let route = format!("/route/{route}");
        let handle = latency.series(&route, &http::Method::GET, http::StatusCode::OK);
        for ms in 1..50 {
            handle.record(std::time::Duration::from_millis(ms), false);
        }
    }
    c.bench_function("dashboard/snapshot_500_routes", |b| {
        b.iter(|| black_box(latency.snapshot_by_route_only(vitals_latency::Window::OneMinute)));
    });
}
