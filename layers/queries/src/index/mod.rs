//! The missing-index detector: statement shapes explained by the database itself, on a
//! connection of the detector's own, and full scans of large tables reported as findings.
//!
//! A query that takes 2 ms on ten thousand rows takes seconds on ten million when an index is
//! missing, and nothing in the request's timing says why. The database's plan does:
//! `SCAN customers` (SQLite) or `Seq Scan on customers … Filter: (email = $1)` (PostgreSQL).
//! The detector asks for that plan — SQLite's `EXPLAIN QUERY PLAN`, PostgreSQL's
//! `EXPLAIN (FORMAT JSON)` of a generic plan (`PREPARE` + `plan_cache_mode =
//! force_generic_plan` + `EXPLAIN EXECUTE` with `NULL` parameters: sqlx's events carry no bind
//! values, and `EXPLAIN ANALYZE` would run the statement) — and reports every table read in
//! full while the statement filters it, when the table holds at least
//! [`min_rows`](IndexDetectorBuilder::with_min_rows) rows.
//!
//! What keeps it safe on a production service:
//! - it never touches a request's connection: it opens one of its own, read-only
//!   (`PRAGMA query_only`, `default_transaction_read_only`), with a statement timeout;
//! - it explains only statements that read ([`plan::is_read_only`]), one statement at a time;
//! - each statement shape is explained once; at most
//!   [`max_per_second`](IndexDetectorBuilder::with_max_per_second) a second (default 2), from a
//!   bounded queue (64: shapes past it are dropped, counted, and tried again when next seen);
//! - it is off unless given to [`QueryTrackingLayer::with_index_detector`](crate::QueryTrackingLayer::with_index_detector).
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! # async fn wire() -> Result<(), Box<dyn std::error::Error>> {
//! use vitals_queries::index::{DetectMode, IndexDetector, SqliteExplainer};
//! use vitals_queries::QueryTrackingLayer;
//!
//! let explainer = SqliteExplainer::connect("sqlite://shop.db").await?;
//! let detector = IndexDetector::new(explainer)
//!     .with_mode(DetectMode::FirstSight)
//!     .spawn()?;
//! let layer = QueryTrackingLayer::new().with_index_detector(detector);
//! # Ok(()) }
//! ```

pub mod plan;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vitals_core::findings::{Finding, Findings};
use vitals_core::route::RouteLabel;

pub use plan::FullScan;
#[cfg(feature = "postgres")]
pub use postgres::PostgresExplainer;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteExplainer;

use crate::statements::Seen;

/// The table size below which a full scan is not reported: scanning ten thousand rows is
/// still fast; the finding is for what will not be once the table grows.
pub const DEFAULT_MIN_ROWS: u64 = 10_000;

/// Statement shapes the detector remembers having explained; past it, new shapes are not
/// explained (a workload of ever-new shapes has literals inlined, not a missing index).
pub const MAX_SHAPES: usize = 10_000;

/// Shapes waiting to be explained, at most.
const QUEUE: usize = 64;

/// The future an [`Explain`] returns.
pub type ExplainFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<ScannedTable>, ExplainError>> + Send + 'a>>;

/// A full scan the plan showed, with the table's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedTable {
    /// What the plan showed.
    pub scan: FullScan,
    /// The table's size in rows (the database's estimate).
    pub rows: u64,
}

/// A database the detector can ask for plans: [`SqliteExplainer`], [`PostgresExplainer`], or
/// your own for another database.
pub trait Explain: Send + Sync + 'static {
    /// The full scans of `statement`'s plan, each with its table's size. Called for
    /// read-only statements only, one at a time.
    fn explain<'a>(&'a self, statement: &'a str) -> ExplainFuture<'a>;
}

/// Why a plan could not be read: the statement could not be prepared on the detector's
/// connection (a temporary table, a parameter whose type the database cannot infer), or the
/// connection failed.
#[derive(Debug)]
pub struct ExplainError(Box<dyn std::error::Error + Send + Sync>);

impl ExplainError {
    /// Wraps the database client's error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

impl fmt::Display for ExplainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot explain the statement: {}", self.0)
    }
}

impl std::error::Error for ExplainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Which statements the detector explains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DetectMode {
    /// Statement shapes that ran past their route's slow-statement threshold (the default:
    /// nothing is explained while the service is fast).
    #[default]
    SlowStatements,
    /// Every statement shape, the first time it is seen: one request is enough to get the
    /// finding (for development, tests and staging).
    FirstSight,
}

