//! Runs N calls through one client stack, for counting instructions per call under callgrind:
//! the difference between the counts of two runs, divided by the difference of their N, is one
//! call's cost without the start-up (docs/client.md, "Cost"). Prints the wall-clock time per
//! call, which `scripts/loadtest client` takes the fastest of over interleaved runs.
//!
//! The calls are made one after another from one task, as a handler makes them. With a third
//! argument, `block-on-each`, each call runs in its own `block_on` instead (the measure before
//! 2026-12-07's last change): the runtime entered per call and the call's whole future moved
//! into it, work a call made from a handler does not do.
//!
//! ```text
//! cargo build --release -p vitals-client --example call_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/call_cost retry_breaker_deadline 2500
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Service, ServiceBuilder, ServiceExt};
use vitals_client::{
    BulkheadLayer, CircuitBreakerLayer, DeadlineLayer, RetryLayer, ServerTimingLayer,
};
use vitals_core::deadline::RequestDeadline;
use vitals_core::server_timing::ServerTiming;

fn transport() -> impl Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = Infallible,
    Future = std::future::Ready<Result<http::Response<()>, Infallible>>,
> + Clone {
    tower::service_fn(|_: http::Request<()>| std::future::ready(Ok(http::Response::new(()))))
}

/// A call as a service makes one: to a downstream named by host and port, with a header. The
/// retry copies what it holds (URI, headers), the metrics label its host and port: an empty
/// request (`/`, no header) would hide both costs. The bare call builds and drops the same.
fn request() -> http::Request<()> {
    let mut request = http::Request::new(());
    *request.uri_mut() = http::Uri::from_static("http://payment.internal:8080/v1/charges/7");
    request.headers_mut().insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    request
}

/// How the calls are driven.
#[derive(Clone, Copy, PartialEq)]
enum Drive {
    /// One after another from one task.
    InTask,
    /// Each in its own `block_on`.
    BlockOnEach,
}

/// What the calls run inside, as the server side sets it up around a handler: the request's
/// deadline, and a `Server-Timing` collector (a request whose client sees the header).
#[derive(Clone, Copy)]
struct Inside {
    deadline: bool,
    collector: bool,
}

/// A future polled with `timing` as the current `Server-Timing` collector, as the server side
/// polls a handler.
struct Timed<'a, F> {
    future: Pin<&'a mut F>,
    timing: Option<ServerTiming>,
}

impl<F: Future> Future for Timed<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        ServerTiming::in_scope(&mut this.timing, || this.future.as_mut().poll(cx))
    }
}

/// `future` run to its end inside the request's deadline and with its collector, when given.
fn block_on<F: Future>(
    runtime: &tokio::runtime::Runtime,
    future: F,
    deadline: Option<RequestDeadline>,
    timing: Option<&ServerTiming>,
) -> F::Output {
    let future = pin!(future);
    let timed = Timed {
        future,
        timing: timing.cloned(),
    };
    match deadline {
        Some(deadline) => runtime.block_on(deadline.scope(timed)),
        None => runtime.block_on(timed),
    }
}

/// A call outside any request.
const PLAIN: Inside = Inside {
    deadline: false,
    collector: false,
};
/// Inside a request's deadline.
const SCOPED: Inside = Inside {
    deadline: true,
    collector: false,
};
/// Inside a request's deadline, its client seeing `Server-Timing`.
const TIMED: Inside = Inside {
    deadline: true,
    collector: true,
};

fn run<S>(runtime: &tokio::runtime::Runtime, client: &S, calls: u32, inside: Inside, drive: Drive)
where
    S: Service<http::Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    let deadline = RequestDeadline::after(Duration::from_hours(1)).filter(|_| inside.deadline);
    // Each call its own collector, made just before it, as each request makes its own when it
    // arrives: one shared by every call would be full after 32 entries and count the rest as
    // dropped, a path no request takes; collectors all made before the clock starts would be
    // cold in the cache when their call uses them, which a request's is not. The bare call in
    // the same scope makes and drops the same collectors.
    let collector = || {
        inside
            .collector
            .then(|| ServerTiming::attach(&mut http::Extensions::new()))
    };
    let mut full = 0_u32;
    let mut count_full = |timing: Option<ServerTiming>| {
        if timing.is_some_and(|timing| timing.dropped() > 0) {
            full += 1;
        }
    };
    let began = std::time::Instant::now();
    if drive == Drive::InTask {
        let in_task = async {
            for _ in 0..calls {
                let timing = collector();
                let answer = match &timing {
                    Some(timing) => {
                        let call = client.clone().oneshot(request());
                        Timed {
                            future: pin!(call),
                            timing: Some(timing.clone()),
                        }
                        .await
                    }
                    None => client.clone().oneshot(request()).await,
                };
                assert!(answer.is_ok(), "a call failed");
                count_full(timing);
            }
        };
        block_on(runtime, in_task, deadline, None);
    } else {
        for _ in 0..calls {
            let timing = collector();
            let answer = block_on(
                runtime,
                client.clone().oneshot(request()),
                deadline,
                timing.as_ref(),
            );
            assert!(answer.is_ok(), "a call failed");
            count_full(timing);
        }
    }
    let per_call = began.elapsed().as_secs_f64() * 1e9 / f64::from(calls.max(1));
    assert_eq!(full, 0, "a collector was full");
    println!("{per_call:.1} ns per call");
}

