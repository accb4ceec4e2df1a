//! Queries per request and N+1 findings through the `metrics` facade (feature `metrics`).
//!
//! - `vitals.queries.per_request` — histogram of statements per request, by `http.route`;
//! - `vitals.queries.n_plus_one` — counter of N+1 findings, by `http.route`;
//! - `vitals.queries.over_budget` — counter of requests over their query budget, by `http.route`;
//! - `vitals.queries.statement.duration` — histogram of statement time in seconds, by
//!   `db.query.text` (the fingerprint), bounded: the statement shapes with the most total time
//!   get a series each (50 by default, [`MAX_STATEMENT_SERIES`]), the rest share
//!   `db.query.text="other"`;
//! - `vitals.queries.statement_timeouts` — counter of statements the database cut at its
//!   statement timeout, by `http.route`.
//!
//! Whatever recorder the application installed receives them (metrics-exporter-prometheus
//! renders `vitals_queries_per_request` and `vitals_queries_n_plus_one_total`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use vitals_core::per_route::PerRoute;
use vitals_core::route::RouteLabel;
use vitals_core::semconv::HTTP_ROUTE;

/// The histogram of statements per request.
pub const QUERIES_PER_REQUEST: &str = "vitals.queries.per_request";
/// The counter of N+1 findings.
pub const N_PLUS_ONE_FINDINGS: &str = "vitals.queries.n_plus_one";
/// The counter of requests over their query budget.
pub const OVER_BUDGET: &str = "vitals.queries.over_budget";
/// The histogram of statement time per statement shape, in seconds.
pub const STATEMENT_DURATION: &str = "vitals.queries.statement.duration";
/// The counter of statements cut by the database's statement timeout.
pub const STATEMENT_TIMEOUTS: &str = "vitals.queries.statement_timeouts";
/// The label that names a statement shape: OpenTelemetry's `db.query.text`, holding the
/// fingerprint (literals already replaced by `?`).
pub const DB_QUERY_TEXT: &str = "db.query.text";
/// The `db.query.text` of the shapes without a series of their own.
pub const OTHER_STATEMENTS: &str = "other";
/// Connections by state. OpenTelemetry's semantic conventions v1.36.0 name it
/// `db.client.connection.count`, which Prometheus renders `db_client_connection_count` — a name
/// promtool rejects for a gauge (`_count` is the suffix of a histogram's count series, and
/// queries that match it would mix the two). So Vitals exports it under the name the same
/// conventions gave it up to v1.25, `db.client.connections.usage`, with the current
/// attributes.
pub const CONNECTION_COUNT: &str = "db.client.connections.usage";
/// OpenTelemetry's pool size limit.
pub const CONNECTION_MAX: &str = "db.client.connection.max";
/// OpenTelemetry's count of requests waiting for a connection.
pub const CONNECTION_PENDING: &str = "db.client.connection.pending_requests";
/// OpenTelemetry's histogram of the time to obtain a connection, in seconds.
pub const CONNECTION_WAIT_TIME: &str = "db.client.connection.wait_time";
/// OpenTelemetry's counter of acquires that timed out.
pub const CONNECTION_TIMEOUTS: &str = "db.client.connection.timeouts";
/// The attribute naming the pool.
pub const POOL_NAME: &str = "db.client.connection.pool.name";
/// The attribute naming a connection's state (`idle`, `used`).
pub const CONNECTION_STATE: &str = "db.client.connection.state";
/// Histogram buckets for connection waits, in seconds: 100 µs to 10 s.
pub const WAIT_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];
/// Statement shapes with a series of their own, at most.
pub const MAX_STATEMENT_SERIES: usize = 50;
/// Histogram buckets for statement time, in seconds: 100 µs to 10 s.
pub const STATEMENT_BUCKETS: [f64; 14] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// HELP text for this crate's families (call once, after installing the recorder).
pub fn describe() {
    metrics::describe_histogram!(QUERIES_PER_REQUEST, "Database statements per request.");
    metrics::describe_counter!(N_PLUS_ONE_FINDINGS, "N+1 query findings.");
    metrics::describe_counter!(OVER_BUDGET, "Requests over their query budget.");
    metrics::describe_histogram!(
        STATEMENT_DURATION,
        metrics::Unit::Seconds,
        "Database statement time by statement shape (the top shapes by total time; the rest as other)."
    );
    metrics::describe_counter!(
        STATEMENT_TIMEOUTS,
        "Statements cut by the database's statement timeout."
    );
    metrics::describe_gauge!(
        CONNECTION_COUNT,
        "Connections in the state named by db.client.connection.state."
    );
    metrics::describe_gauge!(CONNECTION_MAX, "The most connections the pool opens.");
    metrics::describe_gauge!(
        CONNECTION_PENDING,
        "Requests waiting for a connection from the pool."
    );
    metrics::describe_histogram!(
        CONNECTION_WAIT_TIME,
        metrics::Unit::Seconds,
        "Time to obtain a connection from the pool."
    );
    metrics::describe_counter!(
        CONNECTION_TIMEOUTS,
        "Acquires that timed out waiting for a connection."
    );
}

