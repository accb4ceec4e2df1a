//! The latency part: what [`LatencyLayer`](crate::LatencyLayer) records for one request,
//! written once and driven two ways — by the layer's own service, and by the fused `vitals`
//! stack, which labels the route once for every part.
//!
//! ```
//! use std::time::Instant;
//! use http::{Method, Response};
//! use vitals_core::body::{BodyEnd, BodyObserver};
//! use vitals_core::route::RouteLabel;
//! use vitals_latency::{LatencyLayer, LatencyRegistry};
//!
//! let registry = LatencyRegistry::new();
//! let part = LatencyLayer::new(registry.clone()).part();
//! let in_flight = part.start(&Method::GET, RouteLabel::from_static("/items"), Instant::now());
//! let response = Response::new(http_body_util::Empty::<bytes::Bytes>::new());
//! in_flight.on_response(&response).on_end(BodyEnd::Completed);
//! assert_eq!(registry.series_count(), 1);
//! ```

use std::time::Instant;

use http::{HeaderMap, Method, Response, StatusCode};
use vitals_core::body::{BodyEnd, BodyObserver};
use vitals_core::outcome::{Outcome, OutcomeClassifier};
use vitals_core::route::RouteLabel;

use crate::method::MethodIndex;
use crate::registry::LatencyRegistry;

/// The latency part of a [`LatencyLayer`](crate::LatencyLayer) (see
/// [`LatencyLayer::part`](crate::LatencyLayer::part)). Cheap to clone.
#[derive(Clone, Debug)]
pub struct LatencyPart {
    pub(crate) registry: LatencyRegistry,
}

impl LatencyPart {
    /// A request for `route` arrived at `start`: counted as active until it is recorded.
    pub fn start(&self, method: &Method, route: RouteLabel, start: Instant) -> LatencyInFlight {
        let method = MethodIndex::of(method);
        self.registry.active(method, 1);
        LatencyInFlight {
            registry: self.registry.clone(),
            route,
            method,
            start,
        }
    }
}

/// A request from its call until it is recorded: consumed exactly once — by its response's
/// [`LatencyFinish`], by [`on_error`](Self::on_error) or by [`on_drop`](Self::on_drop) — so
/// the active gauge always comes back down.
#[derive(Debug)]
pub struct LatencyInFlight {
    registry: LatencyRegistry,
    route: RouteLabel,
    method: MethodIndex,
    start: Instant,
}

impl LatencyInFlight {
    fn finished(self, status: StatusCode, error: bool, end: Instant) {
        let duration = end.saturating_duration_since(self.start);
        self.registry.record_route(
            &self.route,
            self.method.label(),
            status.as_u16(),
            (duration, end),
            error,
        );
        self.registry.active(self.method, -1);
    }

    fn cancelled(self, status: Option<StatusCode>, end: Instant) {
        self.registry.record_route_cancelled(
            &self.route,
            self.method.label(),
            status.map_or(0, |s| s.as_u16()),
            end,
        );
        self.registry.active(self.method, -1);
    }

    /// The handler answered: what records the request when its body ends.
    pub fn on_response<B: http_body::Body>(self, response: &Response<B>) -> LatencyFinish {
        let mut classifier = OutcomeClassifier::from_response(response);
        if self.method.is_head() {
            classifier = classifier.for_method(&Method::HEAD);
        }
        LatencyFinish {
            in_flight: self,
            classifier,
        }
    }

    /// The handler failed: recorded as a `500` error.
    pub fn on_error(self) {
        self.finished(StatusCode::INTERNAL_SERVER_ERROR, true, Instant::now());
    }

    /// Dropped before the head: a `500` error when dropped while the handler was polled (a
    /// panic), else a cancellation.
    pub fn on_drop(self, while_polling: bool) {
        if while_polling || std::thread::panicking() {
            self.finished(StatusCode::INTERNAL_SERVER_ERROR, true, Instant::now());
        } else {
            self.cancelled(None, Instant::now());
        }
    }
}

/// Records the request once the body ended.
#[derive(Debug)]
pub struct LatencyFinish {
    in_flight: LatencyInFlight,
    classifier: OutcomeClassifier,
}

impl LatencyFinish {
    /// The body ended at `now` (read once by the driver for every part).
    pub fn ended_at(self, end: BodyEnd, now: Instant) {
        let status = self.classifier.status();
        match self.classifier.finish(end) {
            Outcome::Cancelled => self.in_flight.cancelled(Some(status), now),
            Outcome::Completed => self.in_flight.finished(status, false, now),
            Outcome::ServerError | Outcome::Rejected | Outcome::Timeout => {
                self.in_flight.finished(status, true, now);
            }
        }
    }
}

impl BodyObserver for LatencyFinish {
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        self.classifier.observe_trailers(trailers);
    }

    fn on_end(self, end: BodyEnd) {
        self.ended_at(end, Instant::now());
    }
}
