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
    generation: u64,
    /// Admitted as a half-open probe (else as a call counted in the window).
    probe: bool,
    booked: bool,
}

impl Ticket {
    /// A claim for a call `admitted` (as a call or a probe, never a refusal) in `generation`.
    pub(crate) fn new(shared: Arc<Shared>, admitted: Admit, generation: u64) -> Self {
        debug_assert!(
            !matches!(admitted, Admit::Refuse(_)),
            "a refused call has no ticket"
        );
        Self {
            shared,
            generation,
            probe: admitted == Admit::Probe,
            booked: false,
        }
    }

    fn admitted(&self) -> Admit {
        if self.probe {
            Admit::Probe
        } else {
            Admit::Call
        }
    }

    pub(crate) fn book(&mut self, failed: bool) {
        self.booked = true;
        self.shared.record(self.admitted(), self.generation, failed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.booked && self.probe {
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

/// Whether a content type is gRPC's (`application/grpc`, `+proto`, `;…`) — not gRPC-web, which
/// carries its status inside the body, not in HTTP trailers.
fn is_grpc(content_type: &[u8]) -> bool {
    content_type
        .strip_prefix(b"application/grpc")
        .is_some_and(|rest| matches!(rest.first(), None | Some(b'+' | b';')))
}

/// What a response's head says of a call, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeadVerdict {
    Failed,
    Succeeded,
    /// A gRPC answer whose status is still to come, in its trailers.
    InTrailers,
}

/// The verdict of a response head that the status rule did not call a failure: a gRPC answer
/// by its `grpc-status` (a trailers-only answer has it in the head), or by its trailers when
/// the head has none; any other answer succeeded. One header lookup for a non-gRPC answer.
fn head_verdict(headers: &HeaderMap) -> HeadVerdict {
    let grpc = headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| is_grpc(value.as_bytes()));
    if !grpc {
        return HeadVerdict::Succeeded;
    }
    if !headers.contains_key(GRPC_STATUS) {
        return HeadVerdict::InTrailers;
    }
    if grpc_failure(headers) {
        HeadVerdict::Failed
    } else {
        HeadVerdict::Succeeded
    }
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
                Ok(response) if (ticket.shared.rules.status)(response.status()) => Some(true),
                Ok(response) => match head_verdict(response.headers()) {
                    HeadVerdict::Failed => Some(true),
                    HeadVerdict::Succeeded => Some(false),
                    // A probe is decided by the head: the downstream answered, it is back. (A
                    // long stream would otherwise hold the half-open breaker's probe slot, and
                    // refuse every other call, until its trailers.)
                    HeadVerdict::InTrailers if ticket.probe => Some(false),
                    // A streamed gRPC answer: decided by its trailers, in the body.
                    HeadVerdict::InTrailers => {
                        return Poll::Ready(result.map(|response| {
                            response.map(|body| BreakerBody::new(body, Some(Box::new(ticket))))
                        }));
                    }
                },
                // Refused inside — by a full bulkhead, or a deadline that left no time: the
                // downstream was not asked.
                Err(error) if error.is::<BulkheadFull>() => None,
                Err(error) => match error.downcast_ref::<DeadlineExceeded>() {
                    Some(exceeded) if !exceeded.call_started() => None,
                    _ => Some((ticket.shared.rules.error)(error)),
                },
            };
            if let Some(failed) = failed {
                ticket.book(failed);
            }
        }
        Poll::Ready(result.map(|response| response.map(|body| BreakerBody::new(body, None))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CircuitBreakerLayer;
    use crate::breaker::books::BreakerState;

    #[tokio::test]
    async fn the_error_rule_decides_which_errors_count() {
        fn not_the_callers_deadline(error: &BoxError) -> bool {
            error
                .downcast_ref::<DeadlineExceeded>()
                .is_none_or(|exceeded| !exceeded.by_request_deadline())
        }
        let layer = CircuitBreakerLayer::new("test")
            .with_minimum_calls(1)
            .with_failure_error(not_the_callers_deadline);
        let (shared, handle) = (Arc::clone(&layer.shared), layer.handle());
        let call = |error: BoxError| {
            let (admitted, generation) = shared.admit();
            BreakerFuture::running(
                std::future::ready(Err::<Response<()>, _>(error)),
                Ticket::new(Arc::clone(&shared), admitted, generation),
            )
        };
        // Cut by the caller's deadline, after it was sent: not counted as a failure.
        let _ = call(Box::new(DeadlineExceeded::new(true, true))).await;
        assert_eq!(handle.window(), (1, 0));
        // Cut by the call's own timeout: a failure, and the breaker opens.
        let _ = call(Box::new(DeadlineExceeded::new(false, true))).await;
        assert_eq!(handle.state(), BreakerState::Open);
    }

    #[tokio::test]
    async fn a_streamed_probe_is_decided_by_its_head() {
        let layer = CircuitBreakerLayer::new("test")
            .with_minimum_calls(1)
            .with_open_for(Duration::ZERO);
        let (shared, handle) = (Arc::clone(&layer.shared), layer.handle());
        let (admitted, generation) = shared.admit();
        Ticket::new(Arc::clone(&shared), admitted, generation).book(true);
        // Open for no time: the next call is a probe, answered by a stream.
        let (admitted, generation) = shared.admit();
        assert_eq!(admitted, Admit::Probe);
        let mut response = Response::new(());
        response.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        let call = BreakerFuture::running(
            std::future::ready(Ok::<_, std::io::Error>(response)),
            Ticket::new(Arc::clone(&shared), admitted, generation),
        );
        let response = call.await.unwrap();
        // Closed at the head: a long stream does not hold the probe slot until its trailers.
        assert_eq!(handle.state(), BreakerState::Closed);
        drop(response);
        assert_eq!(handle.state(), BreakerState::Closed);
    }

    fn head(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, http::HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_grpc_status_decides_in_the_head_or_waits_for_the_trailers() {
        let grpc = ("content-type", "application/grpc+proto");
        // Trailers-only answers: the status is in the head.
        assert_eq!(
            head_verdict(&head(&[grpc, ("grpc-status", "14")])),
            HeadVerdict::Failed
        );
        assert_eq!(
            head_verdict(&head(&[grpc, ("grpc-status", "5")])),
            HeadVerdict::Succeeded,
            "NOT_FOUND is the caller's business"
        );
        // A streamed answer: HTTP 200, the status still to come.
        assert_eq!(head_verdict(&head(&[grpc])), HeadVerdict::InTrailers);
        // gRPC-web carries its status in the body: decided by its head, as any other answer.
        assert_eq!(
            head_verdict(&head(&[("content-type", "application/grpc-web+proto")])),
            HeadVerdict::Succeeded
        );
        assert_eq!(
            head_verdict(&head(&[("content-type", "application/grpc;charset=utf-8")])),
            HeadVerdict::InTrailers
        );
        // Not gRPC: a stray grpc-status means nothing.
        assert_eq!(
            head_verdict(&head(&[
                ("content-type", "application/json"),
                ("grpc-status", "14")
            ])),
            HeadVerdict::Succeeded
        );
        assert_eq!(head_verdict(&HeaderMap::new()), HeadVerdict::Succeeded);
    }
}
