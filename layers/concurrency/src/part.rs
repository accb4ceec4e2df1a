//! The concurrency-limit part: admit a request now, queue it, or refuse it — written once and
//! driven two ways: by [`ConcurrencyLimit`](crate::ConcurrencyLimit), and by the fused `vitals`
//! stack, where the queue is the one async phase before the handler.
//!
//! ```
//! use http::{Request, Response};
//! use vitals_concurrency::ConcurrencyLimitLayer;
//! use vitals_concurrency::part::Admission;
//! use vitals_core::body::BodyEnd;
//!
//! let limit = ConcurrencyLimitLayer::new(1).with_max_queued(0);
//! let part = limit.part();
//! let request = Request::new(());
//! let Admission::Admitted(Some(mut permit)) = part.admit(&request, None) else {
//!     unreachable!("the first request gets the only permit");
//! };
//! // The limit is full and nobody may wait: the next one is refused with a 503.
//! let Admission::Refused(refusal) = part.admit(&request, None) else {
//!     unreachable!("no permit and no queue");
//! };
//! let refused: Response<http_body_util::Full<bytes::Bytes>> = refusal.into_response();
//! assert_eq!(refused.status(), 503);
//! // The permit is held to the end of the response body.
//! permit.on_response(&Response::new(()));
//! permit.on_end(BodyEnd::Completed);
//! assert_eq!(limit.handle().snapshot().in_flight, 0);
//! ```

use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body_util::Full;
use vitals_core::route::{RequestHead, RouteLabel, RouteLabeler};

use crate::limiter::{Acquire, Classes, Limiter, Permit, QueueSlot, RouteLimiter};
use vitals_core::route_table::RouteTable;

/// The concurrency-limit part of a [`ConcurrencyLimitLayer`](crate::ConcurrencyLimitLayer)
/// (see [`ConcurrencyLimitLayer::part`](crate::ConcurrencyLimitLayer::part)). Cheap to clone;
/// clones share the limiter.
#[derive(Clone, Debug)]
pub struct LimitPart {
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) classes: Arc<Classes>,
    pub(crate) routes: Arc<RouteTable<RouteLimiter>>,
    pub(crate) labeler: RouteLabeler,
}

/// What the limit decided for a request.
#[derive(Debug)]
pub enum Admission {
    /// Admitted now: the permit to hold until the response body ends (`None`: the request
    /// bypasses the limit).
    Admitted(Option<Permit>),
    /// Refused now: answer with [`Refusal::into_response`].
    Refused(Refusal),
    /// Waits for a permit: poll [`Queued::poll_admit`] until it admits or refuses.
    Queued(Queued),
}

/// A refused request: its `503` (or the configured refusal) with `Retry-After`.
#[derive(Debug)]
pub struct Refusal {
    limiter: Arc<Limiter>,
    route: Option<RouteLabel>,
}

impl Refusal {
    /// Counts the refusal and makes its response (marked as a rejection for the outer parts).
    pub fn into_response<D: From<Bytes> + Buf>(self) -> Response<Full<D>> {
        self.limiter.reject(self.route.as_ref())
    }
}

/// A request waiting in the queue for a permit, at most the limiter's longest wait.
pub struct Queued {
    acquire: Acquire,
    slot: Option<QueueSlot>,
    route: Option<RouteLabel>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl Queued {
    /// Waits for a permit: `Ok` once admitted, `Err` when the wait passed the limit (measured
    /// here, not trusted to the timer: no request is admitted after waiting longer than the
    /// limit allows).
    ///
    /// # Panics
    ///
    /// When polled again after it answered.
    pub fn poll_admit(&mut self, cx: &mut Context<'_>) -> Poll<Result<Permit, Refusal>> {
        let acquired = ready!(self.acquire.as_mut().poll(cx));
        let Some(taken) = self.slot.take() else {
            panic!("vitals_concurrency::part::Queued polled after it answered");
        };
        let waited = taken.since.elapsed();
        let limiter = Arc::clone(&taken.limiter);
        drop(taken);
        let route = self.route.take();
        Poll::Ready(match acquired {
            Ok(Ok(granted)) if waited <= limiter.max_wait => {
                limiter.admitted_after(waited, route.as_ref());
                Ok(Permit::new(granted, &limiter))
            }
            Ok(Ok(granted)) => {
                // Too late to admit; the permit still goes back through the books.
                drop(Permit::unused(granted, &limiter));
                Err(Refusal { limiter, route })
            }
            _ => Err(Refusal { limiter, route }),
        })
    }
}

impl LimitPart {
    /// Whether [`admit`](Self::admit) wants the request's route: to pick a route's own
    /// limiter, or to label what it counts. When not, pass `None` and skip labelling.
    pub fn wants_route(&self) -> bool {
        cfg!(feature = "metrics") || !self.routes.is_empty() || self.limiter.findings.is_some()
    }

    /// The route labeler the layer was given.
    pub fn route_labeler(&self) -> &RouteLabeler {
        &self.labeler
    }

    /// A request for `route` arrived: admitted at once when a permit is free (the fast path: no
    /// allocation, no wait), else queued when the queue has room, else refused.
    pub fn admit<B>(&self, request: &Request<B>, route: Option<&RouteLabel>) -> Admission {
        let (limiter, classes) = match route.and_then(|route| self.routes.get(route)) {
            Some(own) => (&own.limiter, &own.classes),
            None => (&self.limiter, &self.classes),
        };
        let route = route.filter(|_| cfg!(feature = "metrics") || limiter.findings.is_some());
        let refuse = || {
            Admission::Refused(Refusal {
                limiter: Arc::clone(limiter),
                route: route.cloned(),
            })
        };
        let mut low_priority = false;
        if classes.bypass.is_some() || classes.low_priority.is_some() {
            let head = RequestHead::of(request);
            if classes.bypass.as_ref().is_some_and(|rule| rule(head)) {
                return Admission::Admitted(None);
            }
            if let Some((rule, share)) = &classes.low_priority
                && rule(head)
            {
                low_priority = true;
                let snapshot = limiter.snapshot();
                #[allow(clippy::cast_precision_loss)]
                let crowded = snapshot.in_flight as f64 >= share * snapshot.limit as f64;
                if crowded {
                    return refuse();
                }
            }
        }
        if let Ok(permit) = Arc::clone(&limiter.semaphore).try_acquire_owned() {
            limiter.admitted_after(Duration::ZERO, route);
            return Admission::Admitted(Some(Permit::new(permit, limiter)));
        }
        let slot = if low_priority {
            None
        } else {
            QueueSlot::take(limiter)
        };
        let Some(slot) = slot else {
            return refuse();
        };
        let semaphore = Arc::clone(&limiter.semaphore);
        let acquire = tokio::time::timeout(limiter.max_wait, semaphore.acquire_owned());
        Admission::Queued(Queued {
            acquire: Box::pin(acquire),
            slot: Some(slot),
            route: route.cloned(),
        })
    }
}
