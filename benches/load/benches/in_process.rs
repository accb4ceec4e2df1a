//! The three variants in-process, in one run: `oneshot` through the app, body read to its end,
//! each under the subscriber its variant installs (logs written nowhere). `GET /json/42`.
//!
//! `cargo bench --bench in_process` (in `benches/load`); figures in docs/benchmarks.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;
use vitals_load::Variant;

fn measure(c: &mut Criterion, runtime: &tokio::runtime::Runtime, label: &str, app: &Router) {
    let mut group = c.benchmark_group("in_process");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function(label, |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iterations {
                    let Ok(request) = Request::get("/json/42").body(Body::empty()) else {
                        panic!("a valid request");
                    };
                    let Ok(response) = app.clone().oneshot(request).await;
                    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await;
                    black_box(body.ok());
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

fn variants(c: &mut Criterion) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        panic!("a runtime");
    };
    let Ok((pool, _file)) = runtime.block_on(vitals_load::database()) else {
        panic!("the database");
    };
    // axum-prometheus spawns its upkeep task when its layer is built.
    let _entered = runtime.enter();
    let bare = vitals_load::app(Variant::Bare, pool.clone());
    let vitals = vitals_load::app(Variant::Vitals, pool.clone());
    let peer = vitals_load::app(Variant::Peer, pool);

    measure(c, &runtime, "bare", &bare);
    tracing::subscriber::with_default(vitals_load::vitals_subscriber(std::io::sink), || {
        measure(c, &runtime, "vitals", &vitals);
    });
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    tracing::subscriber::with_default(
        vitals_load::peer::subscriber(&provider, std::io::sink),
        || measure(c, &runtime, "peer", &peer),
    );
}

criterion_group!(benches, variants);
criterion_main!(benches);
