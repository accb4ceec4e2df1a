//! A server for load runs under overload (`scripts/loadtest`): one route whose work needs one of
//! 16 slots (like a database pool) for 20 ms, guarded by Vitals' limit, by tower's
//! `GlobalConcurrencyLimit` + `LoadShed` behind axum's `HandleErrorLayer`, or by nothing.
//!
//! tower's plain `ConcurrencyLimitLayer` creates its semaphore in `Layer::layer`, and axum's
//! `route_layer` applies the layer when the route is built for a request: measured here, it
//! limited nothing (0 shed at 10× load). `GlobalConcurrencyLimitLayer` shares one semaphore and
//! is what a user must pick; Vitals' layer shares its limiter whichever way it is applied. `GET /stats` reports what the server saw:
//! admitted and shed counts and the latency of admitted requests, measured in the server.
//!
//! `cargo run --release -p vitals-concurrency --example overload_server -- vitals 127.0.0.1:8080`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::Semaphore;
use tower::{BoxError, ServiceBuilder};

const CAPACITY: usize = 16;
const SERVICE: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Stats {
    admitted_micros: Vec<u64>,
    shed: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "vitals".to_owned());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_owned());

    let slots = Arc::new(Semaphore::new(CAPACITY));
    let work = get(move || {
        let slots = Arc::clone(&slots);
        async move {
            let Ok(_slot) = slots.acquire().await else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            tokio::time::sleep(SERVICE).await;
            "done".into_response()
        }
    });
    let route = match variant.as_str() {
        "vitals" => work.route_layer(
            vitals_concurrency::ConcurrencyLimitLayer::new(CAPACITY)
                .with_max_queued(CAPACITY)
                .with_max_wait(Duration::from_millis(50)),
        ),
        "tower" => work.route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    StatusCode::SERVICE_UNAVAILABLE
                }))
                .layer(tower::load_shed::LoadShedLayer::new())
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(CAPACITY)),
        ),
        "none" => work,
        other => return Err(format!("unknown variant {other:?}: vitals, tower or none").into()),
    };

    let stats = Arc::new(Mutex::new(Stats::default()));
    let recorder = Arc::clone(&stats);
    let app = Router::new()
        .route("/", route)
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let recorder = Arc::clone(&recorder);
                async move {
                    let started = Instant::now();
                    let response = next.run(request).await;
                    let mut stats = recorder
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if response.status() == StatusCode::OK {
                        let micros =
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        stats.admitted_micros.push(micros);
                    } else {
                        stats.shed += 1;
                    }
                    response
                }
            },
        ))
        .route(
            "/stats",
            get(move || {
                let stats = Arc::clone(&stats);
                async move {
                    let mut stats = stats
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let taken = std::mem::take(&mut *stats);
                    report(taken)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn report(mut stats: Stats) -> String {
    stats.admitted_micros.sort_unstable();
    let quantile = |q: f64| {
        let n = stats.admitted_micros.len();
        if n == 0 {
            return 0.0;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        #[allow(clippy::cast_precision_loss)]
        let ms = stats.admitted_micros[rank - 1] as f64 / 1000.0;
        ms
    };
    format!(
        "admitted={} shed={} p50_ms={:.1} p99_ms={:.1}\n",
        stats.admitted_micros.len(),
        stats.shed,
        quantile(0.5),
        quantile(0.99)
    )
}
