//! The rate limit's cost: the layer over a bare service, and the check alone — uncontended,
//! and with two threads spending one key's quota at once.
//!
//! `cargo bench -p vitals-rate-limit --bench rate_limit`

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use vitals_bench::Comparison;
use vitals_rate_limit::part::RateLimitPart;
use vitals_rate_limit::{PeerAddr, Quota, RateLimitLayer};

/// A quota no benchmark runs out of: every request is allowed and the headers rendered.
fn roomy() -> RateLimitLayer {
    RateLimitLayer::new(Quota::per_second(1_000_000_000).with_burst(u32::MAX))
}

fn request_from(peer: &str) -> Request<()> {
    let mut request = Request::get("/products/42").body(()).unwrap_or_default();
    if let Ok(address) = peer.parse::<IpAddr>() {
        request.extensions_mut().insert(PeerAddr(address));
    }
    request
}

fn overhead(c: &mut Criterion) {
    Comparison::new(c, "rate_limit")
        .layer("per_client_headers", roomy())
        .layer("per_client_no_headers", roomy().without_headers())
        .finish();
}

/// `threads` threads check the same key `iterations` times each; the time is per check.
fn contended(part: &RateLimitPart, threads: usize, iterations: u64) -> Duration {
    let request = request_from("192.0.2.1");
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..iterations {
                    black_box(part.check(&request, None));
                }
            });
        }
    });
    start.elapsed()
}

fn check(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit_check");
    let part = roomy().without_headers().part();
    let request = request_from("192.0.2.1");
    group.bench_function("uncontended", |b| {
        b.iter(|| black_box(part.check(black_box(&request), None)));
    });
    let with_headers = roomy().part();
    group.bench_function("uncontended_headers", |b| {
        b.iter(|| black_box(with_headers.check(black_box(&request), None)));
    });
    group.bench_function("two_threads_one_key", |b| {
        b.iter_custom(|iterations| contended(&part, 2, iterations));
    });
    group.finish();
}

/// One check against the Redis at `VITALS_TEST_REDIS_URL` (`scripts/redis start`), over
/// loopback: the script's round trip (feature `redis`; skipped without the variable).
#[cfg(feature = "redis")]
fn redis_round_trip(c: &mut Criterion) {
    use vitals_rate_limit::RedisStore;
    use vitals_rate_limit::part::Decision;

    let Ok(url) = std::env::var("VITALS_TEST_REDIS_URL") else {
        eprintln!("rate_limit_redis: skipped, VITALS_TEST_REDIS_URL is not set");
        return;
    };
    let Ok(store) = RedisStore::new(&url) else {
        eprintln!("rate_limit_redis: skipped, bad URL {url}");
        return;
    };
    let part = roomy()
        .with_redis(
            store
                .with_prefix("bench")
                .with_timeout(Duration::from_secs(1)),
        )
        .part();
    // The harness's runtime has no I/O driver; the Redis connection needs one.
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("rate_limit_redis: skipped, no tokio runtime");
        return;
    };
    let request = request_from("192.0.2.1");
    c.benchmark_group("rate_limit_redis")
        .bench_function("check_round_trip", |b| {
            b.iter(|| {
                runtime.block_on(async {
                    match part.check(&request, None) {
                        Decision::Pending(checking) => black_box(checking.await),
                        decided => black_box(decided),
                    }
                })
            });
        });
}

#[cfg(not(feature = "redis"))]
fn redis_round_trip(_: &mut Criterion) {}

criterion_group!(benches, overhead, check, redis_round_trip);
criterion_main!(benches);
