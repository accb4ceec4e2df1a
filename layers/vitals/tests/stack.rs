//! VitalsLayer: every part in place and in order, the route table, parts switched off.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use tower::ServiceExt;
use vitals::cache_headers::CachePolicy;
use vitals::concurrency::{ConcurrencyLimitLayer, Limit, TimeoutLayer};
use vitals::{RouteSettings, VitalsError, VitalsLayer};

fn app(vitals: &VitalsLayer) -> Router {
    Router::new()
        .route("/products/{id}", get(|| async { "a product" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "late"
            }),
        )
        .route("/other", get(|| async { "other" }))
        .layer(vitals.clone())
}

async fn send(app: &Router, path: &str) -> Response {
    app.clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn finish(response: Response) -> Vec<u8> {
    axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec()
}

fn header_of<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn every_part_is_on_by_default() {
    let vitals = VitalsLayer::new();
    let app = app(&vitals);
    let response = send(&app, "/products/7").await;
    assert_eq!(response.status(), StatusCode::OK);
    let timing = header_of(&response, "server-timing").unwrap().to_owned();
    assert!(timing.contains("total;dur="), "timing: {timing}");
    assert!(timing.contains("trace;desc="), "trace context: {timing}");
    assert!(header_of(&response, "x-request-id").is_some(), "request id");
    assert!(header_of(&response, "etag").is_some(), "cache headers");
    assert_eq!(
        vitals.limiter().unwrap().snapshot().in_flight,
        1,
        "the permit is held until the body ends"
    );
    assert_eq!(finish(response).await, b"a product");
    assert_eq!(vitals.limiter().unwrap().snapshot().in_flight, 0);
    let latency = vitals
        .latency()
        .unwrap()
        .snapshot_by_route(vitals::latency::Window::OneMinute);
    assert!(
        latency
            .series
            .iter()
            .any(|r| r.route == "/products/{id}" && r.count == 1),
        "{latency:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn each_route_reads_its_settings_from_the_table() {
    let vitals = VitalsLayer::builder()
        .with_concurrency_limit(ConcurrencyLimitLayer::new(64))
        .with_route(
            "/products/{id}",
            RouteSettings::new().with_cache_policy(CachePolicy::public(Duration::from_mins(1))),
        )
        .with_route(
            "/slow",
            RouteSettings::new()
                .with_timeout(Duration::from_millis(100))
                .with_limit(Limit::new(1).with_max_queued(0)),
        )
        .build()
        .unwrap();
    let app = app(&vitals);

    let product = send(&app, "/products/1").await;
    assert_eq!(
        header_of(&product, "cache-control"),
        Some("public, max-age=60")
    );
    let other = send(&app, "/other").await;
    assert_eq!(
        header_of(&other, "cache-control"),
        None,
        "no default policy"
    );
    finish(product).await;
    finish(other).await;

    // `/slow` sleeps 300 ms: its 100 ms deadline answers 503, and the outer parts see it.
    let timed_out = send(&app, "/slow").await;
    assert_eq!(timed_out.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header_of(&timed_out, "x-request-id").is_some());
    finish(timed_out).await;

    // Its own limit of 1: a second request while one holds the permit is refused at once.
    let limit = vitals.limiter().unwrap();
    let first = tokio::spawn({
        let app = app.clone();
        async move { finish(send(&app, "/slow").await).await }
    });
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(limit.route_snapshot("/slow").unwrap().in_flight, 1);
    let refused = send(&app, "/slow").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header_of(&refused, "retry-after").is_some());
    assert_eq!(
        limit.snapshot().in_flight,
        0,
        "the global permits are not used"
    );
    first.await.unwrap();
    finish(refused).await;

    // Latency saw the refusal and the timeouts: a refused request still counts.
    let latency = vitals
        .latency()
        .unwrap()
        .snapshot(vitals::latency::Window::OneMinute);
    let slow: u64 = latency
        .series
        .iter()
        .filter(|s| s.route == "/slow" && s.status == Some(503))
        .map(|s| s.count)
        .sum();
    assert_eq!(slow, 3, "{latency:?}");
}

#[tokio::test]
async fn parts_switched_off_are_gone() {
    let vitals = VitalsLayer::builder()
        .without_trace_context()
        .without_cache_headers()
        .without_timing()
        .without_latency()
        .without_concurrency_limit()
        .without_queries()
        .build()
        .unwrap();
    assert!(vitals.latency().is_none());
    assert!(vitals.limiter().is_none());
    let response = send(&app(&vitals), "/products/1").await;
    assert_eq!(response.status(), StatusCode::OK);
    for name in ["server-timing", "x-request-id", "etag", "cache-control"] {
        assert!(response.headers().get(name).is_none(), "{name}");
    }
    assert_eq!(finish(response).await, b"a product");

    // One part alone.
    let timing_only = VitalsLayer::builder()
        .without_trace_context()
        .without_cache_headers()
        .build()
        .unwrap();
    let response = send(&app(&timing_only), "/products/1").await;
    assert!(header_of(&response, "server-timing").is_some_and(|v| v.contains("total")));
    assert!(response.headers().get(header::ETAG).is_none());
}

#[test]
fn bad_route_tables_are_refused_with_a_reason() {
    let invalid = VitalsLayer::builder()
        .with_route("products", RouteSettings::new())
        .build()
        .unwrap_err();
    assert_eq!(invalid, VitalsError::InvalidRoute("products".into()));
    let twice = VitalsLayer::builder()
        .with_route("/a", RouteSettings::new().with_query_budget(1))
        .with_route("/a", RouteSettings::new().with_query_budget(2))
        .build()
        .unwrap_err();
    assert_eq!(twice, VitalsError::DuplicateRoute("/a".into()));
    let off = VitalsLayer::builder()
        .without_concurrency_limit()
        .with_route("/slow", RouteSettings::new().with_limit(Limit::new(1)))
        .build()
        .unwrap_err();
    assert!(
        off.to_string()
            .contains("concurrency limit part of the stack is off"),
        "{off}"
    );
    // A deadline needs no global timeout: the route table brings the part in.
    assert!(
        VitalsLayer::builder()
            .with_route(
                "/slow",
                RouteSettings::new().with_timeout(Duration::from_secs(1))
            )
            .build()
            .is_ok()
    );
    let _ = TimeoutLayer::per_route();
}

#[tokio::test]
async fn every_part_reports_to_the_findings() {
    use vitals::core::findings::{Finding, Findings};

    let findings = Findings::default();
    let vitals = VitalsLayer::builder()
        .with_findings(findings.clone())
        .with_route(
            "/slow",
            RouteSettings::new()
                .with_slow_threshold(Duration::from_millis(1))
                .with_limit(Limit::new(1).with_max_queued(0)),
        )
        .build()
        .unwrap();
    assert!(vitals.findings().is_some());
    let app = Router::new()
        .route(
            "/orders",
            get(|| async {
                for id in 0..6 {
                    vitals::queries::record(
                        &format!("SELECT * FROM customers WHERE id = {id}"),
                        Duration::from_millis(1),
                    );
                }
                "orders"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                "late"
            }),
        )
        .layer(vitals.clone());

    finish(send(&app, "/orders").await).await;
    let held = send(&app, "/slow").await;
    let refused = send(&app, "/slow").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    finish(refused).await;
    finish(held).await;

    let kinds: Vec<&str> = findings.recent().iter().map(|r| r.finding.kind()).collect();
    assert!(kinds.contains(&"n_plus_one"), "{kinds:?}");
    assert!(kinds.contains(&"slow"), "{kinds:?}");
    let n_plus_one = findings
        .recent()
        .into_iter()
        .find_map(|r| match r.finding {
            Finding::NPlusOne { count, route, .. } => Some((route, count)),
            _ => None,
        })
        .unwrap();
    assert_eq!(n_plus_one, ("/orders".to_owned(), 6));
    let totals = findings.route_totals();
    let orders = totals.iter().find(|t| t.route == "/orders").unwrap();
    assert_eq!((orders.requests, orders.queries), (1, 6));
    let slow = totals.iter().find(|t| t.route == "/slow").unwrap();
    assert_eq!(slow.rejected, 1, "the route's own limiter reports too");
}

/// A route whose handler records one statement, so the queries part has a `db` entry to add.
fn app_with_a_query(vitals: &VitalsLayer) -> Router {
    Router::new()
        .route(
            "/db",
            get(|| async {
                vitals::queries::record("SELECT * FROM t WHERE id = 1", Duration::from_millis(2));
                "db"
            }),
        )
        .layer(vitals.clone())
}

async fn send_with(app: &Router, headers: &[(&str, &str)]) -> Response {
    let mut request = Request::get("/db");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn one_switch_governs_the_whole_server_timing_header() {
    // On by default: every part's entry in one header.
    let app = app_with_a_query(&VitalsLayer::new());
    let response = send_with(&app, &[]).await;
    let timing = header_of(&response, "server-timing").unwrap();
    for entry in ["trace;desc=", "db;dur=", r#"desc="1 query""#, "total;dur="] {
        assert!(timing.contains(entry), "{entry} in {timing}");
    }

    // Off: no Server-Timing at all — not the trace id, not the database time.
    let off = VitalsLayer::builder()
        .without_server_timing()
        .build()
        .unwrap();
    let response = send_with(&app_with_a_query(&off), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get_all("server-timing").iter().count(),
        0
    );

    // When the header carries the token: only then.
    let gated = VitalsLayer::builder()
        .with_server_timing(vitals::ServerTimingMode::when_header(
            header::HeaderName::from_static("x-debug-timing"),
            header::HeaderValue::from_static("s3cret"),
        ))
        .build()
        .unwrap();
    let app = app_with_a_query(&gated);
    for headers in [
        &[][..],
        &[("x-debug-timing", "s3cre")],
        &[("x-debug-timing", "S3CRET")],
    ] {
        let response = send_with(&app, headers).await;
        assert!(
            response.headers().get("server-timing").is_none(),
            "{headers:?}"
        );
    }
    let response = send_with(&app, &[("x-debug-timing", "s3cret")]).await;
    let timing = header_of(&response, "server-timing").unwrap();
    assert!(
        timing.contains("trace;desc=") && timing.contains("db;dur="),
        "{timing}"
    );
}

#[tokio::test]
async fn a_part_configured_off_denies_the_header_even_when_another_part_attached_it() {
    // Trace context (outermost) would show the trace id; timing inside it says Off.
    let vitals = VitalsLayer::builder()
        .with_timing(vitals::timing::RequestTimingLayer::new().without_server_timing())
        .build()
        .unwrap();
    let response = send_with(&app_with_a_query(&vitals), &[]).await;
    assert_eq!(
        response.headers().get_all("server-timing").iter().count(),
        0
    );
}

/// The limit's queue is the one wait before the handler: a queued request is admitted when a
/// permit comes back, or refused when it waited too long, and every outer part sees both.
#[tokio::test(start_paused = true)]
async fn the_limit_queues_admits_and_refuses_inside_the_one_service() {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let vitals = VitalsLayer::builder()
        .with_concurrency_limit(
            ConcurrencyLimitLayer::new(1)
                .with_max_queued(1)
                .with_max_wait(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/gate",
            get({
                let gate = gate.clone();
                move || async move {
                    gate.acquire().await.unwrap().forget();
                    "through"
                }
            }),
        )
        .layer(vitals.clone());
    let limit = vitals.limiter().unwrap();
    let spawn = |app: &Router| {
        let app = app.clone();
        tokio::spawn(async move {
            let response = send(&app, "/gate").await;
            let status = response.status();
            let id = header_of(&response, "x-request-id").map(str::to_owned);
            let timing = header_of(&response, "server-timing").map(str::to_owned);
            (status, id, timing, finish(response).await)
        })
    };
    let holder = spawn(&app);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let queued = spawn(&app);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(limit.snapshot().in_flight, 1);
    assert_eq!(limit.snapshot().queued, 1);

    // Permit held and queue full: refused at once.
    let refused = send(&app, "/gate").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header_of(&refused, "retry-after").is_some());
    assert!(header_of(&refused, "x-request-id").is_some());
    finish(refused).await;

    // The holder finishes; the queued request takes its permit and runs the handler.
    gate.add_permits(2);
    let (status, _, _, body) = holder.await.unwrap();
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"through"[..]));
    let (status, id, timing, body) = queued.await.unwrap();
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"through"[..]));
    assert!(id.is_some(), "the trace part saw the queued request");
    assert!(timing.unwrap().contains("total;dur="), "so did timing");
    assert_eq!(limit.snapshot().in_flight, 0);
    assert_eq!(limit.snapshot().queued, 0);

    // A request that waits past the longest wait is refused, and gives its place back.
    let holder = spawn(&app);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let late = spawn(&app);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, _, _, _) = late.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(limit.snapshot().queued, 0);
    gate.add_permits(1);
    assert_eq!(holder.await.unwrap().0, StatusCode::OK);
    assert_eq!(limit.snapshot().in_flight, 0);

    // Latency counted each answer by what the client got.
    let latency = vitals
        .latency()
        .unwrap()
        .snapshot(vitals::latency::Window::OneMinute);
    let count = |status: u16| -> u64 {
        latency
            .series
            .iter()
            .filter(|s| s.route == "/gate" && s.status == Some(status))
            .map(|s| s.count)
            .sum()
    };
    assert_eq!((count(200), count(503)), (3, 2), "{latency:?}");
}

