//! The JSON behind the page: `/api/summary`, `/api/history`, `/api/findings`.

use serde::Serialize;
use serde_json::{Map, Value, json};
use vitals_core::findings::{Finding, Recorded};
use vitals_latency::Window;

use crate::Sources;
use crate::history::Sample;

/// Milliseconds since the Unix epoch, now.
fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One route's row in the summary.
#[derive(Serialize)]
struct RouteRow<'a> {
    route: &'a str,
    requests: u64,
    requests_per_s: f64,
    error_rate: f64,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    queries_per_request: Option<f64>,
    rejected: u64,
}

#[derive(Serialize)]
struct Summary<'a> {
    generated_at_unix_ms: u64,
    window: &'static str,
    routes: Vec<RouteRow<'a>>,
    limiter: Option<Value>,
    /// The circuit breakers given to the dashboard.
    downstream: Vec<Value>,
    /// The rate limit's routes, the ones refusing most first.
    rate_limits: Vec<Value>,
    /// The connection pools given to the dashboard.
    databases: Vec<Value>,
    /// The response caches' routes, with their hit ratios.
    #[cfg(feature = "response-cache")]
    caches: Vec<Value>,
    /// The job queue as last read: jobs by kind and state, the latest dead-lettered.
    #[cfg(feature = "jobs")]
    jobs: Option<vitals_jobs::JobsSnapshot>,
}

/// Every route over the last minute, with its queries per request and refusals since the
/// start, and the limiter's state now — serialised straight from rows (hundreds of routes are
/// a few hundred microseconds, not the milliseconds a `Value` tree costs).
pub(crate) fn summary(sources: &Sources) -> String {
    let totals: std::collections::HashMap<String, vitals_core::findings::RouteTotals> = sources
        .findings
        .as_ref()
        .map(|f| {
            f.route_totals()
                .into_iter()
                .map(|t| (t.route.clone(), t))
                .collect()
        })
        .unwrap_or_default();
    let snapshot = sources
        .latency
        .as_ref()
        .map(|latency| latency.snapshot_by_route_only(Window::OneMinute));
    let series = snapshot.as_ref().map_or(&[][..], |s| &s.series[..]);
    let mut routes: Vec<RouteRow<'_>> = Vec::with_capacity(series.len() + totals.len());
    let mut seen = std::collections::HashSet::new();
    for one in series {
        let route_totals = totals.get(&one.route);
        seen.insert(one.route.as_str());
        routes.push(RouteRow {
            route: &one.route,
            requests: one.count,
            requests_per_s: one.rate_per_s,
            error_rate: one.error_rate,
            p50_ms: one.p50_ms,
            p95_ms: one.p95_ms,
            p99_ms: one.p99_ms,
            max_ms: one.max_ms,
            queries_per_request: route_totals.and_then(queries_per_request),
            rejected: route_totals.map_or(0, |t| t.rejected),
        });
    }
    // Routes the findings know of that had no request in the window.
    for (route, route_totals) in &totals {
        if !seen.contains(route.as_str()) {
            routes.push(RouteRow {
                route,
                requests: 0,
                requests_per_s: 0.0,
                error_rate: 0.0,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
                max_ms: None,
                queries_per_request: queries_per_request(route_totals),
                rejected: route_totals.rejected,
            });
        }
    }
    let summary = Summary {
        generated_at_unix_ms: now_unix_ms(),
        window: "1m",
        routes,
        limiter: sources.limiter.as_ref().map(limiter),
        downstream: sources
            .breakers
            .iter()
            .map(breaker)
            .chain(
                sources
                    .host_breakers
                    .iter()
                    .flat_map(vitals_client::HostBreakers::all)
                    .map(|handle| breaker(&handle)),
            )
            .collect(),
        rate_limits: sources
            .rate_limit
            .as_ref()
            .map(rate_limits)
            .unwrap_or_default(),
        databases: sources.pools.iter().map(pool).collect(),
        #[cfg(feature = "response-cache")]
        caches: sources.caches.iter().flat_map(caches).collect(),
        #[cfg(feature = "jobs")]
        jobs: sources
            .jobs
            .as_ref()
            .and_then(vitals_jobs::JobsWatch::latest),
    };
    serde_json::to_string(&summary).unwrap_or_else(|_| String::from("{}"))
}

#[allow(clippy::cast_precision_loss)]
fn queries_per_request(totals: &vitals_core::findings::RouteTotals) -> Option<f64> {
    (totals.requests > 0).then(|| totals.queries as f64 / totals.requests as f64)
}

