//! `Findings`: what the layers noticed lately — slow requests, N+1 queries, blocking polls,
//! limiter refusals — kept for a live view (the dashboard) in a bounded ring.
//!
//! Nothing here runs unless a layer is given a `Findings` (`with_findings`): a layer without
//! one does no extra work per request. Pushing takes one short lock (findings are rare: a slow
//! request, an N+1); refusals and query counts, which may come at every request, are atomic
//! counters per route instead.
//!
//! ```
//! use vitals_core::findings::{Finding, Findings};
//!
//! let findings = Findings::new(100);
//! findings.push(Finding::Blocking {
//!     route: "/report".into(),
//!     longest_poll_ms: 120.0,
//!     on_cpu_ms: Some(118.5),
//!     blocked_ms: Some(1.5),
//!     cpu_wait_ms: Some(0.0),
//!     trace_id: None,
//! });
//! assert_eq!(findings.recent().len(), 1);
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::per_route::PerRoute;

/// The ring's size when none is given.
pub const DEFAULT_CAPACITY: usize = 500;

/// One thing worth a look.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Finding {
    /// A request that took longer than its slow threshold.
    Slow {
        /// Route template.
        route: String,
        /// Response status, if there was a response.
        status: Option<u16>,
        /// To the last byte of the body.
        total_ms: f64,
        /// The request's `Server-Timing` line (`db;dur=…, total;dur=…`), when it had one.
        server_timing: Option<String>,
        /// The trace id, when the trace-context layer ran.
        trace_id: Option<String>,
    },
    /// The same statement shape repeated within one request.
    NPlusOne {
        /// Route template.
        route: String,
        /// The statement's fingerprint.
        fingerprint: String,
        /// How many times it ran.
        count: u64,
        /// Their total time.
        total_ms: f64,
        /// The trace id, when the trace-context layer ran.
        trace_id: Option<String>,
    },
    /// A single poll of a handler that held the executor past the blocking threshold.
    Blocking {
        /// Route template.
        route: String,
        /// The longest time one poll held its thread: on a CPU or blocked, not waiting for a
        /// CPU.
        longest_poll_ms: f64,
        /// Of that poll: time on a CPU, when the kernel's per-thread counters were read.
        on_cpu_ms: Option<f64>,
        /// Of that poll: time blocked in the kernel (sleep, blocking I/O, a sync lock).
        blocked_ms: Option<f64>,
        /// Of that poll: time waiting runnable for a CPU (not counted as holding it).
        cpu_wait_ms: Option<f64>,
        /// The trace id, when the trace-context layer ran.
        trace_id: Option<String>,
    },
    /// The runtime's threads waited for a CPU: the host or the container's CPU quota is
    /// saturated. Reported at most once a minute for the process, not per request.
    Starvation {
        /// How long the runtime's threads waited runnable for a CPU over the interval.
        cpu_wait_ms: f64,
        /// The interval, in seconds.
        over_s: f64,
        /// The route of the request whose preempted poll noticed it.
        route: String,
        /// That request's trace id, when the trace-context layer ran.
        trace_id: Option<String>,
    },
    /// Something happened to the calls to a downstream service: its circuit breaker opened or
    /// closed, the retry budget ran out, calls ran out of time (`vitals-client`).
    Downstream {
        /// The downstream's name (the breaker's, or the host called).
        downstream: String,
        /// `breaker_opened`, `breaker_closed`, `retry_budget_exhausted` or
        /// `deadline_exceeded`.
        event: &'static str,
        /// What happened, in a sentence.
        detail: String,
    },
    /// A client went over a rate-limit quota (`vitals-rate-limit`): reported at most every
    /// ten seconds per client, with the refusals since.
    RateLimited {
        /// Route template.
        route: String,
        /// The quota that refused.
        quota: String,
        /// The client's key: a hash of it (`#` and 16 hex digits) unless the limit shows keys.
        key: String,
        /// Requests of this client refused since the last report.
        refused: u64,
        /// The trace id of the refused request, when the trace-context layer ran before.
        trace_id: Option<String>,
    },
    /// One database statement ran longer than its route's slow-statement threshold
    /// (`vitals-queries`): reported at most once a minute per statement shape.
    SlowStatement {
        /// Route template of the request that ran it.
        route: String,
        /// The statement's fingerprint (literals and placeholders as `?`).
        fingerprint: String,
        /// How long it ran.
        duration_ms: f64,
        /// The threshold it passed.
        threshold_ms: f64,
        /// Whether the database cut it at its statement timeout.
        timed_out: bool,
        /// The trace id, when the trace-context layer ran.
        trace_id: Option<String>,
    },
    /// A connection pool had requests waiting for a connection for longer than its exhaustion
    /// threshold (`vitals-queries`): reported once per episode.
    PoolExhausted {
        /// The pool's name.
        pool: String,
        /// Requests waiting for a connection when it was reported.
        waiting: u64,
        /// The pool's maximum size.
        max: u64,
        /// How long the oldest waiter had waited.
        longest_wait_ms: f64,
        /// The routes holding connections longest at that moment, each once with its longest
        /// hold (longest first, at most five).
        holders: Vec<(String, f64)>,
    },
    /// The database's own plan for a statement scans a large table in full: an index is
    /// likely missing (`vitals-queries`' missing-index detector). Reported once per statement
    /// shape and table.
    MissingIndex {
        /// Route template of the request that ran it.
        route: String,
        /// The table scanned in full.
        table: String,
        /// The columns the statement filters that table by (where the plan or the statement
        /// names them).
        columns: Vec<String>,
        /// The table's size in rows (the database's estimate).
        rows: u64,
        /// The statement's fingerprint.
        fingerprint: String,
        /// The plan line that shows the scan (`SCAN customers`, `Seq Scan on customers`).
        plan: String,
    },
}

