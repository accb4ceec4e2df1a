//! RequestTimingLayer end to end: axum routers in-process and over real TCP.
//!
//! No test here captures log events (see `common` for why): the warnings and events the layer
//! logs are checked in `blocking.rs` and `events.rs`.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use common::Reports;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use vitals_core::outcome::Outcome;
use vitals_timing::{RequestTimingLayer, ServerTimingMode};

/// A body of `chunks` frames, each produced after `delay`; fails instead of its last frame
/// when `fail` is set.
struct Drip {
    chunks: usize,
    delay: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    fail: bool,
}

impl Drip {
    fn new(chunks: usize, delay: Duration) -> Self {
        Self {
            chunks,
            delay,
            sleep: None,
            fail: false,
        }
    }

    fn failing(mut self) -> Self {
        self.fail = true;
        self
    }
}

impl http_body::Body for Drip {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.chunks == 0 {
            return Poll::Ready(None);
        }
        let delay = self.delay;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
        std::task::ready!(sleep.as_mut().poll(cx));
        self.sleep = None;
        self.chunks -= 1;
        if self.chunks == 0 && self.fail {
            return Poll::Ready(Some(Err(std::io::Error::other("backend went away"))));
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"chunk\n")))))
    }
}

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

fn total_ms(line: &str) -> f64 {
    let dur = line
        .split(", ")
        .find_map(|m| m.strip_prefix("total;dur="))
        .unwrap_or_else(|| panic!("no total in {line:?}"));
    dur.parse().unwrap()
}

#[tokio::test]
async fn times_to_the_last_byte_and_adds_server_timing() {
    let reports = Reports::default();
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .layer(reports.attach(RequestTimingLayer::new()));

    let response = send(&app, "/orders/7").await;
    assert_eq!(response.status(), StatusCode::OK);
    let lines = server_timing(&response);
    assert_eq!(lines.len(), 1);
    let total = total_ms(&lines[0]);
    assert!(total >= 0.0);
    // At most three decimals.
    assert!(lines[0].rsplit('.').next().unwrap().len() <= 3, "{lines:?}");
    // Not reported before the body ended.
    assert!(reports.all().is_empty());

    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"order");
    let record = reports.single();
    assert_eq!(
        record.route, "/orders/{id}",
        "the template, never the raw path"
    );
    assert_eq!(record.method, "GET");
    assert_eq!(record.status, Some(200));
    assert_eq!(record.outcome, Outcome::Completed);
    let head = record.head.unwrap();
    assert!(record.total >= head);
    assert_eq!(record.polls, 1);
    assert!(record.busy.unwrap() <= head);
    assert_eq!(record.longest_poll, record.busy);
}

#[tokio::test]
async fn total_includes_a_streaming_body() {
    let reports = Reports::default();
    let app = Router::new()
        .route(
            "/stream",
            get(|| async { Body::new(Drip::new(3, Duration::from_millis(20))) }),
        )
        .layer(reports.attach(RequestTimingLayer::new()));

    let response = send(&app, "/stream").await;
    response.into_body().collect().await.unwrap();
    let record = reports.single();
    let head = record.head.unwrap();
    assert!(
        record.total >= head + Duration::from_millis(60),
        "total {:?} must cover the 3 × 20 ms body after the head {head:?}",
        record.total
    );
    assert_eq!(record.outcome, Outcome::Completed);
}

#[tokio::test]
async fn server_timing_can_be_off_or_gated_by_a_header() {
    let off = Router::new()
        .route("/", get(|| async { "x" }))
        .layer(RequestTimingLayer::new().with_server_timing(ServerTimingMode::Off));
    assert!(server_timing(&send(&off, "/").await).is_empty());

    let gated = Router::new().route("/", get(|| async { "x" })).layer(
        RequestTimingLayer::new().with_server_timing(ServerTimingMode::when_header(
            "x-timing-token".parse().unwrap(),
            HeaderValue::from_static("let-me-see"),
        )),
    );
    assert!(server_timing(&send(&gated, "/").await).is_empty());
    let wrong = Request::get("/")
        .header("x-timing-token", "guess")
        .body(Body::empty())
        .unwrap();
    assert!(server_timing(&gated.clone().oneshot(wrong).await.unwrap()).is_empty());
    let right = Request::get("/")
        .header("x-timing-token", "let-me-see")
        .body(Body::empty())
        .unwrap();
    let lines = server_timing(&gated.clone().oneshot(right).await.unwrap());
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("total;dur="));
}

#[tokio::test]
async fn handler_server_timing_is_kept_even_when_huge_or_malformed() {
    let huge = "x".repeat(16 * 1024);
    let malformed = ";;;=== \"unterminated, dur=NaN;desc=\\";
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let huge = huge.clone();
                async move {
                    let mut response = "x".into_response();
                    let headers = response.headers_mut();
                    headers.append("server-timing", HeaderValue::from_str(&huge).unwrap());
                    headers.append(
                        "server-timing",
                        HeaderValue::from_bytes(malformed.as_bytes()).unwrap(),
                    );
                    headers.append("server-timing", HeaderValue::from_static("app;dur=2"));
                    response
                }
            }),
        )
        .layer(RequestTimingLayer::new());
    let response = send(&app, "/").await;
    let lines = server_timing(&response);
    assert_eq!(
        lines.len(),
        4,
        "{:?}",
        lines
            .iter()
            .map(|l| &l[..l.len().min(20)])
            .collect::<Vec<_>>()
    );
    assert_eq!(lines[0].len(), 16 * 1024);
    assert_eq!(lines[1].as_bytes(), malformed.as_bytes());
    assert_eq!(lines[2], "app;dur=2");
    assert!(lines[3].starts_with("total;dur="));
}

