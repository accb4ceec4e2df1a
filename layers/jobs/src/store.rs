//! `JobStore`: the queue's tables in the service's own database — jobs pushed, their status
//! read, their counts taken — through apalis' storages and a few statements of our own.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use apalis_core::backend::TaskSink;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::metadata::MetadataStore;
use apalis_core::task::task_id::TaskId;
use serde::Serialize;
use vitals_trace_context::TraceContext;

use crate::Job;
use crate::id::JobId;
use crate::state::{JobState, state_of};

/// The most runs of a job by default: the first and four retries.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The metadata key of the enqueuing request's `traceparent`.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// The metadata key of the enqueuing request's `tracestate`.
pub(crate) const TRACESTATE: &str = "tracestate";

/// Why the job store failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum JobError {
    /// The database (or apalis on it) failed; the message says how.
    Store(String),
    /// A setting out of its range.
    InvalidSetting(&'static str),
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(message) => write!(f, "job store: {message}"),
            Self::InvalidSetting(what) => write!(f, "job store setting: {what}"),
        }
    }
}

impl std::error::Error for JobError {}

fn store_error(error: impl fmt::Display) -> JobError {
    JobError::Store(error.to_string())
}

/// Where the jobs are: apalis' tables in the service's own database.
#[derive(Clone)]
pub(crate) enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// The job queue of a service, in its own database: what a handler enqueues into
/// ([`enqueue`](Self::enqueue), [`accept`](Self::accept)), what the status route reads
/// ([`status`](Self::status)), what the workers take from. Cheap to clone.
///
/// The tables are apalis' (`Jobs` in SQLite; schema `apalis` in PostgreSQL), made by
/// [`sqlite`](Self::sqlite) / [`postgres`](Self::postgres) if missing.
#[derive(Clone)]
pub struct JobStore {
    pub(crate) backend: Backend,
    pub(crate) max_attempts: u32,
    pub(crate) status_path: String,
}

impl fmt::Debug for JobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
        };
        f.debug_struct("JobStore")
            .field("backend", &backend)
            .field("max_attempts", &self.max_attempts)
            .field("status_path", &self.status_path)
            .finish()
    }
}

/// A job as its status route tells it (JSON: the field names below, times in RFC 3339).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobStatus {
    /// The job's id.
    pub id: String,
    /// Its kind ([`Job::KIND`]).
    pub kind: String,
    /// Where it is.
    pub state: JobState,
    /// Runs started so far.
    pub attempts: u32,
    /// The most runs it gets.
    pub max_attempts: u32,
    /// When it was enqueued.
    pub created_at: String,
    /// When its latest run started (running, succeeded or failed).
    pub started_at: Option<String>,
    /// When it succeeded or was given up on.
    pub finished_at: Option<String>,
    /// What it answered, once succeeded.
    pub result: Option<serde_json::Value>,
    /// Its latest run's error (a pending job waiting for a retry, or a failed one).
    pub error: Option<String>,
}

/// The jobs of one kind by state, for the queue-depth gauge and the dashboard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    /// The kind.
    pub kind: String,
    /// Waiting for a worker (new, or failed with attempts left): the queue's depth.
    pub pending: u64,
    /// Running now.
    pub running: u64,
    /// Succeeded (kept until the table is cleaned).
    pub succeeded: u64,
    /// Dead-lettered: every attempt failed, or a run panicked.
    pub failed: u64,
}

