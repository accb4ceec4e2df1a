//! `RetryFuture`: one call, tried again while it may be.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;
use vitals_core::attempt::ResendCount;
use vitals_core::deadline::RequestDeadline;

use super::body::ReplayBody;
use super::layer::Shared;
use super::replay::Replay;
use super::rules;
use crate::error::{BoxError, BreakerOpen, BulkheadFull, DeadlineExceeded};

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] call: F },
        // Boxed: the future stays small for the calls that are never retried.
        Waiting { sleep: Pin<Box<Sleep>> },
        Readying,
        Done,
    }
}

pin_project! {
    /// The response future of [`Retry`](super::Retry): `T` is the response.
    pub struct RetryFuture<S, B, F, T> {
        #[pin]
        state: State<F>,
        // A clone of the service for the retries, and the request to send again.
        service: Option<S>,
        replay: Option<Replay<B>>,
        // The answer being retried: it stands when the retry is refused before it is sent.
        // Boxed: only a retried call has one, and every call's future stays smaller.
        last: Option<Box<Result<T, BoxError>>>,
        shared: Arc<Shared>,
        attempts: u32,
    }
}

impl<S, B, F, T> RetryFuture<S, B, F, T> {
    // Always inlined: built in the caller's frame, the future is not copied once more on its
    // way out (a call's future is moved several times already; each copy is a `memcpy`).
    #[allow(clippy::inline_always)] // Measured: plain `#[inline]` keeps one of the copies.
    #[inline(always)]
    pub(crate) fn new(
        first: F,
        replay: Option<Replay<B>>,
        service: Option<S>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            state: State::Calling { call: first },
            service,
            replay,
            last: None,
            shared,
            attempts: 1,
        }
    }
}

/// Whether an attempt's error says it was refused before it was sent (by an open breaker, a
/// full bulkhead, or a deadline that left no time): the downstream was not asked.
fn refused_before_sending(error: &BoxError) -> bool {
    error.is::<BreakerOpen>()
        || error.is::<BulkheadFull>()
        || error
            .downcast_ref::<DeadlineExceeded>()
            .is_some_and(|exceeded| !exceeded.call_started())
}

/// Polled again after it answered: a caller's bug, answered with an error, not a panic.
fn lost() -> BoxError {
    "vitals_client::RetryFuture polled after it answered".into()
}

/// How long to wait before trying again after `result`, or `None` to return it.
fn next_wait<T, B>(
    result: &Result<Response<T>, BoxError>,
    replay: Option<&Replay<B>>,
    attempts: u32,
    shared: &Shared,
) -> Option<Duration> {
    let replay = replay?;
    if attempts >= shared.max_attempts {
        return None;
    }
    let wait = match result {
        Ok(response) if rules::retriable_status(response.status()) => {
            match rules::retry_after(response.headers(), SystemTime::now()) {
                // The downstream asks for longer than we wait: its answer stands.
                Some(asked) if asked > shared.retry_after_cap => return None,
                Some(asked) => asked,
                None => rules::backoff(attempts, shared.base, shared.cap, fastrand::f64()),
            }
        }
        Ok(_) => return None,
        // The breaker says the downstream is down: another attempt now would be refused too.
        Err(error) if error.is::<BreakerOpen>() => return None,
        // As many calls as allowed are under way: one more right away would be refused too.
        Err(error) if error.is::<BulkheadFull>() => return None,
        Err(error)
            if error
                .downcast_ref::<DeadlineExceeded>()
                .is_some_and(DeadlineExceeded::by_request_deadline) =>
        {
            return None;
        }
        Err(_) => rules::backoff(attempts, shared.base, shared.cap, fastrand::f64()),
    };
    // Never past the request's deadline: a retry that cannot finish in time is not made.
    let deadline = match (RequestDeadline::current(), replay.deadline()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if deadline.is_some_and(|deadline| deadline.remaining() <= wait) {
        return None;
    }
    // Last, so that only a retry that is made spends from the budget.
    if shared.budget.withdraw() {
        return Some(wait);
    }
    let downstream = replay.host().unwrap_or("downstream");
    shared
        .findings
        .at_most_every_interval(downstream, "retry_budget_exhausted", || {
            "the retry budget is spent: failed calls are no longer retried (the downstream \
             failed more than the budget's share of the calls)"
                .to_owned()
        });
    None
}

impl<S, B, ResB> Future for RetryFuture<S, B, S::Future, Response<ResB>>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    B: ReplayBody,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { call } => {
                    let result = ready!(call.poll(cx)).map_err(Into::into);
                    // A retry refused before it was sent: the answer it was to replace stands.
                    if let Err(error) = &result
                        && this.last.is_some()
                        && refused_before_sending(error)
                        && let Some(last) = this.last.take()
                    {
                        this.state.set(State::Done);
                        return Poll::Ready(*last);
                    }
                    // The answer this one replaces (if any) is no longer needed.
                    *this.last = None;
                    let Some(wait) =
                        next_wait(&result, this.replay.as_ref(), *this.attempts, this.shared)
                    else {
                        this.state.set(State::Done);
                        return Poll::Ready(result);
                    };
                    *this.last = Some(Box::new(result));
                    this.state.set(State::Waiting {
                        sleep: Box::pin(tokio::time::sleep(wait)),
                    });
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    let Some(service) = this.service.as_mut() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(lost()));
                    };
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        // No retry after all: the answer it was to replace stands.
                        this.state.set(State::Done);
                        return Poll::Ready(
                            this.last
                                .take()
                                .map_or_else(|| Err(error.into()), |last| *last),
                        );
                    }
                    *this.attempts += 1;
                    // Another copy while more attempts may follow; the last one sends the copy
                    // kept so far.
                    let next = if *this.attempts < this.shared.max_attempts {
                        this.replay
                            .as_ref()
                            .and_then(|replay| replay.copy(this.shared.max_body))
                    } else {
                        None
                    };
                    let Some(replay) = std::mem::replace(this.replay, next) else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(lost()));
                    };
                    let call = service.call(replay.into_request(ResendCount(*this.attempts - 1)));
                    this.state.set(State::Calling { call });
                }
                StateProj::Done => return Poll::Ready(Err(lost())),
            }
        }
    }
}