#[tokio::test]
async fn server_errors_are_classified() {
    let reports = Reports::default();
    let app = Router::new()
        .route("/fail", get(|| async { StatusCode::BAD_GATEWAY }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .layer(reports.attach(RequestTimingLayer::new()));
    for path in ["/fail", "/missing", "/no-such-route"] {
        send(&app, path).await.into_body().collect().await.unwrap();
    }
    let outcomes: Vec<_> = reports
        .all()
        .iter()
        .map(|r| (r.route.clone(), r.status, r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("/fail".to_owned(), Some(502), Outcome::ServerError),
            ("/missing".to_owned(), Some(404), Outcome::Completed),
            ("unmatched".to_owned(), Some(404), Outcome::Completed),
        ]
    );
}

#[tokio::test]
async fn a_body_that_errors_mid_stream_is_recorded_once_as_server_error() {
    let reports = Reports::default();
    let app = Router::new()
        .route(
            "/",
            get(|| async { Body::new(Drip::new(3, Duration::from_millis(1)).failing()) }),
        )
        .layer(reports.attach(RequestTimingLayer::new()));
    let response = send(&app, "/").await;
    assert!(response.into_body().collect().await.is_err());
    let record = reports.single();
    assert_eq!(record.outcome, Outcome::ServerError);
    assert_eq!(record.status, Some(200));
}

#[tokio::test]
async fn a_dropped_handler_future_is_recorded_once_as_cancelled() {
    let reports = Reports::default();
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                tokio::time::sleep(Duration::from_mins(1)).await;
                "never"
            }),
        )
        .layer(reports.attach(RequestTimingLayer::new()));
    let call = app.oneshot(Request::get("/").body(Body::empty()).unwrap());
    // Give up after a few milliseconds, as a client disconnect or an outer timeout would.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), call)
            .await
            .is_err()
    );
    let record = reports.single();
    assert_eq!(record.outcome, Outcome::Cancelled);
    assert_eq!(record.status, None);
    assert_eq!(record.head, None);
    assert!(record.total >= Duration::from_millis(20));
}

#[tokio::test]
async fn panics_are_server_errors_inside_or_outside_catch_panic() {
    use tower_http::catch_panic::CatchPanicLayer;

    async fn boom() -> &'static str {
        panic!("handler bug")
    }

    // CatchPanic inside the timing layer: timing sees the 500 it makes.
    let reports = Reports::default();
    let inside = Router::new()
        .route("/", get(boom))
        .layer(CatchPanicLayer::new())
        .layer(reports.attach(RequestTimingLayer::new()));
    let response = send(&inside, "/").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    response.into_body().collect().await.unwrap();
    let record = reports.single();
    assert_eq!(
        (record.status, record.outcome),
        (Some(500), Outcome::ServerError)
    );

    // CatchPanic outside: the panic unwinds through the timing future, which reports it.
    let reports = Reports::default();
    let outside = tower::ServiceBuilder::new()
        .layer(CatchPanicLayer::new())
        .layer(reports.attach(RequestTimingLayer::new()))
        .service(Router::new().route("/", get(boom)));
    let response = outside
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let record = reports.single();
    assert_eq!(
        (record.status, record.outcome),
        (None, Outcome::ServerError)
    );
}

#[tokio::test]
async fn poll_timing_can_be_switched_off() {
    let reports = Reports::default();
    let app = Router::new()
        .route("/", get(|| async { "x" }))
        .layer(reports.attach(RequestTimingLayer::new().without_poll_timing()));
    let response = send(&app, "/").await;
    assert_eq!(server_timing(&response).len(), 1);
    response.into_body().collect().await.unwrap();
    let record = reports.single();
    assert_eq!(
        (record.busy, record.longest_poll, record.polls),
        (None, None, 0)
    );
    assert!(!record.blocked);
    assert!(record.head.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disconnecting_mid_body_is_recorded_once_as_cancelled() {
    let reports = Reports::default();
    let app = Router::new()
        .route(
            "/stream",
            get(|| async { Body::new(Drip::new(1_000, Duration::from_millis(5))) }),
        )
        .layer(reports.attach(RequestTimingLayer::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while !String::from_utf8_lossy(&received).contains("chunk") {
        let n = client.read(&mut buffer).await.unwrap();
        assert!(n > 0, "server closed early");
        received.extend_from_slice(&buffer[..n]);
    }
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
    drop(client);

    let records = reports.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        reports.all().len(),
        1,
        "recorded exactly once: {records:#?}"
    );
    assert_eq!(records[0].outcome, Outcome::Cancelled);
    assert_eq!(records[0].status, Some(200));
    assert!(records[0].total > records[0].head.unwrap());
    server.abort();
}

#[tokio::test]
async fn works_with_infallible_services_outside_axum() {
    let reports = Reports::default();
    let service = tower::ServiceBuilder::new()
        .layer(reports.attach(RequestTimingLayer::new()))
        .service_fn(|_: http::Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::from("plain tower")))
        });
    let response = service
        .oneshot(http::Request::get("/anything").body(Body::empty()).unwrap())
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    let record = reports.single();
    assert_eq!(record.route, "unmatched");
    assert_eq!(record.outcome, Outcome::Completed);
}
