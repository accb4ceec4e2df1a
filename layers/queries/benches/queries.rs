//! Per-request overhead of `QueryTrackingLayer`, and per-query cost of recording.
//!
//! `cargo bench -p vitals-queries --bench queries`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tracing_subscriber::layer::SubscriberExt;
use vitals_bench::Comparison;
use vitals_core::route::RouteLabel;
use vitals_queries::fingerprint::fingerprint;
use vitals_queries::pool::{PoolSample, PoolStats, PoolVitals};
use vitals_queries::{Query, QueryLedger, QueryTrackingLayer, is_slow};

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
    // The ledger a tracked request gets: every statement also passes the slow-statement check
    // (and, with the `metrics` feature, the statement-time histogram). The difference from
    // `record_200_bytes` is the watch's cost per statement.
    group.bench_function("record_200_bytes_watched", |b| {
        let part = QueryTrackingLayer::new().part();
        let request = http::Request::new(());
        let in_flight = part.start(&request, RouteLabel::from_static("/orders"), None);
        let ledger = in_flight.ledger().clone();
        b.iter(|| ledger.record(Query::new(black_box(STATEMENT), Duration::from_micros(50))));
    });
    group.bench_function("slow_check", |b| {
        let threshold = Some(Duration::from_millis(100));
        b.iter(|| is_slow(black_box(Duration::from_micros(50)), black_box(threshold)));
    });
    group.finish();
}

/// A pool that answers at once: what tracking an acquire costs (per acquire, not per request;
/// the sampler runs on its own timer).
struct Idle;

impl PoolStats for Idle {
    fn sample(&self) -> PoolSample {
        PoolSample::default()
    }
}

fn per_acquire(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let vitals = runtime
        .block_on(async { PoolVitals::new("bench", Idle).spawn() })
        .expect("the sampler");
    let mut group = c.benchmark_group("queries_pool");
    group.bench_function("acquire_ready_untracked", |b| {
        b.iter(|| runtime.block_on(std::future::ready(Ok::<_, ()>(black_box(1)))));
    });
    group.bench_function("acquire_ready_tracked", |b| {
        b.iter(|| {
            runtime
                .block_on(vitals.track(std::future::ready(Ok::<_, ()>(black_box(1))), |()| false))
        });
    });
    group.finish();
}

criterion_group!(benches, per_request, per_query, per_acquire);
criterion_main!(benches);
