//! `LatencyLayer` and the service it makes.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;
use vitals_core::route::RouteLabeler;

use crate::body::LatencyBody;
use crate::future::{InFlight, ResponseFuture};
use crate::method::MethodIndex;
use crate::registry::LatencyRegistry;

/// Records every request's duration, to the last byte of its body, into a
/// [`LatencyRegistry`]; see the [crate documentation](crate).
///
/// Cheap to clone: clones (axum makes one per route) record into the same registry.
#[derive(Clone, Debug)]
pub struct LatencyLayer {
    /// One reference count to bump per clone: tower services are cloned per request.
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    registry: LatencyRegistry,
    labeler: RouteLabeler,
}

impl LatencyLayer {
    /// Records into `registry`, labelling requests by axum's `MatchedPath` (else `unmatched`).
    pub fn new(registry: LatencyRegistry) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry,
                labeler: RouteLabeler::new(),
            }),
        }
    }

    /// Labels requests with `labeler` (for routers other than axum, or gRPC methods).
    #[must_use]
    pub fn with_route_labeler(self, labeler: RouteLabeler) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry: self.shared.registry.clone(),
                labeler,
            }),
        }
    }

    /// The registry this layer records into.
    pub fn registry(&self) -> &LatencyRegistry {
        &self.shared.registry
    }
}

impl<S> Layer<S> for LatencyLayer {
    type Service = Latency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Latency {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`LatencyLayer`].
#[derive(Clone, Debug)]
pub struct Latency<S> {
    inner: S,
    layer: LatencyLayer,
}

impl<S> Latency<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Latency<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<LatencyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let method = MethodIndex::of(request.method());
        let shared = &self.layer.shared;
        let in_flight = InFlight {
            route: shared.labeler.label(&request),
            method,
            start,
            registry: shared.registry.clone(),
        };
        let future = self.inner.call(request);
        // Counted active only once nothing can panic before the future exists: from here on,
        // the future's drop or the body's end takes it off again, exactly once.
        shared.registry.active(method, 1);
        ResponseFuture::new(future, in_flight)
    }
}
