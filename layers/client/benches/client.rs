//! The client layers' overhead on a successful call, against the same call without them.

use std::convert::Infallible;
use std::time::Duration;

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

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("client");
    group.bench_function("bare", |b| {
        let client = transport();
        b.iter(|| runtime.block_on(client.clone().oneshot(http::Request::new(()))));
    });
    // The bare call inside a request's deadline scope (the server side's cost), as the stacks
    // with a deadline below run.
    group.bench_function("bare_scoped", |b| {
        let client = transport();
        let deadline = RequestDeadline::after(Duration::from_hours(1)).expect("a deadline");
        b.iter(|| runtime.block_on(deadline.scope(client.clone().oneshot(http::Request::new(())))));
    });
    group.bench_function("deadline_none", |b| {
        let client = ServiceBuilder::new()
            .layer(DeadlineLayer::new())
            .service(transport());
        b.iter(|| runtime.block_on(client.clone().oneshot(http::Request::new(()))));
    });
    group.bench_function("deadline_request_and_timeout", |b| {
        let client = ServiceBuilder::new()
            .layer(DeadlineLayer::new().with_timeout(Duration::from_secs(2)))
            .service(transport());
        let deadline = RequestDeadline::after(Duration::from_hours(1)).expect("a deadline");
        b.iter(|| runtime.block_on(deadline.scope(client.clone().oneshot(http::Request::new(())))));
    });
    group.bench_function("breaker_closed", |b| {
        let client = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new("bench"))
            .service(transport());
        b.iter(|| runtime.block_on(client.clone().oneshot(http::Request::new(()))));
    });
    group.bench_function("breaker_and_deadline", |b| {
        let client = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new("bench"))
            .layer(DeadlineLayer::new().with_timeout(Duration::from_secs(2)))
            .service(transport());
        let deadline = RequestDeadline::after(Duration::from_hours(1)).expect("a deadline");
        b.iter(|| runtime.block_on(deadline.scope(client.clone().oneshot(http::Request::new(())))));
    });
    group.bench_function("retry", |b| {
        let client = ServiceBuilder::new()
            .layer(RetryLayer::new())
            .service(transport());
        b.iter(|| runtime.block_on(client.clone().oneshot(http::Request::new(()))));
    });
    group.bench_function("retry_breaker_deadline", |b| {
        let client = ServiceBuilder::new()
            .layer(RetryLayer::new())
            .layer(CircuitBreakerLayer::new("bench"))
            .layer(DeadlineLayer::new().with_timeout(Duration::from_secs(2)))
            .service(transport());
        let deadline = RequestDeadline::after(Duration::from_hours(1)).expect("a deadline");
        b.iter(|| runtime.block_on(deadline.scope(client.clone().oneshot(http::Request::new(())))));
    });
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
