//! The dashboard over real TCP: the page and each JSON endpoint, fed by real layers; access
//! control by peer and bearer token; the history sampler.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use vitals_concurrency::ConcurrencyLimitLayer;
use vitals_core::findings::{Finding, Findings};
use vitals_dashboard::{Dashboard, DashboardError};
use vitals_latency::{LatencyLayer, LatencyRegistry};

/// Minimal HTTP/1.1 GET over TCP: (status, body).
async fn get_raw(addr: SocketAddr, path: &str, extra: &str) -> (u16, String) {
    request_raw(addr, "GET", path, &format!("host: localhost\r\n{extra}")).await
}

/// `headers` must include `host`.
async fn request_raw(addr: SocketAddr, method: &str, path: &str, headers: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// How long a test waits for a state it needs: far longer than anything takes on an idle
/// machine, so only a state that never comes fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `condition` until it holds, panicking with `what` after [`PATIENCE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A de-chunked body (axum answers fixed-length here, but be safe).
fn json(body: &str) -> Value {
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"))
}

struct Served {
    addr: SocketAddr,
    dashboard: Dashboard,
    findings: Findings,
    limit: ConcurrencyLimitLayer,
    /// Lets one `GET /slow` finish: until then it holds its permit.
    release_slow: Arc<Notify>,
}

/// Serves `app` on a loopback port with the peer address of each connection (the dashboard
/// lets loopback peers in).
async fn serve_with_peers(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

async fn serve(token: Option<&str>) -> Served {
    let latency = LatencyRegistry::new();
    let findings = Findings::new(50);
    let limit = ConcurrencyLimitLayer::new(1)
        .with_max_queued(0)
        .with_findings(findings.clone());
    let mut builder = Dashboard::builder()
        .with_latency(latency.clone())
        .with_limiter(limit.handle())
        .with_findings(findings.clone())
        .with_history(Duration::from_hours(1), Duration::from_hours(10));
    if let Some(token) = token {
        builder = builder.with_bearer_token(token);
    }
    let dashboard = builder.build().unwrap();
    let release_slow = Arc::new(Notify::new());
    let released = Arc::clone(&release_slow);
    let app = Router::new()
        .route("/products/{id}", get(|| async { "product" }))
        .route(
            "/slow",
            get(|| async move {
                released.notified().await;
                "slow"
            }),
        )
        .layer(limit.clone())
        .layer(LatencyLayer::new(latency))
        .merge(dashboard.router());
    let addr = serve_with_peers(app).await;
    Served {
        addr,
        dashboard,
        findings,
        limit,
        release_slow,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_the_json_reflect_what_the_layers_recorded() {
    let served = serve(None).await;
    let addr = served.addr;
    for id in 1..=4 {
        assert_eq!(get_raw(addr, &format!("/products/{id}"), "").await.0, 200);
    }
    // Another method on the same route joins its row, not a second one.
    assert_eq!(
        request_raw(addr, "HEAD", "/products/5", "host: localhost\r\n")
            .await
            .0,
        200
    );
    // One request holds the only permit (its handler waits for the release); a second is
    // refused.
    let held = tokio::spawn(async move { get_raw(addr, "/slow", "").await });
    eventually("the first GET /slow to hold the permit", || {
        served.limit.handle().snapshot().in_flight == 1
    })
    .await;
    let refused = tokio::time::timeout(PATIENCE, get_raw(addr, "/slow", ""))
        .await
        .expect("a second GET /slow is answered at once, not admitted or queued");
    assert_eq!(refused.0, 503);
    served.release_slow.notify_one();
    assert_eq!(held.await.unwrap().0, 200);
    served.findings.push(Finding::NPlusOne {
        route: "/orders".into(),
        fingerprint: "SELECT * FROM customers WHERE id = ?".into(),
        count: 240,
        total_ms: 12.5,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    });
    served.findings.count_queries("/products/{id}", 1);
    served.findings.count_queries("/products/{id}", 3);

    for path in ["/_vitals", "/_vitals/"] {
        let (status, body) = get_raw(addr, path, "").await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains("<title>Vitals</title>"), "{path}");
        for external in ["src=", "href=", "@import", "url("] {
            assert!(
                !body.contains(external),
                "{path}: nothing loaded from elsewhere"
            );
        }
    }

    let (status, body) = get_raw(addr, "/_vitals/api/summary", "").await;
    assert_eq!(status, 200);
    let summary = json(&body);
    let routes = summary["routes"].as_array().unwrap();
    let products: Vec<&Value> = routes
        .iter()
        .filter(|r| r["route"] == "/products/{id}")
        .collect();
    assert_eq!(products.len(), 1, "one row per route: {summary}");
    let product = products[0];
    assert_eq!(product["requests"], 5);
    assert!(product["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(product["queries_per_request"], 2.0);
    let slow = routes.iter().find(|r| r["route"] == "/slow").unwrap();
    assert_eq!(slow["rejected"], 1);
    assert_eq!(summary["limiter"]["limit"], 1);
    assert_eq!(summary["limiter"]["rejected"], 1);
    assert!(
        routes.iter().all(|r| r["route"] != "/_vitals/api/summary"),
        "the dashboard's own requests are not measured"
    );

    let (status, body) = get_raw(addr, "/_vitals/api/findings", "").await;
    assert_eq!(status, 200);
    let findings = json(&body);
    assert_eq!(findings["findings"][0]["kind"], "n_plus_one");
    assert_eq!(findings["findings"][0]["count"], 240);
    assert_eq!(
        findings["findings"][0]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(findings["rejections"][0]["route"], "/slow");
    assert_eq!(findings["rejections"][0]["rejected"], 1);

    served.dashboard.sample_now();
    let (status, body) = get_raw(addr, "/_vitals/api/history", "").await;
    assert_eq!(status, 200);
    let history = json(&body);
    assert_eq!(history["interval_s"], 3600.0);
    let samples = history["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 1);
    let product_sample = samples[0]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/products/{id}")
        .unwrap();
    assert!(product_sample["requests_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(product_sample["queries_per_request"], 2.0);
    assert_eq!(samples[0]["limiter"]["limit"], 1);
    drop(served.limit);
}

#[tokio::test]
async fn the_sampler_keeps_a_bounded_history_and_samples_in_the_background() {
    let latency = LatencyRegistry::new();
    let dashboard = Dashboard::builder()
        .with_latency(latency)
        .with_history(Duration::from_millis(100), Duration::from_millis(300))
        .build()
        .unwrap();
    for _ in 0..10 {
        dashboard.sample_now();
    }
    assert_eq!(dashboard.history().len(), 3, "keep / every samples at most");
    let before = dashboard.history().last().unwrap().at_unix_ms;
    eventually("the background sampler to add a sample", || {
        dashboard.history().last().unwrap().at_unix_ms > before
    })
    .await;
    assert_eq!(dashboard.history().len(), 3, "still bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_loopback_peers_or_the_token_get_in() {
    let served = serve(Some("s3cret")).await;
    // Loopback: in, with or without the token.
    assert_eq!(
        get_raw(served.addr, "/_vitals/api/summary", "").await.0,
        200
    );

    // The same dashboard behind a server that knows no peer address (no connect info): only
    // the token opens it.
    let dashboard = Dashboard::builder()
        .with_bearer_token("s3cret")
        .build()
        .unwrap();
    let app = dashboard.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    assert_eq!(get_raw(addr, "/_vitals/api/summary", "").await.0, 403);
    assert_eq!(
        get_raw(addr, "/_vitals", "authorization: Bearer wrong\r\n")
            .await
            .0,
        403
    );
    assert_eq!(
        get_raw(addr, "/_vitals", "authorization: Bearer s3cret\r\n")
            .await
            .0,
        200
    );
}

#[test]
fn bad_settings_are_refused() {
    assert_eq!(
        Dashboard::builder().build().unwrap_err(),
        DashboardError::NoRuntime
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for prefix in ["", "/", "vitals", "/vitals/"] {
            assert!(matches!(
                Dashboard::builder().with_prefix(prefix).build(),
                Err(DashboardError::InvalidPrefix(_))
            ));
        }
        assert_eq!(
            Dashboard::builder()
                .with_bearer_token("")
                .build()
                .unwrap_err(),
            DashboardError::InvalidToken
        );
        for host in ["", "vitals.internal:8080", "a/b", "[::1]", "user@host"] {
            assert_eq!(
                Dashboard::builder()
                    .with_allowed_host(host)
                    .build()
                    .unwrap_err(),
                DashboardError::InvalidHost(host.to_owned()),
            );
        }
        assert!(
            Dashboard::builder()
                .with_allowed_host("vitals.internal")
                .build()
                .is_ok()
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_peer_naming_another_host_is_refused_unless_allowed_or_with_the_token() {
    let served = serve(Some("s3cret")).await;
    let host = |name: &str| format!("host: {name}\r\n");
    for path in ["/_vitals", "/_vitals/api/summary", "/_vitals/api/findings"] {
        // What a page rebound to 127.0.0.1 by its DNS sends: refused.
        for foreign in ["evil.example", "evil.example:3000", "vitals.internal"] {
            let (status, body) = request_raw(served.addr, "GET", path, &host(foreign)).await;
            assert_eq!(status, 403, "{foreign} {path}: {body}");
            assert!(!body.contains("/products"), "{body}");
        }
        // No host at all: refused (by the dashboard, or by hyper before it).
        let (status, _) = request_raw(served.addr, "GET", path, "").await;
        assert!(matches!(status, 400 | 403), "{path}: {status}");
        for local in ["localhost", "localhost:3000", "127.0.0.1:80", "[::1]:3000"] {
            assert_eq!(
                request_raw(served.addr, "GET", path, &host(local)).await.0,
                200,
                "{local} {path}"
            );
        }
        // The token opens it from any host.
        let with_token = format!("{}authorization: Bearer s3cret\r\n", host("evil.example"));
        assert_eq!(
            request_raw(served.addr, "GET", path, &with_token).await.0,
            200
        );
    }

    // A name the operator allowed.
    let dashboard = Dashboard::builder()
        .with_allowed_host("vitals.internal")
        .build()
        .unwrap();
    let app = dashboard
        .router()
        .merge(dashboard.guard(Router::new().route("/internal", get(|| async { "internal" }))));
    let addr = serve_with_peers(app).await;
    for path in ["/_vitals", "/internal"] {
        assert_eq!(
            request_raw(addr, "GET", path, &host("Vitals.Internal:8080"))
                .await
                .0,
            200,
            "{path}"
        );
        assert_eq!(
            request_raw(addr, "GET", path, &host("evil.example"))
                .await
                .0,
            403,
            "{path}"
        );
    }
}

/// A per-host breaker layer in the Downstream panel: a row per host called, named after it,
/// over real downstreams (two axum servers on loopback ports, one failing every call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_breakers_each_get_a_row_named_after_the_host() {
    async fn downstream(status: u16) -> SocketAddr {
        let app = Router::new().route(
            "/call",
            get(move || async move { axum::http::StatusCode::from_u16(status).unwrap() }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }
    let (failing, healthy) = (downstream(500).await, downstream(200).await);
    let layer = vitals_client::CircuitBreakerLayer::new("hooks")
        .with_minimum_calls(3)
        .per_host();
    let dashboard = Dashboard::builder()
        .with_host_breakers(layer.hosts().unwrap())
        .build()
        .unwrap();
    // The client: one GET over TCP to the request's authority.
    let transport = tower::service_fn(|request: http::Request<()>| async move {
        let addr: SocketAddr = request.uri().authority().unwrap().as_str().parse().unwrap();
        let (status, _) = get_raw(addr, request.uri().path(), "").await;
        Ok::<_, std::io::Error>(http::Response::builder().status(status).body(()).unwrap())
    });
    let client = tower::ServiceBuilder::new().layer(layer).service(transport);
    for addr in [failing, healthy, failing, healthy, failing, healthy] {
        let request = http::Request::get(format!("http://{addr}/call"))
            .body(())
            .unwrap();
        tower::ServiceExt::oneshot(client.clone(), request)
            .await
            .unwrap();
    }

    let app = dashboard.router();
    let addr = serve_with_peers(app).await;
    let (status, body) = get_raw(addr, "/_vitals/api/summary", "").await;
    assert_eq!(status, 200, "{body}");
    let mut rows = json(&body)["downstream"].as_array().unwrap().clone();
    rows.sort_by_key(|row| row["name"].as_str().unwrap().to_owned());
    let mut expected = vec![
        serde_json::json!({"name": failing.to_string(), "state": "open", "times_opened": 1,
            "window_calls": 0, "window_failures": 0}),
        serde_json::json!({"name": healthy.to_string(), "state": "closed", "times_opened": 0,
            "window_calls": 3, "window_failures": 0}),
    ];
    expected.sort_by_key(|row| row["name"].as_str().unwrap().to_owned());
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn rate_limits_are_listed_by_refusals() {
    use vitals_rate_limit::part::Decision;
    use vitals_rate_limit::{PeerAddr, Quota, RateLimitLayer, RateLimitSettings};

    let layer = RateLimitLayer::new(Quota::per_minute(100))
        .with_route("/checkout", RateLimitSettings::new(Quota::per_minute(1)))
        .with_route("/quiet", RateLimitSettings::new(Quota::per_minute(1)));
    let part = layer.part();
    let mut request = http::Request::new(());
    request
        .extensions_mut()
        .insert(PeerAddr("192.0.2.1".parse().unwrap()));
    let checkout = vitals_core::route::RouteLabel::from_static("/checkout");
    for _ in 0..3 {
        let _: Decision = part.check(&request, Some(&checkout));
    }
    let _: Decision = part.check(&request, None);
    let dashboard = Dashboard::builder()
        .with_rate_limit(layer.handle())
        .build()
        .unwrap();
    let addr = serve_with_peers(dashboard.router()).await;
    let (status, body) = get_raw(addr, "/_vitals/api/summary", "").await;
    assert_eq!(status, 200, "{body}");
    let rows = json(&body)["rate_limits"].as_array().unwrap().clone();
    let routes: Vec<&str> = rows.iter().map(|r| r["route"].as_str().unwrap()).collect();
    assert_eq!(routes, ["/checkout", "*", "/quiet"]);
    assert_eq!(
        rows[0],
        serde_json::json!({"route": "/checkout", "allowed": 1, "refused": 2,
            "shadow_refused": 0, "keys": 1, "evicted_early": 0})
    );
    assert_eq!(rows[1]["allowed"], 1);
}

#[cfg(feature = "response-cache")]
#[tokio::test]
async fn each_cached_route_shows_its_hit_ratio() {
    use tower::ServiceExt;
    use vitals_response_cache::ResponseCacheLayer;

    let cache = ResponseCacheLayer::new();
    let handle = cache.handle();
    let purge_handle = cache.handle();
    let app = Router::new()
        .route(
            "/items/{id}",
            get(|| async { ([("cache-control", "public, max-age=60")], "item") }),
        )
        .layer(cache);
    // One miss that stores, three hits.
    for _ in 0..4 {
        let request = http::Request::get("/items/7")
            .header("host", "shop.test")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        // Read to its end: a response is stored when its body ends whole.
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"item");
    }
    let dashboard = Dashboard::builder()
        .with_response_cache(handle)
        .build()
        .unwrap();
    let addr = serve_with_peers(dashboard.router()).await;
    let (status, body) = get_raw(addr, "/_vitals/api/summary", "").await;
    assert_eq!(status, 200, "{body}");
    let rows = json(&body)["caches"].as_array().unwrap().clone();
    assert_eq!(
        rows,
        [
            serde_json::json!({"route": "/items/{id}", "hit_ratio": 0.75, "hits": 3, "stale": 0,
            "collapsed": 0, "misses": 1, "bypassed": 0, "stored": 1, "wait_refused": 0})
        ]
    );
    let (_, page) = get_raw(addr, "/_vitals", "").await;
    assert!(page.contains(r#"<table id="caches">"#));

    // The opt-in purge route, behind the same access rule.
    let purge = serve_with_peers(dashboard.cache_purge_router()).await;
    assert_eq!(purge_handle.keys(), 1);
    let local = "host: localhost\r\n";
    for (method, path, status) in [
        ("GET", "/_vitals/cache?target=/items/7", 405),
        ("PURGE", "/_vitals/cache", 400),
        ("PURGE", "/_vitals/cache?target=/items/7&tag=x", 400),
        ("PURGE", "/_vitals/cache?target=items", 400),
        ("PURGE", "/_vitals/cache?colour=red", 400),
        ("DELETE", "/_vitals/cache?all=false", 400),
    ] {
        let (got, body) = request_raw(purge, method, path, local).await;
        assert_eq!(got, status, "{method} {path}: {body}");
    }
    assert_eq!(
        purge_handle.keys(),
        1,
        "nothing purged by a refused request"
    );
    let (status, _) = request_raw(
        purge,
        "PURGE",
        "/_vitals/cache?target=/items/7",
        "host: rebound.example\r\n",
    )
    .await;
    assert_eq!(status, 403, "a loopback peer naming another host");
    let (status, body) = request_raw(purge, "PURGE", "/_vitals/cache?target=/items/7", local).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"purged": {"target": "/items/7"}, "caches": 1})
    );
    assert_eq!(purge_handle.keys(), 0);
}
