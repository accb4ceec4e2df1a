//! Per-request overhead of the limit and timeout layers over a bare service, uncontended.
//!
//! `cargo bench -p vitals-concurrency --bench concurrency`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vitals_bench::Comparison;
use vitals_concurrency::{ConcurrencyLimitLayer, TimeoutLayer};

fn overhead(c: &mut Criterion) {
    Comparison::new(c, "concurrency")
        .layer("limit_uncontended", ConcurrencyLimitLayer::new(1_024))
        .layer("timeout", TimeoutLayer::new(Duration::from_secs(30)))
        .layer(
            "timeout_request_body_watch",
            TimeoutLayer::new(Duration::from_secs(30)).with_request_body_watch(),
        )
        .finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
