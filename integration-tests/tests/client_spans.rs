//! Each attempt of a retried call is a CLIENT span of its own (`ClientSpanLayer` under
//! `vitals-client`'s retry), with `http.request.resend_count` from the second on, its status,
//! and its own span id sent as the attempt's `traceparent` — over real TCP. Its own test binary:
//! it sets a subscriber for the thread.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use vitals_client::RetryLayer;
use vitals_trace_context::ClientSpanLayer;

/// Every field of every span.
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
async fn each_attempt_is_a_client_span_with_its_resend_count() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    // Fails the first call, answers the second; keeps the traceparents it was sent.
    let calls = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let app = {
        let (calls, sent) = (Arc::clone(&calls), Arc::clone(&sent));
        Router::new().route(
            "/stock",
            get(move |headers: HeaderMap| async move {
                sent.lock()
                    .unwrap()
                    .push(headers["traceparent"].to_str().unwrap().to_owned());
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = ServiceBuilder::new()
        .layer(RetryLayer::new().with_backoff(Duration::ZERO, Duration::ZERO))
        .layer(ClientSpanLayer::new())
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let request = http::Request::get(format!("http://127.0.0.1:{port}/stock"))
        .body(Full::default())
        .unwrap();
    // Inside a request's trace, as a handler's call is.
    let trace = vitals_trace_context::TraceContext::new_root();
    let trace_id = trace.trace_id.to_string();
    let response = trace.scope(client.oneshot(request)).await.unwrap();
    assert_eq!(response.status(), 200);

    let spans = spans.0.lock().unwrap().clone();
    let client_spans: Vec<_> = spans
        .iter()
        .filter(|s| s.get("otel.kind").map(String::as_str) == Some("client"))
        .collect();
    assert_eq!(client_spans.len(), 2, "{spans:#?}");
    let (first, second) = (client_spans[0], client_spans[1]);
    for span in [first, second] {
        assert_eq!(span["otel.name"], "GET");
        assert_eq!(span["http.request.method"], "GET");
        assert_eq!(span["server.address"], "127.0.0.1");
        assert_eq!(span["server.port"], port.to_string());
    }
    assert!(
        !first.contains_key("http.request.resend_count"),
        "{first:?}"
    );
    assert_eq!(first["http.response.status_code"], "503");
    assert_eq!(first["error.type"], "503");
    assert_eq!(first["otel.status_code"], "ERROR");
    assert_eq!(second["http.request.resend_count"], "1");
    assert_eq!(second["http.response.status_code"], "200");
    assert!(!second.contains_key("error.type"), "{second:?}");
    // Each attempt went out with a span id of its own.
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert_ne!(sent[0], sent[1]);
    assert!(sent.iter().all(|t| t.contains(&trace_id)), "{sent:?}");
}
