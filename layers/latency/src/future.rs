//! The response future: hands the request over to the body at the head, or records how it
//! ended without one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use vitals_core::outcome::OutcomeClassifier;
use vitals_core::route::RouteLabel;

use crate::body::LatencyBody;
use crate::method::MethodIndex;
use crate::registry::LatencyRegistry;

/// A request from its call until it is recorded: consumed by [`InFlight::finished`] or
/// [`InFlight::cancelled`], exactly once (the future's drop and the body's end see to it), which
/// also takes the request off the active-requests count.
pub(crate) struct InFlight {
    pub(crate) registry: LatencyRegistry,
    pub(crate) route: RouteLabel,
    pub(crate) method: MethodIndex,
    pub(crate) start: Instant,
}

impl InFlight {
    /// Records a request that ended with `status` (its body ended, or it failed to answer).
    pub(crate) fn finished(self, status: StatusCode, error: bool) {
        let end = Instant::now();
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

    /// Records a request whose client went away; `status` if the head was produced.
    pub(crate) fn cancelled(self, status: Option<StatusCode>) {
        self.registry.record_route_cancelled(
            &self.route,
            self.method.label(),
            status.map_or(0, |s| s.as_u16()),
            Instant::now(),
        );
        self.registry.active(self.method, -1);
    }
}

pin_project! {
    /// The response future of [`Latency`](crate::Latency).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
        // Set while the inner future is polled: still set at drop means its poll panicked.
        polling: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(in_flight) = this.in_flight.take() {
                if *this.polling || std::thread::panicking() {
                    // A `CatchPanic` outside answers 500: so do we.
                    in_flight.finished(StatusCode::INTERNAL_SERVER_ERROR, true);
                } else {
                    in_flight.cancelled(None);
                }
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, in_flight: InFlight) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
            polling: false,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<LatencyBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        *this.polling = true;
        let polled = this.inner.poll(cx);
        *this.polling = false;
        let Poll::Ready(result) = polled else {
            return Poll::Pending;
        };
        let Some(in_flight) = this.in_flight.take() else {
            panic!("vitals_latency::ResponseFuture polled after completion");
        };
        Poll::Ready(match result {
            Ok(response) => {
                let mut classifier = OutcomeClassifier::from_response(&response);
                if in_flight.method.is_head() {
                    classifier = classifier.for_method(&http::Method::HEAD);
                }
                Ok(response.map(|body| LatencyBody::new(body, in_flight, classifier)))
            }
            Err(error) => {
                // The server closes the connection: the client sees no answer, a server error.
                in_flight.finished(StatusCode::INTERNAL_SERVER_ERROR, true);
                Err(error)
            }
        })
    }
}
