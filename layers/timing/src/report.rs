//! What the layer knows when a request is over, and the events it logs from it.

use std::time::Duration;

use http::{Method, StatusCode};
use vitals_core::findings::{Finding, Findings};
use vitals_core::identity::{RequestId, RequestIdentity, TraceId};
use vitals_core::outcome::{GrpcStatus, Outcome};
use vitals_core::route::RouteLabel;
use vitals_core::server_timing::ServerTiming;

use crate::config::{Config, Sampler};
use crate::cpu::PollSplit;
use crate::starvation::Starved;

/// The timing of one finished request, handed to the
/// [`on_finish`](crate::RequestTimingLayer::on_finish) hook.
#[derive(Debug)]
#[non_exhaustive]
pub struct TimingReport<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The route label (template or `unmatched`).
    pub route: &'a RouteLabel,
    /// The response status; `None` when no response was produced (the handler was dropped,
    /// panicked, or the inner service failed).
    pub status: Option<StatusCode>,
    /// The gRPC status from the response headers or trailers, for gRPC calls.
    pub grpc_status: Option<GrpcStatus>,
    /// How the request ended.
    pub outcome: Outcome,
    /// From the call to the response head; `None` when there was no response.
    pub head: Option<Duration>,
    /// From the call to the last byte of the body (or to the error or disconnect).
    pub total: Duration,
    /// Executor time of the handler future: the sum of its polls (`None` with poll timing off).
    pub busy: Option<Duration>,
    /// The longest time a single poll of the handler future held its executor thread — on a
    /// CPU or blocked in the kernel, not waiting for a CPU (`None` with poll timing off). See
    /// [`longest_poll_split`](Self::longest_poll_split).
    pub longest_poll: Option<Duration>,
    /// How the longest poll's wall-clock time split — on a CPU, blocked, waiting for a CPU —
    /// when it crossed the blocking threshold by the wall clock and the kernel's per-thread
    /// counters were available (Linux); `None` otherwise (the poll was short, or measured by
    /// the wall clock alone).
    pub longest_poll_split: Option<PollSplit>,
    /// Time the handler's threads waited runnable for a CPU during polls that crossed the
    /// blocking threshold by the wall clock: executor starvation, not the handler's doing.
    pub cpu_wait: Duration,
    /// How many times the handler future was polled (0 with poll timing off).
    pub polls: u32,
    /// The blocking threshold that applied to this request's route, if any.
    pub blocking_threshold: Option<Duration>,
    /// The trace id and request id, when the trace-context layer filled them.
    pub identity: Option<&'a RequestIdentity>,
    /// The request's `Server-Timing` collector, with what every layer added.
    pub server_timing: Option<&'a ServerTiming>,
}

impl TimingReport<'_> {
    /// Whether a single poll of the handler blocked the executor past the threshold.
    pub fn blocked_executor(&self) -> bool {
        matches!((self.longest_poll, self.blocking_threshold), (Some(longest), Some(threshold)) if longest >= threshold)
    }
}

const TARGET: &str = "vitals_timing";

/// Milliseconds, rounded to the microsecond so log lines stay short.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// Logs what the report calls for and hands it to the hook.
pub(crate) fn finish(config: &Config, report: &TimingReport<'_>) {
    #[cfg(feature = "metrics")]
    if !report.cpu_wait.is_zero() {
        crate::metrics::record(report.cpu_wait);
    }
    if !report.cpu_wait.is_zero()
        && let Some(threshold) = report.blocking_threshold
        && let Some(starved) = config.starvation.observe(report.cpu_wait, threshold)
    {
        warn_starved(report, &starved);
        if let Some(findings) = &config.findings {
            push_starved(findings, report, &starved);
        }
    }
    if report.blocked_executor() {
        warn_blocking(report);
        if let Some(findings) = &config.findings {
            push_blocking(findings, report);
        }
    }
    let slow = config
        .slow
        .for_route(report.route)
        .filter(|threshold| report.total >= *threshold);
    if let Some(threshold) = slow {
        warn_slow(report, threshold);
        if let Some(findings) = &config.findings {
            push_slow(findings, report);
        }
    }
    if config
        .completion_events
        .as_ref()
        .is_some_and(Sampler::sample)
    {
        info_finished(report);
    }
    if let Some(hook) = &config.on_finish {
        hook(report);
    }
}

/// Log fields every event shares, computed only when an event is logged.
struct Common<'a> {
    status: Option<u16>,
    head_ms: Option<f64>,
    trace_id: Option<tracing::field::DisplayValue<TraceId>>,
    request_id: Option<tracing::field::DisplayValue<&'a RequestId>>,
}

impl<'a> Common<'a> {
    fn of(report: &TimingReport<'a>) -> Self {
        Self {
            status: report.status.map(|s| s.as_u16()),
            head_ms: report.head.map(millis),
            trace_id: report
                .identity
                .and_then(|i| i.trace_id)
                .map(tracing::field::display),
            request_id: report
                .identity
                .and_then(|i| i.request_id.as_ref())
                .map(tracing::field::display),
        }
    }
}