/// The jobs of each kind by state (the same statement on both databases, but for the table).
macro_rules! counts_from {
    ($table:literal) => {
        concat!(
            "SELECT job_type, ",
            "SUM(CASE WHEN status IN ('Pending', 'Queued') OR (status = 'Failed' AND attempts < max_attempts) THEN 1 ELSE 0 END), ",
            "SUM(CASE WHEN status = 'Running' THEN 1 ELSE 0 END), ",
            "SUM(CASE WHEN status = 'Done' THEN 1 ELSE 0 END), ",
            "SUM(CASE WHEN status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts) THEN 1 ELSE 0 END) ",
            "FROM ",
            $table,
            " GROUP BY job_type ORDER BY job_type"
        )
    };
}
#[cfg(feature = "sqlite")]
const COUNTS_SQLITE: &str = counts_from!("Jobs");
#[cfg(feature = "postgres")]
const COUNTS_POSTGRES: &str = counts_from!("apalis.jobs");

/// A job's row, as the status route reads it: id, kind, status, attempts, most attempts, when
/// its latest run started and ended (seconds since the epoch), its latest outcome.
#[cfg(feature = "sqlite")]
macro_rules! sqlite_row {
    () => {
        "SELECT id, job_type, status, attempts, max_attempts, lock_at, done_at, last_result FROM Jobs"
    };
}
#[cfg(feature = "postgres")]
macro_rules! postgres_row {
    () => {
        "SELECT id, job_type, status, attempts, max_attempts, \
         extract(epoch FROM lock_at)::float8, extract(epoch FROM done_at)::float8, \
         last_result::text FROM apalis.jobs"
    };
}

/// Dead-lettered, the latest first: failed with no attempt left, or killed (a panic).
macro_rules! dead {
    () => {
        " WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts) ORDER BY done_at DESC"
    };
}

#[cfg(feature = "sqlite")]
const SQLITE_BY_ID: &str = concat!(sqlite_row!(), " WHERE id = ?1");
#[cfg(feature = "postgres")]
const POSTGRES_BY_ID: &str = concat!(postgres_row!(), " WHERE id = $1");
#[cfg(feature = "sqlite")]
const SQLITE_DEAD: &str = concat!(sqlite_row!(), dead!(), " LIMIT ?1");
#[cfg(feature = "postgres")]
const POSTGRES_DEAD: &str = concat!(postgres_row!(), dead!(), " NULLS LAST LIMIT $1");

/// A row as SQLite gives it (times in whole seconds).
#[cfg(feature = "sqlite")]
type SqliteRow = (
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// A row as PostgreSQL gives it (times to the microsecond).
#[cfg(feature = "postgres")]
type PostgresRow = (
    String,
    String,
    String,
    i32,
    i32,
    Option<f64>,
    Option<f64>,
    Option<String>,
);

#[cfg(feature = "sqlite")]
fn from_sqlite(
    (id, kind, status, attempts, max_attempts, lock_at, done_at, last_result): SqliteRow,
) -> (String, Row) {
    let row = Row {
        kind,
        status,
        attempts,
        max_attempts,
        lock_at: lock_at.map(|s| s as f64),
        done_at: done_at.map(|s| s as f64),
        last_result,
    };
    (id, row)
}

#[cfg(feature = "postgres")]
fn from_postgres(
    (id, kind, status, attempts, max_attempts, lock_at, done_at, last_result): PostgresRow,
) -> (String, Row) {
    let row = Row {
        kind,
        status,
        attempts: i64::from(attempts),
        max_attempts: i64::from(max_attempts),
        lock_at,
        done_at,
        last_result,
    };
    (id, row)
}

/// What [`JobStore::watch`] read last.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobsSnapshot {
    /// When it was read.
    #[serde(skip)]
    pub read_at: std::time::SystemTime,
    /// The jobs of each kind by state.
    pub kinds: Vec<JobCounts>,
    /// The latest dead-lettered jobs, the latest first.
    pub dead_lettered: Vec<JobStatus>,
}

/// The queue as [`JobStore::watch`] last read it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JobsWatch {
    latest: Arc<Mutex<Option<JobsSnapshot>>>,
}

