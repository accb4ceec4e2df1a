//! [`RateLimitHandle`]: a read-only view of a rate limit's counts, for dashboards and tests.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::part::{Enforced, RateLimitPart};

/// A limit's counts since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitSnapshot {
    /// Requests allowed.
    pub allowed: u64,
    /// Requests refused with `429`.
    pub refused: u64,
    /// Requests shadow mode let through that the quotas would have refused.
    pub shadow_refused: u64,
    /// Keys whose state is held now, summed over the quotas.
    pub keys: usize,
    /// Keys dropped from a full store while still spending their quota (each got a fresh
    /// burst early): above zero, raise `with_max_keys`.
    pub evicted_early: u64,
    /// Bytes the quotas' key stores hold now.
    pub memory_bytes: usize,
    /// Requests decided without the quotas' store (Redis), which failed or timed out: allowed,
    /// or refused with `503` by a quota that fails closed.
    pub store_failures: u64,
}

/// A cheap, cloneable view of a [`RateLimitLayer`](crate::RateLimitLayer)'s limits.
#[derive(Clone, Debug)]
pub struct RateLimitHandle {
    pub(crate) part: RateLimitPart,
}

fn snapshot(limit: &Arc<Enforced>) -> RateLimitSnapshot {
    let (keys, evicted_early, memory_bytes) = limit.keys();
    RateLimitSnapshot {
        allowed: limit.books.allowed.get(),
        refused: limit.books.refused.load(Ordering::Relaxed),
        shadow_refused: limit.books.shadow_refused.load(Ordering::Relaxed),
        store_failures: limit.books.store_failures.load(Ordering::Relaxed),
        keys,
        evicted_early,
        memory_bytes,
    }
}

impl RateLimitHandle {
    /// The limit every route without its own shares (`None` when there is none).
    pub fn snapshot(&self) -> Option<RateLimitSnapshot> {
        self.part.default.as_ref().map(snapshot)
    }

    /// A route's own limit (given with `with_route`).
    pub fn route_snapshot(&self, route: &str) -> Option<RateLimitSnapshot> {
        self.part.routes.get_str(route).map(snapshot)
    }

    /// Every route's own limit, sorted by route.
    pub fn route_snapshots(&self) -> Vec<(String, RateLimitSnapshot)> {
        let mut all: Vec<_> = self
            .part
            .routes
            .iter()
            .map(|(route, limit)| (route.to_owned(), snapshot(limit)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
