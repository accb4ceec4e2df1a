//! The one allocation of a request: every enabled part's state, from its arrival to the end of
//! its response body.

use std::time::Instant;

use http::HeaderMap;
use vitals_core::body::BodyEnd;
#[cfg(any(feature = "latency", feature = "timing", feature = "queries"))]
use vitals_core::body::BodyObserver;
use vitals_core::server_timing::ServerTiming;

use crate::admission::{Deadline, Grant, Permit};
use crate::response_cache_part::{Fill, StoreRecorder};
use crate::scope::Scope;

#[cfg(feature = "cache-headers")]
pub(crate) use vitals_cache_headers::part::CacheInFlight;
#[cfg(feature = "queries")]
pub(crate) use vitals_queries::part::QueriesFinish;

/// No cache headers without the `cache-headers` feature.
#[cfg(not(feature = "cache-headers"))]
pub(crate) enum CacheInFlight {}

#[cfg(feature = "idempotency-stack")]
pub(crate) use vitals_idempotency::part::{Recorder, Ticket};

/// No key held without the `idempotency` feature.
#[cfg(not(feature = "idempotency-stack"))]
pub(crate) enum Ticket {}

/// No response recorded without the `idempotency` feature.
#[cfg(not(feature = "idempotency-stack"))]
pub(crate) enum Recorder {}

/// Nothing to finish without the queries part.
#[cfg(not(feature = "queries"))]
pub(crate) enum QueriesFinish {}

/// A request's state, boxed once: the response future holds it until the head, the body after.
#[derive(Default)]
pub(crate) struct RequestState {
    /// What the request's work runs inside.
    pub(crate) scope: Scope,
    /// The parts until the response head.
    pub(crate) parts: Parts,
    /// The parts from the response head to the end of the body.
    pub(crate) finish: Option<Finish>,
}

/// The parts' own state until the head (apart from the scope, so a poll can change it while
/// inside it).
#[derive(Default)]
pub(crate) struct Parts {
    #[cfg(feature = "timing")]
    pub(crate) timing: Option<vitals_timing::part::TimingInFlight>,
    #[cfg(feature = "latency")]
    pub(crate) latency: Option<vitals_latency::part::LatencyInFlight>,
    #[cfg(feature = "queries")]
    pub(crate) queries: Option<vitals_queries::part::QueriesInFlight>,
    pub(crate) cache: Option<CacheInFlight>,
    /// The response cache's view of a request sent on to the handler (boxed by the part).
    pub(crate) fill: Option<Box<Fill>>,
    /// The rate limit's headers for the response.
    pub(crate) rate_limit: Option<Grant>,
    /// The `Idempotency-Key` this request holds while it runs.
    /// (Boxed, as the recorder below: most requests have none, and the state stays small.)
    pub(crate) ticket: Option<Box<Ticket>>,
    /// The concurrency limit's permit, held to the end of the body.
    pub(crate) permit: Option<Permit>,
    #[cfg_attr(not(feature = "concurrency"), allow(dead_code))]
    pub(crate) deadline: Option<Deadline>,
    /// The collector this service inserted, and so renders.
    pub(crate) server_timing: Option<ServerTiming>,
}

/// What each part does when the body ends.
pub(crate) struct Finish {
    /// The response recorded for its key's replays.
    pub(crate) recorder: Option<Box<Recorder>>,
    /// The response recorded for the response cache's store.
    pub(crate) stored: Option<Box<StoreRecorder>>,
    /// The concurrency limit's permit: given back here, with a latency sample when completed.
    pub(crate) permit: Option<Permit>,
    #[cfg(feature = "latency")]
    pub(crate) latency: Option<vitals_latency::part::LatencyFinish>,
    #[cfg(feature = "timing")]
    pub(crate) timing: Option<vitals_timing::part::TimingFinish>,
    #[cfg(feature = "queries")]
    pub(crate) queries: Option<QueriesFinish>,
}

