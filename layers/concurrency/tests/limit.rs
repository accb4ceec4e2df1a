//! ConcurrencyLimitLayer and TimeoutLayer: invariants, not timings.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use vitals_concurrency::{ConcurrencyLimitLayer, Limit, TimeoutLayer};
use vitals_core::outcome::OutcomeHint;

async fn send(app: &Router, path: &str) -> Response {
    app.clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn read_body(response: Response) -> Vec<u8> {
    axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec()
}

/// What a timeout layer inside the limit answers: the congestion signal an adaptive limit
/// acts on (refusals are not one).
async fn timed_out() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    OutcomeHint::Timeout.mark(&mut response);
    response
}

fn sleeper(ms: u64) -> Router {
    Router::new().route(
        "/",
        get(move || async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            "done"
        }),
    )
}

#[tokio::test]
async fn the_permit_is_held_until_the_body_ends() {
    let limit = ConcurrencyLimitLayer::new(2);
    let app = sleeper(0).layer(limit.clone());
    let response = send(&app, "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        limit.handle().snapshot().in_flight,
        1,
        "the head is out, the body is not"
    );
    assert_eq!(read_body(response).await, b"done");
    let snapshot = limit.handle().snapshot();
    assert_eq!(
        (snapshot.in_flight, snapshot.queued, snapshot.admitted),
        (0, 0, 1)
    );
}

#[tokio::test]
async fn a_full_queue_is_refused_at_once_with_retry_after() {
    let limit = ConcurrencyLimitLayer::new(1).with_max_queued(0);
    let app = sleeper(0).layer(limit.clone());
    let first = send(&app, "/").await; // holds the only permit until its body is read
    let refused = send(&app, "/").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(refused.headers()["content-type"], "application/json");
    assert_eq!(OutcomeHint::of(&refused), Some(OutcomeHint::Rejected));
    assert!(
        String::from_utf8(read_body(refused).await)
            .unwrap()
            .contains("\"error\"")
    );
    read_body(first).await;
    assert_eq!(limit.handle().snapshot().rejected, 1);
    assert_eq!(send(&app, "/").await.status(), StatusCode::OK, "free again");
}

#[tokio::test]
async fn queued_requests_are_admitted_when_a_permit_frees_and_refused_after_max_wait() {
    let limit = ConcurrencyLimitLayer::new(1)
        .with_max_queued(4)
        .with_max_wait(Duration::from_millis(300));
    let app = sleeper(30).layer(limit.clone());
    let (a, b) = tokio::join!(async { read_body(send(&app, "/").await).await }, async {
        read_body(send(&app, "/").await).await
    });
    assert_eq!((a.as_slice(), b.as_slice()), (&b"done"[..], &b"done"[..]));
    let snapshot = limit.handle().snapshot();
    assert_eq!(snapshot.admitted, 2);
    assert!(snapshot.longest_admitted_wait > Duration::ZERO);
    assert!(snapshot.longest_admitted_wait <= Duration::from_millis(300));

    let slow = sleeper(1_000).layer(
        ConcurrencyLimitLayer::new(1)
            .with_max_queued(4)
            .with_max_wait(Duration::from_millis(20)),
    );
    let (first, second) = tokio::join!(send(&slow, "/"), async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        send(&slow, "/").await
    });
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        second.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "waited past max wait"
    );
}

