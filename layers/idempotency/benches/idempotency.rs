//! The idempotency layer's cost: a protected method without a key (the check alone), and a
//! first run with a new key (the body read and fingerprinted, the key claimed in the memory
//! store, the response recorded and stored).
//!
//! `cargo bench -p vitals-idempotency --bench idempotency`

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::Full;
use vitals_bench::{Comparison, RequestBody};
use vitals_idempotency::IdempotencyLayer;

const ORDER: &str = r#"{"customer_id":3,"product_id":5,"quantity":2}"#;

fn without_key() -> Request<RequestBody> {
    Request::post("/orders")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(ORDER.as_bytes())))
        .unwrap_or_default()
}

/// A new key each time: every request is a first run.
fn with_new_key() -> Request<RequestBody> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let key = format!("\"order-{}\"", NEXT.fetch_add(1, Ordering::Relaxed));
    Request::post("/orders")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from_static(ORDER.as_bytes())))
        .unwrap_or_default()
}

/// The check a request without a key meets (in the layer and in `VitalsLayer`): whether the
/// part may apply to its method and headers.
fn check(c: &mut Criterion) {
    let part = IdempotencyLayer::new().part();
    let request = without_key();
    c.bench_function("idempotency_check/no_key", |b| {
        b.iter(|| part.may_apply(black_box(request.method()), black_box(request.headers())));
    });
}

fn overhead(c: &mut Criterion) {
    Comparison::with_request(c, "idempotency_no_key", without_key)
        .layer("no_key", IdempotencyLayer::new())
        .finish();
    Comparison::with_request(c, "idempotency_first_run", with_new_key)
        .layer("first_run", IdempotencyLayer::new())
        .finish();
}

criterion_group!(benches, check, overhead);
criterion_main!(benches);
