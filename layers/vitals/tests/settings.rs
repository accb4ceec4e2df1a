//! Settings from outside never panic: every numeric setting of every part — the extremes
//! included — builds a stack that answers requests.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
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
        .with_findings(Findings::new(s.findings))
        .with_trace_context(TraceContextLayer::new().with_tracestate_limit(s.tracestate_limit))
        .with_timing(
            RequestTimingLayer::new()
                .with_slow_threshold(s.slow)
                .with_blocking_threshold(s.blocking)
                .with_completion_events(s.completion_rate),
        )
        .with_queries(
            QueryTrackingLayer::new()
                .with_n_plus_one_threshold(s.repeats)
                .with_n_plus_one_min_total(s.min_total)
                .with_query_budget(s.budget),
        )
        .with_concurrency_limit(
            ConcurrencyLimitLayer::new(s.limit)
                .with_max_queued(s.queued)
                .with_max_wait(s.max_wait)
                .with_retry_after(s.retry_after),
        )
        .with_timeout(TimeoutLayer::new(s.timeout))
        .with_route(
            "/work",
            RouteSettings::new()
                .with_timeout(s.route_timeout)
                .with_query_budget(s.route_budget)
                .with_slow_threshold(s.slow)
                .with_blocking_threshold(s.blocking),
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

/// A setting's name and how to read it.
type Setting<T> = (&'static str, fn(&Settings) -> T);
/// An extreme value's name and how to tell it.
type Extreme<T> = (&'static str, fn(&T) -> bool);

/// `count` samples of `strategy` from a fixed seed: the same every run.
fn sample<S: Strategy>(strategy: &S, count: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// Asserts that each extreme is more than `floor` of the values of `setting` in `cases`.
#[allow(clippy::cast_precision_loss)] // Counts of 10,000.
fn assert_reaches<T>(
    cases: &[Settings],
    (setting, get): Setting<T>,
    extremes: &[Extreme<T>],
    floor: f64,
) {
    for (extreme, is) in extremes {
        let share = cases.iter().filter(|s| is(&get(s))).count() as f64 / cases.len() as f64;
        assert!(share > floor, "{setting}: {extreme} in {share}");
    }
}

/// Each numeric setting gets each extreme of its kind often. From the `prop_oneof!` weights
/// (equal): each extreme of a duration 1/6 = 16.7% of the values; of a count or a size 1/5 =
/// 20% (0 and 1 a little more, from `0..100`); of the rate 1/8 = 12.5% (the infinities and 0 a
/// little more, from `any::<f64>()`, which makes no NaN). Measured per setting and extreme: durations 15.9% to
/// 17.3%, counts and sizes 19.3% to 20.6%, the rate 12.1% to 14.1%: with 128 cases, some 15 to
/// 25 cases a setting per extreme. Floors: 10%, 12%, 7%.
#[test]
#[allow(clippy::float_cmp)] // Exact values, as generated.
fn each_setting_reaches_its_extremes() {
    let cases = sample(&settings(), 10_000);
    let durations: [Setting<Duration>; 7] = [
        ("slow", |s| s.slow),
        ("blocking", |s| s.blocking),
        ("min_total", |s| s.min_total),
        ("max_wait", |s| s.max_wait),
        ("retry_after", |s| s.retry_after),
        ("timeout", |s| s.timeout),
        ("route_timeout", |s| s.route_timeout),
    ];
    for setting in durations {
        assert_reaches(
            &cases,
            setting,
            &[
                ("zero", |d| d.is_zero()),
                ("1 ns", |d| *d == Duration::from_nanos(1)),
                ("Duration::MAX", |d| *d == Duration::MAX),
                ("u64::MAX seconds", |d| *d == Duration::from_secs(u64::MAX)),
            ],
            0.1,
        );
    }
    let counts: [Setting<u64>; 3] = [
        ("repeats", |s| s.repeats),
        ("budget", |s| s.budget),
        ("route_budget", |s| s.route_budget),
    ];
    for setting in counts {
        assert_reaches(
            &cases,
            setting,
            &[
                ("0", |&n| n == 0),
                ("1", |&n| n == 1),
                ("u64::MAX", |&n| n == u64::MAX),
            ],
            0.12,
        );
    }
    let sizes: [Setting<usize>; 4] = [
        ("tracestate_limit", |s| s.tracestate_limit),
        ("findings", |s| s.findings),
        ("limit", |s| s.limit),
        ("queued", |s| s.queued),
    ];
    for setting in sizes {
        assert_reaches(
            &cases,
            setting,
            &[
                ("0", |&n| n == 0),
                ("1", |&n| n == 1),
                ("usize::MAX", |&n| n == usize::MAX),
            ],
            0.12,
        );
    }
    assert_reaches(
        &cases,
        ("completion_rate", |s| s.completion_rate),
        &[
            ("NaN", |x: &f64| x.is_nan()),
            ("infinity", |x| *x == f64::INFINITY),
            ("-infinity", |x| *x == f64::NEG_INFINITY),
            ("-1", |x| *x == -1.0),
            ("0", |x| *x == 0.0),
            ("1", |x| *x == 1.0),
        ],
        0.07,
    );
}
