//! `POST /orders` on the shop over real TCP, on SQLite and PostgreSQL: 100 concurrent requests
//! with one `Idempotency-Key` make one order (counted in the database); the rest get 409 or the
//! first one's answer replayed; the key with another body gets 422; no key, 400.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use vitals_integration_tests::{TestShop, postgres_admin_url};

async fn one_order_for_one_key(shop: &TestShop) {
    let before = shop.shop().db().orders_placed().await.unwrap();
    let body = serde_json::json!({ "customer_id": 3, "product_id": 5, "quantity": 2 });
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let request = shop
                .client()
                .post(shop.url("/orders"))
                .header("idempotency-key", "\"order-7f3a\"")
                .json(&body);
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let replayed = response.headers().contains_key("idempotent-replayed");
                let text = response.text().await.unwrap();
                (status, replayed, text)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    let after = shop.shop().db().orders_placed().await.unwrap();
    assert_eq!(after - before, 1, "one insert for one key");
    let first: Vec<_> = answers.iter().filter(|(s, r, _)| *s == 201 && !r).collect();
    assert_eq!(first.len(), 1, "{answers:?}");
    for (status, replayed, text) in &answers {
        match status {
            201 if *replayed => assert_eq!(text, &first[0].2, "the same answer, replayed"),
            201 | 409 => {}
            other => panic!("unexpected {other}: {text}"),
        }
    }
    // Afterwards, a retry is a replay: never a second order.
    let retry = shop
        .client()
        .post(shop.url("/orders"))
        .header("idempotency-key", "\"order-7f3a\"")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let other = serde_json::json!({ "customer_id": 3, "product_id": 5, "quantity": 3 });
    let reused = shop
        .client()
        .post(shop.url("/orders"))
        .header("idempotency-key", "\"order-7f3a\"")
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), 422);
    assert_eq!(reused.headers()["content-type"], "application/problem+json");
    let keyless = shop
        .client()
        .post(shop.url("/orders"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(keyless.status(), 400);
    assert_eq!(shop.shop().db().orders_placed().await.unwrap() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_makes_one_order_on_sqlite() {
    let shop = TestShop::start_sqlite().await;
    one_order_for_one_key(&shop).await;
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_makes_one_order_on_postgres() {
    let Some(admin) = postgres_admin_url("one_key_makes_one_order_on_postgres") else {
        return;
    };
    let shop = TestShop::start_postgres(&admin).await;
    one_order_for_one_key(&shop).await;
    shop.shutdown().await;
}

/// Two shops on one Redis: 100 concurrent requests with one key, half to each, make one order
/// between them; a retry to either is a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shops_on_one_redis_make_one_order() {
    use vitals_integration_tests::redis::{redis_url, unique_prefix};
    let Some(url) = redis_url("two_shops_on_one_redis_make_one_order") else {
        return;
    };
    let prefix = unique_prefix("idempotency");
    let start = || {
        let mut config = vitals_integration_tests::test_config();
        config.redis_url = Some(url.clone());
        config.redis_prefix.clone_from(&prefix);
        TestShop::start(config)
    };
    let shops = [start().await, start().await];
    let body = serde_json::json!({ "customer_id": 4, "product_id": 2, "quantity": 1 });
    let before: i64 = {
        let mut total = 0;
        for shop in &shops {
            total += shop.shop().db().orders_placed().await.unwrap();
        }
        total
    };
    let requests: Vec<_> = (0..100)
        .map(|n| {
            let shop = &shops[n % 2];
            let request = shop
                .client()
                .post(shop.url("/orders"))
                .header("idempotency-key", "\"fleet-order\"")
                .json(&body);
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let replayed = response.headers().contains_key("idempotent-replayed");
                (status, replayed)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    let mut after = 0;
    for shop in &shops {
        after += shop.shop().db().orders_placed().await.unwrap();
    }
    assert_eq!(
        after - before,
        1,
        "one insert across the fleet: {answers:?}"
    );
    assert_eq!(answers.iter().filter(|(s, r)| *s == 201 && !r).count(), 1);
    assert!(
        answers.iter().all(|(s, _)| *s == 201 || *s == 409),
        "{answers:?}"
    );
    // The record is written in the background as the first answer ends: a retry to the other
    // shop soon replays it.
    let mut replayed = false;
    for _ in 0..100 {
        let retry = shops[1]
            .client()
            .post(shops[1].url("/orders"))
            .header("idempotency-key", "\"fleet-order\"")
            .json(&body)
            .send()
            .await
            .unwrap();
        if retry.status() == 201 && retry.headers().contains_key("idempotent-replayed") {
            replayed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(replayed, "the other shop replays the first answer");
    for shop in shops {
        shop.shutdown().await;
    }
}

/// Redis gone: a request with a key gets 503 + `Retry-After` (a write must not run
/// unprotected), nothing is inserted, and the shop keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_503_for_keyed_writes_not_a_500() {
    use vitals_integration_tests::redis::ThrowawayRedis;
    let Some(redis) = ThrowawayRedis::start("redis_down_means_503_for_keyed_writes_not_a_500")
    else {
        return;
    };
    let mut config = vitals_integration_tests::test_config();
    config.redis_url = Some(redis.url());
    let shop = TestShop::start(config).await;
    drop(redis);
    let before = shop.shop().db().orders_placed().await.unwrap();
    let response = shop
        .client()
        .post(shop.url("/orders"))
        .header("idempotency-key", "\"while-down\"")
        .json(&serde_json::json!({ "customer_id": 4, "product_id": 2, "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(shop.shop().db().orders_placed().await.unwrap(), before);
    assert_eq!(shop.get("/healthz").await.status(), 200);
    shop.shutdown().await;
}

/// With Redis: a 5xx frees the key (the retry runs), a key reused for another body is 422, and
/// a record's lease ends with a crashed holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frees_a_failed_key_and_refuses_another_body() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::routing::post;
    use vitals::idempotency::{IdempotencyLayer, RedisStore};
    use vitals_integration_tests::redis::{redis_url, unique_prefix};

    let Some(url) = redis_url("redis_frees_a_failed_key_and_refuses_another_body") else {
        return;
    };
    let runs = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&runs);
    let store = RedisStore::new(&url)
        .unwrap()
        .with_prefix(unique_prefix("idempotency-release"))
        .with_lease(std::time::Duration::from_millis(300));
    let app = axum::Router::new()
        .route(
            "/pay",
            post(move || {
                let counted = Arc::clone(&counted);
                async move {
                    if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                        (axum::http::StatusCode::BAD_GATEWAY, "gateway down")
                    } else {
                        (axum::http::StatusCode::OK, "paid")
                    }
                }
            }),
        )
        .route_layer(IdempotencyLayer::new().with_redis(store.clone()));
    let pay = |key: &'static str, body: &'static str| pay(app.clone(), key, body);
    assert_eq!(pay("\"p1\"", "10").await, (502, false));
    // The release runs in the background: the retry runs once it has.
    let mut retried = (0, false);
    for _ in 0..50 {
        retried = pay("\"p1\"", "10").await;
        if retried.0 != 409 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(retried, (200, false), "the key was freed and the retry ran");
    assert_eq!(until_replayed(&app, "\"p1\"", "10").await, (200, true));
    assert_eq!(pay("\"p1\"", "99").await, (422, false));
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // An instance that crashed holding a key: its marker (set here as it would have) stops
    // the key until its lease ends, then the request runs.
    hold_like_a_crashed_instance(&url, store.prefix(), "p2", b"20").await;
    assert_eq!(
        pay("\"p2\"", "20").await,
        (409, false),
        "held by the crashed instance"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        pay("\"p2\"", "20").await,
        (200, false),
        "the lease ended: it runs"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(store.failures(), 0);
}

/// Sets the in-flight marker an instance would have set for `POST /pay` with `key` and `body`,
/// with a 300 ms lease, and is gone.
async fn hold_like_a_crashed_instance(url: &str, prefix: &str, key: &str, body: &[u8]) {
    let print = vitals::idempotency::fingerprint::fingerprint(
        &http::Method::POST,
        "/pay",
        &"/pay".parse().unwrap(),
        &http::HeaderMap::new(),
        &[],
        body,
    );
    let scope = vitals::idempotency::fingerprint::scope(None, key);
    let mut marker = vec![b'F'];
    marker.extend_from_slice(&print.to_be_bytes());
    marker.extend_from_slice(&[7; 16]);
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:{scope:032x}"))
        .arg(marker)
        .arg("PX")
        .arg(300)
        .query_async(&mut connection)
        .await
        .unwrap();
}

/// With Redis: a request that runs longer than its key's lease keeps the key (its lease is
/// renewed while it runs), so a duplicate arriving after the first lease would have ended is
/// still a `409`, never a second run; then the answer is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_renews_a_running_requests_lease() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use axum::routing::post;
    use vitals::idempotency::{IdempotencyLayer, RedisStore};
    use vitals_integration_tests::redis::{redis_url, unique_prefix};

    let Some(url) = redis_url("redis_renews_a_running_requests_lease") else {
        return;
    };
    let runs = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&runs);
    let store = RedisStore::new(&url)
        .unwrap()
        .with_prefix(unique_prefix("idempotency-renew"))
        .with_lease(Duration::from_millis(300));
    let app = axum::Router::new()
        .route(
            "/pay",
            post(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async {
                    // Four leases long.
                    tokio::time::sleep(Duration::from_millis(1200)).await;
                    "paid"
                }
            }),
        )
        .route_layer(IdempotencyLayer::new().with_redis(store.clone()));
    let first = tokio::spawn(pay(app.clone(), "\"long-1\"", "10"));
    // Past the first lease, twice.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            pay(app.clone(), "\"long-1\"", "10").await,
            (409, false),
            "still held"
        );
    }
    assert_eq!(first.await.unwrap(), (200, false));
    assert_eq!(until_replayed(&app, "\"long-1\"", "10").await, (200, true));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one run");
    assert_eq!(store.failures(), 0);
}

/// `POST /pay` with `key` and `body` to `app`: the status, and whether it was a replay.
async fn pay(app: axum::Router, key: &'static str, body: &'static str) -> (u16, bool) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = http::Request::post("/pay")
        .header("idempotency-key", key)
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    response.into_body().collect().await.unwrap();
    (status, replayed)
}

/// [`pay`] until the answer is a replay (a completion is written in the background as the
/// first answer's body ends), at most 50 times, 20 ms apart: the last answer.
async fn until_replayed(app: &axum::Router, key: &'static str, body: &'static str) -> (u16, bool) {
    let mut answer = (0, false);
    for _ in 0..50 {
        answer = pay(app.clone(), key, body).await;
        if answer.1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    answer
}
