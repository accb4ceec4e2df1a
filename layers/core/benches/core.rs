//! Per-request cost of the vitals-core building blocks, against a bare service.
//!
//! `cargo bench -p vitals-core --bench core`

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::util::MapResponseLayer;
use tower_layer::layer_fn;
use tower_service::Service;
use vitals_bench::{Comparison, RequestBody};
use vitals_core::body::{BodyEnd, CompletionBody};
use vitals_core::outcome::OnOutcome;
use vitals_core::route::RouteLabeler;
use vitals_core::server_timing::{Metric, ServerTiming};

/// Attaches a collector, adds one metric and renders the header: what a timing layer does.
#[derive(Clone)]
struct WithServerTiming<S>(S);

impl<S, ResB> Service<Request<RequestBody>> for WithServerTiming<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = TimedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        let start = Instant::now();
        let timing = ServerTiming::attach(request.extensions_mut());
        TimedFuture {
            inner: self.0.call(request),
            start,
            timing,
        }
    }
}

pin_project_lite::pin_project! {
    struct TimedFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        timing: ServerTiming,
    }
}

impl<F, ResB, E> Future for TimedFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        this.timing
            .add(Metric::new("total").with_duration(this.start.elapsed()));
        this.timing.append_to(response.headers_mut());
        Poll::Ready(Ok(response))
    }
}

/// Labels the route of each request, as every route-aware layer does.
#[derive(Clone)]
struct WithRouteLabel<S>(S, RouteLabeler);

impl<S> Service<Request<RequestBody>> for WithRouteLabel<S>
where
    S: Service<Request<RequestBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        std::hint::black_box(self.1.label(&request));
        self.0.call(request)
    }
}

fn overhead(c: &mut Criterion) {
    Comparison::new(c, "core")
        .layer(
            "completion_body",
            MapResponseLayer::new(|response: Response<_>| {
                response.map(|body| {
                    CompletionBody::new(body, |end: BodyEnd| {
                        std::hint::black_box(end);
                    })
                })
            }),
        )
        .layer(
            "completion_body_with_outcome",
            MapResponseLayer::new(|response: Response<_>| {
                let observer = OnOutcome::new(&response, |outcome| {
                    std::hint::black_box(outcome);
                });
                response.map(|body| CompletionBody::new(body, observer))
            }),
        )
        .layer(
            "route_label",
            layer_fn(|inner| WithRouteLabel(inner, RouteLabeler::new())),
        )
        .layer("server_timing", layer_fn(WithServerTiming))
        .finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
