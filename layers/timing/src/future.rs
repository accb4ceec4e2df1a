//! The response future: times the handler's polls and hands over to the body at the head.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use vitals_core::server_timing::ServerTiming;

use crate::body::TimedBody;
use crate::part::TimingInFlight;

pin_project! {
    /// The response future of [`RequestTiming`](crate::RequestTiming).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<TimingInFlight>,
        // The collector this layer renders, when it is the outermost one using it.
        owned_timing: Option<ServerTiming>,
        polling: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(in_flight) = this.in_flight.take() {
                in_flight.on_drop(*this.polling);
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        in_flight: TimingInFlight,
        owned_timing: Option<ServerTiming>,
    ) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
            owned_timing,
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
        let Some(in_flight) = this.in_flight.as_mut() else {
            panic!("vitals_timing::ResponseFuture polled after completion");
        };
        let clock = in_flight.poll_begins();
        *this.polling = true;
        let polled = in_flight.with_server_timing(|| this.inner.poll(cx));
        *this.polling = false;
        let now = in_flight.poll_ends(clock, polled.is_ready());
        let Poll::Ready(result) = polled else {
            return Poll::Pending;
        };
        let Some(in_flight) = this.in_flight.take() else {
            panic!("vitals_timing::ResponseFuture polled after completion");
        };
        match result {
            Err(error) => {
                in_flight.on_error(now);
                Poll::Ready(Err(error))
            }
            Ok(mut response) => {
                let finish = in_flight.on_response(&response, now);
                if let Some(timing) = this.owned_timing.take() {
                    timing.append_to(response.headers_mut());
                }
                Poll::Ready(Ok(response.map(|body| TimedBody::new(body, finish))))
            }
        }
    }
}
