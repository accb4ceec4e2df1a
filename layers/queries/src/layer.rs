//! `QueryTrackingLayer`: configuration and the layer.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use vitals_core::route::{RouteLabel, RouteLabeler};
use vitals_core::route_table::RouteTable;
use vitals_core::server_timing::ServerTimingMode;

use crate::index::IndexDetector;
use crate::n_plus_one::NPlusOneRule;
use crate::part::QueriesPart;
use crate::service::QueryTracking;
use crate::statements::{DEFAULT_SLOW_STATEMENT, Watch};

/// What the layer does with an N+1 finding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NPlusOneAction {
    /// One WARN event per finding (the default).
    #[default]
    Log,
    /// Log, and name the finding in the `Server-Timing` `db` entry's description.
    Header,
    /// Log, and answer `500` with the findings as JSON instead of the handler's response — for
    /// development and tests, to make N+1 queries impossible to miss.
    Fail,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) labeler: RouteLabeler,
    pub(crate) rule: NPlusOneRule,
    pub(crate) action: NPlusOneAction,
    pub(crate) server_timing: ServerTimingMode,
    /// Statements a request may make before it is reported (`None`: no budget).
    pub(crate) budget: Option<u64>,
    /// What each route sets differently.
    pub(crate) routes: RouteTable<RouteQueries>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Arc<crate::metrics::Handles>,
    pub(crate) findings: Option<vitals_core::findings::Findings>,
    /// Statements at least this long are reported slow (`None`: not reported).
    pub(crate) slow_statement: Option<Duration>,
    /// What the requests share about their statements.
    pub(crate) watch: Arc<Watch>,
    /// Explains new or slow statement shapes and reports full scans.
    pub(crate) detector: Option<IndexDetector>,
}

impl Config {
    pub(crate) fn action_for(&self, route: &RouteLabel) -> NPlusOneAction {
        self.routes
            .get(route)
            .and_then(|settings| settings.action)
            .unwrap_or(self.action)
    }

    pub(crate) fn slow_statement_for(&self, route: &RouteLabel) -> Option<Duration> {
        self.routes
            .get(route)
            .and_then(|settings| settings.slow_statement)
            .unwrap_or(self.slow_statement)
    }

    pub(crate) fn budget_for(&self, route: &RouteLabel) -> Option<u64> {
        self.routes
            .get(route)
            .and_then(|settings| settings.budget)
            .unwrap_or(self.budget)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            labeler: RouteLabeler::new(),
            rule: NPlusOneRule::default(),
            action: NPlusOneAction::Log,
            server_timing: ServerTimingMode::Always,
            budget: None,
            routes: RouteTable::new(),
            #[cfg(feature = "metrics")]
            metrics: Arc::default(),
            findings: None,
            slow_statement: Some(DEFAULT_SLOW_STATEMENT),
            watch: Arc::default(),
            detector: None,
        }
    }
}

/// What one route template does differently from the layer, given to
/// [`QueryTrackingLayer::with_route`]. What it does not set follows the layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
// `Option<Option<_>>`: whether the route sets a budget at all, then its value (`None`: none).
#[allow(clippy::option_option)]
pub struct RouteQueries {
    budget: Option<Option<u64>>,
    action: Option<NPlusOneAction>,
    slow_statement: Option<Option<Duration>>,
}

impl RouteQueries {
    /// Nothing set: the route follows the layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Statements a request on this route may make before it is reported (`None`: no
    /// budget, whatever the layer's).
    #[must_use]
    pub fn with_query_budget(mut self, max_queries: impl Into<Option<u64>>) -> Self {
        self.budget = Some(max_queries.into());
        self
    }

    /// What to do with this route's N+1 findings.
    #[must_use]
    pub fn with_n_plus_one_action(mut self, action: NPlusOneAction) -> Self {
        self.action = Some(action);
        self
    }

    /// Statements at least this long are reported slow on this route (`None`: not reported,
    /// whatever the layer's threshold).
    #[must_use]
    pub fn with_slow_statement_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.slow_statement = Some(threshold.into());
        self
    }
}

/// Gives each request a query ledger and reports on it; see the [crate documentation](crate).
///
/// Put it innermost (closest to the handler), so the ledger covers exactly the handler's work.
/// Clones share one configuration.
#[derive(Clone, Debug, Default)]
pub struct QueryTrackingLayer {
    config: Arc<Config>,
}

