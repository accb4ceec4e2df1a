//! The per-request query ledger: every statement a request ran, grouped by fingerprint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use vitals_core::route::RouteLabel;

use crate::cache::fingerprint_of;
use crate::fingerprint::SqlDialect;
use crate::statements::{RequestWatch, Seen};

/// The most statements one ledger keeps in full; beyond it only counts and groups grow.
pub const MAX_RECORDED: usize = 1_000;

/// The longest statement text kept, in bytes (cut at a character boundary).
pub const MAX_STATEMENT_LEN: usize = 2_048;

/// One executed statement, as a source reports it.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The SQL text.
    pub statement: &'a str,
    /// How long it ran.
    pub duration: Duration,
    /// Rows it returned, if known.
    pub rows_returned: Option<u64>,
    /// Rows it changed, if known.
    pub rows_affected: Option<u64>,
    /// Its error, if it failed.
    pub error: Option<&'a str>,
    /// The SQL dialect it is written in, which decides what `"…"` is when fingerprinting.
    pub dialect: SqlDialect,
    /// Whether the database cut it at its statement timeout (PostgreSQL's
    /// `statement_timeout`, SQLite's busy timeout): reported as such, not as a generic error.
    pub timed_out: bool,
}

impl<'a> Query<'a> {
    /// A statement in standard SQL that ran for `duration`.
    pub fn new(statement: &'a str, duration: Duration) -> Self {
        Self {
            statement,
            duration,
            rows_returned: None,
            rows_affected: None,
            error: None,
            dialect: SqlDialect::Standard,
            timed_out: false,
        }
    }

    /// The statement failed with `error`.
    #[must_use]
    pub fn with_error(mut self, error: &'a str) -> Self {
        self.error = Some(error);
        self
    }

    /// The database cut the statement at its statement timeout.
    #[must_use]
    pub fn with_timed_out(mut self) -> Self {
        self.timed_out = true;
        self
    }

    /// The statement is written in `dialect`.
    #[must_use]
    pub fn with_sql_dialect(mut self, dialect: SqlDialect) -> Self {
        self.dialect = dialect;
        self
    }
}

/// One statement as recorded in the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedQuery {
    /// The SQL text (at most [`MAX_STATEMENT_LEN`] bytes).
    pub statement: String,
    /// Its fingerprint.
    pub fingerprint: Arc<str>,
    /// How long it ran.
    pub duration: Duration,
    /// Rows returned, if known.
    pub rows_returned: Option<u64>,
    /// Rows changed, if known.
    pub rows_affected: Option<u64>,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// The statements of one fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FingerprintGroup {
    /// The fingerprint.
    pub fingerprint: Arc<str>,
    /// How many statements had it.
    pub count: u64,
    /// Their total time.
    pub total: Duration,
    /// The first statement seen with it.
    pub sample: String,
}

/// What a ledger holds at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryReport {
    /// Statements recorded.
    pub count: u64,
    /// Their total time.
    pub total: Duration,
    /// The statements in order (the first [`MAX_RECORDED`]).
    pub queries: Vec<RecordedQuery>,
    /// Statements grouped by fingerprint, most frequent first.
    pub groups: Vec<FingerprintGroup>,
    /// Time spent waiting for pooled connections (when the source reports it).
    pub pool_wait: Duration,
    /// Connection acquires seen.
    pub acquires: u64,
    /// Statements the database cut at its statement timeout.
    pub timeouts: u64,
}

/// A request's query ledger. Clones share it; it is cheap to clone and safe to share across
/// threads (sqlx-sqlite reports from its worker thread).
#[derive(Clone, Debug, Default)]
pub struct QueryLedger {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    /// The tracking layer's watch over each statement (slow ones, the histogram, the
    /// missing-index detector); none for a ledger made outside a tracked request.
    watch: Option<RequestWatch>,
}

#[derive(Debug, Default)]
struct State {
    count: u64,
    total: Duration,
    queries: Vec<RecordedQuery>,
    groups: HashMap<u64, FingerprintGroup>,
    pool_wait: Duration,
    acquires: u64,
    timeouts: u64,
    /// The latest statements recorded, to mark one failed when its error comes after it.
    recent: [Recent; RECENT],
    /// Failures reported before the driver's event for their statement.
    pending: Vec<Pending>,
}

/// Statements remembered for [`QueryLedger::record_failure`].
const RECENT: usize = 8;

/// Failures waiting for their statement's event, at most.
const MAX_PENDING: usize = 8;

