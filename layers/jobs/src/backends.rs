//! apalis' storages on the service's pools, one queue per job kind.

use std::future::Future;

use apalis::prelude::WorkerBuilderExt;
use apalis_core::backend::ext::BackendExt;
use apalis_core::layers::Service;
use apalis_core::task::Task;
use apalis_core::worker::builder::WorkerBuilder;

use crate::Job;
use crate::worker::{JobFailure, Settings};

/// The signal that stops a worker.
pub(crate) trait StopSignal:
    Future<Output = Result<(), std::io::Error>> + Send + 'static
{
}
impl<T: Future<Output = Result<(), std::io::Error>> + Send + 'static> StopSignal for T {}

/// The storage of `J`'s queue in SQLite (for a worker: its heartbeat and batch).
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_storage<J: Job>(
    pool: &sqlx::SqlitePool,
    worker: Option<&Settings>,
) -> apalis_sqlite::SqliteStorage<J> {
    let mut config = apalis_sqlite::Config::default().queue(J::KIND);
    if let Some(worker) = worker {
        config = config
            .heartbeat_interval(worker.heartbeat)
            .batch_size(worker.batch());
    }
    apalis_sqlite::SqliteStorage::new(pool).with_config(config)
}

/// The storage of `J`'s queue in PostgreSQL (for a worker: its heartbeat and batch).
#[cfg(feature = "postgres")]
pub(crate) fn postgres_storage<J: Job>(
    pool: &sqlx::PgPool,
    worker: Option<&Settings>,
) -> apalis_postgres::PostgresStorage<J> {
    let mut config = apalis_postgres::Config::default().queue(J::KIND);
    if let Some(worker) = worker {
        config = config
            .heartbeat_interval(worker.heartbeat)
            .batch_size(worker.batch());
    }
    apalis_postgres::PostgresStorage::new(pool).with_config(config)
}

/// The service a worker calls with each job of kind `J`.
pub(crate) trait RunsJobs<J: Job>:
    Service<Task<J>, Response = J::Output, Error = JobFailure, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<J: Job, S> RunsJobs<J> for S where
    S: Service<Task<J>, Response = J::Output, Error = JobFailure, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// `$name`: runs a service on `J`'s queue in the pool's database (its storage made by
/// `$storage`) until the stop signal, or until the database fails.
macro_rules! runner {
    ($feature:literal, $name:ident, $pool:ty, $storage:ident) => {
        #[cfg(feature = $feature)]
        pub(crate) async fn $name<J: Job>(
            pool: &$pool,
            settings: &Settings,
            name: String,
            service: impl RunsJobs<J>,
            signal: impl StopSignal,
        ) -> Result<(), String> {
            let backend =
                $storage::<J>(pool, Some(settings)).poll_with_interval(settings.poll_interval);
            WorkerBuilder::new(name)
                .backend(backend)
                .concurrency(settings.concurrency)
                .build(service)
                .run_until(signal)
                .await
                .map_err(|error| error.to_string())
        }
    };
}

runner!("sqlite", run_sqlite, sqlx::SqlitePool, sqlite_storage);
runner!("postgres", run_postgres, sqlx::PgPool, postgres_storage);
