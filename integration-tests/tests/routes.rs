//! Every shop route answers as specified, on SQLite and (when configured) on PostgreSQL.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use shop::db::seed;
use vitals_integration_tests::{TestShop, postgres_admin_url, test_config};

#[tokio::test]
async fn routes_answer_as_specified_on_sqlite() {
    let shop = TestShop::start_sqlite().await;
    check_every_route(&shop).await;
    shop.shutdown().await;
}

#[tokio::test]
async fn routes_answer_as_specified_on_postgres() {
    let Some(url) = postgres_admin_url("routes_answer_as_specified_on_postgres") else {
        return;
    };
    let shop = TestShop::start_postgres(&url).await;
    check_every_route(&shop).await;
    shop.shutdown().await;
}

async fn check_every_route(shop: &TestShop) {
    check_catalogue(shop).await;
    let orders = check_orders(shop).await;
    check_report(shop, &orders).await;
    check_slow(shop).await;
    check_me(shop, &orders).await;
    check_checkout(shop).await;
    check_fallbacks(shop).await;
}

async fn check_catalogue(shop: &TestShop) {
    // Every response is timed: one `Server-Timing` line with the trace, the queries and the
    // total.
    let response = shop.get("/orders").await;
    let timing: Vec<_> = response.headers().get_all("server-timing").iter().collect();
    assert_eq!(timing.len(), 1, "{timing:?}");
    let line = timing[0].to_str().unwrap_or_default();
    assert!(
        line.starts_with("trace;desc=00-")
            && line.contains(", db;dur=")
            && line.contains(", total;dur="),
        "{line}"
    );

    assert_eq!(
        shop.get_json("/healthz", 200).await,
        serde_json::json!({ "status": "ok" })
    );

    // Catalogue.
    let products = shop.get_json("/products", 200).await;
    let products = products.as_array().expect("an array of products");
    assert_eq!(i64::try_from(products.len()).ok(), Some(seed::PRODUCTS));
    assert!(products.len() >= 20);
    for field in ["id", "name", "price_cents", "stock"] {
        assert!(
            products.iter().all(|p| p.get(field).is_some()),
            "every product has {field}"
        );
    }
    let one = shop.get_json("/products/7", 200).await;
    assert_eq!(one, products[6]);
    assert_error(&shop.get_json("/products/999999", 404).await);
    assert_error(&shop.get_json("/products/abc", 400).await);
    assert_error(
        &shop
            .get_json("/products/99999999999999999999999", 400)
            .await,
    );
}

async fn check_orders(shop: &TestShop) -> Vec<Value> {
    // Orders: at least 200, spread over at least 50 customers, the two routes identical.
    let joined = shop.get("/orders").await;
    assert_eq!(joined.status(), 200);
    let joined = joined.bytes().await.expect("body");
    let naive = shop.get("/orders/n-plus-one").await;
    assert_eq!(naive.status(), 200);
    let naive = naive.bytes().await.expect("body");
    assert_eq!(
        joined, naive,
        "/orders and /orders/n-plus-one must return the same JSON"
    );
    let orders: Vec<Value> = serde_json::from_slice(&joined).expect("orders JSON");
    assert_eq!(i64::try_from(orders.len()).ok(), Some(seed::ORDERS));
    let customers: HashSet<i64> = orders
        .iter()
        .map(|o| o["customer"]["id"].as_i64().expect("customer id"))
        .collect();
    assert!(customers.len() >= 50, "{} customers", customers.len());
    assert!(orders.iter().all(|o| {
        o["customer"]["email"]
            .as_str()
            .is_some_and(|e| e.contains('@'))
    }));
    orders
}

