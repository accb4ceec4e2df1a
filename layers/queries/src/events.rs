//! Sources of queries that report through `tracing`: sqlx's query events and spans or events
//! that follow the OpenTelemetry database conventions.

use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::ledger::{Query, QueryLedger};
use crate::scope;

/// The target of sqlx's per-statement events.
pub const SQLX_TARGET: &str = "sqlx::query";

/// The target of the span the tracking layer opens around each request.
pub const REQUEST_SPAN_TARGET: &str = "vitals_queries";

/// A `tracing_subscriber::Layer` that feeds query events into the current request's ledger.
///
/// It reads sqlx's `sqlx::query` events: `db.statement` (sqlx wraps it in newlines and leaves
/// it empty for SQL of four words or fewer; then `summary` is used), `elapsed_secs`,
/// `rows_affected`, `rows_returned`. sqlx logs them at DEBUG, so a global INFO filter would
/// drop them before any layer sees them: install this layer with its own filter, as
/// [`query_events`] does, and keep your log filter on your log layer:
///
/// ```
/// use tracing_subscriber::{filter::EnvFilter, fmt, prelude::*};
///
/// let subscriber = tracing_subscriber::registry()
///     .with(fmt::layer().with_filter(EnvFilter::new("info")))
///     .with(vitals_queries::query_events());
/// # let _ = subscriber;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryEventLayer {
    _private: (),
}

impl QueryEventLayer {
    /// The layer, without a filter (see [`query_events`] for the one to install).
    pub fn new() -> Self {
        Self::default()
    }

    /// The filter the layer needs: sqlx's query events at DEBUG and the tracking layer's
    /// request spans. Everything else stays as your other filters decide.
    pub fn filter() -> Targets {
        Targets::new()
            .with_target(SQLX_TARGET, tracing::Level::DEBUG)
            .with_target(REQUEST_SPAN_TARGET, tracing::Level::TRACE)
    }
}

/// [`QueryEventLayer`] with its own [`QueryEventLayer::filter`], ready for
/// `tracing_subscriber::registry().with(..)`.
pub fn query_events<S>() -> Filtered<QueryEventLayer, Targets, S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    QueryEventLayer::new().with_filter(QueryEventLayer::filter())
}

impl<S> Layer<S> for QueryEventLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != SQLX_TARGET {
            return;
        }
        let Some(ledger) = ledger_for(event, &ctx) else {
            return;
        };
        let mut fields = SqlxFields::default();
        event.record(&mut fields);
        let statement = fields.statement.trim();
        let statement = if statement.is_empty() {
            fields.summary.trim()
        } else {
            statement
        };
        ledger.record(Query {
            statement,
            duration: fields.elapsed,
            rows_returned: fields.rows_returned,
            rows_affected: fields.rows_affected,
            error: None,
        });
    }
}

/// The task-local ledger, else the one on the event's span or its parents.
fn ledger_for<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> Option<QueryLedger>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    scope::task_ledger().or_else(|| {
        ctx.event_scope(event)?
            .find_map(|span| span.extensions().get::<QueryLedger>().cloned())
    })
}

#[derive(Default)]
struct SqlxFields {
    statement: String,
    summary: String,
    elapsed: Duration,
    rows_returned: Option<u64>,
    rows_affected: Option<u64>,
}

impl Visit for SqlxFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "db.statement" => value.clone_into(&mut self.statement),
            "summary" => value.clone_into(&mut self.summary),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed = Duration::try_from_secs_f64(value).unwrap_or_default();
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_returned" => self.rows_returned = Some(value),
            "rows_affected" => self.rows_affected = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or_default());
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}