#[tokio::test]
async fn cancelled_waiters_leave_nothing_behind() {
    let limit = ConcurrencyLimitLayer::new(1).with_max_queued(20_000);
    let app = sleeper(0).layer(limit.clone());
    let holder = send(&app, "/").await;
    for _ in 0..10_000 {
        // Polled once (so it queues), then dropped: a client that went away while waiting.
        let mut waiting = Box::pin(send(&app, "/"));
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(waiting.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
        drop(waiting);
    }
    assert_eq!(limit.handle().snapshot().queued, 0);
    read_body(holder).await;
    let snapshot = limit.handle().snapshot();
    assert_eq!((snapshot.in_flight, snapshot.queued), (0, 0));
    assert_eq!(read_body(send(&app, "/").await).await, b"done");
}

#[tokio::test]
async fn panics_and_dropped_bodies_return_their_permits() {
    use tower_http::catch_panic::CatchPanicLayer;

    async fn boom() -> &'static str {
        panic!("handler bug")
    }

    let limit = ConcurrencyLimitLayer::new(2);
    let panicking = tower::ServiceBuilder::new()
        .layer(CatchPanicLayer::new())
        .layer(limit.clone())
        .service(Router::new().route("/", get(boom)));
    for _ in 0..5 {
        let response = panicking
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(limit.handle().snapshot().in_flight, 0);

    let app = sleeper(0).layer(limit.clone());
    for _ in 0..5 {
        drop(send(&app, "/").await); // the client went away before reading the body
    }
    assert_eq!(limit.handle().snapshot().in_flight, 0);
}

#[tokio::test]
async fn timeouts_answer_and_drop_the_handler() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let flag = Arc::clone(&flag);
                async move {
                    struct SetOnDrop(Arc<AtomicBool>);
                    impl Drop for SetOnDrop {
                        fn drop(&mut self) {
                            self.0.store(true, Ordering::SeqCst);
                        }
                    }
                    let _guard = SetOnDrop(flag);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "never"
                }
            }),
        )
        .route("/quick", get(|| async { "quick" }))
        .layer(TimeoutLayer::new(Duration::from_millis(20)));
    let response = send(&app, "/").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(OutcomeHint::of(&response), Some(OutcomeHint::Timeout));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the handler's future was dropped"
    );
    assert_eq!(read_body(send(&app, "/quick").await).await, b"quick");

    let gateway =
        sleeper(1_000).layer(TimeoutLayer::new(Duration::from_millis(10)).with_gateway_timeout());
    assert_eq!(
        send(&gateway, "/").await.status(),
        StatusCode::GATEWAY_TIMEOUT
    );
}

