//! The timing part: what [`RequestTimingLayer`](crate::RequestTimingLayer) does at each phase of
//! a request, written once and driven two ways — by the layer's own service, and by the fused
//! `vitals` stack, which labels the route and owns `Server-Timing` for every part.
//!
//! ```
//! use std::time::Instant;
//! use http::{Request, Response};
//! use vitals_core::body::{BodyEnd, BodyObserver};
//! use vitals_core::route::RouteLabel;
//! use vitals_timing::RequestTimingLayer;
//!
//! let part = RequestTimingLayer::new().part();
//! let mut request = Request::new(());
//! let mut in_flight = part.start(&mut request, RouteLabel::from_static("/"), Instant::now(), None);
//! let clock = in_flight.poll_begins();
//! let now = in_flight.poll_ends(clock, true);
//! let response = Response::new(http_body_util::Empty::<bytes::Bytes>::new());
//! let finish = in_flight.on_response(&response, now);
//! finish.on_end(BodyEnd::Completed); // the slow/blocking rules run, the hook is called
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response};
use vitals_core::body::{BodyEnd, BodyObserver};
use vitals_core::identity::RequestIdentity;
use vitals_core::outcome::{Outcome, OutcomeClassifier};
use vitals_core::route::RouteLabel;
use vitals_core::server_timing::{Metric, ServerTiming};

use crate::config::Config;
use crate::cpu::{self, PollSplit};
use crate::report::{self, TimingReport};

/// The timing part of a configured [`RequestTimingLayer`](crate::RequestTimingLayer) (see
/// [`RequestTimingLayer::part`](crate::RequestTimingLayer::part)). Cheap to clone.
#[derive(Clone, Debug)]
pub struct TimingPart {
    pub(crate) config: Arc<Config>,
}

impl TimingPart {
    /// Whether this part's `Server-Timing` mode lets the client of `headers` see timings.
    #[inline]
    pub fn shows_server_timing(&self, headers: &HeaderMap) -> bool {
        self.config.server_timing.allows(headers)
    }

    /// The request arrived at `start`, for `route`. `server_timing` is the request's collector,
    /// if any: the part adds `total` to it when the head is ready and its own mode lets the
    /// client see timings, and hands it to the report either way.
    /// The request's identity (trace id) is read from its extensions, so a trace-context part
    /// must have run first.
    pub fn start<B>(
        &self,
        request: &mut Request<B>,
        route: RouteLabel,
        start: Instant,
        server_timing: Option<ServerTiming>,
    ) -> TimingInFlight {
        let config = &self.config;
        let identity = request
            .extensions()
            .get::<RequestIdentity>()
            .filter(|identity| !identity.is_empty())
            .map(|identity| Box::new(identity.clone()));
        let adds_total = config.server_timing.allows(request.headers());
        TimingInFlight {
            config: Arc::clone(config),
            adds_total,
            start,
            method: request.method().clone(),
            route,
            identity,
            server_timing,
            stats: PollStats::default(),
        }
    }
}

/// Where a poll of the handler began, from [`TimingInFlight::poll_begins`].
#[derive(Clone, Copy, Debug)]
pub struct PollClock {
    began: Option<Instant>,
    split: bool,
}

/// A request the timing part follows, until its response head.
pub struct TimingInFlight {
    config: Arc<Config>,
    start: Instant,
    method: http::Method,
    route: RouteLabel,
    identity: Option<Box<RequestIdentity>>,
    server_timing: Option<ServerTiming>,
    adds_total: bool,
    stats: PollStats,
}

impl std::fmt::Debug for TimingInFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimingInFlight")
            .field("route", &self.route)
            .field("polls", &self.stats.polls)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct PollStats {
    busy: Duration,
    longest: Duration,
    longest_split: Option<PollSplit>,
    waited: Duration,
    polls: u32,
}

impl PollStats {
    fn record(&mut self, poll: Duration) {
        self.busy = self.busy.saturating_add(poll);
        self.longest = self.longest.max(poll);
        self.polls = self.polls.saturating_add(1);
    }

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

struct Ending {
    classifier: Option<OutcomeClassifier>,
    outcome: Outcome,
    head: Option<Duration>,
    total: Duration,
}

impl TimingInFlight {
    /// Call right before polling the handler (or a driver's wait before it: a key's claim,
    /// another request's fill — every poll of the request is one). The first poll starts at
    /// the request's start (read once, in [`TimingPart::start`]); later polls read the clock.
    pub fn poll_begins(&self) -> PollClock {
        self.clock((self.stats.polls > 0).then(Instant::now))
    }

    /// As [`poll_begins`](Self::poll_begins), for the first poll after an asynchronous wait
    /// the driver made before the request's parts started (its quota checked in Redis): that
    /// wait held no thread, so this poll begins now rather than at the request's start.
    pub fn poll_begins_now(&self) -> PollClock {
        self.clock(Some(Instant::now()))
    }

