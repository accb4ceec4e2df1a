//! The rate limit's quotas in a real Redis: shared by instances, exact over real time, the
//! script reloaded after `SCRIPT FLUSH`, and a paused, slow or dead Redis failing open or
//! closed as each quota says.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use tower::ServiceExt;
use vitals::rate_limit::{PeerAddr, Quota, RateLimitLayer, RedisStore};
use vitals_integration_tests::redis::{ThrowawayRedis, redis_url, unique_prefix};

/// An app behind `layer`, as one instance of a service.
fn instance(layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/items", get(|| async { "items" }))
        .layer(layer)
}

async fn send(app: &Router, client: &str) -> http::Response<axum::body::Body> {
    let mut request = Request::get("/items").body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(client.parse::<IpAddr>().unwrap()));
    app.clone().oneshot(request).await.unwrap()
}

async fn commands(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// How many times Redis ran the rate limit's script (by digest or sent whole).
async fn script_calls(connection: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            line.split(['=', ','])
                .nth(1)
                .and_then(|calls| calls.parse::<u64>().ok())
        })
        .sum()
}

#[tokio::test]
async fn two_instances_share_one_quota_and_refuse_locally_once_over() {
    // A server of its own: the test counts the scripts Redis ran, and the file's other tests
    // run theirs on the shared server at the same time.
    let Some(redis) =
        ThrowawayRedis::start("two_instances_share_one_quota_and_refuse_locally_once_over")
    else {
        return;
    };
    let url = redis.url();
    let prefix = unique_prefix("shared");
    let layer = || {
        RateLimitLayer::new(Quota::per_minute(6))
            .with_redis(RedisStore::new(&url).unwrap().with_prefix(prefix.clone()))
    };
    let (a, b) = (instance(layer()), instance(layer()));
    // Six between them, alternating; the seventh is refused on either.
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        let response = send(app, "192.0.2.1").await;
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        let remaining = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            remaining.starts_with(&format!(r#""per-minute";r={};"#, 5 - i)),
            "{remaining}"
        );
    }
    let refused = send(&b, "192.0.2.1").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "10");
    // Another client has its own quota in the same Redis.
    assert_eq!(send(&a, "192.0.2.2").await.status(), StatusCode::OK);
    // Once refused, instance b refuses the key without asking Redis again.
    let mut redis = commands(&url).await;
    let before = script_calls(&mut redis).await;
    for _ in 0..5 {
        assert_eq!(
            send(&b, "192.0.2.1").await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(script_calls(&mut redis).await, before);
    // Instance a has not seen the refusal: it asks Redis, which refuses.
    assert_eq!(
        send(&a, "192.0.2.1").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(script_calls(&mut redis).await, before + 1);
}

#[tokio::test]
async fn over_real_time_a_key_gets_the_burst_plus_the_rate_and_no_more() {
    let Some(url) = redis_url("over_real_time_a_key_gets_the_burst_plus_the_rate_and_no_more")
    else {
        return;
    };
    let store = RedisStore::new(&url)
        .unwrap()
        .with_prefix(unique_prefix("exact"))
        .with_timeout(Duration::from_secs(2));
    // 20 a second, 5 at once.
    let app = instance(RateLimitLayer::new(Quota::per_second(20).with_burst(5)).with_redis(store));
    // A greedy client for 1.5 s: at most 5 + 20 × 1.5 = 35 get through; Redis's clock and
    // ours differ by the round trips, so allow one more at the edge.
    let started = Instant::now();
    let mut allowed = 0;
    while started.elapsed() < Duration::from_millis(1_500) {
        if send(&app, "192.0.2.9").await.status() == StatusCode::OK {
            allowed += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 5.0 + 20.0 * elapsed;
    assert!(
        f64::from(allowed) <= bound + 1.0,
        "{allowed} in {elapsed} s > {bound}"
    );
    assert!(
        f64::from(allowed) >= bound - 4.0,
        "{allowed} in {elapsed} s, far under {bound}"
    );
    // A steady client at half the rate is never refused.
    for _ in 0..15 {
        assert_eq!(send(&app, "192.0.2.10").await.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_script_is_sent_again_after_script_flush() {
    let Some(url) = redis_url("the_script_is_sent_again_after_script_flush") else {
        return;
    };
    let store = RedisStore::new(&url)
        .unwrap()
        .with_prefix(unique_prefix("noscript"));
    let app = instance(RateLimitLayer::new(Quota::per_minute(100)).with_redis(store.clone()));
    assert_eq!(send(&app, "192.0.2.1").await.status(), StatusCode::OK);
    let mut redis = commands(&url).await;
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .unwrap();
    let response = send(&app, "192.0.2.1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let remaining = response.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert!(
        remaining.starts_with(r#""per-minute";r=98;"#),
        "{remaining}"
    );
    assert_eq!(store.failures(), 0);
}

#[tokio::test]
async fn a_paused_or_slow_redis_fails_open_or_closed_as_the_quota_says() {
    let Some(redis) = ThrowawayRedis::start("a_paused_or_slow_redis_fails_open_or_closed") else {
        return;
    };
    let store = RedisStore::new(&redis.url())
        .unwrap()
        .with_timeout(Duration::from_millis(100));
    let open = instance(RateLimitLayer::new(Quota::per_minute(100)).with_redis(store.clone()));
    let closed = instance(
        RateLimitLayer::new(Quota::per_minute(100).with_fail_closed()).with_redis(store.clone()),
    );
    assert_eq!(send(&open, "192.0.2.1").await.status(), StatusCode::OK);
    let mut connection = commands(&redis.url()).await;

    // Paused: every call times out.
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1_000)
        .arg("ALL")
        .query_async(&mut connection)
        .await
        .unwrap();
    let started = Instant::now();
    let allowed = send(&open, "192.0.2.1").await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "waited past the timeout"
    );
    assert_eq!(allowed.status(), StatusCode::OK);
    assert!(
        allowed.headers().get("ratelimit").is_none(),
        "no quota known: no headers"
    );
    let refused = send(&closed, "192.0.2.1").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(store.failures(), 2);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(send(&closed, "192.0.2.1").await.status(), StatusCode::OK);

    // Slow: DEBUG SLEEP holds the server past the timeout.
    let sleeper = tokio::spawn({
        let mut connection = commands(&redis.url()).await;
        async move {
            let () = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg("0.5")
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        send(&closed, "192.0.2.1").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(send(&open, "192.0.2.1").await.status(), StatusCode::OK);
    sleeper.await.unwrap();
    assert_eq!(store.failures(), 4);
}

#[tokio::test]
async fn a_dead_redis_fails_open_and_the_service_keeps_answering() {
    let Some(redis) = ThrowawayRedis::start("a_dead_redis_fails_open") else {
        return;
    };
    let store = RedisStore::new(&redis.url())
        .unwrap()
        .with_timeout(Duration::from_millis(100));
    let layer = RateLimitLayer::new(Quota::per_minute(100)).with_redis(store.clone());
    let app = instance(layer.clone());
    assert_eq!(send(&app, "192.0.2.1").await.status(), StatusCode::OK);
    let mut connection = commands(&redis.url()).await;
    let _: Result<(), _> = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query_async(&mut connection)
        .await;
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(send(&app, "192.0.2.1").await.status(), StatusCode::OK);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    assert_eq!(store.failures(), 20);
    let snapshot = layer.handle().snapshot().unwrap();
    assert_eq!((snapshot.allowed, snapshot.store_failures), (1, 20));
}

#[tokio::test]
async fn two_shops_on_one_redis_give_four_clients_one_checkout_quota() {
    let Some(url) = redis_url("two_shops_on_one_redis_give_four_clients_one_checkout_quota") else {
        return;
    };
    // One API key, unique to this run, so earlier runs' quotas in the same Redis do not count.
    let key = unique_prefix("fleet-key");
    let start = || {
        let mut config = vitals_integration_tests::test_config();
        config.redis_url = Some(url.clone());
        config.api_keys = vec![key.clone()];
        vitals_integration_tests::TestShop::start(config)
    };
    let (a, b) = (start().await, start().await);
    let started = Instant::now();
    let window = Duration::from_secs(2);
    let client = |shop: &vitals_integration_tests::TestShop| {
        let (http, url, key) = (shop.client().clone(), shop.url("/checkout"), key.clone());
        tokio::spawn(async move {
            let (mut allowed, mut refused) = (0_u32, 0_u32);
            while started.elapsed() < window {
                let response = http
                    .get(&url)
                    .header("x-api-key", &key)
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    200 => allowed += 1,
                    429 => refused += 1,
                    other => panic!("unexpected status {other}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (allowed, refused)
        })
    };
    let clients = [client(&a), client(&a), client(&b), client(&b)];
    let (mut allowed, mut refused) = (0, 0);
    for client in clients {
        let (ok, no) = client.await.unwrap();
        allowed += ok;
        refused += no;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // 5 a second with bursts of 10, shared: at most 10 + 5·T (one more for the round trips at
    // the window's edges). Two quotas of their own would let about twice as many through.
    let bound = 10.0 + 5.0 * elapsed;
    println!("{allowed} allowed, {refused} refused in {elapsed:.2} s (bound {bound:.1})");
    assert!(
        f64::from(allowed) <= bound + 1.0,
        "{allowed} allowed in {elapsed} s > {bound}"
    );
    assert!(
        f64::from(allowed) >= bound - 3.0,
        "{allowed} allowed in {elapsed} s, under {bound}"
    );
    assert!(refused > 0);
    // A refusal decided by Redis goes through the whole stack: timed, traced, counted.
    let mut over = None;
    for _ in 0..30 {
        let response = a
            .client()
            .get(a.url("/checkout"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            over = Some(response);
            break;
        }
    }
    let over = over.expect("a refusal within 30 requests");
    let timing = over.headers()["server-timing"].to_str().unwrap().to_owned();
    assert!(
        timing.contains("trace;desc=00-") && timing.contains("total;dur="),
        "{timing}"
    );
    assert!(over.headers().contains_key("x-request-id"));
    // The store's round trips and the refusals are in the metrics (no key among the labels).
    let metrics = a.get("/metrics").await.text().await.unwrap();
    for family in [
        "vitals_rate_limit_store_duration_seconds_bucket{le=",
        "vitals_rate_limit_refused_total{http_route=\"/checkout\",vitals_quota=\"per-second\"}",
        "vitals_rate_limit_allowed_total{http_route=\"/checkout\"}",
    ] {
        assert!(metrics.contains(family), "{family} missing from /metrics");
    }
    assert!(!metrics.contains(&key), "a key among the labels");
    // Each shop counted its own refusals.
    for shop in [&a, &b] {
        let summary = shop.get_json("/_vitals/api/summary", 200).await;
        let checkout = summary["rate_limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["route"] == "/checkout")
            .cloned()
            .unwrap_or_else(|| panic!("no /checkout row in {summary}"));
        assert!(checkout["refused"].as_u64().unwrap() > 0, "{checkout}");
        assert_eq!(checkout["keys"], 0, "in Redis, not in process: {checkout}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_request_refused_by_one_quota_spends_none_of_the_others() {
    let Some(url) = redis_url("a_request_refused_by_one_quota_spends_none_of_the_others") else {
        return;
    };
    let prefix = unique_prefix("all-or-nothing");
    let store = || RedisStore::new(&url).unwrap().with_prefix(prefix.clone());
    let both = instance(
        RateLimitLayer::new(Quota::per_minute(3).named("a"))
            .with_quota(Quota::per_minute(2).named("b"))
            .with_redis(store()),
    );
    assert_eq!(send(&both, "192.0.2.1").await.status(), StatusCode::OK);
    assert_eq!(send(&both, "192.0.2.1").await.status(), StatusCode::OK);
    // Quota b refuses; the refusal shows it alone.
    let refused = send(&both, "192.0.2.1").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["ratelimit"], r#""b";r=0;t=30"#);
    // Another instance with quota a alone (the same Redis key): a spent 2 of 3, not 3.
    let only_a = instance(RateLimitLayer::new(Quota::per_minute(3).named("a")).with_redis(store()));
    let response = send(&only_a, "192.0.2.1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let remaining = response.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert!(remaining.starts_with(r#""a";r=0;"#), "{remaining}");
}
