//! What the cache did for each route since the start, kept in the layer itself (the `metrics`
//! counters are write-only): read with
//! [`ResponseCacheHandle::route_snapshots`](crate::ResponseCacheHandle::route_snapshots), as the
//! dashboard's "Response cache" panel does.

use std::sync::atomic::{AtomicU64, Ordering};

use vitals_core::per_route::PerRoute;

use crate::part::Event;

/// One route's counts (and, with the `metrics` feature, its families: one lookup per event for
/// both).
#[derive(Debug)]
struct RouteTally {
    hits: AtomicU64,
    stale: AtomicU64,
    collapsed: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    stored: AtomicU64,
    wait_refused: AtomicU64,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::RouteCounters,
}

impl RouteTally {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn new(route: &str) -> Self {
        Self {
            hits: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            collapsed: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            wait_refused: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::RouteCounters::new(route),
        }
    }

    /// The count `event` adds to (none for the events the dashboard does not show).
    fn of(&self, event: Event) -> Option<&AtomicU64> {
        Some(match event {
            Event::Hit => &self.hits,
            Event::Stale | Event::StaleOnError => &self.stale,
            Event::Collapsed => &self.collapsed,
            Event::Miss => &self.misses,
            Event::Bypass => &self.bypassed,
            Event::Stored => &self.stored,
            Event::WaitRefused => &self.wait_refused,
            Event::Waited(_) => return None,
            #[cfg(feature = "redis")]
            Event::Backend(_) | Event::BackendError => return None,
        })
    }
}

/// Every route's counts.
#[derive(Debug, Default)]
pub(crate) struct Tallies {
    routes: PerRoute<RouteTally>,
}

impl Tallies {
    /// Counts `event` for `route` (and adds it to the route's metric families).
    pub(crate) fn count(&self, route: &str, event: Event) {
        self.routes.with(
            route,
            || RouteTally::new(route),
            |tally| {
                if let Some(count) = tally.of(event) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                #[cfg(feature = "metrics")]
                tally.metrics.count(event);
            },
        );
    }

    /// A stored response of `route` was evicted to keep the store in its bound.
    #[cfg(feature = "metrics")]
    pub(crate) fn evicted(&self, route: &str) {
        self.routes.with(
            route,
            || RouteTally::new(route),
            |tally| tally.metrics.evicted(),
        );
    }

    /// Every route's counts, sorted by route.
    pub(crate) fn snapshots(&self) -> Vec<(String, CacheSnapshot)> {
        let mut all = Vec::new();
        self.routes.for_each(|route, tally| {
            let read = |count: &AtomicU64| count.load(Ordering::Relaxed);
            all.push((
                route.to_owned(),
                CacheSnapshot {
                    hits: read(&tally.hits),
                    stale: read(&tally.stale),
                    collapsed: read(&tally.collapsed),
                    misses: read(&tally.misses),
                    bypassed: read(&tally.bypassed),
                    stored: read(&tally.stored),
                    wait_refused: read(&tally.wait_refused),
                },
            ));
        });
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// What the cache did for one route since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheSnapshot {
    /// Answered from a fresh stored response.
    pub hits: u64,
    /// Answered from a stale one (`stale-while-revalidate`, a request's `max-stale`,
    /// `stale-if-error`).
    pub stale: u64,
    /// Answered from another request's fill, after a wait.
    pub collapsed: u64,
    /// Sent to the handler for want of a usable stored response.
    pub misses: u64,
    /// Went past the cache (`no-store`, a cookie, the route's key function).
    pub bypassed: u64,
    /// Responses stored.
    pub stored: u64,
    /// Waits past their limit answered `503`.
    pub wait_refused: u64,
}

impl CacheSnapshot {
    /// Requests answered without their handler (hits, stale answers, collapsed waits).
    pub fn answered_by_cache(&self) -> u64 {
        self.hits + self.stale + self.collapsed
    }

    /// The share of the route's requests answered without their handler, `None` before the
    /// first.
    #[allow(clippy::cast_precision_loss)] // A ratio for people: 2^53 requests are far away.
    pub fn hit_ratio(&self) -> Option<f64> {
        let cached = self.answered_by_cache();
        let all = cached + self.misses + self.bypassed + self.wait_refused;
        (all > 0).then(|| cached as f64 / all as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_the_hit_ratio() {
        let tallies = Tallies::default();
        for event in [
            Event::Miss,
            Event::Stored,
            Event::Hit,
            Event::Hit,
            Event::Collapsed,
        ] {
            tallies.count("/a", event);
        }
        tallies.count("/b", Event::Bypass);
        let all = tallies.snapshots();
        assert_eq!(all.len(), 2);
        let (route, a) = &all[0];
        assert_eq!(route, "/a");
        assert_eq!((a.hits, a.collapsed, a.misses, a.stored), (2, 1, 1, 1));
        assert_eq!(a.hit_ratio(), Some(0.75));
        assert_eq!(all[1].1.hit_ratio(), Some(0.0));
        assert_eq!(CacheSnapshot::default().hit_ratio(), None);
    }
}
