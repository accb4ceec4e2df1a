//! `JobWorker`: runs a kind of job from the queue — a run acknowledged only when it succeeded,
//! a failed one retried with backoff, the last one dead-lettered — each run in a span that
//! continues the trace of the request that enqueued it.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use apalis_core::task::Task;
use apalis_core::task::task_id::TaskId;
use futures_util::FutureExt;
use tracing::Instrument;
use vitals_trace_context::TraceContext;

use crate::backends::RunsJobs;
use crate::id::JobId;
use crate::state::backoff;
use crate::store::{Backend, JobStore, TRACEPARENT, TRACESTATE};
use crate::{Job, metrics};

/// Why a run failed: any error (its `Display` is kept as the job's error).
pub type JobFailure = Box<dyn std::error::Error + Send + Sync>;

/// What a handler knows of the run it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobContext {
    /// The job's id: the idempotency key of its side effects — a run may happen again after a
    /// worker died mid-job, and must not do its work twice.
    pub id: JobId,
    /// This run's number, from 1.
    pub attempt: u32,
    /// The most runs the job gets.
    pub max_attempts: u32,
}

/// Runs jobs of kind `J` with `handler` (`async fn(J, JobContext) -> Result<J::Output,
/// JobFailure>`), on tasks of the current runtime:
///
/// - a run is recorded as done only when it returned `Ok` (its output kept as the job's
///   result); a worker that dies mid-run leaves the job to be run again once its heartbeats
///   stop (after twice [`with_heartbeat`](Self::with_heartbeat));
/// - an `Err` is retried after an exponential backoff with full jitter
///   ([`with_backoff`](Self::with_backoff)), until the job's last attempt
///   ([`JobStore::with_max_attempts`]); then it is dead-lettered: logged at ERROR, counted,
///   never run again, shown as `failed`; a panic dead-letters it at once;
/// - each run is a `job` span (`otel.kind = consumer`) continuing the trace of the request
///   that enqueued it, with the trace context current, so its logs carry the trace id.
pub struct JobWorker<J, F> {
    store: JobStore,
    handler: F,
    concurrency: usize,
    poll_interval: Duration,
    heartbeat: Duration,
    backoff: (Duration, Duration),
    name: String,
    kind: PhantomData<fn(J)>,
}

impl<J, F> std::fmt::Debug for JobWorker<J, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobWorker")
            .field("store", &self.store)
            .field("concurrency", &self.concurrency)
            .field("poll_interval", &self.poll_interval)
            .field("heartbeat", &self.heartbeat)
            .field("backoff", &self.backoff)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<J, F, Fut> JobWorker<J, F>
where
    J: Job,
    F: Fn(J, JobContext) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<J::Output, JobFailure>> + Send + 'static,
{
    /// A worker for `J`'s queue in `store`. Defaults: 4 runs at once, the queue polled every
    /// 500 ms, heartbeats every 30 s, backoff from 1 s to 5 min.
    pub fn new(store: &JobStore, handler: F) -> Self {
        Self {
            store: store.clone(),
            handler,
            concurrency: 4,
            poll_interval: Duration::from_millis(500),
            heartbeat: Duration::from_secs(30),
            backoff: (Duration::from_secs(1), Duration::from_mins(5)),
            name: J::KIND.to_owned(),
            kind: PhantomData,
        }
    }

    /// At most `runs` jobs at once (at least 1).
    #[must_use]
    pub fn with_concurrency(mut self, runs: usize) -> Self {
        self.concurrency = runs.max(1);
        self
    }

    /// How often an idle worker looks for jobs (at least 10 ms).
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How often the worker says it is alive (at least 1 s). A job held by a worker silent
    /// for two of them is run again by another.
    #[must_use]
    pub fn with_heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval.max(Duration::from_secs(1));
        self
    }

    /// The wait after a failed run: from `base` (at least 1 s: the queue counts seconds),
    /// doubling per attempt, at most `max`, with full jitter.
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        let base = base.max(Duration::from_secs(1));
        self.backoff = (base, max.max(base));
        self
    }

    /// The worker's name in the queue's table (default the job kind; a process id and a
    /// random suffix are added, as each run of a worker needs a name of its own).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts the worker on the current tokio runtime. It runs until
    /// [`JobWorkerHandle::shutdown`] (or `abort`; dropping the handle leaves it running with
    /// the runtime); if the database fails under it, it says so (a WARN, at most once a
    /// minute) and starts again a second later.
    pub fn spawn(self) -> JobWorkerHandle {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let run = RunJob {
            store: self.store.clone(),
            handler: self.handler.clone(),
            backoff: self.backoff,
            kind: PhantomData,
        };
        let task = tokio::spawn(supervise::<J, F>(
            self.store,
            run,
            Settings {
                concurrency: self.concurrency,
                poll_interval: self.poll_interval,
                heartbeat: self.heartbeat,
                name: self.name,
            },
            stopped,
        ));
        JobWorkerHandle { stop, task }
    }
}