/// One HTTP/1.1 request on a fresh connection: the status and the `Retry-After` value.
async fn raw_get(addr: std::net::SocketAddr) -> (u16, Option<String>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let retry_after = reply
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .map(str::to_owned);
    (status, retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_over_tcp_sheds_excess_and_never_exceeds_the_limit() {
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let limit = ConcurrencyLimitLayer::new(4)
        .with_max_queued(8)
        .with_max_wait(Duration::from_millis(50));
    let (c, p) = (Arc::clone(&current), Arc::clone(&peak));
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let (c, p) = (Arc::clone(&c), Arc::clone(&p));
                async move {
                    let now = c.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    c.fetch_sub(1, Ordering::SeqCst);
                    "served"
                }
            }),
        )
        .layer(limit.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u64, 0u64);
            while tokio::time::Instant::now() < deadline {
                match raw_get(addr).await {
                    (200, _) => ok += 1,
                    (503, Some(retry)) => {
                        assert!(
                            retry.parse::<u64>().is_ok_and(|s| (1..=2).contains(&s)),
                            "{retry}"
                        );
                        refused += 1;
                    }
                    other => panic!("unexpected answer {other:?}"),
                }
            }
            (ok, refused)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for client in clients {
        let (o, r) = client.await.unwrap();
        ok += o;
        refused += r;
    }
    server.abort();

    let snapshot = limit.handle().snapshot();
    assert!(
        refused > 0,
        "100 clients on a limit of 4 + 8 queued must be shed"
    );
    assert!(ok > 0);
    assert!(
        peak.load(Ordering::SeqCst) <= 4,
        "never more than 4 in the handler"
    );
    assert!(
        snapshot.longest_admitted_wait <= Duration::from_millis(50),
        "{snapshot:?}"
    );
    assert_eq!(
        (snapshot.admitted, snapshot.rejected),
        (ok, refused),
        "every request counted once"
    );
    assert_eq!(
        (snapshot.in_flight, snapshot.queued),
        (0, 0),
        "{snapshot:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adaptive_limit_backs_off_from_a_saturated_server_and_keeps_its_books() {
    use vitals_concurrency::AdaptiveLimit;

    // A server that can do 4 things at once; beyond that, requests wait inside it and latency
    // grows — what the adaptive limit watches for.
    let capacity = Arc::new(tokio::sync::Semaphore::new(4));
    let limit = ConcurrencyLimitLayer::adaptive(AdaptiveLimit::new(1, 64).with_initial(32))
        .with_max_wait(Duration::from_millis(50));
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let capacity = Arc::clone(&capacity);
                async move {
                    let _slot = capacity.acquire().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    "served"
                }
            }),
        )
        .layer(limit.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1_500);
    let mut clients = Vec::new();
    for _ in 0..48 {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < deadline {
                let response = send(&app, "/").await;
                read_body(response).await;
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let snapshot = limit.handle().snapshot();
    assert!(
        snapshot.limit < 32,
        "the limit came down from 32 towards 4: {snapshot:?}"
    );
    assert!(snapshot.limit >= 1);
    assert_eq!(
        (snapshot.in_flight, snapshot.queued),
        (0, 0),
        "{snapshot:?}"
    );
    assert_eq!(
        snapshot.available, snapshot.limit,
        "every permit is back: {snapshot:?}"
    );
}
#[tokio::test]
async fn an_adaptive_limit_that_shrinks_while_permits_are_out_keeps_its_books() {
    use vitals_concurrency::AdaptiveLimit;

    let limit = ConcurrencyLimitLayer::adaptive(AdaptiveLimit::new(1, 64).with_initial(8))
        .with_max_queued(0);
    let app = sleeper(0)
        .route("/timed-out", get(timed_out))
        .layer(limit.clone());
    let mut held = Vec::new();
    for _ in 0..7 {
        held.push(send(&app, "/").await);
    }
    // A timeout inside is a congestion signal, given when its head passes: the limit goes down
    // while all 8 permits (its own included) are out.
    held.push(send(&app, "/timed-out").await);
    // Refusals are not: they leave the limit where it is.
    for _ in 0..20 {
        assert_eq!(
            send(&app, "/").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let shrunk = limit.handle().snapshot();
    assert_eq!(shrunk.limit, 7, "{shrunk:?}");
    assert_eq!(
        shrunk.in_flight, 8,
        "owed permits are still in flight: {shrunk:?}"
    );
    for response in held {
        read_body(response).await;
    }
    let released = limit.handle().snapshot();
    assert_eq!(released.in_flight, 0, "{released:?}");
    assert_eq!(released.available, released.limit, "{released:?}");
}

#[tokio::test]
async fn permits_granted_too_late_go_back_through_the_adaptive_books() {
    use std::future::Future;
    use vitals_concurrency::AdaptiveLimit;

    // At its maximum already, so the permits coming back cannot grow it.
    let limit = ConcurrencyLimitLayer::adaptive(AdaptiveLimit::new(1, 2).with_initial(2))
        .with_max_wait(Duration::from_millis(50));
    let app = sleeper(0)
        .route("/timed-out", get(timed_out))
        .layer(limit.clone());
    // The timeout cuts the limit to 1 while both permits are out: one of them is owed.
    let held = [send(&app, "/").await, send(&app, "/timed-out").await];
    assert_eq!(limit.handle().snapshot().limit, 1);
    let mut waiters: Vec<_> = (0..2)
        .map(|_| {
            Box::pin(
                app.clone()
                    .oneshot(Request::get("/").body(Body::empty()).unwrap()),
            )
        })
        .collect();
    for waiter in &mut waiters {
        let queued = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(waiter.as_mut().poll(cx).is_pending())
        })
        .await;
        assert!(queued, "the request waits in the queue");
    }
    // Both permits free only after the waiters' max wait (measured on the real clock; the
    // waiters are not polled meanwhile): they settle the debt (paid, or cancelled as the
    // limit grows back) and are granted to waiters refused as too late, whose permits must
    // come back through the books unused.
    tokio::time::sleep(Duration::from_millis(60)).await;
    for response in held {
        read_body(response).await;
    }
    for waiter in waiters {
        assert_eq!(
            waiter.await.unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let books = limit.handle().snapshot();
    assert_eq!((books.in_flight, books.queued), (0, 0), "{books:?}");
    assert_eq!(
        books.available, books.limit,
        "every permit is back: {books:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_racing_returns_leave_the_adaptive_books_balanced() {
    use vitals_concurrency::AdaptiveLimit;

    // No queue: every request past the limit is refused at once. Timeouts shrink the limit
    // while other threads hand permits back (and completions grow it again) — the
    // interleaving that once left a permit over the limit.
    let limit = ConcurrencyLimitLayer::adaptive(AdaptiveLimit::new(1, 64).with_initial(16))
        .with_max_queued(0);
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                tokio::task::yield_now().await;
                "done"
            }),
        )
        .route(
            "/timed-out",
            get(|| async {
                tokio::task::yield_now().await;
                timed_out().await
            }),
        )
        .layer(limit.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(700);
    let clients: Vec<_> = (0..32)
        .map(|client| {
            let app = app.clone();
            let path = if client % 2 == 0 { "/" } else { "/timed-out" };
            tokio::spawn(async move {
                while tokio::time::Instant::now() < deadline {
                    read_body(send(&app, path).await).await;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let books = limit.handle().snapshot();
    assert!(books.rejected > 0, "the test raced refusals: {books:?}");
    assert_eq!((books.in_flight, books.queued), (0, 0), "{books:?}");
    assert_eq!(
        books.available, books.limit,
        "every permit is back: {books:?}"
    );
}

#[tokio::test]
async fn health_checks_bypass_and_low_priority_is_shed_first() {
    use vitals_core::route::RequestHead;

    let limit = ConcurrencyLimitLayer::new(4)
        .with_max_queued(0)
        .with_bypass(|head: RequestHead<'_>| head.uri.path() == "/healthz")
        .with_low_priority(
            |head: RequestHead<'_>| head.headers.contains_key("x-prefetch"),
            0.5,
        );
    let app = Router::new()
        .route("/", get(|| async { "page" }))
        .route("/healthz", get(|| async { "ok" }))
        .layer(limit.clone());
    let prefetch = || {
        Request::get("/")
            .header("x-prefetch", "1")
            .body(Body::empty())
            .unwrap()
    };

    // A quarter of the limit in use: below the share, low priority still goes in.
    let first = send(&app, "/").await;
    let early = app.clone().oneshot(prefetch()).await.unwrap();
    assert_eq!(
        early.status(),
        StatusCode::OK,
        "1 of 4 in use is below half"
    );
    read_body(early).await;

    // Half the limit in use: low priority is already refused, normal requests still go in.
    let held = [first, send(&app, "/").await];
    let refused = app.clone().oneshot(prefetch()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let normal = send(&app, "/").await;
    assert_eq!(normal.status(), StatusCode::OK);

    // Saturated: everything limited is refused, the health check still answers, unlimited.
    let last = send(&app, "/").await;
    assert_eq!(limit.handle().snapshot().in_flight, 4);
    assert_eq!(
        send(&app, "/").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(read_body(send(&app, "/healthz").await).await, b"ok");
    assert_eq!(
        limit.handle().snapshot().in_flight,
        4,
        "the bypass took no permit"
    );

    for response in held.into_iter().chain([normal, last]) {
        read_body(response).await;
    }
    let prefetched = app.clone().oneshot(prefetch()).await.unwrap();
    assert_eq!(
        prefetched.status(),
        StatusCode::OK,
        "an idle server serves low priority too"
    );
    read_body(prefetched).await;
    assert_eq!(limit.handle().snapshot().in_flight, 0);
}

/// A body of `chunks` frames, one every `every`.
struct Drip {
    chunks: usize,
    every: Duration,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Drip {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.chunks == 0 {
            return std::task::Poll::Ready(None);
        }
        let every = self.every;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
        std::task::ready!(sleep.as_mut().poll(cx));
        self.sleep = None;
        self.chunks -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b".",
        )))))
    }
}

#[tokio::test]
async fn the_body_deadline_cuts_a_body_that_streams_past_it() {
    let streaming = || {
        Router::new().route(
            "/",
            get(|| async {
                Body::new(Drip {
                    chunks: 100,
                    every: Duration::from_millis(10),
                    sleep: None,
                })
            }),
        )
    };
    let cut = streaming().layer(TimeoutLayer::new(Duration::from_millis(50)).with_body_deadline());
    let response = send(&cut, "/").await;
    assert_eq!(response.status(), StatusCode::OK, "the head came in time");
    let error = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap_err();
    assert!(
        format!("{error:?}").contains("BodyDeadlineElapsed"),
        "{error:?}"
    );

    // Without it, only the handler is timed: the same body streams to its end.
    let uncut = streaming().layer(TimeoutLayer::new(Duration::from_millis(50)));
    assert_eq!(read_body(send(&uncut, "/").await).await.len(), 100);
}

#[tokio::test]
async fn a_route_with_its_own_limit_is_counted_apart() {
    // One layer: 2 permits for every route, and a bulkhead of 1 for `/slow`.
    let limit = ConcurrencyLimitLayer::new(2)
        .with_max_queued(0)
        .with_route("/slow", Limit::new(1).with_max_queued(0));
    let app = Router::new()
        .route("/", get(|| async { "page" }))
        .route("/slow", get(|| async { "slow" }))
        .layer(limit.clone());
    let slow = send(&app, "/slow").await;
    assert_eq!(slow.status(), StatusCode::OK);
    assert_eq!(
        send(&app, "/slow").await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the route's own limit of 1 is full"
    );
    assert_eq!(
        limit.handle().snapshot().in_flight,
        0,
        "the global permits are untouched"
    );
    let pages = [send(&app, "/").await, send(&app, "/").await];
    assert_eq!(
        send(&app, "/").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let route = limit.handle().route_snapshot("/slow").unwrap();
    assert_eq!((route.in_flight, route.admitted, route.rejected), (1, 1, 1));
    read_body(slow).await;
    for page in pages {
        read_body(page).await;
    }
    assert_eq!(limit.handle().route_snapshot("/slow").unwrap().in_flight, 0);
    assert_eq!(limit.handle().snapshot().in_flight, 0);
    assert!(limit.handle().route_snapshot("/").is_none());
}

#[tokio::test]
async fn an_unlimited_layer_limits_only_its_routes() {
    let limit =
        ConcurrencyLimitLayer::unlimited().with_route("/slow", Limit::new(1).with_max_queued(0));
    let app = Router::new()
        .route("/", get(|| async { "page" }))
        .route("/slow", get(|| async { "slow" }))
        .layer(limit.clone());
    let mut held = Vec::new();
    for _ in 0..50 {
        let page = send(&app, "/").await;
        assert_eq!(page.status(), StatusCode::OK);
        held.push(page);
    }
    held.push(send(&app, "/slow").await);
    assert_eq!(
        send(&app, "/slow").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    for response in held {
        read_body(response).await;
    }
    assert_eq!(limit.handle().route_snapshot("/slow").unwrap().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_set_per_route() {
    let slow = |ms: u64| {
        get(move || async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            "done"
        })
    };
    let app = Router::new()
        .route("/default", slow(300))
        .route("/longer", slow(300))
        .route("/unbounded", slow(10_000))
        .route("/shorter", slow(300))
        .layer(
            TimeoutLayer::new(Duration::from_millis(200))
                .with_route("/longer", Duration::from_millis(500))
                .with_route("/unbounded", None)
                .with_route("/shorter", Duration::from_millis(100)),
        );
    let only_routes = Router::new()
        .route("/default", slow(10_000))
        .route("/bounded", slow(300))
        .layer(TimeoutLayer::per_route().with_route("/bounded", Duration::from_millis(100)));
    for (app, path, status) in [
        (&app, "/default", StatusCode::SERVICE_UNAVAILABLE),
        (&app, "/longer", StatusCode::OK),
        (&app, "/unbounded", StatusCode::OK),
        (&app, "/shorter", StatusCode::SERVICE_UNAVAILABLE),
        (&only_routes, "/default", StatusCode::OK),
        (&only_routes, "/bounded", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        assert_eq!(send(app, path).await.status(), status, "{path}");
    }
}

#[tokio::test]
async fn refusals_are_counted_per_route_in_the_findings_route_limiters_included() {
    use vitals_core::findings::Findings;

    let findings = Findings::default();
    // A route limit attached before the findings and one after: both report.
    let limit = ConcurrencyLimitLayer::new(1)
        .with_max_queued(0)
        .with_route("/slow", Limit::new(1).with_max_queued(0))
        .with_findings(findings.clone())
        .with_route("/late", Limit::new(1).with_max_queued(0));
    let app = Router::new()
        .route("/", get(|| async { "page" }))
        .route("/slow", get(|| async { "slow" }))
        .route("/late", get(|| async { "late" }))
        .layer(limit.clone());
    for path in ["/", "/slow", "/late"] {
        let held = send(&app, path).await;
        assert_eq!(
            send(&app, path).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        read_body(held).await;
    }
    let totals = findings.route_totals();
    let mut rejected: Vec<(&str, u64)> = totals
        .iter()
        .map(|t| (t.route.as_str(), t.rejected))
        .collect();
    rejected.sort_unstable();
    assert_eq!(rejected, [("/", 1), ("/late", 1), ("/slow", 1)]);
    assert_eq!(limit.handle().route_snapshot("/slow").unwrap().rejected, 1);
}

/// The `Retry-After` values of `count` refusals in a row by a limit of 1 held by one request.
async fn retry_after_values(limit: ConcurrencyLimitLayer, count: usize) -> Vec<u64> {
    let app = sleeper(0).layer(limit.with_max_queued(0));
    let held = send(&app, "/").await;
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let refused = send(&app, "/").await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        values.push(
            refused.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    read_body(held).await;
    values
}

#[tokio::test]
async fn retry_after_is_spread_over_base_to_twice_base() {
    // The default base of 1 s: 1 or 2, about as often each, and no pattern from one refusal
    // to the next (a client refused twice must not be told the same thing each time). The
    // bounds are many standard deviations wide: the jitter is seeded from the clock, but a
    // fair spread over 10,000 refusals lands inside them for any seed.
    let values = retry_after_values(ConcurrencyLimitLayer::new(1), 10_000).await;
    assert!(values.iter().all(|v| (1..=2).contains(v)), "{values:?}");
    #[allow(clippy::cast_precision_loss)]
    let share = |n: usize| n as f64 / 10_000.0;
    let twos = share(values.iter().filter(|&&v| v == 2).count());
    assert!((0.45..=0.55).contains(&twos), "told 2 s {twos} of the time");
    let repeats = share(values.windows(2).filter(|w| w[0] == w[1]).count());
    assert!(
        (0.42..=0.58).contains(&repeats),
        "the next refusal told the same {repeats} of the time"
    );

    // A wide base shows the jitter itself: 20,000 refusals spread over 2^63 seconds never
    // collide, unless the generator has far fewer states than it should.
    let base = (1u64 << 63) - 1;
    let values = retry_after_values(
        ConcurrencyLimitLayer::new(1).with_retry_after(Duration::from_secs(base)),
        20_000,
    )
    .await;
    assert!(values.iter().all(|&v| v >= base), "never below the base");
    let distinct: std::collections::HashSet<u64> = values.iter().copied().collect();
    assert_eq!(distinct.len(), values.len(), "repeated Retry-After values");
}

#[test]
fn the_debug_output_shows_the_request_classes() {
    use vitals_core::route::RequestHead;

    let plain = format!("{:?}", ConcurrencyLimitLayer::new(4));
    assert!(
        plain.contains("Classes { bypass: false, low_priority_share: None }"),
        "{plain}"
    );
    let classed = format!(
        "{:?}",
        ConcurrencyLimitLayer::new(4)
            .with_bypass(|head: RequestHead<'_>| head.uri.path() == "/healthz")
            .with_low_priority(|_: RequestHead<'_>| false, 0.25)
    );
    assert!(
        classed.contains("Classes { bypass: true, low_priority_share: Some(0.25) }"),
        "{classed}"
    );
}

#[tokio::test]
async fn settings_given_after_the_classes_labeler_and_routes_keep_them() {
    use vitals_core::route::{RequestHead, RouteLabel, RouteLabeler};

    // A plain service, not a router: no `MatchedPath`, so only the custom labeler finds the
    // route `/slow`.
    let labeler = RouteLabeler::from_extractor(|head: RequestHead<'_>| {
        (head.uri.path() == "/slow").then(|| RouteLabel::from_static("/slow"))
    });
    let limit = ConcurrencyLimitLayer::new(1)
        .with_bypass(|head: RequestHead<'_>| head.uri.path() == "/healthz")
        .with_route_labeler(labeler)
        .with_route("/slow", Limit::new(1).with_max_queued(0))
        // Each of these builds a fresh limiter: the classes, labeler and routes stay.
        .with_max_queued(0)
        .with_max_wait(Duration::from_millis(100))
        .with_name("global");
    let service = tower::ServiceBuilder::new()
        .layer(limit.clone())
        .service_fn(|_: Request| async {
            Ok::<_, std::convert::Infallible>(Response::new(Body::from("ok")))
        });
    let call = |path: &str| {
        service
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
    };
    assert_eq!(
        limit.handle().route_snapshot("/slow").map(|s| s.limit),
        Some(1)
    );
    let held = call("/").await.unwrap();
    assert_eq!(limit.handle().snapshot().in_flight, 1);
    assert_eq!(
        call("/").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the global limit (no queue) is full"
    );
    assert_eq!(
        call("/healthz").await.unwrap().status(),
        StatusCode::OK,
        "the bypass survived the later settings"
    );
    let slow = call("/slow").await.unwrap();
    assert_eq!(
        slow.status(),
        StatusCode::OK,
        "the labeler found the route, whose own limiter has a permit"
    );
    assert_eq!(limit.handle().route_snapshot("/slow").unwrap().in_flight, 1);
    read_body(slow.map(Body::new)).await;
    read_body(held.map(Body::new)).await;
    assert_eq!(limit.handle().snapshot().in_flight, 0);
}

#[tokio::test]
async fn the_limiter_passes_the_inner_services_readiness_through() {
    /// Never ready: it has failed.
    #[derive(Clone)]
    struct Broken;

    impl tower::Service<Request> for Broken {
        type Response = Response;
        type Error = &'static str;
        type Future = std::future::Ready<Result<Response, &'static str>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Err("broken"))
        }

        fn call(&mut self, _: Request) -> Self::Future {
            panic!("called while not ready")
        }
    }

    let mut service = tower::Layer::layer(&ConcurrencyLimitLayer::new(4), Broken);
    assert_eq!(
        tower::ServiceExt::<Request>::ready(&mut service)
            .await
            .err(),
        Some("broken")
    );
}

/// Polls `future` once: whether it is still pending.
async fn pending<F: std::future::Future>(mut future: std::pin::Pin<&mut F>) -> bool {
    std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx).is_pending())).await
}

#[tokio::test(start_paused = true)]
async fn a_permit_granted_too_late_pays_a_debt_incurred_while_it_was_waiting() {
    use vitals_concurrency::AdaptiveLimit;

    let release = Arc::new(tokio::sync::Notify::new());
    let signal = Arc::clone(&release);
    let limit = ConcurrencyLimitLayer::adaptive(AdaptiveLimit::new(1, 2).with_initial(2))
        .with_max_queued(1)
        .with_max_wait(Duration::from_millis(50));
    let app = sleeper(0)
        .route(
            "/timed-out",
            get(move || {
                let signal = Arc::clone(&signal);
                async move {
                    signal.notified().await;
                    timed_out().await
                }
            }),
        )
        .layer(limit.clone());
    // Both permits out: one held by a finished request, one by a handler still working.
    let mut working = Box::pin(send(&app, "/timed-out"));
    assert!(pending(working.as_mut()).await, "admitted, in the handler");
    let finished = send(&app, "/").await;
    let mut waiter = Box::pin(send(&app, "/"));
    assert!(pending(waiter.as_mut()).await, "queued");
    tokio::time::advance(Duration::from_millis(60)).await;
    // The finished request's permit goes to the waiter, now past its max wait; before the
    // waiter learns of it, the working request times out and the limit drops to 1 with both
    // permits out: one is owed.
    drop(finished);
    release.notify_one();
    let working = working.await;
    assert_eq!(OutcomeHint::of(&working), Some(OutcomeHint::Timeout));
    assert_eq!(limit.handle().snapshot().limit, 1);
    // Too late to admit: the waiter's permit goes back through the books, paying the debt.
    assert_eq!(waiter.await.status(), StatusCode::SERVICE_UNAVAILABLE);
    let books = limit.handle().snapshot();
    assert_eq!(
        (books.limit, books.in_flight, books.available),
        (1, 1, 0),
        "one request holds the only permit: {books:?}"
    );
    read_body(working).await;
    let books = limit.handle().snapshot();
    assert_eq!((books.in_flight, books.available), (0, 1), "{books:?}");
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_limit_growing_back_from_a_deep_cut_cancels_only_what_it_grows() {
    use vitals_concurrency::AdaptiveLimit;

    // A cut to a quarter: from 4 to 1 with all 4 permits out, so 3 are owed.
    let settings = AdaptiveLimit {
        backoff: 0.25,
        ..AdaptiveLimit::new(1, 64).with_initial(4)
    };
    let limit = ConcurrencyLimitLayer::adaptive(settings).with_max_queued(0);
    let app = sleeper(0)
        .route("/timed-out", get(timed_out))
        .layer(limit.clone());
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(send(&app, "/").await);
    }
    let cut = send(&app, "/timed-out").await;
    let books = limit.handle().snapshot();
    assert_eq!((books.limit, books.in_flight), (1, 4), "{books:?}");
    // The first sample (the clock is paused: every latency is the baseline) grows the limit
    // from 1 to 2: one owed permit is cancelled, the returned one pays another, one is still
    // owed.
    let mut held = held.into_iter();
    read_body(held.next().unwrap()).await;
    let books = limit.handle().snapshot();
    assert_eq!(
        (books.limit, books.in_flight, books.available),
        (2, 3, 0),
        "{books:?}"
    );
    for response in held.chain([cut]) {
        read_body(response).await;
    }
    let books = limit.handle().snapshot();
    assert_eq!(books.in_flight, 0, "{books:?}");
    assert_eq!(books.available, books.limit, "{books:?}");
}
