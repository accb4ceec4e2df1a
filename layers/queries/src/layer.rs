//! `QueryTrackingLayer`: configuration and the layer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use vitals_core::route::{RouteLabel, RouteLabeler};
use vitals_core::server_timing::ServerTimingMode;

use crate::n_plus_one::NPlusOneRule;
use crate::part::QueriesPart;
use crate::service::QueryTracking;

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
    pub(crate) route_actions: HashMap<Box<str>, NPlusOneAction>,
    pub(crate) server_timing: ServerTimingMode,
    /// Statements a request may make before it is reported (`None`: no budget).
    pub(crate) budget: Option<u64>,
    pub(crate) route_budgets: HashMap<Box<str>, Option<u64>>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Arc<crate::metrics::Handles>,
    pub(crate) findings: Option<vitals_core::findings::Findings>,
}

impl Config {
    pub(crate) fn action_for(&self, route: &RouteLabel) -> NPlusOneAction {
        if self.route_actions.is_empty() {
            return self.action;
        }
        self.route_actions
            .get(route.as_str())
            .copied()
            .unwrap_or(self.action)
    }

    pub(crate) fn budget_for(&self, route: &RouteLabel) -> Option<u64> {
        if self.route_budgets.is_empty() {
            return self.budget;
        }
        self.route_budgets
            .get(route.as_str())
            .copied()
            .unwrap_or(self.budget)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            labeler: RouteLabeler::new(),
            rule: NPlusOneRule::default(),
            action: NPlusOneAction::Log,
            route_actions: HashMap::new(),
            server_timing: ServerTimingMode::Always,
            budget: None,
            route_budgets: HashMap::new(),
            #[cfg(feature = "metrics")]
            metrics: Arc::default(),
            findings: None,
        }
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

    /// What to do with findings on one route template.
    #[must_use]
    pub fn with_route_n_plus_one_action(mut self, route: &str, action: NPlusOneAction) -> Self {
        self.config().route_actions.insert(route.into(), action);
        self
    }

    /// A request that makes more than `max_queries` statements is reported: one WARN event
    /// (route, count, budget, trace id) and, with `metrics`, the `vitals.queries.over_budget`
    /// counter. Off by default. It reports, never fails a request; in tests, the `testing`
    /// feature's assertions fail the test instead.
    #[must_use]
    pub fn with_query_budget(mut self, max_queries: u64) -> Self {
        self.config().budget = Some(max_queries);
        self
    }

    /// The query budget of one route template (`None`: no budget for it).
    #[must_use]
    pub fn with_route_query_budget(
        mut self,
        route: &str,
        max_queries: impl Into<Option<u64>>,
    ) -> Self {
        self.config()
            .route_budgets
            .insert(route.into(), max_queries.into());
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
