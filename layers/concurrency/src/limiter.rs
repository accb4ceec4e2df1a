//! The limiter's books, shared by every clone of a layer: the semaphore, the queue count, the
//! adaptive limit, the counters and the permits it hands out.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
// tokio's clock: the real one in production, a paused one in simulations and tests.
use tokio::time::Instant;
use vitals_core::body::BodyEnd;
use vitals_core::findings::Findings;
use vitals_core::outcome::OutcomeHint;
use vitals_core::route::{RequestHead, RouteLabel};

use crate::adaptive::{Aimd, Signal};
use crate::body::LayerResponse;

/// The default name of a limiter (its gauges' `vitals.limiter` label).
pub const DEFAULT_NAME: &str = "default";

/// The default longest wait in the queue.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);

/// The default `Retry-After` base: clients are told 1–2 s, spread so they do not come back at
/// once.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a limiter holds now and has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimiterSnapshot {
    /// The limit.
    pub limit: usize,
    /// Requests holding a permit (until their response body ends).
    pub in_flight: usize,
    /// Requests waiting for a permit.
    pub queued: usize,
    /// Requests admitted, directly or after waiting.
    pub admitted: u64,
    /// Requests refused: queue full, or waited too long.
    pub rejected: u64,
    /// The longest wait of an admitted request.
    pub longest_admitted_wait: Duration,
    /// Permits free right now (`limit - in_flight` when the books balance).
    pub available: usize,
}

/// The state every clone of a layer shares.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) semaphore: Arc<Semaphore>,
    pub(crate) limit: usize,
    pub(crate) max_queued: usize,
    pub(crate) max_wait: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) rejection: LayerResponse,
    pub(crate) queued: AtomicUsize,
    pub(crate) admitted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) longest_wait_nanos: AtomicU64,
    pub(crate) jitter: AtomicU64,
    /// The limit in force (changes only when adaptive).
    pub(crate) current: AtomicUsize,
    /// Permits to forget as they come back, after the adaptive limit went down. Changes only
    /// under the adaptive lock.
    pub(crate) debt: AtomicUsize,
    pub(crate) adaptive: Option<Mutex<Aimd>>,
    /// The `vitals.limiter` label of the gauges.
    pub(crate) name: Cow<'static, str>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Handles,
    /// Where refusals are counted per route for a live view, if anywhere.
    pub(crate) findings: Option<Findings>,
}

/// A permit of the concurrency limit, held from admission to the end of the response body.
/// Given back when dropped (the response body ended, the request was cancelled,
/// the handler panicked). With an adaptive limit, only `completed` reports
/// the request's latency first, and only for a representative request (see
/// [`crate::adaptive`]): a permit merely dropped says nothing about how long the work takes.
#[derive(Debug)]
pub struct Permit {
    held: Option<OwnedSemaphorePermit>,
    limiter: Arc<Limiter>,
    feedback: Option<Feedback>,
}

/// When and under which adaptive epoch the request was admitted.
#[derive(Debug)]
struct Feedback {
    admitted: Instant,
    epoch: u64,
}

impl Permit {
    pub(crate) fn new(permit: OwnedSemaphorePermit, limiter: &Arc<Limiter>) -> Self {
        let feedback = limiter.adaptive.as_ref().map(|aimd| Feedback {
            admitted: Instant::now(),
            epoch: lock(aimd).epoch(),
        });
        Self {
            held: Some(permit),
            limiter: Arc::clone(limiter),
            feedback,
        }
    }

    /// A permit granted to a request that is refused anyway (it waited past `max_wait`): it goes
    /// back through the books without a latency sample.
    pub(crate) fn unused(permit: OwnedSemaphorePermit, limiter: &Arc<Limiter>) -> Self {
        Self {
            held: Some(permit),
            limiter: Arc::clone(limiter),
            feedback: None,
        }
    }

    /// The response head passed: it decides whether the request's latency may teach an adaptive
    /// limit. Only the handler's own success measures the work the limit protects: a `304`, a
    /// `404` or a fast error is cheap, a refusal by an inner limiter is no work at all, and a
    /// timeout inside is a congestion signal rather than a latency.
    pub fn on_response<B>(&mut self, response: &Response<B>) {
        match OutcomeHint::of(response) {
            Some(OutcomeHint::Timeout) => self.timed_out(),
            None if response.status().is_success() => {}
            _ => self.unrepresentative(),
        }
    }

