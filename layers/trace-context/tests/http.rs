//! TraceContextLayer over real TCP: continuing and starting traces, hostile headers, the
//! response headers, propagation from inside a handler, and the request span's fields.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use vitals_trace_context::{TraceContext, TraceContextLayer, inject};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

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

fn app() -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(|Extension(context): Extension<TraceContext>| async move {
                let mut downstream = http::HeaderMap::new();
                let child = inject(&mut downstream).unwrap();
                assert_eq!(child.parent_id, Some(context.span_id));
                format!(
                    "{} {} {}",
                    context.trace_id,
                    context.span_id,
                    downstream["traceparent"].to_str().unwrap()
                )
            }),
        )
        .route(
            "/fails",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .layer(TraceContextLayer::new())
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

async fn send(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let mut map = http::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(": ").unwrap();
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    Reply {
        status,
        headers: map,
        body: body.to_owned(),
    }
}

async fn serve() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await });
    addr
}

#[tokio::test]
async fn an_incoming_trace_is_continued_and_propagated() {
    let addr = serve().await;
    let reply = send(
        addr,
        "/items/7",
        &[
            ("traceparent", PARENT),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("x-request-id", "req-42"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    let fields: Vec<&str> = reply.body.split(' ').collect();
    let (trace, span, downstream) = (fields[0], fields[1], fields[2]);
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(downstream.starts_with(&format!("00-{trace}-")));
    assert!(
        !downstream.contains(span),
        "downstream gets a new client span id"
    );
    assert_eq!(
        reply.headers["server-timing"],
        format!("trace;desc=00-{trace}-{span}-01").as_str()
    );
    assert_eq!(reply.headers["x-request-id"], "req-42");
}

#[tokio::test]
async fn bad_input_starts_a_new_trace_and_replaces_bad_request_ids() {
    let addr = serve().await;
    let long_parent = format!("00-{}", "a".repeat(10 * 1024));
    let many_members: String = (0..1_000)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let long_id = "x".repeat(10 * 1024);
    for headers in [
        vec![(
            "traceparent",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        )],
        vec![("traceparent", long_parent.as_str())],
        vec![("traceparent", &long_parent[..5 * 1024])],
        vec![("traceparent", PARENT), ("traceparent", PARENT)],
        vec![
            ("traceparent", PARENT),
            ("tracestate", many_members.as_str()),
        ],
        vec![("x-request-id", long_id.as_str())],
        vec![("x-request-id", "has space")],
        vec![("traceparent", "00-\u{e9}\u{e9}-01")],
    ] {
        let reply = send(addr, "/items/1", &headers).await;
        assert_eq!(reply.status, 200, "{headers:?}");
        let trace = reply.body.split(' ').next().unwrap();
        let continued = trace == "4bf92f3577b34da6a3ce929d0e0e4736";
        let only_state_bad = headers.iter().any(|(n, _)| *n == "tracestate");
        assert_eq!(continued, only_state_bad, "{headers:?}");
        let id = reply.headers["x-request-id"].to_str().unwrap();
        assert!(
            id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()),
            "{id}"
        );
        assert_ne!(id, long_id);
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
    assert_eq!(request["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(!request.contains_key("otel.status_code"));
    let failed = spans
        .iter()
        .find(|s| s.get("otel.name").map(String::as_str) == Some("GET /fails"))
        .unwrap();
    assert_eq!(failed["otel.status_code"], "ERROR");
    assert_eq!(failed["error.type"], "500");
}

#[cfg(feature = "logs")]
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
    let _default = tracing::subscriber::set_default(subscriber);
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
}