/// The detector's one connection, opened again at the next plan after it failed (the database
/// restarted, the connection dropped): what both explainers share.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug)]
struct OwnConnection<C> {
    slot: tokio::sync::Mutex<Option<C>>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<C> OwnConnection<C> {
    fn new(connection: C) -> Self {
        Self {
            slot: tokio::sync::Mutex::new(Some(connection)),
        }
    }

    /// Runs `plans` on the connection, opening one with `open` first if the last one failed.
    async fn plans(
        &self,
        open: impl AsyncFnOnce() -> Result<C, sqlx::Error>,
        plans: impl AsyncFnOnce(&mut C) -> Result<Vec<ScannedTable>, sqlx::Error>,
    ) -> Result<Vec<ScannedTable>, ExplainError> {
        let mut slot = self.slot.lock().await;
        let connection = match slot.as_mut() {
            Some(connection) => connection,
            None => slot.insert(open().await.map_err(ExplainError::new)?),
        };
        let result = plans(connection).await;
        if let Err(error) = &result
            && connection_failed(error)
        {
            *slot = None;
        }
        result.map_err(ExplainError::new)
    }
}

/// Whether `error` means the connection is gone (not just this statement): I/O, protocol,
/// PostgreSQL's connection exceptions (`08…`) and shutdowns (`57P…`, a terminated backend).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn connection_failed(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// Why the detector could not start.
#[derive(Debug)]
pub struct SpawnError;

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the index detector needs a Tokio runtime: spawn it from async code")
    }
}

impl std::error::Error for SpawnError {}

/// The detector, before [`spawn`](Self::spawn).
pub struct IndexDetectorBuilder {
    explainer: Box<dyn Explain>,
    mode: DetectMode,
    min_rows: u64,
    max_per_second: u32,
    findings: Option<Findings>,
}

impl fmt::Debug for IndexDetectorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexDetectorBuilder")
            .field("mode", &self.mode)
            .field("min_rows", &self.min_rows)
            .field("max_per_second", &self.max_per_second)
            .finish_non_exhaustive()
    }
}

/// The running detector, given to
/// [`QueryTrackingLayer::with_index_detector`](crate::QueryTrackingLayer::with_index_detector).
/// Cheap to clone; the worker stops when the last clone is dropped. See the [module
/// documentation](self).
#[derive(Clone)]
pub struct IndexDetector {
    inner: Arc<Inner>,
}

struct Inner {
    mode: DetectMode,
    seen: RwLock<HashSet<u64>>,
    /// [`MAX_SHAPES`] shapes seen: no new one is considered (no lock per statement).
    full: AtomicBool,
    queue: mpsc::Sender<Job>,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    explained: AtomicU64,
    findings: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
}

/// What the detector has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexDetectorSnapshot {
    /// Statement shapes explained.
    pub explained: u64,
    /// Missing-index findings reported.
    pub findings: u64,
    /// Shapes not explained because the queue was full (tried again when next seen).
    pub dropped: u64,
    /// Plans that could not be read.
    pub errors: u64,
}

struct Job {
    fingerprint: Arc<str>,
    statement: String,
    route: RouteLabel,
    key: u64,
}

impl IndexDetector {
    /// A detector asking `explainer` for plans: slow statements only, tables of 10,000 rows
    /// or more, at most two plans a second.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(explainer: impl Explain) -> IndexDetectorBuilder {
        IndexDetectorBuilder {
            explainer: Box::new(explainer),
            mode: DetectMode::default(),
            min_rows: DEFAULT_MIN_ROWS,
            max_per_second: 2,
            findings: None,
        }
    }

    /// What it has done since it started.
    pub fn snapshot(&self) -> IndexDetectorSnapshot {
        let counts = &self.inner.counts;
        IndexDetectorSnapshot {
            explained: counts.explained.load(Ordering::Relaxed),
            findings: counts.findings.load(Ordering::Relaxed),
            dropped: counts.dropped.load(Ordering::Relaxed),
            errors: counts.errors.load(Ordering::Relaxed),
        }
    }

    /// A statement was recorded on `route`: explain it if the mode asks and its shape is new.
    pub(crate) fn consider(&self, seen: &Seen<'_>, route: &RouteLabel, slow: bool) {
        if (self.inner.mode == DetectMode::SlowStatements && !slow)
            || self.inner.full.load(Ordering::Relaxed)
        {
            return;
        }
        if self
            .inner
            .seen
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&seen.key)
        {
            return;
        }
        self.enqueue(seen, route);
    }

    #[cold]
    fn enqueue(&self, seen: &Seen<'_>, route: &RouteLabel) {
        {
            let mut shapes = self
                .inner
                .seen
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if shapes.len() >= MAX_SHAPES {
                self.inner.full.store(true, Ordering::Relaxed);
                return;
            }
            if !shapes.insert(seen.key) {
                return;
            }
        }
        if !plan::is_read_only(seen.statement) {
            return;
        }
        let job = Job {
            fingerprint: Arc::clone(seen.fingerprint),
            statement: seen.statement.to_owned(),
            route: route.clone(),
            key: seen.key,
        };
        if self.inner.queue.try_send(job).is_err() {
            self.inner.counts.dropped.fetch_add(1, Ordering::Relaxed);
            self.forget(seen.key);
        }
    }

    fn forget(&self, key: u64) {
        self.inner
            .seen
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }
}

