//! The criterion harness every Vitals layer benchmark uses.
//!
//! A layer's cost is what it adds to one request. [`Comparison`] measures a bare service and
//! the same service wrapped in each layer under test, in one criterion group, so the figures
//! are read side by side as ratios measured in one run (the machines are shared and noisy;
//! absolute numbers drift, ratios much less). Each iteration sends one request through
//! `tower::ServiceExt::oneshot` and reads the response body to its end, because several
//! layers only finish their work when the body ends.
//!
//! ```no_run
//! use criterion::{criterion_group, criterion_main, Criterion};
//! use tower::layer::util::Identity;
//! use vitals_bench::Comparison;
//!
//! fn overhead(c: &mut Criterion) {
//!     Comparison::new(c, "identity")
//!         .layer("identity", Identity::new())
//!         .finish();
//! }
//!
//! criterion_group!(benches, overhead);
//! criterion_main!(benches);
//! ```
//!
//! Run with `cargo bench -p <crate>`; see `docs/benchmarks.md`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

/// The JSON the bare service answers with: small, like a typical API response.
pub const RESPONSE_JSON: &str = r#"{"id":42,"name":"Espresso cup","price_cents":1250}"#;

/// The request body type of the benchmark services.
pub type RequestBody = Full<Bytes>;

/// The innermost service of every benchmark: answers a fixed JSON body, does no I/O.
#[derive(Clone, Copy, Debug, Default)]
pub struct BareService;

/// Any request body: layers that wrap the request body (a watched upload) still fit.
impl<B> Service<Request<B>> for BareService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        let mut response = Response::new(Full::new(Bytes::from_static(RESPONSE_JSON.as_bytes())));
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        ready(Ok(response))
    }
}

/// The request every benchmark sends: `GET /products/42` with two typical headers.
pub fn request() -> Request<RequestBody> {
    Request::get("/products/42")
        .header(header::HOST, "bench.local")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

/// A request's route, as a router leaves it in the request extensions.
#[derive(Clone, Copy, Debug)]
pub struct RoutedBy(pub &'static str);

/// [`request`] as it looks once a router has handled it: its extension map already exists (axum
/// inserts `MatchedPath` and `OriginalUri`), so a layer's first extension insert does not pay
/// for creating the map.
pub fn routed_request() -> Request<RequestBody> {
    let mut request = request();
    request.extensions_mut().insert(RoutedBy("/products/{id}"));
    request
}

/// A single-threaded runtime, so measurements are not spread across cores (with timers, for
/// layers that set deadlines).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime for benchmarks: {e}"))
}

/// Sends one [`request`] through `service` and reads the response body to its end.
pub async fn call_once<S, ResB>(service: S) -> Bytes
where
    S: Service<Request<RequestBody>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
    ResB: Body,
    ResB::Error: std::fmt::Debug,
{
    call_with(service, request()).await
}

/// Sends `request` through `service` and reads the response body to its end.
pub async fn call_with<S, ResB>(service: S, request: Request<RequestBody>) -> Bytes
where
    S: Service<Request<RequestBody>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
    ResB: Body,
    ResB::Error: std::fmt::Debug,
{
    let response = service
        .oneshot(request)
        .await
        .unwrap_or_else(|e| panic!("benchmarked service failed: {e:?}"));
    response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("benchmarked body failed: {e:?}"))
        .to_bytes()
}

/// One criterion group: the bare service, then each layer around it.
pub struct Comparison<'c> {
    group: BenchmarkGroup<'c, WallTime>,
    runtime: tokio::runtime::Runtime,
    request: fn() -> Request<RequestBody>,
}

impl<'c> Comparison<'c> {
    /// Starts group `name` and benchmarks the bare service as `bare`, sending [`request`].
    pub fn new(criterion: &'c mut Criterion, name: &str) -> Self {
        Self::with_request(criterion, name, request)
    }

    /// Like [`Comparison::new`], sending what `request` makes (e.g. [`routed_request`]).
    pub fn with_request(
        criterion: &'c mut Criterion,
        name: &str,
        request: fn() -> Request<RequestBody>,
    ) -> Self {
        let mut group = criterion.benchmark_group(name);
        group
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        let mut comparison = Self {
            group,
            runtime: runtime(),
            request,
        };
        comparison = comparison.service("bare", &BareService);
        comparison
    }

    /// Benchmarks [`BareService`] wrapped in `layer`, as `label`.
    #[must_use]
    pub fn layer<L, ResB>(self, label: &str, layer: L) -> Self
    where
        L: Layer<BareService>,
        L::Service: Service<Request<RequestBody>, Response = Response<ResB>> + Clone,
        <L::Service as Service<Request<RequestBody>>>::Error: std::fmt::Debug,
        ResB: Body,
        ResB::Error: std::fmt::Debug,
    {
        let service = layer.layer(BareService);
        self.service(label, &service)
    }

    /// Benchmarks any service, as `label` (for stacks built by hand).
    #[must_use]
    pub fn service<S, ResB>(mut self, label: &str, service: &S) -> Self
    where
        S: Service<Request<RequestBody>, Response = Response<ResB>> + Clone,
        S::Error: std::fmt::Debug,
        ResB: Body,
        ResB::Error: std::fmt::Debug,
    {
        let runtime = &self.runtime;
        let request = self.request;
        self.group.bench_function(label, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        black_box(call_with(service.clone(), request()).await);
                    }
                    start.elapsed()
                })
            });
        });
        self
    }

    /// Ends the group.
    pub fn finish(self) {
        self.group.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_service_answers_the_fixed_json() {
        let body = runtime().block_on(call_once(BareService));
        assert_eq!(&body[..], RESPONSE_JSON.as_bytes());
    }
}
