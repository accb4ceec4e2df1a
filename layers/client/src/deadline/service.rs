//! `Deadline<S>`: the client service under the request's deadline.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Request};
use tokio::time::{Instant, Sleep};
use tower_service::Service;
use vitals_core::deadline::RequestDeadline;
use vitals_core::grpc_timeout::{self, GRPC_TIMEOUT};

use super::future::{DeadlineFuture, Report};
use super::layer::DeadlineLayer;
use crate::error::{BoxError, DeadlineExceeded};

/// A client service whose calls end by the request's deadline (see [`DeadlineLayer`]).
#[derive(Debug)]
pub struct Deadline<S> {
    inner: S,
    /// Copied into each clone: two durations and, with findings, one reference count (a
    /// shared `Arc` of them cost an atomic increment and decrement per clone, more than the
    /// copy).
    settings: DeadlineLayer,
    /// Set by `poll_ready` when the request had no time left: the inner service was not asked
    /// for readiness (or stopped being waited for), and the call is refused.
    refused: bool,
    /// While the inner service is not ready: the timer that wakes this service when the
    /// request's time runs out.
    waiting: Option<Pin<Box<Sleep>>>,
    /// The clock and the request's deadline as `poll_ready` read them to check the request's
    /// time, when it returned ready: `call` decides its limit at that time instead of reading
    /// the clock again (a read is ~30 ns, the largest part of this layer's cost), when it runs
    /// under the same deadline. See [`DeadlineLayer`] on a caller that waits between the two.
    ready_at: Option<(Instant, RequestDeadline)>,
}

impl<S: Clone> Clone for Deadline<S> {
    /// A clone has no readiness decision of its own yet: this one's stays with it.
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.settings.clone())
    }
}

impl<S> Deadline<S> {
    /// `inner` with `settings`.
    pub fn new(inner: S, settings: DeadlineLayer) -> Self {
        Self {
            inner,
            settings,
            refused: false,
            waiting: None,
            ready_at: None,
        }
    }

    vitals_core::inner_service_accessors!();
}

/// When a call must end, and whether that is the request's deadline (else its own timeout).
#[derive(Clone, Copy, Debug)]
struct Limit {
    at: Instant,
    by_request: bool,
}

/// `at` less `reserve`; `None` when the reserve reaches back past the clock's start (no time
/// left). Without a reserve (the default) no arithmetic at all.
fn less_reserve(at: Instant, reserve: Duration) -> Option<Instant> {
    if reserve.is_zero() {
        Some(at)
    } else {
        at.checked_sub(reserve)
    }
}

/// Whether the request's deadline, less the reserve, has passed at `now`.
fn no_time_left(deadline: RequestDeadline, reserve: Duration, now: Instant) -> bool {
    less_reserve(Instant::from_std(deadline.instant()), reserve).is_none_or(|at| at <= now)
}

/// The earliest of the call's own timeout, the current request's deadline (`current`) and one
/// carried in the outgoing request's extensions (those two less the reserve), and the time it
/// was decided at (`now`, else the clock); `None` — without reading the clock — when the call
/// has no limit at all.
fn limit<B>(
    request: &Request<B>,
    settings: &DeadlineLayer,
    current: Option<RequestDeadline>,
    now: Option<Instant>,
) -> Option<(Limit, Instant)> {
    let carried = request.extensions().get::<RequestDeadline>().copied();
    let request_deadline = match (current, carried) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if request_deadline.is_none() && settings.timeout.is_none() {
        return None;
    }
    // At most one clock read for the whole decision.
    let now = now.unwrap_or_else(Instant::now);
    let own = settings
        .timeout
        .and_then(|timeout| now.checked_add(timeout))
        .map(|at| Limit {
            at,
            by_request: false,
        });
    let request_deadline = request_deadline.map(|deadline| Limit {
        // A reserve longer than the clock's past: no time left.
        at: less_reserve(Instant::from_std(deadline.instant()), settings.reserve).unwrap_or(now),
        by_request: true,
    });
    let limit = match (own, request_deadline) {
        (Some(own), Some(request)) if request.at <= own.at => Some(request),
        (Some(own), _) => Some(own),
        (None, request) => request,
    };
    limit.map(|limit| (limit, now))
}