async fn check_report(shop: &TestShop, orders: &[Value]) {
    // Report: the same deterministic result on and off the executor.
    let report = shop.get_json("/report", 200).await;
    assert_eq!(report["orders"].as_i64(), Some(seed::ORDERS));
    assert_eq!(report["customers"].as_i64(), Some(seed::CUSTOMERS));
    assert_eq!(report["top_customers"].as_array().map(Vec::len), Some(5));
    let total: i64 = orders
        .iter()
        .map(|o| o["total_cents"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(report["revenue_cents"].as_i64(), Some(total));
    assert_eq!(
        report["work_rounds"].as_u64(),
        Some(shop.shop().workload().rounds())
    );
    assert_eq!(shop.get_json("/report/blocking", 200).await, report);
}

async fn check_slow(shop: &TestShop) {
    // Slow: sleeps at least what was asked; bad values are 400, never a panic.
    let start = Instant::now();
    assert_eq!(shop.get_json("/slow?ms=30", 200).await["slept_ms"], 30);
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(shop.get_json("/slow?ms=0", 200).await["slept_ms"], 0);
    for bad in [
        "",
        "?ms=60001",
        "?ms=-1",
        "?ms=abc",
        "?ms=1.5",
        "?ms=99999999999999999999999",
    ] {
        assert_error(&shop.get_json(&format!("/slow{bad}"), 400).await);
    }
}

async fn check_me(shop: &TestShop, orders: &[Value]) {
    // Me: needs the demo bearer token.
    let anonymous = shop.get("/me").await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    for header in ["Bearer wrong", "Basic ZGVtbzpkZW1v", "Bearer", "demo"] {
        let response = shop
            .client()
            .get(shop.url("/me"))
            .header("authorization", header)
            .send()
            .await
            .expect("GET /me");
        assert_eq!(response.status(), 401, "{header}");
    }
    let me = shop
        .client()
        .get(shop.url("/me"))
        .header("authorization", "Bearer demo")
        .send()
        .await
        .expect("GET /me");
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.expect("JSON");
    assert_eq!(me["customer"]["id"], 1);
    let own_orders = orders.iter().filter(|o| o["customer"]["id"] == 1).count();
    assert_eq!(me["orders"].as_u64(), u64::try_from(own_orders).ok());
}

async fn check_checkout(shop: &TestShop) {
    // Checkout: a real call to the payment stub, its time in `Server-Timing`.
    let response = shop.get("/checkout").await;
    let server_timing = response.headers()["server-timing"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        server_timing.contains("payment;dur="),
        "no payment entry: {server_timing}"
    );
    assert_eq!(response.status(), 200);
    let paid = shop.get_json("/checkout", 200).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["payment"]["status"], "approved");
    assert_eq!(
        paid["payment"]["amount_cents"],
        paid["product"]["price_cents"]
    );
    let paid_3 = shop.get_json("/checkout?product_id=3", 200).await;
    assert_eq!(paid_3["product"]["id"], 3);
    assert_ne!(
        paid_3["payment"]["payment_id"],
        paid["payment"]["payment_id"]
    );
    assert_error(&shop.get_json("/checkout?product_id=999999", 404).await);
    assert_error(&shop.get_json("/checkout?product_id=x", 400).await);
}

async fn check_fallbacks(shop: &TestShop) {
    // The Prometheus endpoint: the layers' families, histograms not summaries.
    let metrics = shop.get("/metrics").await;
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("metrics text");
    for family in [
        "# TYPE vitals_concurrency_admitted_total counter",
        "# TYPE vitals_queries_per_request histogram",
        "# HELP vitals_concurrency_in_flight ",
        // The payment calls of the checkouts above, by the client conventions, in seconds.
        "# TYPE http_client_request_duration_seconds histogram",
        "http_client_request_duration_seconds_bucket{http_request_method=\"POST\",server_address=\"127.0.0.1\",",
    ] {
        assert!(
            text.contains(family),
            "{family} missing from /metrics:\n{text}"
        );
    }

    // Anything else: JSON errors too.
    assert_error(&shop.get_json("/no/such/route", 404).await);
    let post = shop
        .client()
        .post(shop.url("/products"))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), 405);
    assert_error(&post.json().await.expect("JSON"));
}

fn assert_error(body: &Value) {
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty(),
        "expected {{\"error\": \"...\"}}, got {body}"
    );
}

#[tokio::test]
async fn checkout_answers_504_when_the_payment_service_is_too_slow() {
    let mut config = test_config();
    config.payment_latency_ms = 2_000;
    config.payment_timeout_ms = 50;
    let shop = TestShop::start(config).await;
    let started = Instant::now();
    let body = shop.get_json("/checkout", 504).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out")
    );
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "the timeout was not applied"
    );
    shop.shutdown().await;
}

