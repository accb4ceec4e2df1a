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

    assert!(shop.shop().reviews_cache().purge("/products/5/reviews"));
    let refilled = shop.get("/products/5/reviews").await;
    let cache_status = refilled.headers()["cache-status"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cache_status.contains("fwd=uri-miss"), "{cache_status}");

    // An unknown product: the 404 is not stored (no negative caching configured).
    for _ in 0..2 {
        let missing = shop.get("/products/999999/reviews").await;
        assert_eq!(missing.status(), 404);
        let cache_status = missing.headers()["cache-status"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(!cache_status.contains("stored"), "{cache_status}");
    }
}
