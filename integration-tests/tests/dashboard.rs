//! The shop's dashboard over real TCP: the page, and the JSON showing the shop's own routes,
//! its N+1 route's finding with a trace id, and the limiter.

use serde_json::Value;
use vitals_integration_tests::TestShop;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_dashboard_shows_its_routes_and_the_n_plus_one() {
    let shop = TestShop::start_sqlite().await;
    for path in [
        "/products/1",
        "/products/2",
        "/orders",
        "/orders/n-plus-one",
    ] {
        let response = shop.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.bytes().await.expect("a body");
    }
    let page = shop.get("/_vitals").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("<title>Vitals</title>")
    );

    let summary: Value = shop.get_json("/_vitals/api/summary", 200).await;
    let routes = summary["routes"].as_array().expect("routes");
    let route = |name: &str| {
        routes
            .iter()
            .find(|r| r["route"] == name)
            .unwrap_or_else(|| panic!("no {name} in {summary}"))
    };
    assert_eq!(
        route("/products/{id}")["requests"],
        2,
        "one series for every id"
    );
    let naive = route("/orders/n-plus-one")["queries_per_request"]
        .as_f64()
        .expect("queries per request");
    assert!(naive > 240.0, "{naive}");
    assert!(
        route("/orders")["queries_per_request"]
            .as_f64()
            .expect("a number")
            <= 3.0
    );
    assert_eq!(summary["limiter"]["limit"], 512);
    // The payment client's breaker, in the Downstream panel.
    assert_eq!(
        summary["downstream"],
        serde_json::json!([{
            "name": "payment", "state": "closed", "times_opened": 0,
            "window_calls": 0, "window_failures": 0,
        }])
    );

    // The request's finding is completed when its body ends on the server, which may be just
    // after the client has read it: look until it is there whole (or 5 s pass).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let n_plus_one = loop {
        let findings: Value = shop.get_json("/_vitals/api/findings", 200).await;
        let found = findings["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .find(|f| f["kind"] == "n_plus_one")
            .cloned();
        match found {
            Some(finding) if finding["count"] == 240 => break finding,
            found if std::time::Instant::now() >= deadline => {
                panic!("no N+1 finding of 240 queries: {found:?} in {findings}")
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    assert_eq!(n_plus_one["route"], "/orders/n-plus-one");
    assert_eq!(n_plus_one["count"], 240);
    assert_eq!(
        n_plus_one["fingerprint"],
        "SELECT id, name, email FROM customers WHERE id = ?"
    );
    assert_eq!(
        n_plus_one["trace_id"].as_str().map(str::len),
        Some(32),
        "{n_plus_one}"
    );
    shop.shutdown().await;
}

#[tokio::test]
async fn the_dashboard_shows_the_payment_breaker_open_and_its_findings() {
    let mut config = vitals_integration_tests::test_config();
    config.payment_failure_rate = 1.0;
    // Checkouts in a row from one client until the breaker opens: past its quota otherwise.
    config.checkout_burst = 1_000;
    let shop = TestShop::start(config).await;
    while shop.get("/checkout").await.status() != 503 {}
    let summary: Value = shop.get_json("/_vitals/api/summary", 200).await;
    let payment = &summary["downstream"][0];
    assert_eq!(payment["name"], "payment");
    assert_eq!(payment["state"], "open");
    assert_eq!(payment["times_opened"], 1);
    let findings: Value = shop.get_json("/_vitals/api/findings", 200).await;
    let opened = findings["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["kind"] == "downstream")
        .unwrap_or_else(|| panic!("no downstream finding in {findings}"));
    assert_eq!(opened["event"], "breaker_opened");
    assert_eq!(opened["downstream"], "payment");
    assert!(
        opened["detail"]
            .as_str()
            .is_some_and(|d| d.contains("20 of 20 calls failed")),
        "{opened}"
    );
    shop.shutdown().await;
}

/// DNS rebinding: a page on `evil.example` whose name now points at 127.0.0.1 reaches the shop
/// from loopback, but its requests name `evil.example`. They must be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_request_naming_a_foreign_host_is_refused() {
    let shop = TestShop::start_sqlite().await;
    let paths = [
        "/_vitals",
        "/_vitals/api/summary",
        "/_vitals/api/findings",
        "/_vitals/api/history",
        "/_vitals/latency",
    ];
    for host in [
        "evil.example",
        "evil.example:3000",
        "localhost.evil.example",
    ] {
        for path in paths {
            let response = shop
                .client()
                .get(shop.url(path))
                .header("host", host)
                .send()
                .await
                .expect("an answer");
            assert_eq!(response.status(), 403, "{host} {path}");
            let body = response.text().await.expect("a body");
            assert!(!body.contains("/products"), "{host} {path}: {body}");
        }
    }
    for host in ["localhost:1", "127.0.0.1", "[::1]:8080"] {
        for path in paths {
            let response = shop
                .client()
                .get(shop.url(path))
                .header("host", host)
                .send()
                .await
                .expect("an answer");
            assert_eq!(response.status(), 200, "{host} {path}");
        }
    }
    // /metrics stays open to scrapers by convention (docs/dashboard.md says how to close it).
    let metrics = shop
        .client()
        .get(shop.url("/metrics"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("an answer");
    assert_ne!(metrics.status(), 403);
}
