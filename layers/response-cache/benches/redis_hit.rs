//! A hit from the fleet's store (Redis on loopback, one round trip) against a handler that
//! answers the same 1 KiB from one SQLite query: what the shared cache saves a service whose
//! handlers read a database.
//!
//! ```text
//! eval "$(scripts/redis start)"
//! cargo bench -p vitals-response-cache --features redis --bench redis_hit
//! ```
//!
//! Without `VITALS_TEST_REDIS_URL` the Redis benchmark is skipped (said on stderr).

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use sqlx::SqlitePool;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;
use vitals_response_cache::{RedisStore, ResponseCacheLayer};

/// Keys the benchmark cycles through: each is read again only after the memory's local TTL
/// (100 ms) has passed, so every hit is a Redis round trip.
const KEYS: usize = 5_000;

/// A handler that reads 1 KiB by id from SQLite (an in-memory database, one connection) and
/// answers it as cacheable for an hour.
#[derive(Clone)]
struct OneQuery(SqlitePool);

impl<B> Service<Request<B>> for OneQuery {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let pool = self.0.clone();
        let id: i64 = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or(0);
        Box::pin(async move {
            let body: Vec<u8> = sqlx::query_scalar("SELECT body FROM items WHERE id = ?")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap_or_default();
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("public, max-age=3600"),
            );
            Ok(response)
        })
    }
}

fn request(key: usize) -> Request<Full<Bytes>> {
    Request::get(format!("/items/{}", key % KEYS))
        .header(header::HOST, "bench.local")
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

async fn call<S, B>(service: S, key: usize) -> Bytes
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
{
    match service.oneshot(request(key)).await {
        Ok(response) => response
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default(),
        Err(never) => match never {},
    }
}

async fn database() -> SqlitePool {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap_or_else(|e| panic!("an in-memory SQLite: {e}"));
    sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("the table: {e}"));
    for id in 0..KEYS {
        sqlx::query("INSERT INTO items (id, body) VALUES (?, ?)")
            .bind(i64::try_from(id).unwrap_or(0))
            .bind(vec![b'x'; 1024])
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("a row: {e}"));
    }
    pool
}

fn redis_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"));
    let pool = runtime.block_on(database());
    let mut group = c.benchmark_group("response_cache_redis");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let handler = OneQuery(pool.clone());
    let mut next = 0_usize;
    group.bench_function("sqlite_query_1k", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iterations {
                    next += 1;
                    black_box(call(handler.clone(), next).await);
                }
                start.elapsed()
            })
        });
    });
    let Ok(url) = std::env::var("VITALS_TEST_REDIS_URL") else {
        eprintln!("response_cache_redis/redis_hit_1k: skipped, VITALS_TEST_REDIS_URL is not set");
        group.finish();
        return;
    };
    let store = RedisStore::new(&url)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_prefix(format!("bench:{}", std::process::id()))
        .with_local_ttl(Duration::from_millis(100));
    let cached = ResponseCacheLayer::new()
        .with_jitter(0.0)
        .with_redis(store)
        .layer(OneQuery(pool));
    // Every key filled once (stored in Redis in the background), then left to expire from
    // memory.
    runtime.block_on(async {
        for key in 0..KEYS {
            black_box(call(cached.clone(), key).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    group.bench_function("redis_hit_1k", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iterations {
                    next += 1;
                    black_box(call(cached.clone(), next).await);
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

criterion_group!(benches, redis_hit);
criterion_main!(benches);