    fn clock(&self, began: Option<Instant>) -> PollClock {
        let config = &self.config;
        if !config.poll_timing {
            return PollClock {
                began: None,
                split: false,
            };
        }
        let split = config.blocking.lowest().is_some();
        if split {
            // On the thread that polls: the request may have been started on another one.
            cpu::poll_starts(began.unwrap_or(self.start));
        }
        PollClock { began, split }
    }

    /// Runs `poll` (the handler's poll) with the request's `Server-Timing` collector current,
    /// for the handler's outgoing calls to add to (`vitals-client`).
    pub fn with_server_timing<R>(&mut self, poll: impl FnOnce() -> R) -> R {
        ServerTiming::in_scope(&mut self.server_timing, poll)
    }

    /// Call right after polling the handler, `ready` when it answered. Returns the time the
    /// poll ended — the response head's time when `ready` — read once for every part.
    pub fn poll_ends(&mut self, clock: PollClock, ready: bool) -> Option<Instant> {
        let config = &self.config;
        if !config.poll_timing && !ready {
            return None;
        }
        let now = Instant::now();
        if config.poll_timing {
            let began = clock.began.unwrap_or(self.start);
            let wall = now.saturating_duration_since(began);
            if clock.split
                && config
                    .blocking
                    .lowest()
                    .is_some_and(|threshold| wall >= threshold)
            {
                self.stats.record_split(cpu::split(began, now));
            } else {
                self.stats.record(wall);
            }
        }
        Some(now)
    }

    /// The handler answered at `now` (from [`poll_ends`](Self::poll_ends)): adds `total` to
    /// `Server-Timing` and returns what watches the body's end.
    pub fn on_response<B>(self, response: &Response<B>, now: Option<Instant>) -> TimingFinish
    where
        B: http_body::Body,
    {
        let now = now.unwrap_or_else(Instant::now);
        let head = now.saturating_duration_since(self.start);
        if let Some(timing) = self.server_timing.as_ref().filter(|_| self.adds_total) {
            timing.add(Metric::new("total").with_duration(head));
        }
        let classifier = OutcomeClassifier::from_response(response).for_method(&self.method);
        TimingFinish {
            in_flight: self,
            classifier,
            head,
        }
    }

    /// The handler failed at `now`: reported as a server error.
    pub fn on_error(self, now: Option<Instant>) {
        let total = now.map_or_else(
            || self.start.elapsed(),
            |now| now.saturating_duration_since(self.start),
        );
        self.report(&Ending {
            classifier: None,
            outcome: Outcome::ServerError,
            head: None,
            total,
        });
    }

    /// The request was dropped before its head: cancelled by the client, or a server error
    /// when it was dropped while the handler was being polled (a panic).
    pub fn on_drop(self, while_polling: bool) {
        let outcome = if while_polling || std::thread::panicking() {
            Outcome::ServerError
        } else {
            Outcome::Cancelled
        };
        let total = self.start.elapsed();
        self.report(&Ending {
            classifier: None,
            outcome,
            head: None,
            total,
        });
    }

    fn report(&self, ending: &Ending) {
        let config = &self.config;
        let poll_timing = config.poll_timing;
        let stats = &self.stats;
        let report = TimingReport {
            method: &self.method,
            route: &self.route,
            status: ending.classifier.as_ref().map(OutcomeClassifier::status),
            grpc_status: ending
                .classifier
                .as_ref()
                .and_then(OutcomeClassifier::grpc_status),
            outcome: ending.outcome,
            head: ending.head,
            total: ending.total,
            busy: poll_timing.then_some(stats.busy),
            longest_poll: poll_timing.then_some(stats.longest),
            longest_poll_split: stats.longest_split,
            cpu_wait: stats.waited,
            polls: stats.polls,
            blocking_threshold: config.blocking.for_route(&self.route),
            identity: self.identity.as_deref(),
            server_timing: self.server_timing.as_ref(),
        };
        report::finish(config, &report);
    }
}

/// Watches the end of a response body for the timing part: the last byte's time is the total.
pub struct TimingFinish {
    in_flight: TimingInFlight,
    classifier: OutcomeClassifier,
    head: Duration,
}

impl std::fmt::Debug for TimingFinish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimingFinish")
            .field("route", &self.in_flight.route)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl TimingFinish {
    /// The body ended at `now` (read once by the driver for every part).
    pub fn ended_at(self, end: BodyEnd, now: Instant) {
        let total = now.saturating_duration_since(self.in_flight.start);
        let outcome = self.classifier.finish(end);
        self.in_flight.report(&Ending {
            classifier: Some(self.classifier),
            outcome,
            head: Some(self.head),
            total,
        });
    }
}

impl BodyObserver for TimingFinish {
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        self.classifier.observe_trailers(trailers);
    }

    fn on_end(self, end: BodyEnd) {
        self.ended_at(end, Instant::now());
    }
}
