//! The N+1 route really issues one query per order, counted from sqlx's own query events.
//!
//! This file holds a single test on purpose: it installs a global tracing subscriber, and
//! every test in this binary would be counted by it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use shop::db::seed;
use tracing::field::{Field, Visit};
use tracing::span;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use vitals_integration_tests::{TestShop, eventually, postgres_admin_url};

/// Counts sqlx's `sqlx::query` events and keeps their summaries; counts the request spans
/// that closed (the stack's one request span, or the query layer's own when it runs alone).
#[derive(Clone, Default)]
struct QueryCounter {
    count: Arc<AtomicUsize>,
    summaries: Arc<Mutex<Vec<String>>>,
    requests_closed: Arc<AtomicUsize>,
}

impl<S> tracing_subscriber::Layer<S> for QueryCounter
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    /// A request's statements all run inside its span (sqlx-sqlite's worker thread enters it
    /// too), so once the span has closed, every one of them has been logged.
    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        if ctx
            .metadata(&id)
            .is_some_and(vitals_integration_tests::is_request_span)
        {
            self.requests_closed.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A request's statements: the ones logged inside its span (the shop's job workers and
    /// their queue's statements run outside any request, and are not the request's).
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let in_request = ctx.event_scope(event).is_some_and(|mut scope| {
            scope.any(|span| vitals_integration_tests::is_request_span(span.metadata()))
        });
        if !in_request {
            return;
        }
        let mut summary = Summary::default();
        event.record(&mut summary);
        self.summaries.lock().expect("lock").push(summary.text());
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

/// The statement's text: `db.statement` (sqlx leaves it empty for SQL of four words or
/// fewer, and wraps it in newlines), else the `summary`.
#[derive(Default)]
struct Summary {
    statement: String,
    summary: String,
}

impl Summary {
    fn text(self) -> String {
        let statement = self.statement.trim();
        if statement.is_empty() {
            self.summary
        } else {
            statement.to_owned()
        }
    }
}

impl Visit for Summary {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.statement),
            _ => {}
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl QueryCounter {
    /// Statements logged while `GET path` ran: up to the close of its request span, as events
    /// from sqlx's worker thread may come after the client has read the response.
    async fn during(&self, shop: &TestShop, path: &str) -> Vec<String> {
        let before = self.count.load(Ordering::SeqCst);
        let closed_before = self.requests_closed.load(Ordering::SeqCst);
        let response = shop.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.bytes().await.expect("body");
        eventually(&format!("the request span of GET {path} to close"), || {
            self.requests_closed.load(Ordering::SeqCst) > closed_before
        })
        .await;
        let summaries = self.summaries.lock().expect("lock");
        // The pool opens connections on demand; their setup statements are not the handler's.
        summaries[before..]
            .iter()
            .filter(|s| !is_connection_setup(s))
            .cloned()
            .collect()
    }
}

/// Statements sqlx runs when it opens a connection (SQLite pragmas, PostgreSQL settings).
fn is_connection_setup(summary: &str) -> bool {
    let upper = summary.trim_start().to_ascii_uppercase();
    upper.starts_with("PRAGMA ") || upper.starts_with("SET ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_plus_one_route_issues_one_query_per_order() {
    let counter = QueryCounter::default();
    tracing_subscriber::registry()
        .with(vitals_queries::query_events())
        .with(counter.clone())
        .init();

    let sqlite = TestShop::start_sqlite().await;
    check(&counter, &sqlite).await;
    sqlite.shutdown().await;

    if let Some(url) = postgres_admin_url("n_plus_one_route_issues_one_query_per_order (postgres)")
    {
        let postgres = TestShop::start_postgres(&url).await;
        check(&counter, &postgres).await;
        postgres.shutdown().await;
    }
}

async fn check(counter: &QueryCounter, shop: &TestShop) {
    let joined = counter.during(shop, "/orders").await;
    assert_eq!(joined.len(), 1, "GET /orders runs one JOIN: {joined:?}");

    let naive = counter.during(shop, "/orders/n-plus-one").await;
    let orders = usize::try_from(seed::ORDERS).expect("small");
    assert_eq!(
        naive.len(),
        1 + orders,
        "one query for the orders, one per order"
    );
    let per_order = naive[1..].iter().collect::<std::collections::HashSet<_>>();
    assert_eq!(
        per_order.len(),
        1,
        "the per-order queries are one statement: {per_order:?}"
    );
    assert!(
        naive[1].contains("FROM customers WHERE id = $1"),
        "{}",
        naive[1]
    );
    assert!(naive[0].contains("FROM orders"), "{}", naive[0]);

    let product = counter.during(shop, "/products/1").await;
    assert_eq!(product.len(), 1);
}