/// A layer's handles per route, resolved at a route's first use (install the recorder before
/// the first request): a request then records without building label strings or looking keys
/// up in the recorder.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    routes: PerRoute<RouteHandles>,
}

#[derive(Debug)]
struct RouteHandles {
    per_request: Histogram,
    n_plus_one: Counter,
    over_budget: Counter,
    timeouts: Counter,
}

impl Handles {
    fn with(&self, route: &RouteLabel, record: impl FnOnce(&RouteHandles)) {
        let route = route.as_str();
        self.routes.with(
            route,
            || RouteHandles {
                per_request: metrics::histogram!(QUERIES_PER_REQUEST, HTTP_ROUTE => route.to_owned()),
                n_plus_one: metrics::counter!(N_PLUS_ONE_FINDINGS, HTTP_ROUTE => route.to_owned()),
                over_budget: metrics::counter!(OVER_BUDGET, HTTP_ROUTE => route.to_owned()),
                timeouts: metrics::counter!(STATEMENT_TIMEOUTS, HTTP_ROUTE => route.to_owned()),
            },
            record,
        );
    }

    pub(crate) fn record(&self, route: &RouteLabel, queries: u64, findings: usize) {
        self.with(route, |handles| {
            #[allow(clippy::cast_precision_loss)]
            handles.per_request.record(queries as f64);
            if findings > 0 {
                handles
                    .n_plus_one
                    .increment(u64::try_from(findings).unwrap_or(u64::MAX));
            }
        });
    }

    pub(crate) fn over_budget(&self, route: &RouteLabel) {
        self.with(route, |handles| handles.over_budget.increment(1));
    }

    pub(crate) fn timeouts(&self, route: &RouteLabel, timeouts: u64) {
        self.with(route, |handles| handles.timeouts.increment(timeouts));
    }
}

/// The statement-time histogram's series, bounded.
///
/// A shape with a series records there (a read lock and a lookup). A shape without one adds
/// its time to a bounded table and records under `other`; when its total passes the smallest
/// total among the shapes with a series, it takes that one's place (the one it displaces stops
/// growing; its series stays in the output, as Prometheus exporters keep series). At most
/// twice the limit of series are ever created, so the output stays bounded even when the top
/// shapes keep changing.
#[derive(Debug)]
pub(crate) struct StatementSeries {
    limit: usize,
    own: RwLock<HashMap<u64, Series>>,
    /// With every series taken, the smallest total among them when last looked at (they only
    /// grow): a shape whose total is not above it is not worth the write lock.
    floor: AtomicU64,
    candidates: Mutex<Candidates>,
    other: std::sync::OnceLock<Histogram>,
}

#[derive(Debug)]
struct Series {
    histogram: Histogram,
    total_nanos: AtomicU64,
}

#[derive(Debug, Default)]
struct Candidates {
    totals: HashMap<u64, u64>,
    created: usize,
}

/// Shapes without a series whose totals are kept, at most.
const MAX_CANDIDATES: usize = 1_000;

