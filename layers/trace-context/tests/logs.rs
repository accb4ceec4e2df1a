//! Log correlation: every event inside a request carries its trace and span ids. Its own test
//! binary, like spans.rs, so no test without a subscriber races it for tracing's callsite
//! interest.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use vitals_trace_context::TraceContextLayer;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// One test, three subscribers in turn: a second test in this binary would race it for tracing's
// callsite interest.
#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn every_event_in_a_request_carries_its_trace_and_span_ids_in_json_logs() {
    use std::io::Write;
    use tracing_subscriber::fmt::MakeWriter;
    use vitals_trace_context::logs::{JsonFormat, TraceIdsLayer};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    let lines = Lines::default();
    let subscriber = tracing_subscriber::registry().with(TraceIdsLayer).with(
        tracing_subscriber::fmt::layer()
            .event_format(JsonFormat)
            .with_writer(lines.clone()),
    );
    let default = tracing::subscriber::set_default(subscriber);
    let app = Router::new()
        .route(
            "/pay",
            get(|| async {
                tracing::info!(amount_cents = 1250, "payment approved");
                "paid"
            }),
        )
        .layer(TraceContextLayer::new());
    tracing::info!("outside any request");
    let request = http::Request::get("/pay")
        .header("traceparent", PARENT)
        .header("x-request-id", "order-7")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    let timing = response.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let outside = events
        .iter()
        .find(|e| e["message"] == "outside any request")
        .unwrap();
    assert!(outside.get("trace_id").is_none());
    let inside = events
        .iter()
        .find(|e| e["message"] == "payment approved")
        .unwrap();
    assert_eq!(inside["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(inside["amount_cents"], 1250);
    assert_eq!(inside["level"], "INFO");
    let span_id = inside["span_id"].as_str().unwrap();
    assert!(
        timing.contains(&format!("-{span_id}-")),
        "{timing} vs {span_id}"
    );
    assert_eq!(inside["request_id"], "order-7");
    drop(default);

    // A log filter that hides the INFO request span from the log layer (RUST_LOG=warn) still
    // gets the ids on a WARN line; an event field named like a key never replaces it.
    let warnings = Lines::default();
    let subscriber = tracing_subscriber::registry().with(TraceIdsLayer).with(
        tracing_subscriber::fmt::layer()
            .event_format(JsonFormat)
            .with_writer(warnings.clone())
            .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
    );
    let warn_default = tracing::subscriber::set_default(subscriber);
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tracing::warn!(trace_id = "spoofed", ratio = f64::NAN, "slow request");
                "late"
            }),
        )
        .layer(TraceContextLayer::new());
    let request = http::Request::get("/slow")
        .header("traceparent", PARENT)
        .body(axum::body::Body::empty())
        .unwrap();
    tower::ServiceExt::oneshot(app, request).await.unwrap();
    let text = String::from_utf8(warnings.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["field.trace_id"], "spoofed");
    assert_eq!(line["ratio"], "NaN");
    drop(warn_default);

    // Work spawned with the request's context (`TraceContext::scope`) is labelled with its
    // trace; a span of the user's with ids of its own, entered inside, labels what it holds.
    let scoped = Lines::default();
    let subscriber = tracing_subscriber::registry().with(TraceIdsLayer).with(
        tracing_subscriber::fmt::layer()
            .event_format(JsonFormat)
            .with_writer(scoped.clone()),
    );
    let _default = tracing::subscriber::set_default(subscriber);
    let context = vitals_trace_context::TraceContext::new_root();
    let trace_id = context.trace_id.to_string();
    context
        .scope(async {
            tracing::info!("background work");
            let own = tracing::info_span!("batch", trace_id = "0af7651916cd43dd8448eb211c80319c");
            own.in_scope(|| tracing::info!("inside the batch"));
        })
        .await;
    let text = String::from_utf8(scoped.0.lock().unwrap().clone()).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let background = events
        .iter()
        .find(|e| e["message"] == "background work")
        .unwrap();
    assert_eq!(background["trace_id"], trace_id.as_str());
    let batch = events
        .iter()
        .find(|e| e["message"] == "inside the batch")
        .unwrap();
    assert_eq!(batch["trace_id"], "0af7651916cd43dd8448eb211c80319c");
}
