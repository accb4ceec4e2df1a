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

use crate::ledger::Query;

/// Records diesel's statements in the current request's ledger.
#[derive(Debug, Default)]
pub struct DieselQueries {
    started: Option<Instant>,
}

impl DieselQueries {
    /// The instrumentation, for `Connection::set_instrumentation`.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Instrumentation for DieselQueries {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => self.started = Some(Instant::now()),
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let duration = self.started.take().map(|s| s.elapsed()).unwrap_or_default();
                // diesel's Display is the SQL, then ` -- binds: [...]`: the binds are values.
                let text = query.to_string();
                let statement = text
                    .rsplit_once(" -- binds: ")
                    .map_or(text.as_str(), |(sql, _)| sql);
                let error = error.map(ToString::to_string);
                crate::record_query(Query {
                    statement,
                    duration,
                    rows_returned: None,
                    rows_affected: None,
                    error: error.as_deref(),
                });
            }
            _ => {}
        }
    }
}
