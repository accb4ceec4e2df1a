//! `RetryLayer`: when and how often a call is tried again, and the budget all of its services
//! share.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use vitals_core::findings::Findings;

use super::budget::RetryBudget;
use super::service::Retry;
use crate::findings::Reporter;

/// Tries failed calls again — only calls that can repeat, under a budget, never past the
/// request's deadline (see the [module docs](crate::retry)).
#[derive(Clone, Debug)]
pub struct RetryLayer {
    pub(crate) shared: Arc<Shared>,
}

/// The settings and the budget every service of one layer shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) max_attempts: u32,
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) retry_after_cap: Duration,
    pub(crate) max_body: usize,
    pub(crate) budget_ratio: f32,
    pub(crate) budget_floor: u32,
    pub(crate) budget: RetryBudget,
    pub(crate) findings: Reporter,
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryLayer {
    /// At most 3 attempts; backoff from 50 ms, capped at 1 s, with full jitter; a downstream's
    /// `Retry-After` honoured up to 2 s; bodies up to 64 KiB replayed; a budget of 20% of the
    /// calls over the last 10 s plus 10 retries a second.
    pub fn new() -> Self {
        Self::build(Shared {
            max_attempts: 3,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(1),
            retry_after_cap: Duration::from_secs(2),
            max_body: 64 * 1024,
            budget_ratio: 0.2,
            budget_floor: 10,
            budget: RetryBudget::new(0.0, 0),
            findings: Reporter::default(),
        })
    }

    fn build(mut shared: Shared) -> Self {
        // Settings brought into the ranges the budget's units hold.
        shared.budget_ratio = if shared.budget_ratio.is_nan() {
            0.2
        } else {
            shared.budget_ratio.clamp(0.0, 1000.0)
        };
        shared.budget_floor = shared.budget_floor.min(1_000_000);
        shared.max_attempts = shared.max_attempts.max(1);
        shared.budget = RetryBudget::new(shared.budget_ratio, shared.budget_floor);
        Self {
            shared: Arc::new(shared),
        }
    }

    fn with(&self, change: impl FnOnce(&mut Shared)) -> Self {
        let s = &self.shared;
        let mut shared = Shared {
            max_attempts: s.max_attempts,
            base: s.base,
            cap: s.cap,
            retry_after_cap: s.retry_after_cap,
            max_body: s.max_body,
            budget_ratio: s.budget_ratio,
            budget_floor: s.budget_floor,
            budget: RetryBudget::new(0.0, 0),
            findings: s.findings.clone(),
        };
        change(&mut shared);
        Self::build(shared)
    }

    /// Attempts per call, the first included (default 3; at least 1, which never retries).
    #[must_use]
    pub fn with_max_attempts(self, attempts: u32) -> Self {
        self.with(|s| s.max_attempts = attempts)
    }

    /// The backoff: retry `n` waits a uniform draw from zero to `base · 2^(n−1)`, capped at
    /// `cap` (defaults 50 ms and 1 s).
    #[must_use]
    pub fn with_backoff(self, base: Duration, cap: Duration) -> Self {
        self.with(|s| {
            s.base = base;
            s.cap = cap;
        })
    }

    /// The longest `Retry-After` honoured (default 2 s): a downstream asking for a longer wait
    /// gets no retry, and its answer is returned.
    #[must_use]
    pub fn with_retry_after_cap(self, cap: Duration) -> Self {
        self.with(|s| s.retry_after_cap = cap)
    }

    /// The largest request body kept for a retry (default 64 KiB); a larger or streamed body is
    /// sent once.
    #[must_use]
    pub fn with_max_body(self, bytes: usize) -> Self {
        self.with(|s| s.max_body = bytes)
    }

    /// The retry budget: `ratio` retries per call made over the last 10 s (default 0.2), plus
    /// `floor` retries a second (default 10). When a downstream fails every call, retries add
    /// at most that much load to it, instead of multiplying it by the attempts.
    #[must_use]
    pub fn with_budget(self, ratio: f32, floor: u32) -> Self {
        self.with(|s| {
            s.budget_ratio = ratio;
            s.budget_floor = floor;
        })
    }
}

impl RetryLayer {
    /// Reports to `findings` when the budget stops a retry (kind `downstream`, event
    /// `retry_budget_exhausted`, the host called as the downstream; at most once per 10 s).
    #[must_use]
    pub fn with_findings(self, findings: Findings) -> Self {
        self.with(|s| s.findings = Reporter::new(findings))
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, Arc::clone(&self.shared))
    }
}
