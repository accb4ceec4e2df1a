//! `DeadlineFuture`: the call raced against its limit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::error::{BoxError, DeadlineExceeded};

pin_project! {
    /// The response future of [`Deadline`](super::Deadline).
    pub struct DeadlineFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            call: F,
            // When the call must end; the timer is made only once the call has to wait (most
            // answers that come at once never need one). Dropping the call at the limit closes
            // its connection: the callee sees it end.
            at: Option<Instant>,
            #[pin]
            timer: Option<Sleep>,
            by_request: bool,
        },
        Refused { error: Option<DeadlineExceeded> },
    }
}

impl<F> DeadlineFuture<F> {
    pub(crate) fn running(call: F, limit: Option<(Instant, bool)>) -> Self {
        Self {
            state: State::Running {
                call,
                at: limit.map(|(at, _)| at),
                timer: None,
                by_request: limit.is_some_and(|(_, by_request)| by_request),
            },
        }
    }

    pub(crate) fn refused(error: DeadlineExceeded) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Running {
                call,
                at,
                mut timer,
                by_request,
            } => {
                if let Poll::Ready(result) = call.poll(cx) {
                    return Poll::Ready(result.map_err(Into::into));
                }
                if let Some(at) = at.take() {
                    timer.set(Some(tokio::time::sleep_until(at)));
                }
                if let Some(timer) = timer.as_pin_mut()
                    && timer.poll(cx).is_ready()
                {
                    return Poll::Ready(Err(Box::new(DeadlineExceeded::new(*by_request, true))));
                }
                Poll::Pending
            }
            StateProj::Refused { error } => Poll::Ready(Err(Box::new(
                error
                    .take()
                    .unwrap_or_else(|| DeadlineExceeded::new(true, false)),
            ))),
        }
    }
}
