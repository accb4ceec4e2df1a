//! The shop's query layer over real TCP, on SQLite and PostgreSQL: the N+1 route is reported
//! with its repeated statement and count, the JOIN route is not, and `Server-Timing` carries
//! the query count.
//!
//! One test in this binary on purpose: it installs a global tracing subscriber.

use std::time::Duration;

use shop::db::seed;
use vitals_integration_tests::events::{Captured, EventLog};
use vitals_integration_tests::{TestShop, postgres_admin_url};

/// The `db` entry's query count in `Server-Timing`, and the `vitals_queries` events logged.
async fn serve(log: &EventLog, shop: &TestShop, path: &str) -> (u64, Vec<Captured>) {
    let start = log.len();
    let response = shop.get(path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    let timing = response
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    response.bytes().await.expect("body");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let count = timing
        .split(", ")
        .find(|m| m.starts_with("db;"))
        .and_then(|db| db.split("desc=\"").nth(1))
        .and_then(|desc| desc.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no db entry in Server-Timing: {timing:?}"));
    let events = log
        .since(start)
        .into_iter()
        .filter(|e| e.target == "vitals_queries")
        .collect();
    (count, events)
}

async fn check(log: &EventLog, shop: &TestShop) {
    let orders = u64::try_from(seed::ORDERS).expect("small");
    // A request that makes the pool open a connection also runs its setup statements (SQLite
    // pragmas): they count toward it, so allow two more.
    let (joined, events) = serve(log, shop, "/orders").await;
    assert!((1..=3).contains(&joined), "GET /orders: {joined} queries");
    assert!(events.is_empty(), "{events:#?}");

    let (naive, events) = serve(log, shop, "/orders/n-plus-one").await;
    assert!(
        (orders + 1..=orders + 3).contains(&naive),
        "GET /orders/n-plus-one: {naive} queries"
    );
    // The N+1 finding, and the route's query budget (3) reported as exceeded.
    let (over_budget, findings): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|e| e.message.contains("query budget exceeded"));
    assert_eq!(over_budget.len(), 1, "{over_budget:#?}");
    assert_eq!(over_budget[0].fields["budget"], "3");
    assert_eq!(over_budget[0].fields["count"], naive.to_string());
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let finding = &findings[0];
    assert_eq!(finding.level, tracing::Level::WARN);
    assert!(finding.message.contains("N+1"), "{finding:?}");
    assert_eq!(finding.fields["count"], orders.to_string());
    assert_eq!(finding.fields["http.route"], "/orders/n-plus-one");
    assert_eq!(
        finding.fields["fingerprint"],
        "SELECT id, name, email FROM customers WHERE id = ?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_plus_one_is_reported_and_the_join_is_not() {
    let log = EventLog::install();
    let sqlite = TestShop::start_sqlite().await;
    check(&log, &sqlite).await;
    sqlite.shutdown().await;

    if let Some(url) = postgres_admin_url("n_plus_one_is_reported_and_the_join_is_not (postgres)") {
        let postgres = TestShop::start_postgres(&url).await;
        check(&log, &postgres).await;
        postgres.shutdown().await;
    }
}