/// A running [`JobWorker`].
#[derive(Debug)]
pub struct JobWorkerHandle {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl JobWorkerHandle {
    /// Stops taking jobs, lets the runs in progress end and records them, then returns (as
    /// long as those runs take: bound it with `tokio::time::timeout` and [`abort`](Self::abort)
    /// if a handler may hang).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops at once, as a crash would: runs in progress are dropped unrecorded, and their
    /// jobs are run again by another worker once this one's heartbeats are missed.
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// How a worker runs, for the backends.
pub(crate) struct Settings {
    pub(crate) concurrency: usize,
    pub(crate) poll_interval: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) name: String,
}

impl Settings {
    /// The jobs a fetch takes at once: no more than the worker runs, so a job is never held
    /// in a buffer while another worker sits idle.
    pub(crate) fn batch(&self) -> usize {
        self.concurrency.max(1)
    }
}

/// Runs the worker until stopped, starting it again after a failure, and samples the queue's
/// depth.
async fn supervise<J, F>(
    store: JobStore,
    run: RunJob<J, F>,
    settings: Settings,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) where
    J: Job,
    RunJob<J, F>: RunsJobs<J>,
{
    // One task: aborting it (a crash, as `JobWorkerHandle::abort` makes one) stops both.
    // The sampler never ends by itself: the worker's graceful end is never cut short.
    let sampler = sample_depth(store.clone());
    tokio::select! {
        () = run_until_stopped(&store, run, &settings, &mut stopped) => {}
        () = sampler => {}
    }
}

/// Runs the worker until stopped, starting it again after a failure.
async fn run_until_stopped<J, F>(
    store: &JobStore,
    run: RunJob<J, F>,
    settings: &Settings,
    stopped: &mut tokio::sync::watch::Receiver<bool>,
) where
    J: Job,
    RunJob<J, F>: RunsJobs<J>,
{
    let warned = vitals_core::throttle::Throttle::new(Duration::from_mins(1));
    let mut restarts = 0_u32;
    loop {
        let name = format!(
            "{}-{}-{restarts}-{}",
            settings.name,
            std::process::id(),
            ulid::Ulid::generate()
        );
        let signal = {
            let mut stopped = stopped.clone();
            async move {
                stop_asked(&mut stopped).await;
                Ok::<(), std::io::Error>(())
            }
        };
        let ended = match &store.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                crate::backends::run_sqlite(pool, settings, name, run.clone(), signal).await
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                crate::backends::run_postgres(pool, settings, name, run.clone(), signal).await
            }
        };
        if *stopped.borrow() {
            break;
        }
        if let Err(error) = ended
            && let Some(failures) = warned.failed()
        {
            tracing::warn!(
                target: "vitals_jobs",
                error = %error,
                failures,
                job.type = J::KIND,
                "the job worker stopped; starting it again in 1 s"
            );
        }
        restarts = restarts.wrapping_add(1);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop_asked(stopped) => break,
        }
    }
}

