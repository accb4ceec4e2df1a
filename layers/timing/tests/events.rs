//! The events the layer logs when a request is over: slow-request warnings with what the
//! other layers measured, and sampled completion events.
//!
//! Every test in this binary captures events for its whole length: see `common` for why tests
//! that fire the layer's callsites without a subscriber must not share a binary with these.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use common::Events;
use http_body_util::BodyExt;
use tower::ServiceExt;
use vitals_core::server_timing::{Metric, ServerTiming};
use vitals_timing::{RequestTimingLayer, RouteTiming};

async fn send(app: &Router, path: &str) -> Response {
    app.clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn server_timing(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all("server-timing")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// Adds a `db` metric the way the queries layer will: to the collector an outer layer attached.
async fn with_db_metric(request: Request) -> &'static str {
    if let Some(timing) = ServerTiming::get(request.extensions()) {
        timing.add(
            Metric::new("db")
                .with_duration(Duration::from_micros(4_100))
                .with_description("7 queries"),
        );
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    "done"
}

#[tokio::test]
async fn slow_requests_warn_with_what_other_layers_measured() {
    let events = Events::default();
    let _guard = events.capture();
    let app = Router::new()
        .route("/slow", get(with_db_metric))
        .route("/exempt", get(with_db_metric))
        .layer(
            RequestTimingLayer::new()
                .with_slow_threshold(Duration::from_millis(20))
                .with_route("/exempt", RouteTiming::new().with_slow_threshold(None)),
        );

    let response = send(&app, "/slow").await;
    let lines = server_timing(&response);
    assert_eq!(lines.len(), 1, "one shared header line: {lines:?}");
    assert!(
        lines[0].starts_with(r#"db;dur=4.1;desc="7 queries", total;dur="#),
        "{lines:?}"
    );
    response.into_body().collect().await.unwrap();
    send(&app, "/exempt")
        .await
        .into_body()
        .collect()
        .await
        .unwrap();

    let slow = events.with_message("slow request");
    assert_eq!(slow.len(), 1, "{:#?}", events.all());
    let fields = &slow[0].fields;
    assert_eq!(slow[0].level, tracing::Level::WARN);
    assert_eq!(fields["http.route"], "/slow");
    assert_eq!(fields["http.response.status_code"], "200");
    assert_eq!(fields["vitals.outcome"], "completed");
    assert!(
        fields["server_timing"].starts_with(r#"db;dur=4.1;desc="7 queries", total;dur="#),
        "{fields:?}"
    );
    let total: f64 = fields["total_ms"].parse().unwrap();
    assert!(total >= 30.0);
    for field in ["head_ms", "busy_ms", "longest_poll_ms", "threshold_ms"] {
        assert!(fields.contains_key(field), "{field} missing: {fields:?}");
    }
}

#[tokio::test]
async fn completion_events_are_off_by_default_and_sampled_when_on() {
    let events = Events::default();
    let _guard = events.capture();
    let quiet = Router::new()
        .route("/", get(|| async { "x" }))
        .layer(RequestTimingLayer::new());
    for _ in 0..4 {
        send(&quiet, "/").await.into_body().collect().await.unwrap();
    }
    // Only the completion events: on a busy machine a preempted poll may get a (correct)
    // blocking warning.
    assert!(
        events.with_message("request finished").is_empty(),
        "{:#?}",
        events.all()
    );

    let sampled = Router::new()
        .route("/", get(|| async { "x" }))
        .layer(RequestTimingLayer::new().with_completion_events(0.5));
    for _ in 0..4 {
        send(&sampled, "/")
            .await
            .into_body()
            .collect()
            .await
            .unwrap();
    }
    let finished = events.with_message("request finished");
    assert_eq!(finished.len(), 2);
    assert_eq!(finished[0].level, tracing::Level::INFO);
    assert_eq!(finished[0].fields["http.route"], "/");
}
