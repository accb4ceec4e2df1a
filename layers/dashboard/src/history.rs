//! The history sampler: every few seconds, one sample per route (requests/s, error rate,
//! p50/p95/p99, queries per request, refusals) and the limiter's state, kept for a while.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vitals_latency::Window;

use crate::Sources;

/// Routes kept per sample, the busiest first: bounds memory whatever the series cap.
pub const MAX_ROUTES_PER_SAMPLE: usize = 200;

/// One route in one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSample {
    /// Route template.
    pub route: String,
    /// Finished requests per second since the previous sample.
    pub requests_per_s: f64,
    /// Share of those answered with a 5xx status (refusals and timeouts included).
    pub error_rate: f64,
    /// Quantiles over the last minute (`None` with no request in it).
    pub p50_ms: Option<f64>,
    /// 95th percentile over the last minute.
    pub p95_ms: Option<f64>,
    /// 99th percentile over the last minute.
    pub p99_ms: Option<f64>,
    /// Statements per request since the previous sample (`None` without requests or without
    /// the queries layer reporting to the findings).
    pub queries_per_request: Option<f64>,
    /// Requests refused by a limiter per second since the previous sample.
    pub rejected_per_s: f64,
}

/// The global limiter in one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimiterSample {
    /// The limit in force.
    pub limit: usize,
    /// Requests holding a permit.
    pub in_flight: usize,
    /// Requests waiting.
    pub queued: usize,
    /// Refusals per second since the previous sample.
    pub rejected_per_s: f64,
}

/// A connection pool in one sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolHistorySample {
    /// The pool's name.
    pub name: String,
    /// Connections lent out.
    pub used: u64,
    /// Connections open and idle.
    pub idle: u64,
    /// Requests waiting for a connection.
    pub waiting: u64,
}

/// Everything sampled at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The routes, busiest first.
    pub routes: Vec<RouteSample>,
    /// The global limiter, when there is one.
    pub limiter: Option<LimiterSample>,
    /// The connection pools given to the dashboard.
    pub pools: Vec<PoolHistorySample>,
}

/// Counters at the previous sample, to turn totals into rates.
#[derive(Clone, Copy, Default)]
struct Totals {
    finished: u64,
    errors: u64,
    requests: u64,
    queries: u64,
    rejected: u64,
}

/// The samples kept, oldest first.
pub(crate) struct History {
    samples: VecDeque<Sample>,
    capacity: usize,
    previous: HashMap<String, Totals>,
    previous_limiter_rejected: Option<u64>,
    previous_at: Instant,
}

impl History {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            samples: VecDeque::with_capacity(capacity.min(4_096)),
            capacity: capacity.max(1),
            previous: HashMap::new(),
            previous_limiter_rejected: None,
            previous_at: Instant::now(),
        }
    }

    /// Takes the counters as they are now as the starting point, without a sample: the first
    /// sample's rates then cover its own interval, not everything since the process started.
    pub(crate) fn baseline(&mut self, sources: &Sources) {
        self.previous = totals(sources);
        self.previous_limiter_rejected = sources.limiter.as_ref().map(|l| l.snapshot().rejected);
        self.previous_at = Instant::now();
    }

    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples.iter().cloned().collect()
    }

    /// Takes one sample of `sources` now.
    pub(crate) fn sample(&mut self, sources: &Sources) {
        // Rates over the monotonic clock: a wall-clock step cannot distort them.
        let elapsed = self.previous_at.elapsed().as_secs_f64();
        self.previous_at = Instant::now();
        let now = SystemTime::now();

        let totals = totals(sources);
        let quantiles = quantiles(sources);

        let rate = |delta: u64| {
            #[allow(clippy::cast_precision_loss)]
            if elapsed > 0.0 {
                delta as f64 / elapsed
            } else {
                0.0
            }
        };
        let mut routes: Vec<RouteSample> = totals
            .iter()
            .map(|(route, now)| {
                let before = self.previous.get(route).copied().unwrap_or_default();
                let finished = now.finished.saturating_sub(before.finished);
                let errors = now.errors.saturating_sub(before.errors);
                let requests = now.requests.saturating_sub(before.requests);
                let queries = now.queries.saturating_sub(before.queries);
                let (p50_ms, p95_ms, p99_ms) = quantiles.get(route).copied().unwrap_or_default();
                #[allow(clippy::cast_precision_loss)]
                RouteSample {
                    route: route.clone(),
                    requests_per_s: rate(finished),
                    error_rate: if finished > 0 {
                        errors as f64 / finished as f64
                    } else {
                        0.0
                    },
                    p50_ms,
                    p95_ms,
                    p99_ms,
                    queries_per_request: (requests > 0).then(|| queries as f64 / requests as f64),
                    rejected_per_s: rate(now.rejected.saturating_sub(before.rejected)),
                }
            })
            .collect();
        routes.sort_by(|a, b| {
            b.requests_per_s
                .total_cmp(&a.requests_per_s)
                .then_with(|| a.route.cmp(&b.route))
        });
        routes.truncate(MAX_ROUTES_PER_SAMPLE);

        let limiter = sources.limiter.as_ref().map(|limit| {
            let snapshot = limit.snapshot();
            let before = self
                .previous_limiter_rejected
                .replace(snapshot.rejected)
                .unwrap_or(snapshot.rejected);
            LimiterSample {
                limit: snapshot.limit,
                in_flight: snapshot.in_flight,
                queued: snapshot.queued,
                rejected_per_s: rate(snapshot.rejected.saturating_sub(before)),
            }
        });
        self.previous = totals;
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            at_unix_ms: now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            routes,
            limiter,
            pools: sources
                .pools
                .iter()
                .map(|pool| {
                    let snapshot = pool.snapshot();
                    PoolHistorySample {
                        name: snapshot.name,
                        used: snapshot.sample.used,
                        idle: snapshot.sample.idle,
                        waiting: snapshot.pending,
                    }
                })
                .collect(),
        });
    }
}

/// p50, p95 and p99 in milliseconds.
type Quantiles = (Option<f64>, Option<f64>, Option<f64>);

/// Each route's counters now: finished and failed requests from the latency registry; requests,
/// statements and refusals from the findings.
fn totals(sources: &Sources) -> HashMap<String, Totals> {
    let mut totals: HashMap<String, Totals> = HashMap::new();
    if let Some(latency) = &sources.latency {
        for series in latency.cumulative() {
            let entry = totals.entry(series.route).or_default();
            entry.finished += series.count;
            if series.status >= 500 {
                entry.errors += series.count;
            }
        }
    }
    if let Some(findings) = &sources.findings {
        for route in findings.route_totals() {
            let entry = totals.entry(route.route).or_default();
            entry.requests = route.requests;
            entry.queries = route.queries;
            entry.rejected = route.rejected;
        }
    }
    totals
}

/// Each route's quantiles over the last minute.
fn quantiles(sources: &Sources) -> HashMap<String, Quantiles> {
    sources
        .latency
        .as_ref()
        .map(|latency| {
            latency
                .snapshot_by_route_only(Window::OneMinute)
                .series
                .into_iter()
                .map(|s| (s.route, (s.p50_ms, s.p95_ms, s.p99_ms)))
                .collect()
        })
        .unwrap_or_default()
}

/// Samples every `every` while the dashboard lives (the task holds a weak reference).
pub(crate) fn spawn_sampler(
    history: &Arc<Mutex<History>>,
    sources: Arc<Sources>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let history: Weak<Mutex<History>> = Arc::downgrade(history);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is now: skip it, a sample needs an interval behind it.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(history) = history.upgrade() else {
                return;
            };
            history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sample(&sources);
        }
    })
}
