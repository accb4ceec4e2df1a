//! The response-cache part inside `VitalsLayer`, on a real axum server over TCP: between the
//! rate limit and the concurrency limit — a hit or a wait for another request's fill takes no
//! permit; outside cache headers — what it stores is the response as they made it (their
//! ETag), without what the outer parts add for one client; a stale answer's refresh runs in
//! the background through the parts inside the cache.
#![cfg(all(
    feature = "response-cache-stack",
    feature = "concurrency",
    feature = "cache-headers",
    feature = "timing"
))]
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use vitals::cache_headers::CachePolicy;
use vitals::concurrency::ConcurrencyLimitLayer;
use vitals::response_cache::CacheSettings;
use vitals::{RouteSettings, VitalsLayer};

/// Serves `app` on a loopback port.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

struct Answer {
    status: u16,
    cache_status: String,
    etag: String,
    server_timing: String,
    body: String,
}

async fn fetch(client: &reqwest::Client, address: SocketAddr, path: &str) -> Answer {
    let response = client
        .get(format!("http://{address}{path}"))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (cache_status, etag, server_timing) = (
        header("cache-status"),
        header("etag"),
        header("server-timing"),
    );
    Answer {
        status: response.status().as_u16(),
        cache_status,
        etag,
        server_timing,
        body: response.text().await.unwrap(),
    }
}

/// A route of the catalogue: public for a minute (the cache-headers part says so), kept in the
/// response cache.
fn catalogue(settings: CacheSettings) -> RouteSettings {
    RouteSettings::new()
        .with_cache_policy(CachePolicy::public(Duration::from_mins(1)))
        .with_response_cache(settings)
}

/// `/catalogue` takes 200 ms and counts its calls; `/gate` holds its permit until `gate` is
/// opened; `/other` is not cached.
fn shop(
    vitals: &VitalsLayer,
    calls: &Arc<AtomicUsize>,
    gate: &Arc<tokio::sync::Semaphore>,
) -> Router {
    let calls = Arc::clone(calls);
    let gate = Arc::clone(gate);
    Router::new()
        .route(
            "/catalogue",
            get(move || {
                let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    format!("catalogue {call}")
                }
            }),
        )
        .route(
            "/gate",
            get(move || async move {
                gate.acquire().await.unwrap().forget();
                "through"
            }),
        )
        .route("/other", get(|| async { "other" }))
        .layer(vitals.clone())
}

