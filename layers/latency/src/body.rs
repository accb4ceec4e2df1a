//! The response body: records the request when its last byte is produced.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use vitals_core::body::{BodyEnd, BodyObserver, CompletionBody};
use vitals_core::outcome::{Outcome, OutcomeClassifier};

use crate::future::InFlight;

/// Records the request once the body ended.
pub(crate) struct Finish {
    in_flight: InFlight,
    classifier: OutcomeClassifier,
}

impl BodyObserver for Finish {
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        self.classifier.observe_trailers(trailers);
    }

    fn on_end(self, end: BodyEnd) {
        let status = self.classifier.status();
        match self.classifier.finish(end) {
            Outcome::Cancelled => self.in_flight.cancelled(Some(status)),
            Outcome::Completed => self.in_flight.finished(status, false),
            Outcome::ServerError | Outcome::Rejected | Outcome::Timeout => {
                self.in_flight.finished(status, true);
            }
        }
    }
}

pin_project! {
    /// The response body of [`Latency`](crate::Latency): the handler's body, unchanged, timed
    /// to its last byte.
    pub struct LatencyBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: CompletionBody<B, Finish>,
    }
}

impl<B: Body> LatencyBody<B> {
    pub(crate) fn new(body: B, in_flight: InFlight, classifier: OutcomeClassifier) -> Self {
        Self {
            inner: CompletionBody::new(
                body,
                Finish {
                    in_flight,
                    classifier,
                },
            ),
        }
    }
}

impl<B: Body> Body for LatencyBody<B> {
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

impl<B: Body> std::fmt::Debug for LatencyBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyBody").finish_non_exhaustive()
    }
}
