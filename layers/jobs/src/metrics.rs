//! The queue's metrics (feature `metrics`), by job kind (`job.type`): jobs enqueued, the wait
//! from enqueue to a first run, each run's time by outcome, retries, failures, dead-lettered
//! jobs, and the queue's depth, sampled by the workers.

use std::time::Duration;

/// Jobs enqueued (counter).
pub const ENQUEUED: &str = "vitals.jobs.enqueued";
/// From enqueue to a job's first run, in seconds (histogram).
pub const WAIT_TIME: &str = "vitals.jobs.wait.duration";
/// A run's time, in seconds, by `outcome` (`succeeded`, `failed`) (histogram).
pub const RUN_TIME: &str = "vitals.jobs.run.duration";
/// Runs after the first (counter).
pub const RETRIES: &str = "vitals.jobs.retries";
/// Failed runs (counter).
pub const FAILURES: &str = "vitals.jobs.failures";
/// Jobs given up on after their last attempt (counter).
pub const DEAD_LETTERED: &str = "vitals.jobs.dead_lettered";
/// Jobs waiting for a worker (gauge, sampled).
pub const DEPTH: &str = "vitals.jobs.depth";

/// Buckets of the wait and run histograms, in seconds: from a quick job to an hour in the queue.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Describes the queue's metrics to the installed recorder (names, units, help).
#[cfg(feature = "metrics")]
pub fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(ENQUEUED, "Jobs enqueued, by kind.");
    metrics::describe_histogram!(
        WAIT_TIME,
        Unit::Seconds,
        "From a job's enqueue to its first run, by kind."
    );
    metrics::describe_histogram!(
        RUN_TIME,
        Unit::Seconds,
        "A job run's time, by kind and outcome (succeeded, failed)."
    );
    metrics::describe_counter!(RETRIES, "Job runs after the first, by kind.");
    metrics::describe_counter!(FAILURES, "Failed job runs, by kind.");
    metrics::describe_counter!(
        DEAD_LETTERED,
        "Jobs given up on after their last attempt (or a panic), by kind."
    );
    metrics::describe_gauge!(
        DEPTH,
        "Jobs waiting for a worker, by kind (sampled every 5 s)."
    );
}

/// A job of `kind` was enqueued.
#[allow(unused_variables)] // Without the `metrics` feature nothing is recorded.
pub(crate) fn enqueued(kind: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(ENQUEUED, "job.type" => kind).increment(1);
}

/// A run of a job of `kind` started: its wait, on a first run; a retry, on any other.
#[allow(unused_variables)]
pub(crate) fn started(kind: &'static str, attempt: u32, waited: Option<Duration>) {
    #[cfg(feature = "metrics")]
    {
        if attempt > 1 {
            metrics::counter!(RETRIES, "job.type" => kind).increment(1);
        }
        if let Some(waited) = waited {
            metrics::histogram!(WAIT_TIME, "job.type" => kind).record(waited.as_secs_f64());
        }
    }
}

/// A run of a job of `kind` ended after `ran`; `dead` when it was the last attempt.
#[allow(unused_variables)]
pub(crate) fn finished(kind: &'static str, ran: Duration, succeeded: bool, dead: bool) {
    #[cfg(feature = "metrics")]
    {
        let outcome = if succeeded { "succeeded" } else { "failed" };
        metrics::histogram!(RUN_TIME, "job.type" => kind, "outcome" => outcome)
            .record(ran.as_secs_f64());
        if !succeeded {
            metrics::counter!(FAILURES, "job.type" => kind).increment(1);
        }
        if dead {
            metrics::counter!(DEAD_LETTERED, "job.type" => kind).increment(1);
        }
    }
}

/// `pending` jobs of `kind` wait for a worker.
#[allow(unused_variables)]
pub(crate) fn depth(kind: &str, pending: u64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(DEPTH, "job.type" => kind.to_owned()).set(pending as f64);
}
