//! diesel as a source of queries (feature `diesel`): an `Instrumentation` that times each
//! statement and records it in the current request's ledger.
//!
//! ```
//! use diesel::Connection;
//! use vitals_queries::diesel::DieselQueries;
//!
//! # fn wire(conn: &mut diesel::SqliteConnection) {
//! conn.set_instrumentation(DieselQueries::new());
//! # }
//! ```
//!
//! diesel runs queries synchronously on the calling thread: inside a request's task they are
//! attributed by the task-local; from `spawn_blocking`, enter the request's span in the
//! closure (`let span = tracing::Span::current();` … `span.in_scope(|| …)`).

use std::time::Instant;

use diesel::connection::{Instrumentation, InstrumentationEvent};

use crate::fingerprint::SqlDialect;
use crate::ledger::Query;

/// Records diesel's statements in the current request's ledger.
#[derive(Debug, Default)]
pub struct DieselQueries {
    started: Option<Instant>,
    dialect: SqlDialect,
}

impl DieselQueries {
    /// The instrumentation, for `Connection::set_instrumentation`; statements are
    /// fingerprinted as standard SQL.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fingerprints statements in `dialect` (diesel's instrumentation does not say which
    /// backend runs them): [`SqlDialect::MySql`] for `MysqlConnection`,
    /// [`SqlDialect::Sqlite`] for `SqliteConnection`.
    #[must_use]
    pub fn with_sql_dialect(mut self, dialect: SqlDialect) -> Self {
        self.dialect = dialect;
        self
    }
}

/// The SQL of diesel's `Display` for a query: the text before the first ` -- binds: `. What
/// follows is the bind values — user data — and a value may itself contain the marker, so
/// the first one, which diesel wrote after the SQL, is where the SQL ends.
fn statement_of(text: &str) -> &str {
    text.split_once(" -- binds: ").map_or(text, |(sql, _)| sql)
}

impl Instrumentation for DieselQueries {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => self.started = Some(Instant::now()),
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let duration = self.started.take().map(|s| s.elapsed()).unwrap_or_default();
                let text = query.to_string();
                let statement = statement_of(&text);
                let error = error.map(ToString::to_string);
                crate::record_query(Query {
                    statement,
                    duration,
                    rows_returned: None,
                    rows_affected: None,
                    error: error.as_deref(),
                    dialect: self.dialect,
                    timed_out: error
                        .as_deref()
                        .is_some_and(|message| crate::is_timeout_error(None, message)),
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_values_never_reach_the_statement_even_when_they_contain_the_marker() {
        assert_eq!(
            statement_of(r#"SELECT * FROM users WHERE name = ? -- binds: ["x -- binds: y"]"#),
            "SELECT * FROM users WHERE name = ?"
        );
        assert_eq!(statement_of("SELECT 1"), "SELECT 1");
    }
}
