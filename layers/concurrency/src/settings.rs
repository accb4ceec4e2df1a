//! `Limit`: a limiter's settings as one plain value — its size (fixed or adaptive), its queue,
//! its refusal and the requests it treats apart — for a layer's own limiter and each route's.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use vitals_core::route::RequestHead;

use crate::adaptive::{AdaptiveLimit, Aimd};
use crate::body::LayerResponse;
use crate::limiter::{Classes, Settings};

/// What a limiter is made of, before it is made: given to
/// [`ConcurrencyLimitLayer::with_route`](crate::ConcurrencyLimitLayer::with_route) for a route's
/// own limiter, or to [`ConcurrencyLimitLayer::from_limit`](crate::ConcurrencyLimitLayer::from_limit).
/// The layer's setters of the same names change its own limiter's.
///
/// ```
/// use std::time::Duration;
/// use vitals_concurrency::{AdaptiveLimit, Limit};
///
/// let reports = Limit::new(4).with_max_queued(8).with_max_wait(Duration::from_millis(250));
/// let search = Limit::adaptive(AdaptiveLimit::new(8, 128)).with_name("search");
/// ```
#[derive(Clone, Debug)]
pub struct Limit {
    pub(crate) settings: Settings,
    pub(crate) classes: Classes,
}

impl Limit {
    /// At most `limit` requests at once (at least 1); as many may wait, each at most
    /// [`DEFAULT_MAX_WAIT`](crate::DEFAULT_MAX_WAIT).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            settings: Settings::new(limit, limit, None),
            classes: Classes::default(),
        }
    }

    /// A limit that finds itself between `settings.min` and `settings.max` from the latency of
    /// the requests it admits (see [`crate::adaptive`]). The queue holds up to `settings.max`.
    ///
    /// Settings out of range (a struct literal with `min > max`, a NaN factor, …) are brought
    /// into range as [`AdaptiveLimit`] describes, never panicked on.
    pub fn adaptive(settings: AdaptiveLimit) -> Self {
        let aimd = Aimd::new(settings);
        let max = aimd.settings().max;
        Self {
            settings: Settings::new(aimd.limit(), max, Some(aimd)),
            classes: Classes::default(),
        }
    }

    /// The `vitals.limiter` label of this limiter's gauges (default `"default"`; a route's own
    /// limiter left unnamed is named after its route).
    #[must_use]
    pub fn with_name(mut self, name: &'static str) -> Self {
        self.settings.name = Cow::Borrowed(name);
        self
    }

    /// Requests for which `rule` is true skip the limit entirely: health checks and admin
    /// endpoints that must answer even when the service is saturated.
    #[must_use]
    pub fn with_bypass(
        mut self,
        rule: impl Fn(RequestHead<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.classes.bypass = Some(Arc::new(rule));
        self
    }

    /// Requests for which `rule` is true are shed first: admitted only while less than
    /// `share` (0–1; NaN counts as 0) of the limit is in use, and never queued. Batch jobs,
    /// prefetches, anything a user is not waiting for.
    #[must_use]
    pub fn with_low_priority(
        mut self,
        rule: impl Fn(RequestHead<'_>) -> bool + Send + Sync + 'static,
        share: f64,
    ) -> Self {
        let share = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        self.classes.low_priority = Some((Arc::new(rule), share));
        self
    }

    /// How many requests may wait for a permit (default: the limit). `0` refuses at once;
    /// `usize::MAX` never refuses for a full queue.
    #[must_use]
    pub fn with_max_queued(mut self, max_queued: usize) -> Self {
        self.settings.max_queued = max_queued;
        self
    }

    /// How long a request may wait for a permit (default
    /// [`DEFAULT_MAX_WAIT`](crate::DEFAULT_MAX_WAIT)). A wait too long to put on the clock
    /// (`Duration::MAX`) means no limit on the wait.
    #[must_use]
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.settings.max_wait = max_wait;
        self
    }

    /// The `Retry-After` base, in whole seconds (at least 1): refusals say base to 2 × base.
    /// The arithmetic saturates: a base near `u64::MAX` seconds (`Duration::MAX`) gives
    /// `Retry-After` values up to `u64::MAX`, never an overflow.
    #[must_use]
    pub fn with_retry_after(mut self, base: Duration) -> Self {
        self.settings.retry_after = base;
        self
    }

    /// The refusal's status and body (default: 503, `{"error": "..."}`). `Retry-After` is
    /// added to it.
    #[must_use]
    pub fn with_response(mut self, rejection: LayerResponse) -> Self {
        self.settings.rejection = rejection;
        self
    }
}

impl From<usize> for Limit {
    fn from(limit: usize) -> Self {
        Self::new(limit)
    }
}
