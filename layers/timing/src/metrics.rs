//! Executor starvation through the `metrics` facade (feature `metrics`).
//!
//! - `vitals.timing.cpu_wait` — histogram, in seconds, of the time a request's handler polls
//!   waited runnable for a CPU, recorded for requests with a poll past the blocking threshold
//!   by the wall clock (Linux). Its sum over a minute is how long the runtime's threads were
//!   starved of CPU while running handlers; its count, how many requests saw it. Summed
//!   across instances it says which hosts or pods are CPU-starved.
//!
//! Whatever recorder the application installed receives it (metrics-exporter-prometheus
//! renders `vitals_timing_cpu_wait_bucket`, `_sum` and `_count`).

use std::time::Duration;

/// The histogram of run-queue wait per request.
pub const CPU_WAIT: &str = "vitals.timing.cpu_wait";

/// HELP text for this crate's families (call once, after installing the recorder).
pub fn describe() {
    metrics::describe_histogram!(
        CPU_WAIT,
        metrics::Unit::Seconds,
        "Time a request's handler polls waited runnable for a CPU (executor starvation)."
    );
}

/// Records one request's wait. Rare (only requests with a long, preempted poll): the key is
/// looked up each time rather than kept per route.
pub(crate) fn record(waited: Duration) {
    metrics::histogram!(CPU_WAIT).record(waited.as_secs_f64());
}
