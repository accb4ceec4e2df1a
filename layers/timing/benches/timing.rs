//! Per-request overhead of `RequestTimingLayer` over a bare service.
//!
//! `cargo bench -p vitals-timing --bench timing`

use criterion::{Criterion, criterion_group, criterion_main};
use vitals_bench::Comparison;
use vitals_timing::{RequestTimingLayer, ServerTimingMode};

fn overhead(c: &mut Criterion) {
    Comparison::new(c, "timing")
        .layer("timing_default", RequestTimingLayer::new())
        .layer(
            "timing_poll_off",
            RequestTimingLayer::new().with_poll_timing(false),
        )
        .layer(
            "timing_poll_off_no_header",
            RequestTimingLayer::new()
                .with_poll_timing(false)
                .with_server_timing(ServerTimingMode::Off),
        )
        .layer(
            "timing_no_header",
            RequestTimingLayer::new().with_server_timing(ServerTimingMode::Off),
        )
        .finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