    /// The response body ended: completed, the permit goes back with a latency sample (when
    /// representative); failed or dropped, without one.
    pub fn on_end(self, end: BodyEnd) {
        match end {
            BodyEnd::Completed => self.completed(),
            BodyEnd::Errored | BodyEnd::Dropped => drop(self),
        }
    }

    /// The request timed out inside: a congestion signal rather than a latency.
    pub(crate) fn timed_out(&mut self) {
        if let Some(feedback) = self.feedback.take() {
            self.limiter.feedback(Signal::TimedOut, feedback.epoch);
        }
    }

    /// The answer is not representative of the work the limit protects (not a `2xx` of the
    /// handler's): its latency is no sample, however its body ends.
    pub(crate) fn unrepresentative(&mut self) {
        self.feedback = None;
    }

    /// The response body produced its last byte: the time since admission is a latency sample
    /// (unless the answer was unrepresentative or timed out), then the permit goes back.
    pub(crate) fn completed(mut self) {
        let sample = self
            .feedback
            .take()
            .map(|feedback| (Signal::Latency(feedback.admitted.elapsed()), feedback.epoch));
        self.release(sample);
    }

    fn release(&mut self, sample: Option<(Signal, u64)>) {
        let Some(permit) = self.held.take() else {
            return;
        };
        self.limiter.give_back(permit, sample);
        #[cfg(feature = "metrics")]
        self.limiter
            .metrics
            .gauges(&self.limiter.name, &self.limiter.snapshot());
    }
}

impl Drop for Permit {
    /// A permit dropped without `completed` — the request cancelled, the
    /// body dropped before its end or failed, the handler failed or panicked — goes back
    /// without a sample: a client that hung up after a microsecond must not teach the adaptive
    /// limit that requests take a microsecond.
    fn drop(&mut self) {
        self.release(None);
    }
}

pub(crate) fn lock(aimd: &Mutex<Aimd>) -> std::sync::MutexGuard<'_, Aimd> {
    aimd.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Limiter {
    /// Feeds the adaptive limit and resizes the semaphore to what it answers.
    fn feedback(&self, signal: Signal, epoch: u64) {
        let Some(aimd) = &self.adaptive else { return };
        self.resize(&mut lock(aimd), signal, epoch);
    }

    /// Returns a permit. With an adaptive limit that went down while permits were out, the
    /// permit pays that debt (it is forgotten) instead of freeing a slot. Resizing and paying
    /// happen under one lock: a permit released between another thread's debt check and its
    /// shrink would otherwise leave the books one permit over the limit.
    fn give_back(&self, permit: OwnedSemaphorePermit, sample: Option<(Signal, u64)>) {
        let Some(aimd) = &self.adaptive else {
            drop(permit);
            return;
        };
        let mut aimd = lock(aimd);
        if let Some((signal, epoch)) = sample {
            self.resize(&mut aimd, signal, epoch);
        }
        let debt = self.debt.load(Ordering::Acquire);
        if debt > 0 {
            self.debt.store(debt - 1, Ordering::Release);
            permit.forget();
        } else {
            drop(permit);
        }
    }

    /// Asks the adaptive limit for its answer to one sample and moves the semaphore to it.
    /// Callers hold the adaptive lock, so `current` and `debt` only change under it.
    fn resize(&self, aimd: &mut Aimd, signal: Signal, epoch: u64) {
        let wanted = aimd.on_sample(signal, epoch);
        let current = self.current.load(Ordering::Acquire);
        if wanted > current {
            // Cancel debt first: those permits were never forgotten.
            let debt = self.debt.load(Ordering::Acquire);
            let cancelled = debt.min(wanted - current);
            self.debt.store(debt - cancelled, Ordering::Release);
            self.semaphore.add_permits(wanted - current - cancelled);
        } else if wanted < current {
            let shrink = current - wanted;
            let forgotten = self.semaphore.forget_permits(shrink);
            self.debt.fetch_add(shrink - forgotten, Ordering::AcqRel);
        }
        self.current.store(wanted, Ordering::Release);
    }

    pub(crate) fn snapshot(&self) -> LimiterSnapshot {
        LimiterSnapshot {
            limit: self.current.load(Ordering::Acquire),
            // Permits owed (the adaptive limit went down while they were out) are still held.
            in_flight: (self.current.load(Ordering::Acquire) + self.debt.load(Ordering::Acquire))
                .saturating_sub(self.semaphore.available_permits()),
            queued: self.queued.load(Ordering::Relaxed),
            admitted: self.admitted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            longest_admitted_wait: Duration::from_nanos(
                self.longest_wait_nanos.load(Ordering::Relaxed),
            ),
            available: self.semaphore.available_permits(),
        }
    }

    pub(crate) fn admitted_after(&self, waited: Duration, route: Option<&RouteLabel>) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.admitted(&self.name, &self.snapshot(), route);
        #[cfg(not(feature = "metrics"))]
        let _ = route;
        if !waited.is_zero() {
            let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.longest_wait_nanos.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// The refusal: 503, `Retry-After` spread over [base, 2 × base] whole seconds.
    ///
    /// A refusal is no signal for an adaptive limit: it is the limit doing its job, not the
    /// server slowing down. Counted as congestion, refusals (and low-priority sheds) would lower
    /// the limit, which refuses more, which lowers it further; during a probe they would use up
    /// the samples meant for admitted requests, so the baseline would never be measured afresh.
    pub(crate) fn reject<D: From<Bytes> + Buf>(
        &self,
        route: Option<&RouteLabel>,
    ) -> Response<Full<D>> {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        if let Some(findings) = &self.findings {
            findings
                .count_rejection(route.map_or(vitals_core::route::UNMATCHED, RouteLabel::as_str));
        }
        #[cfg(feature = "metrics")]
        self.metrics.rejected(&self.name, &self.snapshot(), route);
        #[cfg(not(feature = "metrics"))]
        let _ = route;
        let mut response = self.rejection.to_full(Some(OutcomeHint::Rejected));
        // Saturating: a base near `u64::MAX` seconds says "not soon", it must not overflow.
        let base = self.retry_after.as_secs().max(1);
        let seconds = base.saturating_add(self.next_jitter() % base.saturating_add(1));
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
        response
    }

    /// A cheap pseudo-random number (xorshift on a shared state): jitter, not security.
    fn next_jitter(&self) -> u64 {
        let mut x = self
            .jitter
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
}

/// A route's own limiter, and its request classes.
#[derive(Clone, Debug)]
pub(crate) struct RouteLimiter {
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) classes: Arc<Classes>,
}

/// A rule that picks requests out by their head.
pub(crate) type Rule = Arc<dyn Fn(RequestHead<'_>) -> bool + Send + Sync>;

/// Requests treated apart: some bypass the limit, some are shed first.
#[derive(Clone, Default)]
pub(crate) struct Classes {
    pub(crate) bypass: Option<Rule>,
    pub(crate) low_priority: Option<(Rule, f64)>,
}

impl std::fmt::Debug for Classes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classes")
            .field("bypass", &self.bypass.is_some())
            .field(
                "low_priority_share",
                &self.low_priority.as_ref().map(|(_, s)| *s),
            )
            .finish()
    }
}

