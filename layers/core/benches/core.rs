//! Per-request cost of the vitals-core building blocks, against a bare service.
//!
//! `cargo bench -p vitals-core --bench core`

use std::task::{Context, Poll};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::util::MapResponseLayer;
use tower_layer::layer_fn;
use tower_service::Service;
use vitals_bench::{BareService, Comparison, RequestBody};
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
    S::Future: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<ResB>, S::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        let start = Instant::now();
        let timing = ServerTiming::attach(request.extensions_mut());
        let future = self.0.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            timing.add(Metric::new("total").with_duration(start.elapsed()));
            timing.append_to(response.headers_mut());
            Ok(response)
        })
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
    let box_layer = layer_fn(|inner: BareService| {
        // Boxed on purpose: the Server-Timing cost is measured including a boxed future, an
        // upper bound for a hand-written layer.
        WithServerTiming(inner)
    });
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
        .layer("server_timing_boxed", box_layer)
        .finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