/// One of the latest statements: its shape, where it is kept, whether it was marked failed.
#[derive(Clone, Copy, Debug, Default)]
struct Recent {
    /// 0: an empty slot; else the statement's place in the count.
    seq: u64,
    key: u64,
    index: Option<usize>,
    failed: bool,
}

/// A failure whose statement the driver has not reported yet.
#[derive(Debug)]
struct Pending {
    key: u64,
    statement: String,
    error: String,
    timed_out: bool,
    duration: Duration,
    dialect: SqlDialect,
}

impl State {
    fn remember(&mut self, key: u64, index: Option<usize>, failed: bool) {
        let seq = self.count;
        let slot = usize::try_from(seq % RECENT as u64).unwrap_or(0);
        self.recent[slot] = Recent {
            seq,
            key,
            index,
            failed,
        };
    }

    /// The slot of the latest statement of shape `key` not yet marked failed.
    fn latest_unmarked(&self, key: u64) -> Option<usize> {
        self.recent
            .iter()
            .enumerate()
            .filter(|(_, recent)| recent.seq > 0 && recent.key == key && !recent.failed)
            .max_by_key(|(_, recent)| recent.seq)
            .map(|(slot, _)| slot)
    }
}

impl QueryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty ledger whose statements `watch` sees as they are recorded.
    pub(crate) fn watched(watch: RequestWatch) -> Self {
        // `Arc::default` writes the empty ledger in its allocation (`Arc::new` copied its
        // ~570 bytes from the stack); the watch is then put in place.
        let mut inner = Arc::<Inner>::default();
        match Arc::get_mut(&mut inner) {
            Some(fresh) => fresh.watch = Some(watch),
            // Never shared yet; kept total all the same.
            None => {
                inner = Arc::new(Inner {
                    state: Mutex::default(),
                    watch: Some(watch),
                });
            }
        }
        Self { inner }
    }

    /// The route of the request this ledger belongs to, when a tracking layer made it.
    pub fn route(&self) -> Option<&RouteLabel> {
        self.inner.watch.as_ref().map(|watch| &watch.route)
    }

    /// Records one statement. Durations add up saturating: a source reporting an absurd
    /// duration cannot make the sum overflow.
    pub fn record(&self, query: Query<'_>) {
        let statement = truncate(query.statement.trim(), MAX_STATEMENT_LEN);
        let (print, key) = fingerprint_of(statement, query.dialect);
        let mut state = self.lock();
        // A failure reported before the driver's own event for the statement (sqlx-sqlite
        // hands the error back before it logs): this is that statement.
        let waiting = state
            .pending
            .iter()
            .position(|pending| pending.key == key && pending.statement == statement);
        let failure = waiting.map(|at| state.pending.swap_remove(at));
        state.count = state.count.saturating_add(1);
        state.total = state.total.saturating_add(query.duration);
        let group = state.groups.entry(key).or_insert_with(|| FingerprintGroup {
            fingerprint: Arc::clone(&print),
            count: 0,
            total: Duration::ZERO,
            sample: statement.to_owned(),
        });
        group.count = group.count.saturating_add(1);
        group.total = group.total.saturating_add(query.duration);
        let cut_later = failure.as_ref().is_some_and(|failure| failure.timed_out);
        if query.timed_out || cut_later {
            state.timeouts = state.timeouts.saturating_add(1);
        }
        let index = (state.queries.len() < MAX_RECORDED).then(|| {
            let mut recorded = recorded_query(&query, statement, Arc::clone(&print));
            if let Some(failure) = &failure {
                recorded.error = Some(failure.error.clone());
            }
            state.queries.push(recorded);
            state.queries.len() - 1
        });
        let failed = failure.is_some() || query.error.is_some();
        state.remember(key, index, failed);
        drop(state);
        if let Some(watch) = &self.inner.watch {
            let seen = Seen {
                fingerprint: &print,
                key,
                statement,
                duration: query.duration,
                timed_out: query.timed_out,
            };
            watch.observe(&seen);
            if cut_later {
                watch.report_timeout(&Seen {
                    timed_out: true,
                    ..seen
                });
            }
        }
    }

    /// A statement failed with `error` (`timed_out`: cut at the database's statement timeout).
    ///
    /// Drivers that report failed statements too (sqlx logs every statement it ran, without
    /// its error) record it themselves: the latest such statement not yet marked is marked
    /// failed, not counted twice — whether the driver's event came before this call (sqlx's
    /// PostgreSQL driver) or comes after it (sqlx-sqlite hands the error back first). A failure
    /// no event matches by the end of the request is recorded then ([`settle`](Self::settle)).
    /// A timeout is reported (WARN, finding) as such.
    pub fn record_failure(&self, query: Query<'_>) {
        let statement = truncate(query.statement.trim(), MAX_STATEMENT_LEN);
        let error = query.error.unwrap_or("failed");
        let (print, key) = fingerprint_of(statement, query.dialect);
        let mut state = self.lock();
        let Some(slot) = state.latest_unmarked(key) else {
            if state.pending.len() >= MAX_PENDING {
                drop(state);
                self.record(query.with_error(error));
                return;
            }
            state.pending.push(Pending {
                key,
                statement: statement.to_owned(),
                error: error.to_owned(),
                timed_out: query.timed_out,
                duration: query.duration,
                dialect: query.dialect,
            });
            return;
        };
        state.recent[slot].failed = true;
        let index = state.recent[slot].index;
        if let Some(recorded) = index.and_then(|index| state.queries.get_mut(index)) {
            recorded.error = Some(error.to_owned());
        }
        if query.timed_out {
            state.timeouts = state.timeouts.saturating_add(1);
        }
        drop(state);
        if query.timed_out
            && let Some(watch) = &self.inner.watch
        {
            watch.report_timeout(&Seen {
                fingerprint: &print,
                key,
                statement,
                duration: query.duration,
                timed_out: true,
            });
        }
    }

    /// Records the failures no driver event matched (see
    /// [`record_failure`](Self::record_failure)) as statements of their own. The tracking
    /// layer calls it when the response's body ends; call it yourself on a ledger you drive.
    pub fn settle(&self) {
        let pending = std::mem::take(&mut self.lock().pending);
        for failure in pending {
            let mut query = Query::new(&failure.statement, failure.duration)
                .with_error(&failure.error)
                .with_sql_dialect(failure.dialect);
            if failure.timed_out {
                query = query.with_timed_out();
            }
            self.record(query);
        }
    }

    /// Records time spent waiting for a pooled connection (sqlx's acquire events).
    pub fn record_pool_wait(&self, waited: Duration) {
        let mut state = self.lock();
        state.pool_wait = state.pool_wait.saturating_add(waited);
        state.acquires = state.acquires.saturating_add(1);
    }

    /// Time spent waiting for pooled connections, and how many acquires were seen.
    pub fn pool_wait(&self) -> (Duration, u64) {
        let state = self.lock();
        (state.pool_wait, state.acquires)
    }

    /// Statements the database cut at its statement timeout.
    pub fn timeouts(&self) -> u64 {
        self.lock().timeouts
    }

    /// How many statements were recorded and their total time, read together.
    pub fn totals(&self) -> (u64, Duration) {
        let state = self.lock();
        (state.count, state.total)
    }

    /// How many statements were recorded.
    pub fn count(&self) -> u64 {
        self.lock().count
    }

    /// Their total time.
    pub fn total(&self) -> Duration {
        self.lock().total
    }

    /// The N+1 findings of what the ledger holds now, without copying every statement.
    pub fn findings(&self, rule: &crate::NPlusOneRule) -> Vec<crate::NPlusOneFinding> {
        let state = self.lock();
        if state.count < rule.threshold {
            return Vec::new();
        }
        rule.findings_in(state.groups.values())
    }

    /// A copy of what the ledger holds now.
    pub fn report(&self) -> QueryReport {
        let state = self.lock();
        let mut groups: Vec<FingerprintGroup> = state.groups.values().cloned().collect();
        groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        QueryReport {
            count: state.count,
            total: state.total,
            queries: state.queries.clone(),
            groups,
            pool_wait: state.pool_wait,
            acquires: state.acquires,
            timeouts: state.timeouts,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn recorded_query(query: &Query<'_>, statement: &str, fingerprint: Arc<str>) -> RecordedQuery {
    RecordedQuery {
        statement: statement.to_owned(),
        fingerprint,
        duration: query.duration,
        rows_returned: query.rows_returned,
        rows_affected: query.rows_affected,
        error: query.error.map(str::to_owned),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_durations_saturate_instead_of_overflowing() {
        let ledger = QueryLedger::new();
        ledger.record(Query::new("SELECT 1", Duration::MAX));
        ledger.record(Query::new("SELECT 1", Duration::MAX));
        ledger.record_pool_wait(Duration::MAX);
        ledger.record_pool_wait(Duration::MAX);
        assert_eq!(ledger.totals(), (2, Duration::MAX));
        assert_eq!(ledger.pool_wait(), (Duration::MAX, 2));
        assert_eq!(ledger.report().groups[0].total, Duration::MAX);
    }

    #[test]
    fn each_statement_is_fingerprinted_in_its_dialect() {
        let ledger = QueryLedger::new();
        for email in ["a@b.c", "d@e.f"] {
            let sql = format!(r#"SELECT id FROM users WHERE email = "{email}""#);
            ledger.record(Query::new(&sql, Duration::ZERO).with_sql_dialect(SqlDialect::Sqlite));
        }
        let report = ledger.report();
        assert_eq!(report.groups.len(), 1, "{report:#?}");
        assert_eq!(
            &*report.groups[0].fingerprint,
            "SELECT id FROM users WHERE email = ?"
        );
    }

    #[test]
    fn groups_statements_by_fingerprint() {
        let ledger = QueryLedger::new();
        ledger.record(Query::new("SELECT * FROM orders", Duration::from_millis(2)));
        for id in 1..=3 {
            let sql = format!("SELECT name FROM customers WHERE id = {id}");
            ledger.record(Query::new(&sql, Duration::from_millis(1)));
        }
        let report = ledger.report();
        assert_eq!(report.count, 4);
        assert_eq!(report.total, Duration::from_millis(5));
        assert_eq!(report.queries.len(), 4);
        assert_eq!(report.groups.len(), 2);
        let top = &report.groups[0];
        assert_eq!(&*top.fingerprint, "SELECT name FROM customers WHERE id = ?");
        assert_eq!(top.count, 3);
        assert_eq!(top.total, Duration::from_millis(3));
        assert_eq!(top.sample, "SELECT name FROM customers WHERE id = 1");
    }

    #[test]
    fn a_failure_marks_the_statement_already_recorded_or_records_it() {
        let ledger = QueryLedger::new();
        ledger.record(Query::new("SELECT pg_sleep(2)", Duration::from_millis(100)));
        ledger.record_failure(
            Query::new("SELECT pg_sleep(2)", Duration::from_millis(101))
                .with_error("canceling statement due to statement timeout")
                .with_timed_out(),
        );
        let report = ledger.report();
        assert_eq!(
            (report.count, report.timeouts),
            (1, 1),
            "marked, not counted twice"
        );
        assert_eq!(
            report.queries[0].error.as_deref(),
            Some("canceling statement due to statement timeout")
        );
        ledger.record_failure(Query::new("SELECT 1", Duration::ZERO).with_error("broken"));
        assert_eq!(ledger.count(), 1, "waiting for the driver's event");
        ledger.settle();
        let report = ledger.report();
        assert_eq!(
            (report.count, report.timeouts),
            (2, 1),
            "no event came: recorded"
        );
        assert_eq!(report.queries[1].error.as_deref(), Some("broken"));
    }

    #[test]
    fn a_failure_reported_before_its_event_waits_for_it() {
        let ledger = QueryLedger::new();
        ledger.record_failure(
            Query::new("UPDATE t SET a = 1", Duration::from_millis(5))
                .with_error("database is locked")
                .with_timed_out(),
        );
        ledger.record(Query::new("UPDATE t SET a = 1", Duration::from_millis(5)));
        ledger.settle();
        let report = ledger.report();
        assert_eq!(
            (report.count, report.timeouts),
            (1, 1),
            "one statement, cut"
        );
        assert_eq!(
            report.queries[0].error.as_deref(),
            Some("database is locked")
        );
    }

    #[test]
    fn failures_past_the_recorded_cap_are_matched_too() {
        let ledger = QueryLedger::new();
        for _ in 0..MAX_RECORDED + 5 {
            ledger.record(Query::new("SELECT 1", Duration::ZERO));
        }
        ledger.record_failure(Query::new("SELECT 1", Duration::ZERO).with_error("broken"));
        ledger.settle();
        assert_eq!(
            ledger.count(),
            (MAX_RECORDED + 5) as u64,
            "marked, not counted again"
        );
    }

    #[test]
    fn keeps_counting_past_the_recorded_cap() {
        let ledger = QueryLedger::new();
        for _ in 0..MAX_RECORDED + 10 {
            ledger.record(Query::new("SELECT 1", Duration::ZERO));
        }
        let report = ledger.report();
        assert_eq!(report.count, (MAX_RECORDED + 10) as u64);
        assert_eq!(report.queries.len(), MAX_RECORDED);
        assert_eq!(report.groups[0].count, (MAX_RECORDED + 10) as u64);
    }

    #[test]
    fn long_statements_are_cut_safely() {
        let ledger = QueryLedger::new();
        let long = format!("SELECT '{}'", "é".repeat(MAX_STATEMENT_LEN));
        ledger.record(Query::new(&long, Duration::ZERO));
        let report = ledger.report();
        assert!(report.queries[0].statement.len() <= MAX_STATEMENT_LEN);
    }
}
