//! Settings from outside never panic: every numeric setting of every part — the extremes
//! included — builds a stack that answers requests.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use proptest::prelude::*;
use tower::ServiceExt;
use vitals::concurrency::{ConcurrencyLimitLayer, TimeoutLayer};
use vitals::core::findings::Findings;
use vitals::queries::QueryTrackingLayer;
use vitals::timing::RequestTimingLayer;
use vitals::trace_context::TraceContextLayer;
use vitals::{RouteSettings, VitalsLayer};

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::from_nanos(1)),
        (0..=u64::MAX, 0..1_000_000_000_u32).prop_map(|(s, n)| Duration::new(s, n)),
        (0..10_000_u64).prop_map(Duration::from_millis),
    ]
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(1), Just(u64::MAX), any::<u64>(), 0..100_u64]
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(usize::MAX),
        any::<usize>(),
        0..100_usize
    ]
}

fn rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        Just(0.0),
        Just(1.0),
        any::<f64>(),
        0.0..1.0_f64,
    ]
}

#[derive(Debug, Clone)]
struct Settings {
    slow: Duration,
    blocking: Duration,
    completion_rate: f64,
    repeats: u64,
    min_total: Duration,
    budget: u64,
    route_budget: u64,
    tracestate_limit: usize,
    findings: usize,
    limit: usize,
    queued: usize,
    max_wait: Duration,
    retry_after: Duration,
    timeout: Duration,
    route_timeout: Duration,
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        (duration(), duration(), rate(), count(), duration()),
        (count(), count(), size(), size(), size()),
        (size(), duration(), duration(), duration(), duration()),
    )
        .prop_map(
            |(
                (slow, blocking, completion_rate, repeats, min_total),
                (budget, route_budget, tracestate_limit, findings, limit),
                (queued, max_wait, retry_after, timeout, route_timeout),
            )| Settings {
                slow,
                blocking,
                completion_rate,
                repeats,
                min_total,
                budget,
                route_budget,
                tracestate_limit,
                findings,
                limit,
                queued,
                max_wait,
                retry_after,
                timeout,
                route_timeout,
            },
        )
}

fn stack(s: &Settings) -> VitalsLayer {
    VitalsLayer::builder()
        .findings(Findings::new(s.findings))
        .trace_context(TraceContextLayer::new().with_tracestate_limit(s.tracestate_limit))
        .timing(
            RequestTimingLayer::new()
                .with_slow_threshold(s.slow)
                .with_blocking_threshold(s.blocking)
                .with_completion_events(s.completion_rate),
        )
        .queries(
            QueryTrackingLayer::new()
                .with_n_plus_one_threshold(s.repeats)
                .with_n_plus_one_min_total(s.min_total)
                .with_query_budget(s.budget),
        )
        .concurrency_limit(
            ConcurrencyLimitLayer::new(s.limit)
                .with_max_queued(s.queued)
                .with_max_wait(s.max_wait)
                .with_retry_after(s.retry_after),
        )
        .timeout(TimeoutLayer::new(s.timeout))
        .route(
            "/work",
            RouteSettings::new()
                .timeout(s.route_timeout)
                .query_budget(s.route_budget)
                .slow_threshold(s.slow)
                .blocking_threshold(s.blocking),
        )
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn no_numeric_setting_panics_when_built_or_used(settings in settings()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let app: Router = Router::new()
                .route(
                    "/work",
                    get(|| async {
                        for _ in 0..6 {
                            vitals::queries::record("SELECT 1 FROM t WHERE id = 7", Duration::MAX);
                        }
                        "done"
                    }),
                )
                .layer(stack(&settings));
            for _ in 0..3 {
                let request = Request::get("/work")
                    .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                    .header("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
                    .body(Body::empty())
                    .unwrap();
                // A zero limit or deadline refuses or times out: an answer all the same.
                let response = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(request))
                    .await
                    .expect("answered within 5 s")
                    .unwrap();
                axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            }
        });
    }
}
