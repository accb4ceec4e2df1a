//! No setting panics: whatever numbers the builders are given — durations up to
//! `Duration::MAX`, sizes up to `usize::MAX`, NaN and infinite factors, `min > max` in an
//! `AdaptiveLimit` literal — the layer is built and requests go through it.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use vitals_concurrency::{AdaptiveLimit, ConcurrencyLimitLayer, Limit, TimeoutLayer};
use vitals_core::outcome::OutcomeHint;
use vitals_core::route::RequestHead;

fn sizes() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(Semaphore::MAX_PERMITS),
        Just(Semaphore::MAX_PERMITS + 1),
        Just(usize::MAX),
        0..100_usize,
        any::<usize>(),
    ]
}

fn durations() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        Just(Duration::from_secs(u64::MAX)),
        (0..10_000_u64).prop_map(Duration::from_millis),
        (any::<u64>(), 0..1_000_000_000_u32).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn floats() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-1.0),
        Just(1.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        0.0..2.0_f64,
        any::<f64>(),
    ]
}

/// Runs `scenario` on a paused clock: waits and deadlines pass as soon as nothing else can
/// happen, so no case waits in real time.
fn run(scenario: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(scenario);
}

async fn send(app: &Router, request: Request) -> Response {
    app.clone().oneshot(request).await.unwrap()
}

fn get_request(path: &str) -> Request {
    Request::get(path).body(Body::empty()).unwrap()
}

/// Reads a body to its end; a body cut by a deadline is an answer too.
async fn read(response: Response) {
    let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "page" }))
        .route("/tight", get(|| async { "page" }))
        .route(
            "/sleepy",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                "page"
            }),
        )
        .route(
            "/timed-out",
            get(|| async {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                OutcomeHint::Timeout.mark(&mut response);
                response
            }),
        )
}

/// Latency samples (the first sets the baseline, a slower one is congestion), a timeout
/// signal, then a sample again: every arithmetic path of the adaptive limit.
async fn exercise_adaptive(layer: &ConcurrencyLimitLayer) {
    let app = app().layer(layer.clone());
    for (path, took) in [
        ("/", 10),
        ("/", 10),
        ("/", 100),
        ("/timed-out", 0),
        ("/", 10),
    ] {
        let response = send(&app, get_request(path)).await;
        tokio::time::advance(Duration::from_millis(took)).await;
        read(response).await;
    }
    let books = layer.handle().snapshot();
    assert!(books.limit >= 1, "{books:?}");
    assert_eq!((books.in_flight, books.available), (0, books.limit));
}

proptest! {
    #[test]
    fn no_limit_setting_panics_when_built_or_used(
        limit in sizes(),
        max_queued in sizes(),
        max_wait in durations(),
        retry_after in durations(),
        share in floats(),
    ) {
        run(async move {
            let layer = ConcurrencyLimitLayer::new(limit)
                .with_max_queued(max_queued)
                .with_max_wait(max_wait)
                .with_retry_after(retry_after)
                .with_low_priority(|head: RequestHead<'_>| head.headers.contains_key("x-low"), share)
                // One permit and one place in the queue: the wait and the refusal happen too.
                .with_route(
                    "/tight",
                    Limit::new(1)
                        .with_max_queued(1)
                        .with_max_wait(max_wait)
                        .with_retry_after(retry_after),
                );
            let app = app().layer(layer);
            read(send(&app, get_request("/")).await).await;
            let low = Request::get("/").header("x-low", "1").body(Body::empty()).unwrap();
            read(send(&app, low).await).await;

            let held = send(&app, get_request("/tight")).await;
            let mut waiter = Box::pin(send(&app, get_request("/tight")));
            let first_poll = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(waiter.as_mut().poll(cx))
            })
            .await;
            let refused = send(&app, get_request("/tight")).await;
            assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
            let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry_after >= 1);
            read(refused).await;
            read(held).await;
            let waited = match first_poll {
                std::task::Poll::Ready(response) => response,
                std::task::Poll::Pending => waiter.await,
            };
            read(waited).await;
        });
    }

    #[test]
    fn no_adaptive_setting_panics_when_built_or_used(
        min in sizes(),
        max in sizes(),
        initial in sizes(),
        tolerance in floats(),
        backoff in floats(),
        with_initial in proptest::option::of(sizes()),
    ) {
        run(async move {
            // The fields are public: a literal can hold anything, `min > max` included.
            let mut literal = AdaptiveLimit { min, max, initial, tolerance, backoff };
            let mut built = AdaptiveLimit::new(min, max);
            if let Some(initial) = with_initial {
                literal = literal.with_initial(initial);
                built = built.with_initial(initial);
            }
            exercise_adaptive(&ConcurrencyLimitLayer::adaptive(literal)).await;
            exercise_adaptive(&ConcurrencyLimitLayer::adaptive(built).with_max_queued(0)).await;
        });
    }

    #[test]
    fn no_timeout_setting_panics_when_built_or_used(
        timeout in durations(),
        route_timeout in durations(),
        body_deadline in any::<bool>(),
    ) {
        run(async move {
            let mut layer = TimeoutLayer::new(timeout).with_route("/sleepy", route_timeout);
            if body_deadline {
                layer = layer.with_body_deadline();
            }
            let watched = app().layer(TimeoutLayer::new(timeout).with_request_body_watch());
            let app = app().layer(layer);
            for path in ["/", "/sleepy"] {
                read(send(&app, get_request(path)).await).await;
                read(send(&watched, get_request(path)).await).await;
            }
        });
    }
}

