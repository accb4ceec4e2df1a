//! # vitals-jobs
//!
//! Slow work that leaves the request and stays visible. A handler enqueues the work and
//! answers `202 Accepted` with `Location: /jobs/{id}`; a client polls the status route, which
//! reads the queue's table, never the worker; workers run the job with retries, backoff and a
//! dead-letter state; and the request's trace goes on into the job: its span is a child of the
//! request's, its logs carry the request's trace id.
//!
//! The queue is [apalis](https://docs.rs/apalis) 1.x on the service's own database (SQLite:
//! feature `sqlite`; PostgreSQL: feature `postgres`), through the service's own sqlx pool.
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! # async fn example(pool: sqlx::SqlitePool) -> Result<(), vitals_jobs::JobError> {
//! use serde::{Deserialize, Serialize};
//! use vitals_jobs::{Job, JobContext, JobFailure, JobStore, JobWorker};
//!
//! #[derive(Serialize, Deserialize)]
//! struct BuildReport {
//!     since_days: u32,
//! }
//!
//! impl Job for BuildReport {
//!     const KIND: &'static str = "shop.report";
//!     type Output = serde_json::Value;
//! }
//!
//! let jobs = JobStore::sqlite(&pool).await?;
//! let worker = JobWorker::new(&jobs, |job: BuildReport, run: JobContext| async move {
//!     // `run.id` is the idempotency key of what the job writes: a run may happen twice.
//!     Ok::<_, JobFailure>(serde_json::json!({ "days": job.since_days, "job": run.id.to_string() }))
//! })
//! .spawn();
//! // In a handler: 202, `Location: /jobs/{id}`, `Retry-After: 1`.
//! let accepted = jobs.accept(BuildReport { since_days: 7 }).await?;
//! # let _ = accepted; worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! See docs/jobs.md for the status route, the metrics and the guarantees.

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("vitals-jobs needs a queue's database: enable feature `sqlite` or `postgres`");

pub mod metrics;
pub mod state;

mod accepted;
mod backends;
mod id;
mod job;
#[cfg(feature = "axum")]
mod status;
mod store;
mod worker;

pub use accepted::Accepted;
pub use id::JobId;
pub use job::Job;
pub use state::JobState;
#[cfg(feature = "axum")]
pub use status::StatusRoute;
pub use store::{
    DEFAULT_MAX_ATTEMPTS, JobCounts, JobError, JobStatus, JobStore, JobsSnapshot, JobsWatch,
};
pub use worker::{JobContext, JobFailure, JobWorker, JobWorkerHandle};
