//! The database's quiet failures on the shop over real TCP, on SQLite and on PostgreSQL: the
//! missing-index finding after one request (and none for the indexed twin), and pool
//! exhaustion under 40 concurrent requests holding connections (and none for the twin that
//! releases them), seen in the findings, the WARN log and the Prometheus output.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use vitals_integration_tests::events::EventLog;
use vitals_integration_tests::{TestShop, eventually, postgres_admin_url, test_config};

/// One global subscriber for this binary: the query events and the captured log.
fn log() -> &'static EventLog {
    static LOG: OnceLock<EventLog> = OnceLock::new();
    LOG.get_or_init(EventLog::install)
}

async fn findings(shop: &TestShop, kind: &str) -> Vec<Value> {
    let all = shop.get_json("/_vitals/api/findings", 200).await;
    all["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .cloned()
        .collect()
}

/// The detector explained every statement shape it was given (each is explained once).
async fn explained(shop: &TestShop, shapes: u64) {
    let detector = shop.shop().index_detector().expect("the detector runs");
    eventually("the detector to explain the new statement shapes", || {
        let snapshot = detector.snapshot();
        snapshot.explained + snapshot.errors >= shapes
    })
    .await;
}

async fn missing_index_after_one_request(shop: &TestShop) {
    let before = shop.shop().index_detector().unwrap().snapshot();
    let orders = shop
        .get_json("/orders/by-email?email=customer1000@example.com", 200)
        .await;
    assert_eq!(orders, Value::Array(Vec::new()), "the crowd has no orders");
    let orders = shop
        .get_json(
            "/orders/by-email-indexed?email=customer1000@example.com",
            200,
        )
        .await;
    assert_eq!(orders, Value::Array(Vec::new()));
    let with_orders = shop
        .get_json(
            "/orders/by-email-indexed?email=grace.lovelace1@example.com",
            200,
        )
        .await;
    assert!(!with_orders.as_array().unwrap().is_empty(), "{with_orders}");
    // Three new shapes: the unindexed lookup, the indexed one, the orders of a customer.
    explained(shop, before.explained + before.errors + 3).await;
    let snapshot = shop.shop().index_detector().unwrap().snapshot();
    assert_eq!(
        snapshot.errors, before.errors,
        "every plan read: {snapshot:?}"
    );
    let missing = findings(shop, "missing_index").await;
    let on_route =
        |route: &str| -> Vec<&Value> { missing.iter().filter(|f| f["route"] == route).collect() };
    let unindexed = on_route("/orders/by-email");
    assert_eq!(unindexed.len(), 1, "{missing:?}");
    assert_eq!(unindexed[0]["table"], "customers");
    assert_eq!(unindexed[0]["columns"], serde_json::json!(["email"]));
    assert!(
        unindexed[0]["rows"].as_u64().unwrap() >= 10_000,
        "{unindexed:?}"
    );
    assert!(
        on_route("/orders/by-email-indexed").is_empty(),
        "the twin scans nothing: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unindexed_lookup_is_a_missing_index_finding_on_sqlite() {
    log();
    let shop = TestShop::start_sqlite().await;
    missing_index_after_one_request(&shop).await;
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unindexed_lookup_is_a_missing_index_finding_on_postgres() {
    log();
    let Some(admin) =
        postgres_admin_url("an_unindexed_lookup_is_a_missing_index_finding_on_postgres")
    else {
        return;
    };
    let shop = TestShop::start_postgres(&admin).await;
    missing_index_after_one_request(&shop).await;
    // The detector's connection killed under it: it opens another and goes on explaining.
    let mut server = <sqlx::postgres::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'vitals-index-detector'",
    )
    .fetch_all(&mut server)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "the detector's connection was found");
    let detector = shop.shop().index_detector().unwrap();
    let before = detector.snapshot().explained;
    for path in ["/products/1", "/products", "/orders", "/report"] {
        shop.get(path).await;
    }
    eventually("the detector to explain again on a new connection", || {
        detector.snapshot().explained >= before + 2
    })
    .await;
    shop.shutdown().await;
}

/// 40 concurrent `path` requests on a shop with a pool of 5, sampling `/metrics` meanwhile:
/// the largest `db_client_connection_pending_requests` of the pool seen, and the last
/// Prometheus text.
async fn forty_at_once(shop: &TestShop, path: &str, pool: &str) -> (f64, String) {
    let requests: Vec<_> = (0..40)
        .map(|_| {
            let client = shop.client().clone();
            let url = shop.url(path);
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    let series = format!(
        "db_client_connection_pending_requests{{db_client_connection_pool_name=\"{pool}\"}}"
    );
    let mut most = 0.0_f64;
    let mut text = String::new();
    while requests.iter().any(|r| !r.is_finished()) {
        text = shop.get("/metrics").await.text().await.unwrap();
        if let Some(value) = text
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .and_then(|value| value.trim().parse::<f64>().ok())
        {
            most = most.max(value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), 200, "{path}");
    }
    (most, text)
}

fn small_pool(name: &str) -> shop::Config {
    let mut config = test_config();
    config.pool_size = 5;
    name.clone_into(&mut config.pool_name);
    config
}

async fn exhaustion_and_its_fix(hold: TestShop, release: TestShop, name: &str) {
    let start = log().len();
    let (pending, text) =
        forty_at_once(&hold, "/orders/hold?ms=300", &format!("{name}-hold")).await;
    assert!(
        pending > 0.0,
        "pending_requests stayed 0 while 40 requests held 5 connections"
    );
    vitals_integration_tests::promtool_check(&text);
    let exhausted = findings(&hold, "pool_exhausted").await;
    assert_eq!(exhausted.len(), 1, "one finding per episode: {exhausted:?}");
    assert_eq!(exhausted[0]["max"], 5);
    assert!(exhausted[0]["waiting"].as_u64().unwrap() > 0);
    // Reported a second after the episode began; the longest waiter then has waited a tenth
    // of that at least (the rule's threshold: waiters come and go while connections rotate).
    assert!(exhausted[0]["longest_wait_ms"].as_f64().unwrap() >= 100.0);
    assert_eq!(exhausted[0]["holders"][0]["route"], "/orders/hold");
    let warned = |pool: &str| {
        log()
            .since(start)
            .iter()
            .filter(|e| e.message.starts_with("pool exhausted: "))
            .filter(|e| {
                e.fields
                    .get("db.client.connection.pool.name")
                    .map(String::as_str)
                    == Some(pool)
            })
            .count()
    };
    assert_eq!(warned(&format!("{name}-hold")), 1);
    // The dashboard's Database panel reads the same pool.
    let summary = hold.get_json("/_vitals/api/summary", 200).await;
    let pool = &summary["databases"][0];
    assert_eq!(pool["name"], format!("{name}-hold"), "{summary}");
    assert_eq!(
        (pool["max"].as_u64(), pool["waiting"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(
        pool["acquires"].as_u64(),
        Some(40),
        "every request acquired once"
    );

    let (_, text) = forty_at_once(
        &release,
        "/orders/release?ms=300",
        &format!("{name}-release"),
    )
    .await;
    vitals_integration_tests::promtool_check(&text);
    assert!(findings(&release, "pool_exhausted").await.is_empty());
    assert_eq!(warned(&format!("{name}-release")), 0);
    hold.shutdown().await;
    release.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holding_connections_exhausts_the_pool_and_releasing_them_does_not_on_sqlite() {
    log();
    let hold = TestShop::start(small_pool("sqlite-hold")).await;
    let release = TestShop::start(small_pool("sqlite-release")).await;
    exhaustion_and_its_fix(hold, release, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holding_connections_exhausts_the_pool_and_releasing_them_does_not_on_postgres() {
    log();
    let Some(admin) = postgres_admin_url(
        "holding_connections_exhausts_the_pool_and_releasing_them_does_not_on_postgres",
    ) else {
        return;
    };
    let hold = TestShop::start_postgres_with(&admin, small_pool("postgres-hold")).await;
    let release = TestShop::start_postgres_with(&admin, small_pool("postgres-release")).await;
    exhaustion_and_its_fix(hold, release, "postgres").await;
}

/// A statement PostgreSQL cuts at its `statement_timeout` is recorded as timed out — a
/// slow-statement finding marked `timed_out`, and `vitals_queries_statement_timeouts_total` —
/// not as a generic error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_cut_at_the_statement_timeout_is_recorded_as_such_on_postgres() {
    use axum::extract::State;
    use axum::routing::get;
    use tower::ServiceExt as _;

    log();
    vitals_integration_tests::install_prometheus();
    let Some(admin) = postgres_admin_url(
        "a_statement_cut_at_the_statement_timeout_is_recorded_as_such_on_postgres",
    ) else {
        return;
    };
    let separator = if admin.contains('?') { '&' } else { '?' };
    let pool = sqlx::PgPool::connect(&format!("{admin}{separator}options[statement_timeout]=100"))
        .await
        .unwrap();
    let findings = vitals::core::findings::Findings::new(10);
    let app = axum::Router::new()
        .route(
            "/sleep",
            get(|State(pool): State<sqlx::PgPool>| async move {
                const SQL: &str = "SELECT pg_sleep(2)";
                let started = std::time::Instant::now();
                match sqlx::query(SQL).execute(&pool).await {
                    Ok(_) => "finished".to_owned(),
                    Err(error) => {
                        // sqlx's own event for the statement is in the ledger already: the
                        // failure marks it rather than adding one.
                        let ledger = vitals::queries::current_ledger().unwrap();
                        assert_eq!(ledger.count(), 1, "sqlx logged the cut statement");
                        let timed_out =
                            vitals::queries::record_sqlx_error(SQL, started.elapsed(), &error);
                        format!("timed out: {timed_out}")
                    }
                }
            }),
        )
        .with_state(pool.clone())
        .layer(vitals::queries::QueryTrackingLayer::new().with_findings(findings.clone()));
    let response = app
        .oneshot(
            http::Request::get("/sleep")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let timing = response.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        timing.contains("desc=\"1 query\""),
        "counted once: {timing}"
    );
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"timed out: true");
    let recent = findings.recent();
    let slow: Vec<_> = recent
        .iter()
        .filter_map(|r| match &r.finding {
            vitals::core::findings::Finding::SlowStatement {
                route,
                fingerprint,
                duration_ms,
                timed_out,
                ..
            } => Some((route.clone(), fingerprint.clone(), *duration_ms, *timed_out)),
            _ => None,
        })
        .collect();
    // Reported as cut (it may also have been reported slow when sqlx logged it, before its
    // error was known).
    let cut: Vec<_> = slow.iter().filter(|s| s.3).collect();
    assert_eq!(cut.len(), 1, "{recent:?}");
    let (route, fingerprint, duration_ms, _) = cut[0];
    assert_eq!(
        (route.as_str(), fingerprint.as_str()),
        ("/sleep", "SELECT pg_sleep(?)")
    );
    assert!((90.0..1_900.0).contains(duration_ms), "{duration_ms}");
    let text = vitals::telemetry::prometheus().unwrap().render();
    assert!(
        text.contains("vitals_queries_statement_timeouts_total{http_route=\"/sleep\"} 1"),
        "{text}"
    );
    pool.close().await;
}
