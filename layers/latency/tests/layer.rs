//! LatencyLayer over real TCP and through axum: what is recorded, under which labels, and how
//! cancelled and panicking requests count.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::routing::get;
use bytes::Bytes;
use http_body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use vitals_core::route::{RouteLabel, RouteLabeler};
use vitals_latency::{LatencyLayer, LatencyRegistry, OVERFLOW_ROUTE, SeriesSnapshot, Window};

/// A body of `chunks` chunks, `gap` apart.
struct SlowBody {
    remaining: u32,
    gap: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for SlowBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if let Some(sleep) = self.sleep.as_mut() {
            std::task::ready!(sleep.as_mut().poll(cx));
        }
        let gap = self.gap;
        self.sleep = Some(Box::pin(tokio::time::sleep(gap)));
        self.remaining -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"chunk\n")))))
    }
}

fn slow_body(chunks: u32, gap: Duration) -> Body {
    Body::new(SlowBody {
        remaining: chunks,
        gap,
        sleep: None,
    })
}

fn panic_in_handler() -> &'static str {
    panic!("handler bug")
}

fn app(registry: &LatencyRegistry) -> Router {
    Router::new()
        .route("/products/{id}", get(|| async { "a product" }))
        .route(
            "/stream",
            get(|| async { slow_body(3, Duration::from_millis(50)) }),
        )
        .route(
            "/endless",
            get(|| async { slow_body(u32::MAX, Duration::from_millis(5)) }),
        )
        .route("/panic", get(|| async { panic_in_handler() }))
        .layer(LatencyLayer::new(registry.clone()))
}

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A whole HTTP/1.1 exchange; returns the status.
async fn get_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    String::from_utf8_lossy(&reply)
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn find<'a>(series: &'a [SeriesSnapshot], route: &str, status: Option<u16>) -> &'a SeriesSnapshot {
    series
        .iter()
        .find(|s| s.route == route && s.status == status)
        .unwrap_or_else(|| panic!("no series {route} {status:?} in {series:#?}"))
}

/// Polls the registry until `done` holds (the body's end is recorded after the client has it).
async fn eventually(registry: &LatencyRegistry, done: impl Fn(&[SeriesSnapshot]) -> bool) {
    for _ in 0..500 {
        if done(&registry.snapshot(Window::OneMinute).series) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "not recorded: {:#?}",
        registry.snapshot(Window::OneMinute).series
    );
}

#[tokio::test]
async fn requests_are_labelled_by_route_template_never_by_path() {
    let registry = LatencyRegistry::new();
    let addr = serve(app(&registry)).await;
    assert_eq!(get_status(addr, "/products/1").await, 200);
    assert_eq!(get_status(addr, "/products/2").await, 200);
    assert_eq!(get_status(addr, "/no/such/page").await, 404);
    eventually(&registry, |s| s.iter().map(|s| s.count).sum::<u64>() == 3).await;
    let snapshot = registry.snapshot(Window::OneMinute);
    assert_eq!(snapshot.series.len(), 2, "{:#?}", snapshot.series);
    let products = find(&snapshot.series, "/products/{id}", Some(200));
    assert_eq!((products.method.as_str(), products.count), ("GET", 2));
    assert!(products.error_rate.abs() < f64::EPSILON);
    assert_eq!(find(&snapshot.series, "unmatched", Some(404)).count, 1);
}

#[tokio::test]
async fn the_duration_runs_to_the_last_byte_of_the_body() {
    let registry = LatencyRegistry::new();
    let addr = serve(app(&registry)).await;
    assert_eq!(get_status(addr, "/stream").await, 200);
    eventually(&registry, |s| s.iter().any(|s| s.count == 1)).await;
    let snapshot = registry.snapshot(Window::OneMinute);
    let stream = find(&snapshot.series, "/stream", Some(200));
    // Two 50 ms gaps between three chunks: the head came at once, the end 100 ms later.
    assert!(stream.max_ms.unwrap() >= 100.0, "{stream:?}");
}

#[tokio::test]
async fn a_client_gone_mid_body_is_counted_cancelled_not_timed() {
    let registry = LatencyRegistry::new();
    let addr = serve(app(&registry)).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /endless HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 64];
    let read = stream.read(&mut first).await.unwrap();
    assert!(read > 0);
    drop(stream);
    eventually(&registry, |s| s.iter().any(|s| s.cancelled == 1)).await;
    let series = find(
        &registry.snapshot(Window::OneMinute).series,
        "/endless",
        Some(200),
    )
    .clone();
    assert_eq!((series.count, series.cancelled), (0, 1));
    assert_eq!(series.p50_ms, None);
}