impl fmt::Debug for IndexDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexDetector")
            .field("mode", &self.inner.mode)
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}

impl IndexDetectorBuilder {
    /// Which statements to explain (default [`DetectMode::SlowStatements`]).
    #[must_use]
    pub fn with_mode(mut self, mode: DetectMode) -> Self {
        self.mode = mode;
        self
    }

    /// Full scans of tables smaller than this are not reported (default 10,000 rows).
    #[must_use]
    pub fn with_min_rows(mut self, rows: u64) -> Self {
        self.min_rows = rows;
        self
    }

    /// Plans asked for a second, at most (default 2; at least 1, at most 1,000).
    #[must_use]
    pub fn with_max_per_second(mut self, plans: u32) -> Self {
        self.max_per_second = plans.clamp(1, 1_000);
        self
    }

    /// Where missing-index findings go (the dashboard's ring); they are logged at WARN
    /// either way.
    #[must_use]
    pub fn with_findings(mut self, findings: Findings) -> Self {
        self.findings = Some(findings);
        self
    }

    /// Starts the worker on the current Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] outside a Tokio runtime.
    pub fn spawn(self) -> Result<IndexDetector, SpawnError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SpawnError)?;
        let (queue, jobs) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        let detector = IndexDetector {
            inner: Arc::new(Inner {
                mode: self.mode,
                seen: RwLock::default(),
                full: AtomicBool::new(false),
                queue,
                counts: Arc::clone(&counts),
            }),
        };
        let worker = Worker {
            explainer: self.explainer,
            min_rows: self.min_rows,
            interval: Duration::from_secs(1) / self.max_per_second,
            findings: self.findings,
            counts,
            last_error_log: None,
        };
        runtime.spawn(worker.run(jobs));
        Ok(detector)
    }
}

struct Worker {
    explainer: Box<dyn Explain>,
    min_rows: u64,
    interval: Duration,
    findings: Option<Findings>,
    counts: Arc<Counts>,
    last_error_log: Option<Instant>,
}