#[tokio::test]
async fn checkout_answers_502_when_the_payment_service_is_down() {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let mut config = test_config();
    config.payment_url = Some(format!("http://{addr}/"));
    let shop = TestShop::start(config).await;
    assert!(shop.shop().payment_stub_url().is_none());
    assert_error(&shop.get_json("/checkout", 502).await);
    shop.shutdown().await;
}

#[tokio::test]
async fn checkout_stops_calling_a_payment_service_that_keeps_failing() {
    let mut config = test_config();
    config.payment_failure_rate = 1.0;
    // Thirty checkouts in a row from one client: past its quota otherwise.
    config.checkout_burst = 1_000;
    let shop = TestShop::start(config).await;
    let stub = shop.shop().payment_stub().expect("the built-in stub");
    // Every payment fails (502) until the breaker opens: within twenty calls.
    let mut failed = 0;
    loop {
        let response = shop.get("/checkout").await;
        if response.status() == 503 {
            break;
        }
        assert_eq!(response.status(), 502);
        failed += 1;
        assert!(
            failed <= 20,
            "the breaker did not open after {failed} failed payments"
        );
    }
    assert_eq!(stub.calls(), failed);
    assert_eq!(
        shop.shop().payment_breaker().state(),
        vitals::client::BreakerState::Open
    );
    // Open: answered at once with 503 and Retry-After, the payment service not called.
    for _ in 0..10 {
        let started = Instant::now();
        let response = shop.get("/checkout").await;
        assert_eq!(response.status(), 503);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=5).contains(&retry_after), "{retry_after}");
        assert_error(&response.json().await.unwrap());
        assert!(started.elapsed() < Duration::from_millis(250));
    }
    assert_eq!(stub.calls(), failed);
    shop.shutdown().await;
}

#[tokio::test]
async fn a_latency_spike_of_the_payment_service_is_cut_at_the_timeout() {
    let mut config = test_config();
    config.payment_latency_spike_ms = 2_000;
    config.payment_timeout_ms = 300;
    let shop = TestShop::start(config).await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        statuses.push(shop.get("/checkout").await.status().as_u16());
        assert!(started.elapsed() < Duration::from_millis(1_500));
    }
    // Every tenth payment call spikes past the timeout.
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 200, 504]);
    shop.shutdown().await;
}

#[tokio::test]
async fn invalid_payment_url_is_a_start_error() {
    for url in ["not a url", "ftp://127.0.0.1/"] {
        let mut config = test_config();
        config.payment_url = Some(url.to_owned());
        let error = shop::Shop::start(config).await.expect_err(url);
        assert!(error.to_string().contains("payment URL"), "{error}");
    }
    let mut config = test_config();
    config.database_url = "mysql://localhost/shop".to_owned();
    let error = shop::Shop::start(config)
        .await
        .expect_err("mysql is not supported");
    assert!(
        error.to_string().contains("unsupported database URL"),
        "{error}"
    );
}

#[tokio::test]
async fn checkout_is_rate_limited_per_api_key_then_per_client() {
    let shop = TestShop::start(test_config()).await;
    let stub = shop.shop().payment_stub().expect("the built-in stub");
    let checkout = |key: Option<&'static str>| {
        let mut request = shop.client().get(shop.url("/checkout"));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send()
    };
    // Ten at once (the burst) from this client, without a key: then 429, and no payment call.
    for _ in 0..10 {
        assert_eq!(checkout(None).await.unwrap().status(), 200);
    }
    let refused = checkout(None).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        refused.headers()["ratelimit-policy"],
        r#""per-second";q=10;w=2"#
    );
    assert_eq!(refused.headers()["ratelimit"], r#""per-second";r=0;t=1"#);
    assert_error(&refused.json().await.unwrap());
    assert_eq!(stub.calls(), 10);
    // A caller with an API key spends the key's own quota.
    let keyed = checkout(Some("team-a")).await.unwrap();
    assert_eq!(keyed.status(), 200);
    let remaining = keyed.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert!(remaining.starts_with(r#""per-second";r=9;"#), "{remaining}");
    // A made-up key is no way around the quota: it counts as this client's address, which
    // has spent its quota.
    assert_eq!(checkout(Some("made-up")).await.unwrap().status(), 429);
    // Other routes have no quota.
    assert!(
        shop.get("/products")
            .await
            .headers()
            .get("ratelimit")
            .is_none()
    );
    shop.shutdown().await;
}