impl Default for StatementSeries {
    fn default() -> Self {
        Self::new(MAX_STATEMENT_SERIES)
    }
}

impl StatementSeries {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            own: RwLock::default(),
            floor: AtomicU64::new(0),
            candidates: Mutex::default(),
            other: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn record(&self, key: u64, fingerprint: &Arc<str>, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        {
            let own = self.own.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = own.get(&key) {
                series.histogram.record(duration.as_secs_f64());
                series.total_nanos.fetch_add(nanos, Ordering::Relaxed);
                return;
            }
        }
        self.candidate(key, fingerprint, duration, nanos);
    }

    #[cold]
    fn candidate(&self, key: u64, fingerprint: &Arc<str>, duration: Duration, nanos: u64) {
        let total = {
            let mut candidates = self
                .candidates
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if candidates.totals.len() >= MAX_CANDIDATES && !candidates.totals.contains_key(&key) {
                // Ever-new shapes (literals inlined): start counting afresh.
                candidates.totals.clear();
            }
            if candidates.created >= self.limit * 2 {
                None
            } else {
                let total = candidates.totals.entry(key).or_default();
                *total = total.saturating_add(nanos);
                Some(*total)
            }
        };
        if let Some(total) = total
            && total > self.floor.load(Ordering::Relaxed)
            && self.promote(key, fingerprint, total)
        {
            let own = self.own.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = own.get(&key) {
                series.histogram.record(duration.as_secs_f64());
                return;
            }
        }
        self.other
            .get_or_init(
                || metrics::histogram!(STATEMENT_DURATION, DB_QUERY_TEXT => OTHER_STATEMENTS),
            )
            .record(duration.as_secs_f64());
    }

    /// Gives `key` a series if there is room, or if its total passes the smallest one's.
    fn promote(&self, key: u64, fingerprint: &Arc<str>, total: u64) -> bool {
        let mut own = self.own.write().unwrap_or_else(PoisonError::into_inner);
        if own.contains_key(&key) {
            return true;
        }
        if own.len() >= self.limit {
            let smallest = own
                .iter()
                .map(|(key, series)| (*key, series.total_nanos.load(Ordering::Relaxed)))
                .min_by_key(|(_, total)| *total);
            match smallest {
                Some((displaced, smallest)) if smallest < total => {
                    own.remove(&displaced);
                }
                _ => {
                    let smallest = smallest.map_or(0, |(_, smallest)| smallest);
                    self.floor.store(smallest, Ordering::Relaxed);
                    return false;
                }
            }
        }
        let mut candidates = self
            .candidates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        candidates.totals.remove(&key);
        candidates.created += 1;
        own.insert(
            key,
            Series {
                histogram: metrics::histogram!(STATEMENT_DURATION, DB_QUERY_TEXT => fingerprint.to_string()),
                total_nanos: AtomicU64::new(total),
            },
        );
        if own.len() >= self.limit {
            let floor = own
                .values()
                .map(|series| series.total_nanos.load(Ordering::Relaxed))
                .min()
                .unwrap_or(0);
            self.floor.store(floor, Ordering::Relaxed);
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn with_series(&self) -> Vec<u64> {
        let mut keys: Vec<u64> = self
            .own
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heaviest_shapes_get_series_and_the_count_stays_bounded() {
        let series = StatementSeries::new(2);
        let print: Arc<str> = Arc::from("SELECT ?");
        let ms = Duration::from_millis;
        series.record(1, &print, ms(1));
        series.record(2, &print, ms(2));
        assert_eq!(series.with_series(), [1, 2], "room for both");
        series.record(3, &print, ms(1));
        assert_eq!(
            series.with_series(),
            [1, 2],
            "3's total (1 ms) passes nobody's"
        );
        series.record(3, &print, ms(5));
        assert_eq!(series.with_series(), [2, 3], "3 (6 ms) displaced 1 (1 ms)");
        for key in 10..100 {
            series.record(key, &print, Duration::from_secs(key));
        }
        let created = series.candidates.lock().unwrap().created;
        assert!(created <= 4, "at most twice the limit of series: {created}");
        assert_eq!(series.with_series().len(), 2);
    }
}
