//! A worker on a real SQLite database: a run has the enqueuing request's trace context current
//! (the same trace, the request's span as its parent: what its logs and outgoing calls carry),
//! and a run that panics dead-letters its job at once, without taking the worker down.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqlitePoolOptions;
use vitals_jobs::{Job, JobContext, JobFailure, JobId, JobState, JobStatus, JobStore, JobWorker};
use vitals_trace_context::TraceContext;

#[derive(Serialize, Deserialize)]
struct Probe {
    panic: bool,
}

impl Job for Probe {
    const KIND: &'static str = "test.probe";
    type Output = String;
}

async fn settled(store: &JobStore, id: &JobId) -> JobStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = store.status(id).await.unwrap().unwrap();
        if matches!(status.state, JobState::Succeeded | JobState::Failed) {
            return status;
        }
        assert!(Instant::now() < deadline, "never settled: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_continues_the_requests_trace_and_a_panic_dead_letters_its_job() {
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect("sqlite:file:vitals-jobs-worker?mode=memory&cache=shared")
        .await
        .unwrap();
    let store = JobStore::sqlite(&pool).await.unwrap();
    // The request's context, as the trace-context part makes it current for its handler.
    let request = TraceContext::continued_from(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        Some("rojo=00f067aa0ba902b7"),
    );
    let traced = request
        .clone()
        .scope(store.enqueue(Probe { panic: false }))
        .await
        .unwrap();
    let crashing = store.enqueue(Probe { panic: true }).await.unwrap();
    let worker = JobWorker::new(&store, |job: Probe, run: JobContext| async move {
        assert!(!job.panic || run.attempt > 1, "asked to panic");
        let context = TraceContext::current().ok_or("no trace context in the run")?;
        Ok::<_, JobFailure>(format!(
            "{} {} {}",
            context.trace_id,
            context
                .parent_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            context.state
        ))
    })
    .with_poll_interval(Duration::from_millis(50))
    .spawn();

    let status = settled(&store, &traced).await;
    assert_eq!(status.state, JobState::Succeeded, "{status:?}");
    assert_eq!(
        status.result,
        Some(serde_json::Value::String(format!(
            "{} {} rojo=00f067aa0ba902b7",
            request.trace_id, request.span_id
        ))),
        "the run is in the request's trace, a child of the request's span"
    );

    let crashed = settled(&store, &crashing).await;
    assert_eq!(crashed.state, JobState::Failed, "{crashed:?}");
    assert_eq!(crashed.attempts, 1, "a panic is not retried: {crashed:?}");
    assert!(
        crashed
            .error
            .as_deref()
            .is_some_and(|error| error.contains("asked to panic")),
        "{crashed:?}"
    );
    // The worker lives on: another job still runs.
    let after = store.enqueue(Probe { panic: false }).await.unwrap();
    assert_eq!(settled(&store, &after).await.state, JobState::Succeeded);
    let dead = store.dead_lettered(5).await.unwrap();
    assert_eq!(
        dead.iter().map(|job| job.id.clone()).collect::<Vec<_>>(),
        [crashing.to_string()]
    );
    worker.shutdown().await;
}