/// Until [`JobWorkerHandle::shutdown`] asks the worker to stop (a handle dropped without it
/// never does: the worker runs on).
async fn stop_asked(stopped: &mut tokio::sync::watch::Receiver<bool>) {
    if stopped.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Every 5 s, the queue's depth per kind into the `vitals.jobs.depth` gauge, while the
/// worker runs.
async fn sample_depth(store: JobStore) {
    loop {
        if let Ok(counts) = store.counts().await {
            for count in counts {
                metrics::depth(&count.kind, count.pending);
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// The service apalis calls with each job: the handler in its span, timed and counted, its
/// failure given its backoff or dead-lettered.
pub(crate) struct RunJob<J, F> {
    store: JobStore,
    handler: F,
    backoff: (Duration, Duration),
    kind: PhantomData<fn(J)>,
}

impl<J, F: Clone> Clone for RunJob<J, F> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            handler: self.handler.clone(),
            backoff: self.backoff,
            kind: PhantomData,
        }
    }
}

impl<J, F, Fut> apalis_core::layers::Service<Task<J>> for RunJob<J, F>
where
    J: Job,
    F: Fn(J, JobContext) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<J::Output, JobFailure>> + Send + 'static,
{
    type Response = J::Output;
    type Error = JobFailure;
    type Future = Pin<Box<dyn Future<Output = Result<J::Output, JobFailure>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), JobFailure>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<J>) -> Self::Future {
        let Some(id) = task
            .task_id()
            .and_then(TaskId::as_ulid)
            .map(JobId::from_ulid)
        else {
            return Box::pin(async { Err("the job has no ULID id".into()) });
        };
        // The runs recorded before this one (apalis counts this one once it is first polled).
        let attempt = u32::try_from(task.attempt())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let max_attempts = task
            .max_attempts()
            .and_then(|max| u32::try_from(max).ok())
            .unwrap_or(crate::store::DEFAULT_MAX_ATTEMPTS);
        let context = TraceContext::continued_from(
            task.metadata().get(TRACEPARENT).unwrap_or_default(),
            task.metadata().get(TRACESTATE),
        );
        let args = task.args;
        let span = tracing::info_span!(
            target: "vitals_jobs",
            "job",
            job.id = %id,
            otel.name = %format_args!("{} process", J::KIND),
            otel.kind = "consumer",
            job.type = J::KIND,
            job.attempt = attempt,
            messaging.system = "apalis",
            messaging.operation.type = "process",
            messaging.destination.name = J::KIND,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let context = context.followed_by(&span);
        let handler = self.handler.clone();
        let store = self.store.clone();
        let (base, max) = self.backoff;
        let run = JobContext {
            id,
            attempt,
            max_attempts,
        };
        Box::pin(
            // The trace context current for the whole run: the handler's logs and the
            // worker's own carry the request's trace id.
            context.scope(async move {
                let waited = (attempt == 1)
                    .then(|| SystemTime::now().duration_since(id.created_at()).ok())
                    .flatten();
                metrics::started(J::KIND, attempt, waited);
                let started = Instant::now();
                // A panic is the run's failure, and the job's end: a run that panics would
                // panic again.
                // The handler called inside the guard too: a panic before its future exists
                // is caught as well.
                let result = match std::panic::AssertUnwindSafe(async move { handler(args, run).await })
                    .catch_unwind()
                    .await
                {
                    Ok(result) => result,
                    Err(panic) => Err(JobFailure::from(PanickedRun(panic_message(&*panic)))),
                };
                let panicked = matches!(&result, Err(error) if error.is::<PanickedRun>());
                let ran = started.elapsed();
                let Err(error) = result else {
                    metrics::finished(J::KIND, ran, true, false);
                    return result;
                };
                let span = tracing::Span::current();
                span.record("otel.status_code", "ERROR");
                span.record("error.type", "job_failed");
                let dead = panicked || attempt >= max_attempts;
                metrics::finished(J::KIND, ran, false, dead);
                if dead {
                    tracing::error!(
                        target: "vitals_jobs",
                        error = %error,
                        attempts = attempt,
                        "job dead-lettered: its last attempt failed"
                    );
                    if panicked {
                        // Recorded as killed: never fetched again.
                        return Err(Box::new(apalis_core::error::AbortError::new(error)) as JobFailure);
                    }
                } else {
                    let delay = backoff(attempt, base, max, fastrand::f64());
                    if let Err(store_error) = store.retry_after(&id, delay).await {
                        tracing::warn!(target: "vitals_jobs", error = %store_error, "the job's backoff was not recorded: it is retried at once");
                    }
                    tracing::warn!(
                        target: "vitals_jobs",
                        error = %error,
                        retry_in_s = delay.as_secs(),
                        "job failed; it will be retried"
                    );
                }
                Err(error)
            })
            .instrument(span),
        )
    }
}

/// A run that panicked, with the panic's message.
#[derive(Debug)]
struct PanickedRun(String);

impl std::fmt::Display for PanickedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the run panicked: {}", self.0)
    }
}

impl std::error::Error for PanickedRun {}

/// The message of a panic's payload (a `&str` or a `String`), else a placeholder.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a payload that is not text".to_owned())
}