/// docs/client.md's stack whole: `documented_timed` and `ClientMetricsLayer`, recording into
/// the Prometheus recorder `vitals::telemetry` installs (histograms with buckets).
#[cfg(feature = "metrics")]
fn documented_metrics(
    runtime: &tokio::runtime::Runtime,
    calls: u32,
    drive: Drive,
    timeout: Duration,
) {
    install_recorder();
    run(
        runtime,
        &ServiceBuilder::new()
            .layer(ServerTimingLayer::new("cost"))
            .layer(RetryLayer::new())
            .layer(CircuitBreakerLayer::new("cost"))
            .layer(BulkheadLayer::new("cost", 64))
            .layer(vitals_client::ClientMetricsLayer::new())
            .layer(DeadlineLayer::new().with_timeout(timeout))
            .service(transport()),
        calls,
        TIMED,
        drive,
    );
}

/// The Prometheus recorder as `vitals::telemetry` builds it for this histogram (recommended
/// naming, buckets rather than a summary); nothing scrapes it during the run.
#[cfg(feature = "metrics")]
fn install_recorder() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                vitals_core::semconv::HTTP_CLIENT_REQUEST_DURATION.to_owned(),
            ),
            &vitals_core::semconv::DURATION_BUCKETS_SECONDS,
        )
        .expect("buckets")
        .build_recorder();
    metrics::set_global_recorder(recorder).expect("the only recorder");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "bare".to_owned());
    let calls = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let drive = match args.next().as_deref() {
        None => Drive::InTask,
        Some("block-on-each") => Drive::BlockOnEach,
        Some(other) => {
            eprintln!("unknown way to drive the calls {other:?}: block-on-each, or none");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let timeout = Duration::from_secs(2);
    match variant.as_str() {
        "bare" => run(&runtime, &transport(), calls, PLAIN, drive),
        // The bare call inside a request's deadline scope, as the stacks with a deadline run.
        "bare_scoped" => run(&runtime, &transport(), calls, SCOPED, drive),
        // The bare call inside a request's deadline scope with a `Server-Timing` collector.
        "bare_timed" => run(&runtime, &transport(), calls, TIMED, drive),
        "deadline" => run(
            &runtime,
            &ServiceBuilder::new()
                .layer(DeadlineLayer::new().with_timeout(timeout))
                .service(transport()),
            calls,
            SCOPED,
            drive,
        ),
        "breaker" => run(
            &runtime,
            &ServiceBuilder::new()
                .layer(CircuitBreakerLayer::new("cost"))
                .service(transport()),
            calls,
            PLAIN,
            drive,
        ),
        "retry" => run(
            &runtime,
            &ServiceBuilder::new()
                .layer(RetryLayer::new())
                .service(transport()),
            calls,
            PLAIN,
            drive,
        ),
        "retry_breaker_deadline" => run(
            &runtime,
            &ServiceBuilder::new()
                .layer(RetryLayer::new())
                .layer(CircuitBreakerLayer::new("cost"))
                .layer(DeadlineLayer::new().with_timeout(timeout))
                .service(transport()),
            calls,
            SCOPED,
            drive,
        ),
        // docs/client.md's stack but its metrics (a feature, and a recorder's cost): the
        // Server-Timing entry, retry, breaker, bulkhead, deadline. `documented`: no collector
        // current, as for a call outside a request whose client sees the header;
        // `documented_timed`: inside one, an entry per call.
        "documented" | "documented_timed" => run(
            &runtime,
            &ServiceBuilder::new()
                .layer(ServerTimingLayer::new("cost"))
                .layer(RetryLayer::new())
                .layer(CircuitBreakerLayer::new("cost"))
                .layer(BulkheadLayer::new("cost", 64))
                .layer(DeadlineLayer::new().with_timeout(timeout))
                .service(transport()),
            calls,
            if variant == "documented_timed" {
                TIMED
            } else {
                SCOPED
            },
            drive,
        ),
        #[cfg(feature = "metrics")]
        "documented_metrics" => documented_metrics(&runtime, calls, drive, timeout),
        other => {
            eprintln!(
                "unknown stack {other:?}: bare, bare_scoped, deadline, breaker, retry, \
                 retry_breaker_deadline, documented, bare_timed, documented_timed, \
                 documented_metrics (with the feature `metrics`)"
            );
            std::process::exit(2);
        }
    }
}
