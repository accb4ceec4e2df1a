//! The cache on a real axum server over TCP: one fill for a burst of misses, what is never
//! stored, variants, stale answers on purpose, revalidation, invalidation and the bounds.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use vitals_response_cache::{CacheSettings, ResponseCacheHandle, ResponseCacheLayer, WaitTimeout};

/// Handler calls by route.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<&'static str, usize>>>);

impl Calls {
    fn count(&self, route: &'static str) -> usize {
        let mut calls = self.0.lock().unwrap();
        let count = calls.entry(route).or_default();
        *count += 1;
        *count
    }

    fn of(&self, route: &'static str) -> usize {
        self.0.lock().unwrap().get(route).copied().unwrap_or(0)
    }
}

static FLAKY_FAILS: AtomicUsize = AtomicUsize::new(0);

#[allow(clippy::too_many_lines)] // One route per behaviour under test.
fn app(calls: Calls) -> Router {
    Router::new()
        .route(
            "/slow/{id}",
            get(|State(calls): State<Calls>| async move {
                calls.count("slow");
                tokio::time::sleep(Duration::from_millis(300)).await;
                ([("cache-control", "public, max-age=60")], "slow answer")
            })
            .post(|State(calls): State<Calls>| async move {
                calls.count("slow-post");
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/fresh",
            get(|State(calls): State<Calls>| async move {
                let n = calls.count("fresh");
                (
                    [("cache-control", "max-age=60"), ("etag", "\"f1\"")],
                    format!("fresh {n}"),
                )
            }),
        )
        .route(
            "/private",
            get(|State(calls): State<Calls>| async move {
                let n = calls.count("private");
                // Slow enough that requests sent together overlap.
                tokio::time::sleep(Duration::from_millis(200)).await;
                ([("cache-control", "private, max-age=60")], format!("{n}"))
            }),
        )
        .route(
            "/cookie",
            get(|State(calls): State<Calls>| async move {
                let n = calls.count("cookie");
                (
                    [
                        ("cache-control", "max-age=60"),
                        ("set-cookie", "session=one-users"),
                    ],
                    format!("{n}"),
                )
            }),
        )
        .route(
            "/auth",
            get(
                |State(calls): State<Calls>, headers: HeaderMap| async move {
                    let n = calls.count("auth");
                    let public = headers.contains_key("x-public");
                    let policy = if public {
                        "public, max-age=60"
                    } else {
                        "max-age=60"
                    };
                    ([("cache-control", policy)], format!("{n}"))
                },
            ),
        )
        .route(
            "/lang",
            get(
                |State(calls): State<Calls>, headers: HeaderMap| async move {
                    calls.count("lang");
                    let language = headers
                        .get("accept-language")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_owned();
                    (
                        [("cache-control", "max-age=60"), ("vary", "Accept-Language")],
                        language,
                    )
                },
            ),
        )
        .route(
            "/swr",
            get(|State(calls): State<Calls>| async move {
                let n = calls.count("swr");
                tokio::time::sleep(Duration::from_millis(200)).await;
                (
                    [("cache-control", "max-age=1, stale-while-revalidate=30")],
                    format!("version {n}"),
                )
            }),
        )
        .route(
            "/hung-refresh",
            get(|State(calls): State<Calls>| async move {
                let n = calls.count("hung-refresh");
                if n == 2 {
                    // The first refresh never answers.
                    tokio::time::sleep(Duration::from_hours(1)).await;
                }
                (
                    [("cache-control", "max-age=1, stale-while-revalidate=30")],
                    format!("version {n}"),
                )
            }),
        )
        .route(
            "/flaky",
            get(|State(calls): State<Calls>| async move {
                let n = calls.count("flaky");
                if n == 1 {
                    ([("cache-control", "max-age=1, stale-if-error=60")], "good").into_response()
                } else {
                    FLAKY_FAILS.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::INTERNAL_SERVER_ERROR, "broken").into_response()
                }
            }),
        )
        .route(
            "/etag",
            get(
                |State(calls): State<Calls>, headers: HeaderMap| async move {
                    if headers
                        .get("if-none-match")
                        .is_some_and(|tag| tag == "\"v1\"")
                    {
                        calls.count("etag-304");
                        return (
                            StatusCode::NOT_MODIFIED,
                            [("etag", "\"v1\""), ("cache-control", "no-cache")],
                        )
                            .into_response();
                    }
                    calls.count("etag-200");
                    (
                        [("etag", "\"v1\""), ("cache-control", "no-cache")],
                        "tagged body",
                    )
                        .into_response()
                },
            ),
        )
        .route(
            "/big",
            get(|State(calls): State<Calls>| async move {
                calls.count("big");
                ([("cache-control", "max-age=60")], vec![b'x'; 2 << 20])
            }),
        )
        .route(
            "/tagged/{id}",
            get(|State(calls): State<Calls>| async move {
                let n = calls.count("tagged");
                (
                    [
                        ("cache-control", "max-age=60"),
                        ("surrogate-key", "catalogue p1"),
                    ],
                    format!("{n}"),
                )
            }),
        )
        .route(
            "/host",
            get(|headers: HeaderMap| async move {
                let host = headers["host"].to_str().unwrap().to_owned();
                ([("cache-control", "max-age=60")], host)
            }),
        )
        .route(
            "/plain-slow",
            get(|State(calls): State<Calls>| async move {
                calls.count("plain-slow");
                tokio::time::sleep(Duration::from_millis(300)).await;
                ([("cache-control", "max-age=60")], "plain")
            }),
        )
        .route(
            "/held",
            get(|State(calls): State<Calls>| async move {
                calls.count("held");
                tokio::time::sleep(Duration::from_millis(800)).await;
                ([("cache-control", "max-age=60")], "held")
            }),
        )
        .with_state(calls)
}

fn layer() -> ResponseCacheLayer {
    ResponseCacheLayer::new()
        .with_jitter(0.0)
        .with_route(
            "/held",
            CacheSettings::new()
                .with_wait(Duration::from_millis(100))
                .with_wait_timeout(WaitTimeout::ServiceUnavailable),
        )
        .with_route(
            "/hung-refresh",
            CacheSettings::new().with_refresh_timeout(Duration::from_millis(300)),
        )
}

async fn serve(layer: ResponseCacheLayer) -> (SocketAddr, Calls, ResponseCacheHandle) {
    let calls = Calls::default();
    let handle = layer.handle();
    let app = app(calls.clone()).layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, calls, handle)
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn cache_status(&self) -> &str {
        self.headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(address: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder().method(method).uri(path);
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request = request.header("host", "shop.test");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get_(address: SocketAddr, path: &str) -> Answer {
    send(address, "GET", path, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_misses_on_a_cold_key_makes_one_handler_call() {
    let (address, calls, _) = serve(layer()).await;
    let answers: Vec<Answer> = futures_join(200, || get_(address, "/slow/7")).await;
    assert_eq!(calls.of("slow"), 1, "200 concurrent misses, one fill");
    assert!(
        answers
            .iter()
            .all(|a| a.status == StatusCode::OK && a.body == "slow answer")
    );
    let stored = answers
        .iter()
        .filter(|a| a.cache_status().contains("stored"))
        .count();
    let collapsed = answers
        .iter()
        .filter(|a| a.cache_status() == "vitals; fwd=miss; collapsed")
        .count();
    // Requests whose connection was set up after the fill landed are plain hits.
    let hits = answers
        .iter()
        .filter(|a| a.cache_status().starts_with("vitals; hit;"))
        .count();
    assert_eq!(stored, 1, "only the filler stores");
    assert!(collapsed > 0, "some requests waited for the fill");
    assert_eq!(stored + collapsed + hits, 200);
    let hit = get_(address, "/slow/7").await;
    assert!(
        hit.cache_status().starts_with("vitals; hit; ttl="),
        "{}",
        hit.cache_status()
    );
    assert!(hit.headers.contains_key("age"));
    assert_eq!(calls.of("slow"), 1);
}

/// Runs `n` copies of a request at once.
async fn futures_join<F, Fut>(n: usize, make: F) -> Vec<Answer>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(make())).collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn a_fresh_hit_is_served_with_its_age_and_the_clients_copy_gets_a_304() {
    let (address, calls, _) = serve(layer()).await;
    let first = get_(address, "/fresh").await;
    assert_eq!(
        first.cache_status(),
        "vitals; fwd=uri-miss; fwd-status=200; stored"
    );
    let second = get_(address, "/fresh").await;
    assert_eq!(second.body, "fresh 1");
    assert!(second.cache_status().starts_with("vitals; hit; ttl="));
    let query_order = get_(address, "/fresh?b=2&a=1").await;
    let same = get_(address, "/fresh?a=1&b=2").await;
    assert_eq!(
        query_order.body, same.body,
        "the query's order makes one key"
    );
    let conditional = send(address, "GET", "/fresh", &[("if-none-match", "W/\"f1\"")]).await;
    assert_eq!(conditional.status, StatusCode::NOT_MODIFIED);
    assert_eq!(conditional.headers.get("etag").unwrap(), "\"f1\"");
    let head = send(address, "HEAD", "/fresh", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers.get("content-length").unwrap(), "7");
    assert_eq!(calls.of("fresh"), 2, "one fill per distinct target");
    let no_cache = send(address, "GET", "/fresh", &[("cache-control", "no-cache")]).await;
    assert!(
        no_cache.cache_status().contains("fwd=request"),
        "{}",
        no_cache.cache_status()
    );
    assert_eq!(calls.of("fresh"), 3);
}

#[tokio::test]
async fn what_belongs_to_one_user_is_never_stored() {
    let (address, calls, _) = serve(layer()).await;
    for _ in 0..2 {
        let private = get_(address, "/private").await;
        assert!(!private.cache_status().contains("stored"));
        let cookie = get_(address, "/cookie").await;
        assert!(cookie.headers.contains_key("set-cookie"));
        let with_cookie = send(address, "GET", "/fresh", &[("cookie", "session=a")]).await;
        assert_eq!(
            with_cookie.cache_status(),
            "vitals; fwd=bypass; fwd-status=200"
        );
        let authorized = send(address, "GET", "/auth", &[("authorization", "Bearer a")]).await;
        assert!(!authorized.cache_status().contains("stored"));
    }
    assert_eq!(calls.of("private"), 2);
    assert_eq!(calls.of("cookie"), 2);
    assert_eq!(calls.of("auth"), 2);
    assert_eq!(
        calls.of("fresh"),
        2,
        "requests with a cookie go past the cache"
    );
    // `public` lets a response to an authorized request be shared (RFC 9111 §3.5).
    send(
        address,
        "GET",
        "/auth",
        &[("authorization", "Bearer a"), ("x-public", "1")],
    )
    .await;
    let shared = send(address, "GET", "/auth", &[("authorization", "Bearer b")]).await;
    assert!(shared.cache_status().contains("hit"));
}

#[tokio::test]
async fn vary_keeps_one_variant_per_value() {
    let (address, calls, _) = serve(layer()).await;
    let en = send(address, "GET", "/lang", &[("accept-language", "en")]).await;
    let fr = send(address, "GET", "/lang", &[("accept-language", "fr")]).await;
    assert!(
        fr.cache_status().contains("fwd=vary-miss"),
        "{}",
        fr.cache_status()
    );
    let en_again = send(address, "GET", "/lang", &[("accept-language", "en")]).await;
    let none = get_(address, "/lang").await;
    assert_eq!((en.body.as_str(), fr.body.as_str()), ("en", "fr"));
    assert_eq!(en_again.body, "en");
    assert!(en_again.cache_status().contains("hit"));
    assert_eq!(none.body, "none");
    assert_eq!(calls.of("lang"), 3);
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_once() {
    let (address, calls, _) = serve(layer()).await;
    assert_eq!(get_(address, "/swr").await.body, "version 1");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let started = Instant::now();
    let stale = futures_join(20, || get_(address, "/swr")).await;
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "stale answers do not wait for the handler"
    );
    assert!(stale.iter().all(|a| a.body == "version 1"));
    assert!(
        stale.iter().all(|a| a.cache_status().contains("ttl=-")),
        "{:?}",
        stale[0].cache_status()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        calls.of("swr"),
        2,
        "one background refresh for twenty stale answers"
    );
    let fresh = get_(address, "/swr").await;
    assert_eq!(fresh.body, "version 2");
    assert!(!fresh.cache_status().contains("ttl=-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_hangs_is_given_up_at_its_timeout_and_the_next_one_runs() {
    let (address, calls, _) = serve(layer()).await;
    assert_eq!(get_(address, "/hung-refresh").await.body, "version 1");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // Stale: answered at once, and a refresh starts (and hangs).
    assert_eq!(get_(address, "/hung-refresh").await.body, "version 1");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls.of("hung-refresh"), 2);
    // Within the refresh's timeout (300 ms): no second refresh.
    assert_eq!(get_(address, "/hung-refresh").await.body, "version 1");
    assert_eq!(calls.of("hung-refresh"), 2);
    // Past it, the hung refresh is given up: the next stale answer starts another.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get_(address, "/hung-refresh").await.body, "version 1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.of("hung-refresh"), 3);
    assert_eq!(get_(address, "/hung-refresh").await.body, "version 3");
}

#[tokio::test]
async fn stale_if_error_answers_for_a_failing_handler() {
    let (address, calls, _) = serve(layer()).await;
    assert_eq!(get_(address, "/flaky").await.body, "good");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let answer = get_(address, "/flaky").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "good");
    assert!(
        answer.cache_status().contains("ttl=-"),
        "{}",
        answer.cache_status()
    );
    assert_eq!(calls.of("flaky"), 2, "the handler was tried");
}

#[tokio::test]
async fn a_stale_response_is_revalidated_with_the_handler() {
    let (address, calls, _) = serve(layer()).await;
    assert_eq!(get_(address, "/etag").await.body, "tagged body");
    let revalidated = get_(address, "/etag").await;
    assert_eq!(revalidated.status, StatusCode::OK);
    assert_eq!(revalidated.body, "tagged body");
    assert_eq!(
        revalidated.cache_status(),
        "vitals; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!((calls.of("etag-200"), calls.of("etag-304")), (1, 1));
    let clients_copy = send(address, "GET", "/etag", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(clients_copy.status, StatusCode::NOT_MODIFIED);
    assert_eq!((calls.of("etag-200"), calls.of("etag-304")), (1, 2));
}

#[tokio::test]
async fn an_unsafe_method_drops_what_was_stored_for_its_target() {
    let (address, calls, _) = serve(layer()).await;
    get_(address, "/slow/1").await;
    assert!(
        get_(address, "/slow/1")
            .await
            .cache_status()
            .contains("hit")
    );
    let post = send(address, "POST", "/slow/1", &[]).await;
    assert_eq!(post.cache_status(), "vitals; fwd=method; fwd-status=204");
    assert!(
        get_(address, "/slow/1")
            .await
            .cache_status()
            .contains("fwd=uri-miss")
    );
    assert_eq!(calls.of("slow"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_a_key_that_cannot_be_stored_do_not_queue_behind_each_other() {
    let (address, calls, _) = serve(layer()).await;
    // The first finds out the response is private; ten at once then go straight through.
    get_(address, "/private").await;
    let answers = futures_join(10, || get_(address, "/private")).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    // A request that had waited on another's fill would say `fwd=miss`.
    assert!(
        answers
            .iter()
            .all(|a| a.cache_status() == "vitals; fwd=uri-miss; fwd-status=200"),
        "{:?}",
        answers.iter().map(Answer::cache_status).collect::<Vec<_>>()
    );
    assert_eq!(calls.of("private"), 11);
}

#[tokio::test]
async fn one_hosts_response_never_answers_another_host() {
    let (address, _, _) = serve(layer()).await;
    let a = send(address, "GET", "/host", &[("host", "a.test")]).await;
    let b = send(address, "GET", "/host", &[("host", "b.test")]).await;
    assert_eq!((a.body.as_str(), b.body.as_str()), ("a.test", "b.test"));
    let a_again = send(address, "GET", "/host", &[("host", "A.test")]).await;
    assert_eq!(a_again.body, "a.test");
    assert!(a_again.cache_status().contains("hit"));
}

#[tokio::test]
async fn a_head_inside_stale_while_revalidate_leaves_the_stored_response() {
    let (address, calls, _) = serve(layer()).await;
    get_(address, "/swr").await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let head = send(address, "HEAD", "/swr", &[]).await;
    assert!(
        head.cache_status().contains("ttl=-"),
        "{}",
        head.cache_status()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = get_(address, "/swr").await;
    assert!(
        after.cache_status().contains("hit"),
        "{}",
        after.cache_status()
    );
    assert_eq!(
        after.body, "version 2",
        "the refresh stored the new version"
    );
    assert_eq!(calls.of("swr"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_credentials_does_not_spoil_the_key_for_others() {
    let (address, calls, _) = serve(layer()).await;
    let authorized = send(
        address,
        "GET",
        "/plain-slow",
        &[("authorization", "Bearer a")],
    )
    .await;
    assert!(!authorized.cache_status().contains("stored"));
    // The others still make one fill between them.
    let answers = futures_join(10, || get_(address, "/plain-slow")).await;
    let stored = answers
        .iter()
        .filter(|a| a.cache_status().contains("stored"))
        .count();
    assert_eq!(
        stored,
        1,
        "{:?}",
        answers.iter().map(Answer::cache_status).collect::<Vec<_>>()
    );
    assert_eq!(calls.of("plain-slow"), 2);
}

#[tokio::test]
async fn an_invalidation_during_a_fill_keeps_the_fill_from_being_stored() {
    let (address, calls, _) = serve(layer()).await;
    let fill = tokio::spawn(get_(address, "/slow/3"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    send(address, "POST", "/slow/3", &[]).await;
    assert_eq!(fill.await.unwrap().body, "slow answer");
    let next = get_(address, "/slow/3").await;
    assert!(
        next.cache_status().contains("fwd=uri-miss"),
        "{}",
        next.cache_status()
    );
    assert_eq!(calls.of("slow"), 2);
}

#[tokio::test]
async fn a_body_over_the_limit_passes_through_unstored() {
    let (address, calls, _) = serve(layer()).await;
    for _ in 0..2 {
        let big = get_(address, "/big").await;
        assert_eq!(big.body.len(), 2 << 20);
        assert!(!big.cache_status().contains("stored"));
    }
    assert_eq!(calls.of("big"), 2);
}

#[tokio::test]
async fn tags_purge_and_never_reach_the_client() {
    let (address, calls, handle) = serve(layer()).await;
    let first = get_(address, "/tagged/1").await;
    assert!(!first.headers.contains_key("surrogate-key"));
    get_(address, "/tagged/2").await;
    assert!(
        get_(address, "/tagged/1")
            .await
            .cache_status()
            .contains("hit")
    );
    handle.purge_tag("catalogue");
    assert!(
        get_(address, "/tagged/1")
            .await
            .cache_status()
            .contains("fwd=uri-miss")
    );
    handle.purge("/tagged/1");
    assert!(
        get_(address, "/tagged/1")
            .await
            .cache_status()
            .contains("fwd=uri-miss")
    );
    assert_eq!(calls.of("tagged"), 4);
    handle.purge_route("/tagged/{id}");
    assert_eq!(handle.keys(), 0);
}

#[tokio::test]
async fn a_wait_past_its_limit_gets_503_where_the_route_says_so() {
    let (address, calls, _) = serve(layer()).await;
    let filler = tokio::spawn(get_(address, "/held"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiter = get_(address, "/held").await;
    assert_eq!(waiter.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(waiter.headers.get("retry-after").unwrap(), "1");
    assert_eq!(filler.await.unwrap().body, "held");
    assert_eq!(calls.of("held"), 1);
}

#[tokio::test]
async fn a_waiter_whose_client_leaves_does_not_cancel_the_fill() {
    let (address, calls, _) = serve(layer()).await;
    let filler = tokio::spawn(get_(address, "/slow/9"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let leaver = tokio::spawn(get_(address, "/slow/9"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    leaver.abort();
    assert_eq!(filler.await.unwrap().body, "slow answer");
    assert!(
        get_(address, "/slow/9")
            .await
            .cache_status()
            .contains("hit")
    );
    assert_eq!(calls.of("slow"), 1);
}
