//! Per-request overhead of `RequestTimingLayer` over a bare service.
//!
//! `cargo bench -p vitals-timing --bench timing`

use criterion::{Criterion, criterion_group, criterion_main};
use vitals_bench::{Comparison, routed_request};
use vitals_timing::{RequestTimingLayer, ServerTimingMode};

fn overhead(c: &mut Criterion) {
    Comparison::new(c, "timing")
        .layer("timing_default", RequestTimingLayer::new())
        // Without the blocking check, polls are not split by the kernel's counters: the
        // difference to `timing_default` is what splitting costs per request.
        .layer(
            "timing_blocking_off",
            RequestTimingLayer::new().with_blocking_threshold(None),
        )
        .layer(
            "timing_poll_off",
            RequestTimingLayer::new().without_poll_timing(),
        )
        .layer(
            "timing_poll_off_no_header",
            RequestTimingLayer::new()
                .without_poll_timing()
                .with_server_timing(ServerTimingMode::Off),
        )
        .layer(
            "timing_no_header",
            RequestTimingLayer::new().with_server_timing(ServerTimingMode::Off),
        )
        .finish();

    // As requests arrive from a router: the extension map exists already.
    Comparison::with_request(c, "timing_routed", routed_request)
        .layer("timing_default", RequestTimingLayer::new())
        .layer(
            "timing_poll_off_no_header",
            RequestTimingLayer::new()
                .without_poll_timing()
                .with_server_timing(ServerTimingMode::Off),
        )
        .finish();

    // The same, in its real setting: an axum router with one route template, bare and with the
    // layer added by `Router::layer` (so `MatchedPath` is the route label).
    let router = || {
        axum::Router::new().route(
            "/products/{id}",
            axum::routing::get(|| async { vitals_bench::RESPONSE_JSON }),
        )
    };
    Comparison::new(c, "timing_axum")
        .service("axum_bare", &router())
        // What any layer added with `Router::layer` costs in axum (a boxed clone and future
        // per request), whatever it does.
        .service(
            "axum_identity_layer",
            &router().layer(tower_layer::layer_fn(|inner| inner)),
        )
        .service(
            "axum_timing_default",
            &router().layer(RequestTimingLayer::new()),
        )
        .service(
            "axum_timing_poll_off_no_header",
            &router().layer(
                RequestTimingLayer::new()
                    .without_poll_timing()
                    .with_server_timing(ServerTimingMode::Off),
            ),
        )
        .finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