/// Each limited route's counts (the stack-wide limit as `*`), most refusals first.
fn rate_limits(handle: &vitals_rate_limit::RateLimitHandle) -> Vec<Value> {
    let mut rows: Vec<(String, vitals_rate_limit::RateLimitSnapshot)> = handle.route_snapshots();
    if let Some(all) = handle.snapshot() {
        rows.push(("*".to_owned(), all));
    }
    rows.sort_by(|a, b| {
        (b.1.refused + b.1.shadow_refused)
            .cmp(&(a.1.refused + a.1.shadow_refused))
            .then_with(|| a.0.cmp(&b.0))
    });
    rows.into_iter()
        .map(|(route, snapshot)| {
            json!({
                "route": route,
                "allowed": snapshot.allowed,
                "refused": snapshot.refused,
                "shadow_refused": snapshot.shadow_refused,
                "keys": snapshot.keys,
                "evicted_early": snapshot.evicted_early,
            })
        })
        .collect()
}

/// A response cache's routes: what it answered without the handler, and what went to it.
#[cfg(feature = "response-cache")]
fn caches(handle: &vitals_response_cache::ResponseCacheHandle) -> Vec<Value> {
    handle
        .route_snapshots()
        .into_iter()
        .map(|(route, snapshot)| {
            json!({
                "route": route,
                "hit_ratio": snapshot.hit_ratio(),
                "hits": snapshot.hits,
                "stale": snapshot.stale,
                "collapsed": snapshot.collapsed,
                "misses": snapshot.misses,
                "bypassed": snapshot.bypassed,
                "stored": snapshot.stored,
                "wait_refused": snapshot.wait_refused,
            })
        })
        .collect()
}

/// A pool now: connections, waiters, timeouts, the routes holding connections longest.
fn pool(pool: &vitals_queries::pool::PoolVitals) -> Value {
    let snapshot = pool.snapshot();
    let millis = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    // Each route once, longest hold first, with how many connections it holds.
    let mut holders: Vec<(&str, std::time::Duration, u64)> = Vec::new();
    for (route, held) in &snapshot.holders {
        match holders
            .iter_mut()
            .find(|(seen, ..)| *seen == route.as_str())
        {
            Some((_, _, connections)) => *connections += 1,
            None => holders.push((route, *held, 1)),
        }
    }
    let holders: Vec<Value> = holders
        .iter()
        .take(5)
        .map(|(route, held, connections)| {
            json!({ "route": route, "held_ms": millis(*held), "connections": connections })
        })
        .collect();
    json!({
        "name": snapshot.name,
        "used": snapshot.sample.used,
        "idle": snapshot.sample.idle,
        "max": snapshot.sample.max,
        "waiting": snapshot.pending,
        "longest_wait_ms": millis(snapshot.longest_wait),
        "acquires": snapshot.acquires,
        "timeouts": snapshot.timeouts,
        "holders": holders,
    })
}

fn breaker(breaker: &vitals_client::BreakerHandle) -> Value {
    let state = match breaker.state() {
        vitals_client::BreakerState::Closed => "closed",
        vitals_client::BreakerState::Open => "open",
        vitals_client::BreakerState::HalfOpen => "half_open",
    };
    let (calls, failures) = breaker.window();
    json!({
        "name": breaker.name(),
        "state": state,
        "times_opened": breaker.times_opened(),
        "window_calls": calls,
        "window_failures": failures,
    })
}

fn limiter(limit: &vitals_concurrency::LimiterHandle) -> Value {
    let snapshot = limit.snapshot();
    json!({
        "limit": snapshot.limit,
        "in_flight": snapshot.in_flight,
        "queued": snapshot.queued,
        "admitted": snapshot.admitted,
        "rejected": snapshot.rejected,
        "longest_admitted_wait_ms": snapshot.longest_admitted_wait.as_secs_f64() * 1e3,
    })
}

/// The samples, oldest first.
pub(crate) fn history(samples: &[Sample], interval_s: f64) -> Value {
    let samples: Vec<Value> = samples
        .iter()
        .map(|sample| {
            let routes: Vec<Value> = sample
                .routes
                .iter()
                .map(|r| {
                    json!({
                        "route": r.route,
                        "requests_per_s": r.requests_per_s,
                        "error_rate": r.error_rate,
                        "p50_ms": r.p50_ms,
                        "p95_ms": r.p95_ms,
                        "p99_ms": r.p99_ms,
                        "queries_per_request": r.queries_per_request,
                        "rejected_per_s": r.rejected_per_s,
                    })
                })
                .collect();
            json!({
                "at_unix_ms": sample.at_unix_ms,
                "routes": routes,
                "limiter": sample.limiter.map(|l| json!({
                    "limit": l.limit,
                    "in_flight": l.in_flight,
                    "queued": l.queued,
                    "rejected_per_s": l.rejected_per_s,
                })),
                "pools": sample.pools.iter().map(|p| json!({
                    "name": p.name,
                    "used": p.used,
                    "idle": p.idle,
                    "waiting": p.waiting,
                })).collect::<Vec<Value>>(),
            })
        })
        .collect();
    json!({ "interval_s": interval_s, "samples": samples })
}

