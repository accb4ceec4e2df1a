//! The cache-headers layer per request over a bare service, ETags on 1 KiB and 64 KiB bodies,
//! the 304 answer, and the hash itself (XXH3 against BLAKE3).
//!
//! `cargo bench -p vitals-cache-headers --bench cache_headers`

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;
use vitals_bench::{Comparison, request};
use vitals_cache_headers::{CacheHeadersLayer, CachePolicy, EntityTag};

/// A service answering a fixed body of some size.
#[derive(Clone)]
struct Fixed(Bytes);

impl<B> Service<Request<B>> for Fixed {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        ready(Ok(Response::new(Full::new(self.0.clone()))))
    }
}

fn body(len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| u8::try_from(i % 251).unwrap_or(0))
            .collect::<Vec<u8>>(),
    )
}

fn public() -> CachePolicy {
    CachePolicy::public(Duration::from_mins(1))
}

/// `request()` with the `If-None-Match` of the bare JSON response.
fn conditional_request() -> Request<Full<Bytes>> {
    static TAG: OnceLock<String> = OnceLock::new();
    let tag = TAG.get_or_init(|| {
        EntityTag::for_body(vitals_bench::RESPONSE_JSON.as_bytes(), None).to_string()
    });
    let mut request = request();
    if let Ok(value) = tag.parse() {
        request.headers_mut().insert(header::IF_NONE_MATCH, value);
    }
    request
}

fn per_request(c: &mut Criterion) {
    Comparison::new(c, "cache_headers")
        .layer(
            "no_store_policy",
            CacheHeadersLayer::new().with_policy(CachePolicy::no_store()),
        )
        .layer(
            "public_policy_no_etag",
            CacheHeadersLayer::new()
                .with_policy(public())
                .with_etag_limit(0),
        )
        .layer(
            "public_policy_etag_51_bytes",
            CacheHeadersLayer::new().with_policy(public()),
        )
        .finish();

    Comparison::with_request(c, "cache_headers_304", conditional_request)
        .layer(
            "not_modified",
            CacheHeadersLayer::new().with_policy(public()),
        )
        .finish();

    for (name, len) in [("1_kib", 1 << 10), ("64_kib", 64 << 10)] {
        let fixed = Fixed(body(len));
        let layered = CacheHeadersLayer::new()
            .with_policy(public())
            .layer(fixed.clone());
        Comparison::new(c, &format!("cache_headers_etag_{name}"))
            .service("fixed_body", &fixed)
            .service("fixed_body_etag", &layered)
            .finish();
    }
}

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_headers_hash");
    let data = body(64 << 10);
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("xxh3_128_64_kib", |b| {
        b.iter(|| xxhash_rust::xxh3::xxh3_128(black_box(&data)));
    });
    group.bench_function("blake3_64_kib", |b| {
        b.iter(|| blake3::hash(black_box(&data)));
    });
    group.bench_function("entity_tag_for_body_64_kib", |b| {
        b.iter(|| EntityTag::for_body(black_box(&data), None));
    });
    group.finish();
}

criterion_group!(benches, per_request, hashing);
criterion_main!(benches);