/// A body that sends one byte every 60 ms, three times.
struct Trickle {
    left: u8,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Trickle {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(std::future::Future::poll(self.sleep.as_mut(), cx));
        self.left -= 1;
        let next = tokio::time::Instant::now() + Duration::from_millis(60);
        self.sleep.as_mut().reset(next);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b"x",
        )))))
    }
}

fn trickle() -> axum::body::Body {
    axum::body::Body::new(Trickle {
        left: 3,
        sleep: Box::pin(tokio::time::sleep(Duration::from_millis(60))),
    })
}

/// The deadline covers the body when asked to (a body still streaming when it passes fails, so
/// the client sees a cut response), and a request's deadline counts from its admission, not
/// from its arrival: the time spent in the limit's queue is not the handler's.
#[tokio::test(start_paused = true)]
async fn the_deadline_covers_the_body_and_counts_from_admission() {
    let vitals = VitalsLayer::builder()
        .with_concurrency_limit(
            ConcurrencyLimitLayer::new(1)
                .with_max_queued(1)
                .with_max_wait(Duration::from_secs(5)),
        )
        .with_timeout(TimeoutLayer::new(Duration::from_millis(100)).with_body_deadline())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/stream", get(|| async { trickle() }))
        .route(
            "/work",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(80)).await;
                "done"
            }),
        )
        .route(
            "/overrun",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                "late"
            }),
        )
        .layer(vitals.clone());

    // 3 × 60 ms of body against a 100 ms deadline: cut.
    let response = send(&app, "/stream").await;
    assert_eq!(response.status(), StatusCode::OK);
    let read = axum::body::to_bytes(response.into_body(), 1 << 20).await;
    assert!(read.is_err(), "the body outlived the deadline: {read:?}");
    assert_eq!(vitals.limiter().unwrap().snapshot().in_flight, 0);

    // Two requests of 80 ms each through a limit of one: the second waits 80 ms in the queue,
    // then has its own 100 ms.
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, "/work").await.status() }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    let second = send(&app, "/work").await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(finish(second).await, b"done");
    assert_eq!(first.await.unwrap(), StatusCode::OK);

    // A queued request still gets a deadline once admitted.
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, "/work").await.status() }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    let overrun = send(&app, "/overrun").await;
    assert_eq!(overrun.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
}

