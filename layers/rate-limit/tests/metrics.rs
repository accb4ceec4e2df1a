//! The `metrics` feature: decisions reach the installed recorder per route and quota, with no
//! key among the labels.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::net::IpAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::get;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::ServiceExt;
use vitals_rate_limit::metrics::{ALLOWED, REFUSED, SHADOW_REFUSED};
use vitals_rate_limit::{PeerAddr, Quota, RateLimitLayer, RateLimitSettings};

#[tokio::test]
async fn counters_per_route_and_quota() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route("/new", get(|| async { "new" }))
        .layer(
            RateLimitLayer::new(Quota::per_minute(1).named("minute")).with_route(
                "/new",
                RateLimitSettings::new(Quota::per_hour(1)).with_shadow_mode(),
            ),
        );
    let send = |path: &'static str, client: &str| {
        let mut request = Request::get(path).body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(client.parse::<IpAddr>().unwrap()));
        app.clone().oneshot(request)
    };
    assert_eq!(send("/items/1", "192.0.2.1").await.unwrap().status(), 200);
    assert_eq!(send("/items/2", "192.0.2.1").await.unwrap().status(), 429);
    assert_eq!(send("/items/3", "192.0.2.2").await.unwrap().status(), 200);
    for _ in 0..3 {
        assert_eq!(send("/new", "192.0.2.1").await.unwrap().status(), 200);
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
        value(&format!("{ALLOWED}{{http.route=/items/{{id}}}}")),
        &DebugValue::Counter(2)
    );
    assert_eq!(
        value(&format!(
            "{REFUSED}{{http.route=/items/{{id}},vitals.quota=minute}}"
        )),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        value(&format!("{ALLOWED}{{http.route=/new}}")),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        value(&format!(
            "{SHADOW_REFUSED}{{http.route=/new,vitals.quota=per-hour}}"
        )),
        &DebugValue::Counter(2)
    );
    assert!(
        values.iter().all(|(key, _)| !key.contains("192.0.2")),
        "no client address among the labels: {values:#?}"
    );
}