/// Whether the request is a gRPC call.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let current = RequestDeadline::current();
        // The clock is read only under a request's deadline (as `call` would read it).
        let now = current.map(|deadline| (Instant::now(), deadline));
        self.ready_at = None;
        // No time left: no readiness asked of the inner service, so no connection made.
        if let Some((now, deadline)) = now
            && no_time_left(deadline, self.settings.reserve, now)
        {
            self.refused = true;
            self.waiting = None;
            return Poll::Ready(Ok(()));
        }
        self.refused = false;
        match self.inner.poll_ready(cx) {
            Poll::Ready(ready) => {
                if self.waiting.is_some() {
                    self.waiting = None;
                }
                self.ready_at = now;
                Poll::Ready(ready.map_err(Into::into))
            }
            Poll::Pending => {
                // Waiting for readiness (a busy pool, a full buffer) ends with the request's
                // time too: the call is then refused, the inner service no longer waited for.
                let Some(deadline) = current else {
                    return Poll::Pending;
                };
                let at = less_reserve(Instant::from_std(deadline.instant()), self.settings.reserve)
                    .unwrap_or_else(Instant::now);
                if self
                    .waiting
                    .as_ref()
                    .is_none_or(|timer| timer.deadline() != at)
                {
                    self.waiting = Some(Box::pin(tokio::time::sleep_until(at)));
                }
                if let Some(timer) = self.waiting.as_mut()
                    && timer.as_mut().poll(cx).is_ready()
                {
                    self.waiting = None;
                    self.refused = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
        }
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let ready_at = self.ready_at.take();
        // Only with findings: who to name when the request's time runs out.
        let report = self.settings.findings.as_ref().map(|reporter| Report {
            reporter: reporter.clone(),
            downstream: request.uri().authority().cloned(),
        });
        if std::mem::take(&mut self.refused) {
            return DeadlineFuture::refused(DeadlineExceeded::new(true, false), report);
        }
        // `poll_ready`'s time stands for the deadline it was read under: a call made under
        // another one (or none) reads the clock itself.
        let current = RequestDeadline::current();
        let now = ready_at
            .filter(|&(_, deadline)| Some(deadline) == current)
            .map(|(now, _)| now);
        let limit = limit(&request, &self.settings, current, now);
        let Some((limit, now)) = limit else {
            return DeadlineFuture::running(self.inner.call(request), None, None);
        };
        if limit.at <= now {
            // The inner service was made ready for this call: its readiness (a permit, a
            // connection slot) is given back by calling it and dropping the call at once,
            // before it is polled — a tower service does its work when polled.
            drop(self.inner.call(request));
            return DeadlineFuture::refused(DeadlineExceeded::new(limit.by_request, false), report);
        }
        if is_grpc(request.headers()) {
            let left = limit.at.saturating_duration_since(now);
            let asked = request
                .headers()
                .get(GRPC_TIMEOUT)
                .and_then(grpc_timeout::parse);
            let timeout = asked.map_or(left, |asked| asked.min(left));
            request
                .headers_mut()
                .insert(GRPC_TIMEOUT, grpc_timeout::encode(timeout));
        }
        DeadlineFuture::running(
            self.inner.call(request),
            Some((limit.at, limit.by_request)),
            report,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_time_left_when_the_deadline_less_the_reserve_has_passed() {
        let now = Instant::now();
        let in_a_second = RequestDeadline::at((now + Duration::from_secs(1)).into_std());
        assert!(!no_time_left(in_a_second, Duration::ZERO, now));
        assert!(no_time_left(in_a_second, Duration::from_secs(1), now));
        assert!(!no_time_left(in_a_second, Duration::from_millis(999), now));
        assert!(no_time_left(
            in_a_second,
            Duration::ZERO,
            now + Duration::from_secs(1)
        ));
        // A reserve reaching back past the clock's start: no time left.
        assert!(no_time_left(in_a_second, Duration::MAX, now));
    }

    #[test]
    fn the_limit_is_the_earliest_of_the_timeout_and_the_deadlines_less_the_reserve() {
        let now = Instant::now();
        let at =
            |seconds: u64| RequestDeadline::at((now + Duration::from_secs(seconds)).into_std());
        let settings = DeadlineLayer::new()
            .with_timeout(Duration::from_secs(5))
            .with_reserve(Duration::from_secs(1));
        let plain = Request::new(());
        // No deadline: the call's own timeout, from `now`.
        let (limit, decided) = super::limit(&plain, &settings, None, Some(now)).unwrap();
        assert_eq!(
            (limit.at, limit.by_request, decided),
            (now + Duration::from_secs(5), false, now)
        );
        // The request's 3 s, less the 1 s reserve, come first.
        let (limit, _) = super::limit(&plain, &settings, Some(at(3)), Some(now)).unwrap();
        assert_eq!(
            (limit.at, limit.by_request),
            (now + Duration::from_secs(2), true)
        );
        // A deadline carried on the request counts too; the earlier of the two wins.
        let mut carried = Request::new(());
        carried.extensions_mut().insert(at(2));
        let (limit, _) = super::limit(&carried, &settings, Some(at(3)), Some(now)).unwrap();
        assert_eq!(limit.at, now + Duration::from_secs(1));
        // Past the own timeout, the timeout stands.
        let (limit, _) = super::limit(&plain, &settings, Some(at(60)), Some(now)).unwrap();
        assert_eq!(
            (limit.at, limit.by_request),
            (now + Duration::from_secs(5), false)
        );
        // No timeout and no deadline: no limit, no clock read.
        assert!(limit_of_nothing());
    }

    fn limit_of_nothing() -> bool {
        super::limit(&Request::new(()), &DeadlineLayer::new(), None, None).is_none()
    }
}
