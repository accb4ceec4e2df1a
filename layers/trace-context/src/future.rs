//! The response future of [`TraceContextService`](crate::TraceContextService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use vitals_core::server_timing::ServerTiming;

use crate::body::TracedBody;
use crate::part::TraceInFlight;

struct State {
    in_flight: TraceInFlight,
    owned_timing: Option<ServerTiming>,
}

pin_project! {
    /// The response future of [`TraceContextService`](crate::TraceContextService).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Boxed: the future is moved several times before it is polled.
        state: Option<Box<State>>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        in_flight: TraceInFlight,
        owned_timing: Option<ServerTiming>,
    ) -> Self {
        Self {
            inner,
            state: Some(Box::new(State {
                in_flight,
                owned_timing,
            })),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<TracedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(state) = this.state.as_ref() else {
            panic!("vitals_trace_context::ResponseFuture polled after completion");
        };
        let inner = this.inner;
        let Poll::Ready(result) = state.in_flight.in_scope(|| inner.poll(cx)) else {
            return Poll::Pending;
        };
        let Some(state) = this.state.take() else {
            panic!("vitals_trace_context::ResponseFuture polled after completion");
        };
        let State {
            in_flight,
            owned_timing,
        } = *state;
        Poll::Ready(match result {
            Ok(mut response) => {
                let scope = in_flight.on_response(&mut response);
                if let Some(timing) = owned_timing {
                    timing.append_to(response.headers_mut());
                }
                Ok(response.map(|body| TracedBody::new(body, scope)))
            }
            Err(error) => {
                in_flight.on_error();
                Err(error)
            }
        })
    }
}
