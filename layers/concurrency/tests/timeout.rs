//! TimeoutLayer over real TCP: 408 for a stalled upload, the configured status otherwise.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vitals_concurrency::TimeoutLayer;

const DEADLINE: Duration = Duration::from_millis(200);

fn app() -> Router {
    Router::new()
        .route(
            "/upload",
            post(|body: Bytes| async move { format!("{} bytes", body.len()) }),
        )
        .route(
            "/think",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/read-then-think",
            post(|body: Bytes| async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                format!("{} bytes, late", body.len())
            }),
        )
        .route(
            "/peek-then-think",
            post(|request: axum::extract::Request| async move {
                // One read that waits, given up after 10 ms; then other work, the body kept.
                let mut body = request.into_body();
                let _ = tokio::time::timeout(
                    Duration::from_millis(10),
                    http_body_util::BodyExt::frame(&mut body),
                )
                .await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(body);
                "late"
            }),
        )
        .route_layer(TimeoutLayer::new(DEADLINE).with_request_body_watch())
}

/// Sends `head` and `body` (which may be shorter than its `content-length`), then reads the
/// response until the server closes the connection or 5 s pass.
async fn exchange(addr: std::net::SocketAddr, path: &str, length: usize, body: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

async fn serve() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await });
    addr
}

#[tokio::test]
async fn a_stalled_upload_is_answered_408_and_the_connection_closed() {
    let addr = serve().await;
    let reply = exchange(addr, "/upload", 1_000, &[b'x'; 10]).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    let lower = reply.to_ascii_lowercase();
    assert!(lower.contains("connection: close"), "{reply}");
    assert!(
        reply.contains(r#"{"error":"the request body did not arrive in time"}"#),
        "{reply}"
    );
}

#[tokio::test]
async fn a_complete_upload_in_time_is_served() {
    let addr = serve().await;
    let reply = exchange(addr, "/upload", 1_000, &[b'x'; 1_000]).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("1000 bytes"), "{reply}");
}

#[tokio::test]
async fn a_slow_handler_is_still_the_configured_timeout() {
    let addr = serve().await;
    // The handler never reads the body...
    let reply = exchange(addr, "/think", 5, b"hello").await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    // ...or has read all of it and is busy with something else.
    let reply = exchange(addr, "/read-then-think", 5, b"hello").await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
}

#[tokio::test]
async fn a_body_read_given_up_earlier_does_not_make_a_slow_handler_a_408() {
    let addr = serve().await;
    let reply = exchange(addr, "/peek-then-think", 1_000, &[b'x'; 10]).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
}

#[tokio::test]
async fn the_handler_sees_the_deadline_as_the_current_one() {
    use tower::ServiceExt;
    use vitals_core::deadline::RequestDeadline;
    let app = Router::new()
        .route(
            "/",
            axum::routing::get(|| async {
                tokio::task::yield_now().await;
                RequestDeadline::current()
                    .map_or(0, |deadline| deadline.remaining().as_millis())
                    .to_string()
            }),
        )
        .layer(TimeoutLayer::new(DEADLINE));
    let response = app
        .oneshot(
            axum::http::Request::get("/")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = axum::body::to_bytes(response.into_body(), 64)
        .await
        .unwrap();
    let millis: u128 = std::str::from_utf8(&body).unwrap().parse().unwrap();
    assert!((150..=200).contains(&millis), "{millis}");
    assert_eq!(RequestDeadline::current(), None);
}
