//! The response future: times the handler's polls and hands over to the body at the head.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use vitals_core::identity::RequestIdentity;
use vitals_core::outcome::{GrpcStatus, Outcome, OutcomeClassifier};
use vitals_core::route::RouteLabel;
use vitals_core::server_timing::{Metric, ServerTiming};

use crate::body::{Finish, TimedBody};
use crate::config::Config;
use crate::cpu::{self, PollSplit};
use crate::report::{self, TimingReport};

/// What is known about a request from its call until it is reported.
pub(crate) struct InFlight {
    pub(crate) config: Arc<Config>,
    pub(crate) start: Instant,
    pub(crate) method: Method,
    pub(crate) route: RouteLabel,
    /// Boxed: most of the time there is none, and this struct is moved several times.
    pub(crate) identity: Option<Box<RequestIdentity>>,
    pub(crate) server_timing: Option<ServerTiming>,
    /// Whether this layer adds `total` (the header is on for this request).
    pub(crate) adds_total: bool,
}

/// Executor time of the handler future.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PollStats {
    /// The polls' time, less the run-queue waits measured in the long ones.
    pub(crate) busy: Duration,
    /// The longest time one poll held its thread (on a CPU or blocked; by the wall clock for
    /// polls under the blocking threshold, or where the kernel's counters are unavailable).
    pub(crate) longest: Duration,
    /// How the longest poll's time split, when it was measured.
    pub(crate) longest_split: Option<PollSplit>,
    /// Run-queue wait measured in polls that crossed the blocking threshold by the wall clock.
    pub(crate) waited: Duration,
    pub(crate) polls: u32,
}

impl PollStats {
    /// A poll measured by the wall clock alone.
    fn record(&mut self, poll: Duration) {
        self.busy = self.busy.saturating_add(poll);
        self.longest = self.longest.max(poll);
        self.polls = self.polls.saturating_add(1);
    }

    /// A poll split by the kernel's counters.
    fn record_split(&mut self, split: PollSplit) {
        let held = split.held();
        self.busy = self.busy.saturating_add(held);
        self.waited = self.waited.saturating_add(split.waited);
        if held >= self.longest {
            self.longest = held;
            self.longest_split = Some(split);
        }
        self.polls = self.polls.saturating_add(1);
    }
}

/// How a request ended, for [`InFlight::report`].
pub(crate) struct Ending {
    pub(crate) status: Option<StatusCode>,
    pub(crate) grpc_status: Option<GrpcStatus>,
    pub(crate) outcome: Outcome,
    pub(crate) head: Option<Duration>,
    pub(crate) total: Duration,
}

impl InFlight {
    pub(crate) fn report(&self, ending: &Ending, stats: &PollStats) {
        let poll_timing = self.config.poll_timing;
        let report = TimingReport {
            method: &self.method,
            route: &self.route,
            status: ending.status,
            grpc_status: ending.grpc_status,
            outcome: ending.outcome,
            head: ending.head,
            total: ending.total,
            busy: poll_timing.then_some(stats.busy),
            longest_poll: poll_timing.then_some(stats.longest),
            longest_poll_split: stats.longest_split,
            cpu_wait: stats.waited,
            polls: stats.polls,
            blocking_threshold: self.config.blocking.for_route(&self.route),
            identity: self.identity.as_deref(),
            server_timing: self.server_timing.as_ref(),
        };
        report::finish(&self.config, &report);
    }
}

pin_project! {
    /// The response future of [`RequestTiming`](crate::RequestTiming).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
        stats: PollStats,
        // Set while the inner future is polled: still set at drop means a panic unwound
        // through our poll (a `CatchPanic` outside us caught it).
        polling: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Dropped before the handler answered: the client went away (or a timeout outside
            // gave up), or the handler panicked.
            if let Some(in_flight) = this.in_flight.take() {
                let outcome = if *this.polling || std::thread::panicking() {
                    Outcome::ServerError
                } else {
                    Outcome::Cancelled
                };
                let ending = Ending {
                    status: None,
                    grpc_status: None,
                    outcome,
                    head: None,
                    total: in_flight.start.elapsed(),
                };
                in_flight.report(&ending, this.stats);
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, in_flight: InFlight) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
            stats: PollStats::default(),
            polling: false,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<TimedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(in_flight) = this.in_flight.as_ref() else {
            panic!("vitals_timing::ResponseFuture polled after completion");
        };
        let poll_timing = in_flight.config.poll_timing;
        // A poll at least this long by the wall clock is split by the kernel's counters.
        let split_from = in_flight.config.blocking.lowest().filter(|_| poll_timing);
        // The first poll is measured from the call, which saves a clock read and counts the
        // inner service's synchronous `call` work as executor time, which it is.
        let poll_start = (poll_timing && this.stats.polls > 0).then(Instant::now);
        // The first poll's start (the call) was noted by the service already.
        if let (Some(_), Some(start)) = (split_from, poll_start) {
            cpu::poll_starts(start);
        }
        *this.polling = true;
        let polled = this.inner.poll(cx);
        *this.polling = false;
        if !poll_timing && polled.is_pending() {
            return Poll::Pending;
        }
        let now = Instant::now();
        if poll_timing {
            let began = poll_start.unwrap_or(in_flight.start);
            let wall = now.saturating_duration_since(began);
            if split_from.is_some_and(|threshold| wall >= threshold) {
                this.stats.record_split(cpu::split(began, now));
            } else {
                this.stats.record(wall);
            }
        }
        let Poll::Ready(result) = polled else {
            return Poll::Pending;
        };
        // Present: checked at the top of this poll, and only taken here.
        let Some(in_flight) = this.in_flight.take() else {
            panic!("vitals_timing::ResponseFuture polled after completion");
        };
        let head = now.saturating_duration_since(in_flight.start);
        match result {
            Err(error) => {
                let ending = Ending {
                    status: None,
                    grpc_status: None,
                    outcome: Outcome::ServerError,
                    head: None,
                    total: head,
                };
                in_flight.report(&ending, this.stats);
                Poll::Ready(Err(error))
            }
            Ok(mut response) => {
                if let Some(timing) = &in_flight.server_timing {
                    if in_flight.adds_total {
                        timing.add(Metric::new("total").with_duration(head));
                    }
                    if timing.is_owner() {
                        timing.append_to(response.headers_mut());
                    }
                }
                let classifier =
                    OutcomeClassifier::from_response(&response).for_method(&in_flight.method);
                let finish = Finish::new(in_flight, classifier, head, *this.stats);
                Poll::Ready(Ok(response.map(|body| TimedBody::new(body, finish))))
            }
        }
    }
}
