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
use crate::future::ResponseFuture;
use crate::part::LatencyPart;
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
    part: LatencyPart,
    labeler: RouteLabeler,
}

impl LatencyLayer {
    /// Records into `registry`, labelling requests by axum's `MatchedPath` (else `unmatched`).
    pub fn new(registry: LatencyRegistry) -> Self {
        Self {
            shared: Arc::new(Shared {
                part: LatencyPart { registry },
                labeler: RouteLabeler::new(),
            }),
        }
    }

    /// Labels requests with `labeler` (for routers other than axum, or gRPC methods).
    #[must_use]
    pub fn with_route_labeler(self, labeler: RouteLabeler) -> Self {
        Self {
            shared: Arc::new(Shared {
                part: self.shared.part.clone(),
                labeler,
            }),
        }
    }

    /// The registry this layer records into.
    pub fn registry(&self) -> &LatencyRegistry {
        &self.shared.part.registry
    }

    /// This layer's behaviour as a part, for a driver that runs several parts in one pass
    /// (the `vitals` stack).
    pub fn part(&self) -> LatencyPart {
        self.shared.part.clone()
    }

    /// The route labeler this layer uses.
    pub fn route_labeler(&self) -> &RouteLabeler {
        &self.shared.labeler
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
        let shared = &self.layer.shared;
        let route = shared.labeler.label(&request);
        let in_flight = shared.part.start(request.method(), route, start);
        let future = self.inner.call(request);
        ResponseFuture::new(future, in_flight)
    }
}