impl Finding {
    /// `"slow"`, `"n_plus_one"`, `"blocking"`, `"starvation"`, `"downstream"`,
    /// `"rate_limited"`, `"slow_statement"`, `"pool_exhausted"` or `"missing_index"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Slow { .. } => "slow",
            Self::NPlusOne { .. } => "n_plus_one",
            Self::Blocking { .. } => "blocking",
            Self::Starvation { .. } => "starvation",
            Self::Downstream { .. } => "downstream",
            Self::RateLimited { .. } => "rate_limited",
            Self::SlowStatement { .. } => "slow_statement",
            Self::PoolExhausted { .. } => "pool_exhausted",
            Self::MissingIndex { .. } => "missing_index",
        }
    }

    /// The route template it was found on; for a downstream finding, the downstream's name;
    /// for a pool's exhaustion, the pool's name.
    pub fn route(&self) -> &str {
        match self {
            Self::Slow { route, .. }
            | Self::NPlusOne { route, .. }
            | Self::Blocking { route, .. }
            | Self::Starvation { route, .. }
            | Self::RateLimited { route, .. }
            | Self::SlowStatement { route, .. }
            | Self::MissingIndex { route, .. } => route,
            Self::Downstream { downstream, .. } => downstream,
            Self::PoolExhausted { pool, .. } => pool,
        }
    }
}

/// A finding and when it was pushed.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The finding.
    pub finding: Finding,
}

/// Per-route counters the layers keep when given a `Findings`.
#[derive(Debug, Default)]
struct RouteCounters {
    /// Requests the queries layer finished.
    requests: AtomicU64,
    /// Statements those requests made.
    queries: AtomicU64,
    /// Requests a limiter refused.
    rejected: AtomicU64,
}

/// Per-route totals, see [`Findings::route_totals`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTotals {
    /// Route template.
    pub route: String,
    /// Requests the queries layer finished on it.
    pub requests: u64,
    /// Statements those requests made.
    pub queries: u64,
    /// Requests a limiter refused on it.
    pub rejected: u64,
}

struct Inner {
    ring: Mutex<VecDeque<Recorded>>,
    capacity: usize,
    pushed: AtomicU64,
    routes: PerRoute<RouteCounters>,
}

/// The recent-findings sink; cheap to clone (clones share it). See the [module
/// documentation](self).
#[derive(Clone)]
pub struct Findings {
    inner: Arc<Inner>,
}

/// Slots allocated up front; a larger ring grows as findings arrive.
const PREALLOCATED: usize = 64;

impl Findings {
    /// The largest ring [`new`](Self::new) keeps: a live view needs the latest few hundred
    /// findings, and a ring of millions would hold hundreds of megabytes.
    pub const MAX_CAPACITY: usize = 100_000;

