//! Finding the current request's ledger from the code that runs the queries.
//!
//! Two ways, tried in order:
//!
//! 1. a task-local set around the request future — covers queries awaited in the request's own
//!    task (sqlx's PostgreSQL driver reports there);
//! 2. the request's tracing span, which carries the ledger in its extensions — covers queries
//!    reported on other threads or tasks that run inside the span: sqlx-sqlite's worker thread
//!    carries the caller's span, and spawned tasks carry it when instrumented with
//!    `.in_current_span()`.

use std::future::Future;

use tracing::Instrument;
use tracing_subscriber::registry::{LookupSpan, Registry};

use crate::ledger::{Query, QueryLedger};

tokio::task_local! {
    static CURRENT: QueryLedger;
}

/// Runs `future` with `ledger` as the current task's ledger.
pub(crate) fn with_ledger<F: Future>(
    ledger: QueryLedger,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<QueryLedger, F> {
    CURRENT.scope(ledger, future)
}

/// Runs `f` with `ledger` as the current task's ledger (for the inner service's `call`).
pub(crate) fn sync_with_ledger<R>(ledger: &QueryLedger, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(ledger.clone(), f)
}

impl QueryLedger {
    /// Runs `f` with this ledger current on this task: what a driver does around each poll of
    /// a request's handler and body (see [`crate::part`]).
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        sync_with_ledger(self, f)
    }
}

/// Puts `ledger` in the extensions of `span`, if the subscriber is built on tracing-subscriber's
/// `Registry` (it is whenever the query event layer is installed).
pub(crate) fn attach_to_span(span: &tracing::Span, ledger: &QueryLedger) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<Registry>()
            && let Some(span) = registry.span(id)
        {
            span.extensions_mut().insert(ledger.clone());
        }
    });
}

/// The task-local ledger, if the caller runs inside a tracked request's task.
pub(crate) fn task_ledger() -> Option<QueryLedger> {
    CURRENT.try_with(QueryLedger::clone).ok()
}

/// The ledger of the request the caller is working for, if any.
///
/// The task-local first, then the current span and its parents.
pub fn current_ledger() -> Option<QueryLedger> {
    task_ledger().or_else(ledger_of_current_span)
}

fn ledger_of_current_span() -> Option<QueryLedger> {
    let mut found = None;
    tracing::Span::current().with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<Registry>() {
            found = registry.span(id).and_then(|span| {
                span.scope()
                    .find_map(|s| s.extensions().get::<QueryLedger>().cloned())
            });
        }
    });
    found
}

/// Records a statement in the current request's ledger — the plain API for database clients
/// that report nothing themselves (a `tokio-postgres` wrapper, say). Returns whether a ledger
/// was found.
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let started = Instant::now();
/// // … run the statement …
/// let recorded = vitals_queries::record("SELECT 1", started.elapsed());
/// assert!(!recorded, "outside a tracked request there is no ledger");
/// # let _ = Duration::ZERO;
/// ```
pub fn record(statement: &str, duration: std::time::Duration) -> bool {
    record_query(Query::new(statement, duration))
}

/// Like [`record`], with rows and error.
pub fn record_query(query: Query<'_>) -> bool {
    match current_ledger() {
        Some(ledger) => {
            ledger.record(query);
            true
        }
        None => false,
    }
}

/// Makes `future` count toward the current request, wherever it runs: spawn it and its
/// queries land in the request's ledger.
///
/// ```no_run
/// # async fn load_recommendations() {}
/// tokio::spawn(vitals_queries::in_current_request(load_recommendations()));
/// ```
pub fn in_current_request<F: Future>(future: F) -> impl Future<Output = F::Output> {
    // The task-local for drivers that report in the task, the span for those that report
    // from elsewhere on the task's behalf (sqlx-sqlite's worker thread).
    let ledger = current_ledger();
    let future = future.instrument(tracing::Span::current());
    async move {
        match ledger {
            Some(ledger) => CURRENT.scope(ledger, future).await,
            None => future.await,
        }
    }
}
