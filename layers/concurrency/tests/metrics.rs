//! The `metrics` feature: the limiter's counters and gauges reach the installed recorder.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::get;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::ServiceExt;
use vitals_concurrency::metrics::{ADMITTED, IN_FLIGHT, LIMIT, REJECTED, TIMED_OUT};
use vitals_concurrency::{ConcurrencyLimitLayer, Limit, TimeoutLayer};

#[tokio::test]
async fn counters_per_route_and_gauges_per_limiter() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route(
            "/stuck",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "never"
            })
            .route_layer(TimeoutLayer::new(Duration::from_millis(10))),
        )
        .route("/own", get(|| async { "own" }))
        .route("/named", get(|| async { "named" }))
        .layer(
            ConcurrencyLimitLayer::new(1)
                .with_max_queued(0)
                .with_name("global")
                // A route limiter given unnamed is named after its route; a named one keeps
                // its name.
                .with_route("/own", Limit::new(2))
                .with_route("/named", Limit::new(3).with_name("bulkhead")),
        );
    let send = |path: &'static str| {
        app.clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
    };
    let held = send("/items/1").await.unwrap();
    assert_eq!(send("/items/2").await.unwrap().status(), 503);
    axum::body::to_bytes(held.into_body(), 1024).await.unwrap();
    assert_eq!(send("/stuck").await.unwrap().status(), 503);
    for path in ["/own", "/named"] {
        let response = send(path).await.unwrap();
        axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
    }

    let values: Vec<(String, DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect();
    let value = |name: &str| {
        values
            .iter()
            .find_map(|(key, v)| (key == name).then_some(v))
            .unwrap_or_else(|| panic!("{name} not recorded: {values:#?}"))
    };
    assert_eq!(
        value(&format!("{ADMITTED}{{http.route=/items/{{id}}}}")),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        value(&format!("{REJECTED}{{http.route=/items/{{id}}}}")),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        value(&format!("{ADMITTED}{{http.route=/stuck}}")),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        value(&format!("{TIMED_OUT}{{http.route=/stuck}}")),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        value(&format!("{LIMIT}{{vitals.limiter=global}}")),
        &DebugValue::Gauge(1.0.into())
    );
    assert_eq!(
        value(&format!("{IN_FLIGHT}{{vitals.limiter=global}}")),
        &DebugValue::Gauge(0.0.into())
    );
    assert_eq!(
        value(&format!("{LIMIT}{{vitals.limiter=/own}}")),
        &DebugValue::Gauge(2.0.into())
    );
    assert_eq!(
        value(&format!("{LIMIT}{{vitals.limiter=bulkhead}}")),
        &DebugValue::Gauge(3.0.into())
    );
}