/// No request's poll was held for anything like a fill's 200 ms (a loaded machine's preemption
/// or steal may still make a short blocking finding).
fn assert_no_poll_held_long(findings: &vitals::core::findings::Findings) {
    let blocking: Vec<_> = findings
        .recent()
        .into_iter()
        .filter(|recorded| {
            matches!(
                recorded.finding,
                vitals::core::findings::Finding::Blocking { longest_poll_ms, .. }
                    if longest_poll_ms >= 100.0
            )
        })
        .collect();
    assert!(blocking.is_empty(), "{blocking:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_misses_makes_one_fill_and_hits_take_no_permit() {
    // One permit, no queue: a request that needed one while the fill holds it is refused.
    let findings = vitals::core::findings::Findings::new(1024);
    let vitals = VitalsLayer::builder()
        .with_findings(findings.clone())
        .with_concurrency_limit(ConcurrencyLimitLayer::new(1).with_max_queued(0))
        .with_route("/catalogue", catalogue(CacheSettings::new()))
        .build()
        .unwrap();
    assert!(vitals.response_cache().is_some());
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let address = serve(shop(&vitals, &calls, &gate)).await;
    let client = reqwest::Client::new();

    let burst: Vec<_> = (0..200)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { fetch(&client, address, "/catalogue").await })
        })
        .collect();
    let mut answers = Vec::new();
    for request in burst {
        answers.push(request.await.unwrap());
    }
    let mut seen = std::collections::BTreeMap::new();
    for answer in &answers {
        *seen
            .entry((answer.status, answer.cache_status.clone()))
            .or_insert(0) += 1;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one handler call: {seen:?}"
    );
    assert!(
        answers
            .iter()
            .all(|a| a.status == 200 && a.body == "catalogue 1")
    );
    let stored = answers
        .iter()
        .filter(|a| a.cache_status == "vitals; fwd=uri-miss; fwd-status=200; stored")
        .count();
    assert_eq!(stored, 1);
    // Waiting for the fill held no thread.
    assert_no_poll_held_long(&findings);
    assert!(
        answers.iter().all(|a| a.cache_status.contains("stored")
            || a.cache_status.contains("collapsed")
            || a.cache_status.starts_with("vitals; hit")),
        "{:?}",
        answers.iter().map(|a| &a.cache_status).collect::<Vec<_>>()
    );

    // The stored response is the one cache headers made (their ETag); what the outer parts add
    // for one client is added again to each answer, never stored: one `total`, one `cache`.
    let filled = answers
        .iter()
        .find(|a| a.cache_status.contains("stored"))
        .unwrap();
    assert!(filled.etag.starts_with('"'), "{}", filled.etag);
    let hit = fetch(&client, address, "/catalogue").await;
    assert!(
        hit.cache_status.starts_with("vitals; hit"),
        "{}",
        hit.cache_status
    );
    assert_eq!(hit.etag, filled.etag);
    assert_eq!(
        hit.server_timing.matches("total;").count(),
        1,
        "{}",
        hit.server_timing
    );
    assert_eq!(
        hit.server_timing.matches("cache;").count(),
        1,
        "{}",
        hit.server_timing
    );

    // The one permit held: other routes are refused, the cached route still answers.
    let held = tokio::spawn({
        let client = client.clone();
        async move { fetch(&client, address, "/gate").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fetch(&client, address, "/other").await.status, 503);
    let hit = fetch(&client, address, "/catalogue").await;
    assert_eq!(hit.status, 200);
    assert!(
        hit.cache_status.starts_with("vitals; hit"),
        "{}",
        hit.cache_status
    );
    gate.add_permits(1);
    assert_eq!(held.await.unwrap().status, 200);

    // A route without cache settings is left alone.
    let other = fetch(&client, address, "/other").await;
    assert_eq!((other.status, other.cache_status.as_str()), (200, ""));

    // The handle purges what the stack stored.
    assert!(vitals.response_cache().unwrap().purge("/catalogue"));
    let refilled = fetch(&client, address, "/catalogue").await;
    assert_eq!(
        refilled.cache_status,
        "vitals; fwd=uri-miss; fwd-status=200; stored"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A stack caching `route` alone, `public` for one second, with `settings`, no jitter.
fn one_second(route: &str, settings: CacheSettings, timeout: Option<Duration>) -> VitalsLayer {
    let mut own = RouteSettings::new()
        .with_cache_policy(CachePolicy::public(Duration::from_secs(1)))
        .with_response_cache(settings);
    if let Some(timeout) = timeout {
        own = own.with_timeout(timeout);
    }
    VitalsLayer::builder()
        .with_response_cache(
            vitals::response_cache::ResponseCacheLayer::new()
                .only_listed_routes()
                .with_jitter(0.0),
        )
        .with_route(route, own)
        .build()
        .unwrap()
}

/// `route` behind `vitals`: its `GET` counts its calls in `calls` and answers what `answer`
/// makes of the call's number; its `POST` answers `204`.
fn counting<F, Fut, R>(
    vitals: &VitalsLayer,
    route: &str,
    calls: &Arc<AtomicUsize>,
    answer: F,
) -> Router
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: axum::response::IntoResponse + 'static,
{
    let calls = Arc::clone(calls);
    Router::new()
        .route(
            route,
            get(move || answer(calls.fetch_add(1, Ordering::SeqCst) + 1))
                .post(|| async { StatusCode::NO_CONTENT }),
        )
        .layer(vitals.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_answer_is_refreshed_in_the_background_through_the_parts_inside() {
    let calls = Arc::new(AtomicUsize::new(0));
    let vitals = one_second(
        "/prices",
        CacheSettings::new().with_stale_while_revalidate(Duration::from_mins(1)),
        None,
    );
    let app = counting(&vitals, "/prices", &calls, |call| async move {
        format!("prices {call}")
    });
    let address = serve(app).await;
    let client = reqwest::Client::new();

    let first = fetch(&client, address, "/prices").await;
    assert_eq!(
        first.cache_status,
        "vitals; fwd=uri-miss; fwd-status=200; stored"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Stale: answered at once, and refreshed once in the background.
    let stale = fetch(&client, address, "/prices").await;
    assert_eq!(stale.body, "prices 1");
    assert!(
        stale.cache_status.starts_with("vitals; hit; ttl=-"),
        "{}",
        stale.cache_status
    );
    let mut refreshed = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let answer = fetch(&client, address, "/prices").await;
        if answer.body == "prices 2" {
            refreshed = Some(answer);
            break;
        }
    }
    let refreshed = refreshed.expect("the refresh stored the new response");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh");
    assert!(
        refreshed.cache_status.starts_with("vitals; hit"),
        "{}",
        refreshed.cache_status
    );
    // Through the cache-headers part: the refreshed response has its own computed ETag, and
    // nothing rendered for the refresh (no `Server-Timing` of its own) was stored with it.
    assert!(refreshed.etag.starts_with('"') && refreshed.etag != first.etag);
    assert_eq!(refreshed.server_timing.matches("total;").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_answers_stale_and_an_unsafe_method_invalidates() {
    let calls = Arc::new(AtomicUsize::new(0));
    let vitals = one_second(
        "/stock",
        CacheSettings::new().with_stale_if_error(Duration::from_mins(1)),
        None,
    );
    let app = counting(&vitals, "/stock", &calls, |call| async move {
        if call == 1 {
            (StatusCode::OK, format!("stock {call}"))
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, "down".to_owned())
        }
    });
    let address = serve(app).await;
    let client = reqwest::Client::new();

    assert_eq!(fetch(&client, address, "/stock").await.body, "stock 1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = fetch(&client, address, "/stock").await;
    assert_eq!((stale.status, stale.body.as_str()), (200, "stock 1"));
    assert!(
        stale.cache_status.starts_with("vitals; hit; ttl=-"),
        "{}",
        stale.cache_status
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the handler was tried");

    // A successful unsafe method on the target drops what was stored (RFC 9111 §4.4).
    let posted = client
        .post(format!("http://{address}/stock"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 204);
    let after = fetch(&client, address, "/stock").await;
    assert_eq!((after.status, after.body.as_str()), (500, "down"));
    assert!(
        after.cache_status.contains("fwd=uri-miss"),
        "{}",
        after.cache_status
    );
}

#[test]
fn a_stack_without_a_response_cache_has_no_handle() {
    assert!(VitalsLayer::new().response_cache().is_none());
    let vitals = VitalsLayer::builder()
        .without_response_cache()
        .build()
        .unwrap();
    assert!(vitals.response_cache().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passed_is_answered_stale_and_the_permit_goes_back() {
    let calls = Arc::new(AtomicUsize::new(0));
    let vitals = one_second(
        "/quote",
        CacheSettings::new().with_stale_if_error(Duration::from_mins(1)),
        Some(Duration::from_millis(100)),
    );
    let app = counting(&vitals, "/quote", &calls, |call| async move {
        if call > 1 {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        format!("quote {call}")
    });
    let address = serve(app).await;
    let client = reqwest::Client::new();

    assert_eq!(fetch(&client, address, "/quote").await.body, "quote 1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = std::time::Instant::now();
    let stale = fetch(&client, address, "/quote").await;
    assert_eq!((stale.status, stale.body.as_str()), (200, "quote 1"));
    assert!(
        stale.cache_status.starts_with("vitals; hit; ttl=-"),
        "{}",
        stale.cache_status
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cut at the deadline"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let limiter = vitals.limiter().unwrap();
    assert_eq!(limiter.snapshot().in_flight, 0, "no permit kept");
}

/// A service that fails (an `Err`, not a `500`) after its first answer, behind the stack with a
/// cache of every route by the responses' own headers.
#[tokio::test]
async fn a_failing_service_is_answered_stale_and_without_a_stale_response_fails() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};
    let calls = Arc::new(AtomicUsize::new(0));
    let vitals = VitalsLayer::builder()
        .with_response_cache(
            vitals::response_cache::ResponseCacheLayer::new()
                .with_jitter(0.0)
                .with_defaults(CacheSettings::new().with_stale_if_error(Duration::from_mins(1))),
        )
        .build()
        .unwrap();
    let service = vitals.layer(tower::service_fn({
        let calls = Arc::clone(&calls);
        move |_: http::Request<Body>| {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if call == 1 {
                    let response = http::Response::builder()
                        .header("cache-control", "public, max-age=1")
                        .body(Body::from("inventory 1"))
                        .unwrap();
                    Ok(response)
                } else {
                    Err(std::io::Error::other("the inventory service is down"))
                }
            }
        }
    }));
    let send = |service: &_| {
        let service = Clone::clone(service);
        async move {
            ServiceExt::<http::Request<Body>>::oneshot(
                service,
                http::Request::get("/inventory")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
        }
    };
    let first = send(&service).await.unwrap();
    assert_eq!(
        first.into_body().collect().await.unwrap().to_bytes(),
        "inventory 1"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let stale = send(&service).await.unwrap();
    assert_eq!(stale.status(), 200);
    let cache_status = stale.headers()["cache-status"].to_str().unwrap().to_owned();
    assert!(
        cache_status.starts_with("vitals; hit; ttl=-"),
        "{cache_status}"
    );
    assert_eq!(
        stale.into_body().collect().await.unwrap().to_bytes(),
        "inventory 1"
    );
    assert_eq!(vitals.limiter().unwrap().snapshot().in_flight, 0);

    // Nothing stored to stand in: the failure is the answer.
    vitals.response_cache().unwrap().clear();
    assert!(send(&service).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
