//! The `metrics` feature: each decision reaches the installed recorder by route.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::post;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::ServiceExt;
use vitals_idempotency::metrics::{CONFLICTS, FIRST_RUNS, MISMATCHES, REFUSED, REPLAYS};
use vitals_idempotency::{IdempotencyLayer, IdempotencySettings};

#[tokio::test]
async fn each_decision_is_counted_by_route() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let app = Router::new()
        .route("/orders", post(|| async { "created" }))
        .route_layer(
            IdempotencyLayer::new().with_route("/orders", IdempotencySettings::new().required()),
        );
    let send = |key: Option<&'static str>, body: &'static str| {
        let mut request = Request::post("/orders");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let app = app.clone();
        async move {
            let response = app
                .oneshot(request.body(Body::from(body)).unwrap())
                .await
                .unwrap();
            let status = response.status().as_u16();
            // Read to the end, as a client does: the response is stored when its body ends.
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap();
            status
        }
    };
    assert_eq!(send(Some("\"a\""), "1").await, 200);
    assert_eq!(send(Some("\"a\""), "1").await, 200);
    assert_eq!(send(Some("\"a\""), "2").await, 422);
    assert_eq!(send(None, "1").await, 400);
    assert_eq!(send(Some("bad"), "1").await, 400);

    // One snapshot: taking one resets what the next sees.
    let snapshot = snapshotter.snapshot().into_vec();
    let count = |name: &str| {
        snapshot.iter().find_map(|(key, _, _, value)| {
            let key = key.key();
            let on_route = key
                .labels()
                .any(|l| l.key() == "http.route" && l.value() == "/orders");
            (key.name() == name && on_route).then_some(value)
        })
    };
    assert_eq!(count(FIRST_RUNS), Some(&DebugValue::Counter(1)));
    assert_eq!(count(REPLAYS), Some(&DebugValue::Counter(1)));
    assert_eq!(count(MISMATCHES), Some(&DebugValue::Counter(1)));
    assert_eq!(count(REFUSED), Some(&DebugValue::Counter(2)));
    assert_eq!(count(CONFLICTS), Some(&DebugValue::Counter(0)));
}
