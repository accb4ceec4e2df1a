//! `ClientMetrics`: finds the call's label set when the call starts; its future records the
//! sample when the call ends.

use quanta::Instant;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;
use vitals_core::semconv;

use super::future::MeasuredFuture;
use super::handles::Handles;
use crate::error::BoxError;

/// A client service whose calls are measured (see
/// [`ClientMetricsLayer`](super::ClientMetricsLayer)).
#[derive(Clone, Debug)]
pub struct ClientMetrics<S> {
    inner: S,
    handles: Arc<Handles>,
}

impl<S> ClientMetrics<S> {
    pub(super) fn new(inner: S) -> Self {
        // quanta calibrates its clock at its first read (~0.7 ms here): done when the stack is
        // built, not in the first call.
        let _ = Instant::now();
        Self {
            inner,
            handles: Arc::default(),
        }
    }

    vitals_core::inner_service_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for ClientMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = MeasuredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let downstream = self.handles.downstream(
            semconv::method_label(request.method()),
            semconv::server_address(request.uri(), request.headers()),
        );
        MeasuredFuture::new(self.inner.call(request), downstream, Instant::now())
    }
}
