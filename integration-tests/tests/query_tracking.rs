//! The shop's query layer over real TCP, on SQLite and PostgreSQL: the N+1 route is reported
//! with its repeated statement and count, the JOIN route is not, and `Server-Timing` carries
//! the query count.
//!
//! One test in this binary on purpose: it installs a global tracing subscriber.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use shop::db::seed;
use tracing::span;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use vitals_integration_tests::events::{Captured, EventLog};
use vitals_integration_tests::{TestShop, eventually, postgres_admin_url};

/// Counts the request spans that closed. The layer logs a request's findings
/// when its response body ends, after the client may already have read the last byte; the
/// span closes after that report, so once it has closed, every event of the request is in
/// the log.
#[derive(Clone, Default)]
struct RequestsReported(Arc<AtomicUsize>);

impl RequestsReported {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl<S> tracing_subscriber::Layer<S> for RequestsReported
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        if ctx
            .metadata(&id)
            .is_some_and(vitals_integration_tests::is_request_span)
        {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The captured events and the requests whose report is complete.
struct Observed {
    log: EventLog,
    reported: RequestsReported,
}

impl Observed {
    /// Installs the global subscriber: the query event layer (as the shop's `main` does), the
    /// event log and the request counter.
    fn install() -> Self {
        let observed = Self {
            log: EventLog::default(),
            reported: RequestsReported::default(),
        };
        tracing_subscriber::registry()
            .with(vitals_queries::query_events())
            .with(observed.log.clone())
            .with(observed.reported.clone())
            .init();
        observed
    }
}

/// The `db` entry's query count in `Server-Timing`, and the `vitals_queries` events logged.
async fn serve(observed: &Observed, shop: &TestShop, path: &str) -> (u64, Vec<Captured>) {
    let Observed { log, reported } = observed;
    let start = log.len();
    let reported_before = reported.count();
    let response = shop.get(path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    let timing = response
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    response.bytes().await.expect("body");
    eventually(&format!("the query layer's report on GET {path}"), || {
        reported.count() > reported_before
    })
    .await;
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

async fn check(observed: &Observed, shop: &TestShop) {
    let orders = u64::try_from(seed::ORDERS).expect("small");
    // No request opens a connection (whose setup statements would count toward it), so the
    // counts are the handlers' own, exactly.
    shop.open_every_connection().await;
    let (joined, events) = serve(observed, shop, "/orders").await;
    assert_eq!(joined, 1, "GET /orders runs one JOIN");
    assert!(events.is_empty(), "{events:#?}");

    let (naive, events) = serve(observed, shop, "/orders/n-plus-one").await;
    assert_eq!(
        naive,
        orders + 1,
        "GET /orders/n-plus-one: one query for the orders, one per order"
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
    let observed = Observed::install();
    let sqlite = TestShop::start_sqlite().await;
    check(&observed, &sqlite).await;
    sqlite.shutdown().await;

    if let Some(url) = postgres_admin_url("n_plus_one_is_reported_and_the_join_is_not (postgres)") {
        let postgres = TestShop::start_postgres(&url).await;
        check(&observed, &postgres).await;
        postgres.shutdown().await;
    }
}
