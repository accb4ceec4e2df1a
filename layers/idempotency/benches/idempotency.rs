//! The idempotency layer's cost: a protected method without a key (the check alone), and a
//! first run with a new key (the body read and fingerprinted, the key claimed in the memory
//! store, the response recorded and stored).
//!
//! `cargo bench -p vitals-idempotency --bench idempotency`

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
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

fn overhead(c: &mut Criterion) {
    Comparison::with_request(c, "idempotency_no_key", without_key)
        .layer("no_key", IdempotencyLayer::new())
        .finish();
    Comparison::with_request(c, "idempotency_first_run", with_new_key)
        .layer("first_run", IdempotencyLayer::new())
        .finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
