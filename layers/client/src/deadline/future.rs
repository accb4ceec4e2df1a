//! `DeadlineFuture`: the call raced against its limit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::error::{BoxError, DeadlineExceeded};
use crate::findings::Reporter;

/// Where to report a call that ran out of the request's time, and the downstream's authority
/// (shared with the request's URI, not copied: its host is read only if a finding is made).
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) reporter: Reporter,
    pub(crate) downstream: Option<http::uri::Authority>,
}

impl Report {
    fn exceeded(self, error: &DeadlineExceeded) {
        if !error.by_request_deadline() {
            return;
        }
        let downstream = self
            .downstream
            .as_ref()
            .map_or("downstream", http::uri::Authority::host);
        self.reporter
            .at_most_every_interval(downstream, "deadline_exceeded", || error.to_string());
    }
}

pin_project! {
    /// The response future of [`Deadline`](super::Deadline).
    pub struct DeadlineFuture<F> {
        #[pin]
        state: State<F>,
        report: Option<Report>,
        done: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            call: F,
            // When the call must end; the timer is made (and boxed: the future stays small for
            // the answers that come at once) only once the call has to wait. Dropping the call
            // at the limit closes its connection: the callee sees it end.
            at: Option<Instant>,
            timer: Option<Pin<Box<Sleep>>>,
            by_request: bool,
        },
        Refused { error: Option<DeadlineExceeded> },
    }
}

impl<F> DeadlineFuture<F> {
    pub(crate) fn running(call: F, limit: Option<(Instant, bool)>, report: Option<Report>) -> Self {
        Self {
            state: State::Running {
                call,
                at: limit.map(|(at, _)| at),
                timer: None,
                by_request: limit.is_some_and(|(_, by_request)| by_request),
            },
            report,
            done: false,
        }
    }

    pub(crate) fn refused(error: DeadlineExceeded, report: Option<Report>) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
            report,
            done: false,
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
        let mut this = self.project();
        let exceeded = |error: DeadlineExceeded, report: &mut Option<Report>| {
            if let Some(report) = report.take() {
                report.exceeded(&error);
            }
            Poll::Ready(Err(Box::new(error) as BoxError))
        };
        match this.state.as_mut().project() {
            StateProj::Running {
                call,
                at,
                timer,
                by_request,
            } => {
                if *this.done {
                    return exceeded(DeadlineExceeded::new(false, false), this.report);
                }
                if let Poll::Ready(result) = call.poll(cx) {
                    // Done: never polled again (a flag, not a new state: the common path stays
                    // a branch).
                    *this.done = true;
                    return Poll::Ready(result.map_err(Into::into));
                }
                if let Some(at) = at.take() {
                    *timer = Some(Box::pin(tokio::time::sleep_until(at)));
                }
                if let Some(timer) = timer.as_mut()
                    && timer.as_mut().poll(cx).is_ready()
                {
                    let error = DeadlineExceeded::new(*by_request, true);
                    // The call is dropped now: its connection closes, the callee sees it end.
                    this.state.set(State::Refused { error: None });
                    return exceeded(error, this.report);
                }
                Poll::Pending
            }
            StateProj::Refused { error } => exceeded(
                error
                    .take()
                    .unwrap_or_else(|| DeadlineExceeded::new(true, false)),
                this.report,
            ),
        }
    }
}