/// The recent findings, newest first, and refusals per route since the start.
pub(crate) fn findings(sources: &Sources) -> Value {
    let Some(sink) = &sources.findings else {
        return json!({ "pushed": 0, "capacity": 0, "findings": [], "rejections": [] });
    };
    let findings: Vec<Value> = sink.recent().iter().map(finding).collect();
    let rejections: Vec<Value> = sink
        .route_totals()
        .into_iter()
        .filter(|t| t.rejected > 0)
        .map(|t| json!({ "route": t.route, "rejected": t.rejected }))
        .collect();
    json!({
        "pushed": sink.pushed(),
        "capacity": sink.capacity(),
        "findings": findings,
        "rejections": rejections,
    })
}

fn finding(recorded: &Recorded) -> Value {
    let mut object = Map::new();
    object.insert("kind".into(), recorded.finding.kind().into());
    object.insert("at_unix_ms".into(), recorded.at_unix_ms.into());
    object.insert("route".into(), recorded.finding.route().into());
    match &recorded.finding {
        Finding::Slow {
            status,
            total_ms,
            server_timing,
            trace_id,
            ..
        } => {
            object.insert("status".into(), json!(status));
            object.insert("total_ms".into(), json!(total_ms));
            object.insert("server_timing".into(), json!(server_timing));
            object.insert("trace_id".into(), json!(trace_id));
        }
        Finding::NPlusOne {
            fingerprint,
            count,
            total_ms,
            trace_id,
            ..
        } => {
            object.insert("fingerprint".into(), json!(fingerprint));
            object.insert("count".into(), json!(count));
            object.insert("total_ms".into(), json!(total_ms));
            object.insert("trace_id".into(), json!(trace_id));
        }
        Finding::Blocking {
            longest_poll_ms,
            on_cpu_ms,
            blocked_ms,
            cpu_wait_ms,
            trace_id,
            ..
        } => {
            object.insert("longest_poll_ms".into(), json!(longest_poll_ms));
            object.insert("on_cpu_ms".into(), json!(on_cpu_ms));
            object.insert("blocked_ms".into(), json!(blocked_ms));
            object.insert("cpu_wait_ms".into(), json!(cpu_wait_ms));
            object.insert("trace_id".into(), json!(trace_id));
        }
        Finding::Starvation {
            cpu_wait_ms,
            over_s,
            trace_id,
            ..
        } => {
            object.insert("cpu_wait_ms".into(), json!(cpu_wait_ms));
            object.insert("over_s".into(), json!(over_s));
            object.insert("trace_id".into(), json!(trace_id));
        }
        Finding::Downstream {
            downstream,
            event,
            detail,
        } => {
            object.insert("downstream".into(), json!(downstream));
            object.insert("event".into(), json!(event));
            object.insert("detail".into(), json!(detail));
        }
        Finding::RateLimited {
            quota,
            key,
            refused,
            trace_id,
            ..
        } => {
            object.insert("quota".into(), json!(quota));
            object.insert("key".into(), json!(key));
            object.insert("refused".into(), json!(refused));
            object.insert("trace_id".into(), json!(trace_id));
        }
        Finding::SlowStatement { .. }
        | Finding::PoolExhausted { .. }
        | Finding::MissingIndex { .. } => database_fields(&recorded.finding, &mut object),
        _ => {}
    }
    Value::Object(object)
}

/// The fields of the database's findings (`vitals-queries`).
fn database_fields(finding: &Finding, object: &mut Map<String, Value>) {
    match finding {
        Finding::SlowStatement {
            fingerprint,
            duration_ms,
            threshold_ms,
            timed_out,
            trace_id,
            ..
        } => {
            object.insert("fingerprint".into(), json!(fingerprint));
            object.insert("duration_ms".into(), json!(duration_ms));
            object.insert("threshold_ms".into(), json!(threshold_ms));
            object.insert("timed_out".into(), json!(timed_out));
            object.insert("trace_id".into(), json!(trace_id));
        }
        Finding::PoolExhausted {
            pool,
            waiting,
            max,
            longest_wait_ms,
            holders,
        } => {
            object.insert("pool".into(), json!(pool));
            object.insert("waiting".into(), json!(waiting));
            object.insert("max".into(), json!(max));
            object.insert("longest_wait_ms".into(), json!(longest_wait_ms));
            let holders: Vec<Value> = holders
                .iter()
                .map(|(route, held_ms)| json!({ "route": route, "held_ms": held_ms }))
                .collect();
            object.insert("holders".into(), Value::Array(holders));
        }
        Finding::MissingIndex {
            table,
            columns,
            rows,
            fingerprint,
            plan,
            ..
        } => {
            object.insert("table".into(), json!(table));
            object.insert("columns".into(), json!(columns));
            object.insert("rows".into(), json!(rows));
            object.insert("fingerprint".into(), json!(fingerprint));
            object.insert("plan".into(), json!(plan));
        }
        _ => {}
    }
}
