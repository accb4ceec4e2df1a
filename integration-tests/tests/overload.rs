//! The shop under a flood on `/slow`: the route's own limit sheds the excess with 503 and
//! `Retry-After`, the rest of the shop keeps answering, and the 5 s deadline cuts long requests.

use std::time::{Duration, Instant};

use vitals_integration_tests::{TestShop, eventually};

/// How long each `/slow` request of the flood holds its permit: far longer than a health
/// check takes even on a busy machine, and well under the route's 5 s deadline.
const HOLD_MS: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_slow_is_shed_and_healthz_answers_while_slow_is_full() {
    let shop = TestShop::start_sqlite().await;
    let mut flood = Vec::new();
    for _ in 0..60 {
        let client = shop.client().clone();
        let url = shop.url(&format!("/slow?ms={HOLD_MS}"));
        flood.push(tokio::spawn(async move {
            let response = client.get(url).send().await.expect("GET /slow");
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            (response.status().as_u16(), retry_after)
        }));
    }
    // The flood is on once it holds all 8 of `/slow`'s permits.
    let slow_in_flight = || shop.shop().slow_limit().map(|slow| slow.in_flight);
    eventually("the flood to hold /slow's 8 permits", || {
        slow_in_flight() == Some(8)
    })
    .await;
    let health = shop.get("/healthz").await;
    assert_eq!(health.status(), 200);
    // Answered while the flood still held every permit: health checks do not wait behind
    // `/slow` (its requests hold theirs for HOLD_MS; this one took a round trip).
    assert_eq!(
        slow_in_flight(),
        Some(8),
        "healthz was answered only once /slow had drained"
    );

    let (mut served, mut shed) = (0, 0);
    for request in flood {
        match request.await.expect("client task") {
            (200, None) => served += 1,
            (503, Some(seconds)) => {
                assert!((1..=2).contains(&seconds), "Retry-After {seconds}");
                shed += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // 8 at once and 16 waiting at most 100 ms: of 60 requests of HOLD_MS, most are shed.
    assert!(served >= 8 && shed > 0, "{served} served, {shed} shed");
    assert_eq!(served + shed, 60);
    // The flood went to `/slow`'s own limiter, which admitted and refused exactly these.
    let slow = shop
        .shop()
        .slow_limit()
        .expect("/slow has a limit of its own");
    assert_eq!((slow.in_flight, slow.queued), (0, 0), "{slow:?}");
    assert_eq!((slow.admitted, slow.rejected), (served, shed), "{slow:?}");
    let limit = shop.shop().limit();
    assert_eq!((limit.in_flight, limit.queued), (0, 0), "{limit:?}");
    shop.shutdown().await;
}

#[tokio::test]
async fn slow_requests_are_cut_at_the_route_deadline() {
    let shop = TestShop::start_sqlite().await;
    let started = Instant::now();
    let body = shop.get_json("/slow?ms=30000", 503).await;
    let took = started.elapsed();
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("too long")),
        "{body}"
    );
    assert!(took >= shop::SLOW_ROUTE_TIMEOUT, "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    shop.shutdown().await;
}
