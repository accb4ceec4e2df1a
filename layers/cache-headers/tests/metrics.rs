//! The counters through the `metrics` facade: 304s and computed ETags, per route.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::get;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::ServiceExt;
use vitals_cache_headers::CacheHeadersLayer;
use vitals_cache_headers::metrics::{ETAGS_COMPUTED, NOT_MODIFIED};

#[test]
fn not_modified_answers_and_etag_computations_are_counted_per_route() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let app = Router::new()
                .route("/products/{id}", get(|| async { "a product" }))
                .layer(CacheHeadersLayer::new());
            let call = |request: Request| {
                let app = app.clone();
                async move { app.oneshot(request).await.unwrap() }
            };
            let first = call(Request::get("/products/1").body(Body::empty()).unwrap()).await;
            let etag = first.headers()["etag"].clone();
            for _ in 0..2 {
                let request = Request::get("/products/1")
                    .header("if-none-match", etag.clone())
                    .body(Body::empty())
                    .unwrap();
                assert_eq!(call(request).await.status(), 304);
            }
        });
    });
    let counters: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(count) => Some((key.key().clone(), count)),
            _ => None,
        })
        .collect();
    let count = |name: &str| {
        counters
            .iter()
            .find(|(key, _)| {
                key.name() == name
                    && key
                        .labels()
                        .any(|l| l.key() == "http.route" && l.value() == "/products/{id}")
            })
            .map(|(_, count)| *count)
    };
    assert_eq!(count(NOT_MODIFIED), Some(2));
    assert_eq!(count(ETAGS_COMPUTED), Some(3));
}