#[cold]
fn warn_blocking(report: &TimingReport<'_>) {
    let Common {
        status,
        trace_id,
        request_id,
        ..
    } = Common::of(report);
    let split = report.longest_poll_split;
    macro_rules! warn_with {
        ($message:literal) => {
            tracing::warn!(
                target: TARGET,
                longest_poll_ms = report.longest_poll.map(millis),
                on_cpu_ms = split.map(|split| millis(split.on_cpu)),
                blocked_ms = split.map(|split| millis(split.blocked)),
                cpu_wait_ms = split.map(|split| millis(split.waited)),
                http.request.method = %report.method,
                http.route = %report.route,
                http.response.status_code = status,
                threshold_ms = report.blocking_threshold.map(millis),
                busy_ms = report.busy.map(millis),
                polls = report.polls,
                trace_id,
                request_id,
                $message
            )
        };
    }
    if split.is_some_and(|split| split.blocked > split.on_cpu) {
        warn_with!(
            "handler blocked the async executor: a single poll held its thread past the \
             threshold, mostly waiting in the kernel (a sleep, blocking I/O, or a contended lock \
             — on a saturated machine often one whose holder is waiting for a CPU; move blocking \
             calls to spawn_blocking)"
        );
    } else {
        warn_with!(
            "handler blocked the async executor: a single poll ran longer than the threshold \
             (move CPU-heavy or blocking work to spawn_blocking)"
        );
    }
}

#[cold]
fn warn_slow(report: &TimingReport<'_>, threshold: Duration) {
    let Common {
        status,
        head_ms,
        trace_id,
        request_id,
    } = Common::of(report);
    let server_timing = rendered(report.server_timing);
    tracing::warn!(
        target: TARGET,
        total_ms = millis(report.total),
        http.request.method = %report.method,
        http.route = %report.route,
        http.response.status_code = status,
        vitals.outcome = report.outcome.as_str(),
        head_ms,
        threshold_ms = millis(threshold),
        busy_ms = report.busy.map(millis),
        longest_poll_ms = report.longest_poll.map(millis),
        server_timing,
        trace_id,
        request_id,
        "slow request"
    );
}

fn info_finished(report: &TimingReport<'_>) {
    let Common {
        status,
        head_ms,
        trace_id,
        request_id,
    } = Common::of(report);
    tracing::info!(
        target: TARGET,
        total_ms = millis(report.total),
        http.request.method = %report.method,
        http.route = %report.route,
        http.response.status_code = status,
        vitals.outcome = report.outcome.as_str(),
        head_ms,
        busy_ms = report.busy.map(millis),
        longest_poll_ms = report.longest_poll.map(millis),
        trace_id,
        request_id,
        "request finished"
    );
}

/// The request's trace id, as text.
fn trace_id(report: &TimingReport<'_>) -> Option<String> {
    report
        .identity
        .and_then(|i| i.trace_id)
        .map(|id| id.to_string())
}

#[cold]
fn push_blocking(findings: &Findings, report: &TimingReport<'_>) {
    let split = report.longest_poll_split;
    findings.push(Finding::Blocking {
        route: report.route.as_str().to_owned(),
        longest_poll_ms: report.longest_poll.map_or(0.0, millis),
        on_cpu_ms: split.map(|split| millis(split.on_cpu)),
        blocked_ms: split.map(|split| millis(split.blocked)),
        cpu_wait_ms: split.map(|split| millis(split.waited)),
        trace_id: trace_id(report),
    });
}

#[cold]
fn warn_starved(report: &TimingReport<'_>, starved: &Starved) {
    tracing::warn!(
        target: TARGET,
        cpu_wait_ms = millis(starved.waited),
        over_s = (starved.over.as_secs_f64() * 10.0).round() / 10.0,
        http.route = %report.route,
        "the runtime's threads waited {:.0} ms for a CPU in the last {:.1} s: the host or the \
         container's CPU quota is saturated (not the handlers: their polls were preempted)",
        millis(starved.waited),
        starved.over.as_secs_f64()
    );
}

#[cold]
fn push_starved(findings: &Findings, report: &TimingReport<'_>, starved: &Starved) {
    findings.push(Finding::Starvation {
        cpu_wait_ms: millis(starved.waited),
        over_s: (starved.over.as_secs_f64() * 10.0).round() / 10.0,
        route: report.route.as_str().to_owned(),
        trace_id: trace_id(report),
    });
}

#[cold]
fn push_slow(findings: &Findings, report: &TimingReport<'_>) {
    findings.push(Finding::Slow {
        route: report.route.as_str().to_owned(),
        status: report.status.map(|s| s.as_u16()),
        total_ms: millis(report.total),
        server_timing: rendered(report.server_timing),
        trace_id: trace_id(report),
    });
}

/// The collector's metrics as one `Server-Timing` value, for a log field.
fn rendered(timing: Option<&ServerTiming>) -> Option<String> {
    let value = timing?.render()?;
    value.to_str().ok().map(str::to_owned)
}
