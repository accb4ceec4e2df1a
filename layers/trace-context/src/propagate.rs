//! The client side: outgoing requests carry the current request's trace, as a new client span.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::TraceContext;

/// Adds `traceparent` (a new client span of the current request) and `tracestate` to every
/// outgoing `http::Request` — for hyper-util clients and tonic channels. Outside a request,
/// requests go out unchanged.
///
/// ```
/// use tower::ServiceBuilder;
/// use vitals_trace_context::PropagateTraceContextLayer;
///
/// # fn client<S>(service: S) -> impl Clone where S: Clone {
/// ServiceBuilder::new().layer(PropagateTraceContextLayer::new()).service(service)
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PropagateTraceContextLayer;

impl PropagateTraceContextLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for PropagateTraceContextLayer {
    type Service = PropagateTraceContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateTraceContext { inner }
    }
}

/// The service made by [`PropagateTraceContextLayer`].
#[derive(Clone, Copy, Debug)]
pub struct PropagateTraceContext<S> {
    inner: S,
}

impl<S> PropagateTraceContext<S> {
    vitals_core::inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for PropagateTraceContext<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(current) = TraceContext::current() {
            current.outgoing().inject_into(request.headers_mut());
        }
        self.inner.call(request)
    }
}
