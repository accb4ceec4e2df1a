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
use vitals_concurrency::{ConcurrencyLimitLayer, TimeoutLayer};
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
        limit.snapshot().in_flight,
        1,
        "the head is out, the body is not"
    );
    assert_eq!(read_body(response).await, b"done");
    let snapshot = limit.snapshot();
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
    assert_eq!(limit.snapshot().rejected, 1);
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
    let snapshot = limit.snapshot();
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
    assert_eq!(limit.snapshot().queued, 0);
    read_body(holder).await;
    let snapshot = limit.snapshot();
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
    assert_eq!(limit.snapshot().in_flight, 0);

    let app = sleeper(0).layer(limit.clone());
    for _ in 0..5 {
        drop(send(&app, "/").await); // the client went away before reading the body
    }
    assert_eq!(limit.snapshot().in_flight, 0);
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

    let snapshot = limit.snapshot();
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
    let snapshot = limit.snapshot();
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
    let shrunk = limit.snapshot();
    assert_eq!(shrunk.limit, 7, "{shrunk:?}");
    assert_eq!(
        shrunk.in_flight, 8,
        "owed permits are still in flight: {shrunk:?}"
    );
    for response in held {
        read_body(response).await;
    }
    let released = limit.snapshot();
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
    assert_eq!(limit.snapshot().limit, 1);
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
    let books = limit.snapshot();
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
    let books = limit.snapshot();
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

    // Half the limit in use: low priority is already refused, normal requests still go in.
    let held = [send(&app, "/").await, send(&app, "/").await];
    let refused = app.clone().oneshot(prefetch()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let normal = send(&app, "/").await;
    assert_eq!(normal.status(), StatusCode::OK);

    // Saturated: everything limited is refused, the health check still answers, unlimited.
    let last = send(&app, "/").await;
    assert_eq!(limit.snapshot().in_flight, 4);
    assert_eq!(
        send(&app, "/").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(read_body(send(&app, "/healthz").await).await, b"ok");
    assert_eq!(limit.snapshot().in_flight, 4, "the bypass took no permit");

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
    assert_eq!(limit.snapshot().in_flight, 0);
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
        .with_route("/slow", ConcurrencyLimitLayer::new(1).with_max_queued(0));
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
        limit.snapshot().in_flight,
        0,
        "the global permits are untouched"
    );
    let pages = [send(&app, "/").await, send(&app, "/").await];
    assert_eq!(
        send(&app, "/").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let route = limit.route_snapshot("/slow").unwrap();
    assert_eq!((route.in_flight, route.admitted, route.rejected), (1, 1, 1));
    read_body(slow).await;
    for page in pages {
        read_body(page).await;
    }
    assert_eq!(limit.route_snapshot("/slow").unwrap().in_flight, 0);
    assert_eq!(limit.snapshot().in_flight, 0);
    assert!(limit.route_snapshot("/").is_none());
}

#[tokio::test]
async fn an_unlimited_layer_limits_only_its_routes() {
    let limit = ConcurrencyLimitLayer::unlimited()
        .with_route("/slow", ConcurrencyLimitLayer::new(1).with_max_queued(0));
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
    assert_eq!(limit.route_snapshot("/slow").unwrap().in_flight, 0);
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
                .with_route_timeout("/longer", Duration::from_millis(500))
                .with_route_timeout("/unbounded", None)
                .with_route_timeout("/shorter", Duration::from_millis(100)),
        );
    let only_routes = Router::new()
        .route("/default", slow(10_000))
        .route("/bounded", slow(300))
        .layer(
            TimeoutLayer::per_route().with_route_timeout("/bounded", Duration::from_millis(100)),
        );
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
    // Route limit attached first, findings given after: the route limiter reports too.
    let limit = ConcurrencyLimitLayer::new(1)
        .with_max_queued(0)
        .with_route("/slow", ConcurrencyLimitLayer::new(1).with_max_queued(0))
        .with_findings(findings.clone());
    let app = Router::new()
        .route("/", get(|| async { "page" }))
        .route("/slow", get(|| async { "slow" }))
        .layer(limit.clone());
    for path in ["/", "/slow"] {
        let held = send(&app, path).await;
        assert_eq!(
            send(&app, path).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        read_body(held).await;
    }
    let totals = findings.route_totals();
    let rejected: Vec<(&str, u64)> = totals
        .iter()
        .map(|t| (t.route.as_str(), t.rejected))
        .collect();
    assert_eq!(rejected, [("/", 1), ("/slow", 1)]);
    assert_eq!(limit.route_snapshot("/slow").unwrap().rejected, 1);
}
