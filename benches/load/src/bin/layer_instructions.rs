//! `layer_instructions LAYER N`: sends N requests in-process (tower `oneshot`, body read to its
//! end) through one Vitals layer used alone, around a service that answers a fixed JSON body, on
//! one thread, with no subscriber and no metrics recorder. `scripts/loadtest layers` runs it
//! under callgrind twice (two values of N) and divides the difference in instructions by the
//! difference in requests: each layer's standalone cost per request, a figure that repeats to a
//! few instructions where the criterion benchmarks' times move ±10% between runs.

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use tower::{Layer, Service, ServiceExt};
use vitals_load::PRODUCT_JSON;

/// The layers, by the name the command line gives (each also as `post-LAYER`: a `POST` with a
/// JSON body and no `Idempotency-Key`, for the idempotency part's check).
const LAYERS: [&str; 13] = [
    "bare",
    "trace-context",
    "timing",
    "latency",
    "queries",
    "concurrency-limit",
    "timeout",
    "cache-headers",
    "vitals",
    "idempotency",
    "vitals-idempotency",
    "vitals-public",
    "vitals-response-cache-hit",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(layer), Some(count)) = (args.first(), args.get(1)) else {
        eprintln!("usage: layer_instructions {} N", LAYERS.join("|"));
        return ExitCode::FAILURE;
    };
    let Ok(count) = count.parse::<u64>() else {
        eprintln!("layer_instructions: N must be a number, not {count:?}");
        return ExitCode::FAILURE;
    };
    let runtime = match vitals_load::single_thread_runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("layer_instructions: {error}");
            return ExitCode::FAILURE;
        }
    };
    let bare = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from(PRODUCT_JSON)))
    });
    let (post, layer) = match layer.strip_prefix("post-") {
        Some(layer) => (true, layer),
        None => (false, layer.as_str()),
    };
    let result = runtime.block_on(async {
        match layer {
            "bare" => send(bare, count, post).await,
            "trace-context" => {
                send(vitals::trace_context::TraceContextLayer::new().layer(bare), count, post).await
            }
            "timing" => send(vitals::timing::RequestTimingLayer::new().layer(bare), count, post).await,
            "latency" => {
                let registry = vitals::latency::LatencyRegistry::new();
                send(vitals::latency::LatencyLayer::new(registry).layer(bare), count, post).await
            }
            "queries" => {
                send(vitals::queries::QueryTrackingLayer::new().layer(bare), count, post).await
            }
            "concurrency-limit" => {
                let limit = vitals::concurrency::ConcurrencyLimitLayer::new(vitals_load::LIMIT);
                send(limit.layer(bare), count, post).await
            }
            "timeout" => {
                let timeout = vitals::concurrency::TimeoutLayer::new(Duration::from_secs(30));
                send(timeout.layer(bare), count, post).await
            }
            "cache-headers" => {
                send(vitals::cache_headers::CacheHeadersLayer::new().layer(bare), count, post).await
            }
            "vitals" => send(vitals::VitalsLayer::new().layer(bare), count, post).await,
            "idempotency" => {
                let layer = vitals::idempotency::IdempotencyLayer::new();
                send(layer.layer(bare), count, post).await
            }
            "vitals-idempotency" => {
                let layer = vitals::VitalsLayer::builder()
                    .with_idempotency(vitals::idempotency::IdempotencyLayer::new())
                    .build()
                    .map_err(|e| e.to_string());
                match layer {
                    Ok(layer) => send(layer.layer(bare), count, post).await,
                    Err(error) => Err(error),
                }
            }
            // The stack whose cache headers make every answer `public` (the response cache's
            // baseline), then the same with the response cache: every request after the first
            // a hit from memory.
            "vitals-public" => match public_stack(false) {
                Ok(layer) => send(layer.layer(bare), count, post).await,
                Err(error) => Err(error),
            },
            "vitals-response-cache-hit" => match public_stack(true) {
                Ok(layer) => send(layer.layer(bare), count, post).await,
                Err(error) => Err(error),
            },
            other => Err(format!("unknown layer {other:?} ({})", LAYERS.join(", "))),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("layer_instructions: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `VitalsLayer` with every answer `public` for an hour, with or without a response cache of
/// every route.
fn public_stack(cached: bool) -> Result<vitals::VitalsLayer, String> {
    use vitals::cache_headers::{CacheHeadersLayer, CachePolicy};
    let mut builder = vitals::VitalsLayer::builder().with_cache_headers(
        CacheHeadersLayer::new().with_policy(CachePolicy::public(Duration::from_secs(3600))),
    );
    if cached {
        builder = builder.with_response_cache(vitals::response_cache::ResponseCacheLayer::new());
    }
    builder.build().map_err(|e| e.to_string())
}

/// Sends `count` requests (`GET`, or `POST` with a JSON body) through clones of `service`, each
/// body read to its end.
async fn send<S, B>(service: S, count: u64, post: bool) -> Result<(), String>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Display,
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    for _ in 0..count {
        let request = if post {
            Request::post("/orders")
                .header("host", "bench.local")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"customer_id":3,"product_id":5,"quantity":2}"#))
        } else {
            Request::get("/products/42")
                .header("host", "bench.local")
                .header("accept", "application/json")
                .body(Body::empty())
        }
        .map_err(|e| e.to_string())?;
        let response = service
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| e.to_string())?;
        let body = Body::new(response.into_body());
        axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
