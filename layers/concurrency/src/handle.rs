//! `LimiterHandle`: what a dashboard or a test holds to read a limit's state.

use std::sync::Arc;

use vitals_core::route_table::RouteTable;

use crate::limiter::{Limiter, LimiterSnapshot, RouteLimiter};

/// Reads the state of a [`ConcurrencyLimitLayer`](crate::ConcurrencyLimitLayer)'s limiters —
/// its own and each route's — without holding the layer. Cheap to clone; it sees what the
/// layer's services do, from any thread.
///
/// ```
/// use vitals_concurrency::{ConcurrencyLimitLayer, Limit};
///
/// let layer = ConcurrencyLimitLayer::new(64).with_route("/slow", Limit::new(8));
/// let handle = layer.handle();
/// assert_eq!(handle.snapshot().limit, 64);
/// assert_eq!(handle.route_snapshot("/slow").map(|s| s.limit), Some(8));
/// assert_eq!(handle.route_snapshots(), vec![("/slow".to_owned(), handle.route_snapshot("/slow").unwrap())]);
/// assert!(handle.route_snapshot("/other").is_none());
/// ```
#[derive(Clone, Debug)]
pub struct LimiterHandle {
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) routes: Arc<RouteTable<RouteLimiter>>,
}

impl LimiterHandle {
    /// The layer's own limiter now.
    pub fn snapshot(&self) -> LimiterSnapshot {
        self.limiter.snapshot()
    }

    /// The limiter of `route` now, if it has one of its own.
    pub fn route_snapshot(&self, route: &str) -> Option<LimiterSnapshot> {
        self.routes
            .get_str(route)
            .map(|route| route.limiter.snapshot())
    }

    /// Every route with a limiter of its own and that limiter now.
    pub fn route_snapshots(&self) -> Vec<(String, LimiterSnapshot)> {
        self.routes
            .iter()
            .map(|(route, limiter)| (route.to_owned(), limiter.limiter.snapshot()))
            .collect()
    }
}