impl JobsWatch {
    /// The latest read (`None` before the first, or while the database fails from the
    /// start).
    pub fn latest(&self) -> Option<JobsSnapshot> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A row as read from either database.
struct Row {
    kind: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    lock_at: Option<f64>,
    done_at: Option<f64>,
    last_result: Option<String>,
}

impl JobStore {
    /// The jobs in the service's SQLite database (`pool`): apalis' tables are made if missing
    /// (its migrations, recorded in `_sqlx_migrations`; a service running its own sqlx
    /// migrations on the same database sets `set_ignore_missing(true)` on its migrator). The
    /// database's journal mode is left as it is: WAL lets the status route read while a worker
    /// writes.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(pool: &sqlx::SqlitePool) -> Result<Self, JobError> {
        let mut migrator = apalis_sqlite::SqliteStorage::<()>::migrations();
        migrator.set_ignore_missing(true);
        migrator.run(pool).await.map_err(store_error)?;
        Ok(Self::new(Backend::Sqlite(pool.clone())))
    }

    /// The jobs in the service's PostgreSQL database (`pool`): apalis' schema `apalis` is
    /// made if missing (it needs the `pgcrypto` and `hstore` extensions, which a database
    /// owner may create).
    #[cfg(feature = "postgres")]
    pub async fn postgres(pool: &sqlx::PgPool) -> Result<Self, JobError> {
        apalis_postgres::PostgresStorage::setup(pool)
            .await
            .map_err(store_error)?;
        Ok(Self::new(Backend::Postgres(pool.clone())))
    }

    fn new(backend: Backend) -> Self {
        Self {
            backend,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            status_path: "/jobs".to_owned(),
        }
    }

    /// The most runs a job enqueued from now on gets (default 5: the first and four
    /// retries); after the last failure it is dead-lettered. 1 to 100.
    pub fn with_max_attempts(mut self, attempts: u32) -> Result<Self, JobError> {
        if !(1..=100).contains(&attempts) {
            return Err(JobError::InvalidSetting(
                "max attempts must be from 1 to 100",
            ));
        }
        self.max_attempts = attempts;
        Ok(self)
    }

    /// Where the status route is mounted (default `/jobs`): a `202`'s `Location` is
    /// `{path}/{id}`.
    pub fn with_status_path(mut self, path: &str) -> Result<Self, JobError> {
        let trimmed = path.trim_end_matches('/');
        let plain = |c: char| c.is_ascii_alphanumeric() || "/-_.~".contains(c);
        if !trimmed.starts_with('/') || !trimmed.chars().all(plain) {
            return Err(JobError::InvalidSetting(
                "the status path is an absolute path such as /jobs",
            ));
        }
        trimmed.clone_into(&mut self.status_path);
        Ok(self)
    }

    /// Where the status of job `id` is read.
    pub fn location_of(&self, id: &JobId) -> String {
        format!("{}/{id}", self.status_path)
    }

