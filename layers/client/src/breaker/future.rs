//! `BreakerFuture`: the call, and its outcome booked when it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, Response};
use pin_project_lite::pin_project;

use super::body::BreakerBody;
use super::books::Admit;
use super::layer::Shared;
use crate::error::{BoxError, BreakerOpen, BulkheadFull, DeadlineExceeded};

/// One admitted call's claim on the breaker: its outcome is booked once; a probe dropped
/// before its outcome frees its slot.
#[derive(Debug)]
pub(crate) struct Ticket {
    shared: Arc<Shared>,
    admitted: Admit,
    generation: u64,
    booked: bool,
}

impl Ticket {
    pub(crate) fn new(shared: Arc<Shared>, admitted: Admit, generation: u64) -> Self {
        Self {
            shared,
            admitted,
            generation,
            booked: false,
        }
    }

    pub(crate) fn book(&mut self, failed: bool) {
        self.booked = true;
        self.shared.record(self.admitted, self.generation, failed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.booked && self.admitted == Admit::Probe {
            self.shared.abandon_probe(self.generation);
        }
    }
}

/// The gRPC status header, named once (a `&str` name is parsed on every lookup).
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// gRPC statuses in a response head that say the downstream failed (not the caller):
/// `UNKNOWN` 2, `DEADLINE_EXCEEDED` 4, `INTERNAL` 13, `UNAVAILABLE` 14, `DATA_LOSS` 15.
pub(crate) fn grpc_failure(headers: &HeaderMap) -> bool {
    headers
        .get(GRPC_STATUS)
        .is_some_and(|status| matches!(status.as_bytes(), b"2" | b"4" | b"13" | b"14" | b"15"))
}

/// Whether a response is a gRPC one whose status is still to come, in its trailers: a gRPC
/// content type and no `grpc-status` in the head (a trailers-only answer has it there).
fn grpc_status_in_trailers(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
        && !headers.contains_key(GRPC_STATUS)
}

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker).
    pub struct BreakerFuture<F> {
        #[pin]
        call: Option<F>,
        ticket: Option<Ticket>,
        refused: Option<BreakerOpen>,
    }
}

impl<F> BreakerFuture<F> {
    pub(crate) fn running(call: F, ticket: Ticket) -> Self {
        Self {
            call: Some(call),
            ticket: Some(ticket),
            refused: None,
        }
    }

    pub(crate) fn refused(error: BreakerOpen) -> Self {
        Self {
            call: None,
            ticket: None,
            refused: Some(error),
        }
    }
}

impl<F, B, E> Future for BreakerFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<BreakerBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(call) = this.call.as_mut().as_pin_mut() else {
            let refused = this.refused.take().unwrap_or_else(|| {
                BreakerOpen::new(Arc::from("(polled after completion)"), Duration::ZERO)
            });
            return Poll::Ready(Err(Box::new(refused)));
        };
        let result = std::task::ready!(call.poll(cx)).map_err(Into::into);
        // Done: the finished call (and what it holds, a connection) goes now; polled again,
        // this future answers with an error instead of polling it.
        this.call.set(None);
        if let Some(mut ticket) = this.ticket.take() {
            let failed = match &result {
                Ok(response) if (ticket.shared.failure_status)(response.status()) => Some(true),
                // A streamed gRPC answer: decided by its trailers, in the body.
                Ok(response) if grpc_status_in_trailers(response.headers()) => {
                    return Poll::Ready(result.map(|response| {
                        response.map(|body| BreakerBody::new(body, Some(ticket)))
                    }));
                }
                Ok(response) => Some(grpc_failure(response.headers())),
                // Refused inside — by a full bulkhead, or a deadline that left no time: the
                // downstream was not asked.
                Err(error) if error.is::<BulkheadFull>() => None,
                Err(error) => match error.downcast_ref::<DeadlineExceeded>() {
                    Some(exceeded) if !exceeded.call_started() => None,
                    _ => Some(true),
                },
            };
            if let Some(failed) = failed {
                ticket.book(failed);
            }
        }
        Poll::Ready(result.map(|response| response.map(|body| BreakerBody::new(body, None))))
    }
}
