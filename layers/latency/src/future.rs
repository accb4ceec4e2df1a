//! The response future: hands the request over to the body at the head, or records how it
//! ended without one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use crate::body::LatencyBody;
use crate::part::LatencyInFlight;

pin_project! {
    /// The response future of [`Latency`](crate::Latency).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<LatencyInFlight>,
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
    pub(crate) fn new(inner: F, in_flight: LatencyInFlight) -> Self {
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
                let finish = in_flight.on_response(&response);
                Ok(response.map(|body| LatencyBody::new(body, finish)))
            }
            Err(error) => {
                in_flight.on_error();
                Err(error)
            }
        })
    }
}