impl Worker {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.recv().await {
            let started = Instant::now();
            match self.explainer.explain(&job.statement).await {
                Ok(tables) => {
                    self.counts.explained.fetch_add(1, Ordering::Relaxed);
                    for table in tables.into_iter().filter(|t| t.rows >= self.min_rows) {
                        self.report(&job, table);
                    }
                }
                Err(error) => self.failed(&job, &error),
            }
            tokio::time::sleep(self.interval.saturating_sub(started.elapsed())).await;
        }
    }

    fn report(&self, job: &Job, table: ScannedTable) {
        self.counts.findings.fetch_add(1, Ordering::Relaxed);
        let columns = table.scan.columns.join(", ");
        tracing::warn!(
            target: "vitals_queries",
            table = %table.scan.table,
            http.route = %job.route,
            columns = %columns,
            rows = table.rows,
            fingerprint = %job.fingerprint,
            plan = %table.scan.plan,
            "missing index? the plan scans all {} rows of {} to filter by {columns}",
            table.rows,
            table.scan.table,
        );
        if let Some(findings) = &self.findings {
            findings.push(Finding::MissingIndex {
                route: job.route.as_str().to_owned(),
                table: table.scan.table,
                columns: table.scan.columns,
                rows: table.rows,
                fingerprint: job.fingerprint.to_string(),
                plan: table.scan.plan,
            });
        }
    }

    #[cold]
    fn failed(&mut self, job: &Job, error: &ExplainError) {
        self.counts.errors.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|last| now.duration_since(last) >= Duration::from_mins(1))
        {
            self.last_error_log = Some(now);
            tracing::warn!(
                target: "vitals_queries",
                fingerprint = %job.fingerprint,
                key = job.key,
                %error,
                "the index detector could not explain a statement (said once a minute)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An explainer over a fixed plan, counting its calls: what the worker does with plans
    /// (the real databases are in the sqlite and postgres tests).
    struct Fixed {
        calls: Arc<Mutex<Vec<String>>>,
        rows: u64,
    }

    impl Explain for Fixed {
        fn explain<'a>(&'a self, statement: &'a str) -> ExplainFuture<'a> {
            Box::pin(async move {
                self.calls.lock().unwrap().push(statement.to_owned());
                if statement.contains("broken") {
                    return Err(ExplainError::new("no such table: broken"));
                }
                Ok(plan::sqlite_full_scans(statement, &["SCAN customers"])
                    .into_iter()
                    .map(|scan| ScannedTable {
                        scan,
                        rows: self.rows,
                    })
                    .collect())
            })
        }
    }

    fn seen<'a>(print: &'a Arc<str>, statement: &'a str, key: u64) -> Seen<'a> {
        Seen {
            fingerprint: print,
            key,
            statement,
            duration: Duration::from_millis(1),
            timed_out: false,
        }
    }

    #[tokio::test]
    async fn first_sight_explains_each_read_once_and_reports_large_scans() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let findings = Findings::new(10);
        let detector = IndexDetector::new(Fixed {
            calls: Arc::clone(&calls),
            rows: 12_000,
        })
        .with_mode(DetectMode::FirstSight)
        .with_max_per_second(1_000)
        .with_findings(findings.clone())
        .spawn()
        .unwrap();
        let route = RouteLabel::from_static("/by-email");
        let print: Arc<str> = Arc::from("SELECT id FROM customers WHERE email = ?");
        let read = "SELECT id FROM customers WHERE email = $1";
        for _ in 0..3 {
            detector.consider(&seen(&print, read, 1), &route, false);
        }
        detector.consider(
            &seen(&print, "DELETE FROM customers WHERE email = $1", 2),
            &route,
            false,
        );
        detector.consider(
            &seen(&print, "SELECT * FROM broken WHERE a = 1", 3),
            &route,
            false,
        );
        for _ in 0..200 {
            if detector.snapshot().explained + detector.snapshot().errors >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            calls.lock().unwrap().len(),
            2,
            "one read explained once, the write never"
        );
        let snapshot = detector.snapshot();
        assert_eq!(
            (snapshot.explained, snapshot.findings, snapshot.errors),
            (1, 1, 1)
        );
        let recent = findings.recent();
        let Finding::MissingIndex {
            route,
            table,
            columns,
            rows,
            ..
        } = &recent[0].finding
        else {
            panic!("{recent:?}");
        };
        assert_eq!(
            (route.as_str(), table.as_str(), rows),
            ("/by-email", "customers", &12_000)
        );
        assert_eq!(columns, &["email"]);
    }

    #[tokio::test]
    async fn small_tables_and_fast_statements_in_slow_mode_are_not_reported() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let detector = IndexDetector::new(Fixed {
            calls: Arc::clone(&calls),
            rows: 50,
        })
        .with_max_per_second(1_000)
        .spawn()
        .unwrap();
        let route = RouteLabel::from_static("/r");
        let print: Arc<str> = Arc::from("SELECT id FROM customers WHERE email = ?");
        let read = "SELECT id FROM customers WHERE email = $1";
        detector.consider(&seen(&print, read, 1), &route, false);
        assert!(
            detector.inner.seen.read().unwrap().is_empty(),
            "fast: not considered"
        );
        detector.consider(&seen(&print, read, 1), &route, true);
        for _ in 0..200 {
            if detector.snapshot().explained == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(detector.snapshot().explained, 1);
        assert_eq!(
            detector.snapshot().findings,
            0,
            "50 rows is below the minimum"
        );
    }

    #[test]
    fn spawning_outside_a_runtime_is_an_error() {
        let detector = IndexDetector::new(Fixed {
            calls: Arc::default(),
            rows: 0,
        })
        .spawn();
        assert!(detector.is_err());
    }
}
