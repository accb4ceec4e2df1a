//! The `metrics` feature: what the cache did reaches the installed recorder by route.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::ServiceExt;
use vitals_response_cache::ResponseCacheLayer;
use vitals_response_cache::metrics::{BYPASSED, COLLAPSED, HITS, MISSES, STORED, WAIT_DURATION};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_misses_fills_and_waits_are_counted_by_route() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let app = Router::new()
        .route(
            "/reviews/{id}",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                ([("cache-control", "max-age=60")], "[]")
            }),
        )
        .layer(ResponseCacheLayer::new());
    let send = |cookie: bool| {
        let app = app.clone();
        async move {
            let mut request = Request::get("/reviews/1");
            if cookie {
                request = request.header("cookie", "session=1");
            }
            let response = app
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            // Read to the end, as a client does: the response is stored when its body ends.
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap();
        }
    };
    // Three at once: one fill, two waits.
    let burst: Vec<_> = (0..3).map(|_| tokio::spawn(send(false))).collect();
    for request in burst {
        request.await.unwrap();
    }
    send(false).await;
    send(true).await;

    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str| {
        snapshot.iter().find_map(|(key, _, _, value)| {
            let key = key.key();
            let on_route = key
                .labels()
                .any(|l| l.key() == "http.route" && l.value() == "/reviews/{id}");
            (key.name() == name && on_route).then_some(value)
        })
    };
    assert_eq!(
        value(MISSES),
        Some(&DebugValue::Counter(1)),
        "one went to the handler"
    );
    assert_eq!(value(STORED), Some(&DebugValue::Counter(1)));
    assert_eq!(value(COLLAPSED), Some(&DebugValue::Counter(2)));
    assert_eq!(value(HITS), Some(&DebugValue::Counter(1)));
    assert_eq!(value(BYPASSED), Some(&DebugValue::Counter(1)));
    let Some(DebugValue::Histogram(waits)) = value(WAIT_DURATION) else {
        panic!("no wait histogram");
    };
    assert_eq!(waits.len(), 2);
    assert!(
        waits.iter().all(|wait| wait.into_inner() > 0.1),
        "{waits:?}"
    );
}