/// An extreme value's name and how to tell it.
type Extreme<T> = (&'static str, fn(&T) -> bool);

/// `count` samples of `strategy` from a fixed seed: the same every run.
fn sample<S: Strategy>(strategy: &S, count: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// Asserts that each extreme is more than `floor` of `values`, the values of `setting`.
#[allow(clippy::cast_precision_loss)] // Counts of 10,000.
fn assert_reaches<T>(setting: &str, values: &[T], extremes: &[Extreme<T>], floor: f64) {
    for (extreme, is) in extremes {
        let share = values.iter().filter(|v| is(v)).count() as f64 / values.len() as f64;
        assert!(share > floor, "{setting}: {extreme} in {share}");
    }
}

/// The extremes of each kind of setting: where arithmetic overflows, divides by zero, or turns
/// NaN.
const SIZE_EXTREMES: [Extreme<usize>; 5] = [
    ("0", |&n| n == 0),
    ("1", |&n| n == 1),
    ("Semaphore::MAX_PERMITS", |&n| n == Semaphore::MAX_PERMITS),
    ("Semaphore::MAX_PERMITS + 1", |&n| {
        n == Semaphore::MAX_PERMITS + 1
    }),
    ("usize::MAX", |&n| n == usize::MAX),
];
const DURATION_EXTREMES: [Extreme<Duration>; 4] = [
    ("zero", |d| d.is_zero()),
    ("1 ns", |d| *d == Duration::from_nanos(1)),
    ("Duration::MAX", |d| *d == Duration::MAX),
    ("u64::MAX seconds", |d| *d == Duration::from_secs(u64::MAX)),
];
#[allow(clippy::float_cmp)] // Exact values, as generated.
const FLOAT_EXTREMES: [Extreme<f64>; 6] = [
    ("NaN", |x| x.is_nan()),
    ("infinity", |x| *x == f64::INFINITY),
    ("-infinity", |x| *x == f64::NEG_INFINITY),
    ("0", |x| *x == 0.0),
    ("f64::MAX", |x| *x == f64::MAX),
    ("f64::MIN_POSITIVE", |x| *x == f64::MIN_POSITIVE),
];

/// Each setting of each property gets each extreme of its kind often. From the `prop_oneof!`
/// weights (equal): each extreme of a size 1/8 = 12.5% of the values (0 and 1 a little more,
/// from `0..100`), of a duration 1/6 = 16.7%, of a factor 1/10 = 10% (the infinities and 0 a
/// little more; it makes no NaN), from `any::<f64>()`); an optional initial limit is absent half the time, so
/// 6.3% per extreme. Measured per setting and extreme: sizes 11.7% to 13.3% (and 12.3% to
/// 13.0% of the set initial limits), durations 16.1% to 17.2%, factors 9.4% to 11.5%. With the
/// default 256 cases, some 25 to 40 cases a setting per extreme. Floors: 8%, 10%, 6%.
#[test]
fn each_setting_reaches_its_extremes() {
    let limits = sample(
        &(sizes(), sizes(), durations(), durations(), floats()),
        10_000,
    );
    let limit: Vec<usize> = limits.iter().map(|c| c.0).collect();
    let max_queued: Vec<usize> = limits.iter().map(|c| c.1).collect();
    assert_reaches("limit", &limit, &SIZE_EXTREMES, 0.08);
    assert_reaches("max_queued", &max_queued, &SIZE_EXTREMES, 0.08);
    let max_wait: Vec<Duration> = limits.iter().map(|c| c.2).collect();
    let retry_after: Vec<Duration> = limits.iter().map(|c| c.3).collect();
    let share: Vec<f64> = limits.iter().map(|c| c.4).collect();
    assert_reaches("max_wait", &max_wait, &DURATION_EXTREMES, 0.1);
    assert_reaches("retry_after", &retry_after, &DURATION_EXTREMES, 0.1);
    assert_reaches("low-priority share", &share, &FLOAT_EXTREMES, 0.06);

    let adaptive = sample(
        &(
            sizes(),
            sizes(),
            sizes(),
            floats(),
            floats(),
            proptest::option::of(sizes()),
        ),
        10_000,
    );
    let min: Vec<usize> = adaptive.iter().map(|c| c.0).collect();
    let max: Vec<usize> = adaptive.iter().map(|c| c.1).collect();
    let initial: Vec<usize> = adaptive.iter().map(|c| c.2).collect();
    let tolerance: Vec<f64> = adaptive.iter().map(|c| c.3).collect();
    let backoff: Vec<f64> = adaptive.iter().map(|c| c.4).collect();
    let with_initial: Vec<usize> = adaptive.iter().filter_map(|c| c.5).collect();
    assert_reaches("min", &min, &SIZE_EXTREMES, 0.08);
    assert_reaches("max", &max, &SIZE_EXTREMES, 0.08);
    assert_reaches("initial", &initial, &SIZE_EXTREMES, 0.08);
    assert_reaches("tolerance", &tolerance, &FLOAT_EXTREMES, 0.06);
    assert_reaches("backoff", &backoff, &FLOAT_EXTREMES, 0.06);
    assert!(
        with_initial.len() > 4_000,
        "with_initial set in {}",
        with_initial.len()
    );
    assert_reaches(
        "with_initial (when set)",
        &with_initial,
        &SIZE_EXTREMES,
        0.08,
    );
    // `min > max`, which only a literal can hold.
    let crossed = adaptive.iter().filter(|c| c.0 > c.1).count();
    assert!(crossed > 3_000, "min > max in {crossed}");

    let timeouts = sample(&(durations(), durations()), 10_000);
    let timeout: Vec<Duration> = timeouts.iter().map(|c| c.0).collect();
    let route_timeout: Vec<Duration> = timeouts.iter().map(|c| c.1).collect();
    assert_reaches("timeout", &timeout, &DURATION_EXTREMES, 0.1);
    assert_reaches("route_timeout", &route_timeout, &DURATION_EXTREMES, 0.1);
}
