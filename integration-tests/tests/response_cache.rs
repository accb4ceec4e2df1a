//! The shop's reviews behind the response cache, over real HTTP: a burst of cold requests for
//! one product's reviews makes one fill (200 ms of work, not 100 × 200 ms), and a purge makes
//! the next request fill again.

use std::time::{Duration, Instant};

use vitals_integration_tests::TestShop;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_cold_requests_for_one_products_reviews_make_one_fill() {
    let shop = TestShop::start_sqlite().await;
    let started = Instant::now();
    let burst: Vec<_> = (0..100)
        .map(|_| {
            let client = shop.client().clone();
            let url = shop.url("/products/5/reviews");
            tokio::spawn(async move {
                let response = client.get(url).send().await.expect("a response");
                let status = response.status().as_u16();
                let cache_status = response
                    .headers()
                    .get("cache-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body = response.text().await.expect("a body");
                (status, cache_status, body)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in burst {
        answers.push(request.await.expect("the request task"));
    }
    let elapsed = started.elapsed();
    assert!(answers.iter().all(|(status, _, _)| *status == 200));
    assert!(answers.iter().all(|(_, _, body)| *body == answers[0].2));
    assert!(answers[0].2.contains("\"product_id\":5"));
    let stored = answers
        .iter()
        .filter(|(_, cache_status, _)| cache_status.contains("stored"))
        .count();
    assert_eq!(stored, 1, "one fill: {answers:?}");
    assert!(
        answers
            .iter()
            .all(|(_, cache_status, _)| cache_status.contains("stored")
                || cache_status.contains("collapsed")
                || cache_status.contains("hit")),
        "{answers:?}"
    );
    // One fill of 200 ms, not a hundred queued behind the database and each other.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");

    let hit = shop.get("/products/5/reviews").await;
    let cache_status = hit.headers()["cache-status"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cache_status.starts_with("vitals; hit"), "{cache_status}");
    assert_eq!(
        hit.headers()["cache-control"],
        "public, max-age=60, stale-while-revalidate=300"
    );

    assert!(shop.shop().response_cache().purge("/products/5/reviews"));
    let refilled = shop.get("/products/5/reviews").await;
    let cache_status = refilled.headers()["cache-status"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cache_status.contains("fwd=uri-miss"), "{cache_status}");

    // An unknown product: the 404 is kept the 10 s the route's status policy gives it (the
    // cache-headers part, inside the cache, said so): a scanner probing ids costs one
    // database query per id per 10 s.
    let statuses: Vec<String> = {
        let mut statuses = Vec::new();
        for _ in 0..2 {
            let missing = shop.get("/products/999999/reviews").await;
            assert_eq!(missing.status(), 404);
            statuses.push(header(&missing, "cache-status"));
        }
        statuses
    };
    assert_eq!(statuses[0], "vitals; fwd=uri-miss; fwd-status=404; stored");
    assert!(statuses[1].starts_with("vitals; hit"), "{statuses:?}");
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The catalogue is kept by the stack's response cache: a product's page and the list are
/// filled once (with their queries) and then answered from memory — no query, no permit —
/// with the ETag the cache-headers part computed, and a client's conditional request gets its
/// `304` from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_is_filled_once_then_answered_without_a_query() {
    let shop = TestShop::start_sqlite().await;
    for path in ["/products/3", "/products"] {
        let filled = shop.get(path).await;
        assert_eq!(filled.status(), 200);
        let cache_status = header(&filled, "cache-status");
        assert_eq!(cache_status, "vitals; fwd=uri-miss; fwd-status=200; stored");
        assert!(header(&filled, "server-timing").contains("db;"), "{path}");
        let etag = header(&filled, "etag");
        assert!(etag.starts_with('"'), "{path}: {etag}");
        let body = filled.text().await.expect("a body");

        let hit = shop.get(path).await;
        assert!(
            header(&hit, "cache-status").starts_with("vitals; hit"),
            "{path}"
        );
        assert!(
            !header(&hit, "server-timing").contains("db;"),
            "{path}: no query"
        );
        assert_eq!(header(&hit, "etag"), etag);
        assert_eq!(hit.text().await.expect("a body"), body);

        let revalidated = shop
            .client()
            .get(shop.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("a response");
        assert_eq!(revalidated.status(), 304, "{path}");
        assert!(header(&revalidated, "cache-status").starts_with("vitals; hit"));
    }
    shop.shutdown().await;
}

// --- One cache for a fleet, in Redis ------------------------------------------------------

mod fleet {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use axum::Router;
    use axum::routing;
    use vitals::response_cache::{
        CacheSettings, RedisStore, ResponseCacheHandle, ResponseCacheLayer,
    };
    use vitals_integration_tests::redis::{ThrowawayRedis, redis_url, unique_prefix};
    use vitals_integration_tests::{TestShop, test_config};

    /// What each answer said: its status, `Cache-Status` and body.
    type Answer = (u16, String, String);

    /// A `GET` as a load balancer would pass it on: every instance sees the service's one host
    /// (a stored response answers its own host only).
    async fn get(client: &reqwest::Client, url: &str) -> Answer {
        let response = client
            .get(url)
            .header("host", "shop.test")
            .send()
            .await
            .expect("a response");
        let status = response.status().as_u16();
        let cache_status = response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, cache_status, response.text().await.expect("a body"))
    }

    /// `count` requests for `url` at once.
    fn burst(
        client: &reqwest::Client,
        url: &str,
        count: usize,
    ) -> Vec<tokio::task::JoinHandle<Answer>> {
        (0..count)
            .map(|_| {
                let client = client.clone();
                let url = url.to_owned();
                tokio::spawn(async move { get(&client, &url).await })
            })
            .collect()
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_shops_on_one_redis_fill_a_cold_key_once_for_a_thousand_requests() {
        let Some(url) =
            redis_url("two_shops_on_one_redis_fill_a_cold_key_once_for_a_thousand_requests")
        else {
            return;
        };
        let prefix = unique_prefix("fleet-burst");
        let mut shops = Vec::new();
        for _ in 0..2 {
            let mut config = test_config();
            config.cache_url = Some(url.clone());
            config.cache_prefix.clone_from(&prefix);
            // A Redis timeout the burst cannot trip on a loaded 2-core machine: this test is
            // about one fill for the fleet (failing open has a test of its own).
            config.cache_timeout_ms = 2_000;
            shops.push(TestShop::start(config).await);
        }
        let client = client();
        let started = Instant::now();
        let mut requests = Vec::new();
        for shop in &shops {
            requests.extend(burst(&client, &shop.url("/products/9/reviews"), 500));
        }
        let mut answers = Vec::new();
        for request in requests {
            answers.push(request.await.expect("the request task"));
        }
        let elapsed = started.elapsed();
        assert!(answers.iter().all(|(status, _, _)| *status == 200));
        assert!(answers.iter().all(|(_, _, body)| *body == answers[0].2));
        // Every answer that went to a handler says `fwd=` (and not `collapsed`, which is a
        // wait for another's): exactly one did, for both shops.
        let forwarded: Vec<&String> = answers
            .iter()
            .map(|(_, cache_status, _)| cache_status)
            .filter(|cache_status| {
                cache_status.contains("fwd=") && !cache_status.contains("collapsed")
            })
            .collect();
        assert_eq!(forwarded.len(), 1, "one origin call in all: {forwarded:?}");
        assert!(forwarded[0].contains("stored"), "{forwarded:?}");
        let unexpected = answers
            .iter()
            .filter(|(_, cache_status, _)| {
                !(cache_status.contains("stored")
                    || cache_status.contains("collapsed")
                    || cache_status.contains("hit"))
            })
            .count();
        assert_eq!(unexpected, 0);
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");

        // A third shop, its memory empty, answers from what the fleet stored.
        let mut config = test_config();
        config.cache_url = Some(url.clone());
        config.cache_prefix.clone_from(&prefix);
        let third = TestShop::start(config).await;
        let (status, cache_status, body) = get(&client, &third.url("/products/9/reviews")).await;
        assert_eq!(status, 200);
        assert!(cache_status.starts_with("vitals; hit"), "{cache_status}");
        assert_eq!(body, answers[0].2);

        // A purge on one shop reaches the others (through Redis; their memory keeps a copy
        // for at most the local TTL, 1 s).
        assert!(
            shops[0]
                .shop()
                .response_cache()
                .purge("/products/9/reviews")
        );
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let (_, cache_status, _) = get(&client, &third.url("/products/9/reviews")).await;
        assert!(cache_status.contains("fwd=uri-miss"), "{cache_status}");
    }

    /// One instance of a service: `/item` answers `public, max-age=60` with the instance's
    /// name, after `work`, counting its calls.
    async fn instance(
        name: &'static str,
        work: Duration,
        calls: Arc<AtomicUsize>,
        store: RedisStore,
    ) -> String {
        instance_with_handle(name, work, calls, store).await.0
    }

    /// [`instance`], and a handle to its cache.
    async fn instance_with_handle(
        name: &'static str,
        work: Duration,
        calls: Arc<AtomicUsize>,
        store: RedisStore,
    ) -> (String, ResponseCacheHandle) {
        let cache = ResponseCacheLayer::new()
            .with_defaults(CacheSettings::new().with_wait(Duration::from_secs(5)))
            .with_redis(store);
        let handle = cache.handle();
        let app = Router::new()
            .route(
                "/item",
                routing::get(move || {
                    let calls = Arc::clone(&calls);
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(work).await;
                        (
                            [
                                ("cache-control", "public, max-age=60"),
                                ("surrogate-key", "items"),
                            ],
                            name,
                        )
                    }
                }),
            )
            .layer(cache);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (format!("http://{address}/item"), handle)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fill_overtaken_by_a_purge_elsewhere_is_not_stored_and_frees_the_key_at_once() {
        let Some(url) = redis_url(
            "a_fill_overtaken_by_a_purge_elsewhere_is_not_stored_and_frees_the_key_at_once",
        ) else {
            return;
        };
        // A long lease: a lock left behind would hold the other instance for 5 s.
        let store = RedisStore::new(&url)
            .expect("a Redis URL")
            .with_prefix(unique_prefix("fleet-fence"))
            .with_timeout(Duration::from_secs(1))
            .with_lease(Duration::from_secs(5))
            .with_local_ttl(Duration::from_millis(100));
        let calls = Arc::new(AtomicUsize::new(0));
        let (slow, _) = instance_with_handle(
            "read before the change",
            Duration::from_millis(400),
            Arc::clone(&calls),
            store.clone(),
        )
        .await;
        let (other, other_cache) = instance_with_handle(
            "read after the change",
            Duration::from_millis(10),
            Arc::clone(&calls),
            store.clone(),
        )
        .await;
        let client = client();
        let first = tokio::spawn({
            let client = client.clone();
            async move { get(&client, &slow).await }
        });
        // While the first instance fills, the item changes and the other instance purges it
        // (raising the key's fence in Redis).
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(other_cache.purge("/item"));
        let (status, _, body) = first.await.expect("the first request");
        assert_eq!((status, body.as_str()), (200, "read before the change"));
        // Its store lost to the fence: nothing in Redis, and its lock gone at once, so the
        // other instance fills now, not after the 5 s lease.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let (status, cache_status, body) = get(&client, &other).await;
        assert_eq!((status, body.as_str()), (200, "read after the change"));
        assert!(cache_status.contains("fwd=uri-miss"), "{cache_status}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_filler_stuck_past_its_lease_is_replaced_and_cannot_overwrite_the_newer_fill() {
        let Some(url) = redis_url(
            "a_filler_stuck_past_its_lease_is_replaced_and_cannot_overwrite_the_newer_fill",
        ) else {
            return;
        };
        let lease = Duration::from_millis(400);
        let store = RedisStore::new(&url)
            .expect("a Redis URL")
            .with_prefix(unique_prefix("fleet-lease"))
            // Not a test of failing open: a timeout a loaded machine cannot trip.
            .with_timeout(Duration::from_secs(1))
            .with_lease(lease)
            .with_local_ttl(Duration::from_millis(100));
        let calls = Arc::new(AtomicUsize::new(0));
        // The stuck one takes 2 s (as good as crashed for the fleet); the other 100 ms.
        let stuck = instance(
            "stuck",
            Duration::from_secs(2),
            Arc::clone(&calls),
            store.clone(),
        )
        .await;
        let healthy = instance(
            "healthy",
            Duration::from_millis(100),
            Arc::clone(&calls),
            store.clone(),
        )
        .await;
        let client = client();
        let first = tokio::spawn({
            let client = client.clone();
            async move { get(&client, &stuck).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let waiting = burst(&client, &healthy, 20);
        let mut answers = Vec::new();
        for request in waiting {
            answers.push(request.await.expect("the request task"));
        }
        let waited = started.elapsed();
        assert!(
            answers
                .iter()
                .all(|(status, _, body)| *status == 200 && body == "healthy"),
            "{answers:?}"
        );
        // Nobody waited longer than the lease and one fill (and the polls' slack).
        assert!(
            waited < lease + Duration::from_millis(100 + 400),
            "{waited:?}"
        );
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the stuck fill and one more"
        );

        // The stuck filler ends, late: its response answers its own client, and does not
        // replace the newer one in Redis.
        let (status, cache_status, body) = first.await.expect("the stuck request");
        assert_eq!((status, body.as_str()), (200, "stuck"));
        assert!(cache_status.contains("fwd=uri-miss"), "{cache_status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let third = instance(
            "third",
            Duration::from_millis(1),
            Arc::clone(&calls),
            store.clone(),
        )
        .await;
        let (_, cache_status, body) = get(&client, &third).await;
        assert!(cache_status.starts_with("vitals; hit"), "{cache_status}");
        assert_eq!(
            body, "healthy",
            "the late fill did not overwrite the newer one"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_connection_and_scripts_are_ready_before_the_first_request() {
        let Some(redis) =
            ThrowawayRedis::start("the_connection_and_scripts_are_ready_before_the_first_request")
        else {
            return;
        };
        let store = RedisStore::new(&redis.url())
            .expect("a Redis URL")
            .with_prefix(unique_prefix("fleet-warm"));
        // Building the app is enough: no request is sent.
        let _app: Router = Router::new()
            .route("/item", routing::get(|| async { "item" }))
            .layer(ResponseCacheLayer::new().with_redis(store));
        let mut commands = redis::Client::open(redis.url())
            .expect("a URL")
            .get_multiplexed_async_connection()
            .await
            .expect("a connection");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut commands)
                .await
                .expect("INFO");
            // Five scripts: the lock, the store, the release and the two removals.
            let loaded = info
                .lines()
                .find(|line| line.starts_with("cmdstat_script|load:"))
                .and_then(|line| line.split(['=', ',']).nth(1)?.parse::<u64>().ok())
                .unwrap_or(0);
            if loaded >= 5 {
                break;
            }
            assert!(Instant::now() < deadline, "scripts loaded: {loaded}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_or_paused_redis_sends_requests_to_the_handler_never_a_500() {
        let Some(redis) = ThrowawayRedis::start(
            "a_dead_or_paused_redis_sends_requests_to_the_handler_never_a_500",
        ) else {
            return;
        };
        let store = RedisStore::new(&redis.url())
            .expect("a Redis URL")
            .with_prefix(unique_prefix("fleet-sick"))
            .with_local_ttl(Duration::from_millis(100));
        let calls = Arc::new(AtomicUsize::new(0));
        let url = instance(
            "only",
            Duration::from_millis(150),
            Arc::clone(&calls),
            store.clone(),
        )
        .await;
        let client = client();
        let mut commands = redis::Client::open(redis.url())
            .expect("a URL")
            .get_multiplexed_async_connection()
            .await
            .expect("a connection");

        // Paused: every call waits past the timeout (50 ms), the request goes on.
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(3_000)
            .arg("ALL")
            .query_async(&mut commands)
            .await
            .expect("CLIENT PAUSE");
        let started = Instant::now();
        let answers = burst(&client, &url, 10);
        for request in answers {
            let (status, cache_status, body) = request.await.expect("the request task");
            assert_eq!((status, body.as_str()), (200, "only"), "{cache_status}");
        }
        assert!(
            started.elapsed() < Duration::from_millis(1_500),
            "{:?}",
            started.elapsed()
        );
        assert!(store.failures() >= 1);
        // Within the instance, one fill still served the burst.
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Dead (the server killed): the same.
        drop(commands);
        drop(redis);
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..3 {
            let (status, _, body) = get(&client, &url).await;
            assert_eq!((status, body.as_str()), (200, "only"));
        }
    }
}