impl QueryTrackingLayer {
    /// Defaults: N+1 at 5 repeats of one statement, logged; `db` in `Server-Timing`.
    pub fn new() -> Self {
        Self::default()
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Repeats of one statement shape within a request that make an N+1 finding (default 5;
    /// at least 2).
    #[must_use]
    pub fn with_n_plus_one_threshold(mut self, repeats: u64) -> Self {
        self.config().rule.threshold = repeats.max(2);
        self
    }

    /// The repeated statements' total time must also reach this (default zero).
    #[must_use]
    pub fn with_n_plus_one_min_total(mut self, min_total: Duration) -> Self {
        self.config().rule.min_total = min_total;
        self
    }

    /// What to do with findings (default [`NPlusOneAction::Log`]).
    #[must_use]
    pub fn with_n_plus_one_action(mut self, action: NPlusOneAction) -> Self {
        self.config().action = action;
        self
    }

    /// A request that makes more than `max_queries` statements is reported: one WARN event
    /// (route, count, budget, trace id) and, with `metrics`, the `vitals.queries.over_budget`
    /// counter. Off by default. It reports, never fails a request; in tests, the `testing`
    /// feature's assertions fail the test instead.
    #[must_use]
    pub fn with_query_budget(mut self, max_queries: impl Into<Option<u64>>) -> Self {
        self.config().budget = max_queries.into();
        self
    }

    /// Requests for the route template `route` (`"/search"`) follow what `settings` sets
    /// instead of the layer's budget and N+1 action (found through the route label, axum's
    /// `MatchedPath`). A route given twice keeps what the later settings set, and the rest of
    /// the earlier ones.
    ///
    /// ```
    /// use vitals_queries::{NPlusOneAction, QueryTrackingLayer, RouteQueries};
    ///
    /// let queries = QueryTrackingLayer::new()
    ///     .with_query_budget(10)
    ///     .with_route("/search", RouteQueries::new().with_query_budget(40))
    ///     .with_route("/admin/report", RouteQueries::new().with_query_budget(None))
    ///     .with_route("/orders", RouteQueries::new().with_n_plus_one_action(NPlusOneAction::Header));
    /// ```
    #[must_use]
    pub fn with_route(mut self, route: &str, settings: RouteQueries) -> Self {
        let routes = &mut self.config().routes;
        let merged = match routes.get_str(route) {
            Some(earlier) => RouteQueries {
                budget: settings.budget.or(earlier.budget),
                action: settings.action.or(earlier.action),
                slow_statement: settings.slow_statement.or(earlier.slow_statement),
            },
            None => settings,
        };
        routes.insert(route, merged);
        self
    }

    /// A statement that runs at least `threshold` is reported: a WARN event (route,
    /// fingerprint, duration, trace id) and, with [`with_findings`](Self::with_findings), a
    /// slow-statement finding — at most once a minute per statement shape. Default 100 ms
    /// ([`DEFAULT_SLOW_STATEMENT`]); `None` turns it off. Routes set their own with
    /// [`RouteQueries::with_slow_statement_threshold`]. A statement the database cut at its
    /// statement timeout is reported whatever its duration.
    #[must_use]
    pub fn with_slow_statement_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.config().slow_statement = threshold.into();
        self
    }

    /// Hands statement shapes to `detector`, which explains them on a connection of its own
    /// and reports full scans of large tables as missing-index findings (see
    /// [`IndexDetector`]).
    #[must_use]
    pub fn with_index_detector(mut self, detector: IndexDetector) -> Self {
        self.config().detector = Some(detector);
        self
    }

    /// Pushes N+1 findings to `findings` and counts each route's requests and statements
    /// there (queries per request), for a live view such as the dashboard.
    #[must_use]
    pub fn with_findings(mut self, findings: vitals_core::findings::Findings) -> Self {
        self.config().findings = Some(findings);
        self
    }

    /// Which requests may see a `Server-Timing` header, and with it the
    /// `db;dur=<ms>;desc="<n> queries"` entry (default: all). `true` and `false` mean
    /// [`Always`](ServerTimingMode::Always) and [`Off`](ServerTimingMode::Off). A request this
    /// mode denies gets no `Server-Timing` from any Vitals layer: the most restrictive layer
    /// wins.
    #[must_use]
    pub fn with_server_timing(mut self, mode: impl Into<ServerTimingMode>) -> Self {
        self.config().server_timing = mode.into();
        self
    }

    /// No `Server-Timing` header on any response, from any Vitals layer
    /// (`with_server_timing(ServerTimingMode::Off)`).
    #[must_use]
    pub fn without_server_timing(self) -> Self {
        self.with_server_timing(ServerTimingMode::Off)
    }

    /// How requests get their route label (default: axum's `MatchedPath`, else `unmatched`).
    #[must_use]
    pub fn with_route_labeler(mut self, labeler: RouteLabeler) -> Self {
        self.config().labeler = labeler;
        self
    }
}

impl QueryTrackingLayer {
    /// This layer's behaviour as a part, for a driver that runs several parts in one pass
    /// (the `vitals` stack).
    pub fn part(&self) -> QueriesPart {
        QueriesPart {
            config: Arc::clone(&self.config),
        }
    }
}

impl<S> Layer<S> for QueryTrackingLayer {
    type Service = QueryTracking<S>;

    fn layer(&self, inner: S) -> Self::Service {
        QueryTracking::new(inner, self.part())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_given_twice_keeps_what_each_set() {
        let layer = QueryTrackingLayer::new()
            .with_query_budget(10)
            .with_route("/a", RouteQueries::new().with_query_budget(3))
            .with_route(
                "/a",
                RouteQueries::new().with_n_plus_one_action(NPlusOneAction::Fail),
            )
            .with_route("/b", RouteQueries::new().with_query_budget(None));
        let a = RouteLabel::from_static("/a");
        assert_eq!(layer.config.budget_for(&a), Some(3));
        assert_eq!(layer.config.action_for(&a), NPlusOneAction::Fail);
        let b = RouteLabel::from_static("/b");
        assert_eq!(layer.config.budget_for(&b), None);
        assert_eq!(layer.config.action_for(&b), NPlusOneAction::Log);
        let other = RouteLabel::from_static("/other");
        assert_eq!(layer.config.budget_for(&other), Some(10));
    }
}
