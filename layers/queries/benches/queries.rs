//! Per-request overhead of `QueryTrackingLayer`, and per-query cost of recording.
//!
//! `cargo bench -p vitals-queries --bench queries`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tracing_subscriber::layer::SubscriberExt;
use vitals_bench::Comparison;
use vitals_queries::fingerprint::fingerprint;
use vitals_queries::{Query, QueryLedger, QueryTrackingLayer};

/// A typical 200-byte statement.
const STATEMENT: &str = "SELECT o.id, o.product_id, o.quantity, o.total_cents, o.placed_at, \
     c.id AS customer_id, c.name AS customer_name FROM orders o JOIN customers c \
     ON c.id = o.customer_id WHERE o.id = $1 ORDER BY o.id";

fn per_request(c: &mut Criterion) {
    Comparison::new(c, "queries")
        .layer("queries_no_subscriber", QueryTrackingLayer::new())
        .layer(
            "queries_no_header",
            QueryTrackingLayer::new().without_server_timing(),
        )
        .finish();

    // With the query event layer installed, each request also opens the span that carries its
    // ledger to other threads (sqlx-sqlite's worker).
    let subscriber = tracing_subscriber::registry().with(vitals_queries::query_events());
    tracing::subscriber::with_default(subscriber, || {
        Comparison::new(c, "queries_with_subscriber")
            .layer("queries_default", QueryTrackingLayer::new())
            .finish();
    });
}

fn per_query(c: &mut Criterion) {
    let mut group = c.benchmark_group("queries_per_query");
    group.bench_function("fingerprint_200_bytes", |b| {
        b.iter(|| fingerprint(black_box(STATEMENT)));
    });
    group.bench_function("record_200_bytes", |b| {
        let ledger = QueryLedger::new();
        b.iter(|| ledger.record(Query::new(black_box(STATEMENT), Duration::from_micros(50))));
    });
    group.finish();
}

criterion_group!(benches, per_request, per_query);
criterion_main!(benches);
