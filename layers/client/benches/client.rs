//! The client layers' overhead on a successful call, against the same call without them.

use std::convert::Infallible;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Service, ServiceBuilder, ServiceExt};
use vitals_client::{CircuitBreakerLayer, DeadlineLayer, RetryLayer};
use vitals_core::deadline::RequestDeadline;

fn transport() -> impl Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = Infallible,
    Future = std::future::Ready<Result<http::Response<()>, Infallible>>,
> + Clone {
    tower::service_fn(|_: http::Request<()>| std::future::ready(Ok(http::Response::new(()))))
}

/// A call as a service makes one, the same as `call_cost`'s: a downstream's URI and a header,
/// which the retry copies and the breaker and metrics read.
fn request() -> http::Request<()> {
    let mut request = http::Request::new(());
    *request.uri_mut() = http::Uri::from_static("http://payment.internal:8080/v1/charges/7");
    request.headers_mut().insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    request
}

/// `iters` calls made one after another from one task, as a handler makes them (inside the
/// request's deadline scope when one is given), timed together: the runtime is entered once for
/// them all, not once per call — a per-call `block_on` would add its own work and two moves of
/// the whole call's future to every call.
fn in_task<S>(
    runtime: &tokio::runtime::Runtime,
    client: &S,
    deadline: Option<RequestDeadline>,
    iters: u64,
) -> Duration
where
    S: Service<http::Request<()>> + Clone,
    S::Error: Debug,
{
    let calls = async {
        let began = Instant::now();
        for _ in 0..iters {
            let answer = client.clone().oneshot(request()).await;
            assert!(answer.is_ok(), "a call failed");
        }
        began.elapsed()
    };
    match deadline {
        Some(deadline) => runtime.block_on(deadline.scope(calls)),
        None => runtime.block_on(calls),
    }
}

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("client");
    group.bench_function("bare", |b| {
        let client = transport();
        b.iter_custom(|iters| in_task(&runtime, &client, None, iters));
    });
    // The bare call inside a request's deadline scope (the server side's cost), as the stacks
    // with a deadline below run.
    group.bench_function("bare_scoped", |b| {
        let client = transport();
        let deadline = RequestDeadline::after(Duration::from_hours(1)).expect("a deadline");
        b.iter_custom(|iters| in_task(&runtime, &client, Some(deadline), iters));
    });
    group.bench_function("deadline_none", |b| {
        let client = ServiceBuilder::new()
            .layer(DeadlineLayer::new())
            .service(transport());
        b.iter_custom(|iters| in_task(&runtime, &client, None, iters));
    });
    group.bench_function("deadline_request_and_timeout", |b| {
        let client = ServiceBuilder::new()
            .layer(DeadlineLayer::new().with_timeout(Duration::from_secs(2)))
            .service(transport());
        let deadline = RequestDeadline::after(Duration::from_hours(1)).expect("a deadline");
        b.iter_custom(|iters| in_task(&runtime, &client, Some(deadline), iters));
    });
    group.bench_function("breaker_closed", |b| {
        let client = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new("bench"))
            .service(transport());
        b.iter_custom(|iters| in_task(&runtime, &client, None, iters));
    });
    group.bench_function("breaker_and_deadline", |b| {
        let client = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new("bench"))
            .layer(DeadlineLayer::new().with_timeout(Duration::from_secs(2)))
            .service(transport());
        let deadline = RequestDeadline::after(Duration::from_hours(1)).expect("a deadline");
        b.iter_custom(|iters| in_task(&runtime, &client, Some(deadline), iters));
    });
    group.bench_function("retry", |b| {
        let client = ServiceBuilder::new()
            .layer(RetryLayer::new())
            .service(transport());
        b.iter_custom(|iters| in_task(&runtime, &client, None, iters));
    });
    group.bench_function("retry_breaker_deadline", |b| {
        let client = ServiceBuilder::new()
            .layer(RetryLayer::new())
            .layer(CircuitBreakerLayer::new("bench"))
            .layer(DeadlineLayer::new().with_timeout(Duration::from_secs(2)))
            .service(transport());
        let deadline = RequestDeadline::after(Duration::from_hours(1)).expect("a deadline");
        b.iter_custom(|iters| in_task(&runtime, &client, Some(deadline), iters));
    });
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
