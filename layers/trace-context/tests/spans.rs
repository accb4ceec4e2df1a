//! The request span's fields, seen by a subscriber. Its own test binary: tracing caches
//! callsite interest process-wide, and tests without a subscriber running in parallel would
//! race with this one.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};

mod common;

use common::{PARENT, app};

/// Every field of every span, by span name.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<HashMap<String, String>>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        fields.insert("@id".to_owned(), id.into_u64().to_string());
        attributes.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some(fields) = spans
            .iter_mut()
            .find(|f| f["@id"] == id.into_u64().to_string())
        {
            values.record(&mut Fields(fields));
        }
    }
}

#[tokio::test]
async fn the_request_span_carries_semconv_fields() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    let app = app();
    for path in ["/items/3", "/fails"] {
        let request = http::Request::get(path)
            .header("traceparent", PARENT)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = tower::ServiceExt::oneshot(app.clone(), request)
            .await
            .unwrap();
        axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
    }
    let spans = spans.0.lock().unwrap().clone();
    let request = spans
        .iter()
        .find(|s| s.get("otel.name").map(String::as_str) == Some("GET /items/{id}"))
        .unwrap_or_else(|| panic!("no request span in {spans:#?}"));
    assert_eq!(request["otel.kind"], "server");
    assert_eq!(request["http.request.method"], "GET");
    assert_eq!(request["http.route"], "/items/{id}");
    assert_eq!(request["url.path"], "/items/3");
    assert_eq!(request["http.response.status_code"], "200");
    assert_eq!(request["request_id"].len(), 32);
    // The ids are the span's own when exported and the scope's in log lines: never fields.
    assert!(!request.contains_key("trace_id"));
    assert!(!request.contains_key("span_id"));
    assert!(!request.contains_key("otel.status_code"));
    let failed = spans
        .iter()
        .find(|s| s.get("otel.name").map(String::as_str) == Some("GET /fails"))
        .unwrap();
    assert_eq!(failed["otel.status_code"], "ERROR");
    assert_eq!(failed["error.type"], "500");
}
