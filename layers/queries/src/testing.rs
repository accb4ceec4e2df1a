//! Query budgets in tests (feature `testing`): run code, get its query report, fail the test
//! with the list of statements when it went over.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use vitals_queries::testing::{assert_max_queries, capture};
//!
//! let ((), report) = capture(async {
//!     // Your data-access code, e.g. `repo.list_orders(&pool).await` with sqlx.
//!     vitals_queries::record("SELECT * FROM orders", Duration::from_millis(1));
//! })
//! .await;
//! assert_max_queries(&report, 2);
//! # }
//! ```
//!
//! `capture` installs a global tracing subscriber with [`query_events`](crate::query_events)
//! if the test has none, so sqlx's statements are seen. If your tests install their own
//! subscriber, add `vitals_queries::query_events()` to it.
//!
//! For a request through an app that already has [`QueryTrackingLayer`](crate::QueryTrackingLayer),
//! read the request's ledger from the response instead:
//! `response.extensions().get::<QueryLedger>()`.

use std::fmt::Write as _;
use std::future::Future;

use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::events::REQUEST_SPAN_TARGET;
use crate::ledger::{QueryLedger, QueryReport};
use crate::n_plus_one::NPlusOneRule;
use crate::scope;

/// Runs `future` with a ledger of its own, and returns its output with the queries it ran.
pub async fn capture<F: Future>(future: F) -> (F::Output, QueryReport) {
    let _ = tracing_subscriber::registry()
        .with(crate::query_events())
        .try_init();
    let ledger = QueryLedger::new();
    let span = tracing::trace_span!(target: REQUEST_SPAN_TARGET, "vitals_queries.capture");
    scope::attach_to_span(&span, &ledger);
    let output = scope::with_ledger(ledger.clone(), future)
        .instrument(span)
        .await;
    (output, ledger.report())
}

/// Fails unless exactly `expected` statements ran, listing them.
#[track_caller]
pub fn assert_query_count(report: &QueryReport, expected: u64) {
    assert!(
        report.count == expected,
        "expected {expected} queries, {} ran\n{}",
        report.count,
        describe(report)
    );
}

/// Fails if more than `max` statements ran, listing them.
#[track_caller]
pub fn assert_max_queries(report: &QueryReport, max: u64) {
    assert!(
        report.count <= max,
        "expected at most {max} queries, {} ran\n{}",
        report.count,
        describe(report)
    );
}

/// Fails if the report has N+1 findings by the default rule (5 repeats), listing them.
#[track_caller]
pub fn assert_no_n_plus_one(report: &QueryReport) {
    assert!(
        NPlusOneRule::default().findings(report).is_empty(),
        "N+1 queries found\n{}",
        describe(report)
    );
}

/// The numbered statements of `report` and its N+1 findings, as the assertions print them.
pub fn describe(report: &QueryReport) -> String {
    let mut out = String::new();
    if report.count == 0 {
        out.push_str(
            "no queries were captured (is vitals_queries::query_events() in the subscriber?)\n",
        );
    }
    for (n, query) in report.queries.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>3}. {} ({:.3} ms)",
            n + 1,
            query.statement,
            query.duration.as_secs_f64() * 1000.0
        );
    }
    let listed = u64::try_from(report.queries.len()).unwrap_or(u64::MAX);
    if report.count > listed {
        let _ = writeln!(out, "  … and {} more", report.count - listed);
    }
    for finding in NPlusOneRule::default().findings(report) {
        let _ = writeln!(
            out,
            "N+1: {} ran {} times ({:.3} ms in total)",
            finding.fingerprint,
            finding.count,
            finding.total.as_secs_f64() * 1000.0
        );
    }
    out
}
