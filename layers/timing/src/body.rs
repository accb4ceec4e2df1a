//! The response body: reports the request when its last byte is produced.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use vitals_core::body::{BodyEnd, BodyObserver, CompletionBody};
use vitals_core::outcome::OutcomeClassifier;

use crate::future::{Ending, InFlight, PollStats};

/// Reports the request once the body ended.
pub(crate) struct Finish {
    in_flight: InFlight,
    classifier: OutcomeClassifier,
    head: Duration,
    stats: PollStats,
}

impl Finish {
    pub(crate) fn new(
        in_flight: InFlight,
        classifier: OutcomeClassifier,
        head: Duration,
        stats: PollStats,
    ) -> Self {
        Self {
            in_flight,
            classifier,
            head,
            stats,
        }
    }
}

impl BodyObserver for Finish {
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        self.classifier.observe_trailers(trailers);
    }

    fn on_end(self, end: BodyEnd) {
        let ending = Ending {
            status: Some(self.classifier.status()),
            grpc_status: self.classifier.grpc_status(),
            outcome: self.classifier.finish(end),
            head: Some(self.head),
            total: self.in_flight.start.elapsed(),
        };
        self.in_flight.report(&ending, &self.stats);
    }
}

pin_project! {
    /// The response body of [`RequestTiming`](crate::RequestTiming): the handler's body,
    /// unchanged, timed to its last byte.
    pub struct TimedBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: CompletionBody<B, Finish>,
    }
}

impl<B: Body> TimedBody<B> {
    pub(crate) fn new(body: B, finish: Finish) -> Self {
        Self {
            inner: CompletionBody::new(body, finish),
        }
    }
}

impl<B: Body> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> std::fmt::Debug for TimedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedBody")
            .field("ended", &self.inner.has_ended())
            .finish_non_exhaustive()
    }
}