    /// Enqueues `job`, with the current request's trace context (its `traceparent` and
    /// `tracestate`) beside it, so its run continues the request's trace.
    pub async fn enqueue<J: Job>(&self, job: J) -> Result<JobId, JobError> {
        let id = JobId::generate();
        let mut metadata = MetadataStore::new();
        if let Some(context) = TraceContext::current() {
            let traceparent = context.traceparent().to_string();
            let _ = metadata.insert(TRACEPARENT, traceparent);
            if let Some(state) = context.state.header_value()
                && let Ok(state) = state.to_str()
            {
                let _ = metadata.insert(TRACESTATE, state.to_owned());
            }
        }
        let task = TaskBuilder::new(job)
            .task_id(TaskId::from_ulid(id.ulid()))
            .max_attempts(self.max_attempts as usize)
            .with_metadata(metadata)
            .build();
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => crate::backends::sqlite_storage::<J>(pool, None)
                .push_task(task)
                .await
                .map_err(store_error)?,
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => crate::backends::postgres_storage::<J>(pool, None)
                .push_task(task)
                .await
                .map_err(store_error)?,
        }
        crate::metrics::enqueued(J::KIND);
        Ok(id)
    }

    /// The status of job `id` (any kind), read from the queue's table: `None` when there is
    /// no such job.
    pub async fn status(&self, id: &JobId) -> Result<Option<JobStatus>, JobError> {
        let text = id.to_string();
        let row = match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query_as::<_, SqliteRow>(SQLITE_BY_ID)
                .bind(&text)
                .fetch_optional(pool)
                .await
                .map_err(store_error)?
                .map(from_sqlite),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query_as::<_, PostgresRow>(POSTGRES_BY_ID)
                .bind(&text)
                .fetch_optional(pool)
                .await
                .map_err(store_error)?
                .map(from_postgres),
        };
        Ok(row.map(|(_, row)| status_of(id, row)))
    }

    /// The jobs of each kind by state (one pass over the table).
    pub async fn counts(&self) -> Result<Vec<JobCounts>, JobError> {
        let rows: Vec<(String, i64, i64, i64, i64)> = match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query_as(COUNTS_SQLITE)
                .fetch_all(pool)
                .await
                .map_err(store_error)?,
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query_as(COUNTS_POSTGRES)
                .fetch_all(pool)
                .await
                .map_err(store_error)?,
        };
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(rows
            .into_iter()
            .map(|(kind, pending, running, succeeded, failed)| JobCounts {
                kind,
                pending: count(pending),
                running: count(running),
                succeeded: count(succeeded),
                failed: count(failed),
            })
            .collect())
    }

    /// The `limit` (at most 50) jobs dead-lettered last, the latest first.
    pub async fn dead_lettered(&self, limit: u32) -> Result<Vec<JobStatus>, JobError> {
        let limit = i64::from(limit.min(50));
        let rows: Vec<(String, Row)> = match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => sqlx::query_as::<_, SqliteRow>(SQLITE_DEAD)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(store_error)?
                .into_iter()
                .map(from_sqlite)
                .collect(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => sqlx::query_as::<_, PostgresRow>(POSTGRES_DEAD)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(store_error)?
                .into_iter()
                .map(from_postgres)
                .collect(),
        };
        Ok(rows
            .into_iter()
            .filter_map(|(id, row)| Some(status_of(&JobId::parse(&id)?, row)))
            .collect())
    }

    /// Reads the queue's counts and latest dead-lettered jobs every `every` (at least 1 s) on
    /// a task of the current runtime, for readers that cannot wait for the database (the
    /// dashboard): [`JobsWatch::latest`]. The task ends when the last `JobsWatch` clone is
    /// dropped.
    pub fn watch(&self, every: Duration) -> JobsWatch {
        let latest = Arc::new(Mutex::new(None));
        let weak = Arc::downgrade(&latest);
        let store = self.clone();
        let every = every.max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                let read = match (store.counts().await, store.dead_lettered(5).await) {
                    (Ok(kinds), Ok(dead_lettered)) => Some(JobsSnapshot {
                        read_at: std::time::SystemTime::now(),
                        kinds,
                        dead_lettered,
                    }),
                    _ => None,
                };
                let Some(latest) = weak.upgrade() else {
                    return;
                };
                if let Some(read) = read {
                    *latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(read);
                }
                drop(latest);
                tokio::time::sleep(every).await;
            }
        });
        JobsWatch { latest }
    }

    /// Job `id`'s next run is not before `delay` from now (its backoff, set before the failed
    /// run is recorded: the record leaves `run_at` as it is).
    pub(crate) async fn retry_after(&self, id: &JobId, delay: Duration) -> Result<(), JobError> {
        let text = id.to_string();
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                // `run_at` counts whole seconds, and now is truncated to one: a second more
                // keeps the wait at least `delay`.
                sqlx::query("UPDATE Jobs SET run_at = strftime('%s', 'now') + ?1 WHERE id = ?2")
                    .bind(
                        i64::try_from(delay.as_secs() + u64::from(delay.subsec_nanos() > 0))
                            .unwrap_or(i64::MAX / 2)
                            .saturating_add(1),
                    )
                    .bind(&text)
                    .execute(pool)
                    .await
                    .map_err(store_error)?;
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                sqlx::query(
                    "UPDATE apalis.jobs SET run_at = now() + make_interval(secs => $1) WHERE id = $2",
                )
                .bind(delay.as_secs_f64())
                .bind(&text)
                .execute(pool)
                .await
                .map_err(store_error)?;
            }
        }
        Ok(())
    }
}

