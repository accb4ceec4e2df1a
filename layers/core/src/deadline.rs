//! The current request's deadline, for the calls its handler makes downstream.
//!
//! A server layer with a deadline (`vitals_concurrency::TimeoutLayer`, the preset's route
//! deadlines) makes it the *current* deadline while it polls the handler. An outgoing call made
//! from the handler (`vitals_client::DeadlineLayer`) reads it: the call's timeout is the smaller
//! of its own and what the request has left, a gRPC call carries it as `grpc-timeout`, and a
//! call started with no time left fails at once. So a request that has 50 ms left never waits
//! a second on a slow dependency, and the dependency knows when to stop working for it.
//!
//! The deadline is kept in a thread-local set around each poll of the handler (a read is one
//! thread-local lookup, a poll pays two writes). Nested scopes keep the earlier deadline: an
//! inner layer cannot give a request more time than an outer one allows. Work the handler
//! spawns onto other tasks does not inherit it — carry it there with [`RequestDeadline::scope`]:
//!
//! ```
//! use std::time::Duration;
//! use vitals_core::deadline::RequestDeadline;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let deadline = RequestDeadline::after(Duration::from_millis(200)).unwrap();
//! // What the server layer does around each poll of the handler:
//! RequestDeadline::in_scope(Some(deadline), || {
//!     let current = RequestDeadline::current().unwrap();
//!     assert!(current.remaining() <= Duration::from_millis(200));
//!     // A task the handler spawns gets it explicitly.
//!     let spawned = current.scope(async { RequestDeadline::current() });
//!     drop(tokio::spawn(spawned));
//! });
//! assert_eq!(RequestDeadline::current(), None);
//! # }
//! ```

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;

/// The time by which the current request must be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestDeadline(Instant);

thread_local! {
    static CURRENT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Puts the previous deadline back when a scope ends, panicking or not.
struct Restore(Option<Instant>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.0));
    }
}

impl RequestDeadline {
    /// The deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self(instant)
    }

    /// The deadline `timeout` from now; `None` when that is too far away to put on the clock
    /// (no deadline, rather than a panic).
    pub fn after(timeout: Duration) -> Option<Self> {
        Instant::now().checked_add(timeout).map(Self)
    }

    /// When it is.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// The time left, zero once it passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether it passed.
    pub fn has_passed(self) -> bool {
        self.0 <= Instant::now()
    }

    /// The deadline of the request being handled on this thread, if its server layer set one.
    pub fn current() -> Option<Self> {
        CURRENT.with(Cell::get).map(Self)
    }

    /// Runs `f` with `deadline` as the current deadline — or the current one, when that is
    /// earlier — and puts the previous one back after. `None` leaves the current one as it is.
    pub fn in_scope<R>(deadline: Option<Self>, f: impl FnOnce() -> R) -> R {
        let Some(Self(deadline)) = deadline else {
            return f();
        };
        let previous = CURRENT.with(|current| {
            let previous = current.get();
            current.set(Some(
                previous.map_or(deadline, |earlier| earlier.min(deadline)),
            ));
            previous
        });
        let _restore = Restore(previous);
        f()
    }

    /// `future` with this deadline current while it is polled: for work a handler spawns onto
    /// another task, which does not inherit the handler's.
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            future,
            deadline: self,
        }
    }
}

pin_project! {
    /// A future polled with a deadline current (see [`RequestDeadline::scope`]).
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        #[pin]
        future: F,
        deadline: RequestDeadline,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let future = this.future;
        RequestDeadline::in_scope(Some(*this.deadline), || future.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_to_the_earlier_deadline_and_restore_after_a_panic() {
        let near = RequestDeadline::after(Duration::from_millis(100)).unwrap();
        let far = RequestDeadline::after(Duration::from_secs(100)).unwrap();
        assert_eq!(RequestDeadline::current(), None);
        RequestDeadline::in_scope(Some(near), || {
            assert_eq!(RequestDeadline::current(), Some(near));
            // An inner scope cannot give more time, only less.
            RequestDeadline::in_scope(Some(far), || {
                assert_eq!(RequestDeadline::current(), Some(near));
            });
            RequestDeadline::in_scope(None, || {
                assert_eq!(RequestDeadline::current(), Some(near));
            });
        });
        RequestDeadline::in_scope(Some(far), || {
            RequestDeadline::in_scope(Some(near), || {
                assert_eq!(RequestDeadline::current(), Some(near));
            });
            assert_eq!(RequestDeadline::current(), Some(far));
        });
        let panicked = std::panic::catch_unwind(|| {
            RequestDeadline::in_scope(Some(near), || panic!("handler panicked"));
        });
        assert!(panicked.is_err());
        assert_eq!(RequestDeadline::current(), None);
    }

    #[test]
    fn remaining_time_saturates_and_far_deadlines_are_none() {
        let passed = RequestDeadline::at(Instant::now());
        assert_eq!(passed.remaining(), Duration::ZERO);
        assert!(passed.has_passed());
        assert!(RequestDeadline::after(Duration::MAX).is_none());
        let later = RequestDeadline::after(Duration::from_secs(5)).unwrap();
        assert!(!later.has_passed());
        assert!(later.remaining() > Duration::from_secs(4));
    }

    #[tokio::test]
    async fn a_scoped_future_sees_its_deadline_on_another_task() {
        let deadline = RequestDeadline::after(Duration::from_secs(1)).unwrap();
        let seen = tokio::spawn(deadline.scope(async {
            tokio::task::yield_now().await;
            RequestDeadline::current()
        }))
        .await
        .unwrap();
        assert_eq!(seen, Some(deadline));
    }
}