    /// Keeps the latest `capacity` findings, older ones dropped. The capacity saturates to
    /// 1..=[`MAX_CAPACITY`](Self::MAX_CAPACITY); the ring's memory grows with the findings
    /// actually kept, not with the capacity asked for.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, Self::MAX_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                ring: Mutex::new(VecDeque::with_capacity(capacity.min(PREALLOCATED))),
                capacity,
                pushed: AtomicU64::new(0),
                routes: PerRoute::new(),
            }),
        }
    }

    /// Records `finding`, dropping the oldest when the ring is full.
    pub fn push(&self, finding: Finding) {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut ring = self
            .inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if ring.len() == self.inner.capacity {
            ring.pop_front();
        }
        ring.push_back(Recorded {
            at_unix_ms,
            finding,
        });
        self.inner.pushed.fetch_add(1, Ordering::Relaxed);
    }

    /// The findings kept, newest first.
    pub fn recent(&self) -> Vec<Recorded> {
        let ring = self
            .inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ring.iter().rev().cloned().collect()
    }

    /// Findings pushed since the start, dropped ones included.
    pub fn pushed(&self) -> u64 {
        self.inner.pushed.load(Ordering::Relaxed)
    }

    /// The ring's size.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// One request on `route` finished with `queries` statements (the queries layer).
    pub fn count_queries(&self, route: &str, queries: u64) {
        self.inner
            .routes
            .with(route, RouteCounters::default, |counters| {
                counters.requests.fetch_add(1, Ordering::Relaxed);
                counters.queries.fetch_add(queries, Ordering::Relaxed);
            });
    }

    /// A limiter refused one request on `route`.
    pub fn count_rejection(&self, route: &str) {
        self.inner
            .routes
            .with(route, RouteCounters::default, |counters| {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
            });
    }

    /// The per-route counters since the start, sorted by route.
    pub fn route_totals(&self) -> Vec<RouteTotals> {
        let mut totals = Vec::new();
        self.inner.routes.for_each(|route, counters| {
            totals.push(RouteTotals {
                route: route.to_owned(),
                requests: counters.requests.load(Ordering::Relaxed),
                queries: counters.queries.load(Ordering::Relaxed),
                rejected: counters.rejected.load(Ordering::Relaxed),
            });
        });
        totals.sort_by(|a, b| a.route.cmp(&b.route));
        totals
    }
}

impl Default for Findings {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Findings")
            .field("capacity", &self.inner.capacity)
            .field("pushed", &self.pushed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_capacity_is_accepted_and_saturates() {
        let huge = Findings::new(usize::MAX);
        assert_eq!(huge.capacity(), Findings::MAX_CAPACITY);
        assert_eq!(Findings::new(0).capacity(), 1);
        assert_eq!(Findings::new(10).capacity(), 10);
    }

    fn blocking(n: u64) -> Finding {
        Finding::Blocking {
            route: format!("/r{n}"),
            #[allow(clippy::cast_precision_loss)]
            longest_poll_ms: n as f64,
            on_cpu_ms: None,
            blocked_ms: None,
            cpu_wait_ms: None,
            trace_id: None,
        }
    }

    #[test]
    fn keeps_the_newest_and_drops_the_oldest() {
        let findings = Findings::new(3);
        for n in 0..5 {
            findings.push(blocking(n));
        }
        let recent = findings.recent();
        let routes: Vec<&str> = recent.iter().map(|r| r.finding.route()).collect();
        assert_eq!(routes, ["/r4", "/r3", "/r2"], "newest first, two dropped");
        assert_eq!(findings.pushed(), 5);
        assert!(recent[0].at_unix_ms > 1_600_000_000_000);
    }

    #[test]
    fn concurrent_pushes_lose_nothing_until_full() {
        let findings = Findings::new(8 * 500);
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let findings = findings.clone();
                scope.spawn(move || {
                    for n in 0..500 {
                        findings.push(blocking(thread * 1_000 + n));
                        findings.count_rejection("/slow");
                        findings.count_queries("/orders", 2);
                    }
                });
            }
        });
        assert_eq!(
            findings.recent().len(),
            4_000,
            "nothing lost below capacity"
        );
        assert_eq!(findings.pushed(), 4_000);
        let totals = findings.route_totals();
        assert_eq!(
            totals,
            [
                RouteTotals {
                    route: "/orders".into(),
                    requests: 4_000,
                    queries: 8_000,
                    rejected: 0
                },
                RouteTotals {
                    route: "/slow".into(),
                    requests: 0,
                    queries: 0,
                    rejected: 4_000
                },
            ]
        );
    }
}
