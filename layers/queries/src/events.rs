//! Sources of queries that report through `tracing`: sqlx's query events and spans or events
//! that follow the OpenTelemetry database conventions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, Filtered};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use vitals_core::identity::REQUEST_SPAN_TARGET as TRACE_SPAN_TARGET;

use crate::fingerprint::SqlDialect;
use crate::ledger::{Query, QueryLedger};
use crate::scope;

/// The target of sqlx's per-statement events.
pub const SQLX_TARGET: &str = "sqlx::query";

/// The target of sqlx's connection-acquire events (off unless
/// `PoolOptions::acquire_time_level` turns them on).
pub const SQLX_ACQUIRE_TARGET: &str = "sqlx::pool::acquire";

/// The target of the span the tracking layer opens around each request.
pub const REQUEST_SPAN_TARGET: &str = "vitals_queries";

/// Fields that carry a statement's text in OpenTelemetry's database conventions (current and
/// legacy names).
pub const DB_TEXT_FIELDS: [&str; 2] = ["db.query.text", "db.statement"];

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
///
/// sqlx's events do not name the database, so their statements are fingerprinted in the
/// dialect set with [`with_sql_dialect`](Self::with_sql_dialect) (standard SQL by default: set
/// [`SqlDialect::Sqlite`] or [`SqlDialect::MySql`] for those databases, or their
/// double-quoted strings stay in fingerprints). Events and spans that carry OpenTelemetry's
/// `db.system.name` (or `db.system`) are fingerprinted in the dialect it names.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryEventLayer {
    dialect: SqlDialect,
}

impl QueryEventLayer {
    /// The layer, without a filter (see [`query_events`] for the one to install).
    pub fn new() -> Self {
        Self::default()
    }

    /// The SQL dialect of statements whose source does not name its database (sqlx's).
    #[must_use]
    pub fn with_sql_dialect(mut self, dialect: SqlDialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The filter the layer needs: sqlx's query and acquire events, spans and events that carry
    /// a statement by the OpenTelemetry database conventions (`db.query.text`,
    /// `db.statement`), and the request spans of the tracking layer and of trace context (the
    /// fused `vitals` stack keeps the ledger on the latter) — at any level. Everything
    /// else stays as your other filters decide.
    pub fn filter() -> QueryFilter {
        FilterFn::new(is_query_callsite)
    }

    /// Whether the layer reads events or spans of this callsite: what [`filter`](Self::filter)
    /// lets through, for a composing layer that filters for it.
    pub fn wants(metadata: &Metadata<'_>) -> bool {
        is_query_callsite(metadata)
    }
}

/// Whether a database span has been seen in this process: until one is, the spans the layer
/// is told about (the request spans) are not looked up on every record and close.
static DB_SPANS: AtomicBool = AtomicBool::new(false);

/// The filter [`QueryEventLayer`] is installed with.
pub type QueryFilter = FilterFn<fn(&Metadata<'_>) -> bool>;

fn is_query_callsite(metadata: &Metadata<'_>) -> bool {
    matches!(
        metadata.target(),
        SQLX_TARGET | SQLX_ACQUIRE_TARGET | REQUEST_SPAN_TARGET
    ) || (metadata.is_span() && metadata.target() == TRACE_SPAN_TARGET)
        || DB_TEXT_FIELDS
            .iter()
            .any(|name| metadata.fields().field(name).is_some())
}

/// [`QueryEventLayer`] with its own [`QueryEventLayer::filter`], ready for
/// `tracing_subscriber::registry().with(..)`.
pub fn query_events<S>() -> Filtered<QueryEventLayer, QueryFilter, S>
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
        let target = event.metadata().target();
        if target == SQLX_ACQUIRE_TARGET {
            let mut fields = SqlxFields::default();
            event.record(&mut fields);
            if let (Some(waited), Some(ledger)) = (fields.acquired_after, ledger_for(event, &ctx)) {
                ledger.record_pool_wait(waited);
            }
            return;
        }
        let is_sqlx = target == SQLX_TARGET;
        if !is_sqlx && !has_db_text(event.metadata()) {
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
        if statement.is_empty() {
            return;
        }
        ledger.record(Query {
            statement,
            duration: fields.elapsed,
            rows_returned: fields.rows_returned,
            rows_affected: fields.rows_affected,
            error: None,
            dialect: fields.dialect.unwrap_or(self.dialect),
            timed_out: false,
        });
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let metadata = attrs.metadata();
        // The request spans this layer sees (to find their ledgers) carry no statement: known
        // by their target, without looking through their dozen fields.
        if matches!(metadata.target(), REQUEST_SPAN_TARGET | TRACE_SPAN_TARGET)
            || !has_db_text(metadata)
        {
            return;
        }
        let mut fields = SqlxFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            DB_SPANS.store(true, Ordering::Relaxed);
            span.extensions_mut().insert(DbSpan {
                statement: fields.statement,
                dialect: fields.dialect.unwrap_or(self.dialect),
                started: Instant::now(),
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if !DB_SPANS.load(Ordering::Relaxed) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(db) = extensions.get_mut::<DbSpan>() {
            let mut fields = SqlxFields::default();
            values.record(&mut fields);
            if !fields.statement.is_empty() {
                db.statement = fields.statement;
            }
            if let Some(dialect) = fields.dialect {
                db.dialect = dialect;
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if !DB_SPANS.load(Ordering::Relaxed) {
            return;
        }
        let Some(span) = ctx.span(&id) else { return };
        let Some(db) = span.extensions_mut().remove::<DbSpan>() else {
            return;
        };
        let statement = db.statement.trim();
        if statement.is_empty() {
            return;
        }
        // The span's own extensions never hold a ledger: look at its parents.
        let ledger = span
            .scope()
            .skip(1)
            .find_map(|parent| parent.extensions().get::<QueryLedger>().cloned())
            .or_else(scope::task_ledger);
        if let Some(ledger) = ledger {
            ledger.record(Query::new(statement, db.started.elapsed()).with_sql_dialect(db.dialect));
        }
    }
}

/// A database span in flight: its statement and when it started.
struct DbSpan {
    statement: String,
    dialect: SqlDialect,
    started: Instant,
}

fn has_db_text(metadata: &Metadata<'_>) -> bool {
    DB_TEXT_FIELDS
        .iter()
        .any(|name| metadata.fields().field(name).is_some())
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
    acquired_after: Option<Duration>,
    /// From `db.system.name` or `db.system`, when the source names its database.
    dialect: Option<SqlDialect>,
}

impl Visit for SqlxFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "db.statement" | "db.query.text" => value.clone_into(&mut self.statement),
            "summary" => value.clone_into(&mut self.summary),
            "db.system.name" | "db.system" => {
                self.dialect = Some(SqlDialect::from_db_system(value));
            }
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let seconds = || Duration::try_from_secs_f64(value).unwrap_or_default();
        match field.name() {
            "elapsed_secs" => self.elapsed = seconds(),
            "acquired_after_secs" => self.acquired_after = Some(seconds()),
            _ => {}
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

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // Instrumented clients may record the statement with `%` or `?`.
        if DB_TEXT_FIELDS.contains(&field.name()) && self.statement.is_empty() {
            self.statement = format!("{value:?}");
        } else if matches!(field.name(), "db.system.name" | "db.system") {
            let name = format!("{value:?}");
            self.dialect = Some(SqlDialect::from_db_system(name.trim_matches('"')));
        }
    }
}