/// Labels every path under `/shop.Orders/` as `/shop.Orders/List`: a labeler other than axum's.
struct ServicePrefix;

impl vitals::core::route::ExtractRoute for ServicePrefix {
    fn extract_route(
        &self,
        head: vitals::core::route::RequestHead<'_>,
    ) -> Option<vitals::core::route::RouteLabel> {
        head.uri
            .path()
            .starts_with("/shop.Orders/")
            .then(|| vitals::core::route::RouteLabel::from_static("/shop.Orders/List"))
    }
}

/// One labeler for the whole stack: every part labels the request by it (where axum's
/// `MatchedPath` would say `/{*rest}`), and the route table is read by it.
#[tokio::test(start_paused = true)]
async fn one_route_labeler_is_given_to_every_part() {
    let labeler = vitals::core::route::RouteLabeler::from_extractor(ServicePrefix);
    let vitals = VitalsLayer::builder()
        .with_route_labeler(labeler)
        .with_route(
            "/shop.Orders/List",
            RouteSettings::new()
                .with_cache_policy(CachePolicy::public(Duration::from_mins(1)))
                .with_timeout(Duration::from_millis(100)),
        )
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/{*rest}",
            get(|uri: axum::http::Uri| async move {
                if uri.path().ends_with("Slow") {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                "listed"
            }),
        )
        .layer(vitals.clone());
    // The deadline the table gave the route (through a timeout the builder made) applies.
    let slow = send(&app, "/shop.Orders/Slow").await;
    assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
    finish(slow).await;
    let response = send(&app, "/shop.Orders/List").await;
    assert_eq!(
        header_of(&response, "cache-control"),
        Some("public, max-age=60"),
        "the cache part found the route's settings by the labeler"
    );
    finish(response).await;
    let latency = vitals
        .latency()
        .unwrap()
        .snapshot_by_route(vitals::latency::Window::OneMinute);
    let routes: Vec<&str> = latency.series.iter().map(|s| s.route.as_str()).collect();
    assert_eq!(
        routes,
        ["/shop.Orders/List"],
        "the latency part labelled both so"
    );
}

