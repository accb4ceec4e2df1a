//! The shop's jobs: the CPU-heavy report, enqueued by `POST /reports` and run by the shop's
//! own workers, its result kept by the queue and recorded once in `reports`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use vitals::jobs::{Job, JobContext, JobError, JobFailure, JobStore, JobWorker, JobWorkerHandle};

use crate::db::{Backend, Db};
use crate::report::{self, Report, Workload};

/// The report, as a job: `POST /reports` enqueues it, a worker builds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportJob {
    /// Fail every run (`POST /reports?fail=true`): the demo of retries with backoff and of a
    /// job dead-lettered after its last attempt.
    #[serde(default)]
    pub fail: bool,
    /// After the report is recorded, hold the first run this long before it ends
    /// (`POST /reports?hold_ms=N`): the demo of a worker that dies mid-job — the job is run
    /// again, and the report recorded once.
    #[serde(default)]
    pub hold_ms: u64,
}

impl Job for ReportJob {
    const KIND: &'static str = "shop.report";
    type Output = Report;
}

/// How the shop runs its jobs.
#[derive(Clone, Copy, Debug)]
pub struct JobSettings {
    /// Reports built at once by this shop (0: none here; another shop on the database runs
    /// them).
    pub workers: usize,
    /// The most runs of a report.
    pub attempts: u32,
    /// How often a worker says it is alive; a report held by a worker silent for two is run
    /// again by another.
    pub heartbeat: Duration,
}

/// The queue, in the shop's database through a small pool of its own (so the queue's polling
/// never waits behind the handlers' statements), and this shop's worker when it has one.
pub async fn start(
    db: &Db,
    workload: Workload,
    settings: JobSettings,
) -> Result<(JobStore, Option<JobWorkerHandle>), JobError> {
    let store_error = |error: sqlx::Error| JobError::Store(error.to_string());
    let store = match db.backend() {
        Backend::Sqlite => {
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect(db.url())
                .await
                .map_err(store_error)?;
            JobStore::sqlite(&pool).await?
        }
        Backend::Postgres => {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .connect(db.url())
                .await
                .map_err(store_error)?;
            JobStore::postgres(&pool).await?
        }
    }
    .with_max_attempts(settings.attempts)?;
    let worker = (settings.workers > 0).then(|| spawn_worker(&store, db, workload, settings));
    Ok((store, worker))
}

/// A worker of `store`'s reports (one more beside the shop's own, or after it died).
pub fn spawn_worker(
    store: &JobStore,
    db: &Db,
    workload: Workload,
    settings: JobSettings,
) -> JobWorkerHandle {
    let db = db.clone();
    JobWorker::new(store, move |job: ReportJob, run: JobContext| {
        build_report(db.clone(), workload, job, run)
    })
    .with_concurrency(settings.workers.max(1))
    .with_heartbeat(settings.heartbeat)
    .with_poll_interval(Duration::from_millis(200))
    .spawn()
}

/// One run of the report: built off the executor, recorded under the job's id (a second run
/// of the same job records nothing more), then answered.
async fn build_report(
    db: Db,
    workload: Workload,
    job: ReportJob,
    run: JobContext,
) -> Result<Report, JobFailure> {
    if job.fail {
        return Err("this report was asked to fail (POST /reports?fail=true)".into());
    }
    let totals = db.order_totals().await?;
    let report = tokio::task::spawn_blocking(move || report::build(&totals, workload)).await?;
    let recorded = db.record_report(&run.id.to_string(), &report).await?;
    tracing::info!(
        job.id = %run.id,
        attempt = run.attempt,
        recorded,
        orders = report.orders,
        "report built"
    );
    if run.attempt == 1 && job.hold_ms > 0 {
        tokio::time::sleep(Duration::from_millis(job.hold_ms)).await;
    }
    Ok(report)
}
