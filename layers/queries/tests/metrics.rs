//! The `metrics` feature: queries per request and N+1 findings reach the installed recorder.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use tower::ServiceExt;
use vitals_queries::QueryTrackingLayer;
use vitals_queries::metrics::{N_PLUS_ONE_FINDINGS, QUERIES_PER_REQUEST};

/// Everything recorded, by `name{labels}`.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<BTreeMap<String, Vec<f64>>>>);

struct Handle(String, Recorded);

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.1.push(&self.0, value as f64);
    }

    fn absolute(&self, value: u64) {
        self.1.push(&self.0, value as f64);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.1.push(&self.0, value);
    }
}

impl Recorded {
    fn push(&self, key: &str, value: f64) {
        self.0
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .push(value);
    }

    fn handle(&self, key: &Key) -> Arc<Handle> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        Arc::new(Handle(
            format!("{}{{{}}}", key.name(), labels.join(",")),
            self.clone(),
        ))
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

#[tokio::test]
async fn queries_per_request_and_findings_are_recorded_per_route() {
    let recorded = Recorded::default();
    metrics::set_global_recorder(recorded.clone()).unwrap();
    let app = Router::new()
        .route(
            "/items/{id}",
            get(|| async {
                for id in 0..6 {
                    let sql = format!("SELECT * FROM items WHERE id = {id}");
                    vitals_queries::record(&sql, Duration::from_millis(1));
                }
                "ok"
            }),
        )
        .route("/none", get(|| async { "none" }))
        .layer(QueryTrackingLayer::new());
    for path in ["/items/1", "/items/2", "/none"] {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
    }
    let recorded = recorded.0.lock().unwrap().clone();
    assert_eq!(
        recorded[&format!("{QUERIES_PER_REQUEST}{{http.route=/items/{{id}}}}")],
        [6.0, 6.0]
    );
    assert_eq!(
        recorded[&format!("{QUERIES_PER_REQUEST}{{http.route=/none}}")],
        [0.0]
    );
    assert_eq!(
        recorded[&format!("{N_PLUS_ONE_FINDINGS}{{http.route=/items/{{id}}}}")],
        [1.0, 1.0]
    );
    assert!(!recorded.contains_key(&format!("{N_PLUS_ONE_FINDINGS}{{http.route=/none}}")));
}