#[tokio::test]
async fn the_handler_sees_its_route_deadline_as_the_current_one_and_no_other_does() {
    use vitals_core::deadline::RequestDeadline;
    let vitals = VitalsLayer::builder()
        .with_route(
            "/deadline",
            RouteSettings::new().with_timeout(Duration::from_millis(250)),
        )
        .build()
        .unwrap();
    let left = || async {
        // Across an await too: the deadline is set on every poll of the handler.
        tokio::task::yield_now().await;
        RequestDeadline::current().map_or_else(
            || "none".to_owned(),
            |d| d.remaining().as_millis().to_string(),
        )
    };
    let app = Router::new()
        .route("/deadline", get(left))
        .route("/none", get(left))
        .layer(vitals);
    let with = String::from_utf8(finish(send(&app, "/deadline").await).await).unwrap();
    let millis: u64 = with.parse().unwrap();
    assert!((200..=250).contains(&millis), "{with}");
    let without = finish(send(&app, "/none").await).await;
    assert_eq!(without, b"none");
    assert_eq!(RequestDeadline::current(), None);
}

#[tokio::test]
async fn the_rate_limit_refuses_before_the_limit_and_is_timed_and_counted() {
    use vitals::rate_limit::{PeerAddr, Quota, RateLimitLayer, RateLimitSettings};

    let vitals = VitalsLayer::builder()
        .with_rate_limit(RateLimitLayer::new(Quota::per_minute(100)))
        .with_route(
            "/products/{id}",
            RouteSettings::new().with_rate_limit(RateLimitSettings::new(
                Quota::per_minute(2).named("products"),
            )),
        )
        .build()
        .unwrap();
    let app = app(&vitals);
    let send_from = |path: &'static str, client: [u8; 4]| {
        let mut request = Request::get(path).body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(std::net::IpAddr::from(client)));
        app.clone().oneshot(request)
    };
    for left in ["1", "0"] {
        let response = send_from("/products/1", [192, 0, 2, 1]).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, "ratelimit-policy"),
            Some(r#""products";q=2;w=60"#)
        );
        let remaining = header_of(&response, "ratelimit").unwrap();
        assert!(
            remaining.starts_with(&format!(r#""products";r={left};"#)),
            "{remaining}"
        );
        finish(response).await;
    }
    let refused = send_from("/products/1", [192, 0, 2, 1]).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header_of(&refused, "retry-after"), Some("30"));
    assert_eq!(header_of(&refused, "cache-control"), Some("no-store"));
    // Timed and traced like any answer; no ETag on a refusal, no permit taken.
    let timing = header_of(&refused, "server-timing").unwrap().to_owned();
    assert!(timing.contains("total;dur="), "{timing}");
    assert!(header_of(&refused, "etag").is_none());
    assert_eq!(vitals.limiter().unwrap().snapshot().in_flight, 0);
    finish(refused).await;
    // Another client, and another route under the stack's own quota.
    assert_eq!(
        send_from("/products/1", [192, 0, 2, 2])
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let other = send_from("/other", [192, 0, 2, 1]).await.unwrap();
    assert_eq!(
        header_of(&other, "ratelimit-policy"),
        Some(r#""per-minute";q=100;w=60"#)
    );

    let handle = vitals.rate_limit().unwrap();
    let products = handle.route_snapshot("/products/{id}").unwrap();
    assert_eq!((products.allowed, products.refused), (3, 1));
    assert_eq!(handle.snapshot().unwrap().allowed, 1);
    let latency = vitals
        .latency()
        .unwrap()
        .snapshot(vitals::latency::Window::OneMinute);
    let refusals: u64 = latency
        .series
        .iter()
        .filter(|s| s.route == "/products/{id}" && s.status == Some(429))
        .map(|s| s.count)
        .sum();
    assert_eq!(refusals, 1, "{latency:?}");
}

#[test]
fn no_rate_limit_without_a_quota() {
    let vitals = VitalsLayer::new();
    assert!(vitals.rate_limit().is_none());
}