/// What a row says to a client.
fn status_of(id: &JobId, row: Row) -> JobStatus {
    let state = state_of(&row.status, row.attempts, row.max_attempts);
    let (result, error) = outcome(row.last_result.as_deref());
    let started = matches!(
        state,
        JobState::Running | JobState::Succeeded | JobState::Failed
    );
    let finished = matches!(state, JobState::Succeeded | JobState::Failed);
    JobStatus {
        id: id.to_string(),
        kind: row.kind,
        state,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        max_attempts: u32::try_from(row.max_attempts).unwrap_or(0),
        created_at: rfc3339(id.created_at()),
        started_at: row.lock_at.filter(|_| started).map(from_epoch),
        finished_at: row.done_at.filter(|_| finished).map(from_epoch),
        result: if state == JobState::Succeeded {
            result
        } else {
            None
        },
        error: if state == JobState::Succeeded {
            None
        } else {
            error
        },
    }
}

/// apalis' `last_result`: `{"Ok": value}` or `{"Err": "message"}`.
fn outcome(last_result: Option<&str>) -> (Option<serde_json::Value>, Option<String>) {
    let Some(value) =
        last_result.and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
    else {
        return (None, None);
    };
    let error = value.get("Err").map(|error| match error.as_str() {
        Some(text) => text.to_owned(),
        None => error.to_string(),
    });
    (value.get("Ok").cloned(), error)
}

/// A time read from the database (seconds since the epoch, to the microsecond at most), in
/// RFC 3339; empty for one that cannot be written (never a panic).
#[allow(clippy::cast_possible_truncation)] // `as` saturates, and the result is range-checked.
fn from_epoch(seconds: f64) -> String {
    if !seconds.is_finite() {
        return format_unix(0, 0);
    }
    let whole = seconds.trunc() as i64;
    let micros = (seconds.fract() * 1e6).round() as i64;
    format_unix(whole, micros * 1_000)
}

/// `at` in RFC 3339, to the nanosecond it has.
fn rfc3339(at: std::time::SystemTime) -> String {
    let since = at
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format_unix(
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        i64::from(since.subsec_nanos()),
    )
}

fn format_unix(seconds: i64, nanos: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|at| at.checked_add(time::Duration::nanoseconds(nanos)))
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_errors_are_read_from_the_stored_outcome() {
        assert_eq!(
            outcome(Some(r#"{"Ok":{"orders":3}}"#)),
            (Some(serde_json::json!({"orders": 3})), None)
        );
        assert_eq!(
            outcome(Some(r#"{"Err":"boom"}"#)),
            (None, Some("boom".to_owned()))
        );
        assert_eq!(outcome(Some("not json")), (None, None));
        assert_eq!(outcome(None), (None, None));
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(from_epoch(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(from_epoch(f64::NAN), "1970-01-01T00:00:00Z");
        assert_eq!(from_epoch(1_796_601_600.25), "2026-12-07T00:00:00.25Z");
        assert_eq!(
            from_epoch(1e300),
            "",
            "past what RFC 3339 writes: empty, no panic"
        );
        let at = std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_601_600_123);
        assert_eq!(rfc3339(at), "2026-12-07T00:00:00.123Z");
        assert_eq!(from_epoch(1_796_601_600.0), "2026-12-07T00:00:00Z");
    }
}
