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

/// Runs `service` on `J`'s queue in SQLite until `signal` (or the database fails).
#[cfg(feature = "sqlite")]
pub(crate) async fn run_sqlite<J, S>(
    pool: &sqlx::SqlitePool,
    settings: &Settings,
    name: String,
    service: S,
    signal: impl StopSignal,
) -> Result<(), String>
where
    J: Job,
    S: Service<Task<J>, Response = J::Output, Error = JobFailure> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let backend =
        sqlite_storage::<J>(pool, Some(settings)).poll_with_interval(settings.poll_interval);
    WorkerBuilder::new(name)
        .backend(backend)
        .concurrency(settings.concurrency)
        .build(service)
        .run_until(signal)
        .await
        .map_err(|error| error.to_string())
}

/// Runs `service` on `J`'s queue in PostgreSQL until `signal` (or the database fails).
#[cfg(feature = "postgres")]
pub(crate) async fn run_postgres<J, S>(
    pool: &sqlx::PgPool,
    settings: &Settings,
    name: String,
    service: S,
    signal: impl StopSignal,
) -> Result<(), String>
where
    J: Job,
    S: Service<Task<J>, Response = J::Output, Error = JobFailure> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let backend =
        postgres_storage::<J>(pool, Some(settings)).poll_with_interval(settings.poll_interval);
    WorkerBuilder::new(name)
        .backend(backend)
        .concurrency(settings.concurrency)
        .build(service)
        .run_until(signal)
        .await
        .map_err(|error| error.to_string())
}