/// What a limiter is built from.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) limit: usize,
    pub(crate) max_queued: usize,
    pub(crate) max_wait: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) rejection: LayerResponse,
    pub(crate) adaptive: Option<Aimd>,
    pub(crate) name: Cow<'static, str>,
}

impl Settings {
    pub(crate) fn new(limit: usize, max_queued: usize, adaptive: Option<Aimd>) -> Self {
        Self {
            limit,
            max_queued,
            max_wait: DEFAULT_MAX_WAIT,
            retry_after: DEFAULT_RETRY_AFTER,
            rejection: default_rejection(),
            adaptive,
            name: Cow::Borrowed(DEFAULT_NAME),
        }
    }
}

pub(crate) fn default_rejection() -> LayerResponse {
    LayerResponse::json(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is at capacity, retry later",
    )
}

/// A place in the queue, given back when the request leaves it (admitted, refused, or gone).
pub(crate) struct QueueSlot {
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) since: Instant,
}

impl QueueSlot {
    pub(crate) fn take(limiter: &Arc<Limiter>) -> Option<Self> {
        let taken = limiter
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < limiter.max_queued).then_some(queued + 1)
            })
            .is_ok();
        #[cfg(feature = "metrics")]
        limiter.metrics.gauges(&limiter.name, &limiter.snapshot());
        taken.then(|| Self {
            limiter: Arc::clone(limiter),
            since: Instant::now(),
        })
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.limiter.queued.fetch_sub(1, Ordering::AcqRel);
        #[cfg(feature = "metrics")]
        self.limiter
            .metrics
            .gauges(&self.limiter.name, &self.limiter.snapshot());
    }
}

pub(crate) type Acquire = Pin<
    Box<
        dyn Future<
                Output = Result<
                    Result<OwnedSemaphorePermit, tokio::sync::AcquireError>,
                    tokio::time::error::Elapsed,
                >,
            > + Send,
    >,
>;