impl Finish {
    /// A frame of data went by (only the recorders read them).
    #[allow(unused_variables)] // Without the recording features nothing records.
    pub(crate) fn on_data(&mut self, data: &impl bytes::Buf) {
        if let Some(recorder) = &mut self.recorder {
            #[cfg(feature = "idempotency-stack")]
            recorder.on_buf(data);
            #[cfg(not(feature = "idempotency-stack"))]
            match **recorder {}
        }
        if let Some(stored) = &mut self.stored {
            #[cfg(feature = "response-cache-stack")]
            stored.on_buf(data);
            #[cfg(not(feature = "response-cache-stack"))]
            match **stored {}
        }
    }

    #[allow(unused_variables)] // Every part reading trailers may be compiled out.
    pub(crate) fn on_trailers(&mut self, trailers: &HeaderMap) {
        #[cfg(feature = "latency")]
        if let Some(latency) = &mut self.latency {
            latency.on_trailers(trailers);
        }
        #[cfg(feature = "timing")]
        if let Some(timing) = &mut self.timing {
            timing.on_trailers(trailers);
        }
    }

    #[allow(unused_variables)] // Every part may be compiled out.
    pub(crate) fn on_end(self, end: BodyEnd) {
        if let Some(recorder) = self.recorder {
            #[cfg(feature = "idempotency-stack")]
            recorder.on_end(end);
            #[cfg(not(feature = "idempotency-stack"))]
            match *recorder {}
        }
        if let Some(stored) = self.stored {
            #[cfg(feature = "response-cache-stack")]
            vitals_core::body::BodyRecorder::on_end(*stored, end);
            #[cfg(not(feature = "response-cache-stack"))]
            match *stored {}
        }
        #[cfg(feature = "queries")]
        if let Some(queries) = self.queries {
            queries.on_end(end);
        }
        if let Some(permit) = self.permit {
            #[cfg(feature = "concurrency")]
            permit.on_end(end);
            #[cfg(not(feature = "concurrency"))]
            match permit {}
        }
        // One clock read for every part.
        let now = Instant::now();
        #[cfg(feature = "latency")]
        if let Some(latency) = self.latency {
            latency.ended_at(end, now);
        }
        #[cfg(feature = "timing")]
        if let Some(timing) = self.timing {
            timing.ended_at(end, now);
        }
        let _ = now;
    }
}

impl Parts {
    /// The request's key is given back: the handler never ran (refused by the limit, or
    /// dropped while it waited for a permit), so a retry may run it.
    pub(crate) fn free_key(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            #[cfg(feature = "idempotency-stack")]
            ticket.release();
            #[cfg(not(feature = "idempotency-stack"))]
            match *ticket {}
        }
    }

    /// The handler ran but its answer will not be kept (the deadline cut it): the key is
    /// recorded as done and not replayable — a retry gets `409`, never a second run.
    #[cfg_attr(not(feature = "concurrency"), allow(dead_code))] // Only the deadline spends one.
    pub(crate) fn spend_key(&mut self) {
        drop(self.ticket.take());
    }
}

impl RequestState {
    /// The handler failed instead of answering.
    pub(crate) fn on_error(self, #[allow(unused_variables)] now: Option<Instant>) {
        let Self { scope, parts, .. } = self;
        // No answer: the operation failed, and its key is free for a retry.
        if let Some(ticket) = parts.ticket {
            #[cfg(feature = "idempotency-stack")]
            ticket.release();
            #[cfg(not(feature = "idempotency-stack"))]
            match *ticket {}
        }
        #[cfg(feature = "latency")]
        if let Some(latency) = parts.latency {
            latency.on_error();
        }
        #[cfg(feature = "timing")]
        if let Some(timing) = parts.timing {
            timing.on_error(now);
        }
        #[cfg(not(any(feature = "latency", feature = "timing")))]
        let _ = parts;
        scope.on_error();
    }

    /// The response future was dropped before the head (`while_polling`: by a panic in it).
    pub(crate) fn on_drop(self, #[allow(unused_variables)] while_polling: bool) {
        #[cfg(feature = "latency")]
        if let Some(latency) = self.parts.latency {
            latency.on_drop(while_polling);
        }
        #[cfg(feature = "timing")]
        if let Some(timing) = self.parts.timing {
            timing.on_drop(while_polling);
        }
    }
}