#[tokio::test]
async fn a_dropped_future_is_cancelled_without_a_status() {
    let registry = LatencyRegistry::new();
    let app = Router::new()
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_mins(1)).await;
                "late"
            }),
        )
        .layer(LatencyLayer::new(registry.clone()));
    let call = app.oneshot(Request::get("/hang").body(Body::empty()).unwrap());
    assert!(
        tokio::time::timeout(Duration::from_millis(20), call)
            .await
            .is_err()
    );
    let snapshot = registry.snapshot(Window::OneMinute);
    let series = find(&snapshot.series, "/hang", None);
    assert_eq!((series.count, series.cancelled), (0, 1));
}

#[tokio::test]
async fn a_panicking_handler_is_a_timed_server_error() {
    let registry = LatencyRegistry::new();
    let app = app(&registry).layer(tower_http::catch_panic::CatchPanicLayer::new());
    let addr = serve(app).await;
    assert_eq!(get_status(addr, "/panic").await, 500);
    eventually(&registry, |s| s.iter().any(|s| s.count == 1)).await;
    let snapshot = registry.snapshot(Window::OneMinute);
    let series = find(&snapshot.series, "/panic", Some(500));
    assert!((series.error_rate - 1.0).abs() < f64::EPSILON);
}

#[tokio::test]
async fn ten_thousand_random_paths_and_methods_keep_series_bounded() {
    // splitmix64, for paths and methods no router has seen.
    let mut state = 7u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let methods = ["GET", "POST", "DELETE", "BREW", "PROPFIND", "X-RANDOM"];
    let mut requests = Vec::new();
    for _ in 0..10_000 {
        let method = Method::from_bytes(methods[(next() % 6) as usize].as_bytes()).unwrap();
        let path = format!("/{:x}/{:x}", next(), next());
        requests.push((method, path));
    }

    // With axum's route templates, random paths are all `unmatched`.
    let registry = LatencyRegistry::new();
    let router = app(&registry);
    for (method, path) in &requests {
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .body(Body::empty())
            .unwrap();
        router.clone().oneshot(request).await.unwrap();
    }
    let snapshot = registry.snapshot(Window::OneMinute);
    assert!(registry.series_count() <= 10, "{:#?}", snapshot.series);
    assert!(snapshot.series.iter().all(|s| s.route == "unmatched"));
    assert!(
        snapshot.series.iter().any(|s| s.method == "_OTHER"),
        "unknown methods fold into _OTHER"
    );
    assert_eq!(snapshot.series.iter().map(|s| s.count).sum::<u64>(), 10_000);

    // A labeler that (wrongly) returns raw paths meets the series cap.
    let registry = LatencyRegistry::builder().with_max_series(500).build();
    let labeler = RouteLabeler::from_extractor(|head: vitals_core::route::RequestHead<'_>| {
        Some(RouteLabel::new(head.uri.path()))
    });
    let router =
        app(&registry).layer(LatencyLayer::new(registry.clone()).with_route_labeler(labeler));
    for (method, path) in &requests {
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .body(Body::empty())
            .unwrap();
        router.clone().oneshot(request).await.unwrap();
    }
    assert_eq!(registry.series_count(), 500);
    let snapshot = registry.snapshot(Window::OneMinute);
    let overflow = find(&snapshot.series, OVERFLOW_ROUTE, None);
    // Every request is counted once: in its own series or in the overflow series (the inner
    // layer of this router records too, under `unmatched`, into the same registry).
    let total: u64 = snapshot.series.iter().map(|s| s.count).sum();
    assert_eq!(total, 20_000);
    assert_eq!(overflow.count, registry.overflowed());
    assert!(registry.overflowed() >= 10_000 - 500);
    // The bound on memory: 500 series of at most 128 KiB each, plus the overflow series.
    assert!(
        registry.memory() <= 501 * 128 * 1024,
        "{}",
        registry.memory()
    );
}

#[tokio::test]
async fn registries_sharing_a_thread_keep_their_own_counts() {
    let (first, second) = (LatencyRegistry::new(), LatencyRegistry::new());
    let (first_app, second_app) = (app(&first), app(&second));
    for (app, times) in [(&first_app, 3), (&second_app, 1), (&first_app, 2)] {
        for _ in 0..times {
            let request = Request::get("/products/1").body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
        }
    }
    let count = |registry: &LatencyRegistry| registry.snapshot(Window::OneMinute).series[0].count;
    assert_eq!((count(&first), count(&second)), (5, 1));
}

#[tokio::test]
async fn head_requests_are_timed_not_cancelled() {
    let registry = LatencyRegistry::new();
    let addr = serve(app(&registry)).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"HEAD /products/1 HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200"));
    eventually(&registry, |s| s.iter().any(|s| s.count == 1)).await;
    let snapshot = registry.snapshot(Window::OneMinute);
    let series = find(&snapshot.series, "/products/{id}", Some(200));
    assert_eq!((series.method.as_str(), series.cancelled), ("HEAD", 0));
}
