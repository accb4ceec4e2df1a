//! The JSON behind the page: `/api/summary`, `/api/history`, `/api/findings`.

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

/// Every route over the last minute, with its queries per request and refusals since the
/// start, and the limiter's state now.
pub(crate) fn summary(sources: &Sources) -> Value {
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
    let mut routes: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    if let Some(latency) = &sources.latency {
        for series in latency.snapshot_by_route_only(Window::OneMinute).series {
            let route_totals = totals.get(&series.route);
            seen.insert(series.route.clone());
            routes.push(json!({
                "route": series.route,
                "requests": series.count,
                "requests_per_s": series.rate_per_s,
                "error_rate": series.error_rate,
                "p50_ms": series.p50_ms,
                "p95_ms": series.p95_ms,
                "p99_ms": series.p99_ms,
                "max_ms": series.max_ms,
                "queries_per_request": route_totals.and_then(queries_per_request),
                "rejected": route_totals.map_or(0, |t| t.rejected),
            }));
        }
    }
    // Routes the findings know of that had no request in the window.
    for (route, route_totals) in &totals {
        if !seen.contains(route) {
            routes.push(json!({
                "route": route,
                "requests": 0,
                "requests_per_s": 0.0,
                "error_rate": 0.0,
                "p50_ms": null,
                "p95_ms": null,
                "p99_ms": null,
                "max_ms": null,
                "queries_per_request": queries_per_request(route_totals),
                "rejected": route_totals.rejected,
            }));
        }
    }
    json!({
        "generated_at_unix_ms": now_unix_ms(),
        "window": "1m",
        "routes": routes,
        "limiter": sources.limiter.as_ref().map(limiter),
    })
}

#[allow(clippy::cast_precision_loss)]
fn queries_per_request(totals: &vitals_core::findings::RouteTotals) -> Option<f64> {
    (totals.requests > 0).then(|| totals.queries as f64 / totals.requests as f64)
}

fn limiter(limit: &vitals_concurrency::ConcurrencyLimitLayer) -> Value {
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
            trace_id,
            ..
        } => {
            object.insert("longest_poll_ms".into(), json!(longest_poll_ms));
            object.insert("trace_id".into(), json!(trace_id));
        }
        _ => {}
    }
    Value::Object(object)
}
