//! The response cache's cost: a hit from the memory store (a 1 KiB body) against the handler
//! that makes it doing nothing at all, and a request whose response is not stored (the layer's
//! pass-through cost on a route it cannot help).
//!
//! `cargo bench -p vitals-response-cache --bench response_cache`

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;
use vitals_bench::Comparison;
use vitals_response_cache::ResponseCacheLayer;

/// A handler that answers 1 KiB that may be stored for an hour, and does nothing else.
#[derive(Clone, Copy, Debug)]
struct Cacheable;

impl<B> Service<Request<B>> for Cacheable {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        static KIB: [u8; 1024] = [b'x'; 1024];
        let mut response = Response::new(Full::new(Bytes::from_static(&KIB)));
        let headers = response.headers_mut();
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("public, max-age=3600"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        ready(Ok(response))
    }
}

fn overhead(c: &mut Criterion) {
    Comparison::new(c, "response_cache")
        .layer("not_stored", ResponseCacheLayer::new())
        .service("handler_1k", &Cacheable)
        .service("hit_1k", &ResponseCacheLayer::new().layer(Cacheable))
        .finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
